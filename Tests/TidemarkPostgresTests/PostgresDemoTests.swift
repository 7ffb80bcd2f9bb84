import Foundation
import Testing
@testable import TidemarkCore
import TidemarkDemo
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import TidemarkTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `tidemark demo --target postgres://…`: the live demo migrating into the
/// shared test cluster while writers keep writing, cutting over to
/// PostgreSQL with the writers rerouting there, and no acknowledged write lost.
@Suite struct PostgresDemoTests {
    static func directory(_ name: String) throws -> String {
        try makeTemporaryDirectory("tidemark-pgdemo-\(name)")
    }

    @Test func demoMigratesIntoPostgresAndWritersRerouteThere() throws {
        let server = try PostgresServer.shared()
        let database = try server.createDatabase("demo")
        let conninfo = server.conninfo(database: database)
        let dir = try Self.directory("run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Twice into the same database: the second run starts by dropping
        // what the first one left (its tables and schema tidemark).
        for round in 1...2 {
            var events: [String] = []
            let options = Demo.Options(directory: dir, rows: 5_000, seconds: 0.5, writesPerSecond: 400, target: conninfo)
            let summary = try Demo.run(options) { e in
                switch e {
                case .verified(let r): events.append("verified \(r.isEqual)")
                case .cutOver: events.append("cutOver")
                default: break
                }
            }
            #expect(summary.ok, "round \(round): \(summary.firstError ?? "no writer error"), verify equal \(summary.verify.isEqual)")
            #expect(summary.verify.isEqual, "round \(round)")
            #expect(summary.lostWrites == 0, "round \(round)")
            #expect(summary.writesFailed == 0, "round \(round): \(summary.firstError ?? "")")
            #expect(summary.writesRerouted > 0, "round \(round)")
            #expect(summary.insertsChecked > 0, "round \(round)")
            #expect(summary.rowsCopied > 4_000, "round \(round): the copy holds the source as its snapshot found it")
            #expect(events == ["verified true", "cutOver"], "round \(round)")

            // The writers wrote into PostgreSQL after the switch: the
            // authoritative rows there include keys above the source's range
            // that the target schema's computed columns were filled for.
            let pg = try PGConnection(conninfo)
            defer { pg.close() }
            let accounts = try pg.query("SELECT count(*), count(*) FILTER (WHERE full_name = 'New Customer' AND email LIKE 'new%@shop.example') FROM public.accounts")
            let row = try #require(accounts.rows.first)
            guard case .integer(let total) = row[0], case .integer(let new) = row[1] else {
                Issue.record("round \(round): unexpected count reply \(row)")
                continue
            }
            #expect(total > 0)
            #expect(new > 0, "round \(round): no customer inserted by the writers reached PostgreSQL")
            let source = try SQLiteCount.customers(dir + "/shop.db")
            // A second round replaced the first: the source was rebuilt and
            // the target holds only this run's rows (source's plus writes
            // after cutover, minus deletes after cutover).
            #expect(abs(Int(total) - source) < 2_000, "round \(round): target \(total) vs source \(source)")
        }
    }

    @Test func planKeepsAQuotedConninfoExactly() throws {
        let conninfo = #"host=/tmp/a\b port=5432 dbname='shop "x" #1' user=demo password='se:cr#et'"#
        let yaml = DemoShop.planYAML(target: conninfo)
        let plan = try Plan.parse(yaml, relativeTo: "/tmp")
        #expect(plan.target == conninfo)
        #expect(plan.isPostgres)
        #expect(!plan.displayTarget.contains("se:cr#et"))
        // The SQLite default stays the plain file name.
        #expect(DemoShop.planYAML().contains("target: shop-v2.db\n"))
        #expect(try Plan.parse(DemoShop.planYAML(), relativeTo: "/tmp").target == "/tmp/shop-v2.db")
    }

    @Test func aTargetThatIsNotAConnectionStringIsRefused() throws {
        let dir = try Self.directory("bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: MigrationError.self) {
            _ = try Demo.run(Demo.Options(directory: dir, rows: 100, seconds: 0, target: "other.db")) { _ in }
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/shop.db"))
    }
}

/// Counts of the demo's SQLite source, read directly.
enum SQLiteCount {
    static func customers(_ path: String) throws -> Int {
        let c = try Connection(path: path, mode: .readOnly)
        let s = try c.prepare("SELECT count(*) FROM customers")
        _ = try s.step()
        return Int(s.columnInt64(0))
    }
}
