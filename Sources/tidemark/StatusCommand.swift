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

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors {
            let s = try MigrationStatus.read(plan: try plan.load())
            let planArgument = "--plan \(plan.plan)"
            guard json else {
                // The live-control lines (paused, throttled, postponed) go before `next:`.
                var lines = s.lines(planArgument: planArgument)
                let live = liveStatusLines(s.state?.live ?? LiveControlState(), planArgument: planArgument)
                lines.insert(contentsOf: live, at: lines.firstIndex { $0.hasPrefix("next:") } ?? lines.endIndex)
                for line in lines { print(line) }
                return
            }
            let life = s.lifecycle(planArgument: planArgument)
            var o = JSONObject()
            o.set("phase", life.phase.rawValue)
            o.set("summary", life.summary)
            o.set("next", life.next)
            o.set("blocked", life.blocked)
            o.set("target", s.target)
            if let b = s.state?.blocked {
                var j = JSONObject()
                j.set("lsn", b.lsn?.rawValue)
                j.set("message", b.message)
                j.set("at", jsonTime(b.atMicros))
                o.set("refused", j)
            } else {
                o.set("refused", raw: "null")
            }
            o.set("live", liveStatusJSON(s.state?.live ?? LiveControlState()))
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
                j.set("at", jsonTime(v.atMicros))
                j.set("from_lsn", v.fromLSN.rawValue)
                j.set("through_lsn", v.throughLSN.rawValue)
                j.set("differences", v.differences)
                o.set("verify", j)
            } else {
                o.set("verify", raw: "null")
            }
            o.set("skip_verify_at", jsonTime(s.state?.skipVerifyAtMicros))
            o.set("cutover", s.state?.cutover?.kind.rawValue)
            o.set("cutover_lsn", s.state?.cutover?.lsn?.rawValue)
            if let journal = s.journal {
                var j = JSONObject()
                j.set("kind", journal.kind.rawValue)
                j.set("step", journal.step)
                o.set("journal", j)
            } else {
                o.set("journal", raw: "null")
            }
            o.set("tables", array: (s.state?.tables ?? []).map { t in
                let columns = s.keyColumns[t.sourceTable]
                var j = JSONObject()
                j.set("source", t.sourceTable)
                j.set("target", t.targetTable)
                j.set("phase", s.tablePhase(t, in: life.phase))
                j.set("tidemark", raw: t.tidemark.map { jsonKey($0, columns: columns) } ?? "null")
                j.set("ceiling", raw: t.ceiling.map { jsonKey($0, columns: columns) } ?? "null")
                j.set("rows_copied", t.rowsCopied)
                j.set("rows_estimate", t.rowsEstimate)
                return j.text
            })
            print(o.text)
        }
    }
}

/// A key in text: one value as it is, several in parentheses.
func keyText(_ values: [Value]) -> String { MigrationStatus.keyText(values) }
