import TidemarkLog
import TidemarkSQLite

/// A plan table resolved against the real schemas: what to read, what to
/// write, and how keys correspond.
public struct TableMapping: Sendable {
    public enum Shape: String, Sendable {
        /// Rows go to another table (in another file or the same one).
        case copy
        /// New columns of the same table: only those columns are written.
        case inPlace = "in-place"
    }

    public var source: TableInfo
    public var targetTable: String
    public var shape: Shape
    /// Source primary-key columns, in key order.
    public var sourceKey: [String]
    /// The target column carrying each source key column, same order.
    public var targetKey: [String]
    /// Collation of each source key column (BINARY, NOCASE, RTRIM, ...).
    public var keyCollations: [String]
    /// Target columns written by copy and replay, with their expressions.
    /// For `.inPlace` these are the new columns only (the key is implied).
    public var columns: [MappedColumn]
    /// Source data columns, in declaration order (what capture records).
    public var sourceColumns: [String]

    public struct MappedColumn: Sendable, Equatable {
        public var target: String
        public var expression: String
        /// The source column when the expression is just that column.
        public var sourceColumn: String?
        /// The plan's declared type and NOT NULL for a computed column.
        public var type: String? = nil
        public var notNull: Bool? = nil
    }

    /// Every target column is a plain copy of a same-position source value.
    var isIdentity: Bool { columns.allSatisfy { $0.sourceColumn != nil } }
}

/// Resolves and validates a plan before anything is touched.
public enum PlanResolver {
    /// Checks every table of `plan` against the source schema (and the target
    /// schema where the target table exists). Nothing is written.
    ///
    /// - Throws: ``MigrationError`` naming the table, column or expression.
    /// - Parameter ownedColumns: in-place columns an earlier run of this
    ///   migration added or adopted (per source table, lowercased); they may
    ///   exist and hold values. Any other existing in-place column must be
    ///   empty (it is then adopted).
    public static func resolve(_ plan: Plan, source: Connection, target: Connection,
                               ownedColumns: [String: Set<String>] = [:]) throws -> [TableMapping] {
        var mappings: [TableMapping] = []
        var targets: Set<String> = []
        let sameFile = plan.isSameFile
        for tp in plan.tables {
            // After a swap the plan's source table is the one set aside (the
            // real name holds the new shape): the mapping is read from it,
            // under the real name, so it is the mapping the migration had.
            var readTable = tp.source
            if tp.swap && sameFile, try TableSwap.isSwapped(tp.source, in: source) {
                // Without a migration in the file, the old table aside is a
                // finished earlier swap's, not this plan's source.
                guard try StateTables.exists(target) else {
                    throw MigrationError(.badPlan, "\(tp.source) was swapped by an earlier migration that was finished, and its old table is still kept as \(TablePlan.asideName(of: tp.source)); run `tidemark finish --drop-source` with that plan (or drop that table) before swapping \(tp.source) again")
                }
                readTable = TablePlan.asideName(of: tp.source)
            }
            guard var info = try Schema.table(named: readTable, in: source) else {
                throw MigrationError(.missingTable, "source table '\(tp.source)' does not exist in \(plan.source)")
            }
            if readTable != tp.source { info.name = String(info.name.dropFirst(TablePlan.asideName(of: "").count)) }
            guard !info.primaryKey.isEmpty else {
                throw MigrationError(.noPrimaryKey, "source table '\(info.name)' has no PRIMARY KEY; Tidemark keys target rows by the source key — add one first")
            }
            // SQLite lets a rowid table's non-integer primary key hold NULLs;
            // such rows have no usable key (NULL compares to nothing).
            if !info.hasRowidAlias && !info.isWithoutRowid {
                let nullable = info.primaryKey.filter { k in info.columns.first { $0.name == k }?.notNull != true }
                if !nullable.isEmpty {
                    let probe = try source.prepare("SELECT rowid FROM \(quoteIdentifier(readTable)) WHERE " +
                        nullable.map { "\(quoteIdentifier($0)) IS NULL" }.joined(separator: " OR ") + " ORDER BY rowid LIMIT 5")
                    let rowids = try probe.rows { $0.columnInt64(0) }
                    if !rowids.isEmpty {
                        let list = rowids.map(String.init).joined(separator: ", ")
                        throw MigrationError(.noPrimaryKey, "source table '\(info.name)' has rows whose primary key (\(info.primaryKey.joined(separator: ", "))) is NULL in a part, rowid \(list)\(rowids.count == 5 ? " and maybe more" : ""); such rows cannot be keyed and would be duplicated in the target — give them keys (UPDATE \(quoteIdentifier(info.name)) SET … WHERE rowid IN (\(list))) and declare the key columns NOT NULL, then migrate")
                    }
                }
            }
            let dataColumns = info.dataColumns.map(\.name)
            let inPlace = sameFile && tp.target.lowercased() == info.name.lowercased()
            let targetName = inPlace ? info.name : tp.target
            guard targets.insert(targetName.lowercased()).inserted else {
                throw MigrationError(.badPlan, "two plan tables write to the target table '\(targetName)'")
            }
            // A swap's shadow is the one reserved name a target may have.
            if sameFile && !inPlace, Schema.isInternal(targetName), !(tp.swap && targetName == TablePlan.shadowName(of: tp.source)) {
                throw MigrationError(.badPlan, "target table '\(targetName)' uses a reserved name")
            }
            var columns: [TableMapping.MappedColumn] = []
            if let mapped = tp.columns {
                for m in mapped {
                    try checkExpression(m.expression, table: info.name, column: m.target, plan: plan, connection: source, reading: readTable)
                    columns.append(.init(target: m.target, expression: m.expression,
                                         sourceColumn: plainColumn(m.expression, in: dataColumns),
                                         type: m.type, notNull: m.notNull))
                }
            } else {
                guard !inPlace else {
                    throw MigrationError(.badPlan, "table '\(info.name)' migrates in place (same file, same table) but lists no columns; name the new columns and their expressions")
                }
                columns = dataColumns.map { .init(target: $0, expression: quoteIdentifier($0), sourceColumn: $0) }
            }
            var targetKey: [String] = []
            if inPlace {
                targetKey = info.primaryKey
                // An existing column is adopted as the new column while it
                // holds only NULLs (TargetSetup checks again under the
                // write lock); one with values would be overwritten.
                for c in columns {
                    guard let existing = dataColumns.first(where: { $0.lowercased() == c.target.lowercased() }),
                          !(ownedColumns[info.name.lowercased()]?.contains(c.target.lowercased()) ?? false) else { continue }
                    if info.primaryKey.contains(where: { $0.lowercased() == existing.lowercased() }) {
                        throw MigrationError(.badPlan, "in-place column '\(existing)' of '\(info.name)' is part of its primary key; choose a new column name")
                    }
                    let n = try TargetSetup.nonNullCount(table: info.name, column: existing, in: source)
                    if n > 0 { throw TargetSetup.nonEmptyColumnError(table: info.name, column: existing, count: n) }
                }
            } else {
                for k in info.primaryKey {
                    guard let carrier = columns.first(where: { $0.sourceColumn?.lowercased() == k.lowercased() }) else {
                        throw MigrationError(.keyNotCarried, "the target of '\(info.name)' must carry key column '\(k)' unchanged (e.g. `\(k): \(k)`), since target rows are keyed by the source key")
                    }
                    targetKey.append(carrier.target)
                }
            }
            let collations = info.primaryKey.map { k in info.columns.first { $0.name == k }?.collation ?? "BINARY" }
            mappings.append(TableMapping(
                source: info, targetTable: targetName, shape: inPlace ? .inPlace : .copy,
                sourceKey: info.primaryKey, targetKey: targetKey, keyCollations: collations,
                columns: columns,
                sourceColumns: inPlace ? dataColumns.filter { d in !columns.contains { $0.target.lowercased() == d.lowercased() } } : dataColumns))
        }
        return mappings
    }

    /// Compiles `SELECT expr FROM table` on the source: unknown columns and
    /// syntax errors surface here, before anything is written.
    static func checkExpression(_ expr: String, table: String, column: String, plan: Plan, connection: Connection,
                                reading: String? = nil) throws {
        if expr.contains(";") {
            throw MigrationError(.badExpression, "expression for \(table).\(column) must be a single SQL expression (no ';')")
        }
        do {
            _ = try connection.prepare("SELECT \(expr) FROM \(quoteIdentifier(reading ?? table)) LIMIT 0")
        } catch {
            let why = error.message
            if why.hasPrefix("no such column") {
                throw MigrationError(.missingColumn, "expression '\(expr)' for \(table).\(column): \(why) in source table '\(table)'")
            }
            throw MigrationError(.badExpression, "expression '\(expr)' for \(table).\(column) does not compile: \(why)")
        }
    }

    /// The source column an expression names, if it is nothing else.
    static func plainColumn(_ expr: String, in columns: [String]) -> String? {
        var e = expr.trimmingSpaces
        if e.count >= 2, let f = e.first, let l = e.last, (f == "\"" && l == "\"") || (f == "`" && l == "`") || (f == "[" && l == "]") {
            e = String(e.dropFirst().dropLast())
            if f == "\"" { e = e.replacingDoubledQuotes() }
        }
        return columns.first { $0.lowercased() == e.lowercased() }
    }
}

extension String {
    func replacingDoubledQuotes() -> String {
        var out = ""
        var previousQuote = false
        for ch in self {
            if ch == "\"" && previousQuote { previousQuote = false; continue }
            previousQuote = ch == "\""
            out.append(ch)
        }
        return out
    }
}
