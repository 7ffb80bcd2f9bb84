import Synchronization
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// `Transform.run`'s progress callback draws on the terminal and is not
/// thread-safe: the copy follower (its own thread) and the main thread must
/// never be inside it at once, least of all where the main thread moves
/// from copying to verifying while the follower keeps following.
@Suite struct TransformProgressTests {
    @Test func progressIsNeverEnteredFromTwoThreadsAtOnce() throws {
        try withTemporaryDirectory { dir in
            for round in 1...3 {
                let path = dir + "/app\(round).db"
                let db = try Connection(path: path, mode: .readWriteCreate)
                try db.execute("""
                    PRAGMA journal_mode = WAL;
                    CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price INTEGER);
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                    INSERT INTO items SELECT i, 'item ' || i, i % 100 FROM n;
                    """)
                try db.close()
                var o = TransformOptions()
                o.types = [.init("price", "REAL")]
                let p = try Transform.prepare(db: path, table: "items", options: o)
                var settings = Transform.Settings()
                settings.cutover = false
                settings.chunkRows = 200
                settings.yieldRatio = 0
                let inside = Atomic<Int>(0)
                let overlaps = Atomic<Int>(0)
                _ = try Transform.run(p, settings: settings) { event in
                    if inside.add(1, ordering: .sequentiallyConsistent).newValue > 1 {
                        overlaps.add(1, ordering: .relaxed)
                    }
                    // A drawing callback takes time: the follower spends most
                    // of its life in here, so the main thread's first call
                    // after the copy lands while it is inside (without the lock).
                    if case .copy = event { Clock.sleep(milliseconds: 3) }
                    inside.subtract(1, ordering: .sequentiallyConsistent)
                }
                #expect(overlaps.load(ordering: .relaxed) == 0, "round \(round): progress entered from two threads at once")
            }
        }
    }
}
