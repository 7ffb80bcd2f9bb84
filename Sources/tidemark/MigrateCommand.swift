#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TidemarkCore
import TidemarkLog

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy the source into the target while replaying changes, until caught up.",
        discussion: "Installs capture if missing and ships changes in this process (unless `tidemark capture run` already ships them). Safe to stop (Ctrl-C or SIGTERM: it stops at the next safe point, says where, and exits 130/143) or kill at any moment; run it again to resume."
    )

    @OptionGroup var plan: PlanOption

    @Flag(help: "Keep following the log after catch-up, until interrupted.")
    var follow = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    @Flag(help: "Replay past LSN ranges the log lost to damage (see `tidemark log repair`); verify before cutover.")
    var acceptGap = false

    @Option(help: ArgumentHelp("Copy at most N rows per second (a token bucket: any second holds at most N + N/10 rows); replay is not limited.", valueName: "N"))
    var maxRowsPerSecond: Int?

    @Option(help: ArgumentHelp("Before each chunk, time taking the source's write lock (BEGIN IMMEDIATE; ROLLBACK); while it takes longer than N ms, copy nothing and wait (progress and `status` say so).", valueName: "N"))
    var maxWriteLagMs: Int?

    @Flag(help: "Resolve the plan and the target's schema and run the preflight; print what the target would get (tables, indexes, triggers and views at cutover, what is not carried) and change nothing. Exits 1 when the preflight finds rows the target would refuse.")
    var dryRun = false

    func validate() throws {
        if let n = maxRowsPerSecond, n < 1 { throw ValidationError("--max-rows-per-second must be at least 1 (got \(n))") }
        if let n = maxWriteLagMs, n < 1 { throw ValidationError("--max-write-lag-ms must be at least 1 (got \(n))") }
    }

    func run() throws {
        try reportingErrors(json: json) {
            let console = Console(json: json, verbosity)
            let p = try plan.load()
            console.detail("plan \(plan.plan): \(p.source) → \(p.displayTarget), \(p.tables.count) table\(p.tables.count == 1 ? "" : "s"), log \(p.log)")
            if dryRun {
                try printDryRun(try Migrator.dryRun(plan: p))
                return
            }
            // SIGINT/SIGTERM stop the run at its next safe point (exit 130/143).
            Interruption.install()
            var options = MigratorOptions(follow: follow)
            options.acceptGap = acceptGap
            options.maxRowsPerSecond = maxRowsPerSecond
            options.maxWriteLagMillis = maxWriteLagMs
            let migrator = try Migrator.open(plan: p, options: options)
            defer { try? migrator.close() }
            console.detail("opened the migration\(follow ? "; following after catch-up until interrupted" : "")")
            // What the target will not get, before anything is copied (the
            // stored schema's, so a resumed run says the same).
            for o in migrator.notCarried { console.note(omissionLine(o)) }
            let view = console.progress()
            let live = LiveProgressLines(json: json, planArgument: "--plan \(plan.plan)")
            let summary = try migrator.run { view.show($0); live.show($0) }
            view.finish()
            console.detail("the run ended after \(String(format2: summary.totalSeconds)) s (copy \(String(format2: summary.copySeconds)) s)")
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

