import ArgumentParser
import TidemarkCore
import TidemarkDemo
import TidemarkLog

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Migrate a live demo shop database while writers keep writing, then prove the result."
    )

    @Option(help: "Directory for the demo's databases, plan and log.")
    var dir: String = "tidemark-demo"

    @Option(help: "Rows in the demo database (over two tables).")
    var rows: Int = 200_000

    @Option(help: "Seconds the writers keep writing after catch-up.")
    var seconds: Double = 5

    @Option(help: "Application writes per second during the demo.")
    var writesPerSecond: Int = 1_500

    @Option(help: ArgumentHelp(
        "PostgreSQL connection string to migrate into instead of the SQLite file (postgres://… or \"host=… dbname=…\").",
        discussion: "The demo owns the tables accounts and order_lines (schema public) and the schema tidemark in that database: it drops them (CASCADE) before it starts. Use a database of its own."))
    var target: String?

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    func validate() throws {
        guard rows >= 10 else { throw ValidationError("--rows must be at least 10") }
        guard seconds >= 0 else { throw ValidationError("--seconds must not be negative") }
        guard writesPerSecond >= 1 else { throw ValidationError("--writes-per-second must be at least 1") }
        if let target, !Plan.isConnectionString(target) {
            throw ValidationError("--target must be a PostgreSQL connection string (postgres://… or \"host=… dbname=…\"); omit it for the SQLite file")
        }
    }

    func run() throws {
        var equal = false
        try reportingErrors {
            let console = Console(json: json, verbosity)
            let view = console.progress()
            let say: (String) -> Void = { line in console.note(line) }
            let options = Demo.Options(directory: dir, rows: rows, seconds: seconds, writesPerSecond: writesPerSecond, target: target)
            let summary = try Demo.run(options) { event in
                switch event {
                case .created(let path, let rows, let s):
                    say("created \(path) with \(rows) rows in \(String(format2: s)) s")
                case .writersStarted(let threads, let rate):
                    let to = options.displayTarget.map { "PostgreSQL \($0)" } ?? "\(dir)/shop-v2.db"
                    say("started \(threads) writers at ~\(rate) writes/s; migrating to \(to) (customers → accounts, transformed)")
                case .progress(let p):
                    view.show(p)
                case .caughtUp(let s):
                    view.finish()
                    say("caught up after \(String(format2: s)) s; following while writers keep writing")
                case .verifying:
                    view.finish()
                    say("verifying the target against the source under the live load…")
                case .verified(let r):
                    say(r.isEqual ? "verified: \(r.rows) rows equal in \(String(format2: r.seconds)) s" : "verify found differences")
                    for t in r.tables where !t.isEqual {
                        say("  \(t.source): missing \(t.missing.prefix(5).map(keyText)), extra \(t.extra.prefix(5).map(keyText)), different \(t.different.prefix(5).map(keyText)), unsettled \(t.unsettled.prefix(5).map(keyText))")
                    }
                case .cuttingOver:
                    say("cutting over while writers keep writing…")
                case .cutOver(let c):
                    say("cut over at LSN \(c.lsn): lock held \(String(format2: c.pauseMillis)) ms; writers now use \(options.target == nil ? "shop-v2.db" : "PostgreSQL") via the Router")
                case .writersStopped(let ok, let failed, let rerouted):
                    say("writers stopped: \(ok) writes acknowledged, \(rerouted) rerouted after cutover, \(failed) failed")
                }
            }
            equal = summary.ok
            if json {
                var o = JSONObject()
                o.set("ok", summary.ok)
                o.set("rows", summary.rows)
                o.set("rows_copied", summary.rowsCopied)
                o.set("changes_replayed", summary.changesReplayed)
                o.set("catch_up_seconds", summary.catchUpSeconds)
                o.set("verify_equal", summary.verify.isEqual)
                o.set("cutover_lsn", summary.cutover.lsn.rawValue)
                o.set("cutover_lock_ms", summary.cutover.pauseMillis)
                o.set("writer_pause_p50_ms", summary.pauseP50Millis)
                o.set("writer_pause_p99_ms", summary.pauseP99Millis)
                o.set("writer_pause_max_ms", summary.pauseMaxMillis)
                o.set("writes_acknowledged", summary.writesAcknowledged)
                o.set("writes_failed", summary.writesFailed)
                o.set("writes_rerouted", summary.writesRerouted)
                o.set("writes_per_second", summary.writesPerSecond)
                o.set("lost_writes", summary.lostWrites)
                print(o.text)
                return
            }
            print("")
            print("rows copied         \(summary.rowsCopied)")
            print("changes replayed    \(summary.changesReplayed)")
            print("catch-up            \(String(format2: summary.catchUpSeconds)) s")
            print("verify (live)       \(summary.verify.isEqual ? "equal" : "DIFFERENT"), \(summary.verify.rows) rows")
            print("cutover             LSN \(summary.cutover.lsn), source lock held \(String(format2: summary.cutover.pauseMillis)) ms")
            print("writer latency      p50 \(String(format2: summary.pauseP50Millis)) ms, p99 \(String(format2: summary.pauseP99Millis)) ms, max \(String(format2: summary.pauseMaxMillis)) ms (writes around the cutover)")
            print("writes              \(summary.writesAcknowledged) acknowledged (\(Int(summary.writesPerSecond))/s), \(summary.writesRerouted) rerouted, \(summary.writesFailed) failed")
            print("lost writes         \(summary.lostWrites) of \(summary.insertsChecked) acknowledged inserts")
            if let e = summary.firstError { print("first writer error  \(e)") }
            print(summary.ok ? "OK: the target equalled the transformed source, the switch lost no acknowledged write." : "FAILED")
        }
        if !equal { throw ExitCode(1) }
    }
}
