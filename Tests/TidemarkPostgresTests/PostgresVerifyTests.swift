import Foundation
import Synchronization
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import TidemarkTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `tidemark verify` of a PostgreSQL target (and `route` of one): real
/// SQLite sources, a real migration into the shared test cluster, real
/// differences injected in PostgreSQL and reported by their exact keys.
@Suite struct PostgresVerifyTests {
    /// A source database, a fresh PostgreSQL database and a plan between them.
    struct Fixture {
        let dir: String
        let database: String
        let conninfo: String
        var source: String { dir + "/src.db" }
        var planPath: String { dir + "/tidemark.yml" }
        var plan: Plan { get throws { try Plan.load(path: planPath) } }

        init(_ name: String, schema: String, rows: String, tables: String, chunkRows: Int = 3, target: String? = nil) throws {
            dir = try makeTemporaryDirectory("tidemark-pgverify-\(name)")
            let server = try PostgresServer.shared()
            database = try server.createDatabase(name)
            conninfo = target ?? server.conninfo(database: database)
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            _ = try c.setJournalMode(.wal)
            try c.execute(schema)
            try c.execute(rows)
            try c.close()
            let quoted = "\"" + conninfo.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            try "source: src.db\ntarget: \(quoted)\nlog: changelog\nchunk_rows: \(chunkRows)\ntables:\n\(tables)\n"
                .write(toFile: planPath, atomically: true, encoding: .utf8)
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }

        /// A connection to the target database (as the superuser).
        func pg() throws -> PGConnection {
            try PGConnection(try PostgresServer.shared().conninfo(database: database))
        }

        func sql(_ s: String) throws {
            let c = try Connection(path: source, mode: .readWrite)
            try c.execute(s)
            try c.close()
        }

        /// Migrates until caught up (bounded: a stuck migration fails the test).
        func migrate() throws {
            let m = try Migrator.open(plan: try plan)
            defer { try? m.close() }
            let deadline = Clock.monotonicNanos() + 120_000_000_000
            let summary = try m.run { _ in if Clock.monotonicNanos() > deadline { m.stop() } }
            #expect(summary.caughtUp, "the migration did not catch up in 120 s")
        }

        func verify(chunkRows: Int = 3) throws -> Verifier.Report {
            var options = Verifier.Options()
            options.chunkRows = chunkRows
            return try Verifier(plan: try plan, options: options).run()
        }
    }

    static let itemsSchema = """
        CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, data BLOB, qty INTEGER);
        CREATE TABLE tags(code TEXT NOT NULL, n INTEGER NOT NULL, label TEXT, PRIMARY KEY (code, n)) WITHOUT ROWID;
        """
    static let itemsRows: String = {
        var s = ""
        for i in 1...20 {
            s += "INSERT INTO items VALUES (\(i), 'item \(i)', \(Double(i) * 1.25), \(i % 3 == 0 ? "NULL" : "X'00\(String(format: "%02x", i))ff'"), \(i % 4 == 0 ? "NULL" : String(i * 7)));\n"
        }
        // Text keys in SQLite's BINARY order: upper case before lower case,
        // ASCII before UTF-8; PostgreSQL must order them alike (collation "C").
        for (code, n) in [("B", 1), ("B", 2), ("Z", 1), ("a", 1), ("a", 3), ("b", 2), ("é", 1), ("ü", 2), ("日本", 1)] {
            s += "INSERT INTO tags VALUES ('\(code)', \(n), 'label \(code)\(n)');\n"
        }
        return s
    }()
    static let itemsTables = "  items: {}\n  tags: {}"

    @Test("a fresh migration into PostgreSQL verifies equal, the verify is recorded there and status reads it")
    func equalAfterMigrate() throws {
        let f = try Fixture("equal", schema: Self.itemsSchema, rows: Self.itemsRows, tables: Self.itemsTables)
        defer { f.remove() }
        try f.migrate()
        let report = try f.verify()
        for t in report.tables {
            #expect(t.isEqual, "\(t.source): missing \(t.missing), extra \(t.extra), different \(t.different), unsettled \(t.unsettled)")
        }
        #expect(report.isEqual)
        #expect(report.tables.map(\.rows) == [20, 9])
        #expect(report.tables[0].chunks >= 7)
        let pg = try f.pg()
        defer { pg.close() }
        let state = try #require(try PostgresState.load(pg))
        let v = try #require(state.verification, "the verify was not recorded in tidemark.migration")
        #expect(v.differences == 0)
        #expect(v.fromLSN <= v.throughLSN)
        // `status` reads the state from PostgreSQL.
        let status = try MigrationStatus.read(plan: try f.plan)
        #expect(status.state?.tables.map(\.phase) == [.following, .following])
        #expect(status.state?.verification?.differences == 0)
        #expect(status.planChanges.isEmpty)
        #expect(status.lagChanges == 0)
        // One chunk holding the whole table gives the same answer.
        #expect(try f.verify(chunkRows: 1000).isEqual)
    }

    @Test("a row updated, deleted or added in PostgreSQL is reported with its exact key")
    func injectedDifferences() throws {
        let f = try Fixture("inject", schema: Self.itemsSchema, rows: Self.itemsRows, tables: Self.itemsTables)
        defer { f.remove() }
        try f.migrate()
        let pg = try f.pg()
        defer { pg.close() }
        try pg.execute("""
            UPDATE public.items SET qty = qty + 1 WHERE id = 5;
            DELETE FROM public.items WHERE id = 11;
            INSERT INTO public.items(id, name) VALUES (1000, 'not in the source');
            UPDATE public.items SET data = '\\x00'::bytea WHERE id = 16;
            UPDATE public.tags SET label = 'changed' WHERE code = 'a' AND n = 3;
            DELETE FROM public.tags WHERE code = 'é' AND n = 1;
            INSERT INTO public.tags VALUES ('C', 9, 'extra');
            """)
        for chunkRows in [2, 1000] {
            let report = try f.verify(chunkRows: chunkRows)
            #expect(!report.isEqual)
            let items = try #require(report.tables.first { $0.source == "items" })
            #expect(items.different == [[.integer(5)], [.integer(16)]], "chunk \(chunkRows)")
            #expect(items.missing == [[.integer(11)]], "chunk \(chunkRows)")
            #expect(items.extra == [[.integer(1000)]], "chunk \(chunkRows)")
            #expect(items.unsettled.isEmpty)
            let tags = try #require(report.tables.first { $0.source == "tags" })
            #expect(tags.different == [[.text("a"), .integer(3)]], "chunk \(chunkRows)")
            #expect(tags.missing == [[.text("é"), .integer(1)]], "chunk \(chunkRows)")
            #expect(tags.extra == [[.text("C"), .integer(9)]], "chunk \(chunkRows)")
        }
        let state = try #require(try PostgresState.load(pg))
        #expect(state.verification?.differences == 7)
    }

    @Test("REAL values compare bit for bit: 17 significant digits, subnormals, -0.0 (and -0.0 turned into 0.0 is a difference)")
    func realsExact() throws {
        let values: [Double] = [0.1, 1.0 / 3.0, 2.0 / 3.0, 123456789.12345678, 9007199254740993.0, 5e-324, 2.2250738585072014e-308,
                                1.7976931348623157e308, -1.7976931348623157e308, -0.0, 0.0, 1e-5, 0.30000000000000004]
        // An untyped column: SQLite keeps a REAL-affinity -0.0 as the integer 0
        // (and reads back 0.0), but stores reals bit for bit without affinity.
        let f = try Fixture("reals", schema: "CREATE TABLE r(id INTEGER PRIMARY KEY, v);", rows: "", tables: "  r: {}")
        defer { f.remove() }
        let c = try Connection(path: f.source, mode: .readWrite)
        for (i, v) in values.enumerated() {
            try c.prepare("INSERT INTO r VALUES (?1, ?2)").execute([.integer(Int64(i + 1)), .real(v)])
        }
        try c.close()
        try f.migrate()
        let pg = try f.pg()
        defer { pg.close() }
        // The target holds the same bits (read back in binary).
        let stored = try pg.query("SELECT id, v FROM public.r ORDER BY id").rows
        #expect(stored.count == values.count)
        for (row, v) in zip(stored, values) {
            guard case .real(let d) = row[1] else { Issue.record("row \(row) is not a real"); continue }
            #expect(d.bitPattern == v.bitPattern, "\(row[0]): \(d) != \(v)")
        }
        #expect(try f.verify().isEqual)

        let negativeZero = Int64(values.firstIndex { $0 == 0 && $0.sign == .minus }! + 1)
        let third = Int64(2)
        try pg.execute("UPDATE public.r SET v = 0.0 WHERE id = \(negativeZero)")
        _ = try pg.query("UPDATE public.r SET v = $1 WHERE id = $2", [.value(.real((1.0 / 3.0).nextUp)), .value(.integer(third))])
        let report = try f.verify()
        #expect(report.tables[0].different == [[.integer(third)], [.integer(negativeZero)]])
        #expect(report.tables[0].missing.isEmpty && report.tables[0].extra.isEmpty)
    }

    @Test("numeric columns compare by value and plan-typed columns (timestamptz, jsonb) by PostgreSQL's rendering; a change to either is a difference")
    func typedColumns() throws {
        let f = try Fixture("typed", schema: "CREATE TABLE ev(id INTEGER PRIMARY KEY, amount NUMERIC, at TEXT, doc TEXT);",
                            rows: """
                                INSERT INTO ev VALUES (1, 3, '2024-01-02 03:04:05+00', '{"b": 1, "a": [1, 2]}');
                                INSERT INTO ev VALUES (2, 1.5, '2024-06-01T12:00:00Z', '{}');
                                INSERT INTO ev VALUES (3, 0.1, '2024-06-01 12:00:00.123456+02', '[1, "x"]');
                                INSERT INTO ev VALUES (4, 1e20, NULL, NULL);
                                INSERT INTO ev VALUES (5, -7, '2000-01-01 00:00:00+00', 'null');
                                """,
                            tables: "  ev:\n    columns:\n      id: id\n      amount: amount\n      at:\n        expr: trim(at)\n        type: timestamptz\n      doc:\n        expr: trim(doc)\n        type: jsonb")
        defer { f.remove() }
        try f.migrate()
        let report = try f.verify()
        let t = report.tables[0]
        #expect(report.isEqual, "missing \(t.missing), extra \(t.extra), different \(t.different)")
        #expect(t.rows == 5)
        let pg = try f.pg()
        defer { pg.close() }
        let types = try pg.query("SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'ev' ORDER BY ordinal_position").rows
        #expect(types == [[.text("id"), .text("bigint")], [.text("amount"), .text("numeric")],
                          [.text("at"), .text("timestamp with time zone")], [.text("doc"), .text("jsonb")]])
        try pg.execute("""
            UPDATE public.ev SET amount = 1.50000000000000000001 WHERE id = 2;
            UPDATE public.ev SET at = at + interval '1 microsecond' WHERE id = 3;
            UPDATE public.ev SET doc = '{"b": 1, "a": [2, 1]}' WHERE id = 1;
            UPDATE public.ev SET amount = 100000000000000000001 WHERE id = 4;
            """)
        let changed = try f.verify().tables[0]
        #expect(changed.different == [[.integer(1)], [.integer(2)], [.integer(3)], [.integer(4)]])
        #expect(changed.missing.isEmpty && changed.extra.isEmpty)
    }

    /// Writes to the source until stopped: inserts, updates and deletes of
    /// keys below `hotKeys`, one statement at a time.
    final class Writer: @unchecked Sendable {
        let stop = Atomic<Bool>(false)
        let writes = Atomic<Int>(0)
        let failure = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        private var finished = false

        /// Stops the writer and waits for its thread (once; from the test's thread).
        func finish() {
            guard !finished else { return }
            finished = true
            stop.store(true, ordering: .relaxed)
            done.wait()
        }

        func start(_ path: String, seed: UInt64, hotKeys: Int64) {
            Thread.detachNewThread { [self] in
                defer { done.signal() }
                do {
                    let c = try Connection(path: path, busyTimeoutMillis: 10_000)
                    var rng = SplitMix64(seed: seed)
                    func next() -> UInt64 { rng.next() }
                    while !stop.load(ordering: .relaxed) {
                        let key = Int64(next() % UInt64(hotKeys)) + 1
                        switch next() % 4 {
                        case 0:
                            try c.prepare("INSERT INTO items(id, name, price, data, qty) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET price = excluded.price")
                                .execute([.integer(key), .text("w\(key)"), .real(Double(next() % 100_000) / 7.0), .blob([UInt8(key & 0xff)]), .integer(key)])
                        case 1:
                            try c.prepare("UPDATE items SET name = name || '+', qty = coalesce(qty, 0) + 1 WHERE id = ?1").execute([.integer(key)])
                        case 2:
                            try c.prepare("UPDATE items SET price = ?1 WHERE id = ?2").execute([.real(-Double(next() % 1000) / 3.0), .integer(key)])
                        default:
                            try c.prepare("DELETE FROM items WHERE id = ?1").execute([.integer(key)])
                        }
                        writes.add(1, ordering: .relaxed)
                        usleep(1_000)
                    }
                    try c.close()
                } catch {
                    failure.withLock { $0 = "\(error)" }
                }
            }
        }
    }

    /// `migrate --follow` in a thread of its own.
    final class Follower: @unchecked Sendable {
        let stop = Atomic<Bool>(false)
        let caughtUp = Atomic<Bool>(false)
        let failure = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        private var finished = false

        /// Stops the migrator and waits for its thread (once; from the test's thread).
        func finish() {
            guard !finished else { return }
            finished = true
            stop.store(true, ordering: .relaxed)
            done.wait()
        }

        func start(_ plan: Plan) {
            Thread.detachNewThread { [self] in
                defer { done.signal() }
                do {
                    let m = try Migrator.open(plan: plan, options: MigratorOptions(follow: true))
                    defer { try? m.close() }
                    _ = try m.run { p in
                        if p.caughtUp { caughtUp.store(true, ordering: .relaxed) }
                        if stop.load(ordering: .relaxed) { m.stop() }
                    }
                } catch {
                    failure.withLock { $0 = "\(error)" }
                }
            }
        }
    }

    @Test("verify while a writer writes and the migrator follows: no false difference, and a real one is still found", .timeLimit(.minutes(10)))
    func liveWriter() throws {
        var rows = ""
        for i in 1...600 { rows += "INSERT INTO items VALUES (\(i), 'item \(i)', \(Double(i) / 3.0), X'\(String(format: "%04x", i))', \(i));\n" }
        let f = try Fixture("live", schema: "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, data BLOB, qty INTEGER);",
                            rows: rows, tables: "  items: {}", chunkRows: 50)
        defer { f.remove() }
        let follower = Follower()
        follower.start(try f.plan)
        let deadline = Date().addingTimeInterval(120)
        while !follower.caughtUp.load(ordering: .relaxed) && follower.failure.withLock({ $0 }) == nil && Date() < deadline { usleep(10_000) }
        let caughtUp = follower.caughtUp.load(ordering: .relaxed)
        try #require(caughtUp, "the migrator did not catch up: \(follower.failure.withLock { $0 } ?? "timeout")")

        // The writer touches keys 1…400 (and inserts new ones there); keys
        // above stay still.
        let writer = Writer()
        let seed = UInt64(Date().timeIntervalSince1970 * 1000)
        print("PostgresVerifyTests.liveWriter seed \(seed)")
        writer.start(f.source, seed: seed, hotKeys: 400)
        defer {
            writer.finish()
            follower.finish()
        }
        usleep(200_000)
        var rechecked = 0
        defer { print("PostgresVerifyTests.liveWriter: \(rechecked) chunks re-checked for changes in flight (seed \(seed))") }
        for pass in 1...5 {
            let before = writer.writes.load(ordering: .relaxed)
            let report = try f.verify(chunkRows: 50)
            let t = report.tables[0]
            rechecked += t.chunksRechecked
            #expect(report.isEqual, "pass \(pass) (seed \(seed)): missing \(t.missing), extra \(t.extra), different \(t.different), unsettled \(t.unsettled)")
            #expect(writer.writes.load(ordering: .relaxed) > before, "the writer did not write during the verify")
        }
        // A difference nobody writes over is found while the writes go on.
        let pg = try f.pg()
        defer { pg.close() }
        try pg.execute("UPDATE public.items SET name = 'tampered' WHERE id = 500")
        let report = try f.verify(chunkRows: 50)
        let t = report.tables[0]
        #expect(t.different == [[.integer(500)]], "seed \(seed)")
        #expect(t.missing.isEmpty && t.extra.isEmpty && t.unsettled.isEmpty, "seed \(seed): missing \(t.missing), extra \(t.extra), unsettled \(t.unsettled)")
        try pg.execute("UPDATE public.items SET name = 'item 500' WHERE id = 500")

        writer.finish()
        #expect(writer.failure.withLock { $0 } == nil, "writer: \(writer.failure.withLock { $0 } ?? "")")
        #expect(follower.failure.withLock { $0 } == nil, "migrator: \(follower.failure.withLock { $0 } ?? "")")
        #expect(try f.verify(chunkRows: 50).isEqual)
    }

    @Test("route for a PostgreSQL target gives its connection string without the password")
    func routeWithoutPassword() throws {
        let server = try PostgresServer.shared()
        let f = try Fixture("route", schema: "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);", rows: "INSERT INTO items VALUES (1, 'a');",
                            tables: "  items: {}")
        defer { f.remove() }
        // The target as a user writes it, password included.
        let withPassword = server.conninfo(database: f.database, user: "tidemark_pw") + " password=secret-pw"
        let quoted = "\"" + withPassword.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        try "source: src.db\ntarget: \(quoted)\nlog: changelog\ntables:\n  items: {}\n".write(toFile: f.planPath, atomically: true, encoding: .utf8)
        // The cutover's commit point: the switch record in the source.
        try f.sql(SwitchRecord.createSQL)
        try f.sql("INSERT INTO \(SwitchRecord.table)(id, lsn, at, target, tables) VALUES (1, 7, 1000, 'postgres', 'items=items')")

        let route = try Router(plan: try f.plan).route()
        #expect(route.authority == .target)
        #expect(!route.database.contains("secret-pw"))
        #expect(route.database.contains("tidemark_pw") && route.database.contains(f.database))

        let out = try runTidemark(["route", "--json", "--plan", f.planPath], in: f.dir)
        #expect(out.status == 0, "\(out.stderr)")
        #expect(!out.stdout.contains("secret-pw") && !out.stderr.contains("secret-pw"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        #expect(json["authority"] as? String == "target")
        let database = try #require(json["database"] as? String)
        #expect(database == route.database)
        #expect(database.contains("dbname=") && database.contains(f.database))
    }

}
