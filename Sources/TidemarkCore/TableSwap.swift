import TidemarkLog
import TidemarkSQLite

/// The table swap of a `swap: true` plan table (one file): at cutover the
/// old table is renamed aside (`_tidemark_aside_<table>`, kept for rollback,
/// guarded) and the shadow the migration filled (`_tidemark_shadow_<table>`)
/// takes the table's name; a rollback swaps back. See TableSwap.md.
///
/// Invariants kept here:
/// - Both renames, the capture move, the triggers, views and guards happen in
///   the caller's one write transaction: a crash leaves the old state or the
///   swapped state, never half (SQLite's rollback journal or WAL undoes the
///   renames with the rest).
/// - The renames run with `legacy_alter_table = ON` and `foreign_keys =
///   OFF`: SQLite then rewrites no view, no trigger body and no REFERENCES
///   clause, so everything that names the table by name names the new table
///   once the shadow has its name.
/// - From the swap on, the application's writes to the table are captured
///   under its real name (the log is one timeline): the swap regenerates
///   the table's capture triggers for the new shape in the same transaction,
///   so no write reaches the new table uncaptured.
enum TableSwap {
    /// Whether `m` is swapped in at cutover.
    static func isSwap(_ m: TableMapping, plan: Plan) -> Bool {
        plan.isSameFile && m.shape == .copy
            && plan.tables.contains { $0.swap && $0.source.lowercased() == m.source.name.lowercased() }
    }

    /// Before BEGIN (foreign_keys is a no-op inside a transaction).
    static func prepareConnection(_ c: Connection) throws {
        try c.execute("PRAGMA foreign_keys = OFF")
        try c.execute("PRAGMA legacy_alter_table = ON")
    }

    /// After the transaction. (Tidemark's connections keep foreign keys off.)
    static func restoreConnection(_ c: Connection) throws {
        try c.execute("PRAGMA legacy_alter_table = OFF")
    }

    /// Whether the swap of `table` is in effect in `c`: the old table is
    /// aside and the shadow has taken its name.
    static func isSwapped(_ table: String, in c: Connection) throws -> Bool {
        try Schema.table(named: TablePlan.asideName(of: table), in: c) != nil
            && Schema.table(named: TablePlan.shadowName(of: table), in: c) == nil
    }

    /// The swap of one table, in the cutover's transaction (after the drain
    /// and the sequence move, before the carried triggers and views are
    /// created and the guards installed).
    ///
    /// - Parameter accepted: the blocking omissions the operator accepted
    ///   (`cutover --drop-triggers`). Those of this table (a view or trigger
    ///   that would no longer fit the new shape) are dropped here rather
    ///   than left broken.
    static func swap(_ m: TableMapping, in c: Connection, sourceID: SourceID, accepted: [TargetSchema.Omission] = []) throws {
        let q = quoteIdentifier
        let real = m.source.name, shadow = m.targetTable, aside = TablePlan.asideName(of: real)
        guard try Schema.table(named: shadow, in: c) != nil else {
            throw MigrationError(.missingTable, "cutover: the shadow table \(shadow) of \(real) is missing; nothing was switched — run `tidemark rollback`, then `tidemark migrate` again")
        }
        if let kind = try Schema.objectType(named: aside, in: c) {
            throw MigrationError(.badPlan, "cutover: a \(kind) named \(aside) exists already (an earlier swap of \(real) kept its old table); nothing was switched — drop it (or `tidemark finish --drop-source` the earlier migration), then cut over")
        }
        try c.execute("ALTER TABLE main.\(q(real)) RENAME TO \(q(aside))")
        try c.execute("ALTER TABLE main.\(q(shadow)) RENAME TO \(q(real))")
        // The old table's application triggers went aside with it. The
        // carried ones are created on the new table next under the same
        // names (their old definitions are kept for a rollback); the
        // others were accepted as dropped (--drop-triggers).
        for name in try applicationTriggers(on: aside, in: c) {
            try c.execute("DROP TRIGGER main.\(q(name))")
        }
        for o in accepted where o.table.lowercased() == real.lowercased() && o.blocksCutover {
            switch o.kind {
            case "view": try c.execute("DROP VIEW IF EXISTS main.\(q(o.name))")
            case "trigger": try c.execute("DROP TRIGGER IF EXISTS main.\(q(o.name))")
            default: break
            }
        }
        // Capture follows the name: the new table's triggers, new shape,
        // `from_seq` here (the old triggers, aside now, go by name).
        try Capture.installInTransaction(connection: c, tables: [real], sourceID: sourceID)
    }

    /// The swap back of a rollback, in its one transaction (guards already
    /// dropped; before the target's writes are carried into the old table).
    /// The new-shape table becomes the shadow again (the rollback fences
    /// it, and `migrate` drops it with the rest of the migration).
    static func swapBack(_ m: TableMapping, in c: Connection) throws {
        let q = quoteIdentifier
        let real = m.source.name, shadow = m.targetTable, aside = TablePlan.asideName(of: real)
        guard try Schema.table(named: aside, in: c) != nil else {
            throw MigrationError(.missingTable, "rollback: the old table \(aside) of \(real) is gone (was `tidemark finish --drop-source` run?); there is nothing to swap back — nothing was changed")
        }
        try c.execute("ALTER TABLE main.\(q(real)) RENAME TO \(q(shadow))")
        try c.execute("ALTER TABLE main.\(q(aside)) RENAME TO \(q(real))")
    }

    /// The application's triggers on `table` (not Tidemark's own).
    static func applicationTriggers(on table: String, in c: Connection) throws -> [String] {
        let s = try c.prepare("SELECT name FROM main.sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE AND name NOT LIKE '\\_tidemark\\_%' ESCAPE '\\' ORDER BY rowid")
        try s.bind([.text(table)])
        return try s.rows { $0.columnText(0) }
    }
}
