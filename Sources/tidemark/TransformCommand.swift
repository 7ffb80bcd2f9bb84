import ArgumentParser
import TidemarkCore
import TidemarkLog

struct TransformCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transform",
        abstract: "Change a live table's shape (types, columns, constraints, keys' order, STRICT) with a pause of milliseconds.",
        discussion: """
            The options are sqlite-utils transform's. Writes its plan and log beside the database \
            (DB.tidemark/TABLE/plan.yml and …/log), then captures writes, copies the table into a shadow \
            of the new shape while replaying them, verifies, and swaps the shadow in under the table's name \
            in one short write transaction (the old table is kept aside for `tidemark rollback --plan …`; \
            `tidemark finish --drop-source --plan …` drops it). Safe to stop or kill at any moment: running \
            the same command again resumes. `status`, `rollback` and `finish` take the plan with --plan.
            """
    )

    @Argument(help: "The SQLite database file.")
    var db: String

    @Argument(help: "The table to transform.")
    var table: String

    @Option(name: .customLong("type"), parsing: .upToNextOption, help: ArgumentHelp("Change column COL's type: --type COL TYPE (INTEGER, TEXT, FLOAT, REAL, BLOB or ANY).", valueName: "COL TYPE"))
    var types: [String] = []

    @Option(help: ArgumentHelp("Drop this column.", valueName: "COL"))
    var drop: [String] = []

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Rename a column: --rename OLD NEW.", valueName: "OLD NEW"))
    var rename: [String] = []

    @Option(name: [.customShort("o"), .customLong("column-order")], help: ArgumentHelp("Put this column first (repeat for the order).", valueName: "COL"))
    var columnOrder: [String] = []

    @Option(help: ArgumentHelp("Set this column NOT NULL.", valueName: "COL"))
    var notNull: [String] = []

    @Option(help: ArgumentHelp("Remove NOT NULL from this column.", valueName: "COL"))
    var notNullFalse: [String] = []

    @Option(help: ArgumentHelp("The primary key column (repeat for a compound key); it must stay the current key.", valueName: "COL"))
    var pk: [String] = []

    @Flag(help: "Remove the primary key (refused: the online rebuild is keyed by it).")
    var pkNone = false

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Set a column's default: --default COL VALUE.", valueName: "COL VALUE"))
    var `default`: [String] = []

    @Option(help: ArgumentHelp("Remove this column's default.", valueName: "COL"))
    var defaultNone: [String] = []

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Add a foreign key: --add-foreign-key COL OTHER_TABLE OTHER_COL.", valueName: "COL OTHER_TABLE OTHER_COL"))
    var addForeignKey: [String] = []

    @Option(help: ArgumentHelp("Drop the foreign keys this column takes part in.", valueName: "COL"))
    var dropForeignKey: [String] = []

    @Flag(inversion: .prefixedNo, help: "Make the table STRICT, or not (default: keep its mode).")
    var strict: Bool?

    @Flag(help: "Print the plan and the new CREATE TABLE, and stop (nothing is changed).")
    var sql = false

    @Option(help: ArgumentHelp("The whole new definition, for any shape the options cannot say (named like the table).", valueName: "CREATE TABLE …"))
    var create: String?

    @Option(name: .customLong("set"), parsing: .upToNextOption, help: ArgumentHelp("Fill a column with a SQLite expression over the old row: --set COL EXPR.", valueName: "COL EXPR"))
    var sets: [String] = []

    @Option(parsing: .upToNextOption, help: ArgumentHelp("How rollback fills old column COL from the new row: --inverse COL EXPR (needed with --set on an existing column).", valueName: "COL EXPR"))
    var inverse: [String] = []

    @Option(help: ArgumentHelp("Accept a type change of this column whose values do not all convert back unchanged.", valueName: "COL"))
    var allowLossy: [String] = []

    @Flag(help: "Stop once the new table is copied and verified; swap later with `tidemark cutover --plan …`.")
    var noCutover = false

    @Option(help: "Cutover: wait until the oldest unapplied change is younger than this.")
    var maxLagMs: Int = 500

    @Option(help: "Cutover: give up (changing nothing) if writers would be paused longer than this.")
    var maxPauseMs: Int = 2_000

    @Option(help: "Cutover: give up after this many seconds of waiting for the lag.")
    var timeout: Double = 60

    @Option(help: "Rows per copied and verified chunk (each copied chunk is one short write transaction writers wait behind).")
    var chunkRows: Int = 1_000

    @Option(help: "After each copy or replay step, pause this many times the step's duration, so writers waiting on their busy timeout get the lock (0: copy flat out).")
    var yieldRatio: Double = 1

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    /// Options ArgumentParser collects as flat lists, cut into groups of
    /// `arity` (`--type price REAL` → (price, REAL)).
    static func groups(_ values: [String], _ arity: Int, _ option: String, _ spelling: String) throws -> [[String]] {
        guard values.count % arity == 0 else {
            throw ValidationError("\(option) takes \(arity) values (\(option) \(spelling)); got \(values.joined(separator: " "))")
        }
        return stride(from: 0, to: values.count, by: arity).map { Array(values[$0..<($0 + arity)]) }
    }

    func options() throws -> TransformOptions {
        var o = TransformOptions()
        o.types = try Self.groups(types, 2, "--type", "COL TYPE").map { .init($0[0], $0[1]) }
        o.drops = drop
        o.renames = try Self.groups(rename, 2, "--rename", "OLD NEW").map { .init($0[0], $0[1]) }
        o.columnOrder = columnOrder
        o.notNull = notNull
        o.notNullFalse = notNullFalse
        o.pk = pk
        o.pkNone = pkNone
        o.defaults = try Self.groups(`default`, 2, "--default", "COL VALUE").map { .init($0[0], $0[1]) }
        o.defaultNone = defaultNone
        o.addForeignKeys = try Self.groups(addForeignKey, 3, "--add-foreign-key", "COL OTHER_TABLE OTHER_COL").map { .init($0[0], $0[1], $0[2]) }
        o.dropForeignKeys = dropForeignKey
        o.strict = strict
        o.create = create
        o.sets = try Self.groups(sets, 2, "--set", "COL EXPR").map { .init($0[0], $0[1]) }
        o.inverses = try Self.groups(inverse, 2, "--inverse", "COL EXPR").map { .init($0[0], $0[1]) }
        o.allowLossy = allowLossy
        return o
    }

    func validate() throws {
        try checkDatabasePath(db, "the database")
        _ = try options()
        guard chunkRows >= 1 else { throw ValidationError("--chunk-rows must be at least 1") }
        guard yieldRatio >= 0, yieldRatio <= 100 else { throw ValidationError("--yield-ratio must be from 0 to 100") }
    }

    func run() throws {
        try reportingErrors(json: json) {
            let prepared = try Transform.prepare(db: db, table: table, options: try options())
            if sql {
                printSQL(prepared)
                return
            }
            Interruption.install()
            var settings = Transform.Settings()
            settings.cutover = !noCutover
            settings.maxLagMillis = maxLagMs
            settings.maxPauseMillis = maxPauseMs
            settings.timeoutSeconds = timeout
            settings.chunkRows = chunkRows
            settings.yieldRatio = yieldRatio
            nonisolated(unsafe) let console = Console(json: json, verbosity)
            nonisolated(unsafe) let view = console.progress()
            console.note(prepared.resuming ? "resuming the transform of \(prepared.table) (\(prepared.phase.rawValue)); plan: \(prepared.planPath)"
                                           : "transforming \(prepared.table); plan: \(prepared.planPath)")
            for n in prepared.shape?.notes ?? [] { console.note("note: \(n)") }
            let report = try Transform.run(prepared, settings: settings) { event in
                switch event {
                case .copy(let p): view.show(p)
                case .verify(let table, let rows): view.verifying(table, rows: rows)
                case .step(let s):
                    view.finish()
                    console.detail(s)
                }
            }
            printReport(report, prepared)
        }
    }

    func printSQL(_ p: Transform.Prepared) {
        if json {
            var o = JSONObject()
            o.set("table", p.table)
            o.set("plan_path", p.planPath)
            o.set("plan", p.planText)
            o.set("resuming", p.resuming)
            o.set("create", p.shape?.createSQL)
            o.set("notes", array: (p.shape?.notes ?? []).map(JSONObject.quote))
            print(o.text)
            return
        }
        print("-- nothing was changed; `tidemark transform` without --sql would \(p.resuming ? "resume" : "write") \(p.planPath):")
        print(p.planText, terminator: "")
        if let s = p.shape {
            print("-- the new definition of \(s.table) (created as its shadow, swapped in at cutover):")
            print(s.createSQL + ";")
            for n in s.notes { print("-- note: \(n)") }
        }
    }

    func printReport(_ r: Transform.Report, _ p: Transform.Prepared) {
        let plan = "--plan \(r.planPath)"
        if json {
            var o = JSONObject()
            o.set("table", p.table)
            o.set("plan_path", r.planPath)
            o.set("phase", r.phase.rawValue)
            o.set("already_done", r.alreadyDone)
            o.set("rows_copied", r.rowsCopied)
            o.set("changes_replayed", r.changesReplayed)
            o.set("verified_rows", r.verifiedRows)
            o.set("cutover_lsn", r.cutover?.lsn.rawValue)
            if let c = r.cutover { o.set("pause_ms", c.pauseMillis) } else { o.set("pause_ms", raw: "null") }
            o.set("seconds", r.seconds)
            o.set("notes", array: r.notes.map(JSONObject.quote))
            o.set("not_carried", array: r.notCarried.map(JSONObject.quote))
            print(o.text)
            return
        }
        for n in r.notCarried { print("not carried: \(n)") }
        if r.alreadyDone && r.phase == .finished {
            print("\(p.table) was already transformed with these options, and finished; nothing to do")
        } else if r.alreadyDone {
            print("\(p.table) is already transformed (cut over); keep it with `tidemark finish \(plan)` or undo it with `tidemark rollback \(plan)`")
        } else if let c = r.cutover {
            print("transformed \(p.table): \(r.rowsCopied) rows copied, \(r.changesReplayed) changes replayed, \(r.verifiedRows) rows verified; swapped at LSN \(c.lsn), writers paused \(String(format2: c.pauseMillis)) ms; \(String(format2: r.seconds)) s")
            print("the old table is kept aside: `tidemark rollback \(plan)` swaps back, `tidemark finish --drop-source \(plan)` drops it")
        } else {
            print("\(p.table) copied and verified (\(r.verifiedRows) rows); swap it in with `tidemark cutover \(plan)`")
        }
    }
}
