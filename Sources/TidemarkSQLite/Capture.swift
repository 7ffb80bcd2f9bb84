import CSQLite
import TidemarkLog

/// The shape a captured table had when its triggers were generated: which
/// columns the row images hold, in which order, and which form the key.
public struct CapturedTable: Sendable, Hashable {
    /// The table name as stored in the schema.
    public var name: String
    /// The data columns (generated columns excluded), in declaration order —
    /// the order of the values in every row image.
    public var columns: [String]
    /// The primary-key columns in key order — the order of the values in the
    /// outbox `key`.
    public var keyColumns: [String]
    /// The columns whose updates are captured (`UPDATE OF …`), or nil for all.
    /// Key changes are captured whatever this says.
    public var updateColumns: [String]?
    /// Outbox rows with `seq` greater than this (and not greater than the next
    /// shape's `fromSeq`) were written by the triggers for this shape.
    public var fromSeq: Int64

    public init(name: String, columns: [String], keyColumns: [String], updateColumns: [String]?, fromSeq: Int64) {
        self.name = name
        self.columns = columns
        self.keyColumns = keyColumns
        self.updateColumns = updateColumns
        self.fromSeq = fromSeq
    }
}

/// What ``Capture/status(connection:)`` reports.
public struct CaptureStatus: Sendable, Hashable {
    public var sourceID: SourceID
    /// The current shape of each captured table, by name.
    public var tables: [CapturedTable]
    /// Outbox rows not yet shipped (and deleted).
    public var backlog: Int
    /// The lowest and highest `seq` waiting in the outbox.
    public var oldestPending: LSN?
    public var newestPending: LSN?
    /// The highest `seq` ever assigned: the capture high-water mark.
    public var lastCaptured: LSN
    /// The capture time of the oldest waiting change, in µs since the epoch.
    public var oldestPendingMicros: Int64?

    /// How long the oldest waiting change has waited, at `nowMicros`.
    public func lagMillis(nowMicros: Int64) -> Int64 {
        guard let oldestPendingMicros else { return 0 }
        return max(0, (nowMicros - oldestPendingMicros) / 1000)
    }
}

/// Trigger capture of a SQLite source: every writer of the database — any
/// process, any language — records each row change in the outbox table in
/// the same transaction as the change itself.
///
/// ## Tables
///
/// | table | holds |
/// |---|---|
/// | `_tidemark_outbox(seq, ts, tbl, op, v1, v2, …)` | one row per captured change |
/// | `_tidemark_meta(name, value)` | `source_id`, `format` |
/// | `_tidemark_tables(tbl, from_seq, columns, key_columns, update_columns)` | each captured table's shape, per trigger generation |
///
/// `op` is ``TidemarkLog/ChangeOperation``'s raw value (1 insert, 2 update,
/// 3 delete). `ts` is the statement time in microseconds since the Unix
/// epoch, at SQLite's millisecond resolution. The row images are the column
/// values themselves, in the order of ``CapturedTable/columns``: an insert's
/// after image or a delete's before image in `v1…vn`; an update's before
/// image in `v1…vn` and its after image in `v(n+1)…v(2n)`. The key is read
/// from the image (the after image, or the before image of a delete).
///
/// ## Why raw values, not `quote()` text
///
/// The `v` columns have no declared type, so no affinity: SQLite stores each
/// value exactly as the trigger hands it over and returns it with the same
/// storage class and bits — the same value a reader of the captured table
/// gets (checked for -0.0 and integral reals in REAL, NUMERIC and untyped
/// columns). Text images made with `quote()` are not exact in SQLite 3.40
/// (some doubles do not round-trip, text stops at a NUL; see
/// ``QuotedValue``), cannot show a negative zero at all, and made bulk
/// writes 3× slower than storing the values (measured with
/// `tidemark-bench capture`).
///
/// The outbox has as many `v` columns as twice the widest captured table
/// (added with `ALTER TABLE … ADD COLUMN` when a wider table is captured);
/// the columns a row does not use are NULL and cost one byte each.
///
/// ## Ordering
///
/// `seq` is `INTEGER PRIMARY KEY AUTOINCREMENT`:
/// > If the AUTOINCREMENT keyword appears after INTEGER PRIMARY KEY, … the
/// > ROWIDs … are guaranteed to be monotonically increasing … never reused
/// SQLite allows one writer at a time and a trigger runs inside its writer's
/// transaction, so `seq` order is commit order and a rolled-back transaction
/// leaves no outbox rows (only a gap in `seq`). The LSN of a change is its `seq`.
///
/// ## What is captured
///
/// Exactly one record per committed row change, in the order the changes
/// happened. "The row now" below is read back from the table by key when
/// the trigger runs, never taken from `NEW.*`.
///
/// | write | records |
/// |---|---|
/// | INSERT (also of an `INSERT … SELECT`, each row) | insert: the row now |
/// | UPDATE that keeps the key (compared with `IS`, under the column's collation) | update: the old row, the row now — only when it sets a column of the update-column list (all columns when there is none) |
/// | UPDATE that changes the key, however spelled: the key column, `rowid`, `oid`, `_rowid_` | one update: the old row (old key) and the row now (new key); ``TidemarkLog/ChangeRecord/key`` is the new key — whatever the update-column list says |
/// | UPDATE of the rowid of a table whose key is not the rowid | nothing (its data did not change) |
/// | DELETE (also a foreign-key cascade) | delete: the old row |
/// | upsert (`ON CONFLICT DO UPDATE` / `DO NOTHING`) | an insert or an update, as it happened; nothing for `DO NOTHING` |
/// | `INSERT OR REPLACE`, `REPLACE`, `UPDATE OR REPLACE`, or a plain write to a table whose key or UNIQUE constraint says `ON CONFLICT REPLACE`, displacing rows | for each displaced row whose key is gone: a delete (the row as it was); then the writer's own insert or update. A row displaced by its own key is replaced by the insert of that key (replay upserts by key). With `recursive_triggers` on, the displaced rows' delete triggers log the same deletes, once |
/// | `INSERT OR IGNORE`, `UPDATE OR IGNORE` that skip a row | nothing |
/// | a statement that fails (ABORT, ROLLBACK), a rolled-back savepoint or transaction | nothing: the outbox rows are undone with it |
/// | `OR FAIL` stopping a multi-row statement | the rows changed before the failure, as above |
/// | writes of the application's AFTER triggers | each as above, after (capture's triggers fire first) the statement's own record |
///
/// Application triggers: capture's triggers must fire before the
/// application's (SQLite fires the newest first), so that an application
/// trigger that ends its statement early keeping the row (`RAISE(IGNORE)`,
/// an error under `OR FAIL`) cannot leave a change uncaptured. Installing
/// recreates capture's triggers after any newer ones, and
/// ``checkShapes(connection:)`` — run by the shipper on every schema change —
/// stops with an error naming a newer trigger. Records may therefore show
/// states within one statement (the row before the application's AFTER
/// trigger changed it, then that change); every image is a state the row
/// really had, and the records folded in LSN order give the committed rows.
/// BEFORE triggers that modify the row being written are undefined
/// behaviour in SQLite and out of scope.
///
/// REPLACE displacement: SQLite deletes the rows a REPLACE displaces without
/// firing their delete triggers unless the writer enabled
/// `recursive_triggers`.
/// > When the REPLACE conflict resolution strategy deletes rows in order to
/// > satisfy a constraint, delete triggers fire if and only if recursive
/// > triggers are enabled.
/// So BEFORE INSERT/UPDATE triggers stage the rows the new image conflicts
/// with on each unique constraint (see ``Displacement``) in
/// `_tidemark_staged_<table>`, and the AFTER triggers log as deletes those
/// whose key is then gone, and empty the stage. A staging whose statement
/// did not happen (OR IGNORE, an upsert's update, a failed row) leaves rows
/// that still exist; they are never logged: a logged delete or key change of
/// a staged row removes it from the stage, and every later AFTER INSERT or
/// displacing UPDATE of the table empties it. A table with a unique index
/// over an expression or a generated column is refused (a trigger cannot
/// find its conflicts); a unique index created after install makes
/// ``checkShapes(connection:)`` fail until capture is installed again.
/// A table whose only unique constraint is its primary key needs none of
/// this: a REPLACE there can only displace the row holding the key being
/// written, which that write's own record covers. Such a table has no
/// staging table and one trigger per kind of write.
///
/// Not captured at all: incremental BLOB I/O (`sqlite3_blob_write`), which
/// fires no trigger (verify catches it), and writes under `TEMP` triggers of
/// a writer's own connection that end statements early.
///
/// - Generated columns are not captured (a target recomputes them).
/// - Values are captured exactly as a reader of the table sees them: a
///   `-0.0` survives in a column without affinity and reads as `0.0` from a
///   REAL column, in both the table and the capture. NaN is never stored
///   (SQLite turns it into NULL).
public enum Capture {
    /// The version of the outbox format the triggers write.
    public static let format = "2"

    static let outboxTable = "_tidemark_outbox"
    static let metaTable = "_tidemark_meta"
    static let tablesTable = "_tidemark_tables"

    /// The statement time in µs since the epoch. `julianday('now')` is a whole
    /// number of milliseconds (SQLite's clock resolution) divided by 86400000;
    /// rounding after converting back recovers the milliseconds exactly.
    /// > the 'now' … returns the same value for multiple invocations within
    /// > the same sqlite3_step() call
    static let timestampSQL = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000"

    // MARK: Install

    /// What ``install(connection:tables:updateColumns:sourceID:)`` did.
    public struct InstallReport: Sendable, Hashable {
        /// Tables whose triggers were created or regenerated.
        public var installed: [String]
        /// Tables already captured exactly as asked.
        public var unchanged: [String]
        /// Whether the outbox and metadata tables were created now.
        public var createdOutbox: Bool
    }

    /// Installs capture on `tables` (every user table when nil).
    ///
    /// Creates the outbox and metadata tables, switches the database to WAL
    /// (so the shipper's reads never block writers), and creates AFTER INSERT,
    /// UPDATE and DELETE triggers on each table. Running it again with the
    /// same arguments changes nothing; running it after a table changed shape
    /// regenerates that table's triggers and records the new shape, while
    /// changes already in the outbox keep being decoded with the old one.
    /// Tables captured before and not named now stay captured.
    ///
    /// Everything is checked before anything is changed, and all DDL runs in
    /// one transaction: on error the database is as it was (except that it
    /// may already be in WAL mode, which changes no data).
    ///
    /// - Parameters:
    ///   - tables: Table names (matched without regard to case).
    ///   - updateColumns: Per table, the columns whose updates are captured
    ///     (`UPDATE OF …`); tables not listed capture every update. Key
    ///     changes are always captured.
    ///   - sourceID: The id of this source, also stored in its log.
    ///   - continuingAfter: When the outbox is created (not when capture is
    ///     already installed), the first `seq` is the one after this LSN. Pass
    ///     the last LSN of the log the changes will be shipped into when that
    ///     log already holds changes (capture was uninstalled and installed
    ///     again): `seq`s, and so LSNs, then keep increasing in that log.
    ///     > The content of the SQLITE_SEQUENCE table can be modified using
    ///     > ordinary UPDATE, INSERT, and DELETE statements.
    /// - Throws: ``CaptureError`` (`missingTable`, `notATable`, `noPrimaryKey`,
    ///   `badColumn`, `foreignSource`, `unsupported` — also for a table wider
    ///   than half SQLite's column limit) or ``SQLiteError``.
    @discardableResult
    public static func install(
        connection: Connection,
        tables: [String]? = nil,
        updateColumns: [String: [String]] = [:],
        sourceID: SourceID,
        continuingAfter: LSN = .zero
    ) throws -> InstallReport {
        guard !sourceID.rawValue.isEmpty else {
            throw CaptureError(.unsupported, "the source id is empty")
        }
        // Check first, without writing: a bad argument changes nothing.
        _ = try plan(connection: connection, tables: tables, updateColumns: updateColumns, sourceID: sourceID)

        let encoding = try connection.prepare("PRAGMA encoding")
        if try encoding.step(), encoding.columnText(0) != "UTF-8" {
            throw CaptureError(.unsupported,
                "\(connection.path) uses \(encoding.columnText(0)) text; capture needs a UTF-8 database")
        }
        if try connection.journalMode() != .wal {
            let mode = try connection.setJournalMode(.wal)
            guard mode == .wal else {
                throw CaptureError(.unsupported,
                    "\(connection.path) cannot use WAL journaling (it stayed '\(mode.rawValue)'); capture needs a WAL database file")
            }
        }

        // The invariant this transaction keeps: a table's triggers and its
        // recorded shape change together, and a shape's `from_seq` is the
        // highest seq written by the previous triggers.
        return try connection.transaction(.immediate) {
            try installInTransaction(connection: connection, tables: tables, updateColumns: updateColumns,
                                     sourceID: sourceID, continuingAfter: continuingAfter)
        }
    }

    /// ``install(connection:tables:updateColumns:sourceID:continuingAfter:)``
    /// inside the caller's write transaction, on a WAL database whose capture
    /// may already be installed: a table swap regenerates the swapped
    /// table's triggers for its new shape in the swap's own transaction, so
    /// that the first write to the new table is captured under its name.
    @discardableResult
    public static func installInTransaction(
        connection: Connection,
        tables: [String]?,
        updateColumns: [String: [String]] = [:],
        sourceID: SourceID,
        continuingAfter: LSN = .zero
    ) throws -> InstallReport {
        let planned = try plan(connection: connection, tables: tables, updateColumns: updateColumns, sourceID: sourceID)
        let createdOutbox = try !isInstalled(connection)
        if createdOutbox {
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS \(outboxTable)(
                  seq INTEGER PRIMARY KEY AUTOINCREMENT,
                  ts INTEGER NOT NULL,
                  tbl TEXT NOT NULL,
                  op INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS \(metaTable)(
                  name TEXT PRIMARY KEY,
                  value TEXT NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS \(tablesTable)(
                  tbl TEXT NOT NULL,
                  from_seq INTEGER NOT NULL,
                  columns TEXT NOT NULL,
                  key_columns TEXT NOT NULL,
                  update_columns TEXT,
                  PRIMARY KEY (tbl, from_seq)) WITHOUT ROWID;
                """)
            let meta = try connection.prepare("INSERT INTO \(metaTable)(name, value) VALUES (?1, ?2)")
            try meta.execute([.text("source_id"), .text(sourceID.rawValue)])
            try meta.execute([.text("format"), .text(format)])
            let firstSeq = Int64(clamping: continuingAfter.rawValue)
            try meta.execute([.text("first_seq"), .text(String(firstSeq))])
            // This installation's identity: the log records which one owns it.
            try meta.execute([.text("installation_id"), .text(SourceID.random().rawValue)])
            // The install time on the clock the triggers use, so that the
            // shipper can tell a log of an earlier installation.
            try connection.prepare("""
                INSERT INTO \(metaTable)(name, value) VALUES ('installed_at_micros', CAST(\(timestampSQL) AS TEXT))
                """).execute()
            if firstSeq > 0 {
                try connection.prepare("INSERT INTO sqlite_sequence(name, seq) VALUES (?1, ?2)")
                    .execute([.text(outboxTable), .integer(firstSeq)])
            }
        }
        try widenOutbox(connection, toValueColumns: 2 * (planned.map(\.columns.count).max() ?? 0))
        let highWater = try lastCapturedSeq(connection)
        let current = try currentShapes(connection)
        var report = InstallReport(installed: [], unchanged: [], createdOutbox: createdOutbox)
        try connection.prepare("INSERT OR REPLACE INTO \(metaTable)(name, value) VALUES ('format', ?1)")
            .execute([.text(format)])
        for table in planned {
            guard let info = try Schema.table(named: table.name, in: connection) else {
                throw CaptureError(.missingTable, "table '\(table.name)' does not exist in \(connection.path)", table: table.name)
            }
            let displacement = try displacement(for: table, info: info, connection: connection)
            let triggers = triggerSQL(for: table, displacement: displacement)
            let existing = try existingTriggerSQL(connection, table: table.name)
            if let shape = current[table.name], shape.sameShape(as: table),
               existing == Dictionary(uniqueKeysWithValues: triggers.map { ($0.name, $0.sql) }),
               try existingStagingSQL(connection, table: table.name) == displacement.stagingSQL,
               try newerTriggers(connection, table: table.name).isEmpty {
                report.unchanged.append(table.name)
                continue
            }
            for name in TriggerKind.allCases.map({ $0.triggerName(table.name) }) {
                try connection.execute("DROP TRIGGER IF EXISTS \(quoteIdentifier(name))")
            }
            // Rows still staged are rows that existed when staged (a change
            // that conflicted with them and then did not happen); dropping
            // them loses nothing.
            try connection.execute("DROP TABLE IF EXISTS \(quoteIdentifier(stagingTable(table.name)))")
            if let stagingSQL = displacement.stagingSQL { try connection.execute(stagingSQL) }
            for trigger in triggers { try connection.execute(trigger.sql) }
            let record = try connection.prepare("""
                INSERT OR REPLACE INTO \(tablesTable)(tbl, from_seq, columns, key_columns, update_columns)
                VALUES (?1, ?2, ?3, ?4, ?5)
                """)
            try record.execute([
                .text(table.name), .integer(highWater),
                .text(nameList(table.columns)), .text(nameList(table.keyColumns)),
                table.updateColumns.map { .text(nameList($0)) } ?? .null,
            ])
            report.installed.append(table.name)
        }
        try pruneShapes(connection)
        return report
    }

    /// The tables to capture, checked and with names as the schema spells them.
    private static func plan(
        connection: Connection, tables requested: [String]?, updateColumns: [String: [String]], sourceID: SourceID
    ) throws -> [CapturedTable] {
        if try isInstalled(connection), let existing = try storedSourceID(connection), existing != sourceID {
            throw CaptureError(.foreignSource,
                "\(connection.path) is already captured for source '\(existing)', not '\(sourceID)'; uninstall capture first or use that source id")
        }
        let names = try requested ?? Schema.tables(in: connection)
        var planned: [CapturedTable] = []
        var seen: Set<String> = []
        for name in names {
            if Schema.isInternal(name) {
                throw CaptureError(.notATable, "'\(name)' is an internal table and cannot be captured", table: name)
            }
            guard let info = try Schema.table(named: name, in: connection) else {
                if let type = try Schema.objectType(named: name, in: connection) {
                    throw CaptureError(.notATable,
                        "'\(name)' in \(connection.path) is a \(type), not an ordinary table; only tables can be captured",
                        table: name)
                }
                throw CaptureError(.missingTable, "table '\(name)' does not exist in \(connection.path)", table: name)
            }
            guard !info.primaryKey.isEmpty else {
                throw CaptureError(.noPrimaryKey,
                    "table '\(info.name)' has no PRIMARY KEY, so its rows cannot be identified; add one (or leave the table out)",
                    table: info.name)
            }
            guard seen.insert(info.name.lowercased()).inserted else { continue }
            let table = CapturedTable(
                name: info.name,
                columns: info.dataColumns.map(\.name),
                keyColumns: info.primaryKey,
                updateColumns: nil,
                fromSeq: 0)
            _ = try displacement(for: table, info: info, connection: connection)  // refuses what it cannot capture
            planned.append(table)
        }
        for (tableName, columns) in updateColumns {
            guard let index = planned.firstIndex(where: { $0.name.lowercased() == tableName.lowercased() }) else {
                throw CaptureError(.missingTable,
                    "update columns are given for '\(tableName)', which is not among the tables to capture", table: tableName)
            }
            guard !columns.isEmpty else {
                throw CaptureError(.badColumn,
                    "the update-column list for '\(tableName)' is empty; leave the table out of it to capture every update",
                    table: tableName)
            }
            let info = planned[index]
            var resolved: [String] = []
            for column in columns {
                guard let match = info.columns.first(where: { $0.lowercased() == column.lowercased() }) else {
                    throw CaptureError(.badColumn,
                        "table '\(info.name)' has no data column '\(column)' (generated columns cannot be listed)",
                        table: info.name)
                }
                if !resolved.contains(match) { resolved.append(match) }
            }
            planned[index].updateColumns = resolved
        }
        return planned.sorted { $0.name < $1.name }
    }

    // MARK: Triggers

    enum TriggerKind: String, CaseIterable {
        case insert, update, rekey, delete
        /// BEFORE INSERT / BEFORE UPDATE: stage the rows the new row conflicts with.
        case stageInsert = "stage_insert", stageUpdate = "stage_update"
        /// AFTER UPDATE / AFTER INSERT: log the staged rows that a REPLACE displaced.
        case displaced, displacedByInsert = "displaced_insert"

        func triggerName(_ table: String) -> String { "_tidemark_\(table)_\(rawValue)" }
    }

    /// The scratch table where `table`'s BEFORE triggers stage the rows a
    /// change conflicts with (see ``Displacement``).
    static func stagingTable(_ table: String) -> String { "_tidemark_staged_\(table)" }

    /// How to find the rows a new row image would displace under REPLACE:
    /// every UNIQUE constraint of the table — the primary key, each UNIQUE
    /// column or table constraint, each `CREATE UNIQUE INDEX` (a partial one
    /// by its columns alone, which finds a superset of its conflicts), and
    /// the rowid when it is not the key — as SQL over `r` (the table) and
    /// `NEW`.
    struct Displacement: Hashable {
        /// One lookup per unique constraint: `r.a = NEW.a COLLATE x AND …`.
        var lookups: [String]
        /// Whether an update can create a new conflict: one of the columns
        /// of a unique constraint (or the rowid) changed, compared bytewise.
        var changed: [String]
        /// The CREATE TABLE of the staging table, when the table needs one
        /// (see ``keyOnly``).
        var stagingSQL: String? { keyOnly ? nil : fullStagingSQL }
        /// The CREATE TABLE a staging table has when there is one.
        var fullStagingSQL: String
        /// How a trigger finds the changed row now (`r`): by rowid in a rowid
        /// table whose key is not the rowid (its key may hold NULLs, which
        /// `=` never matches), else by key.
        var current: String?
        /// Whether the primary key is the table's only unique constraint (the
        /// rowid being the key, or there being none). Then a REPLACE can only
        /// displace the row holding the written key, which the write itself
        /// covers (replay upserts by key; a key change is logged as one
        /// update): a staged row could never be logged as displaced, since
        /// its key — the new row's — is never gone after the write. Such a
        /// table gets no staging table and no staging or displaced triggers,
        /// which halves the triggers an insert fires.
        var keyOnly: Bool
    }

    /// Reads `table`'s unique constraints. Throws ``CaptureError``
    /// `unsupported` for a unique index over an expression or a generated
    /// column: a trigger cannot find the rows such an index makes a REPLACE
    /// delete, so capturing the table could miss deletes silently.
    static func displacement(for table: CapturedTable, info: TableInfo, connection: Connection) throws -> Displacement {
        let columns = Set(info.columns.map(\.name))
        let generated = Set(info.columns.filter(\.isGenerated).map(\.name))
        var lookups: [String] = []
        var changed: [String] = []
        func column(_ name: String) -> String { quoteIdentifier(name) }
        func noteChanged(_ name: String) {
            let term = "NOT (OLD.\(column(name)) IS NEW.\(column(name)) COLLATE BINARY)"
            if !changed.contains(term) { changed.append(term) }
        }
        if info.hasRowidAlias, let key = table.keyColumns.first {
            lookups.append("r.\(column(key)) = NEW.\(column(key))")
            noteChanged(key)
        }
        let indexes = try connection.prepare(
            "SELECT name, \"partial\", origin FROM pragma_index_list(?1, 'main') WHERE \"unique\" = 1 ORDER BY name")
        try indexes.bind(info.name, at: 1)
        let indexList = try indexes.rows { ($0.columnText(0), $0.columnInt64(1) != 0, $0.columnText(2)) }
        var keyOnly = !indexList.contains { $0.1 || $0.2 != "pk" }
        // A partial index admits a row when its WHERE clause turns true, so an
        // update of any column (a WHERE-clause column alone) can displace a
        // row through it: for such a table every column counts as changed.
        if indexList.contains(where: { $0.1 }) {
            for name in info.columns.map(\.name) where !generated.contains(name) { noteChanged(name) }
        }
        for (index, _, _) in indexList {
            let xinfo = try connection.prepare(
                "SELECT cid, name, coll FROM pragma_index_xinfo(?1, 'main') WHERE key = 1 ORDER BY seqno")
            try xinfo.bind(index, at: 1)
            var terms: [String] = []
            while try xinfo.step() {
                let cid = xinfo.columnInt64(0)
                let name = xinfo.columnIsNull(1) ? "" : xinfo.columnText(1)
                guard cid >= 0, columns.contains(name), !generated.contains(name) else {
                    throw CaptureError(.unsupported,
                        "table '\(info.name)' has UNIQUE index '\(index)' over an expression or a generated column; a REPLACE through it deletes rows that no trigger can find, so changes could be lost; drop or rewrite that index over plain columns, or leave the table out of capture",
                        table: info.name)
                }
                // A NOT NULL … ON CONFLICT REPLACE column takes its default
                // after the BEFORE triggers ran: look for that value too.
                let info = info.columns.first { $0.name == name }
                let value = info.flatMap { $0.notNull ? $0.defaultSQL : nil }
                    .map { "coalesce(NEW.\(column(name)), (\($0)))" } ?? "NEW.\(column(name))"
                terms.append("r.\(column(name)) = \(value) COLLATE \(quoteIdentifier(xinfo.columnText(2)))")
                noteChanged(name)
            }
            if !terms.isEmpty { lookups.append(terms.joined(separator: " AND ")) }
        }
        var current: String?
        if !info.isWithoutRowid && !info.hasRowidAlias,
           let alias = ["rowid", "oid", "_rowid_"].first(where: { a in !columns.contains { $0.lowercased() == a } }) {
            // The rowid is not the key: an explicit rowid can displace a row too.
            lookups.append("r.\(alias) = NEW.\(alias)")
            changed.append("OLD.\(alias) IS NOT NEW.\(alias)")
            current = "r.\(alias) = NEW.\(alias)"
        }
        // The rowid is a unique constraint of its own unless it is the key.
        if !info.isWithoutRowid && !info.hasRowidAlias { keyOnly = false }
        let keyed = Set(table.keyColumns)
        let collations = Dictionary(info.columns.map { ($0.name, $0.collation) }, uniquingKeysWith: { a, _ in a })
        let stagingColumns = table.columns.map { name in
            keyed.contains(name) ? "\(column(name)) COLLATE \(quoteIdentifier(collations[name] ?? "BINARY"))" : column(name)
        }
        let stagingSQL = "CREATE TABLE \(quoteIdentifier(stagingTable(table.name)))("
            + stagingColumns.joined(separator: ", ")
            + ", PRIMARY KEY (\(table.keyColumns.map(column).joined(separator: ", ")))) WITHOUT ROWID"
        return Displacement(lookups: lookups, changed: changed, fullStagingSQL: stagingSQL, current: current, keyOnly: keyOnly)
    }

    /// The CREATE TRIGGER statements for `table`, spelled as SQLite stores them
    /// in `sqlite_schema.sql` (single spaces after the first two keywords), so
    /// that an unchanged install compares equal.
    ///
    /// Every image a trigger logs as "the row now" is read back from the
    /// table by key when the trigger runs, never taken from `NEW.*`: SQLite
    /// fires the triggers of one event newest first, so an application
    /// trigger created after capture runs before it and may already have
    /// changed the row; `NEW.*` would then be stale. When the row is gone by
    /// then (an application trigger deleted or re-keyed it, and that change
    /// was logged by its own trigger), nothing more is logged.
    static func triggerSQL(for table: CapturedTable, displacement: Displacement) -> [(name: String, sql: String)] {
        let t = quoteIdentifier(table.name)
        let staged = quoteIdentifier(stagingTable(table.name))
        // The table name is written into the outbox by the trigger body, which
        // cannot take bound parameters; it is a quoted string literal.
        let tableLiteral = quoteStringLiteral(table.name)
        func columns(_ row: String) -> [String] { table.columns.map { "\(row).\(quoteIdentifier($0))" } }
        func keyMatch(_ row: String, _ other: String) -> String {
            table.keyColumns.map { "\(row).\(quoteIdentifier($0)) = \(other).\(quoteIdentifier($0))" }
                .joined(separator: " AND ")
        }
        func log(op: ChangeOperation, images: [[String]], from: String) -> String {
            let targets = (1...(images.count * table.columns.count)).map { valueColumn($0) }
            return "INSERT INTO \(outboxTable)(ts,tbl,op,\(targets.joined(separator: ","))) SELECT "
                + "\(timestampSQL),\(tableLiteral),\(op.rawValue),\(images.flatMap { $0 }.joined(separator: ","))\(from);"
        }
        // The row as it is now, found by NEW's key.
        let current = " FROM \(t) AS r WHERE \(displacement.current ?? keyMatch("r", "NEW"))"
        // Staged rows whose key is gone were displaced by a REPLACE without
        // firing a delete trigger: log them as deletes, then empty the stage.
        let logDisplaced = log(op: .delete, images: [columns("s")],
                               from: " FROM \(staged) AS s WHERE NOT EXISTS (SELECT 1 FROM \(t) AS r WHERE \(keyMatch("r", "s")))")
            + " DELETE FROM \(staged);"
        // A logged delete or key change of a staged row covers it.
        let unstage = displacement.keyOnly ? ""
            : "DELETE FROM \(staged) WHERE \(table.keyColumns.map { "\(quoteIdentifier($0)) = OLD.\(quoteIdentifier($0))" }.joined(separator: " AND ")); "
        // The rows the new image conflicts with on any unique constraint (for
        // an update, other than the row itself), with their current images.
        //
        // First the stage is emptied the way an AFTER trigger empties it:
        // what is staged now either still exists (a staging whose change did
        // not happen) or was displaced by an outer statement whose AFTER
        // trigger has not run yet (this is an application trigger's nested
        // write, and the outer row is already written). Then a plain INSERT
        // cannot conflict — an `OR REPLACE` here would not do: a writer's
        // `INSERT OR FAIL` (or ABORT, ROLLBACK) overrides the conflict clause
        // of every statement of the triggers it fires.
        // > if an ON CONFLICT clause is specified as part of the statement
        // > causing the trigger to fire, then conflict handling policy of the
        // > outer statement is used instead.
        // Rows with a NULL key (possible in a rowid table) cannot be staged
        // (nor addressed by a log).
        //
        // The trigger runs only when some row conflicts (its WHEN: one index
        // seek per unique constraint), so a write without conflicts pays for
        // the seeks alone.
        func stage(excludingOld: Bool) -> (when: String, body: String) {
            let itself = excludingOld
                ? "NOT (" + table.keyColumns.map { "r.\(quoteIdentifier($0)) IS OLD.\(quoteIdentifier($0))" }.joined(separator: " AND ") + ") AND "
                : ""
            let notNull = table.keyColumns.map { " AND r.\(quoteIdentifier($0)) IS NOT NULL" }.joined()
            let when = displacement.lookups.map { "EXISTS (SELECT 1 FROM \(t) AS r WHERE \(itself)\($0)\(notNull))" }
                .joined(separator: " OR ")
            let condition = itself + "(" + displacement.lookups.map { "(\($0))" }.joined(separator: " OR ") + ")" + notNull
            return (when, logDisplaced + " INSERT INTO \(staged) SELECT \(columns("r").joined(separator: ",")) FROM \(t) AS r WHERE \(condition);")
        }
        let stageInsert = stage(excludingOld: false), stageUpdate = stage(excludingOld: true)
        let sameKey = table.keyColumns.map { "OLD.\(quoteIdentifier($0)) IS NEW.\(quoteIdentifier($0))" }
            .joined(separator: " AND ")
        let updateOf = table.updateColumns.map { " OF " + $0.map(quoteIdentifier).joined(separator: ",") } ?? ""
        func create(_ kind: TriggerKind, _ timing: String, _ event: String, when: String?, _ body: String) -> (name: String, sql: String) {
            let name = kind.triggerName(table.name)
            let whenClause = when.map { " WHEN \($0)" } ?? ""
            return (name, "CREATE TRIGGER \(quoteIdentifier(name)) \(timing) \(event) ON \(t) FOR EACH ROW\(whenClause) BEGIN \(body) END")
        }
        let logged = (
            insert: create(.insert, "AFTER", "INSERT", when: nil, log(op: .insert, images: [columns("r")], from: current)),
            update: create(.update, "AFTER", "UPDATE\(updateOf)", when: sameKey,
                           log(op: .update, images: [columns("OLD"), columns("r")], from: current)),
            // No `OF` list: an update through `rowid`, `oid` or `_rowid_` fires
            // no `UPDATE OF id` trigger, but fires this one.
            rekey: create(.rekey, "AFTER", "UPDATE", when: "NOT (\(sameKey))",
                          unstage + log(op: .update, images: [columns("OLD"), columns("r")], from: current)),
            delete: create(.delete, "AFTER", "DELETE", when: nil,
                           unstage + log(op: .delete, images: [columns("OLD")], from: "")))
        // Nothing to stage: the same records, one trigger per write.
        if displacement.keyOnly { return [logged.insert, logged.update, logged.rekey, logged.delete] }
        return [
            create(.stageInsert, "BEFORE", "INSERT", when: stageInsert.when, stageInsert.body),
            create(.stageUpdate, "BEFORE", "UPDATE",
                   when: "(\(displacement.changed.joined(separator: " OR "))) AND (\(stageUpdate.when))", stageUpdate.body),
            logged.insert,
            create(.displacedByInsert, "AFTER", "INSERT", when: "EXISTS (SELECT 1 FROM \(staged))", logDisplaced),
            logged.update,
            logged.rekey,
            // The row being updated is never displaced by its own update (a
            // stale staging of it is covered by this update's own record).
            create(.displaced, "AFTER", "UPDATE", when: "EXISTS (SELECT 1 FROM \(staged))",
                   unstage + logDisplaced),
            logged.delete,
        ]
    }

    /// The name of the outbox's `index`-th value column (1-based).
    static func valueColumn(_ index: Int) -> String { "v\(index)" }

    /// The number of value columns the outbox has.
    static func outboxValueColumns(_ connection: Connection) throws -> Int {
        let statement = try connection.prepare(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name GLOB 'v[0-9]*'")
        try statement.bind(outboxTable, at: 1)
        try statement.step()
        return Int(statement.columnInt64(0))
    }

    /// Adds value columns until the outbox has `count`. Adding a column
    /// rewrites nothing:
    /// > The ALTER TABLE command works by modifying the SQL text of the schema
    /// > stored in the sqlite_schema table. No changes are made to table content.
    private static func widenOutbox(_ connection: Connection, toValueColumns count: Int) throws {
        let limit = Int(sqlite3Limit(connection)) - 4
        guard count <= limit else {
            throw CaptureError(.unsupported,
                "a table with \(count / 2) columns is too wide to capture: the outbox needs twice as many columns and this SQLite allows \(limit + 4) per table")
        }
        var have = try outboxValueColumns(connection)
        while have < count {
            have += 1
            try connection.execute("ALTER TABLE \(outboxTable) ADD COLUMN \(valueColumn(have))")
        }
    }

    /// The application's triggers on `table` created after capture's.
    ///
    /// SQLite fires a table's triggers newest first (it loads them in
    /// `sqlite_schema` order and puts each at the head of the table's list).
    /// Capture's AFTER triggers must fire first: an application AFTER
    /// trigger that fires before them and stops its statement while keeping
    /// the row — `RAISE(IGNORE)`, or any error under `OR FAIL` — would leave
    /// a changed row that capture never saw. Installing recreates capture's
    /// triggers after such triggers, and ``checkShapes(connection:)`` reports
    /// them until then. Tidemark's own triggers (the guards cutover installs,
    /// which only refuse writes) do not count.
    static func newerTriggers(_ connection: Connection, table: String) throws -> [String] {
        let kinds = TriggerKind.allCases
        let names = (2...(kinds.count + 1)).map { "?\($0)" }.joined(separator: ", ")
        let statement = try connection.prepare("""
            SELECT name FROM sqlite_schema
            WHERE type = 'trigger' AND tbl_name = ?1 AND name NOT IN (\(names))
              AND name NOT LIKE '\\_tidemark\\_%' ESCAPE '\\'
              AND rowid > (SELECT min(rowid) FROM sqlite_schema WHERE type = 'trigger' AND name IN (\(names)))
            ORDER BY rowid
            """)
        try statement.bind([.text(table)] + kinds.map { .text($0.triggerName(table)) })
        return try statement.rows { $0.columnText(0) }
    }

    private static func existingStagingSQL(_ connection: Connection, table: String) throws -> String? {
        let statement = try connection.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1")
        try statement.bind(stagingTable(table), at: 1)
        return try statement.step() ? statement.columnText(0) : nil
    }

    private static func existingTriggerSQL(_ connection: Connection, table: String) throws -> [String: String] {
        let kinds = TriggerKind.allCases
        let statement = try connection.prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND name IN ("
                + (1...kinds.count).map { "?\($0)" }.joined(separator: ", ") + ")")
        try statement.bind(kinds.map { .text($0.triggerName(table)) })
        var found: [String: String] = [:]
        while try statement.step() { found[statement.columnText(0)] = statement.columnText(1) }
        return found
    }

    // MARK: Uninstall

    /// Removes the capture triggers, the outbox and the metadata tables.
    ///
    /// - Parameter force: Discard changes still waiting in the outbox.
    /// - Throws: ``CaptureError`` `unshippedChanges` while the outbox holds
    ///   changes and `force` is false; `notInstalled`.
    public static func uninstall(connection: Connection, force: Bool = false) throws {
        try connection.transaction(.immediate) {
            guard try isInstalled(connection) else {
                throw CaptureError(.notInstalled, "capture is not installed in \(connection.path)")
            }
            let status = try readStatus(connection)
            if status.backlog > 0 && !force {
                throw CaptureError(.unshippedChanges,
                    "\(status.backlog) captured changes in \(connection.path) are not shipped yet (seq \(status.oldestPending ?? .zero)…\(status.newestPending ?? .zero)); ship them with `tidemark capture run --once`, or uninstall with --force to discard them")
            }
            let names = try connection.prepare("SELECT DISTINCT tbl FROM \(tablesTable)")
                .rows { $0.columnText(0) }
            for table in names {
                for kind in TriggerKind.allCases {
                    try connection.execute("DROP TRIGGER IF EXISTS \(quoteIdentifier(kind.triggerName(table)))")
                }
                try connection.execute("DROP TABLE IF EXISTS \(quoteIdentifier(stagingTable(table)))")
            }
            try connection.execute("""
                DROP TABLE \(outboxTable);
                DROP TABLE \(tablesTable);
                DROP TABLE \(metaTable);
                """)
        }
    }

    // MARK: Status and shape checks

    /// Whether capture is installed (the outbox and metadata tables exist).
    public static func isInstalled(_ connection: Connection) throws -> Bool {
        let statement = try connection.prepare(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN (?1, ?2, ?3)")
        try statement.bind([.text(outboxTable), .text(metaTable), .text(tablesTable)])
        try statement.step()
        return statement.columnInt64(0) == 3
    }

    /// The captured tables, the outbox backlog and the capture high-water
    /// mark; nil when capture is not installed.
    public static func status(connection: Connection) throws -> CaptureStatus? {
        // One read transaction, so the numbers agree with each other.
        try connection.transaction(.deferred) {
            guard try isInstalled(connection) else { return nil }
            return try readStatus(connection)
        }
    }

    private static func readStatus(_ connection: Connection) throws -> CaptureStatus {
        let outbox = try connection.prepare("""
            SELECT count(*), min(seq), max(seq),
                   (SELECT ts FROM \(outboxTable) ORDER BY seq LIMIT 1)
            FROM \(outboxTable)
            """)
        try outbox.step()
        let backlog = Int(outbox.columnInt64(0))
        return CaptureStatus(
            sourceID: try storedSourceID(connection) ?? SourceID(""),
            tables: try currentShapes(connection).values.sorted { $0.name < $1.name },
            backlog: backlog,
            oldestPending: backlog > 0 ? LSN(UInt64(outbox.columnInt64(1))) : nil,
            newestPending: backlog > 0 ? LSN(UInt64(outbox.columnInt64(2))) : nil,
            lastCaptured: LSN(UInt64(try lastCapturedSeq(connection))),
            oldestPendingMicros: backlog > 0 ? outbox.columnInt64(3) : nil)
    }

    /// The source id stored at install, or nil when not installed.
    public static func storedSourceID(_ connection: Connection) throws -> SourceID? {
        guard try isInstalled(connection) else { return nil }
        let statement = try connection.prepare("SELECT value FROM \(metaTable) WHERE name = 'source_id'")
        return try statement.step() ? SourceID(statement.columnText(0)) : nil
    }

    /// Where this installation's `seq`s start (the first is one more), and
    /// when it was installed (µs since the epoch, on the triggers' clock);
    /// nil values for an installation made before these were recorded.
    public static func installation(_ connection: Connection) throws -> (firstSeq: Int64, installedAtMicros: Int64?)? {
        guard try isInstalled(connection) else { return nil }
        let statement = try connection.prepare("""
            SELECT (SELECT value FROM \(metaTable) WHERE name = 'first_seq'),
                   (SELECT value FROM \(metaTable) WHERE name = 'installed_at_micros')
            """)
        try statement.step()
        let firstSeq = statement.columnIsNull(0) ? 0 : Int64(statement.columnText(0)) ?? 0
        let installedAt = statement.columnIsNull(1) ? nil : Int64(statement.columnText(1))
        return (firstSeq, installedAt)
    }

    /// The highest `seq` ever assigned (0 before the first change).
    /// > SQLite keeps track of the largest ROWID that a table has ever held
    /// > using an internal table named "sqlite_sequence".
    public static func lastCapturedSeq(_ connection: Connection) throws -> Int64 {
        let exists = try connection.prepare(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('sqlite_sequence', ?1)")
        try exists.bind(outboxTable, at: 1)
        try exists.step()
        guard exists.columnInt64(0) == 2 else { return 0 }
        // The counter can lag the outbox: SQLite writes it back only when a
        // statement ends, so rows a statement stopped under `OR FAIL` kept
        // are above it until the shipper raises it (see
        // ``raiseSequence(_:toAtLeast:)``). The highest seq is the larger of
        // the two (`max(seq)` of an INTEGER PRIMARY KEY is one seek).
        let statement = try connection.cachedStatement("""
            SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0),
                       coalesce((SELECT max(seq) FROM \(outboxTable)), 0))
            """)
        // A cached statement left on a row would keep its read transaction
        // (and its snapshot) open; rewind it before returning.
        defer { statement.reset() }
        try statement.bind(outboxTable, at: 1)
        return try statement.step() ? statement.columnInt64(0) : 0
    }

    /// Raises the outbox's AUTOINCREMENT counter to at least `seq`, inside
    /// the caller's write transaction.
    /// > The content of the SQLITE_SEQUENCE table can be modified using
    /// > ordinary UPDATE, INSERT, and DELETE statements.
    static func raiseSequence(_ connection: Connection, toAtLeast seq: Int64) throws {
        let update = try connection.cachedStatement(
            "UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1 AND seq < ?2")
        try update.bind([.text(outboxTable), .integer(seq)])
        try update.execute()
        let insert = try connection.cachedStatement("""
            INSERT INTO sqlite_sequence(name, seq) SELECT ?1, ?2
            WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)
            """)
        try insert.bind([.text(outboxTable), .integer(seq)])
        try insert.execute()
    }

    /// Every recorded shape, oldest first per table.
    public static func shapes(_ connection: Connection) throws -> [CapturedTable] {
        let statement = try connection.prepare(
            "SELECT tbl, from_seq, columns, key_columns, update_columns FROM \(tablesTable) ORDER BY tbl, from_seq")
        return try statement.rows { row in
            let name = row.columnText(0)
            func names(_ index: Int32) throws -> [String] {
                try QuotedValue.parseList(row.columnText(index)).map { value in
                    guard case .text(let name) = value else {
                        throw CaptureError(.badOutboxRow, "the recorded columns of '\(name)' are damaged", table: name)
                    }
                    return name
                }
            }
            return CapturedTable(
                name: name,
                columns: try names(2),
                keyColumns: try names(3),
                updateColumns: row.columnIsNull(4) ? nil : try names(4),
                fromSeq: row.columnInt64(1))
        }
    }

    /// The newest shape of each captured table.
    static func currentShapes(_ connection: Connection) throws -> [String: CapturedTable] {
        var current: [String: CapturedTable] = [:]
        for shape in try shapes(connection) { current[shape.name] = shape }
        return current
    }

    /// Checks that every captured table still has the columns, key and
    /// triggers it was captured with, so that no change is shipped with
    /// missing columns and none goes unrecorded.
    ///
    /// - Throws: ``CaptureError`` `shapeChanged` naming the first table that
    ///   differs and what to run; `notInstalled`.
    public static func checkShapes(connection: Connection) throws {
        guard try isInstalled(connection) else {
            throw CaptureError(.notInstalled, "capture is not installed in \(connection.path); run `tidemark capture install` first")
        }
        for shape in try currentShapes(connection).values.sorted(by: { $0.name < $1.name }) {
            let advice = "review the migration plan, then run `tidemark capture install` again"
            guard let info = try Schema.table(named: shape.name, in: connection), info.name == shape.name else {
                throw CaptureError(.shapeChanged,
                    "captured table '\(shape.name)' no longer exists in \(connection.path) (dropped or renamed); \(advice)",
                    table: shape.name)
            }
            let columns = info.dataColumns.map(\.name)
            if columns != shape.columns || info.primaryKey != shape.keyColumns {
                throw CaptureError(.shapeChanged,
                    "captured table '\(shape.name)' changed shape: columns are now (\(columns.joined(separator: ", "))) with key (\(info.primaryKey.joined(separator: ", "))), captured as (\(shape.columns.joined(separator: ", "))) with key (\(shape.keyColumns.joined(separator: ", "))); \(advice)",
                    table: shape.name)
            }
            let existing = try existingTriggerSQL(connection, table: shape.name)
            // The triggers depend on the table's UNIQUE indexes too: one
            // created after capture would let a REPLACE displace rows that
            // the installed triggers do not look for.
            var displacement = try displacement(for: shape, info: info, connection: connection)
            // A table whose key is its only unique constraint was installed
            // with staging triggers before they were found unneeded; those
            // still capture every change exactly, so they are accepted until
            // `capture install` regenerates them.
            if displacement.keyOnly {
                var staged = displacement
                staged.keyOnly = false
                if triggerSQL(for: shape, displacement: staged).allSatisfy({ existing[$0.name] == $0.sql }) { displacement = staged }
            }
            let expected = triggerSQL(for: shape, displacement: displacement)
            for trigger in expected where existing[trigger.name] != trigger.sql {
                throw CaptureError(.shapeChanged,
                    "capture trigger \(trigger.name) of table '\(shape.name)' is missing or out of date (the table's UNIQUE indexes or the capture format changed); \(advice)",
                    table: shape.name)
            }
            // Triggers of capture's names beyond the expected ones would log
            // twice or stage into a table that is gone.
            if let stray = existing.keys.sorted().first(where: { name in !expected.contains { $0.name == name } }) {
                throw CaptureError(.shapeChanged,
                    "capture trigger \(stray) of table '\(shape.name)' is out of date (the table's UNIQUE indexes or the capture format changed); \(advice)",
                    table: shape.name)
            }
            if let newer = try newerTriggers(connection, table: shape.name).first {
                throw CaptureError(.shapeChanged,
                    "trigger '\(newer)' on captured table '\(shape.name)' was created after capture's triggers, so it fires before them: if it ever ends its statement early (RAISE(IGNORE), or an error under OR FAIL) a change could go uncaptured; run `tidemark capture install` again to put capture's triggers first",
                    table: shape.name)
            }
            guard try existingStagingSQL(connection, table: shape.name) == displacement.stagingSQL else {
                throw CaptureError(.shapeChanged,
                    "capture staging table \(stagingTable(shape.name)) of table '\(shape.name)' is missing or was altered; \(advice)",
                    table: shape.name)
            }
        }
    }

    /// Deletes shapes that no outbox row needs any more: a shape is needed
    /// while some row of its table has `seq` at or below the next shape's
    /// `from_seq`.
    static func pruneShapes(_ connection: Connection) throws {
        try connection.execute("""
            DELETE FROM \(tablesTable) AS old
            WHERE EXISTS (
              SELECT 1 FROM \(tablesTable) AS newer
              WHERE newer.tbl = old.tbl AND newer.from_seq > old.from_seq
                AND NOT EXISTS (
                  SELECT 1 FROM \(outboxTable) AS o WHERE o.tbl = old.tbl AND o.seq <= newer.from_seq))
            """)
    }

    /// `'a','b'`: a name list in the ``QuotedValue`` grammar.
    static func nameList(_ names: [String]) -> String {
        names.map { QuotedValue.literal(.text($0)) }.joined(separator: ",")
    }
}

/// The most columns a table may have in this SQLite build.
private func sqlite3Limit(_ connection: Connection) -> Int32 {
    guard let db = try? connection.handle() else { return 2000 }
    return sqlite3_limit(db, SQLITE_LIMIT_COLUMN, -1)
}

extension CapturedTable {
    /// Same columns, key and update columns (the `fromSeq` aside).
    func sameShape(as other: CapturedTable) -> Bool {
        name == other.name && columns == other.columns && keyColumns == other.keyColumns
            && updateColumns == other.updateColumns
    }
}
