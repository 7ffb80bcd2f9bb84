import TidemarkLog
import TidemarkSQLite

/// The schema work of a cutover and of its undo and rollback: the index
/// gate, the AUTOINCREMENT sequences, and the application's triggers and
/// views, all read from the stored ``TargetSchema`` (never the source's
/// schema again).
///
/// Invariants kept here:
/// - A cutover never switches to a target whose secondary indexes are not
///   all built, nor silently without a trigger or view the target cannot
///   carry (unless the operator said `--drop-triggers`).
/// - The application's triggers and views exist in the target if and only if
///   the cutover committed: they are created in the cutover's target
///   transaction (two files: the one that journals "prepared"; one file: the
///   one transaction), and an undone cutover drops them again. Before that
///   they would fire a second time during replay (the source's trigger
///   already fired, and its effect is replayed as a change of its own).
/// - After a cutover an AUTOINCREMENT target table never hands out an id the
///   source ever used; after a rollback the source never hands out an id the
///   target used.
enum CutoverSchema {
    /// Trigger or view names with their stored state.
    struct StoredObject {
        var object: TargetSchema.Object
        var state: String
    }

    /// Every stored trigger and view with its state, views first (an INSTEAD
    /// OF trigger needs its view), each kind in stored order.
    static func objects(_ c: Connection) throws -> [StoredObject] {
        guard try SchemaStore.exists(c) else { return [] }
        let s = try c.prepare("SELECT kind, name, table_name, sql, replaces_sql, state FROM \(SchemaStore.table) WHERE kind IN ('view', 'trigger') ORDER BY kind = 'trigger', position")
        return try s.rows { r in
            let kind: TargetSchema.Object.Kind = r.columnText(0) == "view" ? .view : .trigger
            return StoredObject(object: .init(kind: kind, name: r.columnText(1), table: r.columnText(2), sql: r.columnText(3),
                                              replacesSQL: r.columnIsNull(4) ? nil : r.columnText(4)),
                                state: r.columnText(5))
        }
    }

    // MARK: Gates

    /// Refuses while a secondary index is not built (`migrate` builds them
    /// after each table's bulk copy). Reads only.
    static func requireIndexesBuilt(_ target: Connection, plan: Plan) throws {
        let pending = try SchemaStore.pending(.index, in: target)
        guard !pending.isEmpty else { return }
        throw MigrationError(.schemaIncomplete, "\(pending.count) index\(pending.count == 1 ? "" : "es") of \(plan.displayTarget) \(pending.count == 1 ? "is" : "are") not built yet (\(pending.joined(separator: ", "))); run `tidemark migrate` (it builds them after the copy), then cut over; nothing was switched")
    }

    /// The omissions that block a cutover (triggers and views that could not
    /// be mapped). Without `accept`, refuses listing them; with it, returns
    /// them for the warning the command line prints.
    static func blockingOmissions(_ target: Connection, accept: Bool) throws -> [TargetSchema.Omission] {
        guard let schema = try SchemaStore.load(target) else { return [] }
        let blocking = schema.omissions.filter(\.blocksCutover)
        if blocking.isEmpty || accept { return blocking }
        let list = blocking.map(describe).joined(separator: "; ")
        throw MigrationError(.schemaIncomplete, "the target cannot carry \(blocking.count) trigger\(blocking.count == 1 ? "" : "s")/view\(blocking.count == 1 ? "" : "s") of the source: \(list); fix the plan, or run `tidemark cutover --drop-triggers` to switch without \(blocking.count == 1 ? "it" : "them"); nothing was switched")
    }

    /// `<kind> <name> on <table> (<reason>)`, for refusals and warnings.
    static func describe(_ o: TargetSchema.Omission) -> String {
        "\(o.kind) \(o.name) on \(o.table) (\(o.reason))"
    }

    // MARK: In the cutover's target transaction

    /// Creates the stored triggers and views not yet created (a view that
    /// replaces the source's view of the same name, one file only, replaces
    /// it) and marks them created. In the caller's transaction.
    static func createObjects(_ target: Connection) throws {
        var triggered: [String] = []
        for o in try objects(target) where o.state == "pending" {
            if o.object.kind == .view, let original = o.object.replacesSQL {
                // DROP VIEW takes the view's INSTEAD OF triggers with it: the
                // source's are kept beside its definition, so a rollback
                // restores them too (this transaction's undo restores both).
                let onView = try applicationTriggers(target, o.object.name)
                if !onView.isEmpty {
                    let kept = ([original] + onView).joined(separator: ";\n")
                    try target.prepare("UPDATE \(SchemaStore.table) SET replaces_sql = ?1 WHERE kind = 'view' AND name = ?2")
                        .execute([.text(kept), .text(o.object.name)])
                }
                try target.execute("DROP VIEW IF EXISTS main.\(quoteIdentifier(o.object.name))")
            }
            if o.object.kind == .trigger, o.object.replacesSQL != nil {
                // A swap's trigger replaces the old table's of the same name.
                try target.execute("DROP TRIGGER IF EXISTS main.\(quoteIdentifier(o.object.name))")
            }
            do {
                try target.execute(o.object.sql)
            } catch {
                // The whole cutover transaction rolls back with this.
                throw MigrationError(.schemaIncomplete, "cutover: the target refused \(o.object.kind.rawValue) \(o.object.name): \(error.message); nothing was switched, the source stays authoritative; check its stored definition in \(SchemaStore.table) of the target")
            }
            try SchemaStore.setState(o.object.kind, name: o.object.name, state: "created", in: target)
            if o.object.kind == .trigger, let table = try triggerTable(target, name: o.object.name),
               !triggered.contains(where: { $0.lowercased() == table.lowercased() }) {
                triggered.append(table)
            }
        }
        for table in triggered { try putTidemarkTriggersFirst(target, table: table) }
    }

    /// The SQL of the application's triggers on `table` (a view: its
    /// INSTEAD OF triggers) in `main`, oldest first.
    static func applicationTriggers(_ c: Connection, _ table: String) throws -> [String] {
        let s = try c.prepare("SELECT sql FROM main.sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 AND sql IS NOT NULL AND name NOT LIKE '\\_tidemark\\_%' ESCAPE '\\' ORDER BY rowid")
        try s.bind([.text(table)])
        return try s.rows { $0.columnText(0) }
    }

    /// The table a trigger of `main` is on.
    static func triggerTable(_ c: Connection, name: String) throws -> String? {
        let s = try c.prepare("SELECT tbl_name FROM main.sqlite_schema WHERE type = 'trigger' AND name = ?1")
        try s.bind([.text(name)])
        return try s.step() ? s.columnText(0) : nil
    }

    /// Recreates Tidemark's own triggers on `table` (reverse capture) after
    /// the application's just created, with the same SQL, so that they fire
    /// first: SQLite fires a table's triggers newest first, and an
    /// application trigger that ended its statement early (RAISE(IGNORE))
    /// before capture's would leave a change uncaptured (capture's shape
    /// check refuses that order). In the caller's transaction.
    static func putTidemarkTriggersFirst(_ c: Connection, table: String) throws {
        let s = try c.prepare("SELECT name, sql FROM main.sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 AND name LIKE '\\_tidemark\\_%' ESCAPE '\\' ORDER BY rowid")
        try s.bind([.text(table)])
        let own = try s.rows { ($0.columnText(0), $0.columnText(1)) }
        for (name, _) in own { try c.execute("DROP TRIGGER main.\(quoteIdentifier(name))") }
        for (_, sql) in own { try c.execute(sql) }
    }

    /// Drops the triggers and views a cutover created (restoring a replaced
    /// view's original definition) and marks them pending: the undo of a
    /// cutover, and part of a rollback. In the caller's transaction; returns
    /// what it removed, as `<kind> <name>`.
    @discardableResult
    static func dropObjects(_ target: Connection) throws -> [String] {
        var removed: [String] = []
        // Triggers first (reverse of creation: an INSTEAD OF trigger goes
        // with its view, and a trigger may read a view).
        for o in try objects(target).reversed() where o.state == "created" {
            let q = quoteIdentifier(o.object.name)
            switch o.object.kind {
            case .trigger:
                try target.execute("DROP TRIGGER IF EXISTS main.\(q)")
                // A swap's trigger: the old table's own comes back (a swap
                // back has given that table its name again).
                if let original = o.object.replacesSQL { try target.execute(original) }
            case .view:
                try target.execute("DROP VIEW IF EXISTS main.\(q)")
                if let original = o.object.replacesSQL { try target.execute(original) }
            case .index: continue
            }
            try SchemaStore.setState(o.object.kind, name: o.object.name, state: "pending", in: target)
            removed.append("\(o.object.kind.rawValue) \(o.object.name)")
        }
        return removed
    }

    /// SQL to drop what a cutover created, for ``Rollback/abandon`` (which
    /// lists before it acts); replaced views get their original back.
    static func dropStatements(_ target: Connection) throws -> [(sql: String, what: String)] {
        var out: [(String, String)] = []
        for o in try objects(target).reversed() where o.state == "created" {
            let q = quoteIdentifier(o.object.name)
            switch o.object.kind {
            case .trigger:
                out.append(("DROP TRIGGER IF EXISTS main.\(q)", "trigger \(o.object.name)"))
                if let original = o.object.replacesSQL { out.append((original, "trigger \(o.object.name) (restored to the source's definition)")) }
            case .view:
                out.append(("DROP VIEW IF EXISTS main.\(q)", "view \(o.object.name)"))
                if let original = o.object.replacesSQL { out.append((original, "view \(o.object.name) (restored to the source's definition)")) }
            case .index: continue
            }
        }
        return out
    }

    // MARK: Sequences

    /// The `sqlite_sequence` value of `table` in `schema` of `c`, or nil.
    static func sequence(_ c: Connection, schema: String = "main", table: String) throws -> Int64? {
        let exists = try c.prepare("SELECT count(*) FROM \(schema).sqlite_schema WHERE type = 'table' AND name = 'sqlite_sequence'")
        _ = try exists.step()
        guard exists.columnInt64(0) > 0 else { return nil }
        let s = try c.prepare("SELECT max(seq) FROM \(schema).sqlite_sequence WHERE name = ?1")
        try s.bind([.text(table)])
        return try s.step() && !s.columnIsNull(0) ? s.columnInt64(0) : nil
    }

    /// The largest rowid of `table` (AUTOINCREMENT tables are rowid tables
    /// whose key is the rowid), or 0 when it is empty or missing.
    static func maxKey(_ c: Connection, schema: String = "main", table: String) throws -> Int64 {
        guard try c.prepare("SELECT 1 FROM \(schema).sqlite_schema WHERE type = 'table' AND name = ?1").rowsExist([.text(table)]) else { return 0 }
        let s = try c.prepare("SELECT coalesce(max(rowid), 0) FROM \(schema).\(quoteIdentifier(table))")
        _ = try s.step()
        return s.columnInt64(0)
    }

    /// Sets `table`'s `sqlite_sequence` row to at least `value`.
    /// `sqlite_sequence` has no unique key: the row is updated if present,
    /// else inserted.
    /// > The content of the SQLITE_SEQUENCE table can be modified using
    /// > ordinary UPDATE, INSERT, and DELETE statements.
    static func raiseSequence(_ c: Connection, schema: String = "main", table: String, to value: Int64) throws {
        // Without the table SQLite has no AUTOINCREMENT table in this schema
        // (it creates sqlite_sequence with the first one): nothing to move.
        guard let current = try sequence(c, schema: schema, table: table) else {
            let exists = try c.prepare("SELECT count(*) FROM \(schema).sqlite_schema WHERE type = 'table' AND name = 'sqlite_sequence'")
            _ = try exists.step()
            guard exists.columnInt64(0) > 0 else { return }
            try c.prepare("INSERT INTO \(schema).sqlite_sequence(name, seq) VALUES (?1, ?2)").execute([.text(table), .integer(value)])
            return
        }
        guard value > current else { return }
        try c.prepare("UPDATE \(schema).sqlite_sequence SET seq = ?2 WHERE name = ?1").execute([.text(table), .integer(value)])
    }

    /// At cutover, in the cutover's target transaction: each AUTOINCREMENT
    /// target table's sequence becomes max(the source's sequence, the
    /// source's largest key, its own). `source` reads the source (under its
    /// write lock, so the values are final) as schema `sourceSchema`.
    /// > If the AUTOINCREMENT keyword appears after INTEGER PRIMARY KEY, …
    /// > the ROWID chosen for the new row is at least one larger than the
    /// > largest ROWID that has ever before existed in that same table.
    static func moveSequencesForward(_ target: Connection, source: Connection, sourceSchema: String = "main") throws {
        guard let schema = try SchemaStore.load(target) else { return }
        for t in schema.tables where t.autoincrement {
            let value = max(try sequence(source, schema: sourceSchema, table: t.source) ?? 0,
                            try maxKey(source, schema: sourceSchema, table: t.source),
                            try sequence(target, table: t.target) ?? 0)
            try raiseSequence(target, table: t.target, to: value)
        }
    }

    /// At rollback, in the source transaction that makes the source
    /// authoritative again: each AUTOINCREMENT source table's sequence moves
    /// past every id the target handed out (its sequence and largest key).
    static func moveSequencesBack(writer: Connection, target: Connection) throws {
        guard let schema = try SchemaStore.load(target) else { return }
        for t in schema.tables where t.autoincrement {
            let value = max(try sequence(target, table: t.target) ?? 0, try maxKey(target, table: t.target),
                            try sequence(writer, table: t.source) ?? 0)
            try raiseSequence(writer, table: t.source, to: value)
        }
    }
}

extension Statement {
    /// Binds `values` and tells whether the statement returns a row.
    func rowsExist(_ values: [Value]) throws -> Bool {
        try bind(values)
        return try step()
    }
}
