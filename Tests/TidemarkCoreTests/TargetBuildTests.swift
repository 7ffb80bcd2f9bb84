import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// The migrator's part of the complete target: secondary indexes built after the copy,
/// foreign keys off on the target connection, the preflight before anything
/// is written, the omission report and `migrate --dry-run`, a replayed change
/// the target refuses, and adopting an empty in-place column.
///
/// Until the carrying resolver lands, tests give the target schema by hand
/// (it is plain data) through `Migrator.open(…, schema:)`.
@Suite struct TargetBuildTests {
    typealias Fixture = LifecycleTests.Fixture

    static let usersSchema = "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT, score INTEGER);"
    static func usersRows(_ n: Int) -> String {
        "INSERT INTO users VALUES " + (1...n).map { "(\($0), 'u\($0)@x', 'n\($0)', \($0 % 7))" }.joined(separator: ", ") + ";"
    }
    static let accountsTable = TargetSchema.Table(
        source: "users", target: "accounts",
        createSQL: "CREATE TABLE accounts(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT, score INTEGER)")
    static let emailIndex = TargetSchema.Object(kind: .index, name: "accounts_email", table: "accounts",
                                                sql: "CREATE UNIQUE INDEX accounts_email ON accounts(lower(email))")
    static let scoreIndex = TargetSchema.Object(kind: .index, name: "accounts_score", table: "accounts",
                                                sql: "CREATE INDEX accounts_score ON accounts(score DESC, \"name\") WHERE score > 0")
    static var indexedSchema: TargetSchema { TargetSchema(tables: [accountsTable], indexes: [emailIndex, scoreIndex]) }

    static func fixture(_ dir: String, rows: Int = 40) throws -> Fixture {
        try Fixture(dir, schema: usersSchema, rows: usersRows(rows), tables: "  users:\n    to: accounts")
    }

    static func open(_ f: Fixture, schema: TargetSchema, options: MigratorOptions = MigratorOptions(),
                     preflight: Migrator.PreflightRunner? = nil) throws -> Migrator {
        try Migrator.open(plan: try f.plan, options: options, wrappingFeed: { $0 }, schema: schema, preflight: preflight)
    }

    static func schemaRows(_ path: String) throws -> [[Value]] {
        let c = try Connection(path: path, mode: .readOnly)
        defer { try? c.close() }
        return try c.values("SELECT name, state FROM _tidemark_schema WHERE kind = 'index' ORDER BY position")
    }

    static func indexSQL(_ path: String) throws -> [[Value]] {
        let c = try Connection(path: path, mode: .readOnly)
        defer { try? c.close() }
        return try c.values("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
    }

    // MARK: 1. Indexes after the bulk copy

    @Test("secondary indexes are built after their table's copy, each marked built, and queries use them")
    func indexesBuiltAfterCopy() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            let m = try Self.open(f, schema: Self.indexedSchema)
            defer { try? m.close() }
            var built: [String] = []
            var indexDuringCopy = false
            let summary = try m.run(seconds: 60) { p in
                if let b = p.buildingIndex { built.append(b.name) }
                if p.tables.contains(where: { $0.phase == .copying }) {
                    // Read while the copy goes on: no index may exist yet.
                    if let c = try? Connection(path: f.target, mode: .readOnly),
                       let n = try? c.integer("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'accounts_%'"), n > 0 {
                        indexDuringCopy = true
                    }
                }
            }
            #expect(summary.caughtUp)
            #expect(!indexDuringCopy, "an index existed while its table was being copied")
            #expect(built == ["accounts_email", "accounts_score"])
            #expect(try Self.indexSQL(f.target) == [[.text("accounts_email"), .text(Self.emailIndex.sql)],
                                                     [.text("accounts_score"), .text(Self.scoreIndex.sql)]])
            #expect(try Self.schemaRows(f.target) == [[.text("accounts_email"), .text("built")], [.text("accounts_score"), .text("built")]])
            let c = try Connection(path: f.target, mode: .readOnly)
            defer { try? c.close() }
            #expect(try c.values("PRAGMA integrity_check") == [[.text("ok")]])
            let plan = try c.values("EXPLAIN QUERY PLAN SELECT id FROM accounts WHERE lower(email) = 'u3@x'").map { "\($0.last!)" }.joined()
            #expect(plan.contains("accounts_email"), "query plan: \(plan)")
            #expect(try MigrationStatus.read(plan: try f.plan).pendingIndexes.isEmpty)
            try expectEqualTables(try f.plan, "after the index builds")
        }
    }

    #if DEBUG  // the seam inside the index build's transaction exists in debug builds only
    @Test("a crash inside an index build leaves it absent and pending; the migration is not caught up, and the next run builds it")
    func crashDuringIndexBuild() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            do {
                let m = try Self.open(f, schema: Self.indexedSchema)
                defer { try? m.close() }
                m.beforeIndexCommitForTesting = { name in
                    if name == "accounts_score" { throw TestFailure("crash before the commit of \(name)") }
                }
                #expect(throws: TestFailure.self) { _ = try m.run(seconds: 60) }
            }
            #expect(try Self.schemaRows(f.target) == [[.text("accounts_email"), .text("built")], [.text("accounts_score"), .text("pending")]])
            #expect(try Self.indexSQL(f.target).map { $0[0] } == [.text("accounts_email")])
            let status = try MigrationStatus.read(plan: try f.plan)
            let life = status.lifecycle(planArgument: "")
            #expect(status.pendingIndexes == ["accounts_score"])
            #expect(life.phase == .copying && life.summary.contains("accounts_score") && life.next?.contains("migrate") == true, "\(life)")
            let m = try Migrator.open(plan: try f.plan)
            defer { try? m.close() }
            #expect(m.pendingIndexes.map(\.name) == ["accounts_score"])
            #expect(try m.run(seconds: 60).caughtUp)
            #expect(try Self.schemaRows(f.target) == [[.text("accounts_email"), .text("built")], [.text("accounts_score"), .text("built")]])
            #expect(try Self.indexSQL(f.target).count == 2)
        }
    }
    #endif

    @Test("a unique index that duplicates refuse stops with one line naming index, table and the duplicate keys; fixed in the source, the next run builds it")
    func uniqueIndexWithDuplicates() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            // Distinct in the source, equal under the target's lower(email).
            try f.sql("UPDATE users SET email = 'Dup@X' WHERE id = 5; UPDATE users SET email = 'dup@x' WHERE id = 9;")
            do {
                // The preflight would refuse these rows up front; here they
                // stand for duplicates written after it passed (the build
                // is the last line of defence), so it is told all is clean.
                let m = try Self.open(f, schema: Self.indexedSchema, preflight: { _, _, _, _ in PreflightReport() })
                defer { try? m.close() }
                do {
                    _ = try m.run(seconds: 60)
                    Issue.record("the build of a unique index over duplicates succeeded")
                } catch let e as MigrationError {
                    #expect(e.code == .constraint)
                    #expect(!e.message.contains("\n"))
                    #expect(e.message.contains("accounts_email") && e.message.contains("accounts") && e.message.contains("lower(email)='dup@x' (2 rows)"), "\(e.message)")
                }
            }
            #expect(try Self.schemaRows(f.target).first == [.text("accounts_email"), .text("pending")])
            #expect(try Self.indexSQL(f.target).isEmpty)
            let life = try MigrationStatus.read(plan: try f.plan).lifecycle(planArgument: "")
            #expect(life.blocked?.contains("accounts_email") == true, "\(life)")
            try f.sql("UPDATE users SET email = 'other@x' WHERE id = 9")
            let m = try Migrator.open(plan: try f.plan)
            defer { try? m.close() }
            #expect(try m.run(seconds: 60).caughtUp)
            #expect(try Self.indexSQL(f.target).count == 2)
            #expect(try MigrationStatus.read(plan: try f.plan).state?.blocked == nil)
            try expectEqualTables(try f.plan, "after the fix")
        }
    }

    @Test("with indexesDuringCopy the indexes exist from the start and none is built afterwards")
    func indexesDuringCopy() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            var options = MigratorOptions()
            options.indexesDuringCopy = true
            let m = try Self.open(f, schema: Self.indexedSchema, options: options)
            defer { try? m.close() }
            var builds = 0
            #expect(try m.run(seconds: 60) { if $0.buildingIndex != nil { builds += 1 } }.caughtUp)
            #expect(builds == 0)
            #expect(try Self.indexSQL(f.target).count == 2)
            #expect(try Self.schemaRows(f.target).allSatisfy { $0[1] == .text("built") })
        }
    }

    @Test("an index's terms and WHERE are read from its SQL with quotes, strings and nested parentheses respected",
          arguments: [
            ("CREATE UNIQUE INDEX i ON t(email)", ["email"], nil),
            ("CREATE INDEX \"on\" ON \"t (x)\"(\"a,b\" COLLATE NOCASE DESC, lower(substr(c, 1, 2)) ASC) WHERE c <> ')' AND d IN (1, 2)",
             ["\"a,b\" COLLATE NOCASE", "lower(substr(c, 1, 2))"], "c <> ')' AND d IN (1, 2)"),
            ("CREATE UNIQUE INDEX [x] ON [t]([a], `b`)\nWHERE a > 0", ["[a]", "`b`"], "a > 0"),
          ] as [(String, [String], String?)])
    func indexTerms(_ sql: String, _ terms: [String], _ condition: String?) throws {
        let split = try #require(IndexDuplicates.split(sql))
        #expect(split.terms == terms)
        #expect(split.condition == condition)
        // They group a real table: two rows equal on the terms are one duplicate group.
        let c = try Connection(path: ":memory:", mode: .readWriteCreate)
        try c.execute(#"CREATE TABLE "t (x)"("a,b", c, d); INSERT INTO "t (x)" VALUES ('K', 'xy1', 1), ('k', 'xy2', 2), ('z', ')', 1);"#)
        if sql.contains("t (x)") {
            let groups = try IndexDuplicates.duplicates(table: "t (x)", terms: split.terms, condition: split.condition, in: c)
            #expect(groups.count == 1 && groups.first?.rows == 2 && groups.first?.values.last == .text("xy"), "\(groups)")
        }
    }

    // MARK: 2. Foreign keys off

    @Test("the target connection runs with foreign keys off: child rows copied before their parents arrive")
    func foreignKeysOff() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, schema: """
                CREATE TABLE parents(id INTEGER PRIMARY KEY, name TEXT);
                CREATE TABLE children(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents(id));
                """, rows: "INSERT INTO parents VALUES (1, 'a'), (2, 'b'); INSERT INTO children VALUES (1, 1), (2, 2), (3, 1);",
                tables: "  children: {}\n  parents: {}")
            let schema = TargetSchema(tables: [
                .init(source: "children", target: "children", createSQL: "CREATE TABLE children(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents(id))"),
                .init(source: "parents", target: "parents", createSQL: "CREATE TABLE parents(id INTEGER PRIMARY KEY, name TEXT)"),
            ])
            let plan = try f.plan
            let source = try Connection(path: f.source, mode: .readWrite)
            let sourceID = SourceID.random()
            let feed = try ShipperFeed(sourcePath: f.source, logPath: plan.log, sourceID: sourceID)
            defer { try? feed.close() }
            // A library user's connection that enforces foreign keys.
            let target = try Connection(path: f.target, mode: .readWriteCreate)
            try target.execute("PRAGMA foreign_keys = ON")
            let m = try Migrator(plan: plan, source: source, target: target, feed: feed, sourceID: sourceID.rawValue, options: MigratorOptions(),
                                 schema: schema, preflight: nil)
            #expect(try m.run(seconds: 60).caughtUp)
            #expect(try target.integer("PRAGMA foreign_keys") == 0)
            #expect(try target.values("PRAGMA foreign_key_check").isEmpty)
            #expect(try target.integer("SELECT count(*) FROM children") == 3)
        }
    }

    // MARK: 3. Preflight wiring

    static let violation = PreflightViolation(table: "users", targetTable: "accounts", kind: "not null", constraint: "name",
                                              rows: 7, keys: [[Field("id", .integer(3))], [Field("id", .integer(4))]])

    @Test("a refused preflight throws one summary line, a line per violation and what to do, and writes nothing anywhere")
    func preflightRefusalWritesNothing() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            let sourceBefore = try DatabaseImage(path: f.source)
            var ran = 0
            do {
                _ = try Self.open(f, schema: Self.indexedSchema, preflight: { _, _, schema, _ in
                    ran += 1
                    #expect(schema == Self.indexedSchema)
                    return PreflightReport(violations: [Self.violation, Self.violation])
                })
                Issue.record("migrate went ahead despite the preflight")
            } catch let e as MigrationError {
                #expect(e.code == .preflight)
                #expect(e.violations == [Self.violation, Self.violation])
                let lines = e.message.split(separator: "\n").map(String.init)
                // A summary line saying what to do, then one line per violation.
                #expect(lines.count == 3, "\(e.message)")
                #expect(lines.first == "preflight: 2 constraints of the target would refuse source rows; nothing was written — fix those rows in the source or change the plan, then run migrate again")
                #expect(lines.dropFirst().first == "  users -> accounts: not null name: 7 rows, first keys (id=3), (id=4)")
            }
            #expect(ran == 1)
            #expect(!FileManager.default.fileExists(atPath: f.target), "the target file was created")
            #expect(!FileManager.default.fileExists(atPath: dir + "/changelog"), "the log was created")
            #expect(try DatabaseImage(path: f.source) == sourceBefore, "the source changed (capture installed?)")
        }
    }

    @Test("the preflight runs in Migrator.init before TargetSetup: an open target gets no table and the source no capture")
    func preflightInInit() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            let plan = try f.plan
            let source = try Connection(path: f.source, mode: .readWrite)
            let sourceID = SourceID.random()
            let feed = try ShipperFeed(sourcePath: f.source, logPath: plan.log, sourceID: sourceID)
            defer { try? feed.close() }
            let target = try Connection(path: f.target, mode: .readWriteCreate)
            #expect(throws: MigrationError.self) {
                _ = try Migrator(plan: plan, source: source, target: target, feed: feed, sourceID: sourceID.rawValue, options: MigratorOptions(),
                                 schema: Self.indexedSchema, preflight: { _, _, _, _ in PreflightReport(violations: [Self.violation]) })
            }
            #expect(try target.values("SELECT name FROM sqlite_schema").isEmpty)
            #expect(try captureObjects(f.source).isEmpty)
        }
    }

    // MARK: 4. Omissions and the dry run

    @Test("what is not carried is stored with the schema and reported by every run")
    func omissionsReported() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            var schema = Self.indexedSchema
            schema.omissions = [.init(kind: "index", name: "idx_x", table: "users", reason: "names column email, which the plan drops")]
            do {
                let m = try Self.open(f, schema: schema)
                defer { try? m.close() }
                #expect(m.startedNow)
                #expect(m.notCarried == schema.omissions)
                _ = try m.run(seconds: 60)
            }
            let again = try Migrator.open(plan: try f.plan)
            defer { try? again.close() }
            #expect(!again.startedNow)
            #expect(again.notCarried == schema.omissions)
        }
    }

    @Test("migrate --dry-run prints what the target would get and creates nothing: no target file, log or capture")
    func dryRunChangesNothing() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            let before = try DatabaseImage(path: f.source)
            let text = try f.tidemark(["migrate", "--dry-run"])
            #expect(text.status == 0, "\(text.stderr)")
            #expect(text.stdout.contains("table users → accounts: CREATE TABLE"), "\(text.stdout)")
            #expect(text.stdout.contains("preflight: no source row breaks a constraint of the target"), "\(text.stdout)")
            let json = try f.tidemark(["migrate", "--dry-run", "--json"])
            #expect(json.status == 0, "\(json.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect(object?["dry_run"] as? Bool == true)
            #expect((object?["tables"] as? [[String: Any]])?.first?["target"] as? String == "accounts")
            #expect((object?["preflight"] as? [String: Any])?["clean"] as? Bool == true)
            #expect(!FileManager.default.fileExists(atPath: f.target))
            #expect(!FileManager.default.fileExists(atPath: dir + "/changelog"))
            #expect(try DatabaseImage(path: f.source) == before)
            let migrated = try f.tidemark(["migrate", "--json"])
            #expect(migrated.status == 0, "\(migrated.stderr)")
            let summary = try JSONSerialization.jsonObject(with: Data(migrated.stdout.utf8)) as? [String: Any]
            #expect((summary?["not_carried"] as? [Any])?.isEmpty == true, "\(migrated.stdout)")
            let later = try f.tidemark(["migrate", "--dry-run"])
            #expect(later.status == 0 && later.stdout.contains("already began"), "\(later.stdout)")
        }
    }

    // MARK: 5. A replayed change the target refuses

    @Test("a replayed change the target refuses stops migrate with one line, applies nothing of its batch, shows in status, and passes once the source row is fixed")
    func refusedReplayedChange() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, schema: "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);",
                                rows: "INSERT INTO users VALUES (10, 'x@x', 'X'), (11, 'y@y', 'Y'), (12, 'z@z', 'Z');",
                                tables: "  users: {}")
            // The target table made by hand, with a constraint the source lacks.
            let t = try Connection(path: f.target, mode: .readWriteCreate)
            try t.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT CONSTRAINT name_not_bad CHECK (name <> 'BAD'))")
            try t.close()
            let first = try f.tidemark(["migrate"])
            try #require(first.status == 0, "\(first.stderr)")
            try f.sql("INSERT INTO users VALUES (20, 'n@n', 'fine'); UPDATE users SET name = 'BAD' WHERE id = 11; UPDATE users SET name = 'Z2' WHERE id = 12;")
            var lsn = 0
            for attempt in 1...2 {
                let refused = try f.tidemark(["migrate"])
                #expect(refused.status == 1, "attempt \(attempt): \(refused.stdout) \(refused.stderr)")
                let line = refused.stderr.trimmingCharacters(in: .newlines)
                #expect(!line.contains("\n"), "more than one line: \(line)")
                #expect(line.contains("update of users id=11") && line.contains("name_not_bad"), "attempt \(attempt): \(line)")
                #expect(try rows(f.target, "SELECT id, name FROM users ORDER BY id") == [
                    [.integer(10), .text("X")], [.integer(11), .text("Y")], [.integer(12), .text("Z")],
                ], "attempt \(attempt): something of the refused batch was applied")
                let status = try f.tidemark(["status", "--json"])
                let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
                let refusedJSON = object?["refused"] as? [String: Any]
                lsn = refusedJSON?["lsn"] as? Int ?? -1
                #expect(lsn > 0 && line.contains("LSN \(lsn) "), "status \(status.stdout), line \(line)")
                #expect((refusedJSON?["message"] as? String)?.contains("name_not_bad") == true)
                #expect((object?["next"] as? String)?.contains("fix the row in the source") == true, "\(status.stdout)")
            }
            let text = try f.tidemark(["status"])
            #expect(text.stdout.contains("blocked: the target refused a step at LSN \(lsn)"), "\(text.stdout)")
            // The fix is a later change of the same row: it replaces the refused one.
            try f.sql("UPDATE users SET name = 'fixed' WHERE id = 11")
            let fixed = try f.tidemark(["migrate"])
            #expect(fixed.status == 0, "\(fixed.stderr)")
            #expect(try rows(f.target, "SELECT id, name FROM users ORDER BY id") == [
                [.integer(10), .text("X")], [.integer(11), .text("fixed")], [.integer(12), .text("Z2")], [.integer(20), .text("fine")],
            ])
            let after = try JSONSerialization.jsonObject(with: Data(try f.tidemark(["status", "--json"]).stdout.utf8)) as? [String: Any]
            #expect(after?["refused"] is NSNull, "\(String(describing: after))")
        }
    }

    @Test("a refused change that a later change of another row makes acceptable is applied at the batch's end, in the same transaction")
    func refusedChangeRetriedAtBatchEnd() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, schema: "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);",
                                rows: "INSERT INTO users VALUES (10, 'x@x', 'X'), (11, 'y@y', 'Y');", tables: "  users: {}")
            let t = try Connection(path: f.target, mode: .readWriteCreate)
            try t.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT UNIQUE)")
            try t.close()
            try f.migrateToCaughtUp()
            // The source has no UNIQUE(name): 11 takes 'X' before 10 lets it go.
            try f.sql("UPDATE users SET name = 'X' WHERE id = 11; UPDATE users SET name = 'Z' WHERE id = 10;")
            try f.migrateToCaughtUp()
            #expect(try rows(f.target, "SELECT id, name FROM users ORDER BY id") == [[.integer(10), .text("Z")], [.integer(11), .text("X")]])
        }
    }

    @Test("with --json, a refused migrate prints its error as one JSON object on stderr")
    func jsonError() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.fixture(dir)
            try FileManager.default.removeItem(atPath: f.source)
            let r = try f.tidemark(["migrate", "--json"])
            #expect(r.status == 1)
            let object = try JSONSerialization.jsonObject(with: Data(r.stderr.utf8)) as? [String: Any]
            let error = object?["error"] as? [String: Any]
            #expect(error?["code"] as? String == "source_not_found", "\(r.stderr)")
            #expect((error?["message"] as? String)?.contains("does not exist") == true)
        }
    }

    // MARK: 7. In-place adoption

    static func inPlace(_ dir: String) throws -> Fixture {
        let f = try Fixture(dir, schema: "CREATE TABLE people(id INTEGER PRIMARY KEY, first TEXT, last TEXT); ALTER TABLE people ADD COLUMN full TEXT;",
                            rows: "INSERT INTO people(id, first, last) VALUES " + (1...20).map { "(\($0), 'f\($0)', 'l\($0)')" }.joined(separator: ", ") + ";",
                            tables: "  people:\n    columns:\n      full: \"first || ' ' || last\"")
        try writeText(f.planPath, "source: src.db\ntarget: src.db\nlog: changelog\nchunk_rows: 4\ntables:\n  people:\n    columns:\n      full: \"first || ' ' || last\"\n")
        return f
    }

    @Test("an existing, empty in-place column is adopted: filled, recorded apart from added columns, and kept (emptied) by an abandon")
    func adoptsEmptyColumn() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.inPlace(dir)
            try f.migrateToCaughtUp()
            #expect(try rows(f.source, "SELECT full FROM people WHERE id = 7") == [[.text("f7 l7")]])
            #expect(try rows(f.source, "SELECT added_columns, adopted_columns FROM _tidemark_migration_tables") == [[.text(""), .text("full")]])
            try f.sql("UPDATE people SET first = 'g7' WHERE id = 7")
            try f.migrateToCaughtUp()
            #expect(try rows(f.source, "SELECT full FROM people WHERE id = 7") == [[.text("g7 l7")]])
            let report = try Rollback.run(plan: try f.plan)
            #expect(report.kind == .abandoned)
            #expect(try rows(f.source, "SELECT count(*) FROM pragma_table_info('people') WHERE name = 'full'") == [[.integer(1)]])
            #expect(try rows(f.source, "SELECT count(*) FROM people WHERE full IS NOT NULL") == [[.integer(0)]])
            // Emptied, it is adopted again.
            try f.migrateToCaughtUp()
            #expect(try rows(f.source, "SELECT full FROM people WHERE id = 7") == [[.text("g7 l7")]])
        }
    }

    @Test("an existing in-place column that holds values is refused, naming it and the count, and nothing is written")
    func refusesNonEmptyColumn() throws {
        try withTemporaryDirectory { dir in
            let f = try Self.inPlace(dir)
            try f.sql("UPDATE people SET full = 'kept' WHERE id IN (3, 4)")
            let before = try DatabaseImage(path: f.source)
            do {
                _ = try Migrator.open(plan: try f.plan)
                Issue.record("a non-empty column was adopted")
            } catch let e as MigrationError {
                #expect(e.code == .badPlan)
                #expect(e.message.contains("'full'") && e.message.contains("2 non-NULL values"), "\(e.message)")
            }
            #expect(try DatabaseImage(path: f.source) == before)
        }
    }
}

func rows(_ path: String, _ sql: String) throws -> [[Value]] {
    let c = try Connection(path: path, mode: .readOnly)
    defer { try? c.close() }
    return try c.values(sql)
}
