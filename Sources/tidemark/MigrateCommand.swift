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
        discussion: "Installs capture if missing and ships changes in this process (unless `tidemark capture run` already ships them). Safe to stop (Ctrl-C or SIGTERM: it stops at the next safe point, says where, and exits 130/143) or kill at any moment; run it again to resume."
    )

    @OptionGroup var plan: PlanOption

    @Flag(help: "Keep following the log after catch-up, until interrupted.")
    var follow = false

    @Flag(help: "Print a JSON summary instead of text.")
    var json = false

    func run() throws {
        try reportingErrors {
            let p = try plan.load()
            // SIGINT/SIGTERM stop the run at its next safe point (exit 130/143).
            Interruption.install()
            let migrator = try Migrator.open(plan: p, options: MigratorOptions(follow: follow))
            defer { try? migrator.close() }
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
        abstract: "Where the migration stands (its phase) and the one command to run next; per-table progress, applied LSN, lag.",
        discussion: "Phases: planned → copying → caught up → verified → cut over → finished, or rolled back; a cutover or rollback that stopped half-way is reported with the command that settles it. Works from the plan stored with the migration, even if the plan file was edited."
    )

    @OptionGroup var plan: PlanOption

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        try reportingErrors {
            let s = try MigrationStatus.read(plan: try plan.load())
            let life = s.lifecycle(planArgument: "--plan \(plan.plan)")
            if json {
                var o = JSONObject()
                o.set("phase", life.phase.rawValue)
                o.set("summary", life.summary)
                o.set("next", life.next)
                o.set("blocked", life.blocked)
                o.set("plan_changes", array: s.planChanges.map(JSONObject.quote))
                o.set("plan_fingerprint", s.state?.plan?.fingerprint)
                o.set("started", s.state != nil)
                o.set("applied_lsn", s.state?.appliedLSN.rawValue)
                o.set("log_head_lsn", s.logHeadLSN?.rawValue)
                o.set("captured_lsn", s.capturedLSN.rawValue)
                o.set("lag_changes", s.lagChanges)
                o.set("lag_ms", s.lagMillis)
                o.set("caught_up", s.state?.caughtUpAtMicros != nil)
                o.set("copied_lsn", s.state?.copiedLSN?.rawValue)
                if let v = s.state?.verification {
                    var j = JSONObject()
                    j.set("at", Timestamp(microsSinceEpoch: v.atMicros).description)
                    j.set("from_lsn", v.fromLSN.rawValue)
                    j.set("through_lsn", v.throughLSN.rawValue)
                    j.set("differences", v.differences)
                    o.set("verify", j)
                } else {
                    o.set("verify", raw: "null")
                }
                o.set("skip_verify_at", s.state?.skipVerifyAtMicros.map { Timestamp(microsSinceEpoch: $0).description })
                o.set("cutover", s.state?.cutoverState)
                o.set("cutover_lsn", s.state?.cutoverLSN?.rawValue)
                o.set("journal", s.journal.map { "\($0.kind.rawValue) \($0.step)" })
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
            print("phase: \(life.phase.rawValue) — \(life.summary)")
            if let blocked = life.blocked { print("blocked: \(blocked)") }
            print("next: \(life.next ?? "nothing to run")")
            guard let state = s.state else {
                print("\(s.capturedLSN) changes captured so far")
                return
            }
            for t in state.tables {
                print("  \(t.sourceTable) → \(t.targetTable)  \(t.phase.rawValue)  rows \(t.rowsCopied)/\(t.rowsEstimate)  tidemark \(t.tidemark.map(keyText) ?? "-")  ceiling \(t.ceiling.map(keyText) ?? "-")")
            }
            if let v = state.verification {
                print("last verify: \(Timestamp(microsSinceEpoch: v.atMicros)), LSNs \(v.fromLSN)–\(v.throughLSN), \(v.isClean ? "equal" : "\(v.differences) differences")")
            }
            if state.skipVerifyAtMicros != nil { print("cutover was allowed without a clean verify (--skip-verify)") }
            print("applied LSN \(state.appliedLSN), log head \(s.logHeadLSN.map { "\($0)" } ?? "-"), captured \(s.capturedLSN); lag \(s.lagChanges) changes, \(s.lagMillis) ms\(state.caughtUpAtMicros != nil ? "; caught up" : "")")
        }
    }
}

func keyText(_ values: [Value]) -> String {
    values.count == 1 ? values[0].description : "(" + values.map(\.description).joined(separator: ", ") + ")"
}
