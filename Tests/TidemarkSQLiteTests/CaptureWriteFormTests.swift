import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

/// Folds captured records into rows by key, as a replayer does: an insert or
/// update puts its after image at its key (an update that changed the key
/// first removes the old key, read from its before image), a delete removes
/// its key. Reads old logs' delete+insert pairs the same way.
///
/// With `strict`, also checks that every delete and every key change finds
/// its row: a delete logged twice, or a delete of a row that was never there
/// (a phantom), fails. (Application triggers that delete or re-key the row
/// their own statement is writing legitimately break this: the statement's
/// own change is then never logged, only the trigger's.)
func fold(_ records: [ChangeRecord], table: String, strict: Bool = false) -> [[Value]: [Value]] {
    var rows: [[Value]: [Value]] = [:]
    for r in records where r.table == table {
        let key = r.key.map(\.value)
        switch r.operation {
        case .insert:
            rows[key] = r.after?.map(\.value)
        case .update:
            let old = r.key.map { k in r.before?.first { $0.name == k.name }?.value ?? .null }
            if strict && old != key { #expect(rows[old] != nil, "LSN \(r.lsn): key change of \(old) in \(table) finds no row") }
            rows[old] = nil
            rows[key] = r.after?.map(\.value)
        case .delete:
            if strict { #expect(rows[key] != nil, "LSN \(r.lsn): delete of \(key) in \(table) finds no row (a duplicate or phantom delete)") }
            rows[key] = nil
        }
    }
    return rows
}

/// Runs SQL statements one by one through Python's sqlite3 module in
/// autocommit mode, ignoring the ones that fail (a failing statement is one of
/// the write forms under test). The first statement may be a PRAGMA.
func runStatements(_ path: String, _ statements: [String]) throws {
    let encoded = try String(decoding: JSONSerialization.data(withJSONObject: statements), as: UTF8.self)
    try python(path, """
        import sqlite3, sys, json
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        for s in json.loads(\(String(reflecting: encoded))):
            try:
                db.execute(s)
            except sqlite3.Error:
                pass
        if db.in_transaction:
            db.execute("ROLLBACK")
        """)
}

@Suite("Capture write forms")
struct CaptureWriteFormTests {
    // MARK: 1. Rekeys

    @Test("a key change through rowid, oid, _rowid_ or the key column is one update with both keys",
          arguments: [nil, ["v"]] as [[String]?])
    func rekeyThroughAliases(updateColumns: [String]?) throws {
        let schema = """
            CREATE TABLE a(id INTEGER PRIMARY KEY, v);
            CREATE TABLE b(k TEXT PRIMARY KEY, v);
            CREATE TABLE c(k INTEGER, j TEXT, v, PRIMARY KEY (k, j)) WITHOUT ROWID;
            """
        let columns: [String: [String]] = updateColumns.map { ["a": $0, "b": $0, "c": $0] } ?? [:]
        try withCapturedDatabase(schema, updateColumns: columns) { db, path in
            try sqlite3CLI(path, """
                INSERT INTO a VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');
                INSERT INTO b VALUES ('x', 1), ('y', 2);
                INSERT INTO c VALUES (1, 'p', 1), (2, 'q', 2);
                UPDATE a SET rowid = 100 WHERE id = 1;
                UPDATE a SET oid = 200 WHERE id = 2;
                UPDATE a SET _rowid_ = 300, v = 'moved' WHERE id = 3;
                UPDATE a SET id = 400 WHERE id = 4;
                UPDATE b SET rowid = 100 WHERE k = 'x';
                UPDATE b SET k = 'z' WHERE k = 'y';
                UPDATE c SET j = 'r' WHERE k = 1;
                UPDATE c SET k = k + 10;
                """)
            let records = try capturedRecords(db)
            for table in ["a", "b", "c"] {
                #expect(fold(records, table: table, strict: true) == (try tableRows(db, table)), "table \(table)")
            }
            let rekeys = records.filter { r in
                r.operation == .update && r.key.contains { k in r.before?.first { $0.name == k.name }?.value != k.value }
            }
            // a: 4, b: 1 (its rowid is not its key), c: 3 — each one record.
            #expect(rekeys.count == 8)
            #expect(!records.contains { $0.operation == .delete })
            let a = rekeys.filter { $0.table == "a" }
            #expect(a.map { $0.before?.first?.value } == [.integer(1), .integer(2), .integer(3), .integer(4)])
            #expect(a.map { $0.key.first?.value } == [.integer(100), .integer(200), .integer(300), .integer(400)])
        }
    }

    @Test("limiting update capture still ignores other columns' updates")
    func updateColumnsStillLimit() throws {
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b UNIQUE)", updateColumns: ["t": ["a"]]) { db, path in
            try sqlite3CLI(path, """
                INSERT INTO t VALUES (1, 'a', 1);
                UPDATE t SET b = 2;
                UPDATE t SET b = 2, rowid = rowid;
                """)
            #expect(try capturedRecords(db).count == 1)
        }
    }

    // MARK: 2. Application triggers

    static let appTriggers = """
        CREATE TRIGGER app_fill AFTER INSERT ON t BEGIN
          UPDATE t SET filled = 'f' || NEW.id WHERE id = NEW.id;
          INSERT INTO audit(tid, v) VALUES (NEW.id, NEW.v);
        END;
        CREATE TRIGGER app_touch AFTER UPDATE OF v ON t BEGIN
          UPDATE t SET touched = touched + 1 WHERE id = NEW.id;
          UPDATE audit SET v = NEW.v WHERE tid = NEW.id;
        END;
        CREATE TRIGGER app_move AFTER INSERT ON t WHEN NEW.v = 'move' BEGIN
          UPDATE t SET id = id + 1000 WHERE id = NEW.id;
        END;
        CREATE TRIGGER app_drop AFTER UPDATE ON t WHEN NEW.v = 'drop' BEGIN
          DELETE FROM t WHERE id = NEW.id;
        END;
        """

    @Test("the logged image is the row as the statement left it, whatever the application's triggers did",
          arguments: [false, true])
    func applicationTriggers(createdAfterCapture: Bool) throws {
        let schema = """
            CREATE TABLE t(id INTEGER PRIMARY KEY, v, touched INT DEFAULT 0, filled);
            CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, tid, v);
            """ + (createdAfterCapture ? "" : Self.appTriggers)
        try withCapturedDatabase(schema) { db, path in
            if createdAfterCapture {
                try db.execute(Self.appTriggers)
                // Capture's triggers now fire last: the shipper stops until
                // capture is installed again (next test); the images logged
                // meanwhile are still the rows as the statements left them.
                let error = #expect(throws: CaptureError.self) { try Capture.checkShapes(connection: db) }
                #expect(error?.code == .shapeChanged && error?.message.contains("app_") == true)
            }
            try sqlite3CLI(path, """
                INSERT INTO t(id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c');
                UPDATE t SET v = 'a2' WHERE id = 1;
                UPDATE t SET v = v || '!';
                INSERT INTO t(id, v) VALUES (4, 'move');
                UPDATE t SET v = 'drop' WHERE id = 2;
                BEGIN; UPDATE t SET v = 'x' WHERE id = 3; UPDATE t SET v = 'y' WHERE id = 3; COMMIT;
                INSERT INTO t(id, v) VALUES (5, 'e') ON CONFLICT(id) DO UPDATE SET v = excluded.v;
                INSERT INTO t(id, v) VALUES (5, 'e2') ON CONFLICT(id) DO UPDATE SET v = excluded.v;
                """)
            let records = try capturedRecords(db)
            for table in ["t", "audit"] {
                #expect(fold(records, table: table) == (try tableRows(db, table)), "table \(table)")
            }
        }
    }

    @Test("an application AFTER trigger that stops its statement early cannot hide a change once capture is reinstalled",
          arguments: ["INSERT OR FAIL INTO t VALUES (2, 'dup')", "INSERT INTO t VALUES (2, 'ignore')"])
    func applicationTriggerEndsStatement(statement: String) throws {
        let schema = "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE seen(v TEXT PRIMARY KEY)"
        try withCapturedDatabase(schema) { db, path in
            try db.execute("""
                INSERT INTO seen VALUES ('dup');
                CREATE TRIGGER app_seen AFTER INSERT ON t BEGIN
                  INSERT INTO seen VALUES (NEW.v);
                  SELECT RAISE(IGNORE) WHERE NEW.v = 'ignore';
                END;
                """)
            #expect(throws: CaptureError.self) { try Capture.checkShapes(connection: db) }
            let report = try Capture.install(connection: db, sourceID: "test-source")
            #expect(report.installed == ["seen", "t"] || report.installed == ["t"])
            try Capture.checkShapes(connection: db)
            try runStatements(path, [statement])
            #expect(try db.values("SELECT count(*) FROM t") == [[.integer(1)]], "the row stays")
            let records = try capturedRecords(db)
            #expect(fold(records, table: "t", strict: true) == (try tableRows(db, "t")))
        }
    }

    // MARK: 3. REPLACE displacement

    static let replaceSchemas = [
        // Rowid alias key, a UNIQUE column and a two-column UNIQUE.
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT UNIQUE, b INT, c, UNIQUE (b, c))",
        // Text key in a rowid table; the UNIQUE column replaces on its own.
        "CREATE TABLE t(id TEXT PRIMARY KEY, a TEXT UNIQUE ON CONFLICT REPLACE, b INT, c)",
        // WITHOUT ROWID, a key that replaces, a NOCASE unique index and a partial one.
        """
        CREATE TABLE t(id INTEGER NOT NULL, a TEXT, b INT, c, PRIMARY KEY (id) ON CONFLICT REPLACE) WITHOUT ROWID;
        CREATE UNIQUE INDEX t_a ON t(a COLLATE NOCASE);
        CREATE UNIQUE INDEX t_b ON t(b) WHERE b > 0;
        """,
    ]

    static func replaceStatements(key: (Int) -> String) -> [String] {
        let k = key
        return [
            "INSERT INTO t(id, a, b, c) VALUES (\(k(1)), 'a1', 1, 1), (\(k(2)), 'a2', 2, 2), (\(k(3)), 'a3', 3, 3), (\(k(4)), 'a4', 4, 4)",
            "INSERT OR REPLACE INTO t(id, a, b, c) VALUES (\(k(5)), 'a1', 10, 10)",
            "REPLACE INTO t(id, a, b, c) VALUES (\(k(2)), 'A2', 2, 2)",
            "INSERT INTO t(id, a, b, c) VALUES (\(k(6)), 'a3', 30, 30)",
            "UPDATE OR REPLACE t SET a = 'a4' WHERE id = \(k(5))",
            "UPDATE OR REPLACE t SET id = \(k(6)) WHERE id = \(k(2))",
            "INSERT OR REPLACE INTO t(id, a, b, c) VALUES (\(k(7)), 'q', 6, 30)",
            "INSERT OR IGNORE INTO t(id, a, b, c) VALUES (\(k(8)), 'a4', 1, 1)",
            "INSERT OR IGNORE INTO t(id, a, b, c) VALUES (\(k(6)), 'zz', 99, 99)",
            "UPDATE OR IGNORE t SET a = 'q' WHERE id = \(k(6))",
            "INSERT OR FAIL INTO t(id, a, b, c) VALUES (\(k(9)), 'n9', 90, 90), (\(k(10)), 'n10', 91, 91), (\(k(9)), 'n9b', 92, 92)",
            "INSERT INTO t(id, a, b, c) VALUES (\(k(11)), 'n11', 110, 110), (\(k(11)), 'n11b', 111, 111)",
            "BEGIN",
            "INSERT OR REPLACE INTO t(id, a, b, c) VALUES (\(k(12)), 'n9', 120, 120)",
            "INSERT OR ROLLBACK INTO t(id, a, b, c) VALUES (\(k(13)), 'n10', 130, 130), (\(k(13)), 'x', 1, 1)",
            "COMMIT",
            "BEGIN",
            "SAVEPOINT s",
            "REPLACE INTO t(id, a, b, c) VALUES (\(k(14)), 'n10', 140, 140)",
            "ROLLBACK TO s",
            "RELEASE s",
            "REPLACE INTO t(id, a, b, c) VALUES (\(k(15)), 'n9', 150, 150)",
            "COMMIT",
            "INSERT INTO t(id, a, b, c) VALUES (\(k(16)), 'q', 160, 160) ON CONFLICT(id) DO UPDATE SET a = excluded.a",
            "INSERT INTO t(id, a, b, c) VALUES (\(k(7)), 'q', 170, 170) ON CONFLICT(id) DO UPDATE SET c = 'upserted'",
            "INSERT OR REPLACE INTO t(id, a, b, c) VALUES (\(k(1)), 'n10', 180, 180), (\(k(17)), 'a4', 190, 190)",
            "REPLACE INTO t(id, a, b, c) SELECT id, a, b, c FROM t WHERE a = 'n10'",
        ]
    }

    @Test("rows a REPLACE displaces through any unique index are deletes, logged once; ignored and failed writes leave nothing",
          arguments: [false, true], [0, 1, 2])
    func replaceDisplacement(recursiveTriggers: Bool, schema: Int) throws {
        try withCapturedDatabase(Self.replaceSchemas[schema]) { db, path in
            let key: (Int) -> String = schema == 1 ? { "'k\($0)'" } : { "\($0)" }
            try runStatements(path, ["PRAGMA recursive_triggers = \(recursiveTriggers ? "ON" : "OFF")"]
                + Self.replaceStatements(key: key))
            let records = try capturedRecords(db)
            #expect(fold(records, table: "t", strict: true) == (try tableRows(db, "t")))
            #expect(try db.values("SELECT count(*) FROM t") != [[.integer(0)]])
        }
    }

    @Test("capture never makes a writer's statement fail: a staged row left by an ignored insert does not clash with OR FAIL, OR ABORT or an upsert",
          arguments: ["INSERT OR FAIL INTO t VALUES (3, 'c', -1)", "INSERT OR ABORT INTO t VALUES (3, 'c', -1)",
                      "INSERT OR ROLLBACK INTO t VALUES (3, 'c', -1)",
                      "INSERT INTO t VALUES (1, 'c', -1) ON CONFLICT(id) DO UPDATE SET a = 'c'"])
    func stagingNeverFailsTheWriter(statement: String) throws {
        let schema = "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT UNIQUE, b); CREATE UNIQUE INDEX t_b ON t(b) WHERE b > 0"
        try withCapturedDatabase(schema) { db, path in
            try sqlite3CLI(path, """
                INSERT INTO t VALUES (1, 'a', -1);
                INSERT OR IGNORE INTO t VALUES (2, 'a', 5);
                \(statement);
                """)
            #expect(try db.values("SELECT count(*) FROM t WHERE a = 'c'") == [[.integer(1)]])
            #expect(fold(try capturedRecords(db), table: "t", strict: true) == (try tableRows(db, "t")))
        }
    }

    @Test("an explicit rowid displaces the row holding it in a table keyed otherwise")
    func rowidDisplacement() throws {
        try withCapturedDatabase("CREATE TABLE t(id TEXT PRIMARY KEY, v)") { db, path in
            try sqlite3CLI(path, """
                INSERT INTO t(rowid, id, v) VALUES (1, 'a', 1), (2, 'b', 2);
                INSERT OR REPLACE INTO t(rowid, id, v) VALUES (1, 'c', 3);
                UPDATE OR REPLACE t SET rowid = 1 WHERE id = 'b';
                """)
            let records = try capturedRecords(db)
            #expect(fold(records, table: "t", strict: true) == (try tableRows(db, "t")))
            #expect(try tableRows(db, "t").keys.map { $0 } == [[.text("b")]])
        }
    }

    @Test("a NULL replaced by a column's default displaces the row holding the default")
    func defaultReplacement() throws {
        let schema = "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT NOT NULL ON CONFLICT REPLACE DEFAULT 'd' UNIQUE ON CONFLICT REPLACE)"
        try withCapturedDatabase(schema) { db, path in
            try sqlite3CLI(path, """
                INSERT INTO t VALUES (1, 'd'), (2, 'x');
                INSERT INTO t VALUES (3, NULL);
                UPDATE t SET a = NULL WHERE id = 2;
                """)
            let records = try capturedRecords(db)
            #expect(fold(records, table: "t", strict: true) == (try tableRows(db, "t")))
        }
    }

    @Test("a unique index capture cannot evaluate is refused at install, and one added later stops shipping")
    func unsupportedUniqueIndexes() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, email TEXT); CREATE UNIQUE INDEX t_email ON t(lower(email))")
            let before = try schemaSnapshot(db)
            let error = try #require(throws: CaptureError.self) {
                try Capture.install(connection: db, sourceID: "s")
            }
            #expect(error.code == .unsupported)
            #expect(error.message.contains("'t'") && error.message.contains("t_email"))
            #expect(try schemaSnapshot(db) == before)
        }
        try withCapturedDatabase("CREATE TABLE t(id INTEGER PRIMARY KEY, email TEXT)") { db, _ in
            try Capture.checkShapes(connection: db)
            try db.execute("CREATE UNIQUE INDEX t_email ON t(email)")
            let error = try #require(throws: CaptureError.self) { try Capture.checkShapes(connection: db) }
            #expect(error.code == .shapeChanged)
            try Capture.install(connection: db, sourceID: "test-source")
            try Capture.checkShapes(connection: db)
        }
    }
}
