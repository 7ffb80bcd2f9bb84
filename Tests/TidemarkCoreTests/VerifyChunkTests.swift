import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// verify's chunking and its in-flight keys, on real files: a random pair of
/// tables with random differences (at chunk edges, before the first key,
/// past the source's last) is reported exactly as a row-by-row model says,
/// for any chunk size.
@Suite struct VerifyChunkTests {
    /// Seeds 1...12, or the one in `TIDEMARK_VERIFY_SEED`.
    static var seeds: [UInt64] {
        if let one = ProcessInfo.processInfo.environment["TIDEMARK_VERIFY_SEED"].flatMap(UInt64.init) { return [one] }
        return Array(1...12)
    }

    @Test(.timeLimit(.minutes(10)), arguments: seeds)
    func randomDifferencesAreReportedExactlyForAnyChunkSize(seed: UInt64) throws {
        try withTemporaryDirectory { dir in
            var rng = SplitMix(seed: seed)
            let source = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try source.execute("""
                CREATE TABLE n(id INTEGER PRIMARY KEY, v TEXT, w REAL);
                CREATE TABLE c(a TEXT COLLATE NOCASE, b INTEGER, v BLOB, PRIMARY KEY (a, b)) WITHOUT ROWID;
                """)
            // The source: ids spread with gaps, each with what will differ.
            let rows = Int(rng.next() % 120)
            var ids: [Int64] = []
            var plans: [Int64: UInt64] = [:]
            var next: Int64 = 10
            for _ in 0..<rows { next += Int64(1 + rng.next() % 3); ids.append(next); plans[next] = rng.next() % 12 }
            let insertN = "INSERT INTO n VALUES (?1, ?2, ?3)"
            for id in ids {
                // A precomposed é, which the target will hold decomposed.
                let v: Value = plans[id] == 3 ? .text("caf\u{E9}") : .text("v\(id)")
                try source.prepare(insertN).execute([.integer(id), v, .real(Double(id) / 4)])
                try source.prepare("INSERT INTO c VALUES (?1, ?2, ?3)").execute(
                    [.text(["x", "Y", "z"][Int(id % 3)] + "\(id / 3)"), .integer(id % 5), .blob([UInt8(id % 251)])])
            }
            try source.close()
            // The target: a migrated copy (stopped, caught up), then changed.
            let plan = Plan(source: dir + "/src.db", target: dir + "/dst.db", log: dir + "/log",
                            tables: [TablePlan(source: "n"), TablePlan(source: "c")])
            do {
                let migrator = try Migrator.open(plan: plan)
                _ = try migrator.run(seconds: 60)
                try migrator.close()
            }
            let target = try Connection(path: dir + "/dst.db", mode: .readWrite)
            var missing: Set<Int64> = [], extra: Set<Int64> = [], different: Set<Int64> = []
            for id in ids {
                switch plans[id] ?? 0 {
                case 0: try target.prepare("DELETE FROM n WHERE id = ?1").execute([.integer(id)]); missing.insert(id)
                case 1: try target.prepare("UPDATE n SET v = v || 'x' WHERE id = ?1").execute([.integer(id)]); different.insert(id)
                case 2: try target.prepare("UPDATE n SET v = CAST(v AS BLOB) WHERE id = ?1").execute([.integer(id)]); different.insert(id)
                case 3:
                    try target.prepare("UPDATE n SET v = ?2 WHERE id = ?1").execute([.integer(id), .text("cafe\u{301}")])
                    different.insert(id)
                case 4 where !ids.contains(id + 1):
                    try target.prepare(insertN).execute([.integer(id + 1), .text("ghost"), .null]); extra.insert(id + 1)
                default: break
                }
            }
            // Before the first key and past the last.
            if rng.next() % 2 == 0 { try target.prepare(insertN).execute([.integer(1), .null, .null]); extra.insert(1) }
            for k in 0..<Int(rng.next() % 3) {
                let id = next + 100 + Int64(k)
                try target.prepare(insertN).execute([.integer(id), .null, .null]); extra.insert(id)
            }
            try target.close()

            for chunkRows in [1, 2, 3, 7, 10, 64, 10_000] {
                var options = Verifier.Options()
                options.chunkRows = chunkRows
                options.keysMax = 1_000
                options.record = false
                let report = try Verifier(plan: plan, options: options).run()
                let context = "seed \(seed) (rerun with TIDEMARK_VERIFY_SEED=\(seed)), chunk rows \(chunkRows)"
                let n = try #require(report.tables.first { $0.source == "n" })
                func ints(_ keys: [[Value]]) -> Set<Int64> {
                    Set(keys.map { if case .integer(let i) = $0.first { i } else { -1 } })
                }
                #expect(ints(n.missing) == missing && n.missingCount == missing.count, "missing, \(context)")
                #expect(ints(n.extra) == extra && n.extraCount == extra.count, "extra, \(context)")
                #expect(ints(n.different) == different && n.differentCount == different.count, "different, \(context)")
                #expect(n.rows == ids.count, "rows counts the source's rows, \(context)")
                #expect(n.unsettled.isEmpty, "\(context)")
                let c = try #require(report.tables.first { $0.source == "c" })
                #expect(c.isEqual && c.rows == ids.count, "the equal composite-key table, \(context)")
            }
        }
    }

    /// The in-flight keys (changed in the log between the two snapshots) are
    /// told apart byte by byte: a change of the precomposed "é" key does not
    /// put the decomposed "é" key, another row in SQLite, in flight.
    @Test(.timeLimit(.minutes(10)))
    func inFlightKeysAreByteExact() throws {
        try withTemporaryDirectory { dir in
            let precomposed = "caf\u{E9}", decomposed = "cafe\u{301}"
            let db = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try db.execute("CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER)")
            try Capture.install(connection: db, sourceID: SourceID("verify-in-flight"))
            try db.prepare("INSERT INTO t VALUES (?1, 1), (?2, 2)").execute([.text(precomposed), .text(decomposed)])
            try db.prepare("UPDATE t SET v = 3 WHERE k = ?1").execute([.text(precomposed)])
            let log = try LogAppender(directory: dir + "/log", sourceID: SourceID("verify-in-flight"))
            try Shipper(connection: db, appender: log).drain()
            try log.close()
            let reader = try LogReader(directory: dir + "/log")
            let plan = Plan(source: dir + "/src.db", target: dir + "/dst.db", log: dir + "/log", tables: [TablePlan(source: "t")])
            let m = try #require(try PlanResolver.resolve(plan, source: db, target: db).first)
            // Only the update (after the two inserts, LSN 2) is in flight.
            let keys = try #require(try Verifier.changedKeys(m, after: LSN(2), through: LSN(3), reader: reader))
            #expect(keys.contains([.text(precomposed)]))
            #expect(!keys.contains([.text(decomposed)]), "a decomposed é is another key than the precomposed one")
            try db.close()
        }
    }
}
