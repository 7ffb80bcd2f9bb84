import Foundation
import Testing
import TidemarkCore
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
        @Test(.timeLimit(.minutes(2)), arguments: [Layout.reshaped, .sameFile])
        func everyAcknowledgedWriteArrivesAndTheOldTablesRefuseTheRest(_ layout: Layout) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: layout)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let crowd = try await Crowd.start(s, python: 2, plain: 1, routing: 1, ratePerSecond: 100)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try await migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)
                try await pause(milliseconds: 700)

                let cut = try await tidemark(["cutover", "--json", "--max-lag-ms", "1000"] + s.planArguments)
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
    }
}
