import TidemarkLog
import TidemarkSQLite

/// First-run preparation of the target: check or create each target table,
/// add (or adopt) in-place columns, and write the initial state — one
/// transaction, so a failed check changes nothing.
///
/// Secondary indexes are not created here: they are built after their
/// table's copy (``Migrator`` index steps), unless `indexesDuringCopy`.
enum TargetSetup {
    static func start(plan: Plan, mappings: [TableMapping], schema: TargetSchema, target: Connection, store: SQLiteStore, sourceID: String,
                      record: PlanRecord? = nil, indexesDuringCopy: Bool = false) throws -> MigrationState {
        let q = quoteIdentifier
        return try target.transaction(.immediate) {
            try check(mappings, target: target)
            var added: [String: [String]] = [:]
            var adopted: [String: [String]] = [:]
            var created: Set<String> = []
            for m in mappings {
                switch m.shape {
                case .copy:
                    if try Schema.table(named: m.targetTable, in: target) == nil {
                        let sql = schema.table(forSource: m.source.name)?.createSQL ?? basicCreateTableSQL(m)
                        try target.execute(sql)
                        created.insert(m.source.name)
                    }
                case .inPlace:
                    let existing = try Schema.table(named: m.targetTable, in: target)!
                    for c in m.columns {
                        if let have = existing.columns.first(where: { $0.name.lowercased() == c.target.lowercased() }) {
                            // Adopted: a column the team added itself (say, an
                            // `ALTER TABLE … ADD COLUMN` in its release). Checked
                            // again here, under the write lock this transaction
                            // holds: it must still hold nothing, so that every
                            // value it gets is the plan's.
                            let n = try nonNullCount(table: m.targetTable, column: have.name, in: target)
                            if n > 0 { throw nonEmptyColumnError(table: m.targetTable, column: have.name, count: n) }
                            adopted[m.source.name, default: []].append(have.name)
                        } else {
                            try target.execute("ALTER TABLE \(q(m.targetTable)) ADD COLUMN \(q(c.target)) \(declaredType(c, m))")
                            added[m.source.name, default: []].append(c.target)
                        }
                    }
                }
            }
            let start = try store.captureHighWater()
            var state = MigrationState(
                sourceID: sourceID, sourcePath: plan.source, appliedLSN: start, appliedTimestampMicros: Clock.wallMicros(),
                startedAtMicros: Clock.wallMicros(), caughtUpAtMicros: nil,
                tables: mappings.enumerated().map { i, m in
                    TableState(sourceTable: m.source.name, targetTable: m.targetTable, position: i, phase: .pending,
                               tidemark: nil, ceiling: nil, rowsCopied: 0, rowsEstimate: 0)
                })
            state.plan = record ?? PlanRecord.make(plan: plan, mappings: mappings)
            try SchemaStore.store(schema, in: target)
            if indexesDuringCopy {
                // Maintained row by row during the copy instead (the bench's
                // comparison): created now, with the tables, and built.
                for index in schema.indexes {
                    try target.execute(index.sql)
                    try SchemaStore.setState(.index, name: index.name, state: "built", in: target)
                }
            }
            try StateTables.insert(state, addedColumns: added, adoptedColumns: adopted, created: created, into: target)
            return state
        }
    }

    /// Non-NULL values in `table.column` (an in-place column to adopt).
    static func nonNullCount(table: String, column: String, in c: Connection) throws -> Int {
        let s = try c.prepare("SELECT count(*) FROM \(quoteIdentifier(table)) WHERE \(quoteIdentifier(column)) IS NOT NULL")
        _ = try s.step()
        return Int(s.columnInt64(0))
    }

    static func nonEmptyColumnError(table: String, column: String, count: Int) -> MigrationError {
        MigrationError(.badPlan, "in-place column '\(column)' of '\(table)' already exists and holds \(count) non-NULL value\(count == 1 ? "" : "s"); an existing column is adopted only while it is empty (NULL in every row) — choose a new column name, or empty it (UPDATE \(quoteIdentifier(table)) SET \(quoteIdentifier(column)) = NULL) if those values are not needed")
    }

    /// Checks, without writing, that each existing copy-target table can
    /// take the plan's rows: it has every planned column, the plan's key,
    /// and no rows (rows this migration did not write could collide or stay).
    static func check(_ mappings: [TableMapping], target: Connection) throws {
        for m in mappings where m.shape == .copy {
            guard let existing = try Schema.table(named: m.targetTable, in: target) else { continue }
            for c in m.columns where !existing.columns.contains(where: { $0.name.lowercased() == c.target.lowercased() }) {
                throw MigrationError(.incompatibleTarget, "target table '\(existing.name)' has no column '\(c.target)'; add it or drop the table so Tidemark creates it")
            }
            guard existing.primaryKey.map({ $0.lowercased() }) == m.targetKey.map({ $0.lowercased() }) else {
                throw MigrationError(.incompatibleTarget, "target table '\(existing.name)' has primary key (\(existing.primaryKey.joined(separator: ", "))) but the plan keys it by (\(m.targetKey.joined(separator: ", ")))")
            }
            let probe = try target.prepare("SELECT 1 FROM \(quoteIdentifier(existing.name)) LIMIT 1")
            if try probe.step() {
                throw MigrationError(.targetNotEmpty, "target table '\(existing.name)' already holds rows not written by this migration; empty it or choose another target")
            }
        }
    }

    /// CREATE TABLE for a copy target: declared types and key from the
    /// source; expression columns typed from what they produce.
    static func basicCreateTableSQL(_ m: TableMapping) -> String {
        let q = quoteIdentifier
        var defs: [String] = []
        for c in m.columns {
            var def = q(c.target)
            let type = declaredType(c, m)
            if !type.isEmpty { def += " " + type }
            if let k = m.targetKey.firstIndex(where: { $0.lowercased() == c.target.lowercased() }) {
                let coll = m.keyCollations[k]
                if coll.uppercased() != "BINARY" { def += " COLLATE " + q(coll) }
                if m.source.columns.first(where: { $0.name == m.sourceKey[k] })?.notNull == true || m.sourceKey.count == 1 {
                    def += " NOT NULL"
                }
            }
            defs.append(def)
        }
        let keyCols = m.targetKey.map(q).joined(separator: ", ")
        let rowidAlias = m.source.hasRowidAlias && m.targetKey.count == 1
        if rowidAlias {
            // Keep INTEGER PRIMARY KEY: the target key is then the rowid, as in the source.
            let k = m.targetKey[0].lowercased()
            defs = defs.map { d in d.lowercased().hasPrefix(q(k).lowercased() + " ") || d.lowercased() == q(k).lowercased()
                ? q(m.targetKey[0]) + " INTEGER PRIMARY KEY" : d }
        } else {
            defs.append("PRIMARY KEY (\(keyCols))")
        }
        return "CREATE TABLE \(q(m.targetTable)) (\(defs.joined(separator: ", ")))\(m.source.isWithoutRowid && !rowidAlias ? " WITHOUT ROWID" : "")"
    }

    /// A plain column keeps its source type: its values already have that
    /// affinity, so applying it again changes none of them. An expression
    /// column gets no declared type (no affinity), because any affinity
    /// changes some value an expression can yield — INTEGER turns 0.0 into 0,
    /// TEXT turns 5 into '5' — and a sample of today's rows cannot promise
    /// what a later row yields; without one, values are kept exactly.
    static func declaredType(_ c: TableMapping.MappedColumn, _ m: TableMapping) -> String {
        guard let src = c.sourceColumn else { return c.type ?? "" }
        return m.source.columns.first { $0.name == src }?.declaredType ?? ""
    }
}
