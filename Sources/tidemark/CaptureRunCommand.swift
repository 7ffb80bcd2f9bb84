import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct CaptureRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Ship captured changes into the log (until interrupted, or once with --once)."
    )

    @OptionGroup var source: SourceOptions

    @OptionGroup var logLocation: LogLocation
    var log: String { logLocation.directory }

    @Flag(help: "Ship what is there now, then exit.")
    var once = false

    @Option(help: "Pause between rounds when the outbox is empty.")
    var intervalMs: Int = 50

    @Option(help: "Log durability: commit (default), none, or interval:MS.")
    var durability: String = "commit"

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    func validate() throws {
        guard intervalMs >= 0 else { throw ValidationError("--interval-ms must not be negative") }
        guard Durability(parsing: durability) != nil else { throw ValidationError("--durability must be commit, none or interval:MS") }
    }

    func run() throws {
        try reportingErrors {
            let console = Console(json: json, verbosity)
            let db = try source.open()
            guard let id = try Capture.storedSourceID(db) else {
                throw CaptureError(.notInstalled, "capture is not installed in \(source.source); run `tidemark capture install` first")
            }
            // One shipper per source, checked before the log is opened (or
            // created): a second `capture run` changes nothing.
            let lock = try ShipperLock(sourcePath: source.source, logPath: log)
            let appender = try LogAppender(directory: log, sourceID: id, options: LogOptions(durability: Durability(parsing: durability)!))
            if let r = appender.recovery { printError(r.description) }
            console.detail("source \(id): shipping into \(log) from LSN \(appender.lastLSN)\(once ? ", once" : " until interrupted")")
            let shipper = try Shipper(connection: db, appender: appender, options: Shipper.Options(idlePauseMillis: intervalMs), lock: lock)
            var shipped = 0
            if once {
                shipped = try shipper.drain()
            } else {
                // SIGINT/SIGTERM end the shipping loop between rounds (every
                // round is shipped whole or not at all); that is how `capture
                // run` is meant to stop, so it exits 0 with its summary. The
                // stop flag is Interruption's atomic, set by the handler.
                Interruption.install()
                let start = appender.lastLSN
                try shipper.run(until: { Interruption.receivedSignal != nil })
                shipped = Int(appender.lastLSN.rawValue - start.rawValue)
            }
            try appender.close()
            console.detail("closed the log at LSN \(appender.lastLSN)")
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
