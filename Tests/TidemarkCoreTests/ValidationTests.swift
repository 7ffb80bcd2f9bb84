import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// Bad input gets one clear error and changes nothing: no target file or log directory appears, an
/// existing target keeps its schema, rows and journal mode, and the source
/// gets no capture triggers or tables.
@Suite struct ValidationTests {
    static let sourceSQL = """
        CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, first_name TEXT, last_name TEXT);
        CREATE TABLE events(at INTEGER, message TEXT);
        CREATE TABLE lines(order_id INTEGER NOT NULL, line INTEGER NOT NULL, qty INTEGER, PRIMARY KEY (order_id, line)) WITHOUT ROWID;
        CREATE TABLE tags(name TEXT PRIMARY KEY, n INTEGER);
        INSERT INTO tags VALUES ('a', 1), (NULL, 2);
        INSERT INTO users VALUES (1, 'A@X', 'Ada', 'Lovelace'), (2, 'G@X', 'Grace', 'Hopper');
        INSERT INTO events VALUES (1, 'hello');
        INSERT INTO lines VALUES (1, 1, 3), (1, 2, 4);
        """

    static let accounts = """
          users:
            to: accounts
            columns:
              id: id
              email: lower(email)
              full_name: first_name || ' ' || last_name
        """

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var tables: String
        var sameFile = false
        /// SQL run before the migration in the target (the source when `sameFile`).
        var targetSQL: String?
        var code: MigrationError.Code
        var phrase: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "unknown source table", tables: "  customers: {}", code: .missingTable,
             phrase: "source table 'customers' does not exist"),
        Case(name: "unknown column in an expression", tables: """
              users:
                columns:
                  id: id
                  email: lower(mail)
            """, code: .missingColumn, phrase: "no such column: mail"),
        Case(name: "expression that does not compile", tables: """
              users:
                columns:
                  id: id
                  email: lower(email
            """, code: .badExpression, phrase: "does not compile"),
        Case(name: "expression with a second statement", tables: """
              users:
                columns:
                  id: id
                  email: "email FROM users; DROP TABLE users; SELECT 1"
            """, code: .badExpression, phrase: "single SQL expression"),
        Case(name: "table without a primary key", tables: "  events: {}", code: .noPrimaryKey,
             phrase: "has no PRIMARY KEY"),
        Case(name: "rows with a NULL primary key", tables: "  tags: {}", code: .noPrimaryKey,
             phrase: "primary key (name) is NULL"),
        Case(name: "key column left out", tables: """
              users:
                columns:
                  email: email
            """, code: .keyNotCarried, phrase: "must carry key column 'id' unchanged"),
        Case(name: "key column transformed", tables: """
              users:
                columns:
                  id: id + 1
                  email: email
            """, code: .keyNotCarried, phrase: "must carry key column 'id' unchanged"),
        Case(name: "one column of a composite key left out", tables: """
              lines:
                columns:
                  order_id: order_id
                  qty: qty
            """, code: .keyNotCarried, phrase: "must carry key column 'line' unchanged"),
        Case(name: "existing target table lacks a column", tables: accounts,
             targetSQL: "CREATE TABLE accounts(id INTEGER PRIMARY KEY, email TEXT);",
             code: .incompatibleTarget, phrase: "has no column 'full_name'"),
        Case(name: "existing target table keyed differently", tables: accounts,
             targetSQL: "CREATE TABLE accounts(id INTEGER, email TEXT PRIMARY KEY, full_name TEXT);",
             code: .incompatibleTarget, phrase: "primary key (email)"),
        Case(name: "existing target table holds rows", tables: accounts,
             targetSQL: "CREATE TABLE accounts(id INTEGER PRIMARY KEY, email TEXT, full_name TEXT); INSERT INTO accounts VALUES (9, 'x', 'y');",
             code: .targetNotEmpty, phrase: "already holds rows not written by this migration"),
        Case(name: "new table in the same file holds rows", tables: accounts, sameFile: true,
             targetSQL: "CREATE TABLE accounts(id INTEGER PRIMARY KEY, email TEXT, full_name TEXT); INSERT INTO accounts VALUES (9, 'x', 'y');",
             code: .targetNotEmpty, phrase: "already holds rows not written by this migration"),
        // An existing column is adopted only while it is empty.
        Case(name: "in place over an existing column with values", tables: """
              users:
                columns:
                  email: lower(email)
            """, sameFile: true, code: .badPlan, phrase: "in-place column 'email' of 'users' already exists and holds 2 non-NULL values"),
        Case(name: "second table bad after a good first one", tables: accounts + "\n  events: {}",
             code: .noPrimaryKey, phrase: "'events' has no PRIMARY KEY"),
    ]

    @Test("a bad plan is refused before anything changes", arguments: cases)
    func refusedWithoutChanges(_ c: Case) throws {
        try withTemporaryDirectory { dir in
            let source = dir + "/src.db"
            let target = c.sameFile ? source : dir + "/dst.db"
            let db = try Connection(path: source, mode: .readWriteCreate)
            try db.execute(Self.sourceSQL)
            try db.close()
            if let sql = c.targetSQL {
                let t = try Connection(path: target, mode: .readWriteCreate)
                try t.execute(sql)
                try t.close()
            }
            let planPath = dir + "/tidemark.yml"
            try writeText(planPath, """
                source: src.db
                target: \(c.sameFile ? "src.db" : "dst.db")
                log: changelog
                chunk_rows: 10
                tables:
                \(c.tables)
                """)
            let plan = try Plan.load(path: planPath)
            let entriesBefore = try directoryEntries(dir)
            let sourceBefore = try DatabaseImage(path: source)
            let targetBefore = try DatabaseImage(path: target)

            let error = try #require(throws: MigrationError.self) { _ = try Migrator.open(plan: plan) }
            #expect(error.code == c.code, "\(error)")
            #expect(error.message.contains(c.phrase), "message: \(error.message)")
            #expect(!error.message.contains("\n"))

            #expect(try directoryEntries(dir) == entriesBefore, "files appeared: no target file or log directory may be created")
            #expect(try DatabaseImage(path: source) == sourceBefore)
            #expect(try DatabaseImage(path: target) == targetBefore)
            #expect(try captureObjects(source).isEmpty, "capture must not be installed")
        }
    }

    @Test("a missing source database is refused and not created")
    func missingSource() throws {
        try withTemporaryDirectory { dir in
            try writeText(dir + "/tidemark.yml", """
                source: nothing.db
                target: dst.db
                log: changelog
                tables:
                  users: {}
                """)
            let plan = try Plan.load(path: dir + "/tidemark.yml")
            let error = try #require(throws: MigrationError.self) { _ = try Migrator.open(plan: plan) }
            #expect(error.code == .missingSource)
            #expect(error.message.contains("nothing.db does not exist"), "message: \(error.message)")
            #expect(try directoryEntries(dir) == ["tidemark.yml"])
            let status = try #require(throws: MigrationError.self) { _ = try MigrationStatus.read(plan: plan) }
            #expect(status.code == .missingSource)
        }
    }

    static let malformedPlans: [(String, String)] = [
        ("source: a.db\ntables: [unclosed", "is not valid YAML or JSON"),
        ("- just\n- a list", "must be a mapping"),
        ("source: a.db\ntarget: b.db\nlog: l\ntabels:\n  users: {}", "unknown key 'tabels'"),
        ("source: a.db\ntarget: b.db\nlog: l\n", "'tables' must name at least one table"),
        ("source: a.db\nlog: l\ntables:\n  users: {}", "'target' is missing"),
        ("target: b.db\nlog: l\ntables:\n  users: {}", "'source' is missing"),
        ("source: a.db\ntarget: b.db\nlog: l\nchunk_rows: 0\ntables:\n  users: {}", "chunk_rows must be an integer"),
        ("source: a.db\ntarget: b.db\nlog: l\ntables:\n  users:\n    colums: {}", "unknown key 'colums'"),
        ("source: a.db\ntarget: b.db\nlog: l\ntables:\n  users:\n    columns:\n      id: ''", "must be a SQL expression"),
        ("source: a.db\ntarget: b.db\nlog: l\ntables:\n  users: {}\n  Users: {}", "listed twice"),
        ("{\"source\": \"a.db\", \"target\": \"b.db\", \"log\": \"l\", \"tables\": {\"users\": 5}}", "must be a mapping"),
    ]

    @Test("a malformed plan is a bad-plan error naming the problem", arguments: malformedPlans)
    func malformedPlan(text: String, phrase: String) throws {
        try withTemporaryDirectory { dir in
            try writeText(dir + "/plan.yml", text)
            let error = try #require(throws: MigrationError.self) { _ = try Plan.load(path: dir + "/plan.yml") }
            #expect(error.code == .badPlan)
            #expect(error.message.contains(phrase), "message: \(error.message)")
            #expect(!error.message.contains("\n"))
            #expect(try directoryEntries(dir) == ["plan.yml"])
        }
    }

    @Test("tidemark migrate prints one error line and exits non-zero", .timeLimit(.minutes(10)))
    func commandLineErrors() throws {
        try withTemporaryDirectory { dir in
            let db = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try db.execute(Self.sourceSQL)
            try db.close()
            try writeText(dir + "/bad.yml", "source: src.db\ntables: [unclosed")
            try writeText(dir + "/nokey.yml", "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  events: {}\n")
            let before = try directoryEntries(dir)
            for (plan, phrase) in [("bad.yml", "not valid YAML"), ("nokey.yml", "has no PRIMARY KEY"), ("missing.yml", "cannot read plan")] {
                let result = try runTidemark(["migrate", "--plan", dir + "/" + plan], in: dir, timeoutSeconds: 60)
                #expect(result.status != 0)
                let lines = result.stderr.split(separator: "\n")
                #expect(lines.count == 1 && lines[0].hasPrefix("tidemark: ") && lines[0].contains(phrase), "stderr: \(result.stderr)")
            }
            // The child's output files aside, nothing appeared.
            #expect(try directoryEntries(dir).filter { !$0.hasPrefix("tidemark-") } == before)
            #expect(try captureObjects(dir + "/src.db").isEmpty)
        }
    }
}
