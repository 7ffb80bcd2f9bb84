import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// A plan expression means the same in the copy, which reads the source
/// table, and in replay, which has only a logged row image: column
/// collations and affinities apply to comparisons in both.
@Suite struct ExpressionTests {
    @Test("comparisons keep the source columns' collation and affinity on replay", arguments: [false, true])
    func collationAndAffinity(sameFile: Bool) throws {
        try withTemporaryDirectory { dir in
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try c.execute("""
                CREATE TABLE users(email TEXT COLLATE NOCASE PRIMARY KEY NOT NULL, code TEXT, n INTEGER, price REAL, tag COLLATE RTRIM, raw);
                INSERT INTO users VALUES ('admin@x', '10', 7, 2.5, 'a  ', X'00FF'), ('bob@x', '3', 2, 1, 'b', 'x');
                """)
            try writeText(dir + "/p.yml", """
                source: src.db
                target: \(sameFile ? "src.db" : "dst.db")
                log: log
                tables:
                  users:
                    to: users_v2
                    columns:
                      email: email
                      is_admin: email = 'ADMIN@X'
                      after_m: email >= 'M'
                      big_code: code > 5
                      big_n: n > '5'
                      pricey: price > '2'
                      tag_a: tag = 'a'
                      raw_is_blob: typeof(raw)
                """)
            let plan = try Plan.load(path: dir + "/p.yml")
            var migrator: Migrator? = try Migrator.open(plan: plan)
            _ = try migrator!.run(seconds: 30)
            try expectEqualTables(plan, "after the copy")
            // Replayed: updates of copied rows, and new rows.
            try c.execute("""
                UPDATE users SET n = n + 1, code = code || '0';
                INSERT INTO users VALUES ('ADMIN@y', '7', 30, 9, 'a ', X'01'), ('Zed@x', '99', '12', '4', 'A', 5);
                """)
            _ = try migrator!.run(seconds: 30)
            migrator = nil
            try expectEqualTables(plan, "after replay")
            let target = try Connection(path: plan.target, mode: .readOnly)
            // What SQLite says over the source table (code is TEXT: '100' > 5
            // compares text; tag is RTRIM: 'a  ' = 'a'). Over bare bound
            // values, is_admin, big_code and tag_a would differ.
            #expect(try target.values("SELECT email, is_admin, big_code, big_n, tag_a FROM users_v2 ORDER BY email") == [
                [.text("admin@x"), .integer(1), .integer(0), .integer(1), .integer(1)],
                [.text("ADMIN@y"), .integer(0), .integer(1), .integer(1), .integer(1)],
                [.text("bob@x"), .integer(0), .integer(0), .integer(0), .integer(0)],
                [.text("Zed@x"), .integer(0), .integer(1), .integer(1), .integer(0)],
            ])
        }
    }
}
