import Foundation
import Synchronization
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite
import TidemarkTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `tidemark transform` end to end, through the built executable: a real
/// table with an application writing to it all along, a SIGKILL in the
/// middle of the copy, the same command run again to finish, then the
/// table compared with what the application wrote.
@Suite struct TransformCommandTests {
    static let rows = 3_000

    static let schema = """
        PRAGMA journal_mode = WAL;
        CREATE TABLE makers(id INTEGER PRIMARY KEY, name TEXT);
        INSERT INTO makers VALUES (1, 'acme'), (2, 'globex');
        CREATE TABLE items(
          id INTEGER PRIMARY KEY,
          name TEXT,
          price INTEGER CHECK (price >= 0),
          code TEXT NOT NULL DEFAULT 'c',
          note TEXT,
          maker_id INTEGER REFERENCES makers(id),
          other_id INTEGER
        );
        CREATE INDEX items_price ON items(price);
        """

    /// A database with `rows` items (every third note NULL).
    func makeDatabase(_ dir: String) throws -> String {
        let path = dir + "/app.db"
        let db = try Connection(path: path, mode: .readWriteCreate)
        try db.execute(Self.schema)
        try db.execute("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(Self.rows))
            INSERT INTO items(id, name, price, code, note, maker_id, other_id)
            SELECT i, 'item ' || i, i % 97, 'c' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'n' || i END, 1 + i % 2, 1 + i % 2 FROM n
            """)
        try db.close()
        return path
    }

    /// The application: writes id, name and price (columns every tested
    /// shape keeps) in autocommit statements, and remembers what it wrote.
    final class Writers: @unchecked Sendable {
        // @unchecked: `model` and `errors` are guarded by their Mutexes.
        let stop = Atomic<Bool>(false)
        let done = Atomic<Bool>(false)
        let writes = Atomic<Int>(0)
        let model = Mutex<[Int64: (String, Int64)]>([:])
        let errors = Mutex<[String]>([])
        let maxWaitNanos = Atomic<UInt64>(0)
        let seed: UInt64

        init(path: String, seed: UInt64 = UInt64.random(in: 0...UInt64.max)) throws {
            self.seed = seed
            let c = try Connection(path: path, mode: .readOnly)
            var m: [Int64: (String, Int64)] = [:]
            for r in try c.values("SELECT id, name, price FROM items") {
                guard case .integer(let id) = r[0], case .text(let name) = r[1], case .integer(let price) = r[2] else { continue }
                m[id] = (name, price)
            }
            try c.close()
            model.withLock { $0 = m }
            spawnThread { [self] in
                defer { done.store(true, ordering: .sequentiallyConsistent) }
                do { try write(path: path) } catch { errors.withLock { $0.append("\(error)") } }
            }
        }

        func write(path: String) throws {
            let c = try Connection(path: path, mode: .readWrite, busyTimeoutMillis: 20_000)
            var rng = SplitMix(seed: seed)
            var next = Int64(TransformCommandTests.rows) + 1
            while !stop.load(ordering: .relaxed) {
                let ids = model.withLock { Array($0.keys) }
                let pick = rng.next() % 100
                let id = ids.isEmpty ? next : ids[Int(rng.next() % UInt64(ids.count))]
                let price = Int64(rng.next() % 1000)
                let begin = Clock.monotonicNanos()
                do {
                    if pick < 45 {
                        let s = try c.prepare("UPDATE items SET price = ?1 WHERE id = ?2")
                        try s.bind([.integer(price), .integer(id)])
                        try s.execute()
                        model.withLock { $0[id]?.1 = price }
                    } else if pick < 70 {
                        let s = try c.prepare("INSERT INTO items(id, name, price) VALUES (?1, ?2, ?3)")
                        try s.bind([.integer(next), .text("w\(next)"), .integer(price)])
                        try s.execute()
                        model.withLock { $0[next] = ("w\(next)", price) }
                        next += 1
                    } else if pick < 90 {
                        let s = try c.prepare("DELETE FROM items WHERE id = ?1")
                        try s.bind([.integer(id)])
                        try s.execute()
                        model.withLock { $0[id] = nil }
                    } else {
                        let s = try c.prepare("UPDATE items SET name = ?1 WHERE id = ?2")
                        try s.bind([.text("r\(price)"), .integer(id)])
                        try s.execute()
                        model.withLock { $0[id]?.0 = "r\(price)" }
                    }
                } catch {
                    errors.withLock { $0.append("\(error)") }
                    return
                }
                let waited = Clock.monotonicNanos() - begin
                if waited > maxWaitNanos.load(ordering: .relaxed) { maxWaitNanos.store(waited, ordering: .relaxed) }
                writes.add(1, ordering: .relaxed)
                usleep(2_000)
            }
            try c.close()
        }

        /// Stops them; returns their errors (empty: none).
        func finish() -> [String] {
            stop.store(true, ordering: .sequentiallyConsistent)
            while !done.load(ordering: .sequentiallyConsistent) { usleep(1_000) }
            return errors.withLock { $0 }
        }

        /// Differences between the table and what was written.
        func differences(_ path: String) throws -> [String] {
            let c = try Connection(path: path, mode: .readOnly)
            defer { try? c.close() }
            var table: [Int64: (String, Int64)] = [:]
            for r in try c.values("SELECT id, name, CAST(price AS INTEGER) FROM items") {
                guard case .integer(let id) = r[0], case .text(let name) = r[1], case .integer(let price) = r[2] else { continue }
                table[id] = (name, price)
            }
            let m = model.withLock { $0 }
            var out: [String] = []
            for (id, v) in m where table[id].map({ $0 != v }) ?? true { out.append("id \(id): wrote \(v), table has \(table[id].map { "\($0)" } ?? "nothing")") }
            for id in table.keys where m[id] == nil { out.append("id \(id): deleted or never written, table has \(table[id]!)") }
            return Array(out.sorted().prefix(10))
        }
    }

    func transform(_ dir: String, _ args: [String], seconds: Double = 120) throws -> Finished {
        try runTidemark(["transform", dir + "/app.db", "items"] + args, in: dir, timeoutSeconds: seconds)
    }

    /// Starts the transform, SIGKILLs it once the shadow holds rows, and
    /// runs the same command again to the end.
    func transformKilledMidway(_ dir: String, _ args: [String]) throws -> Finished {
        let all = ["transform", dir + "/app.db", "items"] + args + ["--chunk-rows", "50"]
        let child = try Child.started(try tidemarkExecutable(), all)
        let deadline = Date().addingTimeInterval(60)
        var killedMidway = false
        while child.isRunning && Date() < deadline {
            if let c = try? Connection(path: dir + "/app.db", mode: .readOnly),
               let n = try? c.values("SELECT count(*) FROM _tidemark_shadow_items").first?.first, case .integer(let k) = n, k > 0 {
                child.sendSignal(SIGKILL)
                killedMidway = true
                break
            }
            usleep(2_000)
        }
        _ = try child.wait(timeoutSeconds: 30)
        #expect(killedMidway, "the transform finished before it could be killed: \(child.stdoutText) \(child.stderrText)")
        return try runTidemark(all, in: dir)
    }

    /// What each option case checks after the swap, on the new table.
    static let cases: [(args: [String], check: String)] = [
        (["--type", "price", "REAL"], "SELECT count(*) = 0 FROM items WHERE typeof(price) <> 'real'"),
        (["--drop", "note"], "SELECT count(*) = 0 FROM pragma_table_info('items') WHERE name = 'note'"),
        (["--rename", "note", "remark"], "SELECT count(*) = 1 FROM pragma_table_info('items') WHERE name = 'remark'"),
        (["-o", "price", "--column-order", "name"], "SELECT group_concat(name) = 'price,name,id,code,note,maker_id,other_id' FROM pragma_table_info('items')"),
        (["--not-null", "name"], "SELECT \"notnull\" = 1 FROM pragma_table_info('items') WHERE name = 'name'"),
        (["--not-null-false", "code"], "SELECT \"notnull\" = 0 FROM pragma_table_info('items') WHERE name = 'code'"),
        (["--default", "code", "zz", "--default-none", "note"], "SELECT dflt_value = '''zz''' FROM pragma_table_info('items') WHERE name = 'code'"),
        (["--add-foreign-key", "other_id", "makers", "id"], "SELECT count(*) = 2 FROM pragma_foreign_key_list('items')"),
        (["--drop-foreign-key", "maker_id"], "SELECT count(*) = 0 FROM pragma_foreign_key_list('items')"),
        (["--strict"], "SELECT strict = 1 FROM pragma_table_list WHERE name = 'items'"),
        (["--pk", "id", "--type", "name", "BLOB"], "SELECT type = 'BLOB' FROM pragma_table_info('items') WHERE name = 'name'"),
        (["--set", "note", "upper(note)", "--inverse", "note", "lower(note)"], "SELECT count(*) = 0 FROM items WHERE note <> upper(note)"),
        (["--create", "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, code TEXT NOT NULL DEFAULT 'c', note TEXT, extra TEXT DEFAULT 'e')"],
         "SELECT count(*) = 0 FROM items WHERE extra IS NOT 'e'"),
    ]

    @Test(.timeLimit(.minutes(10)), arguments: TransformCommandTests.cases)
    func eachOptionUnderLiveWritersSurvivesAKill(args: [String], check: String) throws {
        try withTemporaryDirectory { dir in
            let path = try makeDatabase(dir)
            let writers = try Writers(path: path)
            let r = try transformKilledMidway(dir, args)
            let during = writers.writes.load(ordering: .relaxed)
            usleep(200_000)  // writes after the swap land in the new table
            let errors = writers.finish()
            #expect(r.status == 0, "seed \(writers.seed): \(r.stdout) \(r.stderr)")
            #expect(r.stdout.contains("resuming the transform of items"), "\(r.stdout)")
            #expect(r.stdout.contains("transformed items:"), "\(r.stdout)")
            #expect(errors.isEmpty, "seed \(writers.seed): writers failed: \(errors)")
            #expect(during > 0 && writers.writes.load(ordering: .relaxed) > during, "the application kept writing")
            let differences = try writers.differences(path)
            #expect(differences.isEmpty, "seed \(writers.seed): \(differences)")
            let c = try Connection(path: path, mode: .readOnly)
            let definition = try c.values("SELECT sql FROM sqlite_schema WHERE name = 'items'")
            #expect(try c.integer(check) == 1, "\(args): \(check) on \(definition)")
            #expect(try c.values("PRAGMA foreign_key_check").isEmpty)
            #expect(try c.values("PRAGMA integrity_check") == [[.text("ok")]])
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func viewsTriggersAndForeignKeysFollowTheNewTableAndRollbackCarriesWritesBack() throws {
        try withTemporaryDirectory { dir in
            let path = try makeDatabase(dir)
            let db = try Connection(path: path, mode: .readWrite)
            try db.execute("""
                CREATE TABLE orders(id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items(id));
                INSERT INTO orders VALUES (1, 5), (2, 6);
                CREATE TABLE audit(item_id INTEGER, at TEXT);
                CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN INSERT INTO audit VALUES (new.id, 'ins'); END;
                CREATE VIEW cheap AS SELECT id, name, price FROM items WHERE price < 10;
                """)
            try db.close()
            let writers = try Writers(path: path)
            let r = try transform(dir, ["--type", "price", "REAL", "--rename", "note", "remark"])
            #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
            let c = try Connection(path: path, mode: .readWrite)
            let auditBefore = try c.integer("SELECT count(*) FROM audit")
            usleep(300_000)
            // The view reads the new table (its price is REAL now).
            #expect(try c.integer("SELECT count(*) FROM cheap WHERE typeof(price) <> 'real'") == 0)
            #expect(try c.integer("SELECT count(*) FROM cheap") == c.integer("SELECT count(*) FROM items WHERE price < 10"))
            // The application's trigger fires on the new table.
            #expect(try c.integer("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = 'items_audit' AND tbl_name = 'items'") == 1)
            try c.execute("INSERT INTO items(id, name, price) VALUES (900000, 'by hand', 1)")
            #expect(try c.integer("SELECT count(*) FROM audit WHERE item_id = 900000") == 1)
            #expect(try c.integer("SELECT count(*) FROM audit") > auditBefore)
            try c.execute("DELETE FROM items WHERE id = 900000")
            // Other tables' foreign keys name the live table.
            #expect(try c.values("SELECT \"table\" FROM pragma_foreign_key_list('orders')") == [[.text("items")]])
            // Rollback after writes on the new shape: the old table takes them.
            let status = try runTidemark(["rollback", "--plan", dir + "/app.db.tidemark/items/plan.yml"], in: dir)
            #expect(status.status == 0, "\(status.stdout) \(status.stderr)")
            usleep(200_000)
            let errors = writers.finish()
            #expect(errors.isEmpty, "seed \(writers.seed): \(errors)")
            let differences = try writers.differences(path)
            #expect(differences.isEmpty, "seed \(writers.seed): \(differences)")
            #expect(try c.integer("SELECT count(*) FROM items WHERE typeof(price) NOT IN ('integer', 'null')") == 0)
            #expect(try c.integer("SELECT count(*) FROM pragma_table_info('items') WHERE name = 'note'") == 1)
            #expect(try c.values("SELECT \"table\" FROM pragma_foreign_key_list('orders')") == [[.text("items")]])
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func withoutRowidAndAutoincrementTables() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/app.db"
            let db = try Connection(path: path, mode: .readWriteCreate)
            try db.execute("""
                PRAGMA journal_mode = WAL;
                CREATE TABLE items(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, price INTEGER, note TEXT);
                INSERT INTO items(name, price) VALUES ('a', 1), ('b', 2), ('c', 3);
                DELETE FROM items WHERE id = 3;
                CREATE TABLE pairs(a TEXT, b INTEGER, v INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID;
                """)
            let r = try transform(dir, ["--drop", "note"])
            #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
            // AUTOINCREMENT: the sequence moved with the table; 3 is not reused.
            try db.execute("INSERT INTO items(name, price) VALUES ('d', 4)")
            #expect(try db.integer("SELECT max(id) FROM items") == 4)
            #expect(try db.integer("SELECT count(*) FROM sqlite_schema WHERE name = 'items' AND sql LIKE '%AUTOINCREMENT%'") == 1)
            // One migration per file at a time: the next table waits.
            let refused = try runTidemark(["transform", path, "pairs", "--type", "v", "TEXT"], in: dir)
            #expect(refused.status == 1 && refused.stderr.contains("already holds a migration of items (cut over); one migration per file at a time"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: path + ".tidemark/pairs"))
            let second = dir + "/pairs.db"
            let pdb = try Connection(path: second, mode: .readWriteCreate)
            try pdb.execute("CREATE TABLE pairs(a TEXT, b INTEGER, v INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID; INSERT INTO pairs VALUES ('x', 1, 10), ('y', 2, 20);")
            let p = try runTidemark(["transform", second, "pairs", "--type", "v", "TEXT"], in: dir)
            #expect(p.status == 0, "\(p.stdout) \(p.stderr)")
            #expect(try pdb.values("SELECT a, b, v FROM pairs ORDER BY a") == [[.text("x"), .integer(1), .text("10")], [.text("y"), .integer(2), .text("20")]])
            #expect(try pdb.integer("SELECT wr FROM pragma_table_list WHERE name = 'pairs'") == 1)
        }
    }

    @Test(.timeLimit(.minutes(10)), arguments: [
        (["--not-null", "note"], "not null note NOT NULL: 1000 rows, first keys (id=3), (id=6), (id=9), (id=12), (id=15)"),
        (["--type", "code", "INTEGER"], ""),
        (["--type", "note", "INTEGER", "--type", "nope", "TEXT"], "table items has no column --type nope"),
        (["--set", "price", "price * 2"], "add --inverse price EXPR"),
        (["--add-foreign-key", "other_id", "makers", "name"], "neither its primary key nor UNIQUE"),
        (["--pk", "code"], "cannot change the key"),
    ])
    func refusalsChangeNothing(args: [String], message: String) throws {
        try withTemporaryDirectory { dir in
            let path = try makeDatabase(dir)
            let db = try Connection(path: path, mode: .readWrite)
            // A value that does not survive INTEGER and back.
            try db.execute("UPDATE items SET code = '007' WHERE id = 7")
            try db.close()
            let before = try DatabaseImage(path: path)
            let r = try transform(dir, args)
            #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
            let expected = message.isEmpty ? "--type code INTEGER would change 1 value for good (they do not convert back): id 7 ('007')" : message
            #expect(r.stderr.contains(expected), "\(r.stderr)")
            #expect(try DatabaseImage(path: path) == before)
            #expect(!FileManager.default.fileExists(atPath: path + ".tidemark/items/plan.yml"))
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func otherOptionsWhileOneIsUnderWayAreRefused() throws {
        try withTemporaryDirectory { dir in
            let path = try makeDatabase(dir)
            let first = try transform(dir, ["--type", "price", "REAL", "--no-cutover"])
            #expect(first.status == 0, "\(first.stdout) \(first.stderr)")
            #expect(first.stdout.contains("swap it in with `tidemark cutover --plan \(path).tidemark/items/plan.yml`"), "\(first.stdout)")
            let other = try transform(dir, ["--drop", "note"])
            #expect(other.status == 1)
            #expect(other.stderr.contains("a transform of items with other options (tidemark transform \(path) items --type price REAL --no-cutover") == false)
            #expect(other.stderr.contains("a transform of items with other options (tidemark transform \(path) items --type price REAL) is verified; run that command again to finish it, or abandon it with `tidemark rollback --plan \(path).tidemark/items/plan.yml`"), "\(other.stderr)")
            #expect(other.stderr.split(separator: "\n").count == 1)
            // The same command finishes it; status reads the same plan.
            let again = try transform(dir, ["--type", "price", "REAL"])
            #expect(again.status == 0 && again.stdout.contains("transformed items:"), "\(again.stdout) \(again.stderr)")
            let status = try runTidemark(["status", "--plan", path + ".tidemark/items/plan.yml"], in: dir)
            #expect(status.stdout.contains("phase: cut over"), "\(status.stdout)")
            let finish = try runTidemark(["finish", "--drop-source", "--plan", path + ".tidemark/items/plan.yml"], in: dir)
            #expect(finish.status == 0, "\(finish.stdout) \(finish.stderr)")
            let c = try Connection(path: path, mode: .readOnly)
            #expect(try c.integer("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_tidemark\\_aside%' ESCAPE '\\'") == 0)
        }
    }

    /// Killed once the copy has caught up (verify, or the swap, under way):
    /// the same command verifies again and swaps; `--json` says so.
    @Test(.timeLimit(.minutes(10)))
    func killedAfterCatchUpResumesAndReportsJSON() throws {
        try withTemporaryDirectory { dir in
            let path = try makeDatabase(dir)
            let writers = try Writers(path: path)
            let args = ["transform", path, "items", "--type", "price", "REAL", "--json"]
            let child = try Child.started(try tidemarkExecutable(), args)
            var killed = false
            let deadline = Date().addingTimeInterval(60)
            while child.isRunning && Date() < deadline {
                if let c = try? Connection(path: path, mode: .readOnly),
                   let v = try? c.values("SELECT caught_up_at IS NOT NULL FROM _tidemark_migration").first?.first, v == .integer(1) {
                    child.sendSignal(SIGKILL)
                    killed = true
                    break
                }
                usleep(1_000)
            }
            _ = try child.wait(timeoutSeconds: 30)
            #expect(killed, "finished before it could be killed: \(child.stdoutText)")
            let r = try runTidemark(args, in: dir)
            usleep(200_000)
            let errors = writers.finish()
            #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout.hasPrefix("{") && r.stdout.contains("\"phase\":\"cut over\"") && r.stdout.contains("\"plan_path\":\"\(path).tidemark/items/plan.yml\""), "\(r.stdout)")
            #expect(errors.isEmpty, "seed \(writers.seed): \(errors)")
            let differences = try writers.differences(path)
            #expect(differences.isEmpty, "seed \(writers.seed): \(differences)")
            let c = try Connection(path: path, mode: .readOnly)
            #expect(try c.integer("SELECT count(*) FROM items WHERE typeof(price) <> 'real'") == 0)
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func sqlPrintsThePlanAndTheNewDefinitionAndChangesNothing() throws {
        try withTemporaryDirectory { dir in
            let path = try makeDatabase(dir)
            let before = try DatabaseImage(path: path)
            let r = try transform(dir, ["--type", "price", "REAL", "--drop", "note", "--not-null", "name", "--sql"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("-- nothing was changed; `tidemark transform` without --sql would write \(path).tidemark/items/plan.yml:"), "\(r.stdout)")
            #expect(r.stdout.contains("    swap: true\n"))
            #expect(r.stdout.contains("CREATE TABLE items (\n  id INTEGER PRIMARY KEY,\n  name TEXT NOT NULL,\n  price REAL CHECK (price >= 0),\n  code TEXT NOT NULL DEFAULT 'c',\n  maker_id INTEGER REFERENCES makers(id),\n  other_id INTEGER\n);"), "\(r.stdout)")
            #expect(try DatabaseImage(path: path) == before)
            #expect(!FileManager.default.fileExists(atPath: path + ".tidemark"))
        }
    }
}
