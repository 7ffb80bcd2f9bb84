import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// A follow batch is folded per key before it reaches the target
/// (`Migrator.foldChange`): each key's latest change only, in key order.
/// Its result must be the one of replaying every change in LSN order.
@Suite struct ReplayFoldTests {
    static var folding: MigratorOptions {
        var o = MigratorOptions()
        o.foldReplay = true
        return o
    }

    /// A source with `sql`, a plan migrating `tables` into dst.db, copied.
    private func copied(_ dir: String, _ sql: String, tables: [String], target: String = "dst.db",
                        options: MigratorOptions = Self.folding) throws -> (Connection, Plan, Migrator) {
        let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
        if try c.values("SELECT count(*) FROM sqlite_schema WHERE name = 'u' OR name = 't'").first?.first == .integer(0) {
            try c.execute(sql)
        }
        try writeText(dir + "/\(target).yml", """
            source: src.db
            target: \(target)
            log: log
            chunk_rows: 3
            tables:
            \(tables.map { "  \($0): {}" }.joined(separator: "\n"))
            """)
        let plan = try Plan.load(path: dir + "/\(target).yml")
        let m = try Migrator.open(plan: plan, options: options)
        _ = try m.run(seconds: 30)
        try expectEqualTables(plan, "after the copy")
        return (c, plan, m)
    }

    @Test("folding reorders a swap through a UNIQUE index; the batch falls back to LSN order")
    func uniqueSwapFallsBack() throws {
        try withTemporaryDirectory { dir in
            let (c, plan, m) = try copied(dir, """
                CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT UNIQUE);
                INSERT INTO u VALUES (1, 'a'), (2, 'c');
                """, tables: ["u"])
            // In LSN order every step is valid; folded (k1's last image
            // first, in key order) k1 = 'c' meets k2 = 'c' still there.
            try c.execute("""
                UPDATE u SET v = 'b' WHERE id = 1;
                UPDATE u SET v = 'a' WHERE id = 2;
                UPDATE u SET v = 'c' WHERE id = 1;
                """)
            let before = m.replayedCount
            _ = try m.run(seconds: 30)
            #expect(m.foldFallbacks == 1)
            #expect(m.replayedCount - before == 3)
            try expectEqualTables(plan, "after the swap")
            let rows = try Connection(path: dir + "/dst.db", mode: .readOnly).values("SELECT id, v FROM u ORDER BY id")
            #expect(rows == [[.integer(1), .text("c")], [.integer(2), .text("a")]])
        }
    }

    @Test("rekeys, delete and reinsert, repeated updates and unmigrated tables in one folded batch")
    func rekeysAndReinsertInABatch() throws {
        try withTemporaryDirectory { dir in
            let (c, plan, m) = try copied(dir, """
                CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, n INTEGER);
                CREATE TABLE k(a TEXT, b INTEGER, v, PRIMARY KEY(a, b)) WITHOUT ROWID;
                CREATE TABLE other(id INTEGER PRIMARY KEY, v);
                INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3), (4, 'four', 4);
                INSERT INTO k VALUES ('a', 1, 'a1'), ('b', 2, NULL);
                """, tables: ["t", "k"])
            try c.execute("""
                UPDATE t SET n = n + 1 WHERE id = 1;
                UPDATE t SET n = n + 1 WHERE id = 1;
                DELETE FROM t WHERE id = 2;
                INSERT INTO t VALUES (2, 'two again', 20);
                UPDATE t SET id = 10 WHERE id = 3;
                INSERT INTO t VALUES (3, 'three reused', 30);
                UPDATE t SET s = 'x' WHERE id = 3;
                INSERT INTO other VALUES (1, 'not migrated');
                UPDATE t SET id = 4000, s = 'moved' WHERE id = 4;
                INSERT INTO t VALUES (5, 'five', 5);
                DELETE FROM t WHERE id = 5;
                UPDATE k SET v = 'a1 again' WHERE a = 'a';
                UPDATE k SET a = 'z' WHERE a = 'b';
                INSERT INTO k VALUES ('b', 2, 'b again');
                DELETE FROM k WHERE a = 'a';
                INSERT INTO k VALUES ('a', 1, 'a back');
                """)
            let before = m.replayedCount
            _ = try m.run(seconds: 30)
            #expect(m.foldedChanges > 0)
            #expect(m.foldFallbacks == 0)
            #expect(m.replayedCount > before)
            try expectEqualTables(plan, "after the batch")
        }
    }

    @Test("seeded random batches: folded replay equals unfolded replay and the source")
    func foldedEqualsUnfolded() throws {
        let seeds: [UInt64] = ProcessInfo.processInfo.environment["TIDEMARK_FOLD_SEED"].flatMap(UInt64.init).map { [$0] } ?? Array(1...6)
        for seed in seeds {
            try withTemporaryDirectory { dir in
                do {
                    try foldedEqualsUnfolded(seed: seed, dir)
                } catch {
                    Issue.record("seed \(seed) (rerun with TIDEMARK_FOLD_SEED=\(seed)): \(error)")
                }
            }
        }
    }

    private func foldedEqualsUnfolded(seed: UInt64, _ dir: String) throws {
        var rng = SplitMix(seed: seed)
        let schema = """
            CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT UNIQUE, n INTEGER);
            CREATE TABLE t(a TEXT, b INTEGER, v, PRIMARY KEY(a, b)) WITHOUT ROWID;
            CREATE TABLE ci(k TEXT COLLATE NOCASE PRIMARY KEY, v);
            """
        var unfolded = MigratorOptions()
        unfolded.foldReplay = false
        // One migrator at a time: each takes the source's one-shipper lock.
        var (c, planA, a): (Connection, Plan, Migrator?) = try copied(dir, schema, tables: ["u", "t", "ci"], target: "unfolded.db", options: unfolded)
        a = nil
        var (_, planB, b): (Connection, Plan, Migrator?) = try copied(dir, schema, tables: ["u", "t", "ci"], target: "folded.db")
        b = nil
        var foldedA = 0, foldedB = 0
        for round in 0..<4 {
            try c.transaction(.immediate) {
                for _ in 0..<rng.int(20...120) {
                    let id = rng.int(1...12), other = rng.int(1...12)
                    let v = "v\(rng.int(1...14))"
                    let sql: String
                    switch rng.int(0...9) {
                    case 0: sql = "INSERT OR REPLACE INTO u VALUES (\(id), '\(v)', \(rng.int(0...99)))"
                    case 1: sql = "UPDATE OR IGNORE u SET v = '\(v)' WHERE id = \(id)"
                    case 2: sql = "UPDATE OR IGNORE u SET id = \(other) WHERE id = \(id)"
                    case 3: sql = "DELETE FROM u WHERE id = \(id)"
                    case 4: sql = "UPDATE u SET n = coalesce(n, 0) + 1 WHERE id = \(id)"
                    case 5: sql = "INSERT OR REPLACE INTO t VALUES ('\(rng.pick(["x", "y", "é"]))', \(id % 4), '\(v)')"
                    case 6: sql = "UPDATE OR REPLACE t SET b = \(other % 4) WHERE b = \(id % 4)"
                    case 7: sql = "DELETE FROM t WHERE b = \(id % 4)"
                    case 8: sql = "INSERT OR REPLACE INTO ci VALUES ('\(rng.pick(["k", "K", "q"]))\(id % 3)', \(id))"
                    default: sql = "UPDATE OR IGNORE u SET v = (SELECT v FROM u WHERE id = \(other)) || '' WHERE id = \(id)"
                    }
                    try c.execute(sql)
                }
            }
            a = try Migrator.open(plan: planA, options: unfolded)
            _ = try a!.run(seconds: 30)
            foldedA += a!.foldedChanges
            a = nil
            b = try Migrator.open(plan: planB, options: Self.folding)
            _ = try b!.run(seconds: 30)
            foldedB += b!.foldedChanges
            b = nil
            try expectEqualTables(planA, "seed \(seed) round \(round), unfolded")
            try expectEqualTables(planB, "seed \(seed) round \(round), folded")
            let ra = try DatabaseImage(path: dir + "/unfolded.db")?.rows.filter { !$0.key.hasPrefix("_tidemark") }
            let rb = try DatabaseImage(path: dir + "/folded.db")?.rows.filter { !$0.key.hasPrefix("_tidemark") }
            #expect(ra == rb, "seed \(seed) round \(round): folded and unfolded targets differ")
        }
        #expect(foldedA == 0)
        #expect(foldedB > 0, "seed \(seed): nothing was folded")
    }
}
