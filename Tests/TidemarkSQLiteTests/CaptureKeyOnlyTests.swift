import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

/// Tables whose key is their only UNIQUE constraint get one capture trigger
/// per write (no staging): every REPLACE form still logs exactly, and an
/// install made with the older staging triggers keeps passing the shipper's
/// checks until `capture install` regenerates it.
@Suite("Capture, key-only tables")
struct CaptureKeyOnlyTests {
    static let schema = """
        CREATE TABLE r(id INTEGER PRIMARY KEY, v TEXT);
        CREATE TABLE w(a TEXT COLLATE NOCASE, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
        """

    /// A key as the table compares it: `w.a` is NOCASE (ASCII only here).
    static func normalized(_ key: [Value]) -> [Value] {
        key.map { if case .text(let t) = $0 { .text(t.lowercased()) } else { $0 } }
    }

    /// The captured changes folded by key the way replay applies them: an
    /// insert upserts its key, an update moves its old key to its new one,
    /// a delete removes its key, keys compared as the table compares them.
    static func fold(_ changes: [Change], table: String) -> [[Value]: [Value]] {
        var rows: [[Value]: [Value]] = [:]
        for change in changes where change.table == table {
            switch change.op {
            case .insert: rows[normalized(change.key)] = change.after
            case .update:
                let old = normalized(change.oldKey ?? change.key)
                #expect(rows[old] == change.before, "update of \(old) must find its before image")
                rows[old] = nil
                rows[normalized(change.key)] = change.after
            case .delete:
                #expect(rows[normalized(change.key)] == change.before, "delete of \(change.key) must find its before image")
                rows[normalized(change.key)] = nil
            }
        }
        return rows
    }

    static func rows(_ db: Connection, _ table: String) throws -> [[Value]: [Value]] {
        Dictionary(uniqueKeysWithValues: try tableRows(db, table).map { (normalized($0.key), $0.value) })
    }

    static func writes(recursive: Bool) -> [String] {
        [
            "PRAGMA recursive_triggers = \(recursive ? "ON" : "OFF")",
            "INSERT INTO r VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            "INSERT OR REPLACE INTO r VALUES (1, 'a2')",
            "REPLACE INTO r VALUES (2, 'b2')",
            "UPDATE OR REPLACE r SET id = 2 WHERE id = 1",
            "INSERT INTO r VALUES (3, 'c3') ON CONFLICT (id) DO UPDATE SET v = excluded.v",
            "INSERT OR IGNORE INTO r VALUES (3, 'ignored')",
            "UPDATE r SET rowid = 30 WHERE id = 3",
            "INSERT INTO w VALUES ('x', 1, 1), ('Y', 1, 2)",
            "INSERT OR REPLACE INTO w VALUES ('X', 1, 10)",
            "UPDATE OR REPLACE w SET a = 'y' WHERE a = 'x'",
            "DELETE FROM w WHERE b = 1 AND v = 99",
            "DELETE FROM r WHERE id = 2",
        ]
    }

    @Test("one trigger per write, and every REPLACE form is logged exactly", arguments: [false, true])
    func keyOnlyTablesLogExactly(recursive: Bool) throws {
        try withTemporaryDatabase { db, path in
            try db.execute(Self.schema)
            try Capture.install(connection: db, sourceID: "key-only")
            let triggers = try db.values("SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name")
            #expect(triggers.count == 8, "\(triggers)")
            #expect(try db.values("SELECT name FROM sqlite_schema WHERE name LIKE '\\_tidemark\\_staged\\_%' ESCAPE '\\'").isEmpty)
            _ = try sqlite3CLI(path, Self.writes(recursive: recursive).joined(separator: ";\n") + ";")
            let changes = try capturedChanges(db)
            for table in ["r", "w"] {
                #expect(Self.fold(changes, table: table) == (try Self.rows(db, table)), "\(table), recursive \(recursive): \(changes)")
            }
            try Capture.checkShapes(connection: db)
        }
    }

    @Test("an install with the older staging triggers is accepted, and install regenerates it")
    func olderStagingInstallKeepsWorking() throws {
        try withTemporaryDatabase { db, path in
            try db.execute(Self.schema)
            try Capture.install(connection: db, sourceID: "key-only")
            // Put back what the previous format installed: the staging table
            // and all eight triggers, in the same order.
            try db.transaction(.immediate) {
                for shape in try Capture.shapes(db) {
                    let info = try #require(try Schema.table(named: shape.name, in: db))
                    var staged = try Capture.displacement(for: shape, info: info, connection: db)
                    #expect(staged.keyOnly)
                    staged.keyOnly = false
                    for kind in Capture.TriggerKind.allCases {
                        try db.execute("DROP TRIGGER IF EXISTS \(quoteIdentifier(kind.triggerName(shape.name)))")
                    }
                    try db.execute(try #require(staged.stagingSQL))
                    for trigger in Capture.triggerSQL(for: shape, displacement: staged) { try db.execute(trigger.sql) }
                }
            }
            #expect(try db.values("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'") == [[.integer(16)]])
            try Capture.checkShapes(connection: db)
            _ = try sqlite3CLI(path, Self.writes(recursive: false).joined(separator: ";\n") + ";")
            let before = try capturedChanges(db)
            for table in ["r", "w"] {
                #expect(Self.fold(before, table: table) == (try Self.rows(db, table)), "\(table): \(before)")
            }

            let report = try Capture.install(connection: db, sourceID: "key-only")
            #expect(report.installed == ["r", "w"])
            #expect(try db.values("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'") == [[.integer(8)]])
            #expect(try db.values("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_tidemark\\_staged\\_%' ESCAPE '\\'") == [[.integer(0)]])
            try Capture.checkShapes(connection: db)
            try db.execute("INSERT OR REPLACE INTO r VALUES (30, 'c4'); INSERT INTO r VALUES (5, 'e')")
            let after = try capturedChanges(db)
            #expect(after.count == before.count + 2)
            #expect(Self.fold(after, table: "r") == (try Self.rows(db, "r")), "\(after)")
        }
    }
}
