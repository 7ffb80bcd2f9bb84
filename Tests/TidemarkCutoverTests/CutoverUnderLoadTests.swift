import TidemarkTestSupport
import Foundation
import Testing
import TidemarkCore
import TidemarkDemo
import TidemarkLog
import TidemarkSQLite

extension CutoverTests {
    /// The usual setup: `tidemark migrate --follow` and `tidemark cutover`
    /// as two processes, while Python processes and threads of this process
    /// keep writing through the switch.
    @Suite struct UnderLoad {
        /// Writers in other processes write continuously; the cutover runs
        /// as a child beside a following migrator. Afterwards every
        /// acknowledged write is in the target (through the plan's mapping)
        /// and no other row is; the source holds exactly what it
        /// acknowledged; every later write to the old tables was refused by a
        /// guard naming the new location and nothing else failed; the pause
        /// is reported; the migrator noticed the cutover and exited.
        @Test(.timeLimit(.minutes(10)), arguments: [Layout.reshaped, .sameFile])
        func everyAcknowledgedWriteArrivesAndTheOldTablesRefuseTheRest(_ layout: Layout) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: layout)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let crowd = try await Crowd.start(s, python: 2, plain: 1, routing: 1, ratePerSecond: 100)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)
                try await pause(milliseconds: 700)

                let cut = try await tidemark(["cutover", "--skip-verify", "--json", "--max-lag-ms", "1000"] + s.planArguments)
                let lsn = try expectCutoverJSON(cut)
                // The writers keep writing: the old tables must refuse them now.
                try await pause(milliseconds: 700)
                let reports = try await crowd.finish()

                let migrated = try await migrate.waitForOwnExit(timeoutSeconds: 20)
                #expect(migrated?.status == 0 && migrated?.reason == .exit,
                        "the migrator did not stop on its own after the cutover: \(migrated?.summary ?? "still running")")

                let outcome = checkWriters(reports, s, expectSwitch: true)
                try s.expectTarget(equals: outcome.all, "after cutover")
                try s.expectSource(equals: outcome.onSource, "after cutover")
                try expectSwitched(s, lsn: lsn)
                print("cutover under load (\(layout)): \(outcome.acknowledged) writes acknowledged, \(outcome.refused) refused by guards, pause \(try cut.json().double("pause_ms") ?? -1) ms")
            }
        }

        /// The demo shop's own writers (threads of this process following
        /// the Router; inserts, updates, key changes and deletes on a rowid
        /// and a composite-key table, REAL values, computed columns): verify
        /// is silent under their load, and after the cutover every insert
        /// they had acknowledged is in the target and none of their writes
        /// failed (refusals were rerouted).
        @Test(.timeLimit(.minutes(10)))
        func demoShopWritersVerifyAndCutOverThroughTheRouter() async throws {
            try await withTemporaryDirectory { root in
                let planPath = root + "/tidemark.yml"
                try DemoShop.planYAML().write(toFile: planPath, atomically: true, encoding: .utf8)
                let plan = try Plan.load(path: planPath)
                try DemoShop.create(path: plan.source, rows: 6_000)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let stats = DemoShop.WriterStats()
                let wait = Waiter(DemoShop.startWriters(path: plan.source, threads: 2, writesPerSecond: 300, stats: stats, router: Router(plan: plan)))
                defer { stats.stop.store(true, ordering: .relaxed) }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow", "--plan", planPath]))
                try migrate.start()
                try await waitUntilMigrationCaughtUp(target: plan.target, child: migrate)
                try await pause(milliseconds: 300)

                let verify = try await tidemark(["verify", "--json", "--chunk-rows", "500", "--plan", planPath])
                #expect(verify.status == 0 && (try? verify.json().bool("equal")) == true, "verify under the demo load: \(verify.summary)")
                let cut = try await tidemark(["cutover", "--skip-verify", "--json", "--plan", planPath])
                try expectCutoverJSON(cut)
                try await pause(milliseconds: 500)
                stats.stop.store(true, ordering: .relaxed)
                try await blocking { wait.run() }
                let migrated = try await migrate.waitForOwnExit(timeoutSeconds: 20)
                #expect(migrated?.status == 0, "the migrator did not stop on its own after the cutover: \(migrated?.summary ?? "still running")")

                #expect(stats.failed.load(ordering: .relaxed) == 0, "demo writers failed: \(stats.error ?? "")")
                #expect(stats.rerouted.load(ordering: .relaxed) > 0, "no demo writer was rerouted by the cutover")
                let route = try Router(plan: plan).route()
                #expect(route.authority == .target)
                let store = try Connection(path: route.database, mode: .readOnly)
                let customer = try store.prepare("SELECT count(*) FROM \(quoteIdentifier(route.table(for: "customers"))) WHERE id = ?")
                let line = try store.prepare("SELECT count(*) FROM \(quoteIdentifier(route.table(for: "order_lines"))) WHERE order_id = ? AND line = 1")
                var lost: [String] = []
                let keys = stats.insertedKeys
                for (kind, id) in keys {
                    let s = kind == "c" ? customer : line
                    s.reset()
                    try s.bind([.integer(id)])
                    _ = try s.step()
                    if s.columnInt64(0) == 0 { lost.append("\(kind)\(id)") }
                }
                #expect(lost.isEmpty, "\(lost.count) of \(keys.count) acknowledged inserts are not in the target: \(lost.prefix(10))")
                print("demo writers: \(stats.acknowledged.load(ordering: .relaxed)) acknowledged, \(stats.rerouted.load(ordering: .relaxed)) rerouted, \(keys.count) inserts checked")
            }
        }
    }
}

/// Carries DemoShop's wait function (a plain closure) to the thread that blocks on it.
struct Waiter: @unchecked Sendable {
    // @unchecked: the closure only polls an atomic counter.
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
