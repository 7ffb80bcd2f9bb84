#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TidemarkCore
import TidemarkLog

/// `--plan FILE`, shared by every migration command.
struct PlanOption: ParsableArguments {
    @Option(help: "The migration plan (YAML or JSON); default: $TIDEMARK_PLAN, else tidemark.yml.")
    var plan: String = getenv("TIDEMARK_PLAN").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "tidemark.yml"

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

    @Flag(help: "Replay past LSN ranges the log lost to damage (see `tidemark log repair`); verify before cutover.")
    var acceptGap = false

    @Flag(help: "Resolve the plan and the target's schema and run the preflight; print what the target would get (tables, indexes, triggers and views at cutover, what is not carried) and change nothing. Exits 1 when the preflight finds rows the target would refuse.")
    var dryRun = false

    func run() throws {
        try reportingErrors(json: json) {
            let p = try plan.load()
            if dryRun {
                try printDryRun(try Migrator.dryRun(plan: p))
                return
            }
            // SIGINT/SIGTERM stop the run at its next safe point (exit 130/143).
            Interruption.install()
            var options = MigratorOptions(follow: follow)
            options.acceptGap = acceptGap
            let migrator = try Migrator.open(plan: p, options: options)
            defer { try? migrator.close() }
            // What the target will not get, before anything is copied (the
            // stored schema's, so a resumed run says the same).
            if !json {
                for o in migrator.notCarried { print(omissionLine(o)) }
            }
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
                o.set("not_carried", array: migrator.notCarried.map(omissionJSON))
                print(o.text)
            } else {
                print("\(summary.caughtUp ? "caught up" : "stopped"): \(summary.rowsCopied) rows copied, \(summary.changesReplayed) changes replayed, applied LSN \(summary.appliedLSN), \(String(format2: summary.totalSeconds)) s")
            }
        }
    }
}

extension MigrateCommand {
    func printDryRun(_ d: MigrationDryRun) throws {
        let s = d.schema
        if json {
            var o = JSONObject()
            o.set("dry_run", true)
            o.set("started", d.started)
            o.set("tables", array: s.tables.map { t in
                var j = JSONObject()
                j.set("source", t.source)
                j.set("target", t.target)
                j.set("sql", t.createSQL)
                j.set("from_plan", t.fromPlan)
                j.set("exists", d.existingTables.contains(t.target))
                return j.text
            })
            o.set("in_place_columns", array: d.inPlaceColumns.map { c in
                var j = JSONObject()
                j.set("table", c.table)
                j.set("column", c.column)
                j.set("expression", c.expression)
                j.set("adopted", c.adopted)
                return j.text
            })
            func objects(_ list: [TargetSchema.Object]) -> [String] {
                list.map { x in
                    var j = JSONObject()
                    j.set("name", x.name)
                    j.set("table", x.table)
                    j.set("sql", x.sql)
                    if x.kind == .index { j.set("pending", d.pendingIndexes.contains(x.name)) }
                    j.set("replaces_sql", x.replacesSQL)
                    return j.text
                }
            }
            o.set("indexes", array: objects(s.indexes))
            o.set("triggers", array: objects(s.triggers))
            o.set("views", array: objects(s.views))
            o.set("not_carried", array: s.omissions.map(omissionJSON))
            var pre = JSONObject()
            pre.set("clean", d.preflight.isClean)
            pre.set("violations", array: d.preflight.violations.map(violationJSON))
            o.set("preflight", pre)
            print(o.text)
        } else {
            print(d.started ? "dry run (the migration already began; this is its stored schema): nothing was changed"
                            : "dry run: nothing was changed; `tidemark migrate` would create:")
            for t in s.tables {
                if d.existingTables.contains(t.target) {
                    print("table \(t.source) → \(t.target): exists in the target (empty) and is kept as it is")
                } else {
                    print("table \(t.source) → \(t.target)\(t.fromPlan ? " (the plan's own)" : ""): \(t.createSQL)")
                }
            }
            for c in d.inPlaceColumns { print("in place: \(c.adopted ? "adopts the existing empty column" : "adds column") \(c.table).\(c.column) = \(c.expression)") }
            for i in s.indexes {
                print("index \(i.name) on \(i.table)\(d.pendingIndexes.contains(i.name) ? " (built after the copy of \(i.table))" : " (built)"): \(i.sql)")
            }
            for t in s.triggers { print("trigger \(t.name) on \(t.table) (created at cutover): \(t.sql)") }
            for v in s.views { print("view \(v.name) (\(v.replacesSQL == nil ? "created" : "replaced") at cutover): \(v.sql)") }
            for o in s.omissions { print(omissionLine(o)) }
            if !d.started {
                if d.preflight.isClean {
                    print("preflight: no source row breaks a constraint of the target")
                } else {
                    print("preflight: " + Migrator.preflightMessage(d.preflight))
                }
            }
        }
        if !d.preflight.isClean { throw ExitCode(1) }
    }
}

/// `not carried: index idx_x on users: names column email, which the plan drops`
func omissionLine(_ o: TargetSchema.Omission) -> String {
    "not carried: \(o.kind) \(o.name) on \(o.table): \(o.reason)\(o.blocksCutover ? " (blocks cutover unless `cutover --drop-triggers`)" : "")"
}

func omissionJSON(_ o: TargetSchema.Omission) -> String {
    var j = JSONObject()
    j.set("kind", o.kind)
    j.set("name", o.name)
    j.set("table", o.table)
    j.set("reason", o.reason)
    j.set("blocks_cutover", o.blocksCutover)
    return j.text
}

func valueJSON(_ v: Value) -> String {
    var b: [UInt8] = []
    v.appendJSON(to: &b)
    return String(decoding: b, as: UTF8.self)
}

func violationJSON(_ v: PreflightViolation) -> String {
    var j = JSONObject()
    j.set("table", v.table)
    j.set("target_table", v.targetTable)
    j.set("kind", v.kind)
    j.set("constraint", v.constraint)
    j.set("rows", v.rows)
    j.set("keys", array: v.keys.map { key in "{" + key.map { JSONObject.quote($0.name) + ":" + valueJSON($0.value) }.joined(separator: ",") + "}" })
    return j.text
}

/// ``reportingErrors(_:)``, and with `json` a library error is one JSON
/// object on stderr instead of a line: `{"error":{"code":…,"message":…}}`,
/// with the preflight's violations as data.
func reportingErrors(json: Bool, _ body: () throws -> Void) throws {
    guard json else { return try reportingErrors(body) }
    do {
        try body()
    } catch let e as MigrationError {
        var inner = JSONObject()
        inner.set("code", e.code.rawValue)
        inner.set("message", e.message)
        if e.code == .preflight { inner.set("violations", array: e.violations.map(violationJSON)) }
        var o = JSONObject()
        o.set("error", inner)
        let line = Array((o.text + "\n").utf8)
        line.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
        throw ExitCode(1)
    } catch {
        try reportingErrors { throw error }
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
