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

/// The whole lifecycle into a real PostgreSQL server, with writers on both
/// sides: migrate under live SQLite writers (the migrator killed -9 mid-copy
/// and started again), verify, cutover, four PostgreSQL writers with
/// overlapping transactions, rollback, migrate and cut over again. Every
/// acknowledged write must be in the store that is authoritative at the end
/// of each phase: nothing lost.
@Suite(.serialized) struct PostgresLifecycleTests {
    /// The expected state of the rows one writer owns (writers own disjoint
    /// keys, so the last acknowledged write of a key is its final value).
    final class Model: @unchecked Sendable {
        private let lock = NSLock()
        private var rows: [Int64: (owner: String, balance: Double)?] = [:]
        func set(_ id: Int64, _ row: (owner: String, balance: Double)?) {
            lock.lock(); rows[id] = .some(row); lock.unlock()
        }
        var snapshot: [Int64: (owner: String, balance: Double)?] { lock.lock(); defer { lock.unlock() }; return rows }
    }

    static let initialRows: Int64 = 6_000

    /// Flags and counters shared with the writer threads (under a lock).
    final class Shared: @unchecked Sendable {
        private let lock = NSLock()
        private var stopped = false
        private var counts: [Int: Int] = [:]
        var stop: Bool {
            get { lock.lock(); defer { lock.unlock() }; return stopped }
            set { lock.lock(); stopped = newValue; lock.unlock() }
        }
        func add(_ i: Int) { lock.lock(); counts[i, default: 0] += 1; lock.unlock() }
        func set(_ i: Int, _ n: Int) { lock.lock(); counts[i] = n; lock.unlock() }
        func count(_ i: Int) -> Int { lock.lock(); defer { lock.unlock() }; return counts[i] ?? 0 }
    }

    /// Writes acknowledged by SQLite (autocommit statements; each key is
    /// owned by one writer: id % writers == index).
    static func sqliteWriter(path: String, index: Int, writers: Int, model: Model, shared: Shared) {
        guard let c = try? Connection(path: path, mode: .readWrite, busyTimeoutMillis: 10_000) else { return }
        var rng = SystemRandomNumberGenerator()
        var next = Int64(1_000_000 + index * 1_000_000)
        while !shared.stop {
            let op = Int.random(in: 0..<10, using: &rng)
            do {
                if op < 3 {
                    next += 1
                    let row = (owner: "new-\(next)-é", balance: Double.random(in: -1e6...1e6, using: &rng))
                    try c.prepare("INSERT INTO acct(id, owner, balance) VALUES (?, ?, ?)").execute([.integer(next), .text(row.owner), .real(row.balance)])
                    model.set(next, row)
                } else {
                    var id = Int64.random(in: 1...initialRows, using: &rng)
                    id = id - id % Int64(writers) + Int64(index)
                    if id < 1 || id > initialRows { continue }
                    if op == 9 {
                        try c.prepare("DELETE FROM acct WHERE id = ?").execute([.integer(id)])
                        model.set(id, nil)
                    } else {
                        let b = Double.random(in: -1e6...1e6, using: &rng)
                        try c.prepare("UPDATE acct SET balance = ? WHERE id = ?").execute([.real(b), .integer(id)])
                        if c.changes == 1 { model.set(id, ("o\(id)", b)) }
                    }
                }
                shared.add(index)
            } catch {
                // Refused (the guard after cutover): not acknowledged, not in the model.
                if "\(error)".contains("tidemark") { return }
            }
            usleep(300)
        }
    }

    /// PostgreSQL writers: transactions of several writes that overlap
    /// other writers' (begun early, committed late, in random order).
    static func postgresWriter(conninfo: String, index: Int, writers: Int, model: Model, transactions: Int) throws -> Int {
        let c = try PGConnection(conninfo)
        defer { c.close() }
        var rng = SystemRandomNumberGenerator()
        var next = Int64(10_000_000 + index * 1_000_000)
        var acked = 0
        for _ in 0..<transactions {
            var pending: [(Int64, (owner: String, balance: Double)?)] = []
            try c.execute("BEGIN")
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let op = Int.random(in: 0..<10, using: &rng)
                if op < 3 {
                    next += 1
                    let row = (owner: "pg-\(next)", balance: Double.random(in: -1e9...1e9, using: &rng))
                    _ = try c.query("INSERT INTO acct(id, owner, balance) VALUES ($1, $2, $3)", [.value(.integer(next)), .value(.text(row.owner)), .value(.real(row.balance))])
                    pending.append((next, row))
                } else {
                    var id = Int64.random(in: 1...initialRows, using: &rng)
                    id = id - id % Int64(writers) + Int64(index)
                    if id < 1 || id > initialRows { continue }
                    if op == 9 {
                        _ = try c.query("DELETE FROM acct WHERE id = $1", [.value(.integer(id))])
                        pending.append((id, nil))
                    } else {
                        let b = Double.random(in: -1e9...1e9, using: &rng)
                        let r = try c.query("UPDATE acct SET balance = $1 WHERE id = $2 RETURNING owner", [.value(.real(b)), .value(.integer(id))])
                        if case .text(let owner)? = r.rows.first?.first { pending.append((id, (owner, b))) }
                    }
                }
                usleep(UInt32.random(in: 0...3_000, using: &rng))
            }
            try c.execute("COMMIT")
            for (id, row) in pending { model.set(id, row) }
            acked += 1
        }
        return acked
    }

    static func sqliteRows(_ path: String) throws -> [Int64: (owner: String, balance: Double)] {
        let c = try Connection(path: path, mode: .readOnly)
        defer { try? c.close() }
        var out: [Int64: (owner: String, balance: Double)] = [:]
        let s = try c.prepare("SELECT id, owner, balance FROM acct")
        while try s.step() { out[s.columnInt64(0)] = (s.columnText(1), s.columnDouble(2)) }
        return out
    }

    static func postgresRows(_ conninfo: String) throws -> [Int64: (owner: String, balance: Double)] {
        let c = try PGConnection(conninfo)
        defer { c.close() }
        var out: [Int64: (owner: String, balance: Double)] = [:]
        for row in try c.query("SELECT id, owner, balance FROM acct").rows {
            guard case .integer(let id) = row[0], case .text(let o) = row[1], case .real(let b) = row[2] else { continue }
            out[id] = (o, b)
        }
        return out
    }

    /// Every key the model knows has its last acknowledged value (bit for
    /// bit) in `rows`, or is absent if its last acknowledged write deleted it.
    static func expectModel(_ model: Model, in rows: [Int64: (owner: String, balance: Double)], _ what: String) {
        var wrong = 0
        for (id, expected) in model.snapshot {
            let have = rows[id]
            switch (expected, have) {
            case (nil, nil): continue
            case (let e?, let h?) where e.owner == h.owner && e.balance.bitPattern == h.balance.bitPattern: continue
            default:
                wrong += 1
                if wrong <= 5 { Issue.record("\(what): key \(id) expected \(String(describing: expected)), found \(String(describing: have))") }
            }
        }
        #expect(wrong == 0, "\(what): \(wrong) acknowledged writes lost or wrong")
    }

    static func run(_ arguments: [String], timeout: Double = 120) throws -> (status: Int32, output: String) {
        let f = try runTidemark(arguments, timeoutSeconds: timeout)
        return (f.status, f.stdout + f.stderr)
    }

    static func startMigrate(_ plan: String) throws -> Child {
        try Child.started(try tidemarkExecutable(), ["migrate", "--follow", "--plan", plan])
    }

    /// Applied LSN and copy progress as stored in PostgreSQL.
    static func progress(_ conninfo: String) -> (applied: Int64, copied: Int64, following: Bool)? {
        guard let c = try? PGConnection(conninfo) else { return nil }
        defer { c.close() }
        guard let m = try? c.query("SELECT applied_lsn FROM tidemark.migration WHERE id = 1"), case .integer(let applied)? = m.rows.first?.first,
              let t = try? c.query("SELECT rows_copied, phase FROM tidemark.migration_tables"), let row = t.rows.first,
              case .integer(let copied) = row[0], case .text(let phase) = row[1] else { return nil }
        return (applied, copied, phase == "following")
    }

    static func waitCaughtUp(_ conninfo: String, source: String, seconds: Double = 90) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let captured = try Capture.lastCapturedSeq(try Connection(path: source, mode: .readOnly))
            if let p = progress(conninfo), p.following, p.applied >= captured { return }
            usleep(50_000)
        }
        Issue.record("the migration did not catch up in \(seconds) s")
    }

    @Test(.timeLimit(.minutes(10)))
    func fullLifecycleIntoPostgresLosesNoAcknowledgedWrite() throws {
        let server = try PostgresServer.shared()
        let conninfo = server.conninfo(database: try server.createDatabase("lifecycle"))
        let dir = try makeTemporaryDirectory("tidemark-pg-lifecycle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = dir + "/app.db"
        do {
            let c = try Connection(path: source, mode: .readWriteCreate)
            _ = try c.setJournalMode(.wal)
            try c.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance REAL NOT NULL)")
            try c.transaction {
                let s = try c.prepare("INSERT INTO acct VALUES (?, ?, ?)")
                for i in 1...Self.initialRows { try s.execute([.integer(i), .text("o\(i)"), .real(Double(i) * 1.0000000000000002)]) }
            }
            try c.close()
        }
        let plan = dir + "/plan.yml"
        try "source: app.db\ntarget: \(conninfo)\nlog: changelog\nchunk_rows: 200\ntables:\n  acct: {}\n".write(toFile: plan, atomically: true, encoding: .utf8)

        let model = Model()
        let writers = 2
        let shared = Shared()
        var threads: [Thread] = []
        func startSQLiteWriters() {
            shared.stop = false
            threads = (0..<writers).map { i in
                let t = Thread { Self.sqliteWriter(path: source, index: i, writers: writers, model: model, shared: shared) }
                t.start()
                return t
            }
        }
        func stopSQLiteWriters() {
            shared.stop = true
            while threads.contains(where: { !$0.isFinished }) { usleep(10_000) }
        }

        for round in 1...2 {
            startSQLiteWriters()
            // Migrate under live writers; kill -9 the migrator mid-copy, then again.
            var migrate = try Self.startMigrate(plan)
            let deadline = Date().addingTimeInterval(60)
            // The new migration's copy (not the rolled-back one's state).
            while Date() < deadline, Self.progress(conninfo).map({ $0.following || $0.copied < 1_000 }) ?? true { usleep(20_000) }
            migrate.sendSignal(SIGKILL)
            let killed = try migrate.wait(timeoutSeconds: 30)
            #expect(killed.reason == .uncaughtSignal, "round \(round): the migrator should have been killed mid-copy: \(killed.summary)")
            migrate = try Self.startMigrate(plan)
            try Self.waitCaughtUp(conninfo, source: source)
            let verify = try Self.run(["verify", "--plan", plan])
            #expect(verify.status == 0, "round \(round): verify: \(verify.output)")
            // Cutover: the SQLite writers wait out the pause, then the guard refuses them.
            let cut = try Self.run(["cutover", "--plan", plan, "--max-pause-ms", "5000"])
            #expect(cut.status == 0, "round \(round): cutover: \(cut.output)")
            #expect(!cut.output.contains("secret"), "no password in output")
            stopSQLiteWriters()
            migrate.sendSignal(SIGTERM)
            _ = try migrate.wait(timeoutSeconds: 60)
            #expect(shared.count(0) > 0 && shared.count(1) > 0, "round \(round): the SQLite writers wrote")
            Self.expectModel(model, in: try Self.postgresRows(conninfo), "round \(round), PostgreSQL after cutover")
            if round == 2 { break }

            // Four PostgreSQL writers with overlapping transactions.
            let pgThreads = (0..<4).map { i in
                let t = Thread {
                    do { shared.set(100 + i, try Self.postgresWriter(conninfo: conninfo, index: i, writers: 4, model: model, transactions: 60)) }
                    catch { Issue.record("PostgreSQL writer \(i): \(error)") }
                }
                t.start()
                return t
            }
            while pgThreads.contains(where: { !$0.isFinished }) { usleep(10_000) }
            #expect((0..<4).allSatisfy { shared.count(100 + $0) == 60 }, "every PostgreSQL transaction committed")

            // Rollback carries PostgreSQL's writes back into SQLite.
            let back = try Self.run(["rollback", "--plan", plan])
            #expect(back.status == 0, "rollback: \(back.output)")
            Self.expectModel(model, in: try Self.sqliteRows(source), "after rollback, SQLite")
            // One timeline: the log says which store wrote which LSNs.
            let origins = LogOrigins.load(LogDirectory(dir + "/changelog"))
            #expect(origins.map { $0.store.hasPrefix("target") } == [true, false], "\(origins)")
            #expect(origins.count == 2 && origins[0].fromLSN < origins[1].fromLSN)
            #expect(!origins.contains { $0.store.contains("secret") })
            // A row's history shows which store wrote each change.
            let reader = try LogReader(directory: dir + "/changelog")
            let cursor = try reader.cursor()
            var sourceKey: Int64?, targetKey: Int64?
            while let r = try cursor.next() {
                guard case .integer(let k)? = r.key.first?.value else { continue }
                if r.lsn < origins[0].fromLSN { sourceKey = sourceKey ?? k } else if r.lsn < origins[1].fromLSN { targetKey = targetKey ?? k }
            }
            for (key, store) in [(sourceKey, "written by source"), (targetKey, "written by target")] {
                let k = try #require(key, "no change written by \(store)")
                let history = try Self.run(["log", "history", "--log", dir + "/changelog", "--table", "acct", "--key", String(k)])
                #expect(history.output.contains(store), "\(history.output)")
            }
            // PostgreSQL refuses writes now, naming the SQLite file.
            let c = try PGConnection(conninfo)
            #expect(throws: PGError.self) { _ = try c.query("UPDATE acct SET balance = 0 WHERE id = 1") }
            c.close()
        }
        // After the second cutover both stores hold the same rows.
        let pgRows = try Self.postgresRows(conninfo)
        let sqliteRows = try Self.sqliteRows(source)
        #expect(pgRows.count == sqliteRows.count)
        for (id, row) in sqliteRows {
            guard let p = pgRows[id], p.owner == row.owner, p.balance.bitPattern == row.balance.bitPattern else {
                Issue.record("key \(id) differs between SQLite and PostgreSQL after the second cutover")
                break
            }
        }
    }
}
