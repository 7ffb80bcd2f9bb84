import TidemarkLog
import TidemarkSQLite

/// What the target receives for a plan: each target table's definition, the
/// objects around it, and what could not be carried (with why).
///
/// Resolved once, when a migration starts, from the source schema and the
/// plan, and stored in the target (``SchemaStore``): later commands (the
/// index builds, cutover, rollback, status) read the stored copy, never a
/// source schema that may have changed since.
///
/// Invariant: every constraint, index, trigger and view of a planned source
/// table is either in here (mapped through the plan's renames) or listed in
/// ``omissions`` with a reason. Nothing is dropped silently.
public struct TargetSchema: Sendable, Equatable {
    public struct Table: Sendable, Equatable {
        /// Source table name (as stored in the source schema).
        public var source: String
        /// Target table name.
        public var target: String
        /// `CREATE TABLE` of the target, with target names: declared types,
        /// NOT NULL, DEFAULT, COLLATE, CHECK, UNIQUE, the primary key as
        /// declared (WITHOUT ROWID, STRICT, AUTOINCREMENT) and carried
        /// FOREIGN KEYs. Inline constraints are part of the table from the start.
        public var createSQL: String
        /// The table's primary key is `INTEGER PRIMARY KEY AUTOINCREMENT`: its
        /// `sqlite_sequence` entry is moved at cutover (and back on rollback).
        public var autoincrement: Bool
        /// The plan defined the table itself (`create:`).
        public var fromPlan: Bool

        public init(source: String, target: String, createSQL: String, autoincrement: Bool = false, fromPlan: Bool = false) {
            self.source = source
            self.target = target
            self.createSQL = createSQL
            self.autoincrement = autoincrement
            self.fromPlan = fromPlan
        }
    }

    /// A schema object other than a table, with target names.
    public struct Object: Sendable, Equatable {
        public enum Kind: String, Sendable {
            /// A separate `CREATE INDEX` (also partial and expression
            /// indexes): built after the bulk copy of its table.
            case index
            /// An application trigger on a moved table: created at cutover
            /// (during replay it would fire a second time).
            case trigger
            /// A view that reads moved tables: created at cutover.
            case view
        }
        public var kind: Kind
        /// Name in the target.
        public var name: String
        /// The target table it belongs to (indexes, triggers); for views the
        /// first moved table it reads.
        public var table: String
        /// `CREATE …` with target names.
        public var sql: String
        /// Same-file migrations only: the object of the same name that the
        /// source had and that this one replaces at cutover (a view redefined
        /// over the moved tables), as it was, so rollback can restore it.
        public var replacesSQL: String?

        public init(kind: Kind, name: String, table: String, sql: String, replacesSQL: String? = nil) {
            self.kind = kind
            self.name = name
            self.table = table
            self.sql = sql
            self.replacesSQL = replacesSQL
        }
    }

    /// Something of a planned source table the target will not have.
    public struct Omission: Sendable, Equatable {
        /// "check", "unique", "foreign key", "default", "collate", "index",
        /// "trigger", "view", "generated column", …
        public var kind: String
        /// The object's or constraint's name, or its SQL text when unnamed.
        public var name: String
        /// The source table it belongs to.
        public var table: String
        /// Why, in words a user acts on ("names column email, which the plan drops").
        public var reason: String
        /// True when this blocks cutover unless the operator accepts it
        /// (`cutover --drop-triggers`): triggers and views that cannot be mapped.
        public var blocksCutover: Bool

        public init(kind: String, name: String, table: String, reason: String, blocksCutover: Bool = false) {
            self.kind = kind
            self.name = name
            self.table = table
            self.reason = reason
            self.blocksCutover = blocksCutover
        }
    }

    public var tables: [Table]
    public var indexes: [Object]
    public var triggers: [Object]
    public var views: [Object]
    public var omissions: [Omission]

    public init(tables: [Table], indexes: [Object] = [], triggers: [Object] = [], views: [Object] = [], omissions: [Omission] = []) {
        self.tables = tables
        self.indexes = indexes
        self.triggers = triggers
        self.views = views
        self.omissions = omissions
    }

    public func table(forSource name: String) -> Table? {
        tables.first { $0.source.lowercased() == name.lowercased() }
    }
}

extension TargetSchema {
    /// Resolves what the target gets for `mappings` (copy shapes; in-place
    /// mappings add columns and get no table) from the source schema read
    /// on `source`. Reads only; nothing is written anywhere.
    ///
    /// - Parameter sameFile: source and target are one file (object names
    ///   are then shared with the source's and must not collide).
    public static func resolve(plan: Plan, mappings: [TableMapping], source: Connection, sameFile: Bool) throws -> TargetSchema {
        // The source's schema mapped through the plan by SQLite's own
        // parser (see SchemaCarry for how and why).
        try SchemaCarry.resolve(plan: plan, mappings: mappings, source: source, sameFile: sameFile)
    }
}

/// The stored ``TargetSchema`` of a migration, in the target database.
///
/// ```
/// _tidemark_schema   one row per object: position, kind (table, index,
///                    trigger, view, omission), name, table, sql,
///                    replaces_sql, state, note
/// ```
/// `state` is `pending` or `built` for indexes (an index is built in the
/// transaction that marks it built), `pending` or `created` for triggers and
/// views (created at cutover, in the cutover's target transaction), and
/// `created` for tables. Omissions keep their reason in `note`
/// (`kind|reason|blocks`, see ``load(_:)``).
enum SchemaStore {
    static let table = "_tidemark_schema"

    static let createSQL = """
        CREATE TABLE IF NOT EXISTS \(table)(
          position INTEGER PRIMARY KEY,
          kind TEXT NOT NULL CHECK (kind IN ('table', 'index', 'trigger', 'view', 'omission')),
          name TEXT NOT NULL,
          table_name TEXT NOT NULL,
          sql TEXT NOT NULL,
          replaces_sql TEXT,
          state TEXT NOT NULL CHECK (state IN ('pending', 'built', 'created')),
          note TEXT)
        """

    static func exists(_ c: Connection) throws -> Bool {
        try Schema.table(named: table, in: c) != nil
    }

    /// Writes `schema` (inside the caller's transaction). Tables are stored
    /// as `created` (the caller creates them in the same transaction).
    static func store(_ schema: TargetSchema, in c: Connection) throws {
        try c.execute(createSQL)
        try c.execute("DELETE FROM \(table)")
        let insert = try c.prepare("INSERT INTO \(table)(kind, name, table_name, sql, replaces_sql, state, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        func put(_ kind: String, _ name: String, _ tableName: String, _ sql: String, _ replaces: String?, _ state: String, _ note: String?) throws {
            insert.reset()
            try insert.bind([.text(kind), .text(name), .text(tableName), .text(sql),
                             replaces.map { .text($0) } ?? .null, .text(state), note.map { .text($0) } ?? .null])
            try insert.execute()
        }
        for t in schema.tables {
            try put("table", t.target, t.source, t.createSQL, nil, "created",
                    (t.autoincrement ? "autoincrement" : "") + (t.fromPlan ? ",plan" : ""))
        }
        for o in schema.indexes + schema.triggers + schema.views {
            try put(o.kind.rawValue, o.name, o.table, o.sql, o.replacesSQL, "pending", nil)
        }
        for o in schema.omissions {
            try put("omission", o.name, o.table, "", nil, "created", [o.kind, o.reason, o.blocksCutover ? "blocks" : ""].joined(separator: "\u{1F}"))
        }
    }

    /// The stored schema, or nil for a migration begun before schemas were
    /// stored. `built`/`created` objects are reported by ``states(_:)``.
    static func load(_ c: Connection) throws -> TargetSchema? {
        guard try exists(c) else { return nil }
        var schema = TargetSchema(tables: [])
        let s = try c.prepare("SELECT kind, name, table_name, sql, replaces_sql, note FROM \(table) ORDER BY position")
        while try s.step() {
            let kind = s.columnText(0), name = s.columnText(1), tableName = s.columnText(2), sql = s.columnText(3)
            let replaces = s.columnIsNull(4) ? nil : s.columnText(4)
            let note = s.columnIsNull(5) ? "" : s.columnText(5)
            switch kind {
            case "table":
                let flags = Set(note.split(separator: ",").map(String.init))
                schema.tables.append(.init(source: tableName, target: name, createSQL: sql,
                                           autoincrement: flags.contains("autoincrement"), fromPlan: flags.contains("plan")))
            case "index": schema.indexes.append(.init(kind: .index, name: name, table: tableName, sql: sql, replacesSQL: replaces))
            case "trigger": schema.triggers.append(.init(kind: .trigger, name: name, table: tableName, sql: sql, replacesSQL: replaces))
            case "view": schema.views.append(.init(kind: .view, name: name, table: tableName, sql: sql, replacesSQL: replaces))
            default:
                let parts = note.split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init)
                schema.omissions.append(.init(kind: parts.first ?? "", name: name, table: tableName,
                                              reason: parts.count > 1 ? parts[1] : "", blocksCutover: parts.count > 2 && parts[2] == "blocks"))
            }
        }
        return schema
    }

    /// Names of objects of `kind` still `pending` (indexes not yet built;
    /// triggers and views not yet created).
    static func pending(_ kind: TargetSchema.Object.Kind, in c: Connection) throws -> [String] {
        guard try exists(c) else { return [] }
        let s = try c.prepare("SELECT name FROM \(table) WHERE kind = ?1 AND state = 'pending' ORDER BY position")
        try s.bind([.text(kind.rawValue)])
        return try s.rows { $0.columnText(0) }
    }

    /// Marks one object built (index) or created (trigger, view), or back to
    /// pending; in the caller's transaction, beside the DDL that did it.
    static func setState(_ kind: TargetSchema.Object.Kind, name: String, state: String, in c: Connection) throws {
        let s = try c.prepare("UPDATE \(table) SET state = ?1 WHERE kind = ?2 AND name = ?3")
        try s.bind([.text(state), .text(kind.rawValue), .text(name)])
        try s.execute()
    }
}
