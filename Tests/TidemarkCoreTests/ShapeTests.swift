import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkDemo
import TidemarkLog
import TidemarkSQLite

/// The three plan shapes (copy, transform, in place) end to end, with writer threads (each with
/// its own connection) inserting, updating, re-keying and deleting while the
/// migration copies, crashes, resumes and follows.
@Suite struct ShapeTests {
    enum Shape: String, CaseIterable, Sendable {
        case anotherFile = "another file"
        case newTableSameFile = "new table in the same file"
        case newColumnInPlace = "new columns in the same table"

        var planYAML: String {
            switch self {
            case .anotherFile:
                return DemoShop.planYAML().replacingOccurrences(of: "chunk_rows: 5000", with: "chunk_rows: 150")
            case .newTableSameFile:
                return """
                    source: shop.db
                    target: shop.db
                    log: changelog
                    chunk_rows: 150
                    tables:
                      customers:
                        to: accounts
                        columns:
                          id: id
                          email: lower(email)
                          full_name: first_name || ' ' || last_name
                          balance_cents: CAST(round(balance * 100) AS INTEGER)
                      order_lines:
                        to: order_lines_v2
                        columns:
                          order_id: order_id
                          line: line
                          sku: upper(sku)
                          total: qty * unit_price
                    """
            case .newColumnInPlace:
                return """
                    source: shop.db
                    target: shop.db
                    log: changelog
                    chunk_rows: 150
                    tables:
                      customers:
                        columns:
                          email_lower: lower(email)
                          full_name: first_name || ' ' || last_name
                          balance_cents: CAST(round(balance * 100) AS INTEGER)
                      order_lines:
                        columns:
                          total: qty * unit_price
                    """
            }
        }
    }

    @Test("copy, crash, resume and follow under concurrent writes", .timeLimit(.minutes(10)), arguments: Shape.allCases)
    func shape(_ shape: Shape) throws {
        try withTemporaryDirectory { dir in
            try writeText(dir + "/tidemark.yml", shape.planYAML)
            let plan = try Plan.load(path: dir + "/tidemark.yml")
            #expect(plan.isSameFile == (shape != .anotherFile))
            try DemoShop.create(path: plan.source, rows: 12_000)

            // Capture goes in before the writers start, as in the demo.
            var migrator: Migrator? = try Migrator.open(plan: plan, options: MigratorOptions(follow: true))
            let stats = DemoShop.WriterStats()
            let waitForWriters = DemoShop.startWriters(path: plan.source, threads: 2, writesPerSecond: 600, stats: stats)
            var writersStopped = false
            defer {
                if !writersStopped {
                    stats.stop.store(true, ordering: .relaxed)
                    waitForWriters()
                }
            }

            // Part of the copy, then a crash: the migrator and everything it
            // owns are dropped, no graceful stop.
            var steps = 0
            _ = try migrator!.run(seconds: 60) { p in
                steps += 1
                if steps == 25 { migrator!.stop() }
            }
            let copiedBeforeCrash = migrator!.currentState.tables.map(\.rowsCopied).reduce(0, +)
            #expect(migrator!.currentState.tables.contains { $0.phase != .following }, "the crash should come mid-copy")
            migrator = nil

            // Resume and follow for a while after catching up.
            migrator = try Migrator.open(plan: plan, options: MigratorOptions(follow: true))
            #expect(migrator!.currentState.tables.map(\.rowsCopied).reduce(0, +) == copiedBeforeCrash)
            let writesAtResume = stats.acknowledged.load(ordering: .relaxed)
            var caughtUpAt: UInt64?
            _ = try migrator!.run(seconds: 60) { p in
                guard p.caughtUp else { return }
                let now = Clock.monotonicNanos()
                if caughtUpAt == nil { caughtUpAt = now }
                if now - caughtUpAt! > 1_500_000_000 { migrator!.stop() }
            }
            #expect(caughtUpAt != nil)
            stats.stop.store(true, ordering: .relaxed)
            waitForWriters()
            writersStopped = true
            #expect(stats.error == nil, "writer error: \(stats.error ?? "")")
            #expect(stats.failed.load(ordering: .relaxed) == 0, "writers failed (busy for longer than their 5 s timeout?)")
            #expect(stats.acknowledged.load(ordering: .relaxed) - writesAtResume > 200, "writers should write throughout the migration")

            // Drain with the writers stopped. The migrator's own writes
            // (in place: UPDATEs of the new columns of captured tables) must
            // not be captured: the capture high-water mark does not move.
            let source = try Connection(path: plan.source, mode: .readOnly)
            let captured = try Capture.lastCapturedSeq(source)
            migrator!.setFollow(false)
            let drain = try migrator!.run(seconds: 60)
            #expect(drain.caughtUp)
            #expect(try Capture.lastCapturedSeq(source) == captured, "the migrator's writes were captured")
            #expect(try LogReader(directory: plan.log).headLSN() == LSN(UInt64(captured)))
            migrator = nil
            try expectEqualTables(plan, shape.rawValue)

            // Run again: nothing to copy or replay, and still nothing captured.
            migrator = try Migrator.open(plan: plan)
            let again = try migrator!.run(seconds: 60)
            #expect(again.caughtUp && again.rowsCopied == 0 && again.changesReplayed == 0)
            migrator = nil
            #expect(try Capture.lastCapturedSeq(source) == captured)
            #expect(try LogReader(directory: plan.log).headLSN() == LSN(UInt64(captured)))

            // The target has the shape the plan asked for.
            let c = try Connection(path: plan.target, mode: .readOnly)
            switch shape {
            case .anotherFile, .newTableSameFile:
                let accounts = try Schema.table(named: "accounts", in: c)
                #expect(accounts?.primaryKey == ["id"])
                #expect(accounts?.columns.map(\.name) == ["id", "email", "full_name", "balance_cents"] + (shape == .anotherFile ? ["note"] : []))
                #expect(try c.integer("SELECT count(*) FROM accounts") == (try source.integer("SELECT count(*) FROM customers")))
            case .newColumnInPlace:
                let customers = try Schema.table(named: "customers", in: c)
                #expect(customers?.columns.suffix(3).map(\.name) == ["email_lower", "full_name", "balance_cents"])
                #expect(try c.integer("SELECT count(*) FROM customers WHERE email_lower IS NULL") == 0)
                #expect(try c.integer("SELECT count(*) FROM order_lines WHERE total IS NULL") == 0)
            }
        }
    }
}
