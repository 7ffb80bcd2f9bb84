import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct CaptureInstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Create the outbox and capture triggers; store the source id in the database and the log."
    )

    @OptionGroup var source: SourceOptions

    @OptionGroup var logLocation: LogLocation
    var log: String { logLocation.directory }

    @Option(help: "Tables to capture, comma-separated (default: every table).")
    var tables: String?

    @Option(help: "Capture updates of only these columns: TABLE=col1,col2 (repeatable).")
    var columns: [String] = []

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors {
            var updateColumns: [String: [String]] = [:]
            for spec in columns {
                let parts = spec.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, !parts[1].isEmpty else {
                    throw ValidationError("--columns must look like TABLE=col1,col2, not '\(spec)'")
                }
                updateColumns[String(parts[0])] = parts[1].split(separator: ",").map(String.init)
            }
            let db = try source.open()
            let stored = try Capture.storedSourceID(db)
            let logID = LogDirectory(log).exists ? try LogReader(directory: log).sourceID : nil
            if let stored, let logID, stored != logID {
                throw LogError(.foreignSource, "the log \(log) belongs to source \(logID), but \(source.source) is captured as \(stored); use the log made for this database")
            }
            let id = stored ?? logID ?? SourceID.random()
            // A fresh outbox continues after the log's last LSN (capture may
            // have been uninstalled since that log was written).
            let logHead = logID != nil ? try LogReader(directory: log).headLSN() : .zero
            let report = try Capture.install(
                connection: db, tables: tables.map { $0.split(separator: ",").map(String.init) },
                updateColumns: updateColumns, sourceID: id, continuingAfter: logHead)
            // The log takes the same id (created now if missing).
            try LogAppender(directory: log, sourceID: id, options: LogOptions(durability: .commit)).close()
            if json {
                var o = JSONObject()
                o.set("source_id", id.rawValue)
                o.set("installed", array: report.installed.map(JSONObject.quote))
                o.set("unchanged", array: report.unchanged.map(JSONObject.quote))
                print(o.text)
            } else if report.installed.isEmpty {
                print("capture already installed on \(report.unchanged.joined(separator: ", ")); nothing changed")
            } else {
                print("capturing \(report.installed.joined(separator: ", ")) in \(source.source) (source \(id)); ship with `tidemark capture run --source \(source.source) --log \(log)`")
            }
        }
    }
}

