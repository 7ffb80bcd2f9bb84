import Testing
import TidemarkLog
@testable import TidemarkPostgres
import TidemarkTestSupport

/// A connection to a fresh database of the shared test cluster.
private func clientConnection(_ prefix: String = "client") throws -> (PGConnection, String) {
    let server = try PostgresServer.shared()
    let db = try server.createDatabase(prefix)
    return (try PGConnection(server.conninfo(database: db)), db)
}

/// Values at the edges of every storage class, one per row: (id, value).
private let edgeReals: [Double] = [0.0, -0.0, 0.1 + 0.2, 1.0 / 3.0, .nan, .infinity, -.infinity,
                                   .greatestFiniteMagnitude, .leastNonzeroMagnitude, -1e-300, 123456789.12345678]
private let edgeInts: [Int64] = [0, 1, -1, .max, .min, Int64(Int32.max) + 1]
private let megabyte: [UInt8] = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
private let edgeTexts: [String] = ["", "a", "héllo wörld ☃ 𝄞", "tab\there\nnewline\\back'quote\"", String(repeating: "x", count: 100_000)]
private let edgeBlobs: [[UInt8]] = [[], [0], [0, 255, 1, 254], megabyte]

@Suite struct ClientTests {
    @Test func connectExecuteQuery() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        #expect(c.serverVersionNumber >= 120000)
        try c.execute("CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        let rows = try c.query("SELECT id, v FROM t WHERE id = $1", [.value(.integer(1))])
        #expect(rows.columnNames == ["id", "v"])
        #expect(rows.columnTypes == [20, 25])
        #expect(rows.rows == [[.integer(1), .text("a")]])
        let n = try c.transaction { () throws -> Int in
            try c.query("INSERT INTO t VALUES ($1, $2)", [.value(.integer(2)), .value(.text("b"))]).affectedRows
        }
        #expect(n == 1)
        let copied = try c.copyIn("COPY t (id, v) FROM STDIN (FORMAT binary)") { buf in
            for i in 3...5 {
                buf.beginRow(fieldCount: 2)
                buf.int8(Int64(i))
                buf.text("x\(i)")
            }
        }
        #expect(copied == 3)
        #expect(try c.query("SELECT count(*) FROM t").rows == [[.integer(5)]])
        #expect(try c.query("UPDATE t SET v = v || '!' WHERE id > 1").affectedRows == 4)
    }

    /// Every storage class through binary COPY and back through a binary query.
    @Test func edgeValuesThroughCopy() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE e (id bigint, i bigint, r double precision, t text, b bytea)")
        var expected: [[Value]] = []
        var id: Int64 = 0
        func row(_ v: [Value]) { id += 1; expected.append([.integer(id)] + v) }
        for i in edgeInts { row([.integer(i), .null, .null, .null]) }
        for r in edgeReals { row([.null, .real(r), .null, .null]) }
        for t in edgeTexts { row([.null, .null, .text(t), .null]) }
        for b in edgeBlobs { row([.null, .null, .null, .blob(b)]) }
        row([.null, .null, .null, .null])
        let copied = try c.copyIn("COPY e FROM STDIN (FORMAT binary)") { buf in
            for r in expected {
                buf.beginRow(fieldCount: r.count)
                for v in r { buf.value(v) }
            }
        }
        #expect(copied == expected.count)
        let back = try c.query("SELECT id, i, r, t, b FROM e ORDER BY id").rows
        #expect(back.count == expected.count)
        for (got, want) in zip(back, expected) { #expect(got == want, "row \(want[0])") }
        // The sign bit of -0.0 and the exact 17-digit double survive on the server too.
        #expect(try c.query("SELECT r::text FROM e WHERE r = 0.30000000000000004").rows == [[.text("0.30000000000000004")]])
        #expect(try c.query("SELECT count(*) FROM e WHERE r = 0 AND r::text = '-0'").rows == [[.integer(1)]])
    }

    /// The same values as query parameters (binary int8/float8/text/bytea).
    @Test func edgeValuesThroughParams() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE e (id bigint, i bigint, r double precision, t text, b bytea)")
        var values: [Value] = edgeInts.map { .integer($0) } + edgeReals.map { .real($0) }
        values += edgeTexts.map { .text($0) } + edgeBlobs.map { .blob($0) } + [.null]
        for (n, v) in values.enumerated() {
            let column: String
            switch v {
            case .integer: column = "i"
            case .real: column = "r"
            case .text: column = "t"
            case .blob: column = "b"
            case .null: column = "t"
            }
            try c.query("INSERT INTO e (id, \(column)) VALUES ($1, $2)", [.value(.integer(Int64(n))), .value(v)])
            // Echo straight back as well: the parameter's own type is kept.
            let echoed = try c.query("SELECT $1", [.value(v)]).rows
            if case .null = v { #expect(echoed == [[.null]]) } else { #expect(echoed == [[v]]) }
        }
        let back = try c.query("SELECT coalesce(i::text, ''), i, r, t, b FROM e ORDER BY id").rows
        for (row, v) in zip(back, values) {
            #expect(row[1...].contains(v) || { if case .null = v { return row[1...].allSatisfy { $0 == .null } }; return false }())
        }
        // Prepared with declared non-matching types: values go as text and the server converts.
        try c.execute("CREATE TABLE p (a int4, b int2, c numeric, d real, e boolean, f jsonb, g bytea)")
        try c.prepare("ins", "INSERT INTO p VALUES ($1, $2, $3, $4, $5, $6, $7)", types: [nil, nil, nil, nil, nil, nil, nil])
        _ = try c.execPrepared("ins", [.value(.integer(2147483647)), .value(.integer(-32768)), .value(.real(0.1 + 0.2)),
                                      .value(.real(1.5)), .value(.integer(1)), .textual("{\"k\": [1, 2]}"), .value(.text("x\\y"))])
        #expect(try c.query("SELECT a, b, c, d, e, f, g FROM p").rows ==
                [[.integer(2147483647), .integer(-32768), .text("0.30000000000000004"), .real(1.5), .integer(1),
                  .text("{\"k\": [1, 2]}"), .blob(Array("x\\y".utf8))]])
        // Out of range for int4: sent as text, the server refuses.
        let error = #expect(throws: PGError.self) {
            try c.execPrepared("ins", [.value(.integer(1 << 40)), .null, .null, .null, .null, .null, .null])
        }
        #expect(error?.sqlState == "22003")
    }

    @Test func otherTypesDecode() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        let r = try c.query("""
            SELECT 7::int2, 8::int4, 1.5::float4, true, 'n'::name, 'v'::varchar, 'c'::char(3), '{"a":1}'::json,
                   '{"a": 1}'::jsonb, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, 42::oid,
                   '2000-01-01 00:00:01+00'::timestamptz, '2000-01-02'::date, '2000-01-01 00:00:00.000002'::timestamp,
                   '12.50'::numeric, 'NaN'::numeric, ARRAY[1,2]::text, $1::text
            """, [.textual("x")]).rows
        #expect(r == [[.integer(7), .integer(8), .real(1.5), .integer(1), .text("n"), .text("v"), .text("c  "),
                       .text("{\"a\":1}"), .text("{\"a\": 1}"), .text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), .integer(42),
                       .integer(1_000_000), .integer(1), .integer(2), .text("12.50"), .text("NaN"), .text("{1,2}"), .text("x")]])
        if c.serverVersionNumber >= 140000 {
            #expect(try c.query("SELECT 'Infinity'::numeric, '-Infinity'::numeric, pg_current_xact_id()::xid8 > '0'::xid8").rows
                    == [[.text("Infinity"), .text("-Infinity"), .integer(1)]])
        }
    }

    /// numeric(decimal:) through COPY, read back binary (PGNumeric.decode)
    /// and as PostgreSQL's own text: all three agree exactly.
    @Test func numericExact() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE n (id int, v numeric)")
        var cases: [(String, String)] = [
            ("0", "0"), ("-0", "0"), ("0.000", "0.000"), ("1", "1"), ("-123.4500", "-123.4500"), ("1e-5", "0.00001"),
            ("1E5", "100000"), ("+.5", "0.5"), ("1.", "1"), ("1.5e3", "1500"), ("-2.50e-3", "-0.00250"),
            ("9999", "9999"), ("10000", "10000"), ("0.0001", "0.0001"), ("0.00001234", "0.00001234"),
            ("123456789012345678901234567890.123456789012345678901234567890", "123456789012345678901234567890.123456789012345678901234567890"),
            ("1e20", "100000000000000000000"), ("100000000.000000001", "100000000.000000001"), ("NaN", "NaN"),
            ("0.30000000000000004", "0.30000000000000004"), ("-9223372036854775808", "-9223372036854775808"),
        ]
        if c.serverVersionNumber >= 140000 { cases += [("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("-inf", "-Infinity")] }
        let n = try c.copyIn("COPY n FROM STDIN (FORMAT binary)") { buf in
            for (i, (input, _)) in cases.enumerated() {
                buf.beginRow(fieldCount: 2)
                buf.int4(Int32(i))
                try buf.numeric(decimal: input)
            }
        }
        #expect(n == cases.count)
        let rows = try c.query("SELECT v, v::text FROM n ORDER BY id").rows
        for (row, (input, want)) in zip(rows, cases) {
            #expect(row == [.text(want), .text(want)], "input \(input)")
        }
        for garbage in ["", "abc", "1.2.3", "1e", "--1", " 1", "1 ", "0x10", "1e+", "e5", ".", "1,5", "١"] {
            #expect(throws: PGError.self, "'\(garbage)'") { _ = try PGNumeric.encode(decimal: garbage) }
        }
    }

    @Test func serverErrorsCarrySQLState() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE u (id bigint PRIMARY KEY)")
        try c.query("INSERT INTO u VALUES ($1)", [.value(.integer(1))])
        let dup = #expect(throws: PGError.self) { try c.query("INSERT INTO u VALUES ($1)", [.value(.integer(1))]) }
        #expect(dup?.sqlState == "23505")
        #expect(dup?.detail == "Key (id)=(1) already exists.")
        #expect(dup?.connectionLost == false)
        #expect(dup.map { !$0.description.contains("\n") && $0.description.hasSuffix("(SQLSTATE 23505)") } == true)
        let syntax = #expect(throws: PGError.self) { try c.execute("SELEC 1") }
        #expect(syntax?.sqlState == "42601")
        // The connection is still usable after errors.
        #expect(try c.query("SELECT 1").rows == [[.integer(1)]])
        // A COMMIT the server turns into a ROLLBACK is an error.
        let swallowed = #expect(throws: PGError.self) {
            try c.transaction {
                try c.query("INSERT INTO u VALUES (2)")
                _ = try? c.execute("SELEC 1")
            }
        }
        #expect(swallowed?.message.contains("rolled back") == true)
        // Nested transaction: a savepoint; the inner failure alone rolls back.
        try c.transaction {
            try c.query("INSERT INTO u VALUES (3)")
            _ = try? c.transaction { try c.query("INSERT INTO u VALUES (1)") }
            try c.query("INSERT INTO u VALUES (4)")
        }
        #expect(try c.query("SELECT id FROM u ORDER BY id").rows == [[.integer(1)], [.integer(3)], [.integer(4)]])
    }

    @Test func wrongPasswordAndMissingDatabase() throws {
        let server = try PostgresServer.shared()
        let good = try PGConnection(server.conninfo(user: "tidemark_pw") + " password=secret-pw")
        #expect(try good.query("SELECT current_user").rows == [[.text("tidemark_pw")]])
        good.close()
        let wrong = #expect(throws: PGError.self) {
            _ = try PGConnection(server.conninfo(user: "tidemark_pw") + " password=wrong-pw-4711")
        }
        let text = wrong?.description ?? ""
        #expect(text.contains("password authentication failed"))
        #expect(!text.contains("wrong-pw-4711"))
        #expect(!text.contains("\n"))
        let uri = "postgresql://tidemark_pw:wrong%2Dpw%2D4711@/postgres?host=\(server.socketDirectory)"
        let wrongURI = #expect(throws: PGError.self) { _ = try PGConnection(uri) }
        #expect(wrongURI.map { !$0.description.contains("wrong-pw-4711") && !$0.description.contains("wrong%2Dpw") } == true)
        let missing = #expect(throws: PGError.self) {
            _ = try PGConnection(server.conninfo(database: "no_such_db_4711"))
        }
        #expect(missing?.description.contains("database \"no_such_db_4711\" does not exist") == true)
        #expect(missing.map { !$0.description.contains("\n") } == true)
    }

    @Test func pipelineOfTenThousandPreparedInserts() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE p (id bigint PRIMARY KEY, r double precision, t text)")
        try c.prepare("ins", "INSERT INTO p VALUES ($1, $2, $3)", types: [.int8, .float8, .text])
        try c.transaction {
            try c.withPipeline { p in
                for i in 0..<10_000 {
                    try p.sendPrepared("ins", [.value(.integer(Int64(i))), .value(.real(Double(i) / 3)), .value(.text("row \(i)"))])
                }
            }
        }
        #expect(try c.query("SELECT count(*), sum(id) FROM p").rows == [[.integer(10_000), .text("49995000")]])
        #expect(try c.query("SELECT r FROM p WHERE id = 7").rows == [[.real(7.0 / 3)]])
        // Unprepared statements in a pipeline too.
        try c.withPipeline { p in
            for i in 10_000..<10_010 { try p.send("INSERT INTO p (id) VALUES ($1)", [.value(.integer(Int64(i)))]) }
        }
        #expect(try c.query("SELECT count(*) FROM p").rows == [[.integer(10_010)]])
    }

    @Test func pipelineErrorRollsBack() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE p (id bigint PRIMARY KEY)")
        try c.prepare("ins", "INSERT INTO p VALUES ($1)", types: [.int8])
        // In a transaction; the duplicate is in the second batch of 1000.
        var sentAfterError = 0
        let inTransaction = #expect(throws: PGError.self) {
            try c.transaction {
                try c.withPipeline { p in
                    for i in 0..<5000 {
                        try p.sendPrepared("ins", [.value(.integer(i == 1500 ? 3 : Int64(i)))])
                        if i > 1500 { sentAfterError += 1 }
                    }
                }
            }
        }
        #expect(inTransaction?.sqlState == "23505")
        #expect(sentAfterError < 1000, "the pipeline stops queueing after the batch holding the error")
        #expect(try c.query("SELECT count(*) FROM p").rows == [[.integer(0)]])
        // Without a transaction: the pipeline is one implicit transaction.
        let implicit = #expect(throws: PGError.self) {
            try c.withPipeline { p in
                for i in 0..<10 { try p.sendPrepared("ins", [.value(.integer(i == 5 ? 1 : Int64(i)))]) }
            }
        }
        #expect(implicit?.sqlState == "23505")
        #expect(try c.query("SELECT count(*) FROM p").rows == [[.integer(0)]])
        // A body that throws leaves nothing behind either.
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try c.withPipeline { p in
                for i in 0..<10 { try p.sendPrepared("ins", [.value(.integer(Int64(i)))]) }
                throw Stop()
            }
        }
        #expect(try c.query("SELECT count(*) FROM p").rows == [[.integer(0)]])
        #expect(try c.query("SELECT 1").rows == [[.integer(1)]])
    }

    /// The backend killed from another session mid-COPY: connectionLost.
    @Test func terminatedMidCopy() throws {
        let (c, db) = try clientConnection()
        defer { c.close() }
        let killer = try PGConnection(try PostgresServer.shared().conninfo(database: db))
        defer { killer.close() }
        try c.execute("CREATE TABLE big (id bigint, payload bytea)")
        let pid = c.backendPID
        let payload = [UInt8](repeating: 0xAB, count: 4096)
        let error = #expect(throws: PGError.self) {
            _ = try c.copyIn("COPY big FROM STDIN (FORMAT binary)") { buf in
                for i in 0..<20_000 {
                    if i == 1000 {
                        let killed = try killer.query("SELECT pg_terminate_backend($1::int)", [.value(.integer(Int64(pid)))]).rows
                        #expect(killed == [[.integer(1)]])
                    }
                    buf.beginRow(fieldCount: 2)
                    buf.int8(Int64(i))
                    buf.bytea(payload)
                }
            }
        }
        #expect(error?.connectionLost == true)
        #expect(c.isUsable == false)
        #expect(try killer.query("SELECT count(*) FROM big").rows == [[.integer(0)]])
    }

    @Test func textCopyEscapes() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE x (id int, t text, j jsonb, u uuid)")
        let texts: [String?] = ["plain", "tab\there", "line\nbreak\r", "back\\slash", "\\N", nil, "", "ünï"]
        let n = try c.copyInText("COPY x FROM STDIN") { buf in
            for (i, t) in texts.enumerated() {
                buf.row([String(i), t, "{\"i\": \(i)}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1\(i)"])
            }
        }
        #expect(n == texts.count)
        let back = try c.query("SELECT t, j FROM x ORDER BY id").rows
        #expect(back.map { $0[0] } == texts.map { $0.map(Value.text) ?? .null })
        #expect(back.first?[1] == .text("{\"i\": 0}"))
        // The wrong format for the builder is refused and the connection survives.
        #expect(throws: PGError.self) { _ = try c.copyIn("COPY x FROM STDIN") { _ in } }
        #expect(throws: PGError.self) { _ = try c.copyInText("COPY x FROM STDIN (FORMAT binary)") { _ in } }
        // A server-side error during COPY comes back as the server's error.
        let bad = #expect(throws: PGError.self) {
            _ = try c.copyInText("COPY x (id) FROM STDIN") { $0.row(["not a number"]) }
        }
        #expect(bad?.sqlState == "22P02")
        #expect(try c.query("SELECT count(*) FROM x").rows == [[.integer(Int64(texts.count))]])
    }

    @Test func redaction() {
        let cases: [(String, String)] = [
            ("postgres://u:pw@h/db", "postgres://u@h/db"),
            ("postgresql://u:p%40ss@h:5432/db?sslmode=disable", "postgresql://u@h:5432/db?sslmode=disable"),
            ("postgresql://u:a@b@h/db", "postgresql://u@h/db"),
            ("postgresql://h/db?user=u&password=secret&application_name=x", "postgresql://h/db?user=u&application_name=x"),
            ("postgresql://:pw@h/db", "postgresql://h/db"),
            ("postgres://h", "postgres://h"),
            ("host=h user=u password=secret dbname=d", "host=h user=u dbname=d"),
            ("host=h password = 'se cr\\'et' dbname=d", "host=h dbname=d"),
            ("password=x", ""),
            ("host=h PASSWORD=x", "host=h"),
            ("host='/tmp/a b' user=u", "host='/tmp/a b' user=u"),
        ]
        for (input, want) in cases { #expect(PGConnection.redacted(input) == want, "\(input)") }
        #expect(!PGConnection.redacted("host=h password='unterminated").contains("unterminated"))
        // Unparsable conninfo: libpq's complaint is not shown when a password is in it.
        let badURI = #expect(throws: PGError.self) { _ = try PGConnection("postgresql://u:pa%zzSECRETX@h/db") }
        #expect(badURI.map { !$0.description.contains("pa%zz") && !$0.description.contains("SECRETX") } == true)
        let badOption = #expect(throws: PGError.self) { _ = try PGConnection("host=h bogus_option=1") }
        #expect(badOption?.description.contains("bogus_option") == true)
    }

    @Test func quoting() throws {
        #expect(PGSQL.ident("a\"b") == "\"a\"\"b\"")
        #expect(PGSQL.literal("it's") == "'it''s'")
        #expect(PGSQL.literal("a\\b") == "E'a\\\\b'")
        let (c, _) = try clientConnection()
        defer { c.close() }
        let strange = "we\"ird 'name\\ ☃"
        try c.execute("CREATE TABLE \(PGSQL.ident(strange)) (v text)")
        try c.execute("INSERT INTO \(PGSQL.ident(strange)) VALUES (\(PGSQL.literal(strange)))")
        #expect(try c.query("SELECT v FROM \(PGSQL.ident(strange))").rows == [[.text(strange)]])
        let values: [Value] = [.integer(.min), .real(-0.0), .real(.nan), .real(-.infinity), .real(0.1 + 0.2), .text("x'\\"), .blob([0, 255]), .null]
        for v in values {
            #expect(try c.query("SELECT \(PGSQL.literal(v))").rows == [[v]], "\(v)")
        }
    }
}

extension ClientTests {
    @Test func forEachRowStreamsAndCancels() throws {
        let (c, _) = try clientConnection()
        defer { c.close() }
        var sum: Int64 = 0
        var count = 0
        let names = try c.forEachRow("SELECT g AS n, g::text AS t FROM generate_series(1, $1::int) g", [.value(.integer(50_000))]) { row in
            if case .integer(let n) = row[0] { sum += n }
            count += 1
        }
        #expect(names == ["n", "t"])
        #expect(count == 50_000)
        #expect(sum == 50_000 * 50_001 / 2)
        struct Enough: Error {}
        var seen = 0
        #expect(throws: Enough.self) {
            try c.forEachRow("SELECT g FROM generate_series(1, 1000000) g") { _ in
                seen += 1
                if seen == 10 { throw Enough() }
            }
        }
        #expect(seen == 10)
        #expect(try c.query("SELECT 2").rows == [[.integer(2)]])
        let bad = #expect(throws: PGError.self) { try c.forEachRow("SELECT 1/0") { _ in } }
        #expect(bad?.sqlState == "22012")
    }
}

extension ClientTests {
    @Test func refusesServersBefore12() {
        #expect(PGConnection.versionRefusal(120000) == nil)
        #expect(PGConnection.versionRefusal(150018) == nil)
        #expect(PGConnection.versionRefusal(110022)?.description == "the PostgreSQL server is version 11.22 (server_version_num 110022); Tidemark needs PostgreSQL 12 or newer")
        #expect(PGConnection.versionRefusal(90624)?.description == "the PostgreSQL server is version 9.6.24 (server_version_num 90624); Tidemark needs PostgreSQL 12 or newer")
    }
}

extension ClientTests {
    /// The standalone builder's bytes: header, one row, as PostgreSQL documents them.
    @Test func copyBufferEncoding() throws {
        var buf = PGCopyBuffer()
        #expect(buf.pending == Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0])
        let headerCount = buf.pending.count
        buf.beginRow(fieldCount: 5)
        buf.int8(-2)
        buf.null()
        buf.text("é")
        buf.float8(-0.0)
        try buf.numeric(decimal: "-12345.678")
        let row = Array(buf.pending[headerCount...])
        let expected: [UInt8] = [0, 5,
                                 0, 0, 0, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
                                 0xFF, 0xFF, 0xFF, 0xFF,
                                 0, 0, 0, 2, 0xC3, 0xA9,
                                 0, 0, 0, 8, 0x80, 0, 0, 0, 0, 0, 0, 0,
                                 // ndigits 3, weight 1, sign 0x4000, dscale 3, digits 1 2345 6780
                                 0, 0, 0, 14, 0, 3, 0, 1, 0x40, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1A, 0x7C]
        #expect(row == expected)
        #expect(PGNumeric.decode(Array(expected[40...])) == "-12345.678")
        var text = PGCopyTextBuffer()
        text.row(["a\tb", nil, "c\\d\ne\r"])
        #expect(String(decoding: text.pending, as: UTF8.self) == "a\\tb\t\\N\tc\\\\d\\ne\\r\n")
    }

    /// Seeded random decimal strings: numeric(decimal:) through COPY must
    /// store what PostgreSQL's own parser stores for the same text.
    @Test func numericMatchesServerParser() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("numericMatchesServerParser seed: \(seed)")
        var rng = SplitMix64(seed: seed)
        var inputs: [String] = []
        for _ in 0..<2000 {
            var s = rng.next() % 2 == 0 ? "-" : ""
            let intDigits = Int(rng.next() % 25), fracDigits = Int(rng.next() % 25)
            for _ in 0..<intDigits { s += String(rng.next() % 10) }
            if fracDigits > 0 || intDigits == 0 {
                s += "."
                for _ in 0..<max(fracDigits, 1) { s += String(rng.next() % 10) }
            }
            if rng.next() % 3 == 0 { s += "e" + String(Int(rng.next() % 61) - 30) }
            inputs.append(s)
        }
        let (c, _) = try clientConnection()
        defer { c.close() }
        try c.execute("CREATE TABLE n (id int, ours numeric, theirs numeric)")
        _ = try c.copyIn("COPY n (id, ours) FROM STDIN (FORMAT binary)") { buf in
            for (i, s) in inputs.enumerated() {
                buf.beginRow(fieldCount: 2)
                buf.int4(Int32(i))
                try buf.numeric(decimal: s)
            }
        }
        try c.prepare("theirs", "UPDATE n SET theirs = $2::numeric WHERE id = $1", types: [.int4, .text])
        try c.transaction {
            try c.withPipeline { p in
                for (i, s) in inputs.enumerated() { try p.sendPrepared("theirs", [.value(.integer(Int64(i))), .value(.text(s))]) }
            }
        }
        let mismatches = try c.query("SELECT id, ours::text, theirs::text FROM n WHERE ours::text IS DISTINCT FROM theirs::text ORDER BY id LIMIT 5").rows
        #expect(mismatches.isEmpty, "seed \(seed): \(mismatches.map { "\(inputs[Int({ if case .integer(let i) = $0[0] { return i }; return 0 }($0))]) → \($0[1]) vs \($0[2])" })")
        // Binary decoding agrees with the server's text form too.
        let disagreements = try c.query("SELECT ours, ours::text FROM n").rows.filter { $0[0] != $0[1] }
        #expect(disagreements.isEmpty, "seed \(seed): \(disagreements.prefix(3))")
    }
}
