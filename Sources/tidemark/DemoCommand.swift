import ArgumentParser
import TidemarkCore
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

    @Flag(help: "Print a JSON summary.")
    var json = false

    func validate() throws {
        guard rows >= 10 else { throw ValidationError("--rows must be at least 10") }
        guard seconds >= 0 else { throw ValidationError("--seconds must not be negative") }
        guard writesPerSecond >= 1 else { throw ValidationError("--writes-per-second must be at least 1") }
    }

    func run() throws {
        var equal = false
        try reportingErrors {
            let view = ProgressView(enabled: !json && isTerminal(2))
            let say: (String) -> Void = { line in if !json { print(line) } }
            let summary = try Demo.run(Demo.Options(directory: dir, rows: rows, seconds: seconds, writesPerSecond: writesPerSecond)) { event in
                switch event {
                case .created(let path, let rows, let s):
                    say("created \(path) with \(rows) rows in \(String(format2: s)) s")
                case .writersStarted(let threads, let rate):
                    say("started \(threads) writers at ~\(rate) writes/s; migrating to \(dir)/shop-v2.db (customers → accounts, transformed)")
                case .progress(let p):
                    view.show(p)
                case .caughtUp(let s):
                    view.finish()
                    say("caught up after \(String(format2: s)) s; following while writers keep writing")
                case .writersStopped(let ok, let failed):
                    say("writers stopped: \(ok) writes acknowledged, \(failed) failed")
                case .verifying:
                    say("draining the last changes and comparing every row…")
                }
            }
            equal = summary.equal
            if json {
                var o = JSONObject()
                o.set("equal", summary.equal)
                o.set("rows", summary.rows)
                o.set("rows_copied", summary.rowsCopied)
                o.set("changes_replayed", summary.changesReplayed)
                o.set("catch_up_seconds", summary.catchUpSeconds)
                o.set("writes_acknowledged", summary.writesAcknowledged)
                o.set("writes_failed", summary.writesFailed)
                o.set("writes_per_second", summary.writesPerSecond)
                o.set("tables", array: summary.comparisons.map { c in
                    var j = JSONObject()
                    j.set("table", c.table)
                    j.set("rows", c.rowsCompared)
                    j.set("missing", c.missing.count)
                    j.set("extra", c.extra.count)
                    j.set("different", c.different.count)
                    return j.text
                })
                print(o.text)
                return
            }
            print("")
            print("rows copied       \(summary.rowsCopied)")
            print("changes replayed  \(summary.changesReplayed)")
            print("catch-up          \(String(format2: summary.catchUpSeconds)) s")
            print("writes            \(summary.writesAcknowledged) acknowledged (\(Int(summary.writesPerSecond))/s), \(summary.writesFailed) failed")
            for c in summary.comparisons {
                let verdict = c.isEqual ? "equal" : "DIFFERENT: \(c.missing.count) missing, \(c.extra.count) extra, \(c.different.count) changed (e.g. \((c.missing + c.extra + c.different).prefix(3).map(keyText)))"
                print("verify \(c.table.padding(12)) \(c.rowsCompared) rows \(verdict)")
            }
            print(summary.equal ? "OK: the target equals the transformed source, row for row." : "FAILED: the target differs from the source.")
        }
        if !equal { throw ExitCode(1) }
    }
}
