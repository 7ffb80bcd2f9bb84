import TidemarkLog
import TidemarkSQLite

/// Source rows that would break one constraint of the target.
public struct PreflightViolation: Sendable, Equatable {
    /// Source table and target table.
    public var table: String
    public var targetTable: String
    /// "not null", "check", "unique", "type" (STRICT), "foreign key".
    public var kind: String
    /// The constraint as the user knows it: the column, the CHECK's SQL, the
    /// index name, the foreign key's `(cols) REFERENCES parent(cols)`.
    public var constraint: String
    /// How many source rows break it (at least `keys.count`).
    public var rows: Int
    /// The source keys of the first rows that break it (at most a few).
    public var keys: [[Field]]
    /// What the user can do about it, when more than fixing the rows or the
    /// plan's expressions (foreign keys: `foreign_keys: drop`).
    public var hint: String?

    public init(table: String, targetTable: String, kind: String, constraint: String, rows: Int, keys: [[Field]], hint: String? = nil) {
        self.table = table
        self.targetTable = targetTable
        self.kind = kind
        self.constraint = constraint
        self.rows = rows
        self.keys = keys
        self.hint = hint
    }

    /// One line: `users -> accounts: unique index "accounts_email" (lower(email)): 2 rows, first keys (id=1), (id=2)`.
    public var line: String {
        let keyText = keys.map { "(" + $0.map { "\($0.name)=\($0.value)" }.joined(separator: ", ") + ")" }.joined(separator: ", ")
        var s = "\(table) -> \(targetTable): \(kind) \(constraint): \(rows) row\(rows == 1 ? "" : "s")"
        if !keyText.isEmpty { s += ", first keys \(keyText)" }
        if let hint { s += "; \(hint)" }
        return s
    }
}

/// What the preflight found.
public struct PreflightReport: Sendable, Equatable {
    public var violations: [PreflightViolation]
    /// Constraints the preflight could not evaluate over the source by itself
    /// (the copy still enforces them): one line each, for the user.
    public var unchecked: [String] = []
    /// Source rows read and checked (tables whose every constraint the
    /// source already guarantees are not read).
    public var rowsChecked = 0
    public var isClean: Bool { violations.isEmpty }
    public init(violations: [PreflightViolation] = []) { self.violations = violations }

    /// The report as one JSON object, for `--json`:
    /// `{"clean":false,"rows_checked":N,"violations":[{"table":…,"target_table":…,
    /// "kind":…,"constraint":…,"rows":N,"keys":[{"id":1}],"hint":…|null}],"unchecked":[…]}`.
    /// Key values are in the log's JSON form (exact for every storage class).
    public var json: String {
        func q(_ s: String) -> String { JSONText.quoted(s) }
        func key(_ k: [Field]) -> String {
            "{" + k.map { f in
                var b: [UInt8] = []
                f.value.appendJSON(to: &b)
                return q(f.name) + ":" + String(decoding: b, as: UTF8.self)
            }.joined(separator: ",") + "}"
        }
        let vs = violations.map { v in
            "{\"table\":\(q(v.table)),\"target_table\":\(q(v.targetTable)),\"kind\":\(q(v.kind)),\"constraint\":\(q(v.constraint)),"
                + "\"rows\":\(v.rows),\"keys\":[\(v.keys.map(key).joined(separator: ","))],\"hint\":\(v.hint.map(q) ?? "null")}"
        }
        return "{\"clean\":\(isClean),\"rows_checked\":\(rowsChecked),\"violations\":[\(vs.joined(separator: ","))],"
            + "\"unchecked\":[\(unchecked.map(q).joined(separator: ","))]}"
    }

    /// The refusal `migrate` prints: a first line saying nothing was written
    /// and what to do, then one line per violated constraint.
    public var message: String {
        var lines = ["preflight: \(violations.count) constraint\(violations.count == 1 ? "" : "s") of the target would refuse source rows; nothing was written — fix those rows in the source or change the plan, then run migrate again"]
        lines += violations.map { "  " + $0.line }
        lines += unchecked.map { "  not checked: " + $0 }
        return lines.joined(separator: "\n")
    }
}

/// Before anything is copied: evaluates the plan's expressions over the
/// source and finds rows the target's constraints (carried or the plan's
/// own) would refuse.
///
/// How each constraint is learned and checked (all in a scratch in-memory
/// database; the source is only read):
/// - the target table (`createSQL`) and its indexes are created in the
///   scratch database and read back with `table_xinfo`, `table_list`,
///   `index_list`/`index_xinfo` and `foreign_key_list`;
/// - the candidate rows (the plan's expressions over each source row, in
///   source key order) are stored in a scratch table whose columns have the
///   target columns' declared types and collations, so SQLite applies the
///   same affinity as the target will; NOT NULL, CHECK (each on its own),
///   STRICT types and UNIQUE (GROUP-like partitions by the indexed terms with
///   the index's collations, NULLs distinct, a partial index's WHERE) are
///   queries over that table;
/// - each candidate row is also inserted (and deleted again) into an empty
///   copy of the target table itself: whatever SQLite refuses there that no
///   query above explained is reported with SQLite's own message;
/// - foreign keys the target carries: `PRAGMA foreign_key_check` on the source.
///
/// Fast path: a constraint the source table itself already enforces over
/// plain copies of its columns (same affinity and collation) is skipped;
/// when every constraint of a table is, its rows are not read at all.
public enum Preflight {
    /// Reads only. `keysPerViolation` bounds the keys listed per constraint.
    public static func run(plan: Plan, mappings: [TableMapping], schema: TargetSchema, source: Connection,
                           keysPerViolation: Int = 5) throws -> PreflightReport {
        var report = PreflightReport()
        for m in mappings where m.shape == .copy {
            guard let table = schema.table(forSource: m.source.name) else { continue }
            let tablePlan = plan.tables.first { $0.source.lowercased() == m.source.name.lowercased() }
            let indexes = schema.indexes.filter { $0.kind == .index && $0.table.lowercased() == table.target.lowercased() }
            var check = try TableCheck(mapping: m, table: table, indexes: indexes, source: source, keysMax: max(0, keysPerViolation))
            try check.run()
            if tablePlan?.foreignKeys ?? .keep == .keep {
                try check.foreignKeys(plan: plan)
            }
            report.violations += check.violations
            report.unchecked += check.unchecked
            report.rowsChecked += check.rowsChecked
        }
        return report
    }

    /// ``run(plan:mappings:schema:source:keysPerViolation:)``, throwing the
    /// report's ``PreflightReport/message`` as a `.preflight` error when it
    /// is not clean.
    public static func check(plan: Plan, mappings: [TableMapping], schema: TargetSchema, source: Connection) throws {
        let report = try run(plan: plan, mappings: mappings, schema: schema, source: source)
        if !report.isClean { throw PreflightError(report: report) }
    }
}

extension TargetSchema {
    /// This schema with each target table that already exists in `target`
    /// (empty: ``TargetSetup`` refuses a target table with rows) taken as it
    /// is there, with its indexes: the migration keeps an existing table, so
    /// its constraints are the ones the rows must meet.
    func withExistingTables(in target: Connection) throws -> TargetSchema {
        var schema = self
        for (i, t) in tables.enumerated() {
            let s = try target.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE")
            try s.bind([.text(t.target)])
            guard try s.step(), !s.columnIsNull(0) else { continue }
            schema.tables[i].createSQL = s.columnText(0)
            schema.indexes.removeAll { $0.table.lowercased() == t.target.lowercased() }
            let x = try target.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 COLLATE NOCASE AND sql IS NOT NULL")
            try x.bind([.text(t.target)])
            while try x.step() {
                schema.indexes.append(Object(kind: .index, name: x.columnText(0), table: t.target, sql: x.columnText(1)))
            }
        }
        return schema
    }
}

/// A preflight that found rows the target would refuse; its description is
/// ``PreflightReport/message``. Carries the report for `--json`.
public struct PreflightError: Error, Sendable, CustomStringConvertible {
    public var report: PreflightReport
    public var description: String { report.message }
    /// The same as a ``MigrationError`` with code `.preflight`.
    public var migrationError: MigrationError { MigrationError(.preflight, report.message) }
}

/// SQLite's column affinity for a declared type (the rules of "Determination
/// of column affinity"); `ANY` in a STRICT table has none.
func columnAffinity(_ declared: String, strict: Bool) -> String {
    let t = declared.uppercased()
    if strict && t == "ANY" { return "BLOB" }
    if t.contains("INT") { return "INTEGER" }
    if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") { return "TEXT" }
    if t.contains("BLOB") || t.isEmpty { return "BLOB" }
    if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") { return "REAL" }
    return "NUMERIC"
}

/// The preflight of one copy-shaped table.
struct TableCheck {
    let m: TableMapping
    let table: TargetSchema.Table
    let indexes: [TargetSchema.Object]
    let source: Connection
    let keysMax: Int
    let scratch: Connection
    let target: TableInfo
    var violations: [PreflightViolation] = []
    var unchecked: [String] = []
    /// A NOT NULL column the copy does not fill and that has no DEFAULT:
    /// every row is refused (reported once, not again per trial).
    var everyRowRefused = false
    var rowsChecked = 0

    /// The candidate rows' table in the scratch database (rowid = position
    /// in source key order) and the empty constraint copy of the target.
    static let rowsTable = "_tidemark_preflight_rows"
    var keyNames: [String] { (0..<m.sourceKey.count).map { "_tidemark_k\($0)" } }

    init(mapping: TableMapping, table: TargetSchema.Table, indexes: [TargetSchema.Object], source: Connection, keysMax: Int) throws {
        m = mapping
        self.table = table
        self.indexes = indexes
        self.source = source
        self.keysMax = keysMax
        scratch = try Connection(path: ":memory:", mode: .readWriteCreate)
        // The trial inserts test one row at a time; parents are not there.
        try scratch.execute("PRAGMA foreign_keys = OFF")
        do {
            try scratch.execute(table.createSQL)
        } catch {
            throw MigrationError(.badPlan, "the target definition of \(table.target) does not compile: \(error.message)")
        }
        // A plan's `create:` may name its table otherwise than `to:`; the
        // target is `to:` (SQLite's own RENAME, no text edits).
        if try Schema.table(named: table.target, in: scratch) == nil {
            let names = try Schema.tables(in: scratch)
            if names.count == 1 {
                try scratch.execute("ALTER TABLE \(quoteIdentifier(names[0])) RENAME TO \(quoteIdentifier(table.target))")
            }
        }
        for index in indexes {
            do { try scratch.execute(index.sql) } catch {
                throw MigrationError(.badPlan, "index \(index.name) of \(table.target) does not compile: \(error.message)")
            }
        }
        guard let info = try Schema.table(named: table.target, in: scratch) else {
            throw MigrationError(.badPlan, "the target definition of \(table.target) does not create a table named \(table.target)")
        }
        target = info
    }

    // MARK: What the source already guarantees

    /// The source column a target column is a plain copy of.
    func plainSource(_ targetColumn: String) -> ColumnInfo? {
        guard let mc = m.columns.first(where: { $0.target.lowercased() == targetColumn.lowercased() }),
              let s = mc.sourceColumn else { return nil }
        return m.source.columns.first { $0.name.lowercased() == s.lowercased() }
    }

    func mapped(_ targetColumn: String) -> TableMapping.MappedColumn? {
        m.columns.first { $0.target.lowercased() == targetColumn.lowercased() }
    }

    /// A plain copy keeps every value exactly: same affinity (applying it
    /// again changes nothing) and same collation (comparisons agree).
    func sameRepresentation(_ t: ColumnInfo, _ s: ColumnInfo) -> Bool {
        columnAffinity(t.declaredType, strict: target.isStrict) == columnAffinity(s.declaredType, strict: m.source.isStrict)
            && t.collation.uppercased() == s.collation.uppercased()
    }

    func isSourceKey(_ s: ColumnInfo) -> Bool { m.sourceKey.contains { $0.lowercased() == s.name.lowercased() } }

    var sourceIsRowidAliasKey: (ColumnInfo) -> Bool {
        { s in m.source.hasRowidAlias && m.sourceKey.count == 1 && m.sourceKey[0].lowercased() == s.name.lowercased() }
    }

    /// STRICT type class: INT and INTEGER are one; nil for ANY.
    static func strictClass(_ declared: String) -> String? {
        let t = declared.uppercased()
        return t == "INT" ? "INTEGER" : t == "ANY" ? nil : t
    }

    /// The source table's CHECK constraints.
    func sourceChecks() throws -> [PreflightSQL.Check] {
        let s = try source.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1")
        try s.bind([.text(m.source.name)])
        guard try s.step(), !s.columnIsNull(0) else { return [] }
        return PreflightSQL.checks(ofCreateTable: s.columnText(0))
    }

    /// Column sets the source keeps unique (non-partial unique indexes over
    /// columns, and a rowid-alias key), with each column's collation.
    func sourceUniqueSets() throws -> [[(column: String, collation: String?)]] {
        var sets: [[(column: String, collation: String?)]] = []
        if m.source.hasRowidAlias && m.sourceKey.count == 1 { sets.append([(m.sourceKey[0], nil)]) }
        let list = try source.prepare("SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1 AND partial = 0")
        try list.bind([.text(m.source.name)])
        for name in try list.rows({ $0.columnText(0) }) {
            let x = try source.prepare("SELECT cid, name, coll FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno")
            try x.bind([.text(name)])
            let cols = try x.rows { ($0.columnInt64(0), $0.columnText(1), $0.columnText(2)) }
            guard cols.allSatisfy({ $0.0 >= 0 }) else { continue }
            sets.append(cols.map { (column: $0.1, collation: Optional($0.2)) })
        }
        return sets
    }

    // MARK: Running

    /// A set-based check: `predicate` over the candidate rows table selects
    /// the offending rows.
    struct Probe {
        var kind: String
        var constraint: String
        var predicate: String
    }

    struct UniqueProbe {
        var constraint: String
        var terms: [String]
        var whereClause: String?
    }

    mutating func run() throws {
        let q = quoteIdentifier
        let planned = target.dataColumns.filter { mapped($0.name) != nil }
        var probes: [Probe] = []

        // NOT NULL: `expr IS NULL` is exact (affinity never makes or unmakes a NULL).
        for c in target.dataColumns where c.notNull {
            guard mapped(c.name) != nil else {
                // Not written by the copy: its DEFAULT fills it.
                if c.defaultSQL == nil || c.defaultSQL?.uppercased() == "NULL" {
                    everyRowRefused = true
                    try everyRow(kind: "not null", constraint: "\(c.name) NOT NULL (the plan does not fill it and it has no DEFAULT)")
                }
                continue
            }
            if let s = plainSource(c.name), s.notNull || isSourceKey(s) { continue }
            probes.append(Probe(kind: "not null", constraint: "\(c.name) NOT NULL", predicate: "\(q(c.name)) IS NULL"))
        }
        // STRICT: the value after the column's affinity must be of its type.
        if target.isStrict {
            for c in planned {
                guard let cls = Self.strictClass(c.declaredType) else { continue }
                if let s = plainSource(c.name) {
                    if m.source.isStrict && Self.strictClass(s.declaredType) == cls { continue }
                    if sourceIsRowidAliasKey(s) && (cls == "INTEGER" || cls == "REAL") { continue }
                }
                let allowed = cls == "INTEGER" ? "'integer'" : cls == "REAL" ? "'real', 'integer'" : cls == "TEXT" ? "'text'" : "'blob'"
                probes.append(Probe(kind: "type", constraint: "\(c.name) \(c.declaredType) (STRICT)",
                                    predicate: "typeof(\(q(c.name))) NOT IN (\(allowed), 'null')"))
            }
        }
        // A rowid-alias key holds integers only (else "datatype mismatch").
        if target.hasRowidAlias, let k = target.primaryKey.first, mapped(k) != nil {
            if !(plainSource(k).map(sourceIsRowidAliasKey) ?? false) {
                probes.append(Probe(kind: "type", constraint: "\(k) INTEGER PRIMARY KEY",
                                    predicate: "typeof(\(q(k))) NOT IN ('integer', 'null')"))
            }
        }
        // CHECK: each on its own, over values with the target's affinity.
        let targetChecks = PreflightSQL.checks(ofCreateTable: table.createSQL)
        if !targetChecks.isEmpty {
            let carried = try sourceChecks()
            let columnNames = Set(target.columns.map { $0.name.lowercased() })
            for c in targetChecks {
                let named = c.identifiers.filter { columnNames.contains($0) }
                let guaranteed = carried.contains { $0.shape == c.shape } && named.allSatisfy { n in
                    guard let t = target.columns.first(where: { $0.name.lowercased() == n }), let s = plainSource(n) else { return false }
                    return s.name.lowercased() == n && sameRepresentation(t, s)
                }
                if guaranteed { continue }
                let label = (c.name.map { "\($0) " } ?? "") + "CHECK (\(c.expression))"
                probes.append(Probe(kind: "check", constraint: label, predicate: "NOT (\(c.expression))"))
            }
        }
        let uniques = try uniqueProbes()

        guard !probes.isEmpty || !uniques.isEmpty else { return }
        let trialFailures = try fillRows(planned: planned)
        var explained: Set<Int64> = []
        for p in probes {
            do {
                try collect(kind: p.kind, constraint: p.constraint,
                            sql: "SELECT rowid, \(keyNames.map(q).joined(separator: ", ")) FROM \(q(Self.rowsTable)) WHERE \(p.predicate) ORDER BY rowid",
                            explained: &explained)
            } catch {
                // E.g. a CHECK naming a generated column: the trial insert
                // below still catches the rows it refuses.
                unchecked.append("\(m.source.name) -> \(table.target): \(p.kind) \(p.constraint) checked only by a trial insert (\(error.message))")
            }
        }
        for u in uniques {
            let terms = u.terms.joined(separator: ", ")
            var conditions = u.terms.map { "\($0) IS NOT NULL" }
            if let w = u.whereClause { conditions.insert("(\(w))", at: 0) }
            let sql = """
                SELECT o, \(keyNames.map(q).joined(separator: ", ")) FROM (
                  SELECT rowid AS o, \(keyNames.map(q).joined(separator: ", ")), count(*) OVER (PARTITION BY \(terms)) AS n
                  FROM \(q(Self.rowsTable)) WHERE \(conditions.joined(separator: " AND "))) WHERE n > 1 ORDER BY o
                """
            do {
                var ignored: Set<Int64> = []
                try collect(kind: "unique", constraint: u.constraint, sql: sql, explained: &ignored)
            } catch {
                unchecked.append("\(m.source.name) -> \(table.target): unique \(u.constraint) not checked (\(error.message)); the copy will refuse duplicates")
            }
        }
        // Whatever the target refused that no query above explained, with
        // SQLite's own words.
        var byMessage: [(String, String, [Int64])] = []
        for f in trialFailures where !explained.contains(f.row) && !everyRowRefused {
            if let i = byMessage.firstIndex(where: { $0.1 == f.message }) { byMessage[i].2.append(f.row) } else { byMessage.append((f.kind, f.message, [f.row])) }
        }
        for (kind, message, rows) in byMessage {
            let keys = try rows.prefix(keysMax).map { try keyOf(row: $0) }
            violations.append(PreflightViolation(table: m.source.name, targetTable: table.target, kind: kind,
                                                 constraint: "(\(message))", rows: rows.count, keys: keys))
        }
    }

    /// The UNIQUE constraints of the target (primary key, inline UNIQUE,
    /// unique indexes) the source does not already guarantee.
    func uniqueProbes() throws -> [UniqueProbe] {
        let q = quoteIdentifier
        var probes: [UniqueProbe] = []
        let sourceSets = try sourceUniqueSets()
        func guaranteed(_ terms: [(cid: Int64, name: String, coll: String)]) throws -> Bool {
            guard terms.allSatisfy({ $0.cid >= 0 }) else { return false }
            // A source-unique column set, each column copied plainly into one
            // of the terms with the same collation, makes the terms unique
            // (also under a partial index: a subset of unique rows is unique).
            return sourceSets.contains { set in
                set.allSatisfy { u in
                    terms.contains { t in
                        guard let s = plainSource(t.name), s.name.lowercased() == u.column.lowercased(),
                              let tc = target.columns.first(where: { $0.name.lowercased() == t.name.lowercased() }) else { return false }
                        if let coll = u.collation {
                            return sameRepresentation(tc, s) && coll.uppercased() == t.coll.uppercased()
                        }
                        // A rowid alias: distinct integers stay distinct as integers.
                        return columnAffinity(tc.declaredType, strict: target.isStrict) == "INTEGER"
                    }
                }
            }
        }
        if target.hasRowidAlias, let k = target.primaryKey.first, mapped(k) != nil {
            if try !guaranteed([(0, k, "BINARY")]) {
                probes.append(UniqueProbe(constraint: "PRIMARY KEY (\(k))", terms: [q(k)], whereClause: nil))
            }
        }
        let list = try scratch.prepare("SELECT name, origin, partial FROM pragma_index_list(?1) WHERE \"unique\" = 1")
        try list.bind([.text(target.name)])
        for (name, origin, partial) in try list.rows({ ($0.columnText(0), $0.columnText(1), $0.columnInt64(2) != 0) }) {
            let x = try scratch.prepare("SELECT seqno, cid, name, coll FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno")
            try x.bind([.text(name)])
            let terms = try x.rows { (cid: $0.columnInt64(1), name: $0.columnIsNull(2) ? "" : $0.columnText(2), coll: $0.columnText(3)) }
            if try guaranteed(terms) { continue }
            var parts: PreflightSQL.IndexParts? = nil
            if origin == "c" {
                let s = try scratch.prepare("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?1")
                try s.bind([.text(name)])
                if try s.step(), !s.columnIsNull(0) { parts = PreflightSQL.indexParts(s.columnText(0)) }
            }
            let columnsText = terms.enumerated().map { i, t in t.cid >= 0 ? t.name : (parts?.terms.preflightElement(i) ?? "?") }.joined(separator: ", ")
            let label = origin == "pk" ? "PRIMARY KEY (\(columnsText))" : origin == "u" ? "UNIQUE (\(columnsText))"
                : "index \(q(name)) (\(columnsText))" + (parts?.whereClause.map { " WHERE \($0)" } ?? "")
            if (partial || terms.contains { $0.cid < 0 }) && (parts == nil || parts!.terms.count != terms.count) {
                throw MigrationError(.badPlan, "the preflight cannot read unique index \(name) of \(table.target) (\(label)); report this with the index's SQL")
            }
            let exprs = try terms.enumerated().map { i, t -> String in
                if t.cid >= 0 { return "\(q(t.name)) COLLATE \(q(t.coll))" }
                guard t.cid == -2, let e = parts?.terms.preflightElement(i) else {
                    throw MigrationError(.badPlan, "the preflight cannot read unique index \(name) of \(table.target); report this with the index's SQL")
                }
                return "(\(e)) COLLATE \(q(t.coll))"
            }
            probes.append(UniqueProbe(constraint: label, terms: exprs, whereClause: partial ? parts?.whereClause : nil))
        }
        return probes
    }

    struct TrialFailure {
        var row: Int64
        var kind: String
        var message: String
    }

    /// Stores every candidate row (key values and the target columns with
    /// the target's affinity and collation), in source key order, and tries
    /// each one against the empty target copy.
    mutating func fillRows(planned: [ColumnInfo]) throws -> [TrialFailure] {
        let q = quoteIdentifier
        let unplanned = target.dataColumns.filter { mapped($0.name) == nil }
        func definition(_ c: ColumnInfo, withDefault: Bool) -> String {
            var d = q(c.name)
            // STRICT's ANY has no affinity; elsewhere the declared type gives
            // the same affinity as in the target.
            if !(target.isStrict && c.declaredType.uppercased() == "ANY") && !c.declaredType.isEmpty { d += " " + c.declaredType }
            d += " COLLATE " + q(c.collation)
            if withDefault, let dflt = c.defaultSQL { d += " DEFAULT (\(dflt))" }
            return d
        }
        let defs = keyNames.map(q) + planned.map { definition($0, withDefault: false) } + unplanned.map { definition($0, withDefault: true) }
        try scratch.execute("CREATE TABLE \(q(Self.rowsTable))(\(defs.joined(separator: ", ")))")
        let n = m.sourceKey.count
        let exprs = planned.map { "(\(mapped($0.name)!.expression))" }
        let read = try source.prepare("SELECT \((m.sourceKey.map(q) + exprs).joined(separator: ", ")) FROM \(q(m.source.name)) ORDER BY \(m.sourceKey.map(q).joined(separator: ", "))")
        let cols = planned.map { q($0.name) }
        let store = try scratch.prepare("INSERT INTO \(q(Self.rowsTable))(rowid, \((keyNames.map(q) + cols).joined(separator: ", "))) VALUES (\((1...(1 + n + cols.count)).map { "?\($0)" }.joined(separator: ", ")))")
        // The stored values have had the target's affinity applied once;
        // applying it again (the trial insert) changes none of them.
        let trial = try scratch.prepare("INSERT INTO \(q(target.name))(\(cols.joined(separator: ", "))) SELECT \(cols.joined(separator: ", ")) FROM \(q(Self.rowsTable)) WHERE rowid = ?1")
        let empty = try scratch.prepare("DELETE FROM \(q(target.name))")
        var failures: [TrialFailure] = []
        var row: Int64 = 0
        let ownTransaction = !source.isInTransaction
        if ownTransaction { try source.execute("BEGIN") }
        defer { if ownTransaction { try? source.execute("COMMIT") } }
        try scratch.execute("BEGIN")
        while try read.step() {
            row += 1
            store.reset()
            try store.bind(.integer(row), at: 1)
            for i in 0..<Int32(n + cols.count) { try store.bind(read.columnValue(i), at: i + 2) }
            try store.execute()
            trial.reset()
            try trial.bind(.integer(row), at: 1)
            do {
                try trial.execute()
                empty.reset()
                try empty.execute()
            } catch {
                trial.reset()
                let code = error.code.rawValue
                let kind: String
                switch code {
                case 1299: kind = "not null"       // SQLITE_CONSTRAINT_NOTNULL
                case 275: kind = "check"           // SQLITE_CONSTRAINT_CHECK
                case 3091, 20: kind = "type"       // SQLITE_CONSTRAINT_DATATYPE, SQLITE_MISMATCH
                default: kind = "refused"
                }
                failures.append(TrialFailure(row: row, kind: kind, message: error.message))
            }
        }
        try scratch.execute("COMMIT")
        rowsChecked = Int(row)
        return failures
    }

    /// Runs `sql` (rows: position, key values…), recording one violation
    /// with the count and the first keys.
    mutating func collect(kind: String, constraint: String, sql: String, explained: inout Set<Int64>) throws(SQLiteError) {
        let s = try scratch.prepare(sql)
        var count = 0
        var keys: [[Field]] = []
        while try s.step() {
            count += 1
            explained.insert(s.columnInt64(0))
            if keys.count < keysMax {
                keys.append(m.sourceKey.enumerated().map { Field($0.element, s.columnValue(Int32($0.offset + 1))) })
            }
        }
        if count > 0 {
            violations.append(PreflightViolation(table: m.source.name, targetTable: table.target, kind: kind,
                                                 constraint: constraint, rows: count, keys: keys))
        }
    }

    func keyOf(row: Int64) throws -> [Field] {
        let q = quoteIdentifier
        let s = try scratch.prepare("SELECT \(keyNames.map(q).joined(separator: ", ")) FROM \(q(Self.rowsTable)) WHERE rowid = ?1")
        try s.bind([.integer(row)])
        guard try s.step() else { return [] }
        return m.sourceKey.enumerated().map { Field($0.element, s.columnValue(Int32($0.offset))) }
    }

    /// Every source row breaks the constraint.
    mutating func everyRow(kind: String, constraint: String) throws {
        let q = quoteIdentifier
        let key = m.sourceKey.map(q).joined(separator: ", ")
        let count = try source.prepare("SELECT count(*) FROM \(q(m.source.name))")
        guard try count.step(), count.columnInt64(0) > 0 else { return }
        let first = try source.prepare("SELECT \(key) FROM \(q(m.source.name)) ORDER BY \(key) LIMIT \(keysMax)")
        let keys = try first.rows { s in m.sourceKey.enumerated().map { Field($0.element, s.columnValue(Int32($0.offset))) } }
        violations.append(PreflightViolation(table: m.source.name, targetTable: table.target, kind: kind, constraint: constraint,
                                             rows: Int(count.columnInt64(0)), keys: keys))
    }

    // MARK: Foreign keys

    /// The source rows whose parent row is missing, for each foreign key
    /// the target carries (`PRAGMA foreign_key_check` works on a source that
    /// never enforced its foreign keys).
    mutating func foreignKeys(plan: Plan) throws {
        let q = quoteIdentifier
        struct FK { var id: Int64; var parent: String; var from: [String]; var to: [String] }
        func list(_ c: Connection, _ table: String) throws -> [FK] {
            let s = try c.prepare("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq")
            try s.bind([.text(table)])
            var out: [FK] = []
            while try s.step() {
                let id = s.columnInt64(0)
                let to = s.columnIsNull(3) ? "" : s.columnText(3)
                if let i = out.firstIndex(where: { $0.id == id }) {
                    out[i].from.append(s.columnText(2)); out[i].to.append(to)
                } else {
                    out.append(FK(id: id, parent: s.columnText(1), from: [s.columnText(2)], to: [to]))
                }
            }
            return out
        }
        let targetFKs = try list(scratch, target.name)
        guard !targetFKs.isEmpty else { return }
        let sourceFKs = try list(source, m.source.name)
        // The target foreign key a source one became: same parent (through
        // the plan's table moves) and the same columns (through its renames).
        func targetName(ofSource column: String) -> String {
            m.columns.first { $0.sourceColumn?.lowercased() == column.lowercased() }?.target ?? column
        }
        func carried(_ fk: FK) -> FK? {
            let parentTarget = plan.tables.first { $0.source.lowercased() == fk.parent.lowercased() }?.target ?? fk.parent
            let from = fk.from.map { targetName(ofSource: $0).lowercased() }
            let sameParent = targetFKs.filter { $0.parent.lowercased() == parentTarget.lowercased() }
            return sameParent.first { $0.from.map { $0.lowercased() } == from } ?? (sameParent.count == 1 ? sameParent[0] : nil)
        }
        let matched = sourceFKs.compactMap(carried)
        for t in targetFKs where !matched.contains(where: { $0.id == t.id }) {
            unchecked.append("\(m.source.name) -> \(table.target): foreign key (\(t.from.joined(separator: ", "))) REFERENCES \(t.parent) is not one of the source's, so the source cannot check it; verify checks it in the target")
        }
        let check: Statement
        do {
            check = try source.prepare("PRAGMA foreign_key_check(\(q(m.source.name)))")
        } catch {
            throw MigrationError(.preflight, "foreign keys of \(m.source.name) cannot be checked in the source: \(error.message); fix the parent table's key, or set `foreign_keys: drop` for \(m.source.name) in the plan")
        }
        var rowsByFK: [Int64: [Int64?]] = [:]
        var order: [Int64] = []
        do {
            while try check.step() {
                let fkid = check.columnInt64(3)
                if rowsByFK[fkid] == nil { order.append(fkid) }
                rowsByFK[fkid, default: []].append(check.columnIsNull(1) ? nil : check.columnInt64(1))
            }
        } catch {
            throw MigrationError(.preflight, "foreign keys of \(m.source.name) cannot be checked in the source: \(error.message); fix the parent table's key, or set `foreign_keys: drop` for \(m.source.name) in the plan")
        }
        for fkid in order {
            guard let sfk = sourceFKs.first(where: { $0.id == fkid }), let tfk = carried(sfk), let rows = rowsByFK[fkid] else { continue }
            let to = tfk.to.allSatisfy({ $0.isEmpty }) ? "" : "(\(tfk.to.joined(separator: ", ")))"
            let keys = m.source.isWithoutRowid
                ? try ForeignKeyOrphans.keys(in: source, child: m.source.name, key: m.sourceKey, parent: sfk.parent, from: sfk.from, to: sfk.to, limit: keysMax)
                    .map { zip(m.sourceKey, $0).map { Field($0, $1) } }
                : try keysOfRowids(Set(rows.compactMap { $0 }))
            violations.append(PreflightViolation(
                table: m.source.name, targetTable: table.target, kind: "foreign key",
                constraint: "(\(tfk.from.joined(separator: ", "))) REFERENCES \(tfk.parent)\(to)", rows: rows.count, keys: keys,
                hint: "their parent row is missing in \(sfk.parent); fix or delete these rows in the source, or set `foreign_keys: drop` for \(m.source.name) in the plan"))
        }
    }

    /// The source keys of the first `keysMax` of `rowids` in key order.
    func keysOfRowids(_ rowids: Set<Int64>) throws -> [[Field]] {
        guard !rowids.isEmpty, keysMax > 0, !m.source.isWithoutRowid else { return [] }
        let q = quoteIdentifier
        let key = m.sourceKey.map(q).joined(separator: ", ")
        let s = try source.prepare("SELECT rowid, \(key) FROM \(q(m.source.name)) ORDER BY \(key)")
        var keys: [[Field]] = []
        while keys.count < keysMax, try s.step() {
            if rowids.contains(s.columnInt64(0)) {
                keys.append(m.sourceKey.enumerated().map { Field($0.element, s.columnValue(Int32($0.offset + 1))) })
            }
        }
        return keys
    }
}

/// Keys of child rows whose parent row is missing, found by a query: for
/// WITHOUT ROWID tables, whose rows `PRAGMA foreign_key_check` cannot name
/// (it gives their rowid as NULL). The count comes from the PRAGMA.
enum ForeignKeyOrphans {
    /// The first `limit` keys, in key order, of rows of `child` whose
    /// foreign key (`from` → `parent(to)`; `to` empty: the parent's primary
    /// key) has no NULL part and matches no parent row.
    static func keys(in c: Connection, child: String, key: [String], parent: String, from: [String], to: [String], limit: Int) throws -> [[Value]] {
        let q = quoteIdentifier
        guard limit > 0 else { return [] }
        var parentColumns = to
        if to.allSatisfy({ $0.isEmpty }) {
            guard let info = try Schema.table(named: parent, in: c) else { return [] }
            parentColumns = info.primaryKey
        }
        guard parentColumns.count == from.count, try Schema.table(named: parent, in: c) != nil else { return [] }
        let notNull = from.map { "c.\(q($0)) IS NOT NULL" }.joined(separator: " AND ")
        let match = zip(parentColumns, from).map { "p.\(q($0)) = c.\(q($1))" }.joined(separator: " AND ")
        let keyList = key.map { "c.\(q($0))" }.joined(separator: ", ")
        let s = try c.prepare("SELECT \(keyList) FROM \(q(child)) AS c WHERE \(notNull) AND NOT EXISTS (SELECT 1 FROM \(q(parent)) AS p WHERE \(match)) ORDER BY \(keyList) LIMIT \(limit)")
        return try s.rows { r in (0..<key.count).map { r.columnValue(Int32($0)) } }
    }
}

extension Array {
    func preflightElement(_ i: Int) -> Element? { i >= 0 && i < count ? self[i] : nil }
}
