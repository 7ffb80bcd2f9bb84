import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The preflight: source rows the target's constraints would refuse are
/// found before anything is copied, per constraint, with counts and the
/// first keys in source key order. Target schemas are built by hand here
/// (plain data, as the resolver would give them).
@Suite struct PreflightTests {
    struct Fixture {
        let dir: String
        var sourcePath: String { dir + "/src.db" }

        init(_ dir: String, _ sql: String) throws {
            self.dir = dir
            let c = try Connection(path: sourcePath, mode: .readWriteCreate)
            try c.execute(sql)
            try c.close()
        }

        func plan(_ tables: [TablePlan]) -> Plan {
            Plan(source: sourcePath, target: dir + "/dst.db", log: dir + "/changelog", tables: tables)
        }

        /// Runs the preflight on a read-only source connection and checks
        /// that the source file is unchanged.
        func run(_ tables: [TablePlan], _ targets: [TargetSchema.Table], indexes: [TargetSchema.Object] = [], keys: Int = 5,
                 seconds: UnsafeMutablePointer<Double>? = nil) throws -> PreflightReport {
            let before = try DatabaseImage(path: sourcePath)
            let source = try Connection(path: sourcePath, mode: .readOnly)
            defer { try? source.close() }
            let p = plan(tables)
            let mappings = try PlanResolver.resolve(p, source: source, target: source)
            let start = Clock.monotonicNanos()
            let report = try Preflight.run(plan: p, mappings: mappings, schema: TargetSchema(tables: targets, indexes: indexes),
                                           source: source, keysPerViolation: keys)
            seconds?.pointee = Double(Clock.monotonicNanos() - start) / 1e9
            #expect(try DatabaseImage(path: sourcePath) == before)
            return report
        }
    }

    static func ids(_ v: PreflightViolation) -> [[Value]] { v.keys.map { $0.map(\.value) } }

    @Test("NOT NULL: a computed column declared not_null over a source NULL")
    func notNull() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, nick TEXT);
                INSERT INTO users VALUES (1, 'A@x', 'a'), (2, NULL, 'b'), (3, 'c@x', NULL), (4, NULL, NULL);
                """)
            let report = try f.run(
                [TablePlan(source: "users", columns: [ColumnMapping(target: "id", expression: "id"),
                                                      ColumnMapping(target: "email", expression: "lower(email)", type: "TEXT", notNull: true),
                                                      ColumnMapping(target: "nick", expression: "nick")])],
                [.init(source: "users", target: "users", createSQL: "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, nick TEXT)")])
            #expect(report.violations.count == 1, "\(report.violations)")
            let v = try #require(report.violations.first)
            #expect(v.kind == "not null")
            #expect(v.constraint.contains("email"))
            #expect(v.rows == 2)
            #expect(Self.ids(v) == [[.integer(2)], [.integer(4)]])
            #expect(v.keys.first?.first?.name == "id")
        }
    }

    @Test("CHECK: the plan's own table with a tighter CHECK")
    func check() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER CHECK (qty >= 0), price REAL);
                INSERT INTO items VALUES (1, 0, 1.0), (2, 5, 2.0), (3, 50, -1), (4, 100, 3), (5, 7, NULL), (6, NULL, 1);
                """)
            let create = "CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER CHECK (qty BETWEEN 1 AND 10), price REAL CONSTRAINT positive CHECK (price > 0))"
            let report = try f.run([TablePlan(source: "items", create: create)],
                                   [.init(source: "items", target: "items", createSQL: create, fromPlan: true)])
            #expect(report.violations.count == 2, "\(report.violations)")
            let qty = try #require(report.violations.first { $0.constraint.contains("BETWEEN") })
            #expect(qty.kind == "check")
            #expect(qty.constraint == "CHECK (qty BETWEEN 1 AND 10)")
            #expect(qty.rows == 3)
            #expect(Self.ids(qty) == [[.integer(1)], [.integer(3)], [.integer(4)]])
            // Each CHECK on its own: row 3 breaks both and is counted in both.
            let price = try #require(report.violations.first { $0.constraint.contains("positive") })
            #expect(price.rows == 1)
            #expect(Self.ids(price) == [[.integer(3)]])
        }
    }

    @Test("CHECK: a carried CHECK is checked again when its column is now computed")
    func carriedCheckOverComputedColumn() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT CHECK (length(email) > 3));
                INSERT INTO users VALUES (1, ' ab '), (2, 'abcd'), (3, '  x  ');
                """)
            let create = "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT CHECK (length(email) > 3))"
            let computed = try f.run([TablePlan(source: "users", columns: [ColumnMapping(target: "id", expression: "id"), ColumnMapping(target: "email", expression: "trim(email)")])],
                                     [.init(source: "users", target: "users", createSQL: create)])
            #expect(computed.violations.map(Self.ids) == [[[.integer(1)], [.integer(3)]]], "\(computed.violations)")
            // Copied plainly, the source's own CHECK guarantees it: no row is read.
            let plain = try f.run([TablePlan(source: "users")], [.init(source: "users", target: "users", createSQL: create)])
            #expect(plain.isClean)
            #expect(plain.rowsChecked == 0)
        }
    }

    @Test("UNIQUE: a unique index carried onto a column now computed as lower(email)")
    func uniqueOnComputedColumn() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL);
                CREATE UNIQUE INDEX users_email ON users(email);
                INSERT INTO users VALUES (1, 'A@x'), (2, 'b@x'), (3, 'a@x'), (4, 'B@X'), (5, 'c@x'), (6, 'b@X');
                """)
            let tables = [TablePlan(source: "users", columns: [ColumnMapping(target: "id", expression: "id"),
                                                               ColumnMapping(target: "email", expression: "lower(email)")])]
            let targets: [TargetSchema.Table] = [.init(source: "users", target: "users", createSQL: "CREATE TABLE users(id INTEGER PRIMARY KEY, email NOT NULL)")]
            let index = TargetSchema.Object(kind: .index, name: "users_email", table: "users", sql: "CREATE UNIQUE INDEX users_email ON users(email)")
            let report = try f.run(tables, targets, indexes: [index], keys: 3)
            #expect(report.violations.count == 1, "\(report.violations)")
            let v = try #require(report.violations.first)
            #expect(v.kind == "unique")
            #expect(v.constraint.contains("users_email"))
            // 'a@x' twice, 'b@x' three times; the first three keys in key order.
            #expect(v.rows == 5)
            #expect(Self.ids(v) == [[.integer(1)], [.integer(2)], [.integer(3)]])
            // The same index over the plain column: the source's own unique
            // index guarantees it (no violation).
            let plain = try f.run([TablePlan(source: "users")],
                                  [.init(source: "users", target: "users", createSQL: "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL)")],
                                  indexes: [index])
            #expect(plain.isClean, "\(plain.violations)")
            // An expression index on the target: unique over lower(email).
            let expression = TargetSchema.Object(kind: .index, name: "users_lower", table: "users", sql: "CREATE UNIQUE INDEX users_lower ON users(lower(email) DESC)")
            let r3 = try f.run([TablePlan(source: "users")],
                               [.init(source: "users", target: "users", createSQL: "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL)")],
                               indexes: [expression])
            #expect(r3.violations.map(\.rows) == [5], "\(r3.violations)")
            // A NOCASE column collides the same rows without any expression.
            let r4 = try f.run([TablePlan(source: "users")],
                               [.init(source: "users", target: "users", createSQL: "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL COLLATE NOCASE UNIQUE)")])
            #expect(r4.violations.map(\.rows) == [5], "\(r4.violations)")
            #expect(r4.violations.first?.constraint == "UNIQUE (email)")
        }
    }

    @Test("UNIQUE: a partial unique index applies to the rows its WHERE selects")
    func partialUnique() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE subs(id INTEGER PRIMARY KEY, email TEXT, active INTEGER);
                INSERT INTO subs VALUES (1, 'a', 0), (2, 'a', 0), (3, 'a', 1), (4, 'b', 1), (5, 'b', 1), (6, 'c', 1);
                """)
            let index = TargetSchema.Object(kind: .index, name: "subs_active", table: "subs", sql: "CREATE UNIQUE INDEX subs_active ON subs(email) WHERE active = 1")
            let report = try f.run([TablePlan(source: "subs")],
                                   [.init(source: "subs", target: "subs", createSQL: "CREATE TABLE subs(id INTEGER PRIMARY KEY, email TEXT, active INTEGER)")],
                                   indexes: [index])
            #expect(report.violations.count == 1, "\(report.violations)")
            let v = try #require(report.violations.first)
            #expect(v.rows == 2)
            #expect(Self.ids(v) == [[.integer(4)], [.integer(5)]])
            #expect(v.constraint.contains("WHERE active = 1"))
        }
    }

    @Test("UNIQUE: NULLs never collide, in one column or in a part of several")
    func nullsAreDistinct() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER);
                INSERT INTO t VALUES (1, NULL, 1), (2, NULL, 1), (3, 'x', NULL), (4, 'x', NULL), (5, NULL, NULL), (6, 'y', 2), (7, 'y', 2);
                """)
            let report = try f.run([TablePlan(source: "t")],
                                   [.init(source: "t", target: "t", createSQL: "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, UNIQUE (a, b))")],
                                   indexes: [.init(kind: .index, name: "t_a", table: "t", sql: "CREATE UNIQUE INDEX t_a ON t(a) WHERE b IS NULL")])
            // Only (y, 2) collides; t_a sees 'x' twice (rows 3, 4) and NULL once.
            #expect(report.violations.count == 2, "\(report.violations)")
            #expect(report.violations.first { $0.constraint == "UNIQUE (a, b)" }.map(Self.ids) == [[.integer(6)], [.integer(7)]])
            #expect(report.violations.first { $0.constraint.contains("t_a") }.map(Self.ids) == [[.integer(3)], [.integer(4)]])
        }
    }

    @Test("STRICT: an INTEGER column fed text that is not a number")
    func strictType() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE t(id INTEGER PRIMARY KEY, n TEXT, r TEXT);
                INSERT INTO t VALUES (1, '12', '1'), (2, 'abc', '2.5'), (3, '3.5', 'x'), (4, NULL, NULL), (5, '7.0', X'00'), (6, 'abc', '3');
                """)
            // The plan's CREATE TABLE may name another table than `to:`.
            let create = "CREATE TABLE t_v2(id INTEGER PRIMARY KEY, n INTEGER, r REAL) STRICT"
            let report = try f.run([TablePlan(source: "t", create: create)], [.init(source: "t", target: "t", createSQL: create, fromPlan: true)])
            // '12' and '7.0' become integers under the column's affinity, as
            // in the real target; 'abc' and 3.5 cannot be stored.
            #expect(report.violations.count == 2, "\(report.violations)")
            let n = try #require(report.violations.first { $0.constraint.hasPrefix("n ") })
            #expect(n.kind == "type")
            #expect(n.constraint == "n INTEGER (STRICT)")
            #expect(n.rows == 3)
            #expect(Self.ids(n) == [[.integer(2)], [.integer(3)], [.integer(6)]])
            let r = try #require(report.violations.first { $0.constraint.hasPrefix("r ") })
            #expect(Self.ids(r) == [[.integer(3)], [.integer(5)]])
        }
    }

    @Test("FOREIGN KEY: orphan rows in a source that never enforced its foreign keys; foreign_keys: drop skips them")
    func foreignKey() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
                CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));
                INSERT INTO users VALUES (1, 'a'), (2, 'b');
                INSERT INTO orders VALUES (10, 1), (11, 3), (12, NULL), (13, 4), (14, 2);
                """)
            let targets: [TargetSchema.Table] = [
                .init(source: "users", target: "accounts", createSQL: "CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT)"),
                .init(source: "orders", target: "orders", createSQL: "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES accounts(id))"),
            ]
            let report = try f.run([TablePlan(source: "users", target: "accounts"), TablePlan(source: "orders")], targets)
            #expect(report.violations.count == 1, "\(report.violations)")
            let v = try #require(report.violations.first)
            #expect(v.kind == "foreign key")
            #expect(v.table == "orders")
            #expect(v.constraint == "(user_id) REFERENCES accounts(id)")
            #expect(v.rows == 2)
            #expect(Self.ids(v) == [[.integer(11)], [.integer(13)]])
            #expect(report.message.contains("foreign_keys: drop"))
            #expect(report.message.contains("fix or delete these rows"))
            let dropped = try f.run([TablePlan(source: "users", target: "accounts"), TablePlan(source: "orders", foreignKeys: .drop)], targets)
            #expect(dropped.isClean)
        }
    }

    @Test("FOREIGN KEY: WITHOUT ROWID children list their keys; two keys to one parent are told apart; a key the source lacks is left to verify")
    func foreignKeyDetails() throws {
        try withTemporaryDirectory { dir in
            let lines = """
                CREATE TABLE lines(order_id INTEGER, line INTEGER, made_by INTEGER REFERENCES users(id), checked_by INTEGER REFERENCES users(id),
                                   PRIMARY KEY (order_id, line)) WITHOUT ROWID
                """
            let f = try Fixture(dir, """
                CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
                \(lines);
                CREATE TABLE notes(id INTEGER PRIMARY KEY, user_id INTEGER);
                INSERT INTO users VALUES (1, 'a');
                INSERT INTO lines VALUES (1, 1, 1, 1), (1, 2, 5, 1), (2, 1, 1, 6), (2, 2, 7, 8), (3, 1, NULL, NULL);
                INSERT INTO notes VALUES (1, 9);
                """)
            let report = try f.run([TablePlan(source: "users"), TablePlan(source: "lines"), TablePlan(source: "notes")], [
                .init(source: "users", target: "users", createSQL: "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)"),
                .init(source: "lines", target: "lines", createSQL: lines),
                .init(source: "notes", target: "notes", createSQL: "CREATE TABLE notes(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id))"),
            ])
            #expect(report.violations.count == 2, "\(report.violations)")
            let made = try #require(report.violations.first { $0.constraint.hasPrefix("(made_by)") })
            #expect(made.rows == 2)
            #expect(Self.ids(made) == [[.integer(1), .integer(2)], [.integer(2), .integer(2)]])
            let checked = try #require(report.violations.first { $0.constraint.hasPrefix("(checked_by)") })
            #expect(checked.rows == 2)
            #expect(Self.ids(checked) == [[.integer(2), .integer(1)], [.integer(2), .integer(2)]])
            #expect(report.unchecked.count == 1)
            #expect(report.unchecked.first?.contains("notes") == true, "\(report.unchecked)")
        }
    }

    @Test("what no query can evaluate is still caught by the trial insert, in SQLite's words")
    func trialCatchesTheRest() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER);
                INSERT INTO t VALUES (1, 1), (2, 7), (3, 2), (4, 9), (5, NULL);
                """)
            // A CHECK on a generated column: the candidate rows have no such
            // column, so only the empty target copy can judge it.
            let create = "CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2), CHECK (b < 10))"
            let report = try f.run([TablePlan(source: "t", create: create)], [.init(source: "t", target: "t", createSQL: create, fromPlan: true)])
            #expect(report.violations.count == 1, "\(report.violations)")
            let v = try #require(report.violations.first)
            #expect(v.kind == "check")
            #expect(v.constraint.contains("CHECK constraint failed"), "\(v.constraint)")
            #expect(v.rows == 2)
            #expect(Self.ids(v) == [[.integer(2)], [.integer(4)]])
            #expect(report.unchecked.count == 1, "\(report.unchecked)")
        }
    }

    @Test("a plan the source already satisfies passes")
    func cleanPlanPasses() throws {
        try withTemporaryDirectory { dir in
            let schema = """
                CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL COLLATE NOCASE UNIQUE, age INTEGER CHECK (age >= 0), kind TEXT);
                CREATE INDEX users_kind ON users(kind);
                CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), total INTEGER);
                INSERT INTO users VALUES (1, 'a@x', 3, 'k'), (2, 'b@x', NULL, NULL);
                INSERT INTO orders VALUES (1, 1, 5), (2, 2, 6);
                """
            let f = try Fixture(dir, schema)
            let users = "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL COLLATE NOCASE UNIQUE, age INTEGER CHECK (age >= 0), kind TEXT)"
            let report = try f.run(
                [TablePlan(source: "users", columns: [ColumnMapping(target: "id", expression: "id"), ColumnMapping(target: "email", expression: "email"),
                                                      ColumnMapping(target: "age", expression: "age"), ColumnMapping(target: "kind", expression: "upper(kind)")]),
                 TablePlan(source: "orders")],
                [.init(source: "users", target: "users", createSQL: users),
                 .init(source: "orders", target: "orders", createSQL: "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), total INTEGER)")],
                indexes: [.init(kind: .index, name: "users_kind", table: "users", sql: "CREATE UNIQUE INDEX users_kind ON users(kind)")])
            #expect(report.isClean, "\(report.violations)")
            #expect(report.unchecked.isEmpty, "\(report.unchecked)")
        }
    }

    @Test("affinity applies as in the target: '1' and 1 collide in an INTEGER column")
    func affinityBeforeUniqueness() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE t(id INTEGER PRIMARY KEY, code);
                CREATE UNIQUE INDEX t_code ON t(code);
                INSERT INTO t VALUES (1, 1), (2, '1'), (3, '01'), (4, 'x');
                """)
            let report = try f.run([TablePlan(source: "t")],
                                   [.init(source: "t", target: "t", createSQL: "CREATE TABLE t(id INTEGER PRIMARY KEY, code INTEGER UNIQUE)")])
            #expect(report.violations.map(\.rows) == [3], "\(report.violations)")
        }
    }

    @Test("the preflight of a 100k-row identity copy reads no rows when the source guarantees every constraint")
    func identityCopyCost() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, """
                CREATE TABLE big(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, n INTEGER CHECK (n >= 0), note TEXT);
                CREATE INDEX big_note ON big(note);
                WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 100000)
                INSERT INTO big SELECT i, 'u' || i || '@x', i % 1000, 'note ' || (i % 77) FROM s;
                """)
            let create = "CREATE TABLE big(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, n INTEGER CHECK (n >= 0), note TEXT)"
            let index = TargetSchema.Object(kind: .index, name: "big_note", table: "big", sql: "CREATE INDEX big_note ON big(note)")
            var fastSeconds = 0.0, fullSeconds = 0.0
            let fast = try f.run([TablePlan(source: "big")], [.init(source: "big", target: "big", createSQL: create)], indexes: [index], seconds: &fastSeconds)
            #expect(fast.isClean)
            #expect(fast.rowsChecked == 0)
            // The same table with a computed column: every row is checked.
            let full = try f.run([TablePlan(source: "big", columns: [ColumnMapping(target: "id", expression: "id"), ColumnMapping(target: "email", expression: "lower(email)"),
                                                                     ColumnMapping(target: "n", expression: "n"), ColumnMapping(target: "note", expression: "note")])],
                                 [.init(source: "big", target: "big", createSQL: create)], indexes: [index], seconds: &fullSeconds)
            #expect(full.isClean)
            #expect(full.rowsChecked == 100_000)
            print("preflight of 100k rows: identity copy \(String(format: "%.3f", fastSeconds)) s, with a computed unique column \(String(format: "%.3f", fullSeconds)) s")
        }
    }

    @Test("a failed preflight throws one error listing each constraint")
    func checkThrows() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, "CREATE TABLE t(id INTEGER PRIMARY KEY, n TEXT); INSERT INTO t VALUES (1, 'x'), (2, NULL);")
            let source = try Connection(path: f.sourcePath, mode: .readOnly)
            defer { try? source.close() }
            let create = "CREATE TABLE t(id INTEGER PRIMARY KEY, n TEXT NOT NULL CHECK (n <> 'x'))"
            let p = f.plan([TablePlan(source: "t", create: create)])
            let mappings = try PlanResolver.resolve(p, source: source, target: source)
            let error = try #require(throws: PreflightError.self) {
                try Preflight.check(plan: p, mappings: mappings, schema: TargetSchema(tables: [.init(source: "t", target: "t", createSQL: create)]), source: source)
            }
            let lines = error.description.split(separator: "\n")
            #expect(lines.count == 3, "\(error.description)")
            #expect(lines.first?.contains("nothing was written") == true)
            #expect(error.description.contains("t -> t: not null n NOT NULL: 1 row, first keys (id=2)"), "\(error.description)")
            #expect(error.description.contains("t -> t: check CHECK (n <> 'x'): 1 row, first keys (id=1)"), "\(error.description)")
            #expect(error.migrationError.code == .preflight)
            #expect(error.report.json.contains(#"{"table":"t","target_table":"t","kind":"not null","constraint":"n NOT NULL","rows":1,"keys":[{"id":2}],"hint":null}"#),
                    "\(error.report.json)")
        }
    }
}

/// Through `Migrator.open` and `tidemark migrate`: a failed preflight writes
/// nothing (no target table, no state, no log, no capture in the source).
@Suite struct PreflightMigrateTests {
    /// users(email) with emails equal under lower(); the target table exists
    /// already (empty) with UNIQUE(email), and the plan lowers the emails.
    static func fixture(_ dir: String) throws {
        let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
        _ = try c.setJournalMode(.wal)
        try c.execute("""
            CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL);
            INSERT INTO users VALUES (1, 'A@x'), (2, 'a@x'), (3, 'b@x');
            """)
        try c.close()
        let t = try Connection(path: dir + "/dst.db", mode: .readWriteCreate)
        try t.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")
        try t.close()
        try writeText(dir + "/tidemark.yml", "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  users:\n    columns:\n      id: id\n      email: lower(email)\n")
    }

    @Test("Migrator.open refuses and writes nothing")
    func migratorWritesNothing() throws {
        try withTemporaryDirectory { dir in
            try Self.fixture(dir)
            let source = try DatabaseImage(path: dir + "/src.db")
            let target = try DatabaseImage(path: dir + "/dst.db")
            let error = try #require(throws: MigrationError.self) { _ = try Migrator.open(plan: try Plan.load(path: dir + "/tidemark.yml")) }
            #expect(error.code == .preflight)
            #expect(error.violations.map(\.kind) == ["unique"])
            #expect(error.violations.first.map(PreflightTests.ids) == [[.integer(1)], [.integer(2)]])
            #expect(try DatabaseImage(path: dir + "/src.db") == source)
            #expect(try DatabaseImage(path: dir + "/dst.db") == target)
            #expect(try captureObjects(dir + "/src.db").isEmpty)
            #expect(!FileManager.default.fileExists(atPath: dir + "/changelog"))
            // Fixed in the source, the same plan migrates.
            let c = try Connection(path: dir + "/src.db", mode: .readWrite)
            try c.execute("UPDATE users SET email = 'a2@x' WHERE id = 2")
            try c.close()
            let m = try Migrator.open(plan: try Plan.load(path: dir + "/tidemark.yml"))
            defer { try? m.close() }
            #expect(try m.run(seconds: 60).caughtUp)
        }
    }

    @Test("tidemark migrate refuses orphans of a carried foreign key and names both choices")
    func cliForeignKeyChoices() throws {
        try withTemporaryDirectory { dir in
            let ddl = """
                CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
                CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));
                """
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try c.execute(ddl + "INSERT INTO users VALUES (1, 'a'); INSERT INTO orders VALUES (10, 1), (11, 7);")
            try c.close()
            let t = try Connection(path: dir + "/dst.db", mode: .readWriteCreate)
            try t.execute(ddl)
            try t.close()
            try writeText(dir + "/tidemark.yml", "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  users: {}\n  orders: {}\n")
            let r = try runTidemark(["migrate", "--plan", dir + "/tidemark.yml"], in: dir)
            #expect(r.status == 1)
            #expect(r.stderr.contains("orders -> orders: foreign key (user_id) REFERENCES users(id): 1 row, first keys (id=11)"), "\(r.stderr)")
            #expect(r.stderr.contains("fix or delete these rows in the source, or set `foreign_keys: drop`"), "\(r.stderr)")
            #expect(try captureObjects(dir + "/src.db").isEmpty)
        }
    }

    @Test("tidemark migrate lists each violated constraint and exits 1")
    func cliListsViolations() throws {
        try withTemporaryDirectory { dir in
            try Self.fixture(dir)
            let r = try runTidemark(["migrate", "--plan", dir + "/tidemark.yml"], in: dir)
            #expect(r.status == 1)
            #expect(r.stderr.contains("nothing was written"), "\(r.stderr)")
            #expect(r.stderr.contains("users -> users: unique UNIQUE (email): 2 rows, first keys (id=1), (id=2)"), "\(r.stderr)")
            #expect(try captureObjects(dir + "/src.db").isEmpty)
        }
    }
}
