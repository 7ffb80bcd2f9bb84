import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

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
                if let b = s.state?.blocked {
                    var j = JSONObject()
                    j.set("lsn", b.lsn?.rawValue)
                    j.set("message", b.message)
                    j.set("at", Timestamp(microsSinceEpoch: b.atMicros).description)
                    o.set("refused", j)
                } else {
                    o.set("refused", raw: "null")
                }
                o.set("indexes_pending", array: s.pendingIndexes.map(JSONObject.quote))
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
                o.set("cutover", s.state?.cutover?.kind.rawValue)
                o.set("cutover_lsn", s.state?.cutover?.lsn?.rawValue)
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
