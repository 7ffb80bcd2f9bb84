import TidemarkLog
import TidemarkSQLite

/// What `tidemark rollback` did.
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
}

/// Undoing a migration.
///
/// Before cutover it is always safe: drop what the migration created in the
/// target, remove capture from the source; the source's data is untouched.
///
/// After cutover the target has taken writes; they were recorded by reverse
/// capture (installed at cutover) and are replayed into the source through
/// each table's inverse mapping (plain column copies invert themselves;
/// computed columns need an `inverse:` in the plan), then the switch is
/// fenced the other way: guards on the target tables, the source's switch
/// record removed (the commit point).
public enum Rollback {
    public static func run(plan: Plan) throws -> RollbackReport {
        guard FileSystemCheck.exists(plan.source) else { throw MigrationError(.missingTable, "source database \(plan.source) does not exist") }
        let source = try Connection(path: plan.source, mode: .readWrite)
        let targetExists = FileSystemCheck.exists(plan.target)
        let target = targetExists ? try Connection(path: plan.target, mode: .readWrite) : nil
        let state = try target.flatMap { try StateTables.load($0) }
        let switched = try SwitchRecord.read(source)
        if switched != nil || state?.cutoverState == "done" {
            guard let target, let state else {
                throw MigrationError(.foreignState, "\(plan.source) records a cutover to \(plan.target), but that target has no migration state; restore it before rolling back")
            }
            return try reverse(plan: plan, source: source, target: target, state: state, switched: switched != nil)
        }
        // Before cutover.
        var dropped: [String] = []
        if let target, state != nil {
            try target.transaction(.immediate) {
                for t in try StateTables.createdTables(target) {
                    try target.execute("DROP TABLE IF EXISTS \(quoteIdentifier(t))")
                    dropped.append(t)
                }
                for (table, columns) in try StateTables.addedColumnsByTarget(target) {
                    for c in columns {
                        try target.execute("ALTER TABLE \(quoteIdentifier(table)) DROP COLUMN \(quoteIdentifier(c))")
                        dropped.append("\(table).\(c)")
                    }
                }
                try target.execute("DROP TABLE IF EXISTS \(StateTables.tables); DROP TABLE IF EXISTS \(StateTables.migration)")
            }
        }
        if try Capture.isInstalled(source) {
            try Capture.uninstall(connection: source, force: true)
        }
        if LogDirectory(plan.log).exists {
            try Consumers(LogDirectory(plan.log)).unregister("migration-" + Migrator.consumerSuffix(plan.target))
        }
        return RollbackReport(kind: state == nil && dropped.isEmpty ? .nothingToDo : .abandoned, droppedTables: dropped, changesReplayedBack: 0)
    }

    /// An inverse statement per mapped table: upsert into the source from a
    /// target after image, and delete by key.
    struct Inverse {
        let mapping: TableMapping
        let upsert: Statement
        let delete: Statement
        let targetColumns: [String]

        init(_ m: TableMapping, plan: TablePlan, source: Connection, targetInfo: TableInfo) throws {
            mapping = m
            let q = quoteIdentifier
            var pairs: [(String, String)] = []  // source column, expression over target columns
            if let inv = plan.inverse {
                pairs = inv.map { ($0.target, $0.expression) }
            } else {
                for c in m.columns {
                    guard let src = c.sourceColumn else {
                        throw MigrationError(.noInverse, "target column \(m.targetTable).\(c.target) is computed by `\(c.expression)`; declare `inverse:` for \(m.source.name) in the plan to roll back after cutover")
                    }
                    pairs.append((src, q(c.target)))
                }
            }
            for k in m.sourceKey where !pairs.contains(where: { $0.0.lowercased() == k.lowercased() }) {
                throw MigrationError(.noInverse, "the inverse of \(m.source.name) must produce key column \(k)")
            }
            targetColumns = targetInfo.dataColumns.map(\.name)
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
            throw MigrationError(.noInverse, "\(m.source.name) was migrated in place; rolling back an in-place migration after cutover is not supported — the old columns are intact, drop the guard trigger _tidemark_guard_\(m.source.name)_update to write them again")
        }
        // Same file: the source tables are written through the target
        // connection, which holds the file's write lock below (statements of
        // another connection would wait on that lock and fail busy).
        let writer = plan.isSameFile ? target : source
        var inverses: [Inverse] = []
        for m in mappings {
            guard let info = try Schema.table(named: m.targetTable, in: target) else {
                throw MigrationError(.missingTable, "target table \(m.targetTable) is missing from \(plan.target)")
            }
            inverses.append(try Inverse(m, plan: plan.tables.first { $0.source.lowercased() == m.source.name.lowercased() }!, source: writer, targetInfo: info))
        }
        let byTarget = Dictionary(inverses.map { ($0.mapping.targetTable, $0) }, uniquingKeysWith: { a, _ in a })
        var replayed = 0
        let sameFile = plan.isSameFile
        // Pause target writers, then switch the source back in one source transaction.
        try target.execute("BEGIN IMMEDIATE")
        do {
            let from = LSN(UInt64(max(0, state.reverseFromSeq ?? 0)))
            var changes: [ChangeRecord] = []
            var outboxFrom = from
            if sameFile && LogDirectory(plan.log).exists {
                // Same file: reverse capture shares the source's outbox, and a
                // shipper (`tidemark capture run`, or a migrator that had not yet
                // seen the switch) may have moved some of the target's changes
                // into the log and deleted them from the outbox. A change is in
                // the log up to its head, or else still in the outbox (the
                // shipper deletes only what the log holds, and cannot delete
                // while this transaction holds the file's write lock), so the
                // log up to its head and the outbox after it are all of them.
                let reader = try LogReader(directory: plan.log)
                let head = try reader.headLSN()
                if head > from {
                    let cursor = try reader.cursor(from: from.next, tables: Set(byTarget.keys))
                    while let r = try cursor.next(), r.lsn <= head { changes.append(r) }
                    outboxFrom = head
                }
            }
            let decoder = try OutboxDecoder(connection: target)
            changes += try decoder.read(from: target, after: outboxFrom, limit: Int.max)
            if !switched {
                // The source's switch record is gone: an earlier rollback
                // committed the source side (the commit point) and stopped
                // before the target's. Its changes are in the source already;
                // replaying them again could undo newer source writes. Only
                // the target's fence and journal remain to be written.
                changes = []
            }
            if !sameFile { try source.execute("BEGIN IMMEDIATE") }
            let s = writer
            for m in mappings { for sql in Guards.dropSQL(m) { try s.execute(sql) } }
            for r in changes {
                guard let inv = byTarget[r.table] else { continue }
                try inv.apply(r)
                replayed += 1
            }
            try s.execute("DROP TABLE IF EXISTS \(SwitchRecord.table)")
            // Fence the target: its tables now refuse writes, naming the source.
            for m in mappings {
                let message = "tidemark: \(m.targetTable) was rolled back to \(plan.source) table \(m.source.name); write there"
                let literal = "'" + message.replacingOccurrences(of: "'", with: "''") + "'"
                for (op, when) in [("insert", "INSERT"), ("update", "UPDATE"), ("delete", "DELETE")] {
                    try target.execute("CREATE TRIGGER IF NOT EXISTS \(quoteIdentifier("_tidemark_guard_\(m.targetTable)_\(op)")) BEFORE \(when) ON \(quoteIdentifier(m.targetTable)) BEGIN SELECT RAISE(ABORT, \(literal)); END")
                }
            }
            var st = state
            st.cutoverState = "rolled-back"
            try StateTables.saveCutover(st, in: target)
            if !sameFile { try source.execute("COMMIT") }  // the commit point
            try target.execute("COMMIT")
        } catch {
            if source.isInTransaction { try? source.execute("ROLLBACK") }
            if target.isInTransaction { try? target.execute("ROLLBACK") }
            throw error
        }
        // The migration is over: stop capturing on both sides.
        try? Capture.uninstall(connection: source, force: true)
        if !sameFile { try? Capture.uninstall(connection: target, force: true) }
        return RollbackReport(kind: .reversed, droppedTables: [], changesReplayedBack: replayed)
    }
}
