import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// `tidemark migrate` as a real child process, SIGKILLed at random moments
/// and restarted, while writers that are not ours — Python's sqlite3 module,
/// in separate processes — keep inserting, updating (keys too) and deleting.
@Suite struct EndToEndTests {
    static let schema = """
        CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, price REAL);
        CREATE TABLE users(email TEXT NOT NULL COLLATE NOCASE PRIMARY KEY, name TEXT, score INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE lines(order_id INTEGER NOT NULL, line INTEGER NOT NULL, sku TEXT, qty INTEGER,
                           PRIMARY KEY (order_id, line)) WITHOUT ROWID;
        """

    static let plan = """
        source: shop.db
        target: shop-v2.db
        log: changelog
        chunk_rows: 4
        tables:
          items:
            to: products
            columns:
              id: id
              label: upper(name)
              qty: qty
              value_cents: CAST(round(qty * price * 100) AS INTEGER)
          users:
            to: accounts
            columns:
              email: email
              display: name || ' <' || lower(email) || '>'
              score: score * 10
          lines: {}
        """

    /// One writer: `python3 -c WRITER DB STOPFILE N SEED`. Autocommit
    /// statements and explicit transactions (some rolled back), with a
    /// 20 s busy timeout; a constraint error is the application's own
    /// failed write. Prints the number of statements and of conflicts.
    static let writer = """
        import os, random, sqlite3, sys, time
        path, stop, w, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        rnd = random.Random(seed)
        db = sqlite3.connect(path, timeout=20, isolation_level=None)
        counter = 0
        def fresh():
            global counter
            counter += 1
            return 10_000_000 * (w + 1) + counter
        def pick(table, cols):
            n = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if n == 0:
                return None
            return db.execute(f"SELECT {cols} FROM {table} ORDER BY {cols} LIMIT 1 OFFSET ?", (rnd.randrange(n),)).fetchone()
        def op(nested=False):
            r = rnd.random() * (0.89 if nested else 1)
            if r < 0.12:
                db.execute("INSERT INTO items VALUES (?, ?, ?, ?)", (fresh(), f"item {w}-{counter}", rnd.randrange(100), rnd.randrange(10000) / 100))
            elif r < 0.24:
                k = pick("items", "id")
                if k: db.execute("UPDATE items SET qty = ?, price = ?, name = name || '+' WHERE id = ?", (rnd.randrange(100), rnd.randrange(10000) / 100, k[0]))
            elif r < 0.30:
                k = pick("items", "id")
                if k: db.execute("UPDATE items SET id = ? WHERE id = ?", (fresh(), k[0]))
            elif r < 0.35:
                k = pick("items", "id")
                if k: db.execute("DELETE FROM items WHERE id = ?", k)
            elif r < 0.39:
                k = pick("items", "id")
                if k: db.execute("UPDATE items SET qty = qty + 1 WHERE id BETWEEN ? AND ? + 40", (k[0], k[0]))
            elif r < 0.47:
                db.execute("INSERT INTO users VALUES (?, ?, ?)", (f"W{w}-{fresh()}@Example.com", f"user {counter}", rnd.randrange(50)))
            elif r < 0.55:
                k = pick("users", "email")
                if k: db.execute("UPDATE users SET score = score + 1, name = ? WHERE email = ?", (f"renamed {counter}", k[0]))
            elif r < 0.61:
                k = pick("users", "email")
                if k:
                    new = k[0].swapcase() if rnd.random() < 0.5 else f"moved{w}-{fresh()}@example.com"
                    db.execute("UPDATE users SET email = ? WHERE email = ?", (new, k[0]))
            elif r < 0.65:
                k = pick("users", "email")
                if k: db.execute("DELETE FROM users WHERE email = ?", k)
            elif r < 0.73:
                o = fresh()
                db.execute("INSERT INTO lines VALUES (?, 1, ?, ?), (?, 2, ?, ?)", (o, f"sku-{o}", 1, o, "sku-x", 2))
            elif r < 0.81:
                k = pick("lines", "order_id, line")
                if k: db.execute("UPDATE lines SET qty = qty + 1, sku = upper(sku) WHERE order_id = ? AND line = ?", k)
            elif r < 0.85:
                k = pick("lines", "order_id, line")
                if k: db.execute("UPDATE lines SET line = line + 100 WHERE order_id = ?", (k[0],))
            elif r < 0.89:
                k = pick("lines", "order_id, line")
                if k: db.execute("DELETE FROM lines WHERE order_id = ?", (k[0],))
            else:
                db.execute("BEGIN IMMEDIATE")
                for _ in range(rnd.randrange(2, 5)):
                    try:
                        op(nested=True)
                    except sqlite3.IntegrityError:
                        pass
                db.execute("ROLLBACK" if rnd.random() < 0.2 else "COMMIT")
        ops = conflicts = 0
        while not os.path.exists(stop):
            try:
                op()
                ops += 1
            except sqlite3.IntegrityError:
                conflicts += 1
            time.sleep(0.002)
        print(ops, conflicts)
        """

    @Test("python writers, tidemark migrate killed and restarted, row-by-row equal", .timeLimit(.minutes(10)))
    func killedMigrationWithForeignWriters() throws {
        let seed: UInt64 = 20_251_125
        var rng = SplitMix(seed: seed)
        try withTemporaryDirectory { dir in
            let tidemark = try tidemarkExecutable()
            let python = try python3Executable()
            let db = dir + "/shop.db"
            let c = try Connection(path: db, mode: .readWriteCreate)
            _ = try c.setJournalMode(.wal)
            try c.execute(Self.schema)
            try c.transaction(.immediate) {
                let item = try c.prepare("INSERT INTO items VALUES (?, ?, ?, ?)")
                let user = try c.prepare("INSERT INTO users VALUES (?, ?, ?)")
                let line = try c.prepare("INSERT INTO lines VALUES (?, ?, ?, ?)")
                for i in 1...8000 {
                    try item.execute([.integer(Int64(i)), .text("item \(i)"), .integer(Int64(i % 17)), .real(Double(i % 1000) / 8)])
                    try user.execute([.text("User\(i)@Example.com"), i % 9 == 0 ? .null : .text("user \(i)"), .integer(Int64(i % 50))])
                    try line.execute([.integer(Int64(1 + i / 3)), .integer(Int64(i % 3)), .text("sku-\(i % 97)"), .integer(Int64(i % 5))])
                }
            }
            try c.close()
            let planPath = dir + "/tidemark.yml"
            try writeText(planPath, Self.plan)
            let plan = try Plan.load(path: planPath)

            let stopFile = dir + "/stop-writers"
            let writers = try (0..<2).map { w in
                try Child.started(python, ["-c", Self.writer, db, stopFile, "\(w)", "\(seed + UInt64(w))"])
            }
            defer {
                FileManager.default.createFile(atPath: stopFile, contents: nil)
                for w in writers where w.isRunning { _ = try? w.wait(timeoutSeconds: 30) }
            }
            usleep(200_000)

            // Kill the migrator at random moments, then restart it.
            var killedWhileCopying = 0
            var history: [String] = []
            for round in 0..<8 {
                let child = try Child.started(tidemark, ["migrate", "--plan", planPath])
                let delayMillis = rng.int(50...900)
                usleep(useconds_t(delayMillis * 1000))
                child.sendSignal(SIGKILL)
                let status = try child.wait(timeoutSeconds: 60).status
                if !child.signaled {
                    #expect(status == 0, "seed \(seed): migrate round \(round) failed: \(child.stderrText)")
                }
                let state = try MigrationStatus.read(plan: plan).state
                let phases = state?.tables.map { "\($0.sourceTable):\($0.phase.rawValue):\($0.rowsCopied)" } ?? ["not started"]
                history.append("round \(round) after \(delayMillis) ms \(child.signaled ? "killed" : "exited \(status)"): \(phases.joined(separator: " "))")
                if child.signaled, state?.tables.contains(where: { $0.phase != .following }) == true { killedWhileCopying += 1 }
            }
            #expect(killedWhileCopying >= 2, "seed \(seed): the kills should land mid-copy: \(history)")

            // A run to catch-up while the writers still write.
            let live = try Child.started(tidemark, ["migrate", "--plan", planPath, "--json"])
            #expect(try live.wait(timeoutSeconds: 120).status == 0, "seed \(seed): \(live.stderrText)")
            #expect(live.stdoutText.contains("\"caught_up\":true") || live.stdoutText.contains("\"caught_up\": true"), "\(live.stdoutText)")

            // Stop the writers; they must have written throughout, without errors.
            FileManager.default.createFile(atPath: stopFile, contents: nil)
            for w in writers {
                #expect(try w.wait(timeoutSeconds: 60).status == 0, "seed \(seed): \(w.name) failed: \(w.stderrText)")
                let counts = w.stdoutText.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) }
                #expect(counts.count == 2 && counts[0] > 200, "\(w.name) wrote too little: \(w.stdoutText)")
            }

            // Catch up once more and compare row by row.
            let final = try runTidemark(["migrate", "--plan", planPath], in: dir)
            #expect(final.status == 0, "seed \(seed): \(final.stderr)")
            #expect(final.stdout.hasPrefix("caught up"), "\(final.stdout)")
            try expectEqualTables(plan, "seed \(seed), \(history)")
            for comparison in try TableComparison.compare(plan: plan) {
                #expect(comparison.rowsCompared > 1000, "\(comparison.table): \(comparison.rowsCompared) rows")
            }

            // `tidemark status --json`: every table following, nothing left to apply.
            let status = try runTidemark(["status", "--plan", planPath, "--json"], in: dir)
            #expect(status.status == 0, "\(status.stderr)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status.stdout)")
            let tables = try #require(object["tables"] as? [[String: Any]])
            #expect(tables.map { $0["source"] as? String } == ["items", "users", "lines"])
            #expect(tables.allSatisfy { $0["phase"] as? String == "following" }, "\(tables)")
            #expect(object["lag_changes"] as? Int == 0)
            #expect(object["caught_up"] as? Bool == true)
            #expect(object["applied_lsn"] as? Int == object["captured_lsn"] as? Int)
            #expect(object["log_head_lsn"] as? Int == object["captured_lsn"] as? Int)
        }
    }
}
