import CSQLite

/// One column of a table, as `PRAGMA table_xinfo` and
/// `sqlite3_table_column_metadata` describe it.
public struct ColumnInfo: Sendable, Hashable {
    public var name: String
    /// The type as written in CREATE TABLE (may be empty); it decides the
    /// column's affinity, not what it can hold.
    public var declaredType: String
    public var notNull: Bool
    /// The DEFAULT expression as SQL text, if any.
    public var defaultSQL: String?
    /// 1-based position of the column in the primary key, 0 if not part of it.
    public var primaryKeyIndex: Int
    /// `table_xinfo`'s `hidden`: 0 a normal column, 1 hidden (virtual tables),
    /// 2 a virtual generated column, 3 a stored generated column.
    public var hidden: Int
    /// The column's collating sequence ("BINARY" unless declared otherwise);
    /// key comparisons must use it.
    public var collation: String

    /// Whether the column is computed from the others. Generated columns are
    /// not captured as data: a target recomputes them.
    public var isGenerated: Bool { hidden == 2 || hidden == 3 }

    public init(
        name: String, declaredType: String, notNull: Bool, defaultSQL: String?,
        primaryKeyIndex: Int, hidden: Int, collation: String
    ) {
        self.name = name
        self.declaredType = declaredType
        self.notNull = notNull
        self.defaultSQL = defaultSQL
        self.primaryKeyIndex = primaryKeyIndex
        self.hidden = hidden
        self.collation = collation
    }
}

/// The shape of one ordinary table.
public struct TableInfo: Sendable, Hashable {
    /// The name as stored in the schema (which may differ in case from the
    /// name asked for: SQLite names are case-insensitive).
    public var name: String
    /// Every column, generated ones included, in declaration order.
    public var columns: [ColumnInfo]
    /// The primary-key column names in key order; empty when the table has no
    /// explicit PRIMARY KEY (its rowid is not a stable key — VACUUM may
    /// renumber it — so callers refuse such tables).
    public var primaryKey: [String]
    /// Declared `WITHOUT ROWID`.
    public var isWithoutRowid: Bool
    /// The primary key is an alias of the rowid (`INTEGER PRIMARY KEY`, not DESC).
    public var hasRowidAlias: Bool
    /// Declared `STRICT`.
    public var isStrict: Bool

    /// The columns that hold data of their own, in declaration order: every
    /// column except generated and hidden ones.
    public var dataColumns: [ColumnInfo] { columns.filter { $0.hidden == 0 } }

    public init(
        name: String, columns: [ColumnInfo], primaryKey: [String],
        isWithoutRowid: Bool, hasRowidAlias: Bool, isStrict: Bool
    ) {
        self.name = name
        self.columns = columns
        self.primaryKey = primaryKey
        self.isWithoutRowid = isWithoutRowid
        self.hasRowidAlias = hasRowidAlias
        self.isStrict = isStrict
    }
}

/// Reads table shapes from a database's schema (the `main` schema only).
///
/// Uses `PRAGMA table_list` (SQLite ≥ 3.37) and `PRAGMA table_xinfo`; names are
/// always bound as values, never spliced.
public enum Schema {
    /// Whether `name` belongs to SQLite or Tidemark rather than to the user.
    public static func isInternal(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.hasPrefix("sqlite_") || lower.hasPrefix("_tidemark_")
    }

    /// The user tables, sorted by name: ordinary tables of the main schema,
    /// without views, virtual tables and their shadow tables, SQLite's own
    /// tables (`sqlite_%`) and Tidemark's (`_tidemark_%`).
    public static func tables(in connection: Connection) throws(SQLiteError) -> [String] {
        let statement = try connection.prepare(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' ORDER BY name")
        var names: [String] = []
        while try statement.step() {
            let name = statement.columnText(0)
            if !isInternal(name) { names.append(name) }
        }
        return names
    }

    /// What kind of schema object `name` is in the main schema ("table",
    /// "view", "virtual", "shadow"), or nil when there is none.
    public static func objectType(named name: String, in connection: Connection) throws(SQLiteError) -> String? {
        let statement = try connection.prepare(
            "SELECT type FROM pragma_table_list WHERE schema = 'main' AND name = ?1 COLLATE NOCASE")
        try statement.bind(name, at: 1)
        return try statement.step() ? statement.columnText(0) : nil
    }

    /// The shape of the ordinary table `name` (matched without regard to
    /// case), or nil when there is no such table — views and virtual tables
    /// included.
    public static func table(named name: String, in connection: Connection) throws(SQLiteError) -> TableInfo? {
        let list = try connection.prepare(
            "SELECT name, wr, strict FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name = ?1 COLLATE NOCASE")
        try list.bind(name, at: 1)
        guard try list.step() else { return nil }
        let tableName = list.columnText(0)
        let isWithoutRowid = list.columnInt64(1) != 0
        let isStrict = list.columnInt64(2) != 0

        let xinfo = try connection.prepare(
            "SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1, 'main') ORDER BY cid")
        try xinfo.bind(tableName, at: 1)
        var columns: [ColumnInfo] = []
        while try xinfo.step() {
            let columnName = xinfo.columnText(0)
            columns.append(ColumnInfo(
                name: columnName,
                declaredType: xinfo.columnText(1),
                notNull: xinfo.columnInt64(2) != 0,
                defaultSQL: xinfo.columnIsNull(3) ? nil : xinfo.columnText(3),
                primaryKeyIndex: Int(xinfo.columnInt64(4)),
                hidden: Int(xinfo.columnInt64(5)),
                collation: try collation(of: columnName, in: tableName, connection: connection)))
        }
        let primaryKey = columns.filter { $0.primaryKeyIndex > 0 }
            .sorted { $0.primaryKeyIndex < $1.primaryKeyIndex }
            .map(\.name)

        // > … a PRIMARY KEY column [of type exactly "INTEGER"] becomes an alias
        // > for the rowid … [this] does not apply to "INTEGER PRIMARY KEY DESC".
        // Every other primary key of a rowid table is enforced by an automatic
        // index whose origin is 'pk'; a rowid alias needs none.
        var hasRowidAlias = false
        if !isWithoutRowid && primaryKey.count == 1 {
            let indexes = try connection.prepare(
                "SELECT count(*) FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'")
            try indexes.bind(tableName, at: 1)
            try indexes.step()
            hasRowidAlias = indexes.columnInt64(0) == 0
        }
        return TableInfo(
            name: tableName, columns: columns, primaryKey: primaryKey,
            isWithoutRowid: isWithoutRowid, hasRowidAlias: hasRowidAlias, isStrict: isStrict)
    }

    private static func collation(of column: String, in table: String, connection: Connection) throws(SQLiteError) -> String {
        let db = try connection.handle()
        var collation: UnsafePointer<CChar>?
        let code = sqlite3_table_column_metadata(db, "main", table, column, nil, &collation, nil, nil, nil)
        guard code == SQLITE_OK else { throw SQLiteError.from(code, db: db) }
        return collation.map { String(cString: $0) } ?? "BINARY"
    }
}
