import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// Item 12 (migrator side): a gap the log records (LSNs lost to damage and
/// quarantined by `log repair`) stops replay unless accepted.
@Suite struct LogGapTests {
    @Test(.timeLimit(.minutes(10)))
    func migrateRefusesToReplayAcrossARecordedGapUnlessAccepted() throws {
        try withTemporaryDirectory { dir in
            let db = dir + "/src.db"
            let source = try Connection(path: db, mode: .readWriteCreate)
            try source.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")
            let planPath = dir + "/plan.yaml"
            try writeText(planPath, "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  t: {}\n")
            let plan = try Plan.load(path: planPath)
            do {
                let migrator = try Migrator.open(plan: plan)
                _ = try migrator.run(seconds: 60)
                try migrator.close()
            }
            try source.execute("INSERT INTO t VALUES (3, 'c'); INSERT INTO t VALUES (4, 'd'); INSERT INTO t VALUES (5, 'e');")
            // Ship them, then record LSNs of the first two as lost.
            do {
                let log = try LogAppender(directory: dir + "/changelog")
                try Shipper(connection: source, appender: log).drain()
                try log.close()
            }
            let records = try LogReader(directory: dir + "/changelog").cursor().allRecords()
            let last = try #require(records.last?.lsn.rawValue)
            let meta = dir + "/changelog/log.meta"
            try (String(contentsOfFile: meta, encoding: .utf8) + "gap=\(last - 2)-\(last - 1)\n").write(toFile: meta, atomically: true, encoding: .utf8)

            let error = try #require(throws: MigrationError.self) { try Migrator.open(plan: plan) }
            #expect(error.code == .logGap)
            #expect(error.message.contains("--accept-gap"), "\(error)")

            // A clean verify recorded before the gap was accepted.
            do {
                let target = try Connection(path: dir + "/dst.db")
                try StateTables.recordVerify(VerifyRecord(atMicros: 1, fromLSN: .zero, throughLSN: LSN(last), differences: 0), in: target)
                #expect(try StateTables.load(target)?.verification != nil)
                try target.close()
            }
            var options = MigratorOptions()
            options.acceptGap = true
            let migrator = try Migrator.open(plan: plan, options: options)
            _ = try migrator.run(seconds: 60)
            try migrator.close()
            // Accepting the gap forgot any earlier verify: cutover needs a new one.
            let target = try Connection(path: dir + "/dst.db")
            #expect(try StateTables.load(target)?.verification == nil)
            try target.close()
            try source.close()
        }
    }
}

