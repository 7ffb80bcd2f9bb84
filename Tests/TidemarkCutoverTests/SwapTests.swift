import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
import TidemarkTestSupport
#if canImport(Glibc)
import Glibc
#endif

// `swap: true`: a table rebuilt into a shadow in its own file and swapped in
// at cutover (renamed aside / shadow renamed to the real name), swapped back
// by rollback, its old table dropped by `finish --drop-source`. Hand-written
// plans, real files, the real `tidemark` executable, real writer threads and
// real SIGKILLs.

/// A small application database: `items` (AUTOINCREMENT, an index, a view, a
/// trigger writing `audit`, and `orders` whose FOREIGN KEY names it), and
/// `lines` (WITHOUT ROWID, composite key).
struct SwapScenario {
    var root: String
    var db: String { root + "/app.db" }
    var planPath: String { root + "/plan.yml" }
    var plan: [String] { ["--plan", planPath] }

    static let schema = """
        PRAGMA journal_mode = WAL;
        CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, n INTEGER, note TEXT);
        CREATE INDEX items_owner ON items(owner);
        CREATE TABLE audit (id INTEGER PRIMARY KEY, item_id INTEGER, what TEXT);
        CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN INSERT INTO audit(item_id, what) VALUES (NEW.id, 'insert ' || NEW.owner); END;
        CREATE VIEW items_view AS SELECT id, owner, n FROM items;
        CREATE TABLE orders (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items(id));
        CREATE TRIGGER orders_count AFTER INSERT ON orders BEGIN UPDATE items SET n = n + 1000 WHERE id = NEW.item_id; END;
        CREATE TABLE lines (batch INTEGER NOT NULL, line INTEGER NOT NULL, qty, sku TEXT, PRIMARY KEY (batch, line)) WITHOUT ROWID;
        """

    /// `items`: `n` becomes NOT NULL with a CHECK, `note` is dropped, `doubled`
    /// is new (n * 2); the application's statements (id, owner, n) fit both shapes.
    static let itemsPlan = """
          items:
            swap: true
            create: "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0), doubled INTEGER)"
            columns: {id: id, owner: owner, n: "coalesce(n, 0)", doubled: n * 2}
            inverse: {id: id, owner: owner, n: n}
        """

    /// `lines`: STRICT, `qty` typed INTEGER NOT NULL.
    static let linesPlan = """
          lines:
            swap: true
            create: "CREATE TABLE lines (batch INTEGER NOT NULL, line INTEGER NOT NULL, qty INTEGER NOT NULL, sku TEXT, PRIMARY KEY (batch, line)) STRICT, WITHOUT ROWID"
            columns: {batch: batch, line: line, qty: "coalesce(qty, 0)", sku: sku}
            inverse: {batch: batch, line: line, qty: qty, sku: sku}
        """

    static func create(root: String, items: Int = 300, tables: String = itemsPlan + "\n" + linesPlan) throws -> SwapScenario {
        let s = SwapScenario(root: root)
        let c = try Connection(path: s.db, mode: .readWriteCreate)
        try c.execute(schema)
        try c.transaction(.immediate) {
            let ins = try c.prepare("INSERT INTO items(owner, n, note) VALUES (?1, ?2, ?3)")
            for i in 1...items { try ins.execute([.text("o\(i % 7)"), .integer(Int64(i)), .text("note \(i)")]) }
            // An id used and deleted: AUTOINCREMENT must never hand it out again.
            try c.execute("INSERT INTO items(id, owner, n) VALUES (100000, 'gone', 1); DELETE FROM items WHERE id = 100000")
            let line = try c.prepare("INSERT INTO lines(batch, line, qty, sku) VALUES (?1, ?2, ?3, ?4)")
            for b in 1...20 { for l in 1...5 { try line.execute([.integer(Int64(b)), .integer(Int64(l)), .integer(Int64(b * l)), .text("sku\(l)")]) } }
            try c.execute("INSERT INTO orders(id, item_id) VALUES (1, 1), (2, 2)")
        }
        try c.close()
        try """
            source: app.db
            target: app.db
            log: log
            chunk_rows: 100
            tables:
            \(tables)
            """.write(toFile: s.planPath, atomically: true, encoding: .utf8)
        return s
    }

    func open() throws -> Connection { try Connection(path: db, mode: .readWrite) }

    func scalar(_ sql: String) throws -> Int64 {
        let c = try Connection(path: db, mode: .readOnly)
        defer { try? c.close() }
        let s = try c.prepare(sql)
        _ = try s.step()
        return s.columnInt64(0)
    }

    func texts(_ sql: String) throws -> [String] {
        let c = try Connection(path: db, mode: .readOnly)
        defer { try? c.close() }
        return try c.prepare(sql).rows { $0.columnIsNull(0) ? "NULL" : $0.columnText(0) }
    }

    func columns(_ table: String) throws -> [String] {
        try texts("SELECT name FROM pragma_table_info('\(table)') ORDER BY cid")
    }

    func exists(_ table: String) throws -> Bool {
        try scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '\(table)'") == 1
    }

    /// The error a write gets, or nil.
    func write(_ sql: String, foreignKeys: Bool = false) -> String? {
        do {
            let c = try open()
            defer { try? c.close() }
            if foreignKeys { try c.execute("PRAGMA foreign_keys = ON") }
            try c.execute(sql)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func run(_ args: [String], env: [String: String] = [:], _ what: String) async throws -> Finished {
        let f = try await tidemark(args + plan, environment: env, timeoutSeconds: 90)
        try #require(f.status == 0, "\(what): \(f.summary)")
        return f
    }

    /// migrate (until caught up) and verify.
    func migrateAndVerify() async throws {
        _ = try await run(["migrate"], "migrate")
        _ = try await run(["verify"], "verify")
    }
}

/// Application writers: threads with their own connections (busy timeout
/// 10 s) inserting and updating `items` through the statements an
/// application wrote before the swap; every acknowledged write is recorded,
/// with the longest time one statement waited.
final class SwapWriters: @unchecked Sendable {
    // @unchecked: `acked`, `errors` and `maxWaitMillis` are guarded by `lock`.
    private let lock = NSLock()
    private var acked: [Int64: Int64] = [:]   // id -> n
    private var errors: [String] = []
    private var maxWait = 0.0
    let stop = Atomic<Bool>(false)
    private let done = Atomic<Int>(0)
    let count: Int

    init(db: String, count: Int = 2) {
        self.count = count
        for w in 0..<count {
            Thread.detachNewThread { [self] in
                defer { done.add(1, ordering: .relaxed) }
                do {
                    let c = try Connection(path: db, mode: .readWrite, busyTimeoutMillis: 10_000)
                    // Prepared once, before the swap: SQLite re-prepares them against the new shape.
                    let ins = try c.prepare("INSERT INTO items(owner, n) VALUES (?1, ?2) RETURNING id")
                    let upd = try c.prepare("UPDATE items SET n = n + 1 WHERE id = ?1")
                    var i: Int64 = 0
                    while !stop.load(ordering: .relaxed) {
                        i += 1
                        let n = Int64(w * 1_000_000) + i
                        let start = DispatchTime.now().uptimeNanoseconds
                        try ins.bind([.text("w\(w)"), .integer(n)])
                        _ = try ins.step()
                        let id = ins.columnInt64(0)
                        ins.reset()
                        let waited = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                        lock.lock(); acked[id] = n; maxWait = max(maxWait, waited); lock.unlock()
                        if i % 3 == 0 {
                            let s2 = DispatchTime.now().uptimeNanoseconds
                            try upd.execute([.integer(id)])
                            let w2 = Double(DispatchTime.now().uptimeNanoseconds - s2) / 1e6
                            lock.lock(); acked[id] = n + 1; maxWait = max(maxWait, w2); lock.unlock()
                        }
                        usleep(3_000)
                    }
                    try c.close()
                } catch {
                    lock.lock(); errors.append("writer \(w): \(error)"); lock.unlock()
                }
            }
        }
    }

    /// Stops the writers and returns what they had acknowledged.
    func finish() async throws -> (acked: [Int64: Int64], errors: [String], maxWaitMillis: Double) {
        stop.store(true, ordering: .relaxed)
        let deadline = Date(timeIntervalSinceNow: 30)
        while done.load(ordering: .relaxed) < count && Date() < deadline { try await pause(milliseconds: 20) }
        return snapshot()
    }

    private func snapshot() -> (acked: [Int64: Int64], errors: [String], maxWaitMillis: Double) {
        lock.lock(); defer { lock.unlock() }
        return (acked, errors, maxWait)
    }
}

extension CutoverTests {
    @Suite struct Swap {
        // MARK: The plan

        @Test func planParsing() throws {
            let base = "/tmp"
            let plan = try Plan.parse("""
                source: /tmp/app.db
                target: /tmp/app.db
                log: log
                tables:
                  items: {swap: true, columns: {id: id}}
                """, relativeTo: base)
            #expect(plan.tables[0].swap && plan.tables[0].target == "_tidemark_shadow_items")
            func refusal(_ text: String) -> String {
                do { _ = try Plan.parse(text, relativeTo: base); return "" } catch { return error.message }
            }
            let withTo = refusal("source: /tmp/app.db\ntarget: /tmp/app.db\nlog: log\ntables:\n  items: {swap: true, to: x}\n")
            #expect(withTo.contains("swap: true and to:") && !withTo.contains("\n"), "\(withTo)")
            let otherFile = refusal("source: /tmp/app.db\ntarget: /tmp/other.db\nlog: log\ntables:\n  items: {swap: true}\n")
            #expect(otherFile.contains("needs target: to be the source file"), "\(otherFile)")
            let pg = refusal("source: /tmp/app.db\ntarget: postgres://u@h/db\nlog: log\ntables:\n  items: {swap: true}\n")
            #expect(pg.contains("PostgreSQL target cannot swap"), "\(pg)")
            let notBool = refusal("source: /tmp/app.db\ntarget: /tmp/app.db\nlog: log\ntables:\n  items: {swap: yes please}\n")
            #expect(notBool.contains("swap must be true or false"), "\(notBool)")
        }

        /// The stored plan keeps `swap: true` (and parses back to the shadow target).
        @Test func storedPlanKeepsTheSwap() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 20)
                _ = try await s.run(["migrate"], "migrate")
                let stored = try #require(try StoredPlan.load(for: try Plan.load(path: s.planPath)))
                #expect(stored.tables.allSatisfy { $0.swap })
                #expect(stored.tables.map(\.target) == ["_tidemark_shadow_items", "_tidemark_shadow_lines"])
                let status = try await s.run(["status", "--json"], "status")
                #expect((try status.json()["summary"] as? String ?? "").contains("being rebuilt into _tidemark_shadow_items"), "\(status.stdoutText)")

                // Abandoned before the cutover: the shadows and capture go, the tables are untouched.
                _ = try await s.run(["rollback"], "rollback before cutover")
                #expect(try !s.exists("_tidemark_shadow_items") && !(try s.exists("_tidemark_shadow_lines")))
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
                #expect(try s.scalar("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_tidemark\\_%' ESCAPE '\\' AND name != '_tidemark_cutover'") == 0)
                #expect(try s.scalar("SELECT count(*) FROM items") == 20)
            }
        }

        // MARK: The swap

        /// Live writers through migrate, verify and cutover: they wait the
        /// pause and go on against the new shape; the view, the trigger and
        /// the other table's foreign key name the new table; AUTOINCREMENT
        /// continues; the old table is aside and refuses writes; the log is
        /// one timeline under the real name.
        @Test(.timeLimit(.minutes(10))) func swapUnderWriters() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root)
                let oldMax = try s.scalar("SELECT max(id) FROM items")
                try await s.migrateAndVerify()
                // Item 1 changes before the swap (captured under the old shape) and after it.
                #expect(s.write("UPDATE items SET note = 'before the swap' WHERE id = 1") == nil)
                // Writers from here: the cutover catches up on their changes itself.
                let writers = SwapWriters(db: s.db)
                var finished = false
                defer { if !finished { writers.stop.store(true, ordering: .relaxed) } }
                // And another process, as an application would run: Python's sqlite3, busy timeout 10 s.
                let stopFile = root + "/stop"
                let python = Child(executable: try python3Executable(), ["-c", """
                    import os, sqlite3, sys, time
                    c = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
                    i = 0
                    while not os.path.exists(sys.argv[2]):
                        i += 1
                        cur = c.execute("INSERT INTO items(owner, n) VALUES ('py', ?) RETURNING id", (i,))
                        print(cur.fetchone()[0], i, flush=True)
                        time.sleep(0.003)
                    """, s.db, stopFile])
                defer { python.stopAndReap() }
                try python.start()
                /// Waits until the Python writer has acknowledged `n` writes in all.
                func pythonWrote(_ n: Int) async throws {
                    let deadline = Date(timeIntervalSinceNow: 30)
                    while python.stdoutText.split(separator: "\n").count < n && Date() < deadline { try await pause(milliseconds: 20) }
                }
                try await pythonWrote(5)
                let before = python.stdoutText.split(separator: "\n").count
                try await pause(milliseconds: 300)
                let cut = try await s.run(["cutover", "--json", "--max-lag-ms", "2000"], "cutover")
                let cutJSON = try cut.json()
                // The writers go on after the swap.
                let atCutover = python.stdoutText.split(separator: "\n").count
                try await pythonWrote(atCutover + 5)
                try await pause(milliseconds: 200)
                let w = try await writers.finish()
                finished = true
                _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
                let py = try await python.waitForExit(timeoutSeconds: 30)
                #expect(py.status == 0 && py.reason == .exit, "python writer: \(py.summary)")
                let pyAcked = py.stdoutText.split(separator: "\n").compactMap { line -> (Int64, Int64)? in
                    let f = line.split(separator: " ").compactMap { Int64($0) }
                    return f.count == 2 ? (f[0], f[1]) : nil
                }
                #expect(before >= 5 && pyAcked.count >= atCutover + 5, "the python writer did not write before and after the swap: \(pyAcked.count) writes")
                for (id, n) in pyAcked { #expect(try s.scalar("SELECT n FROM items WHERE id = \(id) AND owner = 'py'") == n, "python item \(id)") }
                #expect(w.errors.isEmpty, "\(w.errors)")
                #expect(w.acked.count >= 10, "the writers hardly wrote")
                #expect(w.maxWaitMillis < 5_000, "a writer waited \(w.maxWaitMillis) ms")
                print("swap under writers: pause \(cutJSON["pause_ms"] ?? "?") ms, \(w.acked.count + pyAcked.count) writes acknowledged, longest write \(Int(w.maxWaitMillis)) ms")

                // The new shape under the real name; the old one aside; no shadow.
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(try s.columns("_tidemark_aside_items") == ["id", "owner", "n", "note"])
                #expect(try !s.exists("_tidemark_shadow_items"))
                #expect(try s.columns("lines") == ["batch", "line", "qty", "sku"])
                #expect(try s.scalar("SELECT count(*) FROM pragma_table_list WHERE name = 'lines' AND strict = 1 AND wr = 1") == 1)
                // Every acknowledged write is in the new table.
                for (id, n) in w.acked {
                    #expect(try s.scalar("SELECT n FROM items WHERE id = \(id)") == n, "item \(id)")
                }
                // The old rows, transformed; the new ones written through the old statements.
                #expect(try s.scalar("SELECT count(*) FROM items WHERE id <= \(oldMax) AND doubled = n * 2") == oldMax)
                // The index of the new shape, built under its own name.
                #expect(try s.texts("SELECT name FROM pragma_index_list('items') WHERE origin = 'c'") == ["items_owner_v2"])
                #expect(try s.texts("SELECT name FROM pragma_index_list('_tidemark_aside_items') WHERE origin = 'c'") == ["items_owner"])

                // The view reads the new table.
                let viewed = try s.scalar("SELECT count(*) FROM items_view")
                let total = try s.scalar("SELECT count(*) FROM items")
                #expect(viewed == total)
                // The trigger is on the new table and fires.
                #expect(try s.texts("SELECT tbl_name FROM sqlite_schema WHERE name = 'items_audit'") == ["items"])
                let audits = try s.scalar("SELECT count(*) FROM audit")
                #expect(s.write("INSERT INTO items(owner, n) VALUES ('after', 5)") == nil)
                #expect(try s.scalar("SELECT count(*) FROM audit") == audits + 1)
                // AUTOINCREMENT: past every id the old table ever handed out.
                let newID = try s.scalar("SELECT max(id) FROM items")
                #expect(newID > 100_000, "AUTOINCREMENT reused an id: \(newID)")
                // Another table's FOREIGN KEY names the new table.
                #expect(try s.texts("SELECT \"table\" FROM pragma_foreign_key_list('orders')") == ["items"])
                #expect(s.write("INSERT INTO orders(id, item_id) VALUES (3, \(newID))", foreignKeys: true) == nil)
                // Another table's trigger that writes the table writes the new one.
                #expect(try s.scalar("SELECT n FROM items WHERE id = \(newID)") == 1005)
                #expect(try s.scalar("SELECT n FROM _tidemark_aside_items WHERE id = 1") == 1001, "the old table is as the swap left it")
                let orphan = s.write("INSERT INTO orders(id, item_id) VALUES (4, 99999999)", foreignKeys: true)
                #expect(orphan?.contains("FOREIGN KEY") == true, "\(orphan ?? "accepted")")
                #expect(try s.scalar("SELECT count(*) FROM pragma_foreign_key_check") == 0)
                // The new shape's CHECK holds.
                #expect(s.write("INSERT INTO items(owner, n) VALUES ('bad', -1)")?.contains("CHECK") == true)
                // The old table refuses writes, naming where to write.
                let refused = s.write("INSERT INTO _tidemark_aside_items(owner, n) VALUES ('x', 1)")
                #expect(refused?.contains("set aside by a table swap") == true, "\(refused ?? "accepted")")

                // One timeline: the log holds item 1 before the swap and after it, under `items`.
                #expect(s.write("UPDATE items SET n = 4242 WHERE id = 1") == nil)
                let ship = try await tidemark(["capture", "run", "--source", s.db, "--log", root + "/log", "--once"])
                try #require(ship.status == 0, "ship: \(ship.summary)")
                let cutLSN = try #require(cutJSON["lsn"] as? Int)
                let history = try await tidemark(["log", "history", "--log", root + "/log", "--table", "items", "--key", "1", "--format", "jsonl"])
                try #require(history.status == 0, "history: \(history.summary)")
                let lines = history.stdoutText.split(separator: "\n")
                let lsns = lines.compactMap { line -> Int? in
                    (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["lsn"] as? Int
                }
                #expect(lsns.contains { $0 <= cutLSN } && lsns.contains { $0 > cutLSN }, "history of item 1: \(history.stdoutText)")
                #expect(history.stdoutText.contains("4242") && history.stdoutText.contains("before the swap"), "\(history.stdoutText)")

                let status = try await s.run(["status", "--json"], "status")
                let summary = try status.json()["summary"] as? String ?? ""
                #expect(summary.contains("kept, guarded, as _tidemark_aside_items"), "\(summary)")
            }
        }

        /// kill -9 at the swap (tables renamed, capture moved) and at the last
        /// step before commit: the file has the old state, whole; writes go on;
        /// the next cutover swaps.
        @Test(.timeLimit(.minutes(10)), arguments: ["locked", "swapped", "guarded"])
        func killedMidCutover(_ step: String) async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 100)
                try await s.migrateAndVerify()
                let writers = SwapWriters(db: s.db, count: 1)
                var finished = false
                defer { if !finished { writers.stop.store(true, ordering: .relaxed) } }
                let killed = try await tidemark(["cutover"] + s.plan, environment: ["TIDEMARK_CRASH_AT": step], timeoutSeconds: 90)
                #expect(killed.killed, "\(killed.summary)")
                // The old state, whole.
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
                #expect(try s.exists("_tidemark_shadow_items") && !(try s.exists("_tidemark_aside_items")))
                #expect(try s.texts("SELECT tbl_name FROM sqlite_schema WHERE name = 'items_audit'") == ["items"])
                #expect(try s.scalar("SELECT count(*) FROM sqlite_schema WHERE name = '_tidemark_cutover'") == 0)
                #expect(s.write("INSERT INTO items(owner, n, note) VALUES ('between', 1, 'still old')") == nil)
                let cut = try await s.run(["cutover", "--max-lag-ms", "2000"], "cutover after the kill")
                _ = cut
                try await pause(milliseconds: 200)
                let w = try await writers.finish()
                finished = true
                #expect(w.errors.isEmpty, "\(w.errors)")
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(try s.scalar("SELECT count(*) FROM items WHERE owner = 'between'") == 1)
                for (id, n) in w.acked { #expect(try s.scalar("SELECT n FROM items WHERE id = \(id)") == n, "item \(id)") }
            }
        }

        /// SIGKILLs of `cutover` at random moments (each step of the one
        /// transaction slowed by 100 ms) while a writer writes: after each, the
        /// file is whole in the old state or the swapped one; in the end every
        /// acknowledged write is in the new table. Seeded; the seed is printed
        /// with any failure.
        @Test(.timeLimit(.minutes(10))) func randomKillsNeverLeaveHalfASwap() async throws {
            try await withTemporaryDirectory { root in
                let seed = UInt64(DispatchTime.now().uptimeNanoseconds)
                var rng = SplitMix64(seed: seed)
                let s = try SwapScenario.create(root: root, items: 200)
                try await s.migrateAndVerify()
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let writers = SwapWriters(db: s.db, count: 1)
                var finished = false
                defer { if !finished { writers.stop.store(true, ordering: .relaxed) } }
                let dryStart = ContinuousClock.now
                _ = try await s.run(["cutover", "--dry-run"], "dry run")
                let dryMillis = (ContinuousClock.now - dryStart).millis
                let old = ["id", "owner", "n", "note"], new = ["id", "owner", "n", "doubled"]
                var done = false, kills = 0
                for attempt in 1...5 where !done {
                    let child = reaper.add(try Child.tidemark(["cutover", "--max-lag-ms", "2000"] + s.plan,
                                                              environment: ["TIDEMARK_CUTOVER_STEP_DELAY_MS": "100"]))
                    // The transaction spans ~300 ms after about a dry run's time: kills land before it and inside it.
                    let delay = dryMillis * 0.3 + Double(rng.next() % UInt64(max(1, dryMillis * 0.7 + 250)))
                    let f: Finished = try await blocking {
                        let start = ContinuousClock.now
                        try child.start()
                        while child.isRunning && (ContinuousClock.now - start).millis < delay { usleep(500) }
                        child.sendSignal(SIGKILL)
                        return try child.wait(timeoutSeconds: 60)
                    }
                    let columns = try s.columns("items")
                    let shadow = try s.exists("_tidemark_shadow_items"), aside = try s.exists("_tidemark_aside_items")
                    let whole = (columns == old && shadow && !aside) || (columns == new && !shadow && aside)
                    #expect(whole, "seed \(seed), attempt \(attempt), kill at \(Int(delay)) ms: items \(columns), shadow \(shadow), aside \(aside)")
                    if f.killed { kills += 1 } else {
                        #expect(f.status == 0, "seed \(seed): \(f.summary)")
                        done = true
                    }
                    if columns == new { done = true }
                }
                print("swap random kills: \(kills) kill(s) (seed \(seed), dry run \(Int(dryMillis)) ms)")
                #expect(kills > 0, "seed \(seed): no attempt was killed; the test proved nothing")
                if !done { _ = try await s.run(["cutover", "--max-lag-ms", "2000"], "cutover after \(kills) kills (seed \(seed))") }
                try await pause(milliseconds: 200)
                let w = try await writers.finish()
                finished = true
                #expect(w.errors.isEmpty, "seed \(seed): \(w.errors)")
                #expect(try s.columns("items") == new)
                for (id, n) in w.acked { #expect(try s.scalar("SELECT n FROM items WHERE id = \(id)") == n, "seed \(seed): item \(id)") }
            }
        }

        // MARK: Rollback and finish

        /// kill -9 of a rollback before its commit: still swapped, whole; the
        /// next rollback swaps back with the new shape's writes.
        @Test(.timeLimit(.minutes(10))) func killedMidRollback() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 50)
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                #expect(s.write("INSERT INTO items(id, owner, n) VALUES (300001, 'new', 9)") == nil)
                // This change is carried back from the log, the next one from the outbox.
                let ship = try await tidemark(["capture", "run", "--source", s.db, "--log", root + "/log", "--once"])
                try #require(ship.status == 0, "ship: \(ship.summary)")
                #expect(try s.scalar("SELECT count(*) FROM _tidemark_outbox") == 0)
                let killed = try await tidemark(["rollback"] + s.plan, environment: ["TIDEMARK_CRASH_AT": "rollback-applied"], timeoutSeconds: 90)
                #expect(killed.killed, "\(killed.summary)")
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(try s.exists("_tidemark_aside_items") && !(try s.exists("_tidemark_shadow_items")))
                #expect(s.write("INSERT INTO items(id, owner, n) VALUES (300002, 'between', 10)") == nil)
                _ = try await s.run(["rollback"], "rollback after the kill")
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
                #expect(try s.texts("SELECT n FROM items WHERE id >= 300001 ORDER BY id") == ["9", "10"])
            }
        }

        /// Writes on the new shape (insert, update, delete, in both tables),
        /// with writers running through the rollback: the swap back carries
        /// them into the old tables (the dropped column: old rows keep their
        /// value, new rows get NULL); the triggers and view are the old ones
        /// again; then `migrate` starts over and a second cutover swaps again.
        @Test(.timeLimit(.minutes(10))) func rollbackThenMigrateAgain() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 100)
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                #expect(s.write("""
                    INSERT INTO items(id, owner, n) VALUES (200001, 'new', 7);
                    UPDATE items SET n = 70, owner = 'changed' WHERE id = 2;
                    DELETE FROM items WHERE id = 3;
                    INSERT INTO lines(batch, line, qty, sku) VALUES (99, 1, 5, 'new');
                    UPDATE lines SET qty = 500 WHERE batch = 1 AND line = 1;
                    DELETE FROM lines WHERE batch = 2 AND line = 2;
                    """) == nil)
                let writers = SwapWriters(db: s.db, count: 1)
                var finished = false
                defer { if !finished { writers.stop.store(true, ordering: .relaxed) } }
                try await pause(milliseconds: 300)
                _ = try await s.run(["rollback"], "rollback")
                try await pause(milliseconds: 300)
                let w = try await writers.finish()
                finished = true
                #expect(w.errors.isEmpty, "\(w.errors)")
                #expect(w.maxWaitMillis < 5_000, "a writer waited \(w.maxWaitMillis) ms")

                // The old shape is live again, with the new shape's writes.
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
                #expect(try !s.exists("_tidemark_aside_items"))
                #expect(try s.texts("SELECT owner || ':' || n || ':' || coalesce(note, 'NULL') FROM items WHERE id IN (2, 200001) ORDER BY id")
                        == ["changed:70:note 2", "new:7:NULL"])
                #expect(try s.scalar("SELECT count(*) FROM items WHERE id = 3") == 0)
                #expect(try s.texts("SELECT qty FROM lines WHERE (batch, line) IN (VALUES (1, 1), (99, 1)) ORDER BY batch") == ["500", "5"])
                #expect(try s.scalar("SELECT count(*) FROM lines WHERE batch = 2 AND line = 2") == 0)
                for (id, n) in w.acked { #expect(try s.scalar("SELECT n FROM items WHERE id = \(id)") == n, "item \(id)") }
                // The old trigger and view, on the old table; it takes writes.
                #expect(try s.texts("SELECT sql FROM sqlite_schema WHERE name = 'items_audit'").first?.contains("'insert ' || NEW.owner") == true)
                #expect(try s.texts("SELECT tbl_name FROM sqlite_schema WHERE name = 'items_audit'") == ["items"])
                let audits = try s.scalar("SELECT count(*) FROM audit")
                #expect(s.write("INSERT INTO items(owner, n, note) VALUES ('back', 1, 'old shape')") == nil)
                #expect(try s.scalar("SELECT count(*) FROM audit") == audits + 1)
                #expect(try s.scalar("SELECT max(id) FROM items") > 200_001, "AUTOINCREMENT went back")
                #expect(try s.texts("SELECT \"table\" FROM pragma_foreign_key_list('orders')") == ["items"])
                // The view and another table's trigger read and write the old table again.
                let viewed = try s.scalar("SELECT count(*) FROM items_view")
                let total = try s.scalar("SELECT count(*) FROM items")
                #expect(viewed == total)
                #expect(s.write("INSERT INTO orders(id, item_id) VALUES (50, 2)") == nil)
                #expect(try s.scalar("SELECT n FROM items WHERE id = 2") == 1070)
                #expect(s.write("UPDATE items SET n = 70 WHERE id = 2") == nil)
                // The new shape is fenced in the shadow.
                #expect(s.write("INSERT INTO _tidemark_shadow_items(owner, n) VALUES ('x', 1)") != nil)
                let status = try await s.run(["status", "--json"], "status")
                #expect((try status.json()["summary"] as? String ?? "").contains("swapped back"), "\(status.stdoutText)")

                // Rollback, then migrate again: a new migration, a second swap.
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "second cutover")
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(try s.scalar("SELECT n FROM items WHERE id = 2") == 70)
                #expect(try s.scalar("SELECT count(*) FROM items WHERE owner = 'back'") == 1)
            }
        }

        /// One plan, one table swapped and one moved to a new table beside
        /// it: both cut over in the one transaction and both come back.
        @Test(.timeLimit(.minutes(10))) func aSwapBesideASameFileMove() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 30, tables: SwapScenario.itemsPlan + """

                      lines:
                        to: lines_v2
                    """)
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(s.write("INSERT INTO lines(batch, line, qty) VALUES (500, 1, 1)")?.contains("moved to lines_v2") == true)
                #expect(s.write("INSERT INTO lines_v2(batch, line, qty, sku) VALUES (500, 1, 7, 'v2'); UPDATE items SET n = 99 WHERE id = 5") == nil)
                _ = try await s.run(["rollback"], "rollback")
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
                #expect(try s.scalar("SELECT n FROM items WHERE id = 5") == 99)
                #expect(try s.scalar("SELECT qty FROM lines WHERE batch = 500 AND line = 1") == 7)
            }
        }

        /// The plan may spell the table in another case than the schema.
        @Test(.timeLimit(.minutes(10))) func aTableNamedInAnotherCase() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 10, tables: SwapScenario.itemsPlan.replacingOccurrences(of: "  items:", with: "  ITEMS:"))
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(try s.texts("SELECT tbl_name FROM sqlite_schema WHERE name = 'items_audit'") == ["items"])
                #expect(try s.texts("SELECT sql FROM sqlite_schema WHERE name = 'items_view'").first?.contains("_tidemark_") == false)
                _ = try await s.run(["rollback"], "rollback")
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
            }
        }

        /// `finish --drop-source` drops the old table (its indexes and guards
        /// with it); the new one is untouched; status names nothing left to do.
        @Test(.timeLimit(.minutes(10))) func finishDropsTheOldTable() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 50)
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                let rows = try s.scalar("SELECT count(*) FROM items")
                // After the swap: cutover again says it is done; verify
                // refuses in one line; migrate changes nothing.
                let again = try await s.run(["cutover", "--json"], "cutover again")
                #expect(try again.json()["already_done"] as? Bool == true, "\(again.stdoutText)")
                let verify = try await tidemark(["verify"] + s.plan)
                #expect(verify.status != 0 && verify.stderrLines.count == 1, "\(verify.summary)")
                #expect(verify.stderr.contains("was swapped in at cutover"), "\(verify.stderr)")
                let migrate = try await tidemark(["migrate"] + s.plan)
                #expect(migrate.reason == .exit && !migrate.stderr.contains("no such table"), "\(migrate.summary)")
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(try s.exists("_tidemark_aside_items") && !(try s.exists("_tidemark_shadow_items")))
                _ = try await s.run(["finish"], "finish")
                #expect(try s.exists("_tidemark_aside_items"), "finish without --drop-source keeps the old table")
                let kept = try await s.run(["status", "--json"], "status")
                #expect((try kept.json()["next"] as? String ?? "").contains("finish --drop-source"), "\(kept.stdoutText)")
                _ = try await s.run(["finish", "--drop-source"], "finish --drop-source")
                #expect(try !s.exists("_tidemark_aside_items") && !(try s.exists("_tidemark_aside_lines")))
                #expect(try s.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'items_owner' OR name LIKE '_tidemark_guard_%'") == 0)
                #expect(try s.scalar("SELECT count(*) FROM items") == rows)
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(s.write("INSERT INTO items(owner, n) VALUES ('later', 1)") == nil)
                #expect(try s.scalar("SELECT count(*) FROM sqlite_schema WHERE name = '_tidemark_cutover'") == 0, "the switch record routes nothing any more")

                // The same table swapped again (a second transform): a new migration, new index names.
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "second swap")
                #expect(try s.texts("SELECT name FROM pragma_index_list('items') WHERE origin = 'c'") == ["items_owner_v3"])
                #expect(try s.scalar("SELECT count(*) FROM items") == rows + 1)
                #expect(try s.exists("_tidemark_aside_items"))
            }
        }

        /// A swap finished without --drop-source keeps the old table aside:
        /// swapping the table again is refused in one line until it is dropped.
        @Test(.timeLimit(.minutes(10))) func swappingAgainNeedsTheOldTableDropped() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 10, tables: SwapScenario.itemsPlan)
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                _ = try await s.run(["finish"], "finish")
                let refused = try await tidemark(["migrate"] + s.plan)
                #expect(refused.status != 0 && refused.stderrLines.count == 1, "\(refused.summary)")
                #expect(refused.stderr.contains("finish --drop-source"), "\(refused.stderr)")
                #expect(try !s.exists("_tidemark_shadow_items"), "nothing was created")
            }
        }

        /// Another table's FOREIGN KEY to a column the new shape no longer
        /// keeps UNIQUE: refused by migrate, before anything is copied; kept
        /// UNIQUE (by a carried index), it migrates.
        @Test(.timeLimit(.minutes(10))) func refusesAForeignKeyTheNewShapeBreaks() async throws {
            try await withTemporaryDirectory { root in
                let db = root + "/app.db"
                let c = try Connection(path: db, mode: .readWriteCreate)
                try c.execute("""
                    PRAGMA journal_mode = WAL;
                    CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT UNIQUE, n INTEGER);
                    CREATE TABLE orders (id INTEGER PRIMARY KEY, code TEXT REFERENCES items(code));
                    INSERT INTO items VALUES (1, 'a', 1); INSERT INTO orders VALUES (1, 'a');
                    """)
                try c.close()
                func plan(_ create: String) throws {
                    try "source: app.db\ntarget: app.db\nlog: log\ntables:\n  items:\n    swap: true\n    create: \"\(create)\"\n"
                        .write(toFile: root + "/plan.yml", atomically: true, encoding: .utf8)
                }
                try plan("CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT, n INTEGER)")
                let refused = try await tidemark(["migrate", "--plan", root + "/plan.yml"])
                #expect(refused.status != 0 && refused.stderrLines.count == 1, "\(refused.summary)")
                #expect(refused.stderr.contains("FOREIGN KEY") && refused.stderr.contains("foreign key mismatch"), "\(refused.stderr)")
                let after = try Connection(path: db, mode: .readOnly)
                #expect(try Schema.table(named: "_tidemark_shadow_items", in: after) == nil, "nothing was created")
                try after.close()
                try plan("CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT UNIQUE NOT NULL, n INTEGER)")
                let ok = try await tidemark(["migrate", "--plan", root + "/plan.yml"])
                #expect(ok.status == 0, "\(ok.summary)")
            }
        }

        /// A table whose FOREIGN KEY names itself (a tree): after the swap
        /// the new table's key names the new table, whether its definition is
        /// carried or the plan's own.
        @Test(.timeLimit(.minutes(10)), arguments: [false, true])
        func aSelfReferenceNamesTheNewTable(planDefinesIt: Bool) async throws {
            try await withTemporaryDirectory { root in
                let db = root + "/app.db"
                let c = try Connection(path: db, mode: .readWriteCreate)
                try c.execute("""
                    PRAGMA journal_mode = WAL;
                    CREATE TABLE nodes (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES nodes(id), name TEXT, note TEXT);
                    INSERT INTO nodes VALUES (1, NULL, 'root', 'x'), (2, 1, 'child', 'y');
                    """)
                try c.close()
                let create = planDefinesIt ? "\n    create: \"CREATE TABLE nodes (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES nodes(id), name TEXT NOT NULL)\"" : ""
                try "source: app.db\ntarget: app.db\nlog: log\ntables:\n  nodes:\n    swap: true\(create)\n    columns: {id: id, parent: parent, name: name}\n"
                    .write(toFile: root + "/plan.yml", atomically: true, encoding: .utf8)
                let s = SwapScenario(root: root)
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                #expect(try s.columns("nodes") == ["id", "parent", "name"])
                #expect(try s.texts("SELECT \"table\" FROM pragma_foreign_key_list('nodes')") == ["nodes"])
                #expect(s.write("INSERT INTO nodes(id, parent, name) VALUES (3, 2, 'grandchild')", foreignKeys: true) == nil)
                #expect(s.write("INSERT INTO nodes(id, parent, name) VALUES (4, 99, 'orphan')", foreignKeys: true)?.contains("FOREIGN KEY") == true)
                #expect(try s.scalar("SELECT count(*) FROM pragma_foreign_key_check") == 0)
            }
        }

        /// A new shape capture could not follow (UNIQUE over a generated
        /// column): refused by migrate, before copying (not at the cutover).
        @Test(.timeLimit(.minutes(10))) func refusesANewShapeCaptureCannotFollow() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 5, tables: """
                      items:
                        swap: true
                        create: "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, n INTEGER, note TEXT, tag TEXT GENERATED ALWAYS AS ('t' || id) VIRTUAL UNIQUE)"
                    """)
                let refused = try await tidemark(["migrate"] + s.plan)
                #expect(refused.status != 0 && refused.stderrLines.count == 1, "\(refused.summary)")
                #expect(refused.stderr.contains("capture cannot follow items"), "\(refused.stderr)")
                #expect(try !s.exists("_tidemark_shadow_items"), "nothing was created")
            }
        }

        /// A trigger of another table and a view that name a column the swap
        /// drops would break: the cutover is refused before anything changes;
        /// with --drop-triggers the swap drops them instead of leaving them broken.
        @Test(.timeLimit(.minutes(10))) func refusesWhatWouldBreak() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 20, tables: SwapScenario.itemsPlan)
                #expect(s.write("CREATE TRIGGER orders_note AFTER INSERT ON orders BEGIN UPDATE items SET note = 'ordered' WHERE id = NEW.item_id; END") == nil)
                #expect(s.write("CREATE VIEW items_notes AS SELECT id, note FROM items") == nil)
                try await s.migrateAndVerify()
                let refused = try await tidemark(["cutover"] + s.plan)
                #expect(refused.status != 0 && refused.stderrLines.count == 1, "\(refused.summary)")
                #expect(refused.stderr.contains("orders_note") && refused.stderr.contains("items_notes"), "\(refused.stderr)")
                #expect(refused.stderr.contains("nothing was switched"), "\(refused.stderr)")
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
                #expect(try s.exists("_tidemark_shadow_items"))

                _ = try await s.run(["cutover", "--drop-triggers"], "cutover --drop-triggers")
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(try s.scalar("SELECT count(*) FROM sqlite_schema WHERE name IN ('orders_note', 'items_notes')") == 0)
                #expect(s.write("INSERT INTO orders(id, item_id) VALUES (10, 1)") == nil)
                // Nothing broken is left: SQLite's own checks of the schema pass.
                #expect(s.write("ALTER TABLE audit RENAME TO audit2") == nil)
            }
        }
    }
}

