import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import TidemarkTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL target: exact values through the copy and the replay, and
/// bad input (server, password, database, privileges, an existing table, the
/// server going away) refused in one line with nothing half-done.
@Suite struct PostgresTargetTests {
    static func writePlan(_ dir: String, target: String, tables: String = "  edge: {}\n", chunkRows: Int = 3) throws -> Plan {
        let path = dir + "/plan.yml"
        try "source: app.db\ntarget: \(target)\nlog: changelog\nchunk_rows: \(chunkRows)\ntables:\n\(tables)".write(toFile: path, atomically: true, encoding: .utf8)
        return try Plan.load(path: path)
    }

    /// Rows of `table` in key order as SQLite holds them.
    static func sqliteRows(_ path: String, _ sql: String) throws -> [[Value]] {
        let c = try Connection(path: path, mode: .readOnly)
        defer { try? c.close() }
        let s = try c.prepare(sql)
        var out: [[Value]] = []
        while try s.step() { out.append((0..<Int(s.columnCount)).map { s.columnValue(Int32($0)) }) }
        return out
    }

    /// Exact equality: reals by bit pattern, the rest by value.
    static func same(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.real(let x), .real(let y)): return x.bitPattern == y.bitPattern
        case (.null, .null): return true
        case (.integer(let x), .integer(let y)): return x == y
        case (.text(let x), .text(let y)): return Array(x.utf8) == Array(y.utf8)
        case (.blob(let x), .blob(let y)): return x == y
        default: return false
        }
    }

    static func expectSame(_ sqlite: [[Value]], _ pg: [[Value]], _ what: String) {
        #expect(sqlite.count == pg.count, "\(what): \(sqlite.count) rows in SQLite, \(pg.count) in PostgreSQL")
        for (a, b) in zip(sqlite, pg) where !zip(a, b).allSatisfy({ same($0, $1) }) || a.count != b.count {
            Issue.record("\(what): SQLite \(a) but PostgreSQL \(b)")
        }
    }

    static let edgeSchema = """
        CREATE TABLE edge(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, n NUMERIC);
        """

    /// Every storage class at its edges: 2^63-1, -2^63, -0.0 (which SQLite
    /// itself stores as 0.0), ±inf, 17 significant digits, subnormals, empty
    /// and non-ASCII text, empty and 1 MiB blobs, NULLs.
    static func edgeRows() -> [[Value]] {
        let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        return [
            [.integer(1), .integer(Int64.max), .real(0.1 + 0.2), .text(""), .blob([]), .integer(0)],
            [.integer(2), .integer(Int64.min), .real(-0.0), .text("héllo wörld ✓ 日本語 🌊"), .blob(big), .real(2.5)],
            [.integer(3), .integer(0), .real(.infinity), .text("a\tb\nc\\d'e\"f"), .blob([0, 255, 0]), .integer(-123456789012345)],
            [.integer(4), .null, .real(-.infinity), .null, .null, .null],
            [.integer(5), .integer(-1), .real(1.7976931348623157e308), .text(String(repeating: "x", count: 100_000)), .blob([1]), .real(1e-5)],
            [.integer(6), .integer(42), .real(5e-324), .text("é"), .blob([0x7f]), .integer(Int64.max)],
            [.integer(7), .integer(7), .real(-1.2345678901234567e-200), .text(" "), .blob([0xff, 0xfe]), .real(-0.1)],
            [.integer(8), .integer(8), .real(123456789.12345679), .text("ASCII only"), .blob([0x00]), .integer(1)],
        ]
    }

    @Test(.timeLimit(.minutes(10)))
    func edgeValuesArriveExactlyByCopyAndByReplay() throws {
        let server = try PostgresServer.shared()
        let conninfo = server.conninfo(database: try server.createDatabase("edge"))
        let dir = try makeTemporaryDirectory("tidemark-pg-target")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        _ = try source.setJournalMode(.wal)
        try source.execute(Self.edgeSchema)
        let insert = try source.prepare("INSERT INTO edge VALUES (?, ?, ?, ?, ?, ?)")
        for row in Self.edgeRows() { try insert.execute(row) }
        let plan = try Self.writePlan(dir, target: conninfo)

        let migrator = try Migrator.open(plan: plan)
        _ = try migrator.run()
        let pg = try PGConnection(conninfo)
        defer { pg.close() }
        let select = "SELECT id, i, r, t, b, n FROM edge ORDER BY id"
        func pgRows() throws -> [[Value]] {
            // numeric comes back as its decimal text; as SQLite's NUMERIC
            // affinity would read it back.
            try pg.query(select).rows.map { row in
                row.enumerated().map { i, v in
                    guard i == 5, case .text(let s) = v else { return v }
                    if let n = Int64(s) { return .integer(n) }
                    return Double(s).map { .real($0) } ?? v
                }
            }
        }
        let types = try pg.query("SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'public.edge'::regclass AND attnum > 0")
        #expect(types.rows.first?.first == .text("bigint,bigint,double precision,text,bytea,numeric"))
        Self.expectSame(try Self.sqliteRows(dir + "/app.db", select), try pgRows(), "after the copy")

        // The same values again through replay (updates, a key change, deletes, inserts).
        let rows = Self.edgeRows()
        try source.transaction {
            let up = try source.prepare("UPDATE edge SET i = ?, r = ?, t = ?, b = ?, n = ? WHERE id = ?")
            for (k, row) in rows.enumerated() {
                let donor = rows[(k + 3) % rows.count]
                try up.execute(Array(donor[1...]) + [row[0]])
            }
            try source.execute("UPDATE edge SET id = 100 WHERE id = 1; DELETE FROM edge WHERE id = 2")
            for row in rows.prefix(3) { try insert.execute([.integer(200 + (row[0].integerValue ?? 0))] + Array(row[1...])) }
        }
        _ = try migrator.run()
        try migrator.close()
        Self.expectSame(try Self.sqliteRows(dir + "/app.db", select), try pgRows(), "after the replay")
        try source.close()
    }

    @Test(.timeLimit(.minutes(10)))
    func mixedStorageClassesNulAndBadUTF8AreRefusedBeforeCopying() throws {
        let server = try PostgresServer.shared()
        let db = try server.createDatabase("refuse")
        let conninfo = server.conninfo(database: db)
        let dir = try makeTemporaryDirectory("tidemark-pg-target")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        try source.execute("""
            CREATE TABLE edge(id INTEGER PRIMARY KEY, qty INTEGER, note TEXT);
            INSERT INTO edge VALUES (1, 5, 'fine'), (2, 'five', 'fine'), (3, 7, 'nul' || char(0) || 'inside'), (4, 8, CAST(x'c328' AS TEXT));
            """)
        let plan = try Self.writePlan(dir, target: conninfo)
        let error = try #require(throws: MigrationError.self) { try Migrator.open(plan: plan) }
        #expect(error.code == .preflight)
        #expect(error.message.contains("qty") && error.message.contains("2"), "\(error.message)")
        #expect(error.message.contains("note"), "\(error.message)")
        // Nothing was created in PostgreSQL.
        let pg = try PGConnection(conninfo)
        defer { pg.close() }
        let tables = try pg.query("SELECT count(*) FROM pg_tables WHERE tablename = 'edge' OR schemaname = 'tidemark'")
        #expect(tables.rows.first?.first == .integer(0))
        // A value that arrives after the preflight is refused by the copy, not cast.
        try source.execute("UPDATE edge SET qty = 6 WHERE id = 2; UPDATE edge SET note = 'ok' WHERE id IN (3, 4)")
        let migrator = try Migrator.open(plan: plan)
        try source.execute("INSERT INTO edge VALUES (9, 'nine', 'x')")
        let late = try #require(throws: MigrationError.self) { _ = try migrator.run() }
        #expect(late.code == .constraint, "\(late)")
        #expect(late.message.contains("qty"), "\(late.message)")
        try migrator.close()
        try source.close()
    }

    @Test(.timeLimit(.minutes(10)))
    func badServerPasswordDatabaseAndPrivilegesAreOneLineAndChangeNothing() throws {
        let server = try PostgresServer.shared()
        let db = try server.createDatabase("bad")
        let dir = try makeTemporaryDirectory("tidemark-pg-target")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        try source.execute("CREATE TABLE edge(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO edge VALUES (1, 'a');")
        let cases: [(String, String)] = [
            ("host=/nonexistent-socket-dir dbname=\(db) user=postgres connect_timeout=2", "unreachable"),
            ("host=\(server.socketDirectory) port=\(server.port) dbname=\(db) user=tidemark_pw password=wrong-secret", "password"),
            ("host=\(server.socketDirectory) port=\(server.port) dbname=no_such_db user=postgres", "database"),
            ("host=\(server.socketDirectory) port=\(server.port) dbname=\(db) user=tidemark_nopriv", "privileges"),
        ]
        for (conninfo, what) in cases {
            let plan = try Self.writePlan(dir, target: conninfo)
            let error = try #require(throws: MigrationError.self, "\(what)") { try Migrator.open(plan: plan) }
            #expect(!error.message.contains("\n"), "\(what): one line: \(error.message)")
            #expect(!error.message.contains("wrong-secret"), "\(what): no password in \(error.message)")
            #expect(error.code == .targetUnavailable || what == "privileges", "\(what): \(error.code) \(error.message)")
            // The source was not touched: no capture installed.
            #expect(try !Capture.isInstalled(source), "\(what): capture installed")
        }
        // The same through the command line: exit non-zero, one line on stderr.
        let plan = dir + "/plan.yml"
        try "source: app.db\ntarget: host=\(server.socketDirectory) port=\(server.port) dbname=\(db) user=tidemark_pw password=wrong-secret\nlog: changelog\ntables:\n  edge: {}\n".write(toFile: plan, atomically: true, encoding: .utf8)
        let migrate = try runTidemark(["migrate", "--plan", plan])
        let text = migrate.stderr
        #expect(migrate.status != 0)
        #expect(text.split(separator: "\n").count == 1, "\(text)")
        #expect(!text.contains("wrong-secret"), "\(text)")
        try source.close()
    }

    @Test(.timeLimit(.minutes(10)))
    func anExistingTableWithOtherColumnsIsRefused() throws {
        let server = try PostgresServer.shared()
        let conninfo = server.conninfo(database: try server.createDatabase("exists"))
        let pg = try PGConnection(conninfo)
        defer { pg.close() }
        try pg.execute("CREATE TABLE edge(id bigint PRIMARY KEY, other text)")
        let dir = try makeTemporaryDirectory("tidemark-pg-target")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        try source.execute("CREATE TABLE edge(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO edge VALUES (1, 'a');")
        let plan = try Self.writePlan(dir, target: conninfo)
        let error = try #require(throws: MigrationError.self) { let m = try Migrator.open(plan: plan); try m.close() }
        #expect(error.code == .incompatibleTarget, "\(error)")
        #expect(error.message.contains("edge") && error.message.contains("v"), "\(error.message)")
        let state = try pg.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'tidemark'")
        #expect(state.rows.first?.first == .integer(0), "no migration state was left behind")
        try source.close()
    }

    @Test(.timeLimit(.minutes(10)))
    func theServerGoingAwayMidCopyLeavesAResumableMigration() throws {
        let server = try PostgresServer.shared()
        let conninfo = server.conninfo(database: try server.createDatabase("away"))
        let dir = try makeTemporaryDirectory("tidemark-pg-target")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        try source.execute("CREATE TABLE edge(id INTEGER PRIMARY KEY, v TEXT)")
        try source.transaction {
            let s = try source.prepare("INSERT INTO edge VALUES (?, ?)")
            for i in 1...3_000 { try s.execute([.integer(Int64(i)), .text("value \(i)")]) }
        }
        let plan = try Self.writePlan(dir, target: conninfo, chunkRows: 100)
        let migrator = try Migrator.open(plan: plan)
        let killer = try PGConnection(conninfo)
        defer { killer.close() }
        var steps = 0
        let error = try #require(throws: MigrationError.self) {
            _ = try migrator.run { _ in
                steps += 1
                if steps == 5 {
                    // Every other backend of this database: the migrator's.
                    _ = try? killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
                }
            }
        }
        #expect(error.code == .targetUnavailable, "\(error)")
        #expect(!error.message.contains("\n"))
        try? migrator.close()
        // A rerun resumes where the last committed chunk left off and ends equal.
        let again = try Migrator.open(plan: plan)
        let summary = try again.run()
        try again.close()
        #expect(summary.caughtUp)
        let count = try killer.query("SELECT count(*), count(DISTINCT id) FROM edge")
        #expect(count.rows.first == [.integer(3_000), .integer(3_000)])
        try source.close()
    }
}

extension Value {
    var integerValue: Int64? { if case .integer(let i) = self { return i }; return nil }
}

@Suite struct PostgresConcurrentMigratorTests {
    /// Two migrators of one plan (`migrate --follow` and a `cutover`
    /// catching up, or two `migrate`s) copy and replay into the same
    /// database at once. Each step holds the database's step lock and reads
    /// the state the other committed, so neither copies a chunk twice nor
    /// replays a change twice, and both end caught up and equal.
    @Test(.timeLimit(.minutes(10)))
    func twoMigratorsAtOnceNeverCollide() throws {
        let server = try PostgresServer.shared()
        let conninfo = server.conninfo(database: try server.createDatabase("twice"))
        let dir = try makeTemporaryDirectory("tidemark-pg-target")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        _ = try source.setJournalMode(.wal)
        try source.execute("CREATE TABLE edge(id INTEGER PRIMARY KEY, v TEXT)")
        try source.transaction {
            let s = try source.prepare("INSERT INTO edge VALUES (?, ?)")
            for i in 1...4_000 { try s.execute([.integer(Int64(i)), .text("v\(i)")]) }
        }
        let plan = try PostgresTargetTests.writePlan(dir, target: conninfo, chunkRows: 50)
        // The first opens (and starts) the migration; the second resumes it.
        let first = try Migrator.open(plan: plan)
        let second = try Migrator.open(plan: plan)
        let failures = Failures()
        let threads = [first, second].map { m in
            let t = Thread {
                do { _ = try m.run() } catch { failures.add("\(error)") }
            }
            t.start()
            return t
        }
        while threads.contains(where: { !$0.isFinished }) { usleep(10_000) }
        #expect(failures.all.isEmpty, "\(failures.all)")
        try first.close()
        try second.close()
        let pg = try PGConnection(conninfo)
        defer { pg.close() }
        let count = try pg.query("SELECT count(*), count(DISTINCT id) FROM edge")
        #expect(count.rows.first == [.integer(4_000), .integer(4_000)])
        try source.close()
    }

    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [String] = []
        func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return list }
    }
}

@Suite struct PostgresRefusalTests {
    /// A change the PostgreSQL target refuses inside a pipelined batch (here
    /// a CHECK the source does not have, on a table the team created) aborts
    /// the PostgreSQL transaction; the step runs again change by change, so
    /// the migrator's rule holds: a later change of the same row in the batch
    /// replaces the refused one, and one nothing replaces stops the step with
    /// nothing of it applied.
    @Test(.timeLimit(.minutes(10)))
    func aRefusedChangeIsReplacedByALaterOneOrStopsTheStepWhole() throws {
        let server = try PostgresServer.shared()
        let conninfo = server.conninfo(database: try server.createDatabase("refusal"))
        let pg = try PGConnection(conninfo)
        defer { pg.close() }
        try pg.execute("CREATE TABLE edge(id bigint PRIMARY KEY, v text CHECK (v <> 'bad'))")
        let dir = try makeTemporaryDirectory("tidemark-pg-target")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        _ = try source.setJournalMode(.wal)
        try source.execute("CREATE TABLE edge(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO edge VALUES (1, 'a'), (2, 'b');")
        let plan = try PostgresTargetTests.writePlan(dir, target: conninfo)
        let migrator = try Migrator.open(plan: plan)
        _ = try migrator.run()
        // Refused, then fixed later in the same batch; other changes around it.
        try source.execute("""
            INSERT INTO edge VALUES (3, 'c');
            UPDATE edge SET v = 'bad' WHERE id = 1;
            INSERT INTO edge VALUES (4, 'd');
            UPDATE edge SET v = 'fixed' WHERE id = 1;
            """)
        _ = try migrator.run()
        #expect(try pg.query("SELECT id, v FROM edge ORDER BY id").rows == [
            [.integer(1), .text("fixed")], [.integer(2), .text("b")], [.integer(3), .text("c")], [.integer(4), .text("d")]])
        // Refused and never fixed: the step stops, nothing of it is applied.
        let before = try pg.query("SELECT applied_lsn FROM tidemark.migration").rows
        try source.execute("INSERT INTO edge VALUES (5, 'e'); UPDATE edge SET v = 'bad' WHERE id = 2; INSERT INTO edge VALUES (6, 'f');")
        let error = try #require(throws: MigrationError.self) { _ = try migrator.run() }
        #expect(error.code == .constraint)
        #expect(error.message.contains("LSN") && error.message.contains("id=2"), "\(error.message)")
        #expect(try pg.query("SELECT applied_lsn FROM tidemark.migration").rows == before)
        #expect(try pg.query("SELECT count(*) FROM edge WHERE id IN (5, 6)").rows == [[.integer(0)]])
        // The migration says why it stands still.
        #expect(try pg.query("SELECT blocked_message IS NOT NULL FROM tidemark.migration").rows == [[.integer(1)]])
        try migrator.close()
        try source.close()
    }

    /// A batch larger than one pipelined part (its first parts are sent
    /// while the rest is still folded): a change the target refuses in a
    /// middle part leaves nothing of the batch applied — not the parts the
    /// server already ran — and the step stops with the very line a batch of
    /// that change alone gives; a refused change that a later part fixes is
    /// replaced, as in a small batch.
    @Test(.timeLimit(.minutes(10)))
    func aRefusalInTheMiddleOfAPipelinedBatchLeavesNothingAndReadsTheSame() throws {
        let server = try PostgresServer.shared()
        let rows = 2 * PostgresStore.foldedSendKeys + 1_000
        let bad = Int64(PostgresStore.foldedSendKeys + 1_000)  // in the second part
        var options = MigratorOptions()
        options.replayBatchMillis = 600_000  // the whole backlog in one step

        /// A source and a migrated target with rows 1 and 2, both CHECKing v <> 'bad'.
        func setUp(_ name: String) throws -> (dir: String, source: Connection, pg: PGConnection, migrator: Migrator) {
            let conninfo = server.conninfo(database: try server.createDatabase(name))
            let pg = try PGConnection(conninfo)
            try pg.execute("CREATE TABLE edge(id bigint PRIMARY KEY, v text CHECK (v <> 'bad'))")
            let dir = try makeTemporaryDirectory("tidemark-pg-target")
            let source = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
            _ = try source.setJournalMode(.wal)
            try source.execute("CREATE TABLE edge(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO edge VALUES (1, 'a'), (2, 'b');")
            let plan = try PostgresTargetTests.writePlan(dir, target: conninfo, chunkRows: 1_000)
            let migrator = try Migrator.open(plan: plan, options: options)
            _ = try migrator.run()
            return (dir, source, pg, migrator)
        }
        func insertRows(_ source: Connection, _ ids: some Sequence<Int64>) throws {
            let insert = try source.prepare("INSERT INTO edge VALUES (?, ?)")
            for id in ids { try insert.execute([.integer(id), .text("v\(id)")]) }
        }
        /// The error line without its LSN (which differs between the two sources).
        func withoutLSN(_ message: String) -> String {
            message.replacing(/LSN [0-9]+/, with: "LSN _")
        }

        // The refused change alone in its batch.
        let small = try setUp("pipeline_small")
        defer { small.pg.close(); try? FileManager.default.removeItem(atPath: small.dir) }
        try insertRows(small.source, [bad])
        _ = try small.migrator.run()
        try small.source.execute("UPDATE edge SET v = 'bad' WHERE id = \(bad)")
        let alone = try #require(throws: MigrationError.self) { _ = try small.migrator.run() }
        try small.migrator.close()
        try small.source.close()

        // The same change in the middle of a batch of three pipelined parts.
        let big = try setUp("pipeline_big")
        defer { big.pg.close(); try? FileManager.default.removeItem(atPath: big.dir) }
        try big.source.transaction {
            try insertRows(big.source, 3...bad)
            try big.source.execute("UPDATE edge SET v = 'bad' WHERE id = \(bad)")  // folded into the second part
            try insertRows(big.source, (bad + 1)...Int64(rows))
        }
        let before = try big.pg.query("SELECT applied_lsn FROM tidemark.migration").rows
        let inBatch = try #require(throws: MigrationError.self) { _ = try big.migrator.run() }
        #expect(inBatch.code == .constraint)
        #expect(!inBatch.message.contains("\n"), "\(inBatch.message)")
        #expect(inBatch.message.contains("(update of edge id=\(bad))"), "\(inBatch.message)")
        #expect(withoutLSN(inBatch.message) == withoutLSN(alone.message))
        #expect(try big.pg.query("SELECT applied_lsn FROM tidemark.migration").rows == before)
        #expect(try big.pg.query("SELECT count(*) FROM edge").rows == [[.integer(2)]])

        // Fixed by a change that lands in the third part of the next batch:
        // the second part is refused again, the step runs change by change,
        // and there the fix replaces the refused change.
        try big.source.execute("UPDATE edge SET v = 'fixed' WHERE id = \(bad)")
        _ = try big.migrator.run()
        #expect(try big.pg.query("SELECT count(*), count(*) FILTER (WHERE v = 'v' || id) FROM edge").rows == [[.integer(Int64(rows)), .integer(Int64(rows - 3))]])
        #expect(try big.pg.query("SELECT v FROM edge WHERE id = \(bad)").rows == [[.text("fixed")]])
        try big.migrator.close()
        try big.source.close()
    }
}
