import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The PostgreSQL type preflight over real SQLite files: values PostgreSQL
/// cannot hold exactly are violations naming table, column, first keys and
/// the fix; the observed storage classes type the untyped columns.
@Suite struct PostgresPreflightTests {
    static func run(_ sql: String, _ tablesYAML: String, keys: Int = 5) throws
        -> (report: PreflightReport, observedClasses: [String: [String: String]]) {
        try PGSchemaFixture.withDirectory { dir in
            let s = try PGSchemaFixture.source(sql, tablesYAML, in: dir)
            defer { try? s.connection.close() }
            return try PostgresPreflight.run(plan: s.plan, mappings: s.mappings, schema: s.schema, source: s.connection,
                                             parseCheck: nil, keysPerViolation: keys)
        }
    }

    static func lines(_ r: PreflightReport) -> [String] { r.violations.map(\.line) }

    @Test func storageClassesTextAndNumeric() throws {
        let (report, observed) = try Self.run("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, n NUMERIC, u, b BLOB);
            INSERT INTO t VALUES (1, 1, 5, 'ok', 0.1, 1, x'00');
            INSERT INTO t VALUES (2, 'abc', -0.0, CAST(x'610062' AS TEXT), 9e999, 't', NULL);
            INSERT INTO t VALUES (3, 2, 9e999, CAST(x'ff' AS TEXT), 'abc', 3, x'01');
            INSERT INTO t VALUES (4, x'01', -9e999, 'x', -0.0, 4, 'text');
            INSERT INTO t VALUES (5, NULL, NULL, CAST(x'c3a9' AS TEXT), 12345678901234567890, NULL, NULL);
            """, "  t: {to: things}")
        #expect(Self.lines(report) == [
            "t -> things: type i (bigint): blob values: 1 row, first keys (id=4); correct those rows in the source, or give the column a PostgreSQL type that holds them (the plan's type:, or create:)",
            "t -> things: type i (bigint): text values: 1 row, first keys (id=2); correct those rows in the source, or give the column a PostgreSQL type that holds them (the plan's type:, or create:)",
            "t -> things: text s: text with a NUL character: 1 row, first keys (id=2); PostgreSQL text cannot hold NUL (U+0000): strip it from those rows (replace(col, char(0), '')) or store them as BLOBs",
            "t -> things: text s: text that is not valid UTF-8: 1 row, first keys (id=3); PostgreSQL text must be valid UTF-8: correct those rows' bytes, or store them as BLOBs (CAST(col AS BLOB))",
            "t -> things: type n (numeric): text values: 1 row, first keys (id=3); correct those rows in the source, or give the column a PostgreSQL type that holds them (the plan's type:, or create:)",
            "t -> things: type n (numeric): infinity or -0.0, which numeric cannot hold: 1 row, first keys (id=2); correct those rows, or declare the column REAL (double precision) in the source or the plan",
            "t -> things: type u (no type): mixed storage classes (3 integer, 1 text): 1 row, first keys (id=2); PostgreSQL columns hold one type: correct those rows so the column holds only integer values, or give the column a plan type: that holds them (e.g. type: text)",
            "t -> things: type b (type BLOB): mixed storage classes (1 text, 2 blob): 1 row, first keys (id=4); PostgreSQL columns hold one type: correct those rows so the column holds only blob values, or give the column a plan type: that holds them (e.g. type: text)",
        ])
        #expect(report.violations.allSatisfy { $0.keys.allSatisfy { $0.map(\.name) == ["id"] } })
        #expect(report.rowsChecked == 5)
        #expect(observed["things"]?["u"] == "integer")
        #expect(observed["things"]?["b"] == "blob")
        #expect(observed["things"]?["r"] == "real")
        #expect(report.unchecked.isEmpty)
    }

    @Test func cleanSourceHasNoViolations() throws {
        let (report, observed) = try Self.run("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, r REAL, s TEXT, n NUMERIC, u, e, b BLOB);
            INSERT INTO t VALUES (1, 5, 'é', 0.1, 1.5, NULL, x'00'), (2, -0.0, '', 7, -0.0, NULL, NULL), (3, 9e999, 'x', 1e300, 2.5, NULL, x'');
            """, "  t: {}")
        #expect(report.isClean, "\(report.message)")
        #expect(observed["t"] == ["id": "integer", "r": "real", "s": "text", "n": "real", "u": "real", "e": "null", "b": "blob"])
    }

    @Test func computedColumnsByTheirPlanType() throws {
        let (report, _) = try Self.run("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, r REAL, flag INTEGER, big INTEGER, s TEXT, b BLOB);
            INSERT INTO t VALUES (1, 0.1, 0, 10, '2024-01-01', NULL);
            INSERT INTO t VALUES (2, 0.0, 1, 9007199254740993, 'x', x'00');
            INSERT INTO t VALUES (3, 2.0, 2, -9007199254740992, NULL, NULL);
            """, """
              t:
                columns:
                  id: id
                  n: {expr: "r * -1", type: NUMERIC}
                  ok: {expr: "flag + 0", type: boolean}
                  d: {expr: "big + 0", type: REAL}
                  ts: {expr: "coalesce(b, s)", type: timestamptz}
            """)
        #expect(Self.lines(report) == [
            "t -> t: type n (numeric): infinity or -0.0, which numeric cannot hold: 1 row, first keys (id=2); correct those rows, or declare the column REAL (double precision) in the source or the plan",
            "t -> t: type ok (boolean): values other than the integers 0 and 1: 1 row, first keys (id=3); correct those rows, or map the column with an expression giving 0 or 1",
            "t -> t: type d (double precision): integers beyond 2^53, which a double cannot hold exactly: 1 row, first keys (id=2); correct those rows in the source, or give the column a PostgreSQL type that holds them (the plan's type:, or create:)",
            "t -> t: type ts (timestamptz): blob values: 1 row, first keys (id=2); correct those rows in the source, or give the column a PostgreSQL type that holds them (the plan's type:, or create:)",
        ])
        #expect(report.unchecked == ["t -> t: values of ts are not checked to be valid timestamptz (no PostgreSQL server given)"])
    }

    @Test func keysAreCappedAndCompositeInKeyOrder() throws {
        var sql = "CREATE TABLE k(a TEXT, b INTEGER, v INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID;"
        for i in (0..<7).reversed() { sql += "INSERT INTO k VALUES ('k\(i % 2)', \(i), 'bad');" }
        sql += "INSERT INTO k VALUES ('k9', 1, 5);"
        let (report, _) = try Self.run(sql, "  k: {}", keys: 3)
        let v = try #require(report.violations.first)
        #expect(report.violations.count == 1)
        #expect(v.rows == 7)
        #expect(v.keys == [[Field("a", .text("k0")), Field("b", .integer(0))],
                           [Field("a", .text("k0")), Field("b", .integer(2))],
                           [Field("a", .text("k0")), Field("b", .integer(4))]])
    }

    @Test func observedClassesTypeTheUntypedColumns() throws {
        let (p, report) = try PGSchemaFixture.translateObserved("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, a, b, c BLOB, d, e ANYTHING);
            INSERT INTO t VALUES (1, x'01', 1.5, NULL, 'x', 1), (2, x'', 2.5, NULL, NULL, 2.5);
            """, "  t: {}")
        #expect(report.isClean)
        #expect(p.table("t")?.columns.map(\.type) == ["bigint", "bytea", "double precision", "bytea", "text", "numeric"])
    }

    @Test func utf8Validator() {
        func valid(_ b: [UInt8]) -> Bool { b.withUnsafeBytes { PostgresPreflight.isValidUTF8($0) } }
        #expect(valid(Array("aé€😀".utf8)))
        #expect(!valid([0xC0, 0x80]))            // overlong NUL
        #expect(!valid([0xED, 0xA0, 0x80]))      // surrogate
        #expect(!valid([0xF4, 0x90, 0x80, 0x80])) // beyond U+10FFFF
        #expect(!valid([0xE2, 0x82]))            // truncated
        #expect(!valid([0x80]))
        // Seeded random bytes agree with Swift's own validation.
        var seed: UInt64 = 0x5eed_1234
        print("utf8Validator seed \(seed)")
        for _ in 0..<2000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int(seed % 8) {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: seed >> 56))
            }
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            #expect(valid(bytes) == (String(validating: bytes, as: UTF8.self) != nil), "\(bytes)")
        }
    }
}
