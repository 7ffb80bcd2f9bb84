import ArgumentParser
import TidemarkLog
import TidemarkSQLite

struct CaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Record every committed row change of a SQLite database and ship it into the log.",
        subcommands: [CaptureInstallCommand.self, CaptureRunCommand.self, CaptureStatusCommand.self, CaptureUninstallCommand.self]
    )
}

struct SourceOptions: ParsableArguments {
    @Option(help: "The source SQLite database.")
    var source: String

    func open(_ mode: Connection.OpenMode = .readWrite) throws -> Connection {
        guard access(source, F_OK) == 0 else {
            throw CaptureError(.missingTable, "source database \(source) does not exist")
        }
        return try Connection(path: source, mode: mode)
    }
}

struct CaptureInstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Create the outbox and capture triggers; store the source id in the database and the log."
    )

    @OptionGroup var source: SourceOptions

    @Option(help: "The log directory (created if missing).")
    var log: String

    @Option(help: "Tables to capture, comma-separated (default: every table).")
    var tables: String?

    @Option(help: "Capture updates of only these columns: TABLE=col1,col2 (repeatable).")
    var columns: [String] = []

    @Flag(help: "Print one JSON object.")
    var json = false

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

struct CaptureRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Ship captured changes into the log (until interrupted, or once with --once)."
    )

    @OptionGroup var source: SourceOptions

    @Option(help: "The log directory.")
    var log: String

    @Flag(help: "Ship what is there now, then exit.")
    var once = false

    @Option(help: "Pause between rounds when the outbox is empty.")
    var intervalMs: Int = 50

    @Option(help: "Log durability: commit (default), none, or interval:MS.")
    var durability: String = "commit"

    @Flag(help: "Print a JSON summary at exit.")
    var json = false

    func validate() throws {
        guard intervalMs >= 0 else { throw ValidationError("--interval-ms must not be negative") }
        guard Durability(parsing: durability) != nil else { throw ValidationError("--durability must be commit, none or interval:MS") }
    }

    func run() throws {
        try reportingErrors {
            let db = try source.open()
            guard let id = try Capture.storedSourceID(db) else {
                throw CaptureError(.notInstalled, "capture is not installed in \(source.source); run `tidemark capture install` first")
            }
            // One shipper per source, checked before the log is opened (or
            // created): a second `capture run` changes nothing.
            let lock = try ShipperLock(sourcePath: source.source, logPath: log)
            let appender = try LogAppender(directory: log, sourceID: id, options: LogOptions(durability: Durability(parsing: durability)!))
            if let r = appender.recovery { printError(r.description) }
            let shipper = try Shipper(connection: db, appender: appender, options: Shipper.Options(idlePauseMillis: intervalMs), lock: lock)
            let stop = StopFlag()
            let signals = SignalStop { stop.set() }
            defer { signals.cancel() }
            var shipped = 0
            if once {
                shipped = try shipper.drain()
            } else {
                let start = appender.lastLSN
                try shipper.run(until: { stop.isSet })
                shipped = Int(appender.lastLSN.rawValue - start.rawValue)
            }
            try appender.close()
            if json {
                var o = JSONObject()
                o.set("shipped", shipped)
                o.set("last_lsn", appender.lastLSN.rawValue)
                print(o.text)
            } else {
                print("shipped \(shipped) changes; log at LSN \(appender.lastLSN)")
            }
        }
    }
}

/// A flag set from a signal handler and read by the shipping loop.
final class StopFlag: @unchecked Sendable {
    // @unchecked: a single word written once (false → true); readers poll.
    private nonisolated(unsafe) var value = false
    func set() { value = true }
    var isSet: Bool { value }
}

struct CaptureStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Captured tables, outbox backlog, last shipped LSN and shipping lag."
    )

    @OptionGroup var source: SourceOptions

    @Option(help: "The log directory.")
    var log: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        try reportingErrors {
            let db = try source.open(.readOnly)
            guard let s = try Capture.status(connection: db) else {
                if json { print("{\"installed\":false}") } else { print("capture is not installed in \(source.source)") }
                return
            }
            let shipped = try log.map { try LogReader(directory: $0).headLSN() }
            let lag = s.lagMillis(nowMicros: Clock.wallMicros())
            let shipper = ShipperLock.holder(ofSource: source.source)
            if json {
                var o = JSONObject()
                o.set("installed", true)
                o.set("source_id", s.sourceID.rawValue)
                o.set("tables", array: s.tables.map { t in
                    var j = JSONObject()
                    j.set("table", t.name)
                    j.set("columns", array: t.columns.map(JSONObject.quote))
                    j.set("key", array: t.keyColumns.map(JSONObject.quote))
                    if let u = t.updateColumns { j.set("update_columns", array: u.map(JSONObject.quote)) }
                    return j.text
                })
                o.set("backlog", s.backlog)
                o.set("captured_lsn", s.lastCaptured.rawValue)
                o.set("shipped_lsn", shipped?.rawValue)
                o.set("lag_changes", s.backlog)
                o.set("lag_ms", Int(lag))
                o.set("shipper_pid", shipper?.pid)
                o.set("shipper_log", shipper?.log)
                print(o.text)
                return
            }
            print("source \(s.sourceID): capturing \(s.tables.map(\.name).joined(separator: ", "))")
            print("captured up to LSN \(s.lastCaptured); shipped up to \(shipped.map { "\($0)" } ?? "? (pass --log)")")
            print("backlog \(s.backlog) changes, lag \(lag) ms")
            print(shipper.map { "shipper: pid \($0.pid), shipping into \($0.log)" } ?? "shipper: none running")
        }
    }
}

struct CaptureUninstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uninstall",
        abstract: "Remove capture triggers and the outbox (refused while changes are unshipped, unless --force)."
    )

    @OptionGroup var source: SourceOptions

    @Flag(help: "Discard unshipped changes.")
    var force = false

    func run() throws {
        try reportingErrors {
            let db = try source.open()
            try Capture.uninstall(connection: db, force: force)
            print("capture removed from \(source.source)")
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
