import ArgumentParser
import TidemarkCore
import TidemarkLog

/// `--plan FILE`, shared by every migration command.
struct PlanOption: ParsableArguments {
    @Option(help: "The migration plan (YAML or JSON).")
    var plan: String = "tidemark.yml"

    func load() throws -> Plan { try Plan.load(path: plan) }
}

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy the source into the target while replaying changes, until caught up.",
        discussion: "Installs capture if missing and ships changes in this process (unless `tidemark capture run` already ships them). Safe to stop (Ctrl-C) or kill at any moment; run it again to resume."
    )

    @OptionGroup var plan: PlanOption

    @Flag(help: "Keep following the log after catch-up, until interrupted.")
    var follow = false

    @Flag(help: "Print a JSON summary instead of text.")
    var json = false

    @Flag(help: "Replay past LSN ranges the log lost to damage (see `tidemark log repair`); verify before cutover.")
    var acceptGap = false

    func run() throws {
        try reportingErrors {
            let p = try plan.load()
            var options = MigratorOptions(follow: follow)
            options.acceptGap = acceptGap
            let migrator = try Migrator.open(plan: p, options: options)
            defer { try? migrator.close() }
            let signals = SignalStop { migrator.stop() }
            defer { signals.cancel() }
            let view = ProgressView(enabled: !json && isTerminal(2))
            let summary = try migrator.run { view.show($0) }
            view.finish()
            if json {
                var o = JSONObject()
                o.set("rows_copied", summary.rowsCopied)
                o.set("changes_replayed", summary.changesReplayed)
                o.set("applied_lsn", summary.appliedLSN.rawValue)
                o.set("copy_seconds", summary.copySeconds)
                o.set("total_seconds", summary.totalSeconds)
                o.set("caught_up", summary.caughtUp)
                print(o.text)
            } else {
                print("\(summary.caughtUp ? "caught up" : "stopped"): \(summary.rowsCopied) rows copied, \(summary.changesReplayed) changes replayed, applied LSN \(summary.appliedLSN), \(String(format2: summary.totalSeconds)) s")
            }
        }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Per-table phase, tidemark and rows copied; applied LSN, log head and lag."
    )

    @OptionGroup var plan: PlanOption

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        try reportingErrors {
            let s = try MigrationStatus.read(plan: try plan.load())
            if json {
                var o = JSONObject()
                o.set("started", s.state != nil)
                o.set("applied_lsn", s.state?.appliedLSN.rawValue)
                o.set("log_head_lsn", s.logHeadLSN?.rawValue)
                o.set("captured_lsn", s.capturedLSN.rawValue)
                o.set("lag_changes", s.lagChanges)
                o.set("lag_ms", s.lagMillis)
                o.set("caught_up", s.state?.caughtUpAtMicros != nil)
                o.set("cutover", s.state?.cutoverState)
                o.set("cutover_lsn", s.state?.cutoverLSN?.rawValue)
                o.set("tables", array: (s.state?.tables ?? []).map { t in
                    var j = JSONObject()
                    j.set("source", t.sourceTable)
                    j.set("target", t.targetTable)
                    j.set("phase", t.phase.rawValue)
                    j.set("tidemark", t.tidemark.map(keyText))
                    j.set("ceiling", t.ceiling.map(keyText))
                    j.set("rows_copied", t.rowsCopied)
                    j.set("rows_estimate", t.rowsEstimate)
                    return j.text
                })
                print(o.text)
                return
            }
            guard let state = s.state else {
                print("not started: run `tidemark migrate`; \(s.capturedLSN) changes captured so far")
                return
            }
            for t in state.tables {
                print("\(t.sourceTable) → \(t.targetTable)  \(t.phase.rawValue)  rows \(t.rowsCopied)/\(t.rowsEstimate)  tidemark \(t.tidemark.map(keyText) ?? "-")  ceiling \(t.ceiling.map(keyText) ?? "-")")
            }
            switch state.cutoverState {
            case "done": print("cut over at LSN \(state.cutoverLSN.map { "\($0)" } ?? "?"): the target is authoritative (see `tidemark route`)")
            case "rolled-back": print("rolled back after cutover: the source is authoritative again")
            case "prepared": print("a cutover is in progress (or was interrupted; `tidemark cutover` settles it)")
            default: break
            }
            print("applied LSN \(state.appliedLSN), log head \(s.logHeadLSN.map { "\($0)" } ?? "-"), captured \(s.capturedLSN); lag \(s.lagChanges) changes, \(s.lagMillis) ms\(state.caughtUpAtMicros != nil ? "; caught up" : "")")
        }
    }
}

func keyText(_ values: [Value]) -> String {
    values.count == 1 ? values[0].description : "(" + values.map(\.description).joined(separator: ", ") + ")"
}
