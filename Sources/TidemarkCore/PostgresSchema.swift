import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// How the copier and the replayer send one target column's values to
/// PostgreSQL.
public enum PGEncoding: String, Sendable {
    /// Integers, binary `int8`.
    case int8
    /// Reals, binary `float8` (bit for bit, -0.0 and ±inf included).
    case float8
    /// Text, binary `text` (valid UTF-8 without NUL: the preflight checks).
    case text
    /// Blobs, binary `bytea`.
    case bytea
    /// Integers and finite reals as an exact decimal (`numeric`).
    case numeric
    /// Integers 0 and 1 as `bool`.
    case bool
    /// A plan-typed column (`timestamptz`, `date`, `jsonb`, `uuid`,
    /// `numeric(10,2)`, …): the value's text form
    /// (``PostgresSchema/textualInput(_:)``) sent in text format, which the
    /// server parses.
    case textual
}

/// One target column in PostgreSQL.
public struct PostgresColumn: Sendable, Equatable {
    /// Target column name.
    public var name: String
    /// PostgreSQL type SQL: `bigint`, `double precision`, `text COLLATE "C"`, `timestamptz`, …
    public var type: String
    public var encoding: PGEncoding
    public var notNull: Bool

    public init(name: String, type: String, encoding: PGEncoding, notNull: Bool) {
        self.name = name
        self.type = type
        self.encoding = encoding
        self.notNull = notNull
    }
}

/// A `CREATE INDEX` built after the copy.
public struct PostgresIndex: Sendable, Equatable {
    public var name: String
    public var sql: String
}

/// A foreign key added after the copy: `add` (`NOT VALID`, so adding it
/// does not scan), then `validate` (scans, takes only a SHARE UPDATE
/// EXCLUSIVE lock).
public struct PostgresForeignKey: Sendable, Equatable {
    public var name: String
    public var add: String
    public var validate: String
}

/// An `INTEGER PRIMARY KEY` (rowid alias, with or without AUTOINCREMENT):
/// PostgreSQL gets a sequence owned by the column as its DEFAULT, so rows
/// inserted without a key get one after cutover.
public struct PostgresIdentity: Sendable, Equatable {
    public var column: String
    /// Qualified, quoted sequence name.
    public var sequence: String
    /// `CREATE SEQUENCE … OWNED BY …; ALTER TABLE … SET DEFAULT nextval(…)`
    /// (run after ``PostgresTable/createSQL``).
    public var sequenceSQL: String
    /// At cutover: moves the sequence past the table's largest key and past
    /// `$1` (bigint: the source's `sqlite_sequence` value for AUTOINCREMENT
    /// tables, else 0); the next key is at least 1.
    public var setvalSQL: String
}

/// One target table in PostgreSQL.
public struct PostgresTable: Sendable, Equatable {
    public var source: String
    public var target: String
    /// In ``TableMapping/columns`` order.
    public var columns: [PostgresColumn]
    public var primaryKey: [String]
    /// `CREATE TABLE "schema"."t" (…, PRIMARY KEY (…), UNIQUE …, CHECK …)`:
    /// what exists from the start.
    public var createSQL: String
    /// Built after the copy (also UNIQUE indexes from `CREATE UNIQUE INDEX`).
    public var indexes: [PostgresIndex]
    /// Added after the copy (and after every table's indexes: a referenced
    /// key may be a unique index).
    public var foreignKeys: [PostgresForeignKey]
    public var identity: PostgresIdentity?
    /// The CHECK constraints in ``createSQL`` (column CHECKs are written as
    /// table constraints: the same in PostgreSQL).
    public var checks: [PostgresCheck] = []
    /// Column definitions (type, NOT NULL, DEFAULT, UNIQUE) and the table's
    /// PRIMARY KEY and UNIQUE constraints: ``createSQL`` without its CHECKs.
    var columnDefs: [String] = []
    var keyAndUnique: [String] = []
    /// `"schema"."table"` as in the statements.
    var qualifiedName = ""

    /// `CREATE TABLE` of this table under `qualified`, with or without its CHECKs.
    func create(qualified: String, checks withChecks: Bool) -> String {
        var parts = columnDefs + keyAndUnique
        if withChecks {
            parts += checks.map { c in (c.name.map { "CONSTRAINT " + PGSQL.ident($0) + " " } ?? "") + "CHECK (\(c.sql))" }
        }
        return "CREATE TABLE \(qualified) (" + parts.joined(separator: ", ") + ")"
    }
}

/// A translated CHECK constraint.
public struct PostgresCheck: Sendable, Equatable {
    public var name: String?
    /// The PostgreSQL expression.
    public var sql: String
    /// The SQLite constraint it comes from, as written.
    public var label: String
}

/// What a PostgreSQL target receives for a plan.
///
/// Invariant: every constraint, index, default, trigger and view of the
/// carried ``TargetSchema`` is either translated in here or listed in
/// ``omissions`` with why (the carried schema's own omissions included).
public struct PostgresSchemaPlan: Sendable, Equatable {
    public var schema: String
    public var tables: [PostgresTable]
    public var omissions: [TargetSchema.Omission]
}

/// Translates the carried target schema (SQLite DDL with target names, see
/// ``TargetSchema``) into PostgreSQL DDL.
///
/// Types are exact by default, chosen by the declared type's SQLite affinity
/// (INTEGER → bigint, REAL → double precision, TEXT → text, NUMERIC →
/// numeric; BLOB or no type → by the one storage class the values have, as
/// the preflight observed: integer → bigint, real → double precision, text
/// → text, blob → bytea; no non-NULL value → bytea when the declared type
/// says BLOB, else text). A plan column's `type:` names the PostgreSQL type
/// itself; SQLite's spellings INTEGER/INT, REAL/DOUBLE/FLOAT, TEXT, BLOB,
/// NUMERIC/DECIMAL and BOOLEAN map to the exact types above (PostgreSQL's
/// own `real` and `integer` would narrow), ANY means "by the values", and
/// anything else is used as written (encoding ``PGEncoding/textual``).
///
/// Expressions (CHECK, partial-index WHERE, index terms) are translated only
/// when every token is understood: column names, literals, comparisons,
/// AND/OR/NOT, IN, BETWEEN, IS [NOT] NULL, CASE, arithmetic, `||` and the
/// functions length, lower, upper (ASCII-only, as in SQLite, through
/// `COLLATE "C"`), abs, coalesce/ifnull, trim, ltrim, rtrim, substr.
/// Anything else is an omission.
public enum PostgresSchema {
    /// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
    static let maxNameBytes = 63

    public static func translate(plan: Plan, mappings: [TableMapping], schema: TargetSchema, pgSchema: String,
                                 observedClasses: [String: [String: String]]) throws -> PostgresSchemaPlan {
        var out = PostgresSchemaPlan(schema: pgSchema, tables: [], omissions: schema.omissions)
        func omit(_ kind: String, _ name: String, _ table: String, _ reason: String, blocks: Bool = false) {
            out.omissions.append(.init(kind: kind, name: name, table: table, reason: reason, blocksCutover: blocks))
        }
        guard pgSchema.utf8.count <= maxNameBytes, !pgSchema.isEmpty, !pgSchema.contains("\0") else {
            throw MigrationError(.badPlan, "PostgreSQL schema name '\(pgSchema)' must be 1 to 63 bytes without NUL")
        }
        // Pass 1: columns, keys and parsed parts of every table (foreign keys
        // need their parents' keys and unique sets).
        var built: [TableBuild] = []
        for m in mappings where m.shape == .copy {
            guard let t = schema.table(forSource: m.source.name) else {
                throw MigrationError(.badPlan, "the carried schema has no table for source table '\(m.source.name)'")
            }
            let observed = observedClasses.first { $0.key.lowercased() == t.target.lowercased() }?.value ?? [:]
            built.append(try TableBuild(mapping: m, table: t, pgSchema: pgSchema, observed: observed, omit: omit))
        }
        func indexes(of b: TableBuild) -> [TargetSchema.Object] {
            schema.indexes.filter { $0.kind == .index && $0.table.lowercased() == b.table.target.lowercased() }
        }
        // Every table's unique column sets first: a foreign key may reference
        // a table translated after its own.
        for i in built.indices { built[i].collectUniqueSets(indexes: indexes(of: built[i])) }
        let byTarget = Dictionary(built.map { ($0.table.target.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
        for b in built {
            var b = b
            out.tables.append(b.finish(indexes: indexes(of: b), tables: byTarget, omit: omit))
        }
        for o in schema.triggers {
            omit("trigger", o.name, sourceName(of: o.table, built), "SQLite trigger SQL is not carried to PostgreSQL; recreate trigger \(o.name) in PostgreSQL (PL/pgSQL), then cut over with --drop-triggers", blocks: true)
        }
        for o in schema.views {
            omit("view", o.name, sourceName(of: o.table, built), "SQLite view SQL is not carried to PostgreSQL; recreate view \(o.name) in PostgreSQL, then cut over with --drop-triggers", blocks: true)
        }
        return out
    }

    static func sourceName(of target: String, _ built: [TableBuild]) -> String {
        built.first { $0.table.target.lowercased() == target.lowercased() }?.table.source ?? target
    }

    /// The text PostgreSQL parses for a value sent ``PGEncoding/textual``:
    /// integers in decimal, reals in the shortest form that reads back to
    /// the same double (`inf`/`-inf` as `Infinity`/`-Infinity`), text as is;
    /// nil for NULL and blobs (a blob has no text form).
    public static func textualInput(_ v: Value) -> String? {
        switch v {
        case .null, .blob: return nil
        case .integer(let i): return String(i)
        case .real(let d): return decimalText(d)
        case .text(let s): return s
        }
    }

    /// A double as PostgreSQL reads it (and, finite, as `numeric` stores it
    /// exactly): the shortest round-trip decimal.
    public static func decimalText(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return "\(d)"
    }

    /// The PostgreSQL type and encoding of a plan `type:`; nil for ANY (by
    /// the values).
    public static func explicitType(_ declared: String) -> (type: String, encoding: PGEncoding)? {
        let words = declared.uppercased().split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).joined(separator: " ")
        switch words {
        case "INTEGER", "INT", "BIGINT", "INT8": return ("bigint", .int8)
        case "REAL", "DOUBLE", "DOUBLE PRECISION", "FLOAT", "FLOAT8": return ("double precision", .float8)
        case "TEXT": return ("text", .text)
        case "BLOB", "BYTEA": return ("bytea", .bytea)
        case "NUMERIC", "DECIMAL": return ("numeric", .numeric)
        case "BOOLEAN", "BOOL": return ("boolean", .bool)
        case "ANY": return nil
        default: return (declared.trimmingSpaces, .textual)
        }
    }

    /// The type of a column by SQLite affinity; nil for BLOB affinity (by the values).
    static func affinityType(_ declared: String, strict: Bool) -> (type: String, encoding: PGEncoding)? {
        switch columnAffinity(declared, strict: strict) {
        case "INTEGER": return ("bigint", .int8)
        case "REAL": return ("double precision", .float8)
        case "TEXT": return ("text", .text)
        case "NUMERIC": return ("numeric", .numeric)
        default: return nil
        }
    }

    /// The type of a BLOB-affinity column from its values' one storage class.
    static func observedType(_ observed: String?, declared: String) -> (type: String, encoding: PGEncoding) {
        switch observed {
        case "integer": return ("bigint", .int8)
        case "real": return ("double precision", .float8)
        case "text": return ("text", .text)
        case "blob": return ("bytea", .bytea)
        default:
            // Only NULLs (or no rows): nothing says more than the declaration.
            return declared.uppercased().contains("BLOB") ? ("bytea", .bytea) : ("text", .text)
        }
    }

    /// How one target column's values are typed before any value is seen:
    /// a fixed type, or "by the values" (BLOB affinity, plan type ANY).
    enum ColumnRule: Equatable {
        case fixed(type: String, encoding: PGEncoding, explicit: Bool)
        case byValues(declared: String)
    }

    /// The rule for each mapped column of `m` given the carried `createSQL`
    /// (target names). Shared by the preflight and the translation.
    static func columnRules(_ m: TableMapping, createSQL: String) throws -> [ColumnRule] {
        let parts: CreateTableParts
        do { parts = try CreateTableParts.parse(createSQL) } catch {
            throw MigrationError(.badPlan, "cannot read the target definition of \(m.targetTable) (\(error))")
        }
        return m.columns.map { mc in
            let def = parts.columns.first { $0.name.lowercased() == mc.target.lowercased() }
            return rule(mc, def: def, strict: parts.isStrict)
        }
    }

    static func rule(_ mc: TableMapping.MappedColumn, def: CreateTableParts.Column?, strict: Bool) -> ColumnRule {
        if let t = mc.type {
            if let e = explicitType(t) { return .fixed(type: e.type, encoding: e.encoding, explicit: e.encoding == .textual || e.encoding == .bool) }
            return .byValues(declared: t)
        }
        let declared = def?.type ?? ""
        if let a = affinityType(declared, strict: strict) { return .fixed(type: a.type, encoding: a.encoding, explicit: false) }
        return .byValues(declared: declared)
    }

    // MARK: Names

    /// `name` made to fit PostgreSQL's 63-byte limit: a longer one keeps a
    /// prefix and gets a hash of the whole, so two long names stay apart.
    static func fitName(_ name: String) -> String {
        guard name.utf8.count > maxNameBytes else { return name }
        var hash: UInt32 = 2166136261
        for b in name.utf8 { hash = (hash ^ UInt32(b)) &* 16777619 }
        var prefix = ""
        for ch in name {
            if prefix.utf8.count + String(ch).utf8.count > maxNameBytes - 9 { break }
            prefix.append(ch)
        }
        let hex = String(hash, radix: 16)
        return prefix + "_" + String(repeating: "0", count: 8 - hex.count) + hex
    }
}

/// One table being translated.
struct TableBuild {
    let mapping: TableMapping
    let table: TargetSchema.Table
    let pgSchema: String
    let parts: CreateTableParts
    var columns: [PostgresColumn] = []
    /// Lowercased target name → column.
    var byName: [String: PostgresColumn] = [:]
    let primaryKey: [String]
    /// Column sets (lowercased) that are unique in this table: the key,
    /// UNIQUE constraints, plain unique indexes (filled by `finish`).
    var uniqueSets: [[String]] = []
    var tableConstraints: [String] = []
    var identity: PostgresIdentity?
    let omit: (String, String, String, String, Bool) -> Void

    var qualified: String { PGSQL.ident(pgSchema) + "." + PGSQL.ident(table.target) }
    var sourceName: String { table.source }

    init(mapping m: TableMapping, table t: TargetSchema.Table, pgSchema: String, observed: [String: String],
         omit: @escaping (String, String, String, String, Bool) -> Void) throws {
        mapping = m
        table = t
        self.pgSchema = pgSchema
        self.omit = omit
        do { parts = try CreateTableParts.parse(t.createSQL) } catch {
            throw MigrationError(.badPlan, "cannot read the target definition of \(t.target) (\(error)); report this with the table's CREATE TABLE")
        }
        primaryKey = m.targetKey
        if t.target.utf8.count > PostgresSchema.maxNameBytes {
            throw MigrationError(.badPlan, "target table name '\(t.target)' is longer than PostgreSQL's 63 bytes; give it a shorter name with to:")
        }
        let keyLower = Set(m.targetKey.map { $0.lowercased() })
        for mc in m.columns {
            if mc.target.utf8.count > PostgresSchema.maxNameBytes || mc.target.contains("\0") {
                throw MigrationError(.badPlan, "target column name '\(t.target).\(mc.target)' does not fit PostgreSQL (at most 63 bytes, no NUL); rename it in the plan's columns:")
            }
            let def = parts.columns.first { $0.name.lowercased() == mc.target.lowercased() }
            var type: String
            var encoding: PGEncoding
            switch PostgresSchema.rule(mc, def: def, strict: parts.isStrict) {
            case .fixed(let ty, let en, _): (type, encoding) = (ty, en)
            case .byValues(let declared):
                let seen = observed.first { $0.key.lowercased() == mc.target.lowercased() }?.value
                (type, encoding) = PostgresSchema.observedType(seen, declared: declared)
            }
            let isKey = keyLower.contains(mc.target.lowercased())
            var collation = "BINARY"
            var notNull = isKey
            for k in def?.constraints ?? [] {
                switch k.kind {
                case .notNull: notNull = true
                case .collate:
                    if let c = k.body.dropFirst().first { collation = c.value.uppercased() }
                default: break
                }
            }
            if collation != "BINARY" {
                omit("collate", "\(mc.target) COLLATE \(collation)", t.source,
                     "column \(mc.target) compares with SQLite's \(collation) collation, which PostgreSQL does not have; it compares bytewise (COLLATE \"C\") there", false)
            }
            if isKey && (encoding == .text || encoding == .textual) && (type == "text" || type.lowercased().hasPrefix("varchar") || type.lowercased().hasPrefix("character")) {
                // Key order must be SQLite's (bytewise), whatever the database's collation.
                type += " COLLATE \"C\""
            }
            let c = PostgresColumn(name: mc.target, type: type, encoding: encoding, notNull: notNull)
            columns.append(c)
            byName[mc.target.lowercased()] = c
        }
        uniqueSets.append(m.targetKey.map { $0.lowercased() })
    }

    /// Column definitions (with DEFAULT, CHECK, UNIQUE), table constraints,
    /// indexes, foreign keys and the identity.
    mutating func finish(indexes: [TargetSchema.Object], tables: [String: TableBuild],
                         omit: (String, String, String, String, Bool) -> Void) -> PostgresTable {
        let q = PGSQL.ident
        let src = table.source
        var defs: [String] = []
        var checks: [PostgresCheck] = []
        var foreignKeys: [PostgresForeignKey] = []
        var fkNames: Set<String> = []
        func fkName(_ explicit: String?, _ cols: [String]) -> String {
            var base = explicit ?? PostgresSchema.fitName(([table.target] + cols + ["fkey"]).joined(separator: "_"))
            base = PostgresSchema.fitName(base)
            var n = base, i = 2
            while !fkNames.insert(n.lowercased()).inserted { n = PostgresSchema.fitName(base + "_\(i)"); i += 1 }
            return n
        }
        let translator = PGExpression(columns: byName)
        for c in columns {
            var def = q(c.name) + " " + c.type
            if c.notNull { def += " NOT NULL" }
            let sqliteDef = parts.columns.first { $0.name.lowercased() == c.name.lowercased() }
            for k in sqliteDef?.constraints ?? [] {
                let label = parts.text(k.tokens)
                let name = constraintName(k)
                switch k.kind {
                case .default:
                    switch defaultSQL(k.body.dropFirst(), column: c) {
                    case .success(let sql): if let sql { def += " DEFAULT " + sql }
                    case .failure(let why): omit("default", "\(c.name) \(label)", src, "\(label) of column \(c.name) is not carried to PostgreSQL: \(why.reason); set a default there yourself if writers rely on it", false)
                    }
                case .unique:
                    conflictOmission(k, label)
                    def += (name.map { " CONSTRAINT " + q(PostgresSchema.fitName($0)) } ?? "") + " UNIQUE"
                case .check:
                    if let sql = checkSQL(k, translator: translator, label: label, omit: omit) {
                        checks.append(PostgresCheck(name: name.map(PostgresSchema.fitName), sql: sql, label: label))
                    }
                case .references:
                    if let fk = foreignKey(k.body, childColumns: [c.name], name: name, label: label, tables: tables, omit: omit) {
                        let n = fkName(fk.name, [c.name])
                        foreignKeys.append(fkStatements(n, fk.sql))
                    }
                case .generated:
                    // (Not reached: a generated column is not a mapped column.)
                    break
                case .primaryKey, .notNull:
                    conflictOmission(k, label)
                case .null, .collate, .foreignKey: break
                }
            }
            defs.append(def)
        }
        // Generated columns the carried table has and the copy does not fill.
        for def in parts.columns where byName[def.name.lowercased()] == nil {
            if def.constraints.contains(where: { $0.kind == .generated }) {
                omit("generated column", def.name, src, "generated column \(def.name) is SQLite SQL and is not carried to PostgreSQL; add it there (GENERATED ALWAYS AS … STORED) after the copy if still needed", false)
            } else {
                omit("column", def.name, src, "column \(def.name) of the target definition is not filled by the plan's columns and is not created in PostgreSQL", false)
            }
        }
        let columnDefs = defs
        defs = ["PRIMARY KEY (" + primaryKey.map(q).joined(separator: ", ") + ")"]
        for k in parts.constraints {
            let label = parts.text(k.tokens)
            let name = constraintName(k).map { "CONSTRAINT " + q(PostgresSchema.fitName($0)) + " " } ?? ""
            switch k.kind {
            case .primaryKey: conflictOmission(k, label)
            case .unique:
                conflictOmission(k, label)
                if let cols = plainColumnList(k.body.dropFirst()) {
                    defs.append(name + "UNIQUE (" + cols.map(q).joined(separator: ", ") + ")")
                } else {
                    omit("unique", label, src, "\(label) has terms other than plain columns (or a collation PostgreSQL lacks); create an equivalent unique index in PostgreSQL yourself", false)
                }
            case .check:
                if let sql = checkSQL(k, translator: translator, label: label, omit: omit) {
                    checks.append(PostgresCheck(name: constraintName(k).map(PostgresSchema.fitName), sql: sql, label: label))
                }
            case .foreignKey:
                // FOREIGN KEY (cols) REFERENCES …
                let body = k.body
                guard let open = body.firstIndex(where: { $0.isOpen }), let close = body[open...].firstIndex(where: { $0.isClose }),
                      let cols = plainColumnList(body[open...close]) else {
                    omit("foreign key", label, src, "\(label) could not be read; add it in PostgreSQL yourself", false)
                    continue
                }
                if let fk = foreignKey(body[(close + 1)...], childColumns: cols, name: constraintName(k), label: label, tables: tables, omit: omit) {
                    let n = fkName(fk.name, cols)
                    foreignKeys.append(fkStatements(n, fk.sql))
                }
            default:
                omit("constraint", label, src, "\(label) is not understood; add it in PostgreSQL yourself", false)
            }
        }
        var pgIndexes: [PostgresIndex] = []
        for index in indexes {
            if let i = indexSQL(index, translator: translator, omit: omit) { pgIndexes.append(i) }
        }
        identity = identityOf()
        var t = PostgresTable(source: table.source, target: table.target, columns: columns, primaryKey: primaryKey,
                              createSQL: "", indexes: pgIndexes, foreignKeys: foreignKeys, identity: identity,
                              checks: checks, columnDefs: columnDefs, keyAndUnique: defs, qualifiedName: qualified)
        t.createSQL = t.create(qualified: qualified, checks: true)
        return t
    }

    /// The column sets PostgreSQL will have unique in this table: the key,
    /// UNIQUE constraints and unique indexes on plain columns without WHERE
    /// (what a foreign key may reference there).
    mutating func collectUniqueSets(indexes: [TargetSchema.Object]) {
        for def in parts.columns where def.constraints.contains(where: { $0.kind == .unique }) {
            if let c = byName[def.name.lowercased()] { uniqueSets.append([c.name.lowercased()]) }
        }
        for k in parts.constraints where k.kind == .unique {
            if let cols = plainColumnList(k.body.dropFirst()) { uniqueSets.append(cols.map { $0.lowercased() }) }
        }
        for index in indexes {
            guard let tokens = try? SQLTokenizer.tokens(index.sql), tokens.count > 2, tokens[1].isKeyword("UNIQUE"),
                  let on = tokens.firstIndex(where: { $0.isKeyword("ON") }), on + 2 < tokens.count, tokens[on + 2].isOpen,
                  let close = SQLTokenizer.closing(tokens, from: on + 2), close + 1 == tokens.count,
                  let cols = plainColumnList(tokens[(on + 2)...close]) else { continue }
            uniqueSets.append(cols.map { $0.lowercased() })
        }
    }

    func fkStatements(_ name: String, _ body: String) -> PostgresForeignKey {
        let q = PGSQL.ident
        return PostgresForeignKey(name: name,
                                  add: "ALTER TABLE \(qualified) ADD CONSTRAINT \(q(name)) \(body) NOT VALID",
                                  validate: "ALTER TABLE \(qualified) VALIDATE CONSTRAINT \(q(name))")
    }

    func constraintName(_ k: CreateTableParts.Constraint) -> String? {
        guard let f = k.tokens.first, f.isKeyword("CONSTRAINT"), k.tokens.count > 1 else { return nil }
        return k.tokens[k.tokens.startIndex + 1].value
    }

    /// SQLite's `ON CONFLICT` clause on a constraint changes what the
    /// application's writes do; PostgreSQL has no such clause.
    func conflictOmission(_ k: CreateTableParts.Constraint, _ label: String) {
        let tokens = Array(k.body)
        for i in tokens.indices.dropLast() where tokens[i].isKeyword("ON") && tokens[i + 1].isKeyword("CONFLICT") {
            let action = i + 2 < tokens.count ? tokens[i + 2].text.uppercased() : ""
            if action != "ABORT" {
                omit("on conflict", label, table.source, "\(label): SQLite's ON CONFLICT \(action) is not carried to PostgreSQL; writers there get an error instead", false)
            }
        }
    }

    /// `(a, b)` of plain column names (ASC/DESC and COLLATE BINARY allowed),
    /// mapped to this table's column names; nil otherwise.
    func plainColumnList(_ tokens: ArraySlice<SQLToken>) -> [String]? {
        guard let f = tokens.first, f.isOpen, let l = tokens.last, l.isClose else { return nil }
        var out: [String] = []
        for term in SQLTokenizer.splitTopLevel(tokens.dropFirst().dropLast()) {
            guard let name = plainColumn(term) else { return nil }
            out.append(name)
        }
        return out.isEmpty ? nil : out
    }

    /// A term that is one column (with ASC/DESC or COLLATE BINARY).
    func plainColumn(_ term: ArraySlice<SQLToken>) -> String? {
        var t = Array(term)
        if let l = t.last, l.isKeyword("ASC") || l.isKeyword("DESC") { t.removeLast() }
        if t.count == 3, t[1].isKeyword("COLLATE"), t[2].value.uppercased() == "BINARY" { t.removeLast(2) }
        guard t.count == 1, t[0].isIdentifier, let c = byName[t[0].value.lowercased()] else { return nil }
        return c.name
    }

    func checkSQL(_ k: CreateTableParts.Constraint, translator: PGExpression, label: String,
                  omit: (String, String, String, String, Bool) -> Void) -> String? {
        let body = k.body
        guard let open = body.firstIndex(where: { $0.isOpen }), let l = body.last, l.isClose, open + 1 < body.endIndex - 1 else {
            omit("check", label, table.source, "\(label) could not be read; add it in PostgreSQL yourself", false)
            return nil
        }
        switch translator.translate(body[(open + 1)..<(body.endIndex - 1)], boolean: true) {
        case .success(let sql): return sql
        case .failure(let why):
            omit("check", label, table.source, "\(label) is not translated to PostgreSQL: \(why.reason); add an equivalent CHECK there yourself", false)
            return nil
        }
    }

    /// A FOREIGN KEY's `REFERENCES …` part in PostgreSQL; nil (and an
    /// omission) when the parent is not moved or its columns are not unique there.
    func foreignKey(_ tokens: ArraySlice<SQLToken>, childColumns: [String], name: String?, label: String,
                    tables: [String: TableBuild], omit: (String, String, String, String, Bool) -> Void) -> (name: String?, sql: String)? {
        let q = PGSQL.ident
        let t = Array(tokens)
        func fail(_ why: String) -> (name: String?, sql: String)? {
            omit("foreign key", label, table.source, "\(label) is not carried to PostgreSQL: \(why)", false)
            return nil
        }
        guard t.count >= 2, t[0].isKeyword("REFERENCES"), t[1].isIdentifier else { return fail("it could not be read") }
        guard let parent = tables[t[1].value.lowercased()] else {
            return fail("table \(t[1].value) is not migrated to this PostgreSQL schema; add it to the plan, or set foreign_keys: drop")
        }
        var i = 2
        var parentColumns = parent.primaryKey
        if i < t.count, t[i].isOpen {
            guard let close = t[i...].firstIndex(where: { $0.isClose }),
                  let cols = parent.plainColumnList(t[i...close][...]) else {
                return fail("its referenced columns are not plain columns of \(parent.table.target)")
            }
            parentColumns = cols
            i = close + 1
        }
        guard parentColumns.count == childColumns.count else {
            return fail("it names \(childColumns.count) column(s) but references \(parentColumns.count)")
        }
        let parentSet = Set(parentColumns.map { $0.lowercased() })
        guard parent.uniqueSets.contains(where: { Set($0) == parentSet }) else {
            return fail("PostgreSQL requires the referenced columns (\(parentColumns.joined(separator: ", "))) of \(parent.table.target) to be its primary key or unique")
        }
        var clauses: [String] = []
        while i < t.count {
            let w = t[i].text.uppercased()
            if w == "ON", i + 2 < t.count, ["DELETE", "UPDATE"].contains(t[i + 1].text.uppercased()) {
                let event = t[i + 1].text.uppercased()
                let a = t[i + 2].text.uppercased()
                switch a {
                case "CASCADE", "RESTRICT":
                    clauses.append("ON \(event) \(a)"); i += 3
                case "SET" where i + 3 < t.count && ["NULL", "DEFAULT"].contains(t[i + 3].text.uppercased()):
                    clauses.append("ON \(event) SET \(t[i + 3].text.uppercased())"); i += 4
                case "NO" where i + 3 < t.count && t[i + 3].isKeyword("ACTION"):
                    clauses.append("ON \(event) NO ACTION"); i += 4
                default: return fail("its ON \(event) action is not understood")
                }
            } else if w == "NOT", i + 1 < t.count, t[i + 1].isKeyword("DEFERRABLE") {
                clauses.append("NOT DEFERRABLE"); i += 2
            } else if w == "DEFERRABLE" {
                clauses.append("DEFERRABLE"); i += 1
            } else if w == "INITIALLY", i + 1 < t.count, ["DEFERRED", "IMMEDIATE"].contains(t[i + 1].text.uppercased()) {
                clauses.append("INITIALLY " + t[i + 1].text.uppercased()); i += 2
            } else {
                return fail("its clause \(t[i].text) is not understood")
            }
        }
        let parentQualified = q(pgSchema) + "." + q(parent.table.target)
        let sql = "FOREIGN KEY (" + childColumns.map(q).joined(separator: ", ") + ") REFERENCES " + parentQualified
            + " (" + parentColumns.map(q).joined(separator: ", ") + ")" + (clauses.isEmpty ? "" : " " + clauses.joined(separator: " "))
        return (name.map(PostgresSchema.fitName), sql)
    }

    struct Unsupported: Error { var reason: String }

    /// A column DEFAULT in PostgreSQL; `.success(nil)` for DEFAULT NULL.
    func defaultSQL(_ tokens: ArraySlice<SQLToken>, column c: PostgresColumn) -> Result<String?, Unsupported> {
        var t = Array(tokens)
        while t.count >= 2, t.first?.isOpen == true, t.last?.isClose == true { t.removeFirst(); t.removeLast() }
        var sign = ""
        if t.count == 2, t[0].kind == .symbol, t[0].text == "-" || t[0].text == "+", t[1].kind == .number {
            sign = t[0].text == "-" ? "-" : ""
            t.removeFirst()
        }
        guard t.count == 1 else { return .failure(Unsupported(reason: "it is an expression")) }
        let tok = t[0]
        let lowerType = c.type.lowercased()
        switch tok.kind {
        case .number:
            let text = sign + tok.text
            if tok.text.lowercased().hasPrefix("0x") { return .failure(Unsupported(reason: "hexadecimal literals are not translated")) }
            let isInteger = Int64(text) != nil
            switch c.encoding {
            case .int8:
                return isInteger ? .success(text) : .failure(Unsupported(reason: "\(text) is not an integer but the column is bigint"))
            case .float8, .numeric: return Double(text) != nil ? .success(text) : .failure(Unsupported(reason: "\(text) is not a number PostgreSQL reads"))
            case .text: return isInteger ? .success(PGSQL.literal(text)) : .failure(Unsupported(reason: "SQLite would store \(text) as its own text form"))
            case .bool: return text == "0" ? .success("false") : text == "1" ? .success("true") : .failure(Unsupported(reason: "\(text) is not 0 or 1"))
            case .textual: return .success(PGSQL.literal(text))
            case .bytea: return .failure(Unsupported(reason: "a number in a bytea column"))
            }
        case .string:
            switch c.encoding {
            case .text, .textual: return .success(PGSQL.literal(tok.value))
            case .int8: return Int64(tok.value) != nil ? .success(tok.value) : .failure(Unsupported(reason: "'\(tok.value)' is text, the column is bigint"))
            default: return .failure(Unsupported(reason: "a text default in a \(c.type) column"))
            }
        case .blob:
            guard c.encoding == .bytea else { return .failure(Unsupported(reason: "a blob default in a \(c.type) column")) }
            let hex = tok.text.dropFirst(2).dropLast()
            return .success(PGSQL.literal("\\x\(hex)") + "::bytea")
        case .word:
            switch tok.text.uppercased() {
            case "NULL": return .success(nil)
            case "TRUE", "FALSE":
                let one = tok.text.uppercased() == "TRUE"
                switch c.encoding {
                case .bool: return .success(one ? "true" : "false")
                case .int8, .numeric, .float8: return .success(one ? "1" : "0")
                default: return .failure(Unsupported(reason: "\(tok.text) in a \(c.type) column"))
                }
            case "CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME":
                let word = tok.text.uppercased()
                // SQLite writes UTC text: 'YYYY-MM-DD HH:MM:SS', 'YYYY-MM-DD', 'HH:MM:SS'.
                if c.encoding == .text {
                    let format = word == "CURRENT_TIMESTAMP" ? "YYYY-MM-DD HH24:MI:SS" : word == "CURRENT_DATE" ? "YYYY-MM-DD" : "HH24:MI:SS"
                    return .success("to_char(now() AT TIME ZONE 'UTC', '\(format)')")
                }
                if word == "CURRENT_TIMESTAMP" && (lowerType == "timestamptz" || lowerType.hasPrefix("timestamp with time zone")) {
                    return .success("CURRENT_TIMESTAMP")
                }
                if word == "CURRENT_TIMESTAMP" && (lowerType == "timestamp" || lowerType.hasPrefix("timestamp without")) {
                    return .success("(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')")
                }
                if word == "CURRENT_DATE" && lowerType == "date" { return .success("(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')::date") }
                return .failure(Unsupported(reason: "\(word) has no exact equivalent for a \(c.type) column"))
            default: return .failure(Unsupported(reason: "\(tok.text) is not a literal"))
            }
        default: return .failure(Unsupported(reason: "\(tok.text) is not a literal"))
        }
    }

    /// A carried `CREATE [UNIQUE] INDEX` in PostgreSQL, or an omission.
    func indexSQL(_ index: TargetSchema.Object, translator: PGExpression,
                           omit: (String, String, String, String, Bool) -> Void) -> PostgresIndex? {
        let q = PGSQL.ident
        func fail(_ why: String) -> PostgresIndex? {
            omit("index", index.name, table.source, "index \(index.name) is not carried to PostgreSQL: \(why); create an equivalent index there yourself", false)
            return nil
        }
        guard let tokens = try? SQLTokenizer.tokens(index.sql), tokens.count > 2 else { return fail("it could not be read") }
        let unique = tokens[1].isKeyword("UNIQUE")
        guard let on = tokens.firstIndex(where: { $0.isKeyword("ON") }), on + 2 < tokens.count, tokens[on + 2].isOpen,
              let close = SQLTokenizer.closing(tokens, from: on + 2) else { return fail("it could not be read") }
        var terms: [String] = []
        for term in SQLTokenizer.splitTopLevel(tokens[(on + 3)..<close]) {
            var t = Array(term)
            var order = ""
            if let l = t.last, l.isKeyword("ASC") || l.isKeyword("DESC") { order = " " + l.text.uppercased(); t.removeLast() }
            if t.count >= 3, t[t.count - 2].isKeyword("COLLATE") {
                guard t[t.count - 1].value.uppercased() == "BINARY" else {
                    return fail("term \(SQLTokenizer.text(term, in: index.sql)) uses collation \(t[t.count - 1].value), which PostgreSQL does not have")
                }
                t.removeLast(2)
            }
            if t.count == 1, t[0].isIdentifier, let c = byName[t[0].value.lowercased()] {
                terms.append(q(c.name) + order)
                continue
            }
            switch translator.translate(t[...], boolean: false) {
            case .success(let sql): terms.append("(" + sql + ")" + order)
            case .failure(let why): return fail("term \(SQLTokenizer.text(term, in: index.sql)) \(why.reason)")
            }
        }
        var whereSQL = ""
        if close + 1 < tokens.count {
            guard tokens[close + 1].isKeyword("WHERE"), close + 2 < tokens.count else { return fail("it has a clause after its terms that is not WHERE") }
            switch translator.translate(tokens[(close + 2)...], boolean: true) {
            case .success(let sql): whereSQL = " WHERE " + sql
            case .failure(let why): return fail("its WHERE \(why.reason)")
            }
        }
        let name = PostgresSchema.fitName(index.name)
        return PostgresIndex(name: name, sql: "CREATE \(unique ? "UNIQUE " : "")INDEX \(q(name)) ON \(qualified) (\(terms.joined(separator: ", ")))\(whereSQL)")
    }

    /// A rowid alias (`INTEGER PRIMARY KEY` of a rowid table) as a sequence.
    func identityOf() -> PostgresIdentity? {
        let q = PGSQL.ident
        guard primaryKey.count == 1,
              !((try? SQLTokenizer.tokens(parts.options))?.contains { $0.isKeyword("ROWID") } ?? false),
              let def = parts.columns.first(where: { $0.name.lowercased() == primaryKey[0].lowercased() }),
              def.type.uppercased() == "INTEGER",
              let col = byName[primaryKey[0].lowercased()], col.encoding == .int8 else { return nil }
        // `INTEGER PRIMARY KEY DESC` as a column constraint is not an alias (SQLite's documented quirk).
        if let pk = def.constraints.first(where: { $0.kind == .primaryKey }), pk.body.contains(where: { $0.isKeyword("DESC") }) { return nil }
        if def.constraints.first(where: { $0.kind == .primaryKey }) == nil {
            // Table constraint PRIMARY KEY(col): an alias too (DESC there is fine).
            guard parts.constraints.contains(where: { $0.kind == .primaryKey }) else { return nil }
        }
        let seqName = PostgresSchema.fitName("\(table.target)_\(col.name)_seq")
        let seq = q(pgSchema) + "." + q(seqName)
        let seqLiteral = PGSQL.literal(seq)
        return PostgresIdentity(
            column: col.name, sequence: seq,
            sequenceSQL: "CREATE SEQUENCE \(seq) OWNED BY \(qualified).\(q(col.name)); ALTER TABLE \(qualified) ALTER COLUMN \(q(col.name)) SET DEFAULT nextval(\(seqLiteral)::regclass)",
            setvalSQL: "SELECT CASE WHEN v < 1 THEN setval(\(seqLiteral)::regclass, 1, false) ELSE setval(\(seqLiteral)::regclass, v, true) END FROM (SELECT GREATEST(coalesce(max(\(q(col.name))), 0), $1::bigint) AS v FROM \(qualified)) AS m")
    }
}

/// Translates a SQLite expression over one table's columns into PostgreSQL,
/// token by token; refuses what it does not understand.
struct PGExpression {
    /// Lowercased target column name → column.
    let columns: [String: PostgresColumn]

    typealias Outcome = Result<String, TableBuild.Unsupported>

    static let keywords: Set<String> = ["AND", "OR", "NOT", "NULL", "IS", "IN", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END", "TRUE", "FALSE"]
    static let symbols: Set<String> = ["=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "||", "(", ")", ","]
    static let textFunctions: Set<String> = ["length", "lower", "upper", "trim", "ltrim", "rtrim", "substr"]
    static let functions: Set<String> = textFunctions.union(["abs", "coalesce", "ifnull"])
    /// Operators that make an expression a truth value in PostgreSQL.
    static let booleanMarks: Set<String> = ["=", "<>", "<", "<=", ">", ">=", "AND", "OR", "NOT", "IS", "IN", "BETWEEN", "TRUE", "FALSE"]

    func translate(_ tokens: ArraySlice<SQLToken>, boolean: Bool) -> Outcome {
        func fail(_ s: String) -> Outcome { .failure(.init(reason: s)) }
        guard !tokens.isEmpty else { return fail("is empty") }
        var out: [String] = []
        var marks = false
        var i = tokens.startIndex
        while i < tokens.endIndex {
            let t = tokens[i]
            let next = i + 1 < tokens.endIndex ? tokens[i + 1] : nil
            switch t.kind {
            case .word where PGExpression.keywords.contains(t.text.uppercased()):
                let w = t.text.uppercased()
                if w == "IS" {
                    // Only IS [NOT] NULL: SQLite's `a IS b` is IS NOT DISTINCT FROM.
                    var j = i + 1
                    var text = "IS"
                    if j < tokens.endIndex, tokens[j].isKeyword("NOT") { text += " NOT"; j += 1 }
                    guard j < tokens.endIndex, tokens[j].isKeyword("NULL") else { return fail("uses IS with something other than NULL") }
                    out.append(text + " NULL")
                    marks = true
                    i = j + 1
                    continue
                }
                if PGExpression.booleanMarks.contains(w) { marks = true }
                out.append(w)
            case .word where t.text.uppercased() == "NOTNULL" || t.text.uppercased() == "ISNULL":
                out.append(t.text.uppercased() == "NOTNULL" ? "IS NOT NULL" : "IS NULL")
                marks = true
            case .word, .quoted:
                if let n = next, n.isOpen, t.kind == .word {
                    let f = t.text.lowercased()
                    guard PGExpression.functions.contains(f) else { return fail("calls \(t.text)(), which is not translated") }
                    let all = Array(tokens)
                    let base = tokens.startIndex
                    guard let close = SQLTokenizer.closing(all, from: i + 1 - base).map({ $0 + base }) else { return fail("has an unclosed (") }
                    var args: [String] = []
                    if close > i + 2 {
                        for a in SQLTokenizer.splitTopLevel(tokens[(i + 2)..<close]) {
                            if PGExpression.textFunctions.contains(f), args.isEmpty, a.count == 1, a.first!.isIdentifier,
                               let c = columns[a.first!.value.lowercased()],
                               ![.text, .textual, .bytea].contains(c.encoding) || (c.encoding == .bytea && f != "length") {
                                return fail("applies \(f)() to column \(c.name), which is \(c.type) in PostgreSQL")
                            }
                            switch translate(a, boolean: false) {
                            case .success(let s): args.append(s)
                            case .failure(let e): return .failure(e)
                            }
                        }
                    }
                    switch f {
                    case "lower", "upper":
                        // SQLite folds ASCII only; so does PostgreSQL under "C".
                        guard args.count == 1 else { return fail("calls \(f)() with \(args.count) arguments") }
                        out.append("\(f)((\(args[0])) COLLATE \"C\")")
                    case "ifnull": out.append("coalesce(" + args.joined(separator: ", ") + ")")
                    default: out.append(f + "(" + args.joined(separator: ", ") + ")")
                    }
                    i = close + 1
                    continue
                }
                guard let c = columns[t.value.lowercased()] else {
                    return fail("names \(t.value), which is not a column of the table")
                }
                out.append(PGSQL.ident(c.name))
            case .string: out.append(PGSQL.literal(t.value))
            case .number:
                guard !t.text.lowercased().hasPrefix("0x"), Double(String(t.text)) != nil else { return fail("has the number \(t.text), which is not translated") }
                out.append(String(t.text))
            case .blob:
                out.append(PGSQL.literal("\\x\(t.text.dropFirst(2).dropLast())") + "::bytea")
            case .symbol:
                var s = String(t.text)
                if s == "==" { s = "=" }
                if s == "!=" { s = "<>" }
                guard PGExpression.symbols.contains(s) else { return fail("uses the operator \(t.text), which is not translated") }
                if PGExpression.booleanMarks.contains(s) { marks = true }
                out.append(s)
            case .parameter: return fail("has a parameter")
            }
            i += 1
        }
        if boolean && !marks { return fail("is not a comparison or condition (PostgreSQL needs a boolean)") }
        var sql = ""
        for piece in out {
            if sql.isEmpty || piece == ")" || piece == "," || sql.hasSuffix("(") { sql += piece } else { sql += " " + piece }
        }
        return .success(sql)
    }
}

extension PostgresSchema {
    /// `plan` with what `server` refuses moved to the omissions: each
    /// table's CHECKs and indexes are tried, one at a time, on an empty copy
    /// of the table, then the foreign keys between those copies. A translated expression can be well formed and still
    /// not type-check in PostgreSQL (SQLite compares text with numbers;
    /// PostgreSQL has no `text > integer`), which would otherwise surface
    /// only when the table is created or, for an index, after the copy.
    ///
    /// Runs in one transaction on temporary tables (`pg_temp`) and always
    /// rolls it back: nothing remains on the server. Call it outside a
    /// transaction. A table whose definition itself (its types or defaults)
    /// is refused is an error naming it.
    public static func validate(_ plan: PostgresSchemaPlan, on server: PGConnection) throws -> PostgresSchemaPlan {
        var out = plan
        try server.execute("BEGIN")
        var open = true
        defer { if open { try? server.execute("ROLLBACK") } }
        /// Runs `sql` in a savepoint; the server's error when it refuses it.
        func attempt(_ sql: String) throws -> PGError? {
            try server.execute("SAVEPOINT tidemark_validate")
            do {
                try server.execute(sql)
                try server.execute("RELEASE SAVEPOINT tidemark_validate")
                return nil
            } catch let e as PGError where !e.connectionLost {
                try server.execute("ROLLBACK TO SAVEPOINT tidemark_validate")
                try server.execute("RELEASE SAVEPOINT tidemark_validate")
                return e
            }
        }
        for ti in out.tables.indices {
            let t = out.tables[ti]
            let scratch = "pg_temp." + PGSQL.ident(t.target)
            if let e = try attempt(t.create(qualified: scratch, checks: false)) {
                throw MigrationError(.badPlan, "PostgreSQL refuses the definition of table \(t.target) (\(e.message)); correct the plan's type: of its columns")
            }
            var checks: [PostgresCheck] = []
            for c in t.checks {
                if let e = try attempt("ALTER TABLE \(scratch) ADD CHECK (\(c.sql))") {
                    out.omissions.append(.init(kind: "check", name: c.label, table: t.source,
                                               reason: "\(c.label) translates to CHECK (\(c.sql)), which PostgreSQL refuses (\(e.message)); add an equivalent CHECK there yourself"))
                } else {
                    checks.append(c)
                }
            }
            var indexes: [PostgresIndex] = []
            for i in t.indexes {
                let on = " ON " + t.qualifiedName + " "
                guard let r = i.sql.firstRange(of: on) else { indexes.append(i); continue }
                var sql = i.sql
                sql.replaceSubrange(r, with: " ON " + scratch + " ")
                if let e = try attempt(sql) {
                    out.omissions.append(.init(kind: "index", name: i.name, table: t.source,
                                               reason: "index \(i.name) translates to \(i.sql), which PostgreSQL refuses (\(e.message)); create an equivalent index there yourself"))
                } else {
                    indexes.append(i)
                }
            }
            out.tables[ti].checks = checks
            out.tables[ti].indexes = indexes
            out.tables[ti].createSQL = out.tables[ti].create(qualified: t.qualifiedName, checks: true)
        }
        // Foreign keys, between the scratch tables (types must match, the
        // referenced columns must be unique there).
        let scratchNames = out.tables.map { ($0.qualifiedName, "pg_temp." + PGSQL.ident($0.target)) }
        for ti in out.tables.indices {
            let t = out.tables[ti]
            var kept: [PostgresForeignKey] = []
            for fk in t.foreignKeys {
                var sql = fk.add
                if let r = sql.firstRange(of: "ALTER TABLE " + t.qualifiedName + " ") {
                    sql.replaceSubrange(r, with: "ALTER TABLE pg_temp." + PGSQL.ident(t.target) + " ")
                }
                for (real, scratch) in scratchNames {
                    if let r = sql.firstRange(of: " REFERENCES " + real + " ") { sql.replaceSubrange(r, with: " REFERENCES " + scratch + " ") }
                }
                if let e = try attempt(sql) {
                    out.omissions.append(.init(kind: "foreign key", name: fk.name, table: t.source,
                                               reason: "foreign key \(fk.name) translates to \(fk.add), which PostgreSQL refuses (\(e.message)); add an equivalent constraint there yourself"))
                } else {
                    kept.append(fk)
                }
            }
            out.tables[ti].foreignKeys = kept
        }
        open = false
        try server.execute("ROLLBACK")
        return out
    }
}
