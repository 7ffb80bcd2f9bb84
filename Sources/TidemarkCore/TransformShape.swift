import TidemarkSQLite

/// A table's new shape, derived from its current definition and the
/// ``TransformOptions``: the new `CREATE TABLE` (under the table's own
/// name), how each new column is filled from the old row, and how a
/// rollback fills the old columns from the new row.
///
/// What the options do not change is kept as written: other columns'
/// types, defaults, collations, CHECKs, UNIQUEs, foreign keys, generated
/// columns, `WITHOUT ROWID`, `AUTOINCREMENT`. Renames are made by SQLite
/// itself (`ALTER TABLE … RENAME COLUMN` in a scratch database, which
/// rewrites every CHECK, UNIQUE, foreign key and generated column that
/// names the column); the rest is decided on the statement's tokens
/// (``CreateTableParts``), never by text search.
public struct TransformShape: Sendable, Equatable {
    /// The table's name as stored.
    public var table: String
    /// The current definition (from `sqlite_schema`).
    public var oldSQL: String
    /// The new definition, named like the table.
    public var createSQL: String
    /// New column ← SQLite expression over the old row, in new column order;
    /// columns the copy does not fill (new ones without `--set`) are absent
    /// and get their DEFAULT.
    public var columns: [Column]
    /// Old column ← expression over the new row, for rollback after the
    /// swap; only columns that do not invert themselves (plain copies and
    /// renames do).
    public var inverse: [Column]
    /// What the new definition leaves out, one line each (e.g. a UNIQUE
    /// over a dropped column).
    public var notes: [String]
    /// Columns whose values change storage class on the way (a type change
    /// to another affinity), with the old and new affinity: the ones the
    /// lossy check reads.
    public var converted: [Conversion]

    public struct Column: Sendable, Equatable {
        public var name: String
        public var expression: String
    }

    public struct Conversion: Sendable, Equatable {
        /// Old column name and new column name.
        public var old: String
        public var new: String
        public var oldAffinity: String
        public var newAffinity: String
    }

    /// Whether the new definition differs from the old one at all.
    public var changes: Bool { normalized(createSQL) != normalized(oldSQL) || columns.contains { $0.expression != quoteIdentifier($0.name) } }

    private func normalized(_ sql: String) -> String {
        ((try? SQLTokenizer.tokens(sql)) ?? []).map { $0.kind == .word ? $0.text.uppercased() : $0.kind == .quoted ? $0.value : String($0.text) }.joined(separator: " ")
    }
}

/// One line a person can act on; thrown before anything is written.
func transformError(_ message: String) -> MigrationError { MigrationError(.badPlan, message) }

extension TransformShape {
    /// Derives the new shape of `table` in `db` (read only).
    /// - Throws: ``MigrationError`` naming unknown tables or columns,
    ///   contradicting options, or a definition SQLite refuses.
    public static func derive(table name: String, options o: TransformOptions, db: Connection) throws -> TransformShape {
        let q = quoteIdentifier
        guard let info = try Schema.table(named: name, in: db) else {
            if let kind = try Schema.objectType(named: name, in: db) {
                throw transformError("\(name) is a \(kind), not an ordinary table; transform rebuilds tables only")
            }
            let tables = try Schema.tables(in: db)
            throw transformError("table \(name) does not exist (tables: \(list(tables, max: 10))); check the name")
        }
        guard !Schema.isInternal(info.name) else { throw transformError("\(info.name) belongs to SQLite or Tidemark; transform rebuilds application tables only") }
        let s = try db.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1")
        try s.bind([.text(info.name)])
        guard try s.step(), !s.columnIsNull(0) else { throw transformError("table \(info.name) has no CREATE TABLE in the schema") }
        let oldSQL = s.columnText(0)
        guard !info.primaryKey.isEmpty else {
            throw transformError("table \(info.name) has no PRIMARY KEY; an online transform keys the rebuilt rows by it — give the table one first (`sqlite-utils transform --pk`, offline)")
        }

        // Every column an option names must exist (old names; new names
        // where a rename made one).
        let all = info.columns
        func find(_ c: String) -> ColumnInfo? { all.first { $0.name.lowercased() == c.lowercased() } }
        var renames: [String: String] = [:]  // old (lowercased) -> new
        var unknown: [String] = []
        func check(_ names: [String], _ option: String, newNamesToo: Bool = false) {
            for n in names where find(n) == nil {
                if newNamesToo, renames.values.contains(where: { $0.lowercased() == n.lowercased() }) { continue }
                unknown.append("\(option) \(n)")
            }
        }
        check(o.renames.map(\.column), "--rename")
        for r in o.renames {
            if let c = find(r.column) { renames[c.name.lowercased()] = r.value }
        }
        check(o.types.map(\.column), "--type", newNamesToo: true)
        check(o.drops, "--drop")
        check(o.columnOrder, "--column-order", newNamesToo: true)
        check(o.notNull, "--not-null", newNamesToo: true)
        check(o.notNullFalse, "--not-null-false", newNamesToo: true)
        check(o.pk, "--pk", newNamesToo: true)
        check(o.defaults.map(\.column), "--default", newNamesToo: true)
        check(o.defaultNone, "--default-none", newNamesToo: true)
        check(o.addForeignKeys.map(\.column), "--add-foreign-key", newNamesToo: true)
        check(o.dropForeignKeys, "--drop-foreign-key", newNamesToo: true)
        check(o.inverses.map(\.column), "--inverse")
        check(o.allowLossy, "--allow-lossy", newNamesToo: true)
        if !unknown.isEmpty {
            throw transformError("table \(info.name) has no column\(unknown.count == 1 ? "" : "s") \(list(unknown, max: 5)) (columns: \(list(all.map(\.name), max: 20))); check the names")
        }
        if let dup = o.renames.first(where: { r in
            let n = r.value.lowercased()
            return all.contains { $0.name.lowercased() == n && renames[$0.name.lowercased()] == nil } || o.renames.filter { $0.value.lowercased() == n }.count > 1
        }) {
            throw transformError("--rename \(dup.column) \(dup.value): the table would have two columns named \(dup.value); rename the other one too, or choose another name")
        }
        for t in o.types where !TransformOptions.validTypes.contains(t.value.uppercased()) {
            throw transformError("--type \(t.column) \(t.value): column types must be one of \(TransformOptions.validTypes.joined(separator: ", ")); use --create for any other definition")
        }
        for t in o.types {
            guard let c = find(t.column), info.primaryKey.contains(where: { $0.lowercased() == c.name.lowercased() }) else { continue }
            let from = columnAffinity(c.declaredType, strict: info.isStrict)
            let to = columnAffinity(t.value, strict: o.strict ?? info.isStrict)
            if from != to {
                throw transformError("--type \(c.name) \(t.value): \(c.name) is part of the primary key, whose values the online transform keys the rebuild by, and changing its affinity (\(from) to \(to)) would change them; keep its type")
            }
        }
        // The new name of a column named by an option (old or new name).
        func newName(_ c: String) -> String {
            if let col = find(c) { return renames[col.name.lowercased()] ?? col.name }
            return renames.values.first { $0.lowercased() == c.lowercased() } ?? c
        }
        let dropped = Set(o.drops.compactMap { find($0)?.name.lowercased() })
        for k in info.primaryKey where dropped.contains(k.lowercased()) {
            throw transformError("--drop \(k): \(k) is part of the primary key, which an online transform keys the rebuild by; keep it")
        }
        if o.pkNone {
            throw transformError("--pk-none: an online transform keys the rebuilt rows by the primary key (\(info.primaryKey.joined(separator: ", "))) while it copies and swaps, so the new table must keep it; remove the key offline (`sqlite-utils transform --pk-none`)")
        }
        if !o.pk.isEmpty {
            let asked = o.pk.map { newName($0).lowercased() }
            let current = info.primaryKey.map { newName($0).lowercased() }
            if asked != current {
                throw transformError("--pk \(o.pk.joined(separator: " --pk ")): an online transform keys the rebuilt rows by the current primary key (\(info.primaryKey.joined(separator: ", "))), so it cannot change the key; add a UNIQUE index on the new key columns instead, or change the key offline")
            }
        }
        if o.create != nil && o.shapesTable {
            throw transformError("--create gives the whole new definition; leave out --type, --drop, --column-order, --not-null, --pk, --default, foreign key and strict options (write them into the CREATE TABLE)")
        }
        let conflicting = Set(o.notNull.map { newName($0).lowercased() }).intersection(o.notNullFalse.map { newName($0).lowercased() })
        if let c = conflicting.first { throw transformError("--not-null and --not-null-false both name \(c); choose one") }

        let scratch = try Connection(path: ":memory:", mode: .readWriteCreate)
        defer { try? scratch.close() }
        try scratch.execute("PRAGMA foreign_keys = OFF")
        var notes: [String] = []
        let createSQL: String
        if let create = o.create {
            createSQL = try checkedCreate(create, table: info.name, scratch: scratch)
        } else {
            createSQL = try rebuild(oldSQL, info: info, options: o, renames: renames, dropped: dropped, newName: newName,
                                    db: db, scratch: scratch, notes: &notes)
        }
        // The new table as SQLite sees it.
        try scratch.execute("DROP TABLE IF EXISTS \(q(info.name))")
        do { try scratch.execute(createSQL) } catch {
            throw transformError("the new definition of \(info.name) is refused by SQLite: \(error.message) (\(createSQL))")
        }
        guard let newInfo = try Schema.table(named: info.name, in: scratch) else {
            throw transformError("--create must create a table named \(info.name) (the swap gives it that name)")
        }
        let newKey = newInfo.primaryKey.map { $0.lowercased() }
        guard newKey == info.primaryKey.map({ newName($0).lowercased() }) else {
            throw transformError("the new definition of \(info.name) has primary key (\(newInfo.primaryKey.joined(separator: ", "))); an online transform keys the rebuild by the current one (\(info.primaryKey.map(newName).joined(separator: ", "))), so it must stay")
        }

        // How each new column is filled.
        var columns: [Column] = []
        var inverse: [Column] = []
        var converted: [Conversion] = []
        let newData = newInfo.dataColumns
        for s in o.sets where !newData.contains(where: { $0.name.lowercased() == newName(s.column).lowercased() }) {
            throw transformError("--set \(s.column): the new table has no data column \(s.column) (columns: \(list(newData.map(\.name), max: 20)))")
        }
        for c in newData {
            let targetAffinity = columnAffinity(c.declaredType, strict: newInfo.isStrict)
            // The old column this one carries: renamed to it, or of its name
            // and neither renamed nor dropped.
            let old = info.dataColumns.first { oc in
                let lower = oc.name.lowercased()
                if dropped.contains(lower) { return false }
                return (renames[lower] ?? oc.name).lowercased() == c.name.lowercased()
            }
            if let set = o.sets.first(where: { newName($0.column).lowercased() == c.name.lowercased() }) {
                columns.append(Column(name: c.name, expression: affinityExpression("(\(set.value))", to: targetAffinity)))
                if let old, !o.inverses.contains(where: { $0.column.lowercased() == old.name.lowercased() }) {
                    throw transformError("--set \(set.column): it replaces the values of \(old.name), so a rollback after the swap could not carry the new table's writes to it back; add --inverse \(old.name) EXPR (an expression over the new row, e.g. the reverse of the --set)")
                }
                continue
            }
            guard let old else { continue }
            let sourceAffinity = columnAffinity(old.declaredType, strict: info.isStrict)
            if sourceAffinity == targetAffinity || targetAffinity == "BLOB" {
                // Same affinity: the value is stored unchanged (applying an
                // affinity twice changes nothing); no affinity: kept as is.
                columns.append(Column(name: c.name, expression: q(old.name)))
                continue
            }
            if info.primaryKey.contains(where: { $0.lowercased() == old.name.lowercased() }) {
                throw transformError("--type \(old.name): \(old.name) is part of the primary key, whose values the online transform keys the rebuild by, and changing its affinity (\(sourceAffinity) to \(targetAffinity)) would change them; keep its type")
            }
            columns.append(Column(name: c.name, expression: affinityExpression(q(old.name), to: targetAffinity)))
            converted.append(Conversion(old: old.name, new: c.name, oldAffinity: sourceAffinity, newAffinity: targetAffinity))
            // The old table's affinity converts the new value back on the
            // way in, as it converted the original.
            inverse.append(Column(name: old.name, expression: q(c.name)))
        }
        for e in o.inverses {
            let old = find(e.column)!.name
            if let i = inverse.firstIndex(where: { $0.name.lowercased() == old.lowercased() }) { inverse[i].expression = e.value } else { inverse.append(Column(name: old, expression: e.value)) }
        }
        return TransformShape(table: info.name, oldSQL: oldSQL, createSQL: createSQL, columns: columns, inverse: inverse,
                              notes: notes, converted: converted)
    }

    /// An expression whose value is `x` as a column of `affinity` would
    /// store it — exactly, storage class and bits.
    ///
    /// Why: verify compares each new column with its expression evaluated
    /// over the old row, value for value (storage class and bytes), so an
    /// expression that left the conversion to the new column's affinity
    /// (5 stored as 5.0 in a REAL column) would make every converted value a
    /// difference. The conversions, from SQLite's "Type Affinity" rules:
    /// > A column with TEXT affinity stores all data using storage classes
    /// > NULL, TEXT or BLOB. If numerical data is inserted into a column with
    /// > TEXT affinity it is converted into text form before being stored.
    /// > […] When text data is inserted into a NUMERIC column, the storage
    /// > class of the text is converted to INTEGER or REAL […] if the text is
    /// > a well-formed integer or real literal […] If a floating point value
    /// > that can be represented exactly as an integer is inserted into a
    /// > column with NUMERIC affinity, the value is converted into an integer.
    /// > […] A column with REAL affinity behaves like a column with NUMERIC
    /// > affinity except that it forces integer values into floating point.
    /// `CAST(x AS TEXT)` is the TEXT conversion itself. Whether text is "well
    /// formed" is decided by SQLite too: in `x = CAST(x AS NUMERIC)` the
    /// right side has NUMERIC affinity, so the comparison applies NUMERIC
    /// affinity to `x` ("If one operand has INTEGER, REAL or NUMERIC affinity
    /// and the other operand has TEXT or BLOB or no affinity then NUMERIC
    /// affinity is applied to other operand"); well-formed text becomes the
    /// same number as the cast (equal), other text stays text (never equal
    /// to a number). `TransformShapeTests` checks the expressions against
    /// real columns over edge values.
    static func affinityExpression(_ x: String, to affinity: String) -> String {
        switch affinity {
        case "TEXT":
            return "CASE WHEN typeof(\(x)) IN ('integer', 'real') THEN CAST(\(x) AS TEXT) ELSE \(x) END"
        case "REAL":
            // A REAL column keeps no -0.0 (it stores integral values as
            // integers on disk): `+ 0.0` makes -0.0 0.0 and leaves every
            // other real as it is.
            return "CASE typeof(\(x)) WHEN 'integer' THEN CAST(\(x) AS REAL) WHEN 'real' THEN \(x) + 0.0"
                + " WHEN 'text' THEN CASE WHEN \(x) = CAST(\(x) AS NUMERIC) THEN CAST(CAST(\(x) AS NUMERIC) AS REAL) ELSE \(x) END"
                + " ELSE \(x) END"
        case "INTEGER", "NUMERIC":
            // A real that is an integer in range becomes that integer
            // (`CAST(x AS NUMERIC)` alone keeps large ones real: the column
            // does not).
            func integral(_ v: String) -> String {
                "CASE WHEN typeof(\(v)) = 'real' AND \(v) = CAST(\(v) AS INTEGER) AND abs(\(v)) < 9223372036854775807.0 THEN CAST(\(v) AS INTEGER) ELSE \(v) END"
            }
            return "CASE typeof(\(x)) WHEN 'real' THEN \(integral(x))"
                + " WHEN 'text' THEN CASE WHEN \(x) = CAST(\(x) AS NUMERIC) THEN \(integral("CAST(\(x) AS NUMERIC)")) ELSE \(x) END"
                + " ELSE \(x) END"
        default:
            return x
        }
    }

    /// `--default VALUE` as sqlite-utils writes it: quoted values and
    /// CURRENT_TIME/DATE/TIMESTAMP as they are, `f(…)` as an expression in
    /// parentheses, anything else a string literal.
    static func defaultLiteral(_ value: String) -> String {
        if value.count >= 2, (value.hasPrefix("'") && value.hasSuffix("'")) || (value.hasPrefix("\"") && value.hasSuffix("\"")) { return value }
        if ["CURRENT_TIME", "CURRENT_DATE", "CURRENT_TIMESTAMP"].contains(value.uppercased()) { return value }
        if value.hasSuffix(")") { return "(\(value))" }
        return "'" + value.replacing("'", with: "''") + "'"
    }

    /// `--create`: one CREATE TABLE of the table's own name.
    static func checkedCreate(_ create: String, table: String, scratch: Connection) throws -> String {
        do { try scratch.execute(create) } catch {
            throw transformError("--create does not parse: \(error.message); fix the CREATE TABLE")
        }
        let made = try scratch.prepare("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").rows { ($0.columnText(0), $0.columnText(1)) }
        guard made.count == 1, made[0].0 == "table" else {
            throw transformError("--create must be exactly one CREATE TABLE statement (it made \(made.map { "\($0.0) \($0.1)" }.joined(separator: ", ")))")
        }
        guard made[0].1.lowercased() == table.lowercased() else {
            throw transformError("--create makes table \(made[0].1); name it \(table) (the swap gives the rebuilt table the table's own name)")
        }
        let s = try scratch.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table'")
        _ = try s.step()
        return s.columnText(0)
    }

    /// The old definition with the options applied (everything but `--create`).
    static func rebuild(_ oldSQL: String, info: TableInfo, options o: TransformOptions, renames: [String: String],
                        dropped: Set<String>, newName: (String) -> String, db: Connection, scratch: Connection,
                        notes: inout [String]) throws -> String {
        let q = quoteIdentifier
        // 1. Renames, by SQLite (two phases, so that swaps work).
        var sql = oldSQL
        if !renames.isEmpty {
            do { try scratch.execute(oldSQL) } catch {
                throw transformError("cannot read the definition of \(info.name) (\(error.message)); use --create")
            }
            let pairs = info.columns.filter { renames[$0.name.lowercased()] != nil }
            do {
                for (i, c) in pairs.enumerated() {
                    try scratch.execute("ALTER TABLE \(q(info.name)) RENAME COLUMN \(q(c.name)) TO \(q("_tidemark_rename_\(i)"))")
                }
                for (i, c) in pairs.enumerated() {
                    try scratch.execute("ALTER TABLE \(q(info.name)) RENAME COLUMN \(q("_tidemark_rename_\(i)")) TO \(q(renames[c.name.lowercased()]!))")
                }
            } catch {
                throw transformError("--rename: SQLite refuses it: \(error.message)")
            }
            do {
                let s = try scratch.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1")
                try s.bind([.text(info.name)])
                _ = try s.step()
                sql = s.columnText(0)
            }
            try scratch.execute("DROP TABLE \(q(info.name))")
        }
        let parts: CreateTableParts
        do { parts = try CreateTableParts.parse(sql) } catch {
            throw transformError("cannot read the definition of \(info.name) (\(error)); use --create")
        }
        func text(_ t: ArraySlice<SQLToken>) -> String { parts.text(t) }
        // Dropped columns under their (unchanged) names.
        let droppedNames = Set(dropped.map { d in (renames[d] ?? d).lowercased() })
        func names(_ t: some Sequence<SQLToken>) -> Set<String> { SQLTokenizer.identifiers(t) }
        func lower(_ s: String) -> String { s.lowercased() }
        /// A constraint as kept: its kind, its SQL, and the names it lists
        /// (the first parenthesized group of a table PRIMARY KEY, UNIQUE or
        /// FOREIGN KEY: for a foreign key the child columns).
        struct Part {
            var kind: CreateTableParts.Constraint.Kind
            var sql: String
            var listed: Set<String> = []
        }
        struct Col {
            var name: String
            var nameText: String
            var type: String
            var constraints: [Part]
        }
        func listed(_ body: ArraySlice<SQLToken>) -> Set<String> {
            let b = Array(body)
            guard let open = b.firstIndex(where: \.isOpen), let close = SQLTokenizer.closing(b, from: open) else { return [] }
            return names(b[(open + 1)..<close])
        }

        // 2. Columns: dropped ones go with their own constraints; a CHECK
        // or generated column elsewhere that names one stops the transform
        // (as sqlite-utils does), since it would no longer compile.
        var columns: [Col] = []
        for c in parts.columns where !droppedNames.contains(lower(c.name)) {
            for k in c.constraints where k.kind == .check || k.kind == .generated {
                if let d = names(k.body).intersection(droppedNames).first {
                    throw transformError("--drop \(d): it is used by \(c.name)'s \(k.kind == .check ? "CHECK" : "generated column") \(text(k.body)); drop that too, or define the table with --create")
                }
            }
            columns.append(Col(name: c.name, nameText: c.nameText, type: c.type,
                               constraints: c.constraints.map { Part(kind: $0.kind, sql: text($0.tokens)) }))
        }
        var constraints: [Part] = []
        for k in parts.constraints {
            switch k.kind {
            case .check:
                if let d = names(k.body).intersection(droppedNames).first {
                    throw transformError("--drop \(d): it is used by CHECK \(text(k.body)); define the table with --create to drop both")
                }
                constraints.append(Part(kind: k.kind, sql: text(k.tokens)))
            case .unique, .primaryKey, .foreignKey:
                let l = listed(k.body)
                if let d = l.intersection(droppedNames).first {
                    notes.append("\(text(k.tokens)) is not kept: it names dropped column \(d)")
                    continue
                }
                constraints.append(Part(kind: k.kind, sql: text(k.tokens), listed: l))
            default:
                constraints.append(Part(kind: k.kind, sql: text(k.tokens)))
            }
        }

        // 3. Per-column changes.
        func index(_ c: String) -> Int? { columns.firstIndex { lower($0.name) == lower(newName(c)) } }
        for t in o.types {
            guard let i = index(t.column) else { continue }
            var type = t.value.uppercased()
            if type == "FLOAT" && (o.strict ?? parts.isStrict) { type = "REAL" }  // STRICT knows no FLOAT
            columns[i].type = type
        }
        for c in o.notNull {
            guard let i = index(c), !columns[i].constraints.contains(where: { $0.kind == .notNull }) else { continue }
            columns[i].constraints.removeAll { $0.kind == .null }
            columns[i].constraints.append(Part(kind: .notNull, sql: "NOT NULL"))
        }
        for c in o.notNullFalse {
            guard let i = index(c) else { continue }
            columns[i].constraints.removeAll { $0.kind == .notNull }
        }
        for d in o.defaults {
            guard let i = index(d.column) else { continue }
            columns[i].constraints.removeAll { $0.kind == .default }
            columns[i].constraints.append(Part(kind: .default, sql: "DEFAULT " + defaultLiteral(d.value)))
        }
        for c in o.defaultNone {
            guard let i = index(c) else { continue }
            columns[i].constraints.removeAll { $0.kind == .default }
        }
        for c in o.dropForeignKeys {
            let n = lower(newName(c))
            var found = false
            if let i = index(c), columns[i].constraints.contains(where: { $0.kind == .references }) {
                columns[i].constraints.removeAll { $0.kind == .references }
                found = true
            }
            let before = constraints.count
            constraints.removeAll { $0.kind == .foreignKey && $0.listed.contains(n) }
            found = found || constraints.count != before
            if !found { throw transformError("--drop-foreign-key \(c): \(info.name).\(c) has no foreign key") }
        }
        for f in o.addForeignKeys {
            guard let other = try Schema.table(named: f.otherTable, in: db) else {
                throw transformError("--add-foreign-key \(f.column) \(f.otherTable) \(f.otherColumn): there is no table \(f.otherTable)")
            }
            guard let oc = other.columns.first(where: { lower($0.name) == lower(f.otherColumn) }) else {
                throw transformError("--add-foreign-key \(f.column) \(f.otherTable) \(f.otherColumn): table \(other.name) has no column \(f.otherColumn) (columns: \(list(other.columns.map(\.name), max: 20)))")
            }
            guard try isUniqueColumn(oc.name, of: other, in: db) else {
                throw transformError("--add-foreign-key \(f.column) \(f.otherTable) \(f.otherColumn): \(other.name).\(oc.name) is neither its primary key nor UNIQUE, so SQLite could not enforce the foreign key; reference a key column")
            }
            let n = newName(f.column)
            constraints.append(Part(kind: .foreignKey, sql: "FOREIGN KEY (\(q(n))) REFERENCES \(q(other.name))(\(q(oc.name)))", listed: [lower(n)]))
        }
        // 4. Order: the named columns first, the others in their order.
        if !o.columnOrder.isEmpty {
            var first: [Col] = []
            for c in o.columnOrder {
                guard let i = index(c), !first.contains(where: { lower($0.name) == lower(columns[i].name) }) else { continue }
                first.append(columns[i])
            }
            columns = first + columns.filter { c in !first.contains { lower($0.name) == lower(c.name) } }
        }
        // 5. STRICT.
        let optionWords = ((try? SQLTokenizer.tokens(parts.options)) ?? []).filter { $0.kind == .word }.map { $0.text.uppercased() }
        let strict = o.strict ?? parts.isStrict
        var options: [String] = []
        if optionWords.contains("WITHOUT") { options.append("WITHOUT ROWID") }
        if strict {
            options.append("STRICT")
            let allowed: Set<String> = ["INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY"]
            let bad = columns.filter { !allowed.contains($0.type.uppercased()) }
            if !bad.isEmpty {
                throw transformError("--strict: STRICT columns need one of the types INT, INTEGER, REAL, TEXT, BLOB, ANY; \(list(bad.map { "\($0.name) (\($0.type.isEmpty ? "no type" : $0.type))" }, max: 5)) \(bad.count == 1 ? "has" : "have") another; add --type for \(bad.count == 1 ? "it" : "each")")
            }
        }
        // 6. Assemble.
        var defs = columns.map { c -> String in
            var d = c.nameText.isEmpty ? q(c.name) : c.nameText
            if !c.type.isEmpty { d += " " + c.type }
            for k in c.constraints { d += " " + k.sql }
            return d
        }
        defs += constraints.map(\.sql)
        return "CREATE TABLE \(parts.tableNameText) (\n  \(defs.joined(separator: ",\n  "))\n)" + (options.isEmpty ? "" : " " + options.joined(separator: ", "))
    }

    /// Whether `column` alone is `table`'s primary key or has a UNIQUE index
    /// (what a foreign key's parent column must have).
    static func isUniqueColumn(_ column: String, of table: TableInfo) throws -> Bool {
        if table.primaryKey.count == 1 && table.primaryKey[0].lowercased() == column.lowercased() { return true }
        return false
    }
}

extension TransformShape {
    /// Also a UNIQUE index over exactly `column`, read from `db`.
    static func isUniqueColumn(_ column: String, of table: TableInfo, in db: Connection) throws -> Bool {
        if try isUniqueColumn(column, of: table) { return true }
        let list = try db.prepare("SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1 AND partial = 0")
        try list.bind([.text(table.name)])
        for name in try list.rows({ $0.columnText(0) }) {
            let x = try db.prepare("SELECT name FROM pragma_index_info(?1)")
            try x.bind([.text(name)])
            let cols = try x.rows { $0.columnIsNull(0) ? "" : $0.columnText(0) }
            if cols.count == 1 && cols[0].lowercased() == column.lowercased() { return true }
        }
        return false
    }
}

/// `a, b, c` — at most `max` items, then `and N more`.
func list(_ items: [String], max: Int) -> String {
    if items.isEmpty { return "none" }
    if items.count <= max { return items.joined(separator: ", ") }
    return items.prefix(max).joined(separator: ", ") + " and \(items.count - max) more"
}
