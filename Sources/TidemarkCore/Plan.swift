import TidemarkPostgres
import Yams

#if canImport(Glibc)
import Glibc
#endif

/// What to migrate where: the parsed plan file.
///
/// ```yaml
/// source: shop.db
/// target: shop-v2.db          # another SQLite file, or the same file, or
///                             # postgres://user@host:5432/db (any libpq
///                             # connection string; PG* variables and
///                             # ~/.pgpass apply as in psql)
/// schema: public              # PostgreSQL targets: the schema the tables go to
/// log: changelog
/// chunk_rows: 10000
/// foreign_keys: keep          # default for every table: keep | drop
/// tables:
///   users:
///     to: accounts            # target table; default: same name
///     columns:                # target column: SQLite expression over source columns
///       id: id
///       mail: email           # a plain copy, renamed: keeps type and constraints
///       email_lower: {expr: lower(email), type: TEXT, not_null: true}
///   orders:
///     foreign_keys: drop      # this table's FOREIGN KEYs are not carried
///   audit:
///     create: sql/audit.sql   # or "CREATE TABLE …": the plan's own definition
///   items:                    # same file only: rebuild `items` into a shadow
///     swap: true              # table and swap it in at cutover (no `to:`;
///                             # see TableSwap.md)
/// ```
/// Paths are relative to the plan file. Table and column order is kept.
/// The target table carries the source's definition through the plan
/// (see ``TargetSchema``) unless `create:` gives one.
public struct Plan: Sendable, Equatable {
    public var source: String
    public var target: String
    public var log: String
    public var chunkRows: Int
    public var tables: [TablePlan]
    /// PostgreSQL targets: the schema the target tables are created in.
    public var pgSchema: String = "public"

    public init(source: String, target: String, log: String, chunkRows: Int = 10_000, tables: [TablePlan]) {
        self.source = source
        self.target = target
        self.log = log
        self.chunkRows = chunkRows
        self.tables = tables
    }

    /// Source and target are the same database file.
    public var isSameFile: Bool { !isPostgres && Plan.canonical(source) == Plan.canonical(target) }

    /// The target as output may show it: a connection string loses its password.
    public var displayTarget: String { isPostgres ? PGConnection.redacted(target) : target }

    /// The target is a PostgreSQL database (`target:` is a libpq connection string).
    public var isPostgres: Bool { Plan.isConnectionString(target) }

    /// A libpq connection string: a `postgres://` or `postgresql://` URI, or
    /// `key=value` pairs (`host=… dbname=…`). Anything else is a file path.
    public static func isConnectionString(_ s: String) -> Bool {
        let t = s.trimmingSpaces
        if t.hasPrefix("postgres://") || t.hasPrefix("postgresql://") { return true }
        // key=value form: starts with a libpq keyword and '='.
        guard let eq = t.firstIndex(of: "=") else { return false }
        let keywords: Set<String> = ["host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service",
                                     "sslmode", "connect_timeout", "application_name", "options", "target_session_attrs"]
        return keywords.contains(String(t[..<eq]).trimmingSpaces.lowercased())
    }

    static func canonical(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    /// Reads a YAML (or JSON) plan file.
    public static func load(path: String) throws(MigrationError) -> Plan {
        let text: String
        do {
            text = try readTextFile(path)
        } catch {
            throw MigrationError(.badPlan, "cannot read plan \(path): \(error); pass --plan FILE or create tidemark.yml")
        }
        let base = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        return try parse(text, relativeTo: base, name: path)
    }

    /// Parses plan text; relative paths are resolved against `base`.
    public static func parse(_ text: String, relativeTo base: String, name: String = "plan") throws(MigrationError) -> Plan {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw MigrationError(.badPlan, "\(name) is not valid YAML or JSON: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let root = node?.mapping else { throw MigrationError(.badPlan, "\(name) must be a mapping with source, target, log and tables") }
        func fail(_ why: String) -> MigrationError { MigrationError(.badPlan, "\(name): \(why)") }
        let known: Set<String> = ["source", "target", "log", "chunk_rows", "tables", "foreign_keys", "schema"]
        for (k, _) in root {
            guard let key = k.string, known.contains(key) else {
                throw fail("unknown key '\(k.string ?? "?")' (expected: source, target, log, chunk_rows, foreign_keys, schema, tables)")
            }
        }
        func foreignKeys(_ node: Node, _ key: String) throws(MigrationError) -> ForeignKeyPolicy {
            guard let s = node.string, let policy = ForeignKeyPolicy(rawValue: s.lowercased()) else {
                throw fail("\(key) must be keep or drop")
            }
            return policy
        }
        let defaultForeignKeys = try root["foreign_keys"].map { n throws(MigrationError) in try foreignKeys(n, "foreign_keys") } ?? .keep
        func path(_ key: String, required: Bool = true) throws(MigrationError) -> String? {
            guard let v = root[key] else {
                if required { throw fail("'\(key)' is missing") }
                return nil
            }
            guard let s = v.string, !s.isEmpty else { throw fail("'\(key)' must be a path") }
            // Messages name the path so it opens from where the command
            // runs: as written when the plan is in the current directory.
            return s.hasPrefix("/") || base == "." ? s : base + "/" + s
        }
        let source = try path("source")!
        // A connection string is not a path: kept as written.
        let target: String
        if let t = root["target"]?.string, isConnectionString(t) {
            target = t.trimmingSpaces
        } else {
            target = try path("target") ?? source
        }
        var pgSchema = "public"
        if let sn = root["schema"] {
            guard let name = sn.string, !name.trimmingSpaces.isEmpty else { throw fail("schema must be a PostgreSQL schema name") }
            guard isConnectionString(target) else { throw fail("schema: applies only to PostgreSQL targets (target: postgres://…)") }
            pgSchema = name.trimmingSpaces
        }
        let log = try path("log")!
        var chunkRows = 10_000
        if let c = root["chunk_rows"] {
            guard let n = c.int, n >= 1, n <= 10_000_000 else { throw fail("chunk_rows must be an integer from 1 to 10000000") }
            chunkRows = n
        }
        guard let tablesNode = root["tables"], let tables = tablesNode.mapping, !tables.isEmpty else {
            throw fail("'tables' must name at least one table")
        }
        var plans: [TablePlan] = []
        for (k, v) in tables {
            guard let table = k.string, !table.isEmpty else { throw fail("table names must be strings") }
            var plan = TablePlan(source: table)
            var ownForeignKeys = false
            var namedTarget = false
            if let m = v.mapping {
                for (mk, mv) in m {
                    switch mk.string {
                    case "to":
                        guard let to = mv.string, !to.isEmpty else { throw fail("tables.\(table).to must be a table name") }
                        plan.target = to
                        namedTarget = true
                    case "swap":
                        guard let b = mv.bool else { throw fail("tables.\(table).swap must be true or false") }
                        plan.swap = b
                    case "columns":
                        guard let cols = mv.mapping, !cols.isEmpty else {
                            throw fail("tables.\(table).columns must map target columns to SQL expressions")
                        }
                        var mapped: [ColumnMapping] = []
                        for (ck, cv) in cols {
                            guard let column = ck.string, !column.isEmpty else { throw fail("tables.\(table).columns has an empty column name") }
                            guard !mapped.contains(where: { $0.target.lowercased() == column.lowercased() }) else {
                                throw fail("tables.\(table).columns names \(column) twice")
                            }
                            mapped.append(try columnMapping(cv, column: column, at: "tables.\(table).columns.\(column)", fail: fail))
                        }
                        plan.columns = mapped
                    case "inverse":
                        guard let cols = mv.mapping, !cols.isEmpty else {
                            throw fail("tables.\(table).inverse must map source columns to SQL expressions over target columns")
                        }
                        var mapped: [ColumnMapping] = []
                        for (ck, cv) in cols {
                            guard let column = ck.string, !column.isEmpty, let expr = cv.string, !expr.trimmingSpaces.isEmpty else {
                                throw fail("tables.\(table).inverse entries must be `source_column: expression`")
                            }
                            mapped.append(ColumnMapping(target: column, expression: expr))
                        }
                        plan.inverse = mapped
                    case "create":
                        plan.create = try createSQL(mv, at: "tables.\(table).create", base: base, fail: fail)
                    case "foreign_keys":
                        plan.foreignKeys = try foreignKeys(mv, "tables.\(table).foreign_keys")
                        ownForeignKeys = true
                    default:
                        throw fail("tables.\(table) has unknown key '\(mk.string ?? "?")' (expected: to, swap, columns, inverse, create, foreign_keys)")
                    }
                }
            } else if !(v.scalar?.string.isEmpty ?? false) && v.null == nil {
                throw fail("tables.\(table) must be a mapping ({} for defaults)")
            }
            guard !plans.contains(where: { $0.source.lowercased() == table.lowercased() }) else { throw fail("table \(table) is listed twice") }
            // The top-level `foreign_keys:` is the default of tables that
            // do not say their own.
            if !ownForeignKeys { plan.foreignKeys = defaultForeignKeys }
            if plan.swap {
                // The swap chooses the shadow's name itself: the table keeps its own.
                guard !namedTarget else {
                    throw fail("tables.\(table) has both swap: true and to:; a swapped table keeps its name (the shadow is \(TablePlan.shadowName(of: table))) — remove to:")
                }
                plan.target = TablePlan.shadowName(of: table)
            }
            plans.append(plan)
        }
        var plan = Plan(source: source, target: target, log: log, chunkRows: chunkRows, tables: plans)
        plan.pgSchema = pgSchema
        if let swapped = plans.first(where: \.swap) {
            if plan.isPostgres {
                throw fail("tables.\(swapped.source).swap: a table swap rebuilds a table inside its own SQLite file; a PostgreSQL target cannot swap — remove swap: and name the target table with to:")
            }
            if !plan.isSameFile {
                throw fail("tables.\(swapped.source).swap: a table swap needs target: to be the source file itself (\(source)); remove swap: to migrate into another file")
            }
        }
        return plan
    }

    /// A `columns:` entry: the short form `C: expr`, or the long form
    /// `C: {expr: …, type: …, not_null: …}` (other keys are refused, so a
    /// misspelt `notnull:` is not silently ignored).
    static func columnMapping(_ node: Node, column: String, at key: String,
                              fail: (String) -> MigrationError) throws(MigrationError) -> ColumnMapping {
        if let expr = node.string {
            guard !expr.trimmingSpaces.isEmpty else { throw fail("\(key) must be a SQL expression") }
            return ColumnMapping(target: column, expression: expr)
        }
        guard let m = node.mapping else {
            throw fail("\(key) must be a SQL expression or {expr: …, type: …, not_null: …}")
        }
        var mapping = ColumnMapping(target: column, expression: "")
        for (k, v) in m {
            switch k.string {
            case "expr":
                guard let e = v.string, !e.trimmingSpaces.isEmpty else { throw fail("\(key).expr must be a SQL expression") }
                mapping.expression = e
            case "type":
                guard let t = v.string, !t.trimmingSpaces.isEmpty, isColumnType(t) else {
                    throw fail("\(key).type must be a column type such as TEXT, INTEGER, REAL, BLOB or ANY")
                }
                mapping.type = t.trimmingSpaces
            case "not_null":
                guard let b = v.bool else { throw fail("\(key).not_null must be true or false") }
                mapping.notNull = b
            default:
                throw fail("\(key) has unknown key '\(k.string ?? "?")' (expected: expr, type, not_null)")
            }
        }
        guard !mapping.expression.isEmpty else { throw fail("\(key) needs expr: (the SQL expression that fills it)") }
        return mapping
    }

    /// `create:`: the SQL itself when it starts with CREATE (after
    /// whitespace and comments), otherwise a file path relative to the
    /// plan, read now (the stored plan then holds the SQL, so a later edit
    /// of the file is a plan change like any other).
    static func createSQL(_ node: Node, at key: String, base: String,
                          fail: (String) -> MigrationError) throws(MigrationError) -> String {
        guard let text = node.string, !text.trimmingSpaces.isEmpty else {
            throw fail("\(key) must be a CREATE TABLE statement or the path of a .sql file holding one")
        }
        if isCreateStatement(text) { return text }
        let path = text.hasPrefix("/") ? text : base + "/" + text
        let sql: String
        do {
            sql = try readTextFile(path)
        } catch {
            throw fail("\(key): cannot read \(path): \(error); give the CREATE TABLE inline or fix the path (relative to the plan file)")
        }
        guard isCreateStatement(sql) else {
            throw fail("\(key): \(path) does not hold a CREATE TABLE statement")
        }
        return sql
    }

    /// A column type: no `;`, and commas only inside parentheses
    /// (`numeric(10,2)`), which must balance.
    static func isColumnType(_ t: String) -> Bool {
        var depth = 0
        for ch in t {
            switch ch {
            case ";": return false
            case "(": depth += 1
            case ")": depth -= 1; if depth < 0 { return false }
            case ",": if depth == 0 { return false }
            default: break
            }
        }
        return depth == 0
    }

    static func isCreateStatement(_ text: String) -> Bool {
        guard let tokens = try? SQLTokenizer.tokens(text) else { return text.trimmingSpaces.uppercased().hasPrefix("CREATE") }
        // `CREATE TABLE …`, not a file named `create.sql`.
        return tokens.count > 1 && tokens[0].isKeyword("CREATE") && tokens[1].kind == .word
    }
}

/// One source table and where it goes.
public struct TablePlan: Sendable, Equatable {
    public var source: String
    /// Target table name; defaults to the source table's.
    public var target: String
    /// Target columns and their expressions; nil means every source column as is.
    public var columns: [ColumnMapping]?
    /// For rollback after cutover: source column ← SQLite expression over
    /// target columns. Not needed when every target column is a plain copy.
    public var inverse: [ColumnMapping]?
    /// The plan's own definition of the target table (`create:`, SQL text,
    /// read from a file when the plan names one); nil means carry the
    /// source's definition through the plan's mapping.
    public var create: String?
    /// Whether the source's FOREIGN KEYs are carried (`foreign_keys: keep`,
    /// the default) or left out (`foreign_keys: drop`).
    public var foreignKeys: ForeignKeyPolicy = .keep
    /// `swap: true` (same file only): the rows go to a shadow table
    /// (``shadowName(of:)``, which ``target`` then holds), and the cutover
    /// renames the old table aside and the shadow to the table's own name.
    public var swap = false

    /// The shadow a swapped table is rebuilt into: in Tidemark's reserved
    /// namespace, so no application table can hold the name and no listing
    /// of the application's tables shows it.
    public static func shadowName(of table: String) -> String { "_tidemark_shadow_" + table }
    /// Where a swap puts the old table (kept, guarded, for rollback) and
    /// a rollback the new-shape one.
    public static func asideName(of table: String) -> String { "_tidemark_aside_" + table }

    public init(source: String, target: String? = nil, columns: [ColumnMapping]? = nil, inverse: [ColumnMapping]? = nil,
                create: String? = nil, foreignKeys: ForeignKeyPolicy = .keep, swap: Bool = false) {
        self.source = source
        self.swap = swap
        self.target = target ?? (swap ? TablePlan.shadowName(of: source) : source)
        self.columns = columns
        self.inverse = inverse
        self.create = create
        self.foreignKeys = foreignKeys
    }
}

/// What happens to a table's FOREIGN KEY constraints in the target.
public enum ForeignKeyPolicy: String, Sendable, Equatable {
    case keep, drop
}

/// A target column and the SQLite expression over source columns that fills it.
public struct ColumnMapping: Sendable, Equatable {
    public var target: String
    public var expression: String
    /// Declared type of a computed column (`{expr: …, type: TEXT}`); nil
    /// means none (`ANY` in a STRICT table). Plain columns keep the source's.
    public var type: String?
    /// `not_null:` of a computed column; nil means as carried (a computed
    /// column that replaces a same-named source column inherits its NOT NULL).
    public var notNull: Bool?

    public init(target: String, expression: String, type: String? = nil, notNull: Bool? = nil) {
        self.target = target
        self.expression = expression
        self.type = type
        self.notNull = notNull
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" { s.removeLast() }
        return String(s)
    }
}

func readTextFile(_ path: String) throws -> String {
    guard let f = fopen(path, "rb") else { throw PlanFileError(reason: String(cString: strerror(errno))) }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        bytes.append(contentsOf: buf[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

struct PlanFileError: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}
