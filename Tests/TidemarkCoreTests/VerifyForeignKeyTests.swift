import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// Verify checks the migrated tables' foreign keys (the target runs with
/// foreign keys off during copy and replay, so rows arrive in key order,
/// not parent-first): a target row whose parent is missing is a difference,
/// so the verify is not clean and cutover refuses.
@Suite struct VerifyForeignKeyTests {
    /// users <- orders(user_id), copied to another file whose tables carry
    /// the foreign key (created up front, as the plan's target definition).
    struct Fixture {
        let dir: String
        var source: String { dir + "/src.db" }
        var target: String { dir + "/dst.db" }
        var planPath: String { dir + "/tidemark.yml" }
        var plan: Plan { get throws { try Plan.load(path: planPath) } }

        init(_ dir: String) throws {
            self.dir = dir
            let c = try Connection(path: source, mode: .readWriteCreate)
            _ = try c.setJournalMode(.wal)
            try c.execute("""
                CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
                CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total INTEGER);
                INSERT INTO users VALUES (1, 'a'), (2, 'b');
                INSERT INTO orders VALUES (10, 1, 5), (11, 2, 6), (12, NULL, 7);
                """)
            try c.close()
            let t = try Connection(path: target, mode: .readWriteCreate)
            _ = try t.setJournalMode(.wal)
            try t.execute("""
                CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
                CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total INTEGER);
                """)
            try t.close()
            try writeText(planPath, "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  users: {}\n  orders: {}\n")
        }

        func sql(_ s: String) throws {
            let c = try Connection(path: source, mode: .readWrite)
            try c.execute(s)
            try c.close()
        }

        func migrateToCaughtUp() throws {
            let m = try Migrator.open(plan: try plan)
            defer { try? m.close() }
            #expect(try m.run(seconds: 60).caughtUp)
        }
    }

    @Test("a target row whose parent is missing makes the verify unclean, with its key and parent")
    func orphanIsADifference() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            try f.migrateToCaughtUp()
            #expect(try Verifier(plan: try f.plan).run().isEqual)
            // The source never enforced the foreign key: an orphan arrives
            // through replay exactly as it is in the source.
            try f.sql("INSERT INTO orders VALUES (13, 99, 8); INSERT INTO orders VALUES (14, 2, 9);")
            try f.migrateToCaughtUp()
            let report = try Verifier(plan: try f.plan).run()
            #expect(!report.isEqual)
            let orders = try #require(report.tables.first { $0.target == "orders" })
            #expect(orders.missingCount == 0 && orders.extraCount == 0 && orders.differentCount == 0)
            #expect(orders.foreignKeyCount == 1)
            #expect(orders.foreignKeys.map(\.key) == [[.integer(13)]])
            #expect(orders.foreignKeys.map(\.parent) == ["users"])
            #expect(report.tables.first { $0.target == "users" }?.isEqual == true)
            // SQLite agrees on the target file.
            let t = try Connection(path: f.target, mode: .readOnly)
            #expect(try t.values("PRAGMA foreign_key_check").count == 1)
            try t.close()
            // Recorded as differences: cutover refuses.
            let c = try Connection(path: f.target, mode: .readOnly)
            defer { try? c.close() }
            let state = try #require(try StateTables.load(c))
            #expect(state.verification?.differences == 1)
        }
    }

    @Test("the orphan fixed in the source verifies clean again")
    func fixedOrphanIsClean() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            try f.migrateToCaughtUp()
            // After the first run's preflight (which refuses orphans).
            try f.sql("INSERT INTO orders VALUES (13, 99, 8);")
            try f.migrateToCaughtUp()
            #expect(try !Verifier(plan: try f.plan).run().isEqual)
            try f.sql("INSERT INTO users VALUES (99, 'late parent');")
            try f.migrateToCaughtUp()
            let report = try Verifier(plan: try f.plan).run()
            #expect(report.isEqual, "\(report.tables.map { "\($0.target): \($0.foreignKeyCount)" })")
        }
    }

    @Test("a WITHOUT ROWID target table's orphans are listed by key")
    func withoutRowidOrphans() throws {
        try withTemporaryDirectory { dir in
            let schema = """
                CREATE TABLE users(id INTEGER PRIMARY KEY);
                CREATE TABLE lines(order_id INTEGER, line INTEGER, user_id INTEGER REFERENCES users(id), PRIMARY KEY (order_id, line)) WITHOUT ROWID;
                """
            for path in [dir + "/src.db", dir + "/dst.db"] {
                let c = try Connection(path: path, mode: .readWriteCreate)
                _ = try c.setJournalMode(.wal)
                try c.execute(schema)
                try c.close()
            }
            try writeText(dir + "/tidemark.yml", "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  users: {}\n  lines: {}\n")
            let plan = try Plan.load(path: dir + "/tidemark.yml")
            func migrate(_ sql: String) throws {
                let c = try Connection(path: dir + "/src.db", mode: .readWrite)
                try c.execute(sql)
                try c.close()
                let m = try Migrator.open(plan: plan)
                defer { try? m.close() }
                #expect(try m.run(seconds: 60).caughtUp)
            }
            try migrate("INSERT INTO users VALUES (1); INSERT INTO lines VALUES (1, 1, 1), (2, 1, 1);")
            // Orphans after the first run's preflight, through replay.
            try migrate("INSERT INTO lines VALUES (1, 2, 4), (2, 2, 5);")
            let report = try Verifier(plan: plan).run()
            let lines = try #require(report.tables.first { $0.target == "lines" })
            #expect(lines.foreignKeyCount == 2)
            #expect(lines.foreignKeys.map(\.key) == [[.integer(1), .integer(2)], [.integer(2), .integer(2)]])
            #expect(lines.foreignKeys.allSatisfy { $0.rowid == nil && $0.parent == "users" })
        }
    }

    @Test("tidemark verify prints the foreign key violation and exits 1")
    func cliShowsViolation() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            try f.migrateToCaughtUp()
            try f.sql("INSERT INTO orders VALUES (13, 99, 8);")
            try f.migrateToCaughtUp()
            let r = try runTidemark(["verify", "--plan", f.planPath], in: dir)
            #expect(r.status == 1)
            #expect(r.stdout.contains("orders → orders: 0 missing, 0 extra, 0 different, 1 foreign key"), "\(r.stdout)")
            #expect(r.stdout.contains("foreign key 13 (rowid 13): no parent in users"), "\(r.stdout)")
            let j = try runTidemark(["verify", "--json", "--plan", f.planPath], in: dir)
            #expect(j.status == 1)
            #expect(j.stdout.contains("\"foreign_key_count\":1"), "\(j.stdout)")
        }
    }
}
