import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

/// A change without its LSN and time, for comparing with what a writer did.
struct Change: Hashable, CustomStringConvertible {
    var table: String
    var op: ChangeOperation
    var key: [Value]
    /// The old key of an update that changed the key (one record).
    var oldKey: [Value]?
    var before: [Value]?
    var after: [Value]?

    init(_ table: String, _ op: ChangeOperation, key: [Value], oldKey: [Value]? = nil, before: [Value]? = nil, after: [Value]? = nil) {
        self.table = table
        self.op = op
        self.key = key
        self.oldKey = oldKey
        self.before = before
        self.after = after
    }

    init(_ record: ChangeRecord) {
        self.init(record.table, record.operation, key: record.key.map(\.value),
                  oldKey: record.isKeyChange ? record.beforeKey?.map(\.value) : nil,
                  before: record.before?.map(\.value), after: record.after?.map(\.value))
    }

    var description: String {
        "\(op) \(table) \(oldKey.map { "\($0)→" } ?? "")\(key) before: \(before.map { "\($0)" } ?? "-") after: \(after.map { "\($0)" } ?? "-")"
    }
}

/// Every outbox row, decoded, checking that LSNs strictly increase.
func capturedRecords(_ db: Connection) throws -> [ChangeRecord] {
    let records = try OutboxDecoder(connection: db).read(from: db, after: .zero, limit: .max)
    for (a, b) in zip(records, records.dropFirst()) {
        #expect(a.lsn < b.lsn, "LSNs must strictly increase")
    }
    return records
}

func capturedChanges(_ db: Connection) throws -> [Change] {
    try capturedRecords(db).map(Change.init)
}

/// The rows of `table` keyed by primary key, as the source has them now.
func tableRows(_ db: Connection, _ table: String) throws -> [[Value]: [Value]] {
    let info = try #require(try Schema.table(named: table, in: db))
    let columns = info.dataColumns.map(\.name)
    let keyIndexes = info.primaryKey.compactMap { columns.firstIndex(of: $0) }
    var rows: [[Value]: [Value]] = [:]
    for row in try db.values("SELECT \(columns.map(quoteIdentifier).joined(separator: ", ")) FROM \(quoteIdentifier(table))") {
        rows[keyIndexes.map { row[$0] }] = row
    }
    return rows
}

/// Applies changes to an empty model, as a replayer would, checking that each
/// update and delete finds its row.
func replay(_ changes: [Change], table: String) -> [[Value]: [Value]] {
    var rows: [[Value]: [Value]] = [:]
    for change in changes where change.table == table {
        switch change.op {
        case .insert: rows[change.key] = change.after
        case .update:
            let old = change.oldKey ?? change.key
            #expect(rows[old] == change.before, "update of \(old) must find its before image")
            rows[old] = nil
            rows[change.key] = change.after
        case .delete:
            #expect(rows[change.key] == change.before, "delete of \(change.key) must find its before image")
            rows[change.key] = nil
        }
    }
    return rows
}

/// A database whose schema is `schema`, with capture installed on all tables.
func withCapturedDatabase<R>(
    _ schema: String, updateColumns: [String: [String]] = [:], _ body: (Connection, String) throws -> R
) throws -> R {
    try withTemporaryDatabase { db, path in
        try db.execute(schema)
        try Capture.install(connection: db, updateColumns: updateColumns, sourceID: "test-source")
        return try body(db, path)
    }
}

/// The schema objects and journal mode, to show that a refused install changed nothing.
func schemaSnapshot(_ db: Connection) throws -> [[Value]] {
    try db.values("SELECT type, name, sql FROM sqlite_schema ORDER BY name") + [[.text(try db.journalMode().rawValue)]]
}

@Suite("Capture")
struct CaptureTests {
    @Test("install creates the outbox, metadata and triggers, switches to WAL, and is idempotent")
    func install() throws {
        try withTemporaryDatabase { db, path in
            try db.execute("CREATE TABLE a(id INTEGER PRIMARY KEY, x); CREATE TABLE \"b c\"(k TEXT PRIMARY KEY, y) WITHOUT ROWID")
            let report = try Capture.install(connection: db, sourceID: "src-1")
            #expect(report.installed == ["a", "b c"])
            #expect(report.createdOutbox)
            #expect(try db.journalMode() == .wal)
            #expect(try Capture.isInstalled(db))
            #expect(try Capture.storedSourceID(db) == SourceID("src-1"))
            let triggers = try db.values("SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name")
            // Insert, update, rekey and delete per table: neither table has a
            // UNIQUE constraint besides its key, so nothing is staged.
            #expect(triggers.count == 8)
            let status = try #require(try Capture.status(connection: db))
            #expect(status.tables.map(\.name) == ["a", "b c"])
            #expect(status.tables[0].columns == ["id", "x"])
            #expect(status.tables[1].keyColumns == ["k"])
            #expect(status.backlog == 0)

            let before = try schemaSnapshot(db)
            let again = try Capture.install(connection: db, sourceID: "src-1")
            #expect(again.installed == [])
            #expect(again.unchanged == ["a", "b c"])
            #expect(!again.createdOutbox)
            #expect(try schemaSnapshot(db) == before)
            try Capture.checkShapes(connection: db)

            // Another connection (another process would be the same) sees WAL.
            #expect(try Connection(path: path).journalMode() == .wal)
        }
    }

    @Test("bad input is refused with one clear error and changes nothing", arguments: [
        (["missing"], CaptureError.Code.missingTable, "table 'missing' does not exist"),
        (["nokey"], .noPrimaryKey, "table 'nokey' has no PRIMARY KEY"),
        (["v"], .notATable, "is a view"),
        (["ok", "nokey"], .noPrimaryKey, "has no PRIMARY KEY"),
        (["_tidemark_outbox"], .notATable, "internal table"),
    ])
    func refused(tables: [String], code: CaptureError.Code, message: String) throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("""
                CREATE TABLE ok(id INTEGER PRIMARY KEY, x);
                CREATE TABLE nokey(a, b);
                CREATE VIEW v AS SELECT * FROM ok;
                """)
            let before = try schemaSnapshot(db)
            let error = try #require(throws: CaptureError.self) {
                try Capture.install(connection: db, tables: tables, sourceID: "s")
            }
            #expect(error.code == code)
            #expect(error.description.contains(message), "\(error)")
            #expect(try schemaSnapshot(db) == before)
        }
    }

    @Test("a bad update-column list is refused")
    func badUpdateColumns() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a, g GENERATED ALWAYS AS (a + 1))")
            let before = try schemaSnapshot(db)
            for columns in [["nope"], ["g"], []] {
                let error = try #require(throws: CaptureError.self) {
                    try Capture.install(connection: db, tables: ["t"], updateColumns: ["t": columns], sourceID: "s")
                }
                #expect(error.code == .badColumn)
            }
            let other = try #require(throws: CaptureError.self) {
                try Capture.install(connection: db, tables: ["t"], updateColumns: ["u": ["a"]], sourceID: "s")
            }
            #expect(other.code == .missingTable)
            #expect(try schemaSnapshot(db) == before)
        }
    }

    @Test("a database captured for another source is refused")
    func foreignSource() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY)") { db, _ in
            let before = try schemaSnapshot(db)
            let error = try #require(throws: CaptureError.self) {
                try Capture.install(connection: db, sourceID: "someone-else")
            }
            #expect(error.code == .foreignSource)
            #expect(error.description.contains("test-source"))
            #expect(try schemaSnapshot(db) == before)
        }
    }

    @Test("the sqlite3 shell's inserts, updates, key changes, deletes, upserts and rollbacks are captured exactly")
    func sqliteShellWriter() throws {
        try withCapturedDatabase("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB, note)") { db, path in
            try sqlite3CLI(path, """
                INSERT INTO items VALUES (1, 'apple', 0.1, x'00ff', NULL);
                INSERT INTO items VALUES (2, 'it''s', 1e308, x'', 'n'), (3, NULL, -0.0, NULL, 5);
                UPDATE items SET price = NULL WHERE id = 1;
                UPDATE items SET name = 'pear' WHERE id = 3;
                UPDATE items SET id = 10 WHERE id = 2;
                BEGIN; INSERT INTO items VALUES (4, 'ghost', 1, NULL, NULL); UPDATE items SET note = 'lost'; ROLLBACK;
                DELETE FROM items WHERE id = 1;
                INSERT INTO items VALUES (3, 'x', 2, NULL, NULL) ON CONFLICT(id) DO UPDATE SET name = excluded.name;
                INSERT INTO items VALUES (5, 'y', 2.5, NULL, NULL) ON CONFLICT(id) DO UPDATE SET name = excluded.name;
                UPDATE items SET price = price * 2 WHERE id IN (3, 5);
                UPDATE items SET note = -0.0 WHERE id = 10;
                """)
            let apple: [Value] = [.integer(1), .text("apple"), .real(0.1), .blob([0, 255]), .null]
            let apple2: [Value] = [.integer(1), .text("apple"), .null, .blob([0, 255]), .null]
            let its: [Value] = [.integer(2), .text("it's"), .real(1e308), .blob([]), .text("n")]
            let its10: [Value] = [.integer(10), .text("it's"), .real(1e308), .blob([]), .text("n")]
            // -0.0 in a REAL column is stored (and so captured) as 0.0; in the
            // untyped `note` column it stays -0.0, and so does its capture.
            let three: [Value] = [.integer(3), .null, .real(0.0), .null, .integer(5)]
            let pear: [Value] = [.integer(3), .text("pear"), .real(0.0), .null, .integer(5)]
            let x: [Value] = [.integer(3), .text("x"), .real(0.0), .null, .integer(5)]
            let y: [Value] = [.integer(5), .text("y"), .real(2.5), .null, .null]
            let expected: [Change] = [
                Change("items", .insert, key: [.integer(1)], after: apple),
                Change("items", .insert, key: [.integer(2)], after: its),
                Change("items", .insert, key: [.integer(3)], after: three),
                Change("items", .update, key: [.integer(1)], before: apple, after: apple2),
                Change("items", .update, key: [.integer(3)], before: three, after: pear),
                Change("items", .update, key: [.integer(10)], oldKey: [.integer(2)], before: its, after: its10),
                Change("items", .delete, key: [.integer(1)], before: apple2),
                Change("items", .update, key: [.integer(3)], before: pear, after: x),
                Change("items", .insert, key: [.integer(5)], after: y),
                Change("items", .update, key: [.integer(3)], before: x,
                       after: [.integer(3), .text("x"), .real(0.0), .null, .integer(5)]),
                Change("items", .update, key: [.integer(5)], before: y,
                       after: [.integer(5), .text("y"), .real(5.0), .null, .null]),
                Change("items", .update, key: [.integer(10)], before: its10,
                       after: [.integer(10), .text("it's"), .real(1e308), .blob([]), .real(-0.0)]),
            ]
            let records = try capturedRecords(db)
            let changes = records.map(Change.init)
            #expect(changes == expected)
            #expect(replay(changes, table: "items") == (try tableRows(db, "items")))
            // Field names follow the recorded column order.
            #expect(records.first?.after?.map(\.name) == ["id", "name", "price", "data", "note"])
            #expect(records.first?.key.map(\.name) == ["id"])
            // The key change is one record: the old key in the before image.
            #expect(records[5].isKeyChange && records[5].beforeKey?.map(\.value) == [.integer(2)])
            // Times are this run's, in microseconds, at millisecond resolution.
            let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
            for record in records {
                #expect(abs(record.timestampMicros - now) < 60_000_000)
                #expect(record.timestampMicros % 1000 == 0)
            }
        }
    }

    static let pythonWriter = #"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN")
db.execute("INSERT INTO pairs VALUES (?, ?, ?, ?)", ("eu", 1, b"\x00\x01\x02", 0.1))
db.execute("INSERT INTO pairs VALUES (?, ?, ?, ?)", ("eu", 2, None, 1e308))
db.execute("INSERT INTO pairs VALUES (?, ?, ?, ?)", ("us", 1, b"", -1e-308))
db.execute("COMMIT")
db.execute("UPDATE pairs SET payload = NULL WHERE region = 'eu' AND n = 1")
db.execute("UPDATE pairs SET payload = ? WHERE region = 'eu' AND n = 2", (b"\xff" * 3,))
db.execute("UPDATE pairs SET n = n + 10 WHERE region = 'eu'")
db.execute("BEGIN")
db.execute("DELETE FROM pairs")
db.execute("ROLLBACK")
db.execute("DELETE FROM pairs WHERE region = 'us'")
db.executemany("INSERT INTO codes VALUES (?, ?)", [("a'b", "x"), ("é", None), ("nul\x00in", "z")])
db.execute("UPDATE codes SET code = 'renamed' WHERE code = 'a''b'")
db.execute("UPDATE codes SET label = 'now' WHERE label IS NULL")
db.execute("INSERT INTO codes VALUES ('é', 'up') ON CONFLICT(code) DO UPDATE SET label = excluded.label || '!'")
"""#

    @Test("Python's sqlite3 module: composite and text keys, WITHOUT ROWID, blobs, NULLs, doubles")
    func pythonWriter() throws {
        let schema = """
            CREATE TABLE pairs(region TEXT, n INTEGER, payload BLOB, ratio REAL, PRIMARY KEY (region, n));
            CREATE TABLE codes(code TEXT PRIMARY KEY, label) WITHOUT ROWID;
            """
        try withCapturedDatabase(schema) { db, path in
            try python(path, Self.pythonWriter)
            let eu1: [Value] = [.text("eu"), .integer(1), .blob([0, 1, 2]), .real(0.1)]
            let eu1b: [Value] = [.text("eu"), .integer(1), .null, .real(0.1)]
            let eu2: [Value] = [.text("eu"), .integer(2), .null, .real(1e308)]
            let eu2b: [Value] = [.text("eu"), .integer(2), .blob([255, 255, 255]), .real(1e308)]
            let us1: [Value] = [.text("us"), .integer(1), .blob([]), .real(-1e-308)]
            let eu11: [Value] = [.text("eu"), .integer(11), .null, .real(0.1)]
            let eu12: [Value] = [.text("eu"), .integer(12), .blob([255, 255, 255]), .real(1e308)]
            let expected: [Change] = [
                Change("pairs", .insert, key: [.text("eu"), .integer(1)], after: eu1),
                Change("pairs", .insert, key: [.text("eu"), .integer(2)], after: eu2),
                Change("pairs", .insert, key: [.text("us"), .integer(1)], after: us1),
                Change("pairs", .update, key: [.text("eu"), .integer(1)], before: eu1, after: eu1b),
                Change("pairs", .update, key: [.text("eu"), .integer(2)], before: eu2, after: eu2b),
                Change("pairs", .update, key: [.text("eu"), .integer(11)], oldKey: [.text("eu"), .integer(1)], before: eu1b, after: eu11),
                Change("pairs", .update, key: [.text("eu"), .integer(12)], oldKey: [.text("eu"), .integer(2)], before: eu2b, after: eu12),
                Change("pairs", .delete, key: [.text("us"), .integer(1)], before: us1),
                Change("codes", .insert, key: [.text("a'b")], after: [.text("a'b"), .text("x")]),
                Change("codes", .insert, key: [.text("é")], after: [.text("é"), .null]),
                Change("codes", .insert, key: [.text("nul\u{0}in")], after: [.text("nul\u{0}in"), .text("z")]),
                Change("codes", .update, key: [.text("renamed")], oldKey: [.text("a'b")], before: [.text("a'b"), .text("x")], after: [.text("renamed"), .text("x")]),
                Change("codes", .update, key: [.text("é")], before: [.text("é"), .null], after: [.text("é"), .text("now")]),
                Change("codes", .update, key: [.text("é")], before: [.text("é"), .text("now")], after: [.text("é"), .text("up!")]),
            ]
            let changes = try capturedChanges(db)
            #expect(changes == expected)
            for table in ["pairs", "codes"] {
                #expect(replay(changes, table: table) == (try tableRows(db, table)))
            }
        }
    }

    static func replaceScript(recursiveTriggers: Bool) -> String {
        """
        PRAGMA recursive_triggers = \(recursiveTriggers ? "ON" : "OFF");
        INSERT INTO users VALUES (1, 'a@x', 1), (2, 'b@x', 2);
        INSERT OR REPLACE INTO users VALUES (3, 'a@x', 3);
        REPLACE INTO users VALUES (2, 'b@x', 22);
        """
    }

    @Test("INSERT OR REPLACE with recursive_triggers on: displaced rows are deletes")
    func replaceRecursiveOn() throws {
        try withCapturedDatabase("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n)") { db, path in
            try sqlite3CLI(path, Self.replaceScript(recursiveTriggers: true))
            let changes = try capturedChanges(db)
            #expect(changes == [
                Change("users", .insert, key: [.integer(1)], after: [.integer(1), .text("a@x"), .integer(1)]),
                Change("users", .insert, key: [.integer(2)], after: [.integer(2), .text("b@x"), .integer(2)]),
                Change("users", .delete, key: [.integer(1)], before: [.integer(1), .text("a@x"), .integer(1)]),
                Change("users", .insert, key: [.integer(3)], after: [.integer(3), .text("a@x"), .integer(3)]),
                Change("users", .delete, key: [.integer(2)], before: [.integer(2), .text("b@x"), .integer(2)]),
                Change("users", .insert, key: [.integer(2)], after: [.integer(2), .text("b@x"), .integer(22)]),
            ])
            #expect(replay(changes, table: "users") == (try tableRows(db, "users")))
        }
    }

    @Test("INSERT OR REPLACE with recursive_triggers off: displaced rows are still deletes, once")
    func replaceRecursiveOff() throws {
        try withCapturedDatabase("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n)") { db, path in
            try sqlite3CLI(path, Self.replaceScript(recursiveTriggers: false))
            let changes = try capturedChanges(db)
            // The row displaced through the email index is a delete; the one
            // displaced by its own key is replaced by the insert of that key.
            #expect(changes == [
                Change("users", .insert, key: [.integer(1)], after: [.integer(1), .text("a@x"), .integer(1)]),
                Change("users", .insert, key: [.integer(2)], after: [.integer(2), .text("b@x"), .integer(2)]),
                Change("users", .delete, key: [.integer(1)], before: [.integer(1), .text("a@x"), .integer(1)]),
                Change("users", .insert, key: [.integer(3)], after: [.integer(3), .text("a@x"), .integer(3)]),
                Change("users", .insert, key: [.integer(2)], after: [.integer(2), .text("b@x"), .integer(22)]),
            ])
            var model: [[Value]: [Value]] = [:]
            for change in changes { model[change.key] = change.after }
            #expect(model == (try tableRows(db, "users")))
        }
    }

    @Test("update columns limit update capture; key changes are still captured")
    func updateOf() throws {
        try withCapturedDatabase(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b)", updateColumns: ["t": ["A"]]
        ) { db, path in
            #expect(try Capture.status(connection: db)?.tables.first?.updateColumns == ["a"])
            try sqlite3CLI(path, """
                INSERT INTO t VALUES (1, 'a', 'b');
                UPDATE t SET b = 'not captured';
                UPDATE t SET a = 'captured';
                UPDATE t SET id = 2;
                """)
            #expect(try capturedChanges(db) == [
                Change("t", .insert, key: [.integer(1)], after: [.integer(1), .text("a"), .text("b")]),
                Change("t", .update, key: [.integer(1)],
                       before: [.integer(1), .text("a"), .text("not captured")],
                       after: [.integer(1), .text("captured"), .text("not captured")]),
                Change("t", .update, key: [.integer(2)], oldKey: [.integer(1)],
                       before: [.integer(1), .text("captured"), .text("not captured")],
                       after: [.integer(2), .text("captured"), .text("not captured")]),
            ])
        }
    }

    @Test("generated columns are left out of the images")
    func generatedColumns() throws {
        try withCapturedDatabase(
            "CREATE TABLE g(id INTEGER PRIMARY KEY, p REAL, q INTEGER, total REAL GENERATED ALWAYS AS (p * q) STORED)"
        ) { db, path in
            try sqlite3CLI(path, "INSERT INTO g(id, p, q) VALUES (1, 0.5, 4); UPDATE g SET q = 6;")
            #expect(try capturedChanges(db) == [
                Change("g", .insert, key: [.integer(1)], after: [.integer(1), .real(0.5), .integer(4)]),
                Change("g", .update, key: [.integer(1)], before: [.integer(1), .real(0.5), .integer(4)],
                       after: [.integer(1), .real(0.5), .integer(6)]),
            ])
        }
    }

    @Test("one read of rows of two tables, interleaved across a shape change, decodes each row with its own shape")
    func interleavedTablesAndShapes() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a); CREATE TABLE u(k TEXT PRIMARY KEY, v)") { db, path in
            try sqlite3CLI(path, "INSERT INTO t VALUES (1, 'one'); INSERT INTO u VALUES ('x', 1); INSERT INTO t VALUES (2, 'two');")
            try sqlite3CLI(path, "ALTER TABLE t ADD COLUMN b DEFAULT 'dflt';")
            try Capture.install(connection: db, sourceID: "test-source")
            try sqlite3CLI(path, "INSERT INTO u VALUES ('y', 2); INSERT INTO t VALUES (3, 'three', 'c'); UPDATE u SET v = 3 WHERE k = 'x'; INSERT INTO t VALUES (4, 'four', 'd');")
            #expect(try capturedChanges(db).map { [.text($0.table)] + ($0.after ?? []) } == [
                [.text("t"), .integer(1), .text("one")], [.text("u"), .text("x"), .integer(1)],
                [.text("t"), .integer(2), .text("two")], [.text("u"), .text("y"), .integer(2)],
                [.text("t"), .integer(3), .text("three"), .text("c")], [.text("u"), .text("x"), .integer(3)],
                [.text("t"), .integer(4), .text("four"), .text("d")],
            ])
            // The same rows, each decoded on its own (no lookup shared between rows).
            let decoder = try OutboxDecoder(connection: db)
            let one = try db.prepare("SELECT \(decoder.selectColumns) FROM _tidemark_outbox ORDER BY seq")
            var each: [ChangeRecord] = []
            try one.forEachRow { each.append(try decoder.decode($0)) }
            #expect(each == (try capturedRecords(db)))
        }
    }

    @Test("a shape change is detected; reinstalling records the new shape and old rows keep the old one")
    func shapeChange() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, path in
            try sqlite3CLI(path, "INSERT INTO t VALUES (1, 'one'); ALTER TABLE t ADD COLUMN b DEFAULT 'dflt'; INSERT INTO t VALUES (2, 'two', 'bee');")
            let error = try #require(throws: CaptureError.self) { try Capture.checkShapes(connection: db) }
            #expect(error.code == .shapeChanged)
            #expect(error.table == "t")
            #expect(error.description.contains("'t'"))
            #expect(error.description.contains("tidemark capture install"))
            // Rows written so far are still decodable, with the columns they have.
            #expect(try capturedChanges(db).map(\.after) == [[.integer(1), .text("one")], [.integer(2), .text("two")]])

            let report = try Capture.install(connection: db, sourceID: "test-source")
            #expect(report.installed == ["t"])
            try Capture.checkShapes(connection: db)
            try sqlite3CLI(path, "INSERT INTO t VALUES (3, 'three', 'c');")
            #expect(try capturedChanges(db).map(\.after) == [
                [.integer(1), .text("one")], [.integer(2), .text("two")],
                [.integer(3), .text("three"), .text("c")],
            ])
            #expect(try Capture.shapes(db).count == 2)
            // Once the old rows are gone, the old shape is pruned at the next install.
            try db.execute("DELETE FROM _tidemark_outbox WHERE seq <= 2")
            try Capture.install(connection: db, sourceID: "test-source")
            #expect(try Capture.shapes(db).map(\.columns) == [["id", "a", "b"]])
        }
    }

    @Test("a dropped trigger or table is detected")
    func droppedTrigger() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a); CREATE TABLE u(id INTEGER PRIMARY KEY)") { db, _ in
            try db.execute("DROP TRIGGER \"_tidemark_t_delete\"")
            let error = try #require(throws: CaptureError.self) { try Capture.checkShapes(connection: db) }
            #expect(error.code == .shapeChanged)
            #expect(error.description.contains("_tidemark_t_delete"))
            try Capture.install(connection: db, sourceID: "test-source")
            try Capture.checkShapes(connection: db)
            try db.execute("DROP TABLE u")
            let dropped = try #require(throws: CaptureError.self) { try Capture.checkShapes(connection: db) }
            #expect(dropped.description.contains("'u' no longer exists"))
        }
    }

    @Test("status reports backlog, high-water mark and lag")
    func status() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, path in
            try sqlite3CLI(path, "INSERT INTO t VALUES (1, 'x'), (2, 'y'); DELETE FROM t WHERE id = 1;")
            let status = try #require(try Capture.status(connection: db))
            #expect(status.sourceID == SourceID("test-source"))
            #expect(status.backlog == 3)
            #expect(status.oldestPending == LSN(1))
            #expect(status.newestPending == LSN(3))
            #expect(status.lastCaptured == LSN(3))
            let oldest = try #require(status.oldestPendingMicros)
            #expect(status.lagMillis(nowMicros: oldest + 2_500_000) == 2500)
            try db.execute("DELETE FROM _tidemark_outbox")
            let drained = try #require(try Capture.status(connection: db))
            #expect(drained.backlog == 0)
            #expect(drained.lastCaptured == LSN(3))
            #expect(drained.lagMillis(nowMicros: 0) == 0)
        }
    }

    @Test("uninstall refuses while changes are unshipped, unless forced")
    func uninstall() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, path in
            try sqlite3CLI(path, "INSERT INTO t VALUES (1, 'x');")
            let before = try schemaSnapshot(db)
            let error = try #require(throws: CaptureError.self) { try Capture.uninstall(connection: db) }
            #expect(error.code == .unshippedChanges)
            #expect(error.description.contains("1 captured changes"))
            #expect(try schemaSnapshot(db) == before)
            try Capture.uninstall(connection: db, force: true)
            #expect(try !Capture.isInstalled(db))
            #expect(try db.values("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_tidemark\\_%' ESCAPE '\\'") == [[.integer(0)]])
            #expect(try Capture.status(connection: db) == nil)
            try sqlite3CLI(path, "INSERT INTO t VALUES (2, 'y');")
            let notInstalled = try #require(throws: CaptureError.self) { try Capture.uninstall(connection: db) }
            #expect(notInstalled.code == .notInstalled)
        }
    }

    @Test("an empty outbox uninstalls without force")
    func uninstallEmpty() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, _ in
            try Capture.uninstall(connection: db)
            #expect(try !Capture.isInstalled(db))
        }
    }

    @Test("a damaged outbox row is an error naming its seq, never skipped", arguments: [
        ("'t'", 9, "1, 'x'", "unknown operation 9"),
        ("'other'", 1, "1, 'x'", "no captured shape"),
        ("'t'", 1, "1, CAST(x'C328' AS TEXT)", "not valid UTF-8"),
    ])
    func damagedRow(table: String, op: Int, values: String, reason: String) throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, _ in
            try db.execute("INSERT INTO _tidemark_outbox(ts, tbl, op, v1, v2) VALUES (0, \(table), \(op), \(values))")
            let error = try #require(throws: CaptureError.self) { try capturedRecords(db) }
            #expect(error.code == .badOutboxRow)
            #expect(error.description.contains("outbox row 1"))
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test("the outbox widens for a wider table, and values keep their exact class and bits")
    func widening() throws {
        try withCapturedDatabase("CREATE TABLE narrow(id INTEGER PRIMARY KEY)") { db, path in
            #expect(try Capture.outboxValueColumns(db) == 2)
            try db.execute("CREATE TABLE wide(id TEXT PRIMARY KEY, r REAL, n NUMERIC, i INTEGER, t TEXT, b BLOB, u)")
            try Capture.install(connection: db, sourceID: "test-source")
            #expect(try Capture.outboxValueColumns(db) == 14)
            try python(path, #"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
rows = [("a", -0.0, -0.0, -0.0, -0.0, -0.0, -0.0),
        ("b", 3, "3.0", "7", 2.5, "x\x00y", b"\x00"),
        ("c", 1e308, 1e20, 1.5, 1, b"", "t\x00")]
for r in rows: db.execute("INSERT INTO wide VALUES (?, ?, ?, ?, ?, ?, ?)", r)
db.execute("INSERT INTO narrow VALUES (1)")
db.execute("UPDATE wide SET u = r, r = u")
"""#)
            let changes = try capturedChanges(db)
            #expect(changes.count == 7)
            // Every after image equals what a reader of the table gets now or got then.
            let rows = try tableRows(db, "wide")
            for change in changes where change.table == "wide" && change.op == .update {
                #expect(change.after == rows[change.key])
            }
            #expect(replay(changes, table: "wide") == rows)
            // Spot checks of affinity: REAL turns -0.0 into 0.0 and 3 into 3.0;
            // an untyped column keeps -0.0 and text with a NUL.
            let inserted = changes.filter { $0.op == .insert && $0.table == "wide" }.map { $0.after! }
            #expect(inserted[0][1] == .real(0.0))
            #expect(inserted[0][6] == .real(-0.0))
            #expect(inserted[1][1] == .real(3.0))
            #expect(inserted[1][5] == .text("x\u{0}y"))
            #expect(inserted[2][6] == .text("t\u{0}"))
        }
    }

    @Test("odd table and column names are quoted everywhere")
    func oddNames() throws {
        let schema = #"CREATE TABLE "it's a ""table"", ok" ("key;1" TEXT, "select" INTEGER, "v,w" BLOB, PRIMARY KEY ("key;1", "select")) WITHOUT ROWID"#
        try withCapturedDatabase(schema) { db, path in
            try sqlite3CLI(path, #"""
                INSERT INTO "it's a ""table"", ok" VALUES ('k''1', 1, x'01');
                UPDATE "it's a ""table"", ok" SET "select" = 2;
                DELETE FROM "it's a ""table"", ok";
                """#)
            let table = "it's a \"table\", ok"
            let records = try capturedRecords(db)
            #expect(records.map(Change.init) == [
                Change(table, .insert, key: [.text("k'1"), .integer(1)], after: [.text("k'1"), .integer(1), .blob([1])]),
                Change(table, .update, key: [.text("k'1"), .integer(2)], oldKey: [.text("k'1"), .integer(1)],
                       before: [.text("k'1"), .integer(1), .blob([1])], after: [.text("k'1"), .integer(2), .blob([1])]),
                Change(table, .delete, key: [.text("k'1"), .integer(2)], before: [.text("k'1"), .integer(2), .blob([1])]),
            ])
            #expect(records[0].key.map(\.name) == ["key;1", "select"])
            try Capture.checkShapes(connection: db)
            #expect(try Capture.install(connection: db, sourceID: "test-source").unchanged == [table])
        }
    }

    @Test("foreign-key cascades are captured like the writer's own changes")
    func foreignKeyCascade() throws {
        let schema = """
            CREATE TABLE parent(id INTEGER PRIMARY KEY);
            CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) ON DELETE CASCADE ON UPDATE CASCADE);
            """
        try withCapturedDatabase(schema) { db, path in
            try sqlite3CLI(path, """
                PRAGMA foreign_keys = ON;
                INSERT INTO parent VALUES (1);
                INSERT INTO child VALUES (10, 1);
                UPDATE parent SET id = 2;
                DELETE FROM parent;
                """)
            let changes = try capturedChanges(db)
            #expect(changes == [
                Change("parent", .insert, key: [.integer(1)], after: [.integer(1)]),
                Change("child", .insert, key: [.integer(10)], after: [.integer(10), .integer(1)]),
                Change("child", .update, key: [.integer(10)], before: [.integer(10), .integer(1)], after: [.integer(10), .integer(2)]),
                Change("parent", .update, key: [.integer(2)], oldKey: [.integer(1)], before: [.integer(1)], after: [.integer(2)]),
                Change("child", .delete, key: [.integer(10)], before: [.integer(10), .integer(2)]),
                Change("parent", .delete, key: [.integer(2)], before: [.integer(2)]),
            ])
            for table in ["parent", "child"] {
                #expect(replay(changes, table: table) == (try tableRows(db, table)))
            }
        }
    }
}
