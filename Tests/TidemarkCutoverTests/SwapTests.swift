import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
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
        CREATE TABLE lines (batch INTEGER NOT NULL, line INTEGER NOT NULL, qty, sku TEXT, PRIMARY KEY (batch, line)) WITHOUT ROWID;
        """

    /// `items`: `n` becomes NOT NULL with a CHECK, `note` is dropped, `doubled`
    /// is new (n * 2); the application's statements (id, owner, n) fit both shapes.
    static let itemsPlan = """
          items:
            swap: true
            create: "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0), doubled INTEGER)"
            columns: {id: id, owner: owner, n: coalesce(n, 0), doubled: n * 2}
            inverse: {id: id, owner: owner, n: n}
        """

    /// `lines`: STRICT, `qty` typed INTEGER NOT NULL.
    static let linesPlan = """
          lines:
            swap: true
            create: "CREATE TABLE lines (batch INTEGER NOT NULL, line INTEGER NOT NULL, qty INTEGER NOT NULL, sku TEXT, PRIMARY KEY (batch, line)) STRICT, WITHOUT ROWID"
            columns: {batch: batch, line: line, qty: coalesce(qty, 0), sku: sku}
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
                    var i: Int64 = 0
                    while !stop.load(ordering: .relaxed) {
                        i += 1
                        let n = Int64(w * 1_000_000) + i
                        let start = DispatchTime.now().uptimeNanoseconds
                        // Prepared per write: the application's statements, re-prepared by SQLite after the swap.
                        let ins = try c.prepare("INSERT INTO items(owner, n) VALUES (?1, ?2) RETURNING id")
                        try ins.bind([.text("w\(w)"), .integer(n)])
                        _ = try ins.step()
                        let id = ins.columnInt64(0)
                        try ins.reset()
                        let waited = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                        lock.lock(); acked[id] = n; maxWait = max(maxWait, waited); lock.unlock()
                        if i % 3 == 0 {
                            let s2 = DispatchTime.now().uptimeNanoseconds
                            try c.prepare("UPDATE items SET n = n + 1 WHERE id = ?1").execute([.integer(id)])
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
                #expect(stored.tables.allSatisfy(\.swap))
                #expect(stored.tables.map(\.target) == ["_tidemark_shadow_items", "_tidemark_shadow_lines"])
                let status = try await s.run(["status", "--json"], "status")
                #expect((try status.json()["summary"] as? String ?? "").contains("being rebuilt into _tidemark_shadow_items"), "\(status.stdoutText)")
            }
        }

        // MARK: The swap

        /// Live writers through migrate, verify and cutover: they wait the
        /// pause and go on against the new shape; the view, the trigger and
        /// the other table's foreign key name the new table; AUTOINCREMENT
        /// continues; the old table is aside and refuses writes; the log is
        /// one timeline under the real name.
        @Test(.timeLimit(.minutes(3))) func swapUnderWriters() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root)
                let oldMax = try s.scalar("SELECT max(id) FROM items")
                let writers = SwapWriters(db: s.db)
                var finished = false
                defer { if !finished { writers.stop.store(true, ordering: .relaxed) } }
                try await s.migrateAndVerify()
                let cut = try await s.run(["cutover", "--json", "--max-lag-ms", "2000"], "cutover")
                let cutJSON = try cut.json()
                try await pause(milliseconds: 400)
                let w = try await writers.finish()
                finished = true
                #expect(w.errors.isEmpty, "\(w.errors)")
                #expect(w.acked.count > 20, "the writers hardly wrote")
                #expect(w.maxWaitMillis < 5_000, "a writer waited \(w.maxWaitMillis) ms")

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
                #expect(try s.scalar("SELECT count(*) FROM items_view") == s.scalar("SELECT count(*) FROM items"))
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
                #expect(history.stdoutText.contains("4242") && history.stdoutText.contains("note 1"), "\(history.stdoutText)")

                let status = try await s.run(["status", "--json"], "status")
                let summary = try status.json()["summary"] as? String ?? ""
                #expect(summary.contains("kept, guarded, as _tidemark_aside_items"), "\(summary)")
            }
        }

        /// kill -9 at the swap (tables renamed, capture moved) and at the last
        /// step before commit: the file has the old state, whole; writes go on;
        /// the next cutover swaps.
        @Test(.timeLimit(.minutes(3)), arguments: ["swapped", "guarded"])
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
                #expect(try s.exists("_tidemark_shadow_items") && !s.exists("_tidemark_aside_items"))
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

        // MARK: Rollback and finish

        /// Writes on the new shape (insert, update, delete, in both tables),
        /// with writers running through the rollback: the swap back carries
        /// them into the old tables (the dropped column: old rows keep their
        /// value, new rows get NULL); the triggers and view are the old ones
        /// again; then `migrate` starts over and a second cutover swaps again.
        @Test(.timeLimit(.minutes(4))) func rollbackThenMigrateAgain() async throws {
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

        /// `finish --drop-source` drops the old table (its indexes and guards
        /// with it); the new one is untouched; status names nothing left to do.
        @Test(.timeLimit(.minutes(2))) func finishDropsTheOldTable() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 50)
                try await s.migrateAndVerify()
                _ = try await s.run(["cutover"], "cutover")
                let rows = try s.scalar("SELECT count(*) FROM items")
                _ = try await s.run(["finish"], "finish")
                #expect(try s.exists("_tidemark_aside_items"), "finish without --drop-source keeps the old table")
                let kept = try await s.run(["status", "--json"], "status")
                #expect((try kept.json()["next"] as? String ?? "").contains("finish --drop-source"), "\(kept.stdoutText)")
                _ = try await s.run(["finish", "--drop-source"], "finish --drop-source")
                #expect(try !s.exists("_tidemark_aside_items") && !s.exists("_tidemark_aside_lines"))
                #expect(try s.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'items_owner' OR name LIKE '_tidemark_guard_%'") == 0)
                #expect(try s.scalar("SELECT count(*) FROM items") == rows)
                #expect(try s.columns("items") == ["id", "owner", "n", "doubled"])
                #expect(s.write("INSERT INTO items(owner, n) VALUES ('later', 1)") == nil)
                let status = try await s.run(["status", "--json"], "status")
                let next = try status.json()["next"]
                #expect(next == nil || next is NSNull, "\(status.stdoutText)")
            }
        }

        /// A trigger of another table that names a column the swap drops
        /// would break: the cutover is refused before anything changes.
        @Test(.timeLimit(.minutes(2))) func refusesWhatWouldBreak() async throws {
            try await withTemporaryDirectory { root in
                let s = try SwapScenario.create(root: root, items: 20, tables: SwapScenario.itemsPlan)
                #expect(s.write("CREATE TRIGGER orders_note AFTER INSERT ON orders BEGIN UPDATE items SET note = 'ordered' WHERE id = NEW.item_id; END") == nil)
                try await s.migrateAndVerify()
                let refused = try await tidemark(["cutover"] + s.plan)
                #expect(refused.status != 0 && refused.stderrLines.count == 1, "\(refused.summary)")
                #expect(refused.stderr.contains("orders_note") && refused.stderr.contains("nothing was switched"), "\(refused.stderr)")
                #expect(try s.columns("items") == ["id", "owner", "n", "note"])
                #expect(try s.exists("_tidemark_shadow_items"))
            }
        }
    }
}
