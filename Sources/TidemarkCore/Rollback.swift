import TidemarkLog
import TidemarkSQLite

/// What `tidemark rollback` did (or, with `dryRun`, would do).
public struct RollbackReport: Sendable {
    public enum Kind: String, Sendable {
        /// Before cutover: what Tidemark created was removed; the source was untouched.
        case abandoned
        /// After cutover: the target's changes were replayed back and the source is authoritative again.
        case reversed
        case nothingToDo = "nothing-to-do"
    }
    public var kind: Kind
    public var droppedTables: [String]
    public var changesReplayedBack: Int
    /// Every object removed (or, in a dry run, that would be), as
    /// `<kind> <name> in <database>`.
    public var removed: [String] = []
    public var dryRun: Bool = false
}

extension MigrationError.Code {
    /// A rollback was interrupted after it fenced the target.
    public static let rollbackPending = MigrationError.Code("rollback-pending")
    /// The migration was rolled back; only a new `migrate` moves on.
    public static let rolledBack = MigrationError.Code("rolled-back")
    /// `finish` before a cutover.
    public static let notCutOver = MigrationError.Code("not-cut-over")
}

/// Undoing a migration.
///
/// Before cutover it is always safe: capture is removed from the source
/// first (its triggers name the columns an in-place migration added, which
/// SQLite then refuses to drop), then what the migration created in the
/// target; the source's data is untouched. An "abandoning" journal written
/// first makes a crash anywhere in between finished by the next `rollback`
/// or `migrate`, never resumed as if capture had run throughout.
///
/// After cutover the target has taken writes; they were recorded by reverse
/// capture (installed at cutover) and are replayed into the source through
/// each table's inverse mapping (plain column copies invert themselves;
/// computed columns need an `inverse:` in the plan), then the source's switch
/// record is removed (the commit point). With two files this is journaled
/// like a cutover (see ``RollbackJournal``): the target is fenced and
/// journaled "prepared" first, so between the two commits no write reaches
/// a store nobody reads, and the next `rollback` finishes (or `cutover`
/// undoes) a rollback a crash interrupted.
public enum Rollback {
    /// - Parameter dryRun: change nothing; report every object a rollback
    ///   before cutover would remove (after cutover: what it would replay).
    public static func run(plan edited: Plan, dryRun: Bool = false) throws -> RollbackReport {
        if edited.isPostgres { return try PostgresRollback.run(plan: edited, dryRun: dryRun) }
        // The way back never depends on an edited plan file: work from the
        // plan the migration stored (lifecycle), or the file when none is.
        let plan = try StoredPlan.forWayBack(edited)
        guard FileSystemCheck.exists(plan.source) else { throw MigrationError(.missingTable, "source database \(plan.source) does not exist") }
        let mode: Connection.OpenMode = dryRun ? .readOnly : .readWrite
        let source = try Connection(path: plan.source, mode: mode)
        let targetExists = FileSystemCheck.exists(plan.target)
        let target = targetExists ? try Connection(path: plan.target, mode: mode) : nil
        if let target, !dryRun { _ = try CutoverJournal.settle(plan: plan, source: source, target: target) }
        let state = try target.flatMap { try StateTables.load($0) }
        let switched = try SwitchRecord.read(source)
        let journal = try target.flatMap { try RollbackJournal.read($0) }
        let phase: RollbackJournal.Phase? = journal?.phase
        let cutOver: Bool = switched != nil || state?.cutover?.kind == .done
        let pending: Bool = phase == .prepared
        let committed: Bool = phase == .committed
        if pending || (!committed && cutOver) {
            guard let target, let state else {
                throw MigrationError(.foreignState, "\(plan.source) records a cutover to \(plan.displayTarget), but that target has no migration state; restore it before rolling back")
            }
            if dryRun {
                return RollbackReport(kind: .reversed, droppedTables: [], changesReplayedBack: 0, removed: [], dryRun: true)
            }
            return try reverse(plan: plan, source: source, target: target, state: state, switched: switched != nil)
        }
        return try abandon(plan: plan, source: source, target: target, dryRun: dryRun)
    }

    /// Removes every trace of a migration that is not (or no longer) cut
    /// over: the abandon of `rollback` before cutover, and what `migrate`
    /// runs on a target a rollback left behind. Idempotent; each step
    /// checks what exists.
    ///
    /// Order, and why: (1) journal "abandoning" in the target, so that a
    /// crash later is finished by the next command and never resumed as a
    /// migration whose capture was removed; (2) capture off the source (its
    /// triggers name in-place columns; changes after this are not needed);
    /// (3) reverse capture off a separate target; (4) in one target
    /// transaction: guards, created tables, added columns, state, journal;
    /// (5) the log consumer. The log itself is kept: a new capture
    /// installation continues its LSNs.
    static func abandon(plan: Plan, source: Connection, target: Connection?, dryRun: Bool) throws -> RollbackReport {
        let q = quoteIdentifier
        let sourceName = plan.source, targetName = plan.target
        var removed: [String] = []
        var dropped: [String] = []
        let state = try target.flatMap { try StateTables.load($0) }
        let hasState = try target.map { try StateTables.exists($0) } ?? false
        let journal = try target.flatMap { try RollbackJournal.read($0) }
        // What exists, so a dry run lists exactly what a run removes.
        let sourceCapture = try Capture.isInstalled(source)
        let targetCapture = try !plan.isSameFile && (target.map { try Capture.isInstalled($0) } ?? false)
        if sourceCapture { removed += try captureObjects(source).map { "\($0) in \(sourceName)" } }
        if targetCapture, let target { removed += try captureObjects(target).map { "\($0) in \(targetName)" } }
        var targetDrops: [(sql: String, what: String)] = []
        if let target, hasState || journal != nil {
            for t in try StateTables.createdTables(target) where try Schema.table(named: t, in: target) != nil {
                targetDrops.append(("DROP TABLE IF EXISTS \(q(t))", "table \(t)"))
                dropped.append(t)
            }
            for (table, columns) in try StateTables.addedColumnsByTarget(target) {
                guard let info = try Schema.table(named: table, in: target) else { continue }
                for c in columns where info.columns.contains(where: { $0.name.lowercased() == c.lowercased() }) {
                    targetDrops.append(("ALTER TABLE \(q(table)) DROP COLUMN \(q(c))", "column \(table).\(c)"))
                    dropped.append("\(table).\(c)")
                }
            }
            // Adopted in-place columns existed before the migration (empty):
            // they stay, emptied again, so that migrating again adopts them.
            for (table, columns) in try StateTables.adoptedColumnsByTarget(target) {
                guard let info = try Schema.table(named: table, in: target) else { continue }
                for c in columns where info.columns.contains(where: { $0.name.lowercased() == c.lowercased() }) {
                    targetDrops.append(("UPDATE \(q(table)) SET \(q(c)) = NULL", "values of adopted column \(table).\(c) (kept, emptied)"))
                }
            }
            // Fences a rollback after cutover left on the target tables
            // (those of dropped tables go with them) and guards of an
            // in-place table.
            let guards = try target.prepare("SELECT name FROM main.sqlite_schema WHERE type = 'trigger' AND name LIKE '\\_tidemark\\_guard\\_%' ESCAPE '\\'").rows { $0.columnText(0) }
            let droppedLower = Set(dropped.map { $0.lowercased() })
            for g in guards {
                let owner = try target.prepare("SELECT tbl_name FROM main.sqlite_schema WHERE type = 'trigger' AND name = ?1")
                try owner.bind([.text(g)])
                let table = try owner.step() ? owner.columnText(0) : ""
                if droppedLower.contains(table.lowercased()) { continue }
                targetDrops.insert(("DROP TRIGGER IF EXISTS \(q(g))", "trigger \(g)"), at: 0)
            }
            for t in [StateTables.tables, StateTables.migration, RollbackJournal.table, SchemaStore.table] where try Schema.table(named: t, in: target) != nil {
                targetDrops.append(("DROP TABLE IF EXISTS \(t)", "table \(t)"))
            }
            // Triggers and views a cutover created that a rollback did not
            // get to remove (its target side was interrupted): first, while
            // the schema store that lists them is still there. Views are not
            // dropped with the tables they read.
            targetDrops.insert(contentsOf: try CutoverSchema.dropStatements(target), at: 0)
        }
        removed += targetDrops.map { "\($0.what) in \(targetName)" }
        let consumer = "migration-" + Migrator.consumerSuffix(plan.displayTarget)
        let hasConsumer = try Self.hasConsumer(plan: plan, consumer)
        if hasConsumer { removed.append("log consumer \(consumer) in \(plan.log)") }
        let kind: RollbackReport.Kind = removed.isEmpty ? .nothingToDo : .abandoned
        if dryRun || kind == .nothingToDo {
            return RollbackReport(kind: kind, droppedTables: dropped, changesReplayedBack: 0, removed: removed, dryRun: dryRun)
        }
        // 1.
        if let target, hasState, journal?.phase != .abandoning {
            try target.transaction(.immediate) {
                try RollbackJournal.write(target, RollbackJournal.Entry(phase: .abandoning, fromLSN: 0, throughLSN: 0, fromLog: false))
            }
        }
        // 2, 3.
        if sourceCapture { try Capture.uninstall(connection: source, force: true) }
        if targetCapture, let target { try Capture.uninstall(connection: target, force: true) }
        _ = state
        // 4.
        if let target, !targetDrops.isEmpty || hasState {
            try target.transaction(.immediate) {
                for d in targetDrops { try target.execute(d.sql) }
                // The journal written in step 1 goes last, with the state.
                try target.execute("DROP TABLE IF EXISTS main.\(RollbackJournal.table)")
            }
        }
        // 5.
        if hasConsumer { try Consumers(LogDirectory(plan.log)).unregister(consumer) }
        return RollbackReport(kind: .abandoned, droppedTables: dropped, changesReplayedBack: 0, removed: removed, dryRun: false)
    }

    static func hasConsumer(plan: Plan, _ name: String) throws -> Bool {
        guard LogDirectory(plan.log).exists else { return false }
        let position: LSN? = try Consumers(LogDirectory(plan.log)).position(of: name)
        return position != nil
    }

    /// The capture objects in `c` (triggers, outbox, metadata), for reports.
    static func captureObjects(_ c: Connection) throws -> [String] {
        guard try Capture.isInstalled(c) else { return [] }
        var out: [String] = []
        let tables = try c.prepare("SELECT DISTINCT tbl FROM main._tidemark_tables ORDER BY tbl").rows { $0.columnText(0) }
        for t in tables {
            for kind in ["insert", "update", "delete"] {
                let name = "_tidemark_\(t)_\(kind)"
                let s = try c.prepare("SELECT count(*) FROM main.sqlite_schema WHERE type = 'trigger' AND name = ?1")
                try s.bind([.text(name)])
                _ = try s.step()
                if s.columnInt64(0) > 0 { out.append("trigger \(name)") }
            }
        }
        out += ["table _tidemark_outbox", "table _tidemark_tables", "table _tidemark_meta"]
        return out
    }

    /// Before a new `migrate`: a target a rollback (or an interrupted
    /// abandon) left behind is cleared, so the new migration starts fresh —
    /// new capture installation continuing the log's LSNs, fresh copy —
    /// instead of resuming a state whose capture was removed. A rollback
    /// still between its two commits is refused: `rollback` finishes it,
    /// `cutover` undoes it.
    public static func clearForNewMigration(plan: Plan) throws {
        guard FileSystemCheck.exists(plan.source), FileSystemCheck.exists(plan.target) else { return }
        let probe = try Connection(path: plan.target, mode: .readOnly)
        let journal = try RollbackJournal.read(probe)
        let state = try StateTables.load(probe)
        try probe.close()
        guard journal != nil || state?.cutover?.kind == .rolledBack else { return }
        let source = try Connection(path: plan.source, mode: .readWrite)
        let target = try Connection(path: plan.target, mode: .readWrite)
        if journal?.phase == .prepared {
            if try SwitchRecord.read(source) != nil {
                throw MigrationError(.rollbackPending, "a rollback of \(plan.displayTarget) was interrupted (the target is fenced, the source still records the cutover); run `tidemark rollback` to finish it, or `tidemark cutover` to keep the target")
            }
            try RollbackJournal.finishCommitted(target)
        }
        _ = try abandon(plan: plan, source: source, target: target, dryRun: false)
    }

    /// Before a cutover: a rollback interrupted before its commit point is
    /// undone (the target stays authoritative: its fence comes off); one
    /// that committed is finished, and the cutover refused — the migration
    /// was rolled back, and `migrate` starts a new one.
    public static func resolveBeforeCutover(plan: Plan) throws {
        guard FileSystemCheck.exists(plan.source), FileSystemCheck.exists(plan.target) else { return }
        let source = try Connection(path: plan.source, mode: .readWrite)
        let target = try Connection(path: plan.target, mode: .readWrite)
        let journal = try RollbackJournal.read(target)
        let state = try StateTables.load(target)
        if journal?.phase == .prepared {
            if try SwitchRecord.read(source) != nil {
                try RollbackJournal.undo(plan: plan, target: target, state: state)
                return
            }
            try RollbackJournal.finishCommitted(target)
        }
        if try RollbackJournal.read(target)?.phase == .committed || state?.cutover?.kind == .rolledBack {
            throw MigrationError(.rolledBack, "the migration into \(plan.displayTarget) was rolled back; run `tidemark migrate` to start a new one (it clears the old target), then cut over")
        }
        if journal?.phase == .abandoning {
            throw MigrationError(.rolledBack, "the migration into \(plan.displayTarget) was being abandoned; run `tidemark rollback` to finish that, then `tidemark migrate`")
        }
    }

    /// An inverse statement per mapped table: upsert into the source from a
    /// target after image, and delete by key.
    struct Inverse {
        let mapping: TableMapping
        let upsert: Statement
        let delete: Statement
        let targetColumns: [String]

        /// Which source column each target write sets, and from what.
        ///
        /// Invariant: every source column whose value a target write can
        /// change is produced. Plain and renamed columns invert themselves
        /// (source column ← its target column); `inverse:` entries override
        /// or add (they are needed only for computed columns). A source
        /// column that a computed target column replaced (same name) or is
        /// computed from, and that no plain column carries, must have an
        /// `inverse:` entry: without one the target's writes to it would be
        /// lost, so rollback refuses up front. Source columns the plan
        /// dropped (nothing in the target derives from them) need none: an
        /// insert leaves them to their DEFAULT (or NULL), an update leaves
        /// them as they are — unless one is NOT NULL without a DEFAULT, where
        /// an insert could not be carried back and rollback refuses too.
        init(_ m: TableMapping, plan: TablePlan, source: Connection, targetInfo: TableInfo) throws {
            try self.init(m, plan: plan, source: source, targetColumns: targetInfo.dataColumns.map(\.name))
        }

        /// - Parameter targetColumns: the target table's columns, in order.
        init(_ m: TableMapping, plan: TablePlan, source: Connection, targetColumns: [String]) throws {
            mapping = m
            let q = quoteIdentifier
            var pairs: [(String, String)] = []  // source column, expression over target columns
            func index(_ column: String) -> Int? { pairs.firstIndex { $0.0.lowercased() == column.lowercased() } }
            for c in m.columns {
                if let src = c.sourceColumn, index(src) == nil { pairs.append((src, q(c.target))) }
            }
            for e in plan.inverse ?? [] {
                if let i = index(e.target) { pairs[i].1 = e.expression } else { pairs.append((e.target, e.expression)) }
            }
            let sourceColumns = m.source.dataColumns
            for c in m.columns where c.sourceColumn == nil {
                let named = Set(SQLIdentifiers.scan(c.expression).map { $0.lowercased() })
                for s in sourceColumns where index(s.name) == nil
                    && (s.name.lowercased() == c.target.lowercased() || named.contains(s.name.lowercased())) {
                    let how = s.name.lowercased() == c.target.lowercased() ? "replaces source column \(s.name)" : "is computed from source column \(s.name)"
                    throw MigrationError(.noInverse, "target column \(m.targetTable).\(c.target) (`\(c.expression)`) \(how), which no plain column carries back; declare `inverse:` for \(m.source.name) in the plan (\(s.name): an expression over target columns) to roll back after cutover")
                }
            }
            for k in m.sourceKey where index(k) == nil {
                throw MigrationError(.noInverse, "the inverse of \(m.source.name) must produce key column \(k); declare it under `inverse:` in the plan")
            }
            for s in sourceColumns where index(s.name) == nil && s.notNull && s.defaultSQL == nil {
                throw MigrationError(.noInverse, "source column \(m.source.name).\(s.name) is NOT NULL without a DEFAULT and the plan does not carry it, so a row inserted in the target could not be rolled back; declare `inverse:` for \(m.source.name) in the plan (\(s.name): an expression over target columns, or a constant)")
            }
            self.targetColumns = targetColumns
            let row = targetColumns.enumerated().map { "?\($0.offset + 1) AS \(q($0.element))" }.joined(separator: ", ")
            let cols = pairs.map { q($0.0) }.joined(separator: ", ")
            let exprs = pairs.map { "(\($0.1))" }.joined(separator: ", ")
            let nonKey = pairs.filter { p in !m.sourceKey.contains { $0.lowercased() == p.0.lowercased() } }
            let key = m.sourceKey.map(q).joined(separator: ", ")
            let conflict = nonKey.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + nonKey.map { "\(q($0.0)) = excluded.\(q($0.0))" }.joined(separator: ", ")
            upsert = try source.prepare("INSERT INTO \(q(m.source.name))(\(cols)) SELECT \(exprs) FROM (SELECT \(row)) WHERE true ON CONFLICT(\(key)) \(conflict)")
            delete = try source.prepare("DELETE FROM \(q(m.source.name)) WHERE " + m.sourceKey.enumerated().map { "\(q($0.element)) = ?\($0.offset + 1)" }.joined(separator: " AND "))
        }

        func apply(_ r: ChangeRecord) throws {
            // A key change: the old key goes, the new key takes the after image.
            if let (delete, insert) = r.splitKeyChange() {
                try apply(delete)
                try apply(insert)
                return
            }
            if r.operation == .delete {
                delete.reset()
                try delete.bind(mapping.targetKey.map { k in r.key.first { $0.name.lowercased() == k.lowercased() }?.value ?? .null })
                try delete.execute()
            } else {
                upsert.reset()
                upsert.clearBindings()
                for (i, c) in targetColumns.enumerated() {
                    if let f = r.after?.first(where: { $0.name == c }) { try upsert.bind(f.value, at: Int32(i + 1)) }
                }
                try upsert.execute()
            }
        }
    }

    static func reverse(plan: Plan, source: Connection, target: Connection, state: MigrationState, switched: Bool) throws -> RollbackReport {
        let mappings = try PlanResolver.resolve(plan, source: source, target: source, ownedColumns: try StateTables.addedColumns(target))
        if let m = mappings.first(where: { $0.shape == .inPlace }) {
            throw MigrationError(.noInverse, "\(m.source.name) was migrated in place; rolling back an in-place migration after cutover is not supported — the old columns are intact, drop the guard triggers _tidemark_guard_\(m.source.name)_insert and _update to write them again")
        }
        let sameFile = plan.isSameFile
        // Same file: the source tables are written through the target
        // connection, which holds the file's write lock below (statements of
        // another connection would wait on that lock and fail busy).
        let writer = sameFile ? target : source
        // Swapped tables (one file): the new table has the real name and its
        // writes were captured under it; the swap back happens inside the
        // transaction below, and their inverses are prepared after it (they
        // write the old table, which has the real name only then).
        let swaps = switched ? try mappings.filter { m in
            try TableSwap.isSwap(m, plan: plan) && TableSwap.isSwapped(m.source.name, in: target)
        } : []
        func isSwapped(_ m: TableMapping) -> Bool { swaps.contains { $0.source.name == m.source.name } }
        var inverses: [Inverse] = []
        var swapColumns: [(TableMapping, [String])] = []
        for m in mappings {
            let live = isSwapped(m) ? m.source.name : m.targetTable
            guard let info = try Schema.table(named: live, in: target) else {
                throw MigrationError(.missingTable, "target table \(live) is missing from \(plan.displayTarget)")
            }
            if isSwapped(m) { swapColumns.append((m, info.dataColumns.map(\.name))); continue }
            inverses.append(try Inverse(m, plan: plan.tables.first { $0.source.lowercased() == m.source.name.lowercased() }!, source: writer, targetInfo: info))
        }
        var byTarget = Dictionary(inverses.map { ($0.mapping.targetTable, $0) }, uniquingKeysWith: { a, _ in a })
        // The tables whose changes are carried back, as the log names them.
        let changedTables = Set(byTarget.keys).union(swaps.map(\.source.name))
        let from = LSN(UInt64(max(0, state.reverseFromSeq ?? 0)))

        // Two files, step 1 — fence and journal the target (its own commit):
        // from here no application write reaches the target, so the reverse
        // changes are final, and whatever happens next no write lands where
        // nobody reads: the source stays guarded until its commit below.
        var journal = try RollbackJournal.read(target)
        if !sameFile && journal?.phase != .prepared {
            try target.transaction(.immediate) {
                try fence(plan: plan, mappings: mappings, target: target)
                let through = try Capture.isInstalled(target) ? try Capture.lastCapturedSeq(target) : Int64(from.rawValue)
                let bound = try Capture.boundLog(target) == Capture.canonicalLogPath(plan.log)
                let entry = RollbackJournal.Entry(phase: .prepared, fromLSN: Int64(from.rawValue), throughLSN: max(through, Int64(from.rawValue)), fromLog: bound)
                try RollbackJournal.write(target, entry)
                journal = entry
            }
        }
        CrashHook.reached(.rollbackFenced)
        if !sameFile && switched {
            // Step 2 — ship the target's changes into the migration's log (one
            // timeline: the next capture installation continues after them),
            // and take capture off the guarded source, whose changes are all
            // in the log since the cutover (so the rollback's own writes below
            // are not captured a second time under older LSNs).
            if let journal, journal.fromLog { try shipReverse(plan: plan, target: target, through: LSN(UInt64(journal.throughLSN))) }
            if try Capture.isInstalled(source) { try Capture.uninstall(connection: source, force: true) }
            CrashHook.reached(.rollbackShipped)
        }

        var replayed = 0
        var removedObjects: [String] = []
        // The source's constraints during the reverse apply: foreign keys
        // off, as the target runs during replay. The changes come in the
        // order the target committed them, so UNIQUE and CHECK hold at every
        // step as they did there; a parent and its children may arrive in
        // any order (a cascade on the target arrives as changes of its own,
        // which an enforcing connection would cascade a second time). The
        // end state is the target's, whose foreign keys the application kept.
        // (A no-op inside a transaction: set before BEGIN.)
        try writer.execute("PRAGMA foreign_keys = OFF")
        if !swaps.isEmpty { try TableSwap.prepareConnection(target) }
        defer { if !swaps.isEmpty { try? TableSwap.restoreConnection(target) } }
        // Pause target writers (two files: the fence already refuses them;
        // the lock keeps a shipper from deleting outbox rows while they are
        // read), then switch the source back in one source transaction.
        try target.execute("BEGIN IMMEDIATE")
        do {
            var changes: [ChangeRecord] = []
            if switched {
                let through: LSN = journal.map { LSN(UInt64($0.throughLSN)) } ?? LSN(UInt64.max)
                let readLog = sameFile || journal?.fromLog == true
                var outboxFrom = from
                if readLog && LogDirectory(plan.log).exists {
                    // Reverse capture continues the log: a shipper may have
                    // moved some of the target's changes into it and deleted
                    // them from the outbox. A change is in the log up to its
                    // head, or else still in the outbox (the shipper deletes
                    // only what the log holds, and cannot delete while this
                    // transaction holds the target's write lock), so the log
                    // up to its head and the outbox after it are all of them.
                    let reader = try LogReader(directory: plan.log)
                    let head = try reader.headLSN()
                    if head > from {
                        let cursor = try reader.cursor(from: from.next, tables: changedTables)
                        while let r = try cursor.next(), r.lsn <= head, r.lsn <= through { changes.append(r) }
                        outboxFrom = head
                    }
                }
                if try Capture.isInstalled(target) {
                    let decoder = try OutboxDecoder(connection: target)
                    let pending: [ChangeRecord] = try decoder.read(from: target, after: outboxFrom, limit: Int.max)
                    for r in pending where r.lsn <= through { changes.append(r) }
                }
            }
            // Without the source's switch record an earlier rollback committed
            // the source side (the commit point) and stopped before the
            // target's: its changes are in the source already; replaying them
            // again could undo newer source writes. Only the target's fence
            // and journal remain to be written.
            if !sameFile { try source.execute("BEGIN IMMEDIATE") }
            if switched {
                for m in mappings { for sql in Guards.dropSQL(m) { try writer.execute(sql) } }
                // The swap back; then the old table takes the new one's changes.
                for m in swaps {
                    try TableSwap.swapBack(m, in: target)
                    let columns = swapColumns.first { $0.0.source.name == m.source.name }?.1 ?? []
                    let inverse = try Inverse(m, plan: plan.tables.first { $0.source.lowercased() == m.source.name.lowercased() }!,
                                              source: writer, targetColumns: columns)
                    byTarget[m.source.name] = inverse
                }
                // The application's own triggers on the source tables must
                // not fire on the changes carried back: what the target's
                // triggers did is among those changes already (or, one file,
                // already written). They are dropped and recreated around
                // the apply, inside this transaction, so no one ever sees
                // them missing.
                let suspended = try suspendApplicationTriggers(writer, tables: mappings.map(\.source.name))
                for r in changes {
                    guard let inv = byTarget[r.table] else { continue }
                    do {
                        try inv.apply(r)
                    } catch let e as SQLiteError {
                        // A change the source refuses (a constraint the
                        // target does not have) stops the rollback whole: this
                        // transaction rolls back, nothing is skipped.
                        let key = r.key.map { "\($0.name)=\($0.value)" }.joined(separator: ", ")
                        // Changes are carried back one by one, in order, so a
                        // later fix of the row in the target does not help.
                        let next = sameFile
                            ? "nothing was changed and \(plan.displayTarget) stays authoritative"
                            : "nothing was carried back and \(plan.displayTarget) is fenced: `tidemark cutover` keeps it (lifts the fence)"
                        let advice = "the source's constraints are stricter than the target's; loosen that one in the source, then run `tidemark rollback` again"
                        throw MigrationError(.constraint, "rollback: \(inv.mapping.source.name) refused the target's change of \(r.table) (\(key)) at LSN \(r.lsn): \(e.message); \(next); \(advice)")
                    }
                    replayed += 1
                }
                for sql in suspended { try writer.execute(sql) }
                // The source never hands out an id the target used.
                try CutoverSchema.moveSequencesBack(writer: writer, target: target)
                try writer.execute("DROP TABLE IF EXISTS \(SwitchRecord.table)")
            }
            // The triggers and views the cutover created in the target go
            // (a replaced view gets the source's definition back); in the
            // transaction that journals the rollback committed.
            removedObjects = try CutoverSchema.dropObjects(target).map { "\($0) in \(plan.displayTarget)" }
            if sameFile { try fence(plan: plan, mappings: mappings, target: target) }
            CrashHook.reached(.rollbackApplied)
            var st = state
            st.cutover = st.cutover?.rolledBack ?? .rolledBack(lsn: nil, atMicros: nil, pauseMicros: nil)
            try StateTables.saveCutover(st, in: target)
            try RollbackJournal.write(target, RollbackJournal.Entry(phase: .committed, fromLSN: Int64(from.rawValue),
                                                                     throughLSN: journal?.throughLSN ?? Int64(from.rawValue), fromLog: journal?.fromLog ?? false))
            if !sameFile {
                try source.execute("COMMIT")  // the commit point
                CrashHook.reached(.rollbackSwitched)
            }
            try target.execute("COMMIT")
            if switched { LogOrigins.recordSwitch(plan: plan, from: nil, toTarget: false) }
        } catch {
            if source.isInTransaction { try? source.execute("ROLLBACK") }
            if target.isInTransaction { try? target.execute("ROLLBACK") }
            throw error
        }
        // The migration is over: stop capturing on both sides.
        if try Capture.isInstalled(source) { try Capture.uninstall(connection: source, force: true) }
        if !sameFile, try Capture.isInstalled(target) { try Capture.uninstall(connection: target, force: true) }
        return RollbackReport(kind: .reversed, droppedTables: [], changesReplayedBack: replayed, removed: removedObjects)
    }

    /// Drops the application triggers on `tables` of `c` (not Tidemark's own)
    /// and returns their SQL, to recreate them in the same transaction.
    static func suspendApplicationTriggers(_ c: Connection, tables: [String]) throws -> [String] {
        let lower = Set(tables.map { $0.lowercased() })
        let all = try c.prepare("SELECT name, tbl_name, sql FROM main.sqlite_schema WHERE type = 'trigger' AND sql IS NOT NULL AND name NOT LIKE '\\_tidemark\\_%' ESCAPE '\\' ORDER BY rowid")
            .rows { ($0.columnText(0), $0.columnText(1), $0.columnText(2)) }
        var sqls: [String] = []
        for (name, table, sql) in all where lower.contains(table.lowercased()) {
            try c.execute("DROP TRIGGER main.\(quoteIdentifier(name))")
            sqls.append(sql)
        }
        return sqls
    }

    /// Guards on the target tables: they refuse writes, naming the source.
    static func fence(plan: Plan, mappings: [TableMapping], target: Connection) throws {
        for m in mappings {
            let message = "tidemark: \(m.targetTable) was rolled back to \(plan.source) table \(m.source.name); write there"
            let literal = "'" + message.replacingOccurrences(of: "'", with: "''") + "'"
            for (op, when) in [("insert", "INSERT"), ("update", "UPDATE"), ("delete", "DELETE")] {
                try target.execute("CREATE TRIGGER IF NOT EXISTS main.\(quoteIdentifier("_tidemark_guard_\(m.targetTable)_\(op)")) BEFORE \(when) ON \(quoteIdentifier(m.targetTable)) BEGIN SELECT RAISE(ABORT, \(literal)); END")
            }
        }
    }

    /// How long a rollback waits for another process's shipper to move the
    /// target's last changes into the log.
    static let reverseShipWaitMillis = 10_000

    /// The log's appender, or nil when another process holds it.
    static func ownAppender(_ path: String) throws -> LogAppender? {
        let result: Result<LogAppender, LogError> = Result { () throws(LogError) -> LogAppender in
            try LogAppender(directory: path, options: LogOptions(durability: .commit))
        }
        switch result {
        case .success(let a): return a
        case .failure(let e):
            if e.code == .locked { return nil }
            throw e
        }
    }

    /// Ships the target's reverse changes up to `through` into the log: in
    /// this process when it can own the log's appender, or else by waiting
    /// (bounded) for the process that owns it (`tidemark capture run`).
    static func shipReverse(plan: Plan, target: Connection, through: LSN) throws {
        guard try Capture.isInstalled(target), LogDirectory(plan.log).exists else { return }
        let reader = try LogReader(directory: plan.log)
        if try reader.headLSN() >= through { return }
        guard let appender = try ownAppender(plan.log) else {
            let deadline = Clock.monotonicNanos() + UInt64(reverseShipWaitMillis) * 1_000_000
            while try reader.headLSN() < through {
                if Clock.monotonicNanos() > deadline {
                    throw MigrationError(.shippingStalled, "the log \(plan.log) is held by another process and has not reached the target's last change (LSN \(through)) in \(reverseShipWaitMillis / 1000) s; let `tidemark capture run` for \(plan.displayTarget) ship, or stop it, then run `tidemark rollback` again")
                }
                Clock.sleep(milliseconds: 5)
            }
            return
        }
        defer { try? appender.close() }
        let shipper = try Shipper(connection: try Connection(path: plan.target, mode: .readWrite), appender: appender)
        _ = try shipper.drain()
    }
}

/// The rollback journal, a one-row table in the target (the cutover's
/// journal is the `cutover_state` column of the migration state).
///
/// ```
/// prepared     the target is fenced; the source still records the switch
///              (nothing committed on the source yet) — or it no longer
///              does (the source side committed, the target's "committed"
///              was not written yet)
/// committed    done: the source is authoritative again
/// abandoning   an abandon (rollback before cutover) is under way
/// ```
///
/// The source's switch record decides, as for a cutover: a "prepared"
/// journal with the record present is finished by `rollback` (step 2 on) or
/// undone by `cutover` (the fence comes off, the target stays
/// authoritative); without the record it is finished by either.
public enum RollbackJournal {
    static let table = "_tidemark_rollback"

    public enum Phase: String, Sendable { case prepared, committed, abandoning }

    struct Entry {
        var phase: Phase
        var fromLSN: Int64
        var throughLSN: Int64
        /// Whether the reverse changes may be read from the log (reverse
        /// capture continues the migration's log).
        var fromLog: Bool
    }

    static func read(_ c: Connection) throws -> Entry? {
        guard try Schema.table(named: table, in: c) != nil else { return nil }
        let s = try c.prepare("SELECT phase, from_lsn, through_lsn, from_log FROM main.\(table) WHERE id = 1")
        guard try s.step(), let phase = Phase(rawValue: s.columnText(0)) else { return nil }
        return Entry(phase: phase, fromLSN: s.columnInt64(1), throughLSN: s.columnInt64(2), fromLog: s.columnInt64(3) != 0)
    }

    static func write(_ c: Connection, _ e: Entry) throws {
        try c.execute("CREATE TABLE IF NOT EXISTS main.\(table)(id INTEGER PRIMARY KEY CHECK (id = 1), phase TEXT NOT NULL, from_lsn INTEGER NOT NULL, through_lsn INTEGER NOT NULL, from_log INTEGER NOT NULL, at INTEGER NOT NULL)")
        try c.prepare("INSERT OR REPLACE INTO main.\(table)(id, phase, from_lsn, through_lsn, from_log, at) VALUES (1, ?1, ?2, ?3, ?4, ?5)")
            .execute([.text(e.phase.rawValue), .integer(e.fromLSN), .integer(e.throughLSN), .integer(e.fromLog ? 1 : 0), .integer(Clock.wallMicros())])
    }

    /// The source committed; write the target's side.
    static func finishCommitted(_ target: Connection) throws {
        try target.transaction(.immediate) {
            guard var e = try read(target), e.phase == .prepared else { return }
            if var st = try StateTables.load(target) {
                st.cutover = st.cutover?.rolledBack ?? .rolledBack(lsn: nil, atMicros: nil, pauseMicros: nil)
                try StateTables.saveCutover(st, in: target)
            }
            e.phase = .committed
            try write(target, e)
        }
    }

    /// Undoes a rollback that did not reach its commit point: the target's
    /// fence comes off and the journal goes; the cutover stands.
    static func undo(plan: Plan, target: Connection, state: MigrationState?) throws {
        try target.transaction(.immediate) {
            let tables = try StateTables.load(target)?.tables.map(\.targetTable) ?? []
            for t in tables {
                for op in ["insert", "update", "delete"] {
                    try target.execute("DROP TRIGGER IF EXISTS main.\(quoteIdentifier("_tidemark_guard_\(t)_\(op)"))")
                }
            }
            try target.execute("DROP TABLE IF EXISTS main.\(table)")
        }
    }

    /// What `tidemark status` reports about a rollback, read-only.
    public struct Report: Sendable, Equatable {
        public var phase: Phase
        /// Whether the source still records the cutover (for "prepared":
        /// the rollback has not reached its commit point).
        public var sourceSwitched: Bool
        /// One line: what happened and the command to run next.
        public var summary: String
        /// The command that settles it (nil when nothing is pending).
        public var nextCommand: String?
    }

    /// Reads the rollback journal of the migration `plan` describes,
    /// changing nothing; nil when there is none.
    public static func status(plan: Plan) throws -> Report? {
        guard FileSystemCheck.exists(plan.target), FileSystemCheck.exists(plan.source) else { return nil }
        guard let e = try read(try Connection(path: plan.target, mode: .readOnly)) else { return nil }
        let switched = try SwitchRecord.read(try Connection(path: plan.source, mode: .readOnly)) != nil
        switch (e.phase, switched) {
        case (.prepared, true):
            return Report(phase: e.phase, sourceSwitched: true, summary: "a rollback was interrupted before its commit point: the target is fenced, the source still records the cutover; `tidemark rollback` finishes it, `tidemark cutover` undoes it", nextCommand: "tidemark rollback")
        case (.prepared, false):
            return Report(phase: e.phase, sourceSwitched: false, summary: "a rollback committed on the source but its journal in the target was not closed; `tidemark rollback` closes it", nextCommand: "tidemark rollback")
        case (.committed, _):
            return Report(phase: e.phase, sourceSwitched: switched, summary: "rolled back: the source is authoritative; `tidemark migrate` starts a new migration", nextCommand: "tidemark migrate")
        case (.abandoning, _):
            return Report(phase: e.phase, sourceSwitched: switched, summary: "an abandon was interrupted; `tidemark rollback` finishes it", nextCommand: "tidemark rollback")
        }
    }
}
