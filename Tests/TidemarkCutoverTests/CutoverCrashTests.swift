import TidemarkTestSupport
import Foundation
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

extension CutoverTests {
    /// SIGKILL of `tidemark cutover` at each journaled step (through the
    /// library's test-only `TIDEMARK_CRASH_AT` hook), then recovery by the
    /// next `tidemark status` or `tidemark cutover`; and SIGKILLs at random
    /// moments under write load.
    @Suite struct Crash {
        enum Resolver: String, Sendable { case status, cutover }

        struct Case: Sendable, CustomStringConvertible {
            var layout: Layout
            var step: String
            /// What the step must resolve to: finished (true) or undone.
            var finished: Bool
            var resolver: Resolver
            var description: String { "\(layout.name): killed at \(step), resolved by \(resolver.rawValue)" }
        }

        @Test(.timeLimit(.minutes(10)), arguments: [
            Case(layout: .reshaped, step: "reverse-capture", finished: false, resolver: .cutover),
            Case(layout: .reshaped, step: "locked", finished: false, resolver: .status),
            Case(layout: .reshaped, step: "prepared", finished: false, resolver: .status),
            Case(layout: .reshaped, step: "prepared", finished: false, resolver: .cutover),
            Case(layout: .reshaped, step: "guarded", finished: false, resolver: .cutover),
            Case(layout: .reshaped, step: "switched", finished: true, resolver: .status),
            Case(layout: .reshaped, step: "switched", finished: true, resolver: .cutover),
            Case(layout: .sameFile, step: "reverse-capture", finished: false, resolver: .status),
            Case(layout: .sameFile, step: "locked", finished: false, resolver: .cutover),
            Case(layout: .sameFile, step: "guarded", finished: false, resolver: .status),
        ])
        func killedAtAStepIsFinishedOrUndoneNeverHalf(_ c: Case) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: c.layout, items: 300, batches: 100)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                // Changes the crashed cutover has to drain.
                var model = s.initialModel()
                try write(s, &model, ids: 5_000..<5_020)

                let crashed = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments, environment: ["TIDEMARK_CRASH_AT": c.step])
                try #require(crashed.killed, "the cutover was not killed at \(c.step): \(crashed.summary)")

                // Never half, and the Router already tells the truth.
                let switched = try expectNeverHalf(s, "right after the kill")
                #expect(switched == c.finished, "killed at \(c.step): switch record \(switched ? "present" : "absent")")
                let route = try await tidemark(["route", "--json"] + s.planArguments)
                #expect(try route.json().string("authority") == (c.finished ? "target" : "source"), "\(route.summary)")
                // Writes to the old tables: refused exactly when the switch happened.
                let refusal = try tryWrite(s.source, "INSERT INTO items(id, owner, n, note) VALUES (6000, 'after', 1, NULL)")
                if c.finished {
                    #expect(refusal?.hasPrefix(defaultRefusalPrefix(s, table: "items")) == true, "\(refusal ?? "accepted")")
                } else {
                    #expect(refusal == nil, "the source refused a write after an undone cutover: \(refusal!)")
                    model.apply(.putItem(6000, ItemRow(owner: "after", n: 1, note: nil)))
                }

                switch c.resolver {
                case .status:
                    let status = try await tidemark(["status", "--json"] + s.planArguments)
                    #expect(status.status == 0, "\(status.summary)")
                    let journal = try s.journal()
                    #expect(journal == (c.finished ? "done" : nil), "status left the journal \(journal ?? "empty")")
                    try expectNeverHalf(s, "after status")
                    let retry = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                    try expectCutoverJSON(retry, alreadyDone: c.finished)
                case .cutover:
                    let retry = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                    try expectCutoverJSON(retry, alreadyDone: c.finished)
                }
                try expectSwitched(s, lsn: nil)
                try s.expectTarget(equals: model, "after recovery")
                try s.expectSource(equals: model, "after recovery")
                let verify = try await tidemark(["verify", "--json"] + s.planArguments)
                #expect(verify.status == 0, "verify after recovery: \(verify.summary)")
            }
        }

        /// A pause over `--max-pause-ms` (each step made to sleep 40 ms, the
        /// limit 70 ms: the check after the switch's writes fails, after the
        /// target was journaled "prepared" when there are two files) rolls
        /// everything back with one clear line: the source stays
        /// authoritative and writable, and a retry succeeds.
        @Test(.timeLimit(.minutes(10)), arguments: [Layout.reshaped, .sameFile])
        func aPauseOverTheLimitChangesNothingAndARetrySucceeds(_ layout: Layout) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: layout, items: 300, batches: 100)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                var model = s.initialModel()
                try write(s, &model, ids: 5_000..<5_020)

                let slow = try await tidemark(["cutover", "--skip-verify", "--max-pause-ms", "70"] + s.planArguments, environment: ["TIDEMARK_CUTOVER_STEP_DELAY_MS": "40"])
                #expect(slow.status == 1 && slow.reason == .exit, "\(slow.summary)")
                #expect(slow.stderrLines.count == 1 && slow.stderr.contains("--max-pause-ms") && slow.stderr.contains("source stays authoritative"),
                        "\(slow.stderr)")
                #expect(slow.stderr.contains("at switching"), "expected to fail at the last check: \(slow.stderr)")
                #expect(try !expectNeverHalf(s, "after a refused pause"))
                #expect(try s.journal() == nil)
                #expect(try tryWrite(s.source, "INSERT INTO items(id, owner, n, note) VALUES (6000, 'after', 1, NULL)") == nil)
                model.apply(.putItem(6000, ItemRow(owner: "after", n: 1, note: nil)))

                let retry = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                let lsn = try expectCutoverJSON(retry)
                try expectSwitched(s, lsn: lsn)
                try s.expectTarget(equals: model, "after the retry")
            }
        }

        /// Inserts items `ids` and updates a few initial ones in the source.
        func write(_ s: Scenario, _ model: inout Model, ids: Range<Int64>) throws {
            let c = try Connection(path: s.source, mode: .readWrite)
            for id in ids {
                try c.prepare("INSERT INTO items(id, owner, n, note) VALUES (?, 'direct', ?, 'x')").execute([.integer(id), .integer(id)])
                model.apply(.putItem(id, ItemRow(owner: "direct", n: id, note: "x")))
            }
            try c.execute("UPDATE items SET n = n + 1000 WHERE id BETWEEN 10 AND 14; DELETE FROM lines WHERE batch = 3")
            for id in Int64(10)...14 { model.items[id]!.n += 1000 }
            model.lines[LineKey(batch: 3, line: 1)] = nil
            model.lines[LineKey(batch: 3, line: 2)] = nil
        }

        /// `tidemark cutover` SIGKILLed at random moments while writers write
        /// and a migrator follows: after every kill the state is finished or
        /// undone, never half; a last cutover completes, and the writers'
        /// contract holds as in an uninterrupted cutover.
        @Test(.timeLimit(.minutes(10)))
        func randomKillsUnderWriteLoad() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let crowd = try await Crowd.start(s, python: 1, plain: 1, routing: 1)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)

                // How long a cutover takes to reach its switch: a dry run.
                let dryStart = ContinuousClock.now
                let dry = try await tidemark(["cutover", "--skip-verify", "--dry-run", "--json"] + s.planArguments)
                let dryMillis = (ContinuousClock.now - dryStart).millis
                try #require(dry.status == 0, "dry run: \(dry.summary)")
                #expect(try dry.json().bool("dry_run") == true)
                try expectNeverHalf(s, "after a dry run")
                #expect(try s.journal() == nil)

                // Each journaled step sleeps 25 ms, so the switch spans ~100 ms
                // of a run (after a dry run's time); kills land from well before
                // it to past it.
                let environment = ["TIDEMARK_CUTOVER_STEP_DELAY_MS": "25"]
                var kills = 0, midSwitch = 0, attempts = 0
                var finishedByAttempt = false
                var rng = SystemRandomNumberGenerator()
                while attempts < 12 && !finishedByAttempt {
                    attempts += 1
                    let switchedBefore = try s.switchRecordLSN() != nil
                    let child = reaper.add(try Child.tidemark(["cutover", "--skip-verify", "--json", "--max-lag-ms", "1000"] + s.planArguments, environment: environment))
                    // The first attempts mostly land before or early in the
                    // switch; later ones reach past it, so the loop ends.
                    let delay = Double.random(in: (dryMillis * 0.5)...(dryMillis + (attempts <= 6 ? 60 : 150)), using: &rng)
                    let f: Finished = try await blocking {
                        let start = ContinuousClock.now
                        try child.start()
                        while child.isRunning && (ContinuousClock.now - start).millis < delay { usleep(500) }
                        child.sendSignal(SIGKILL)
                        return try child.wait(timeoutSeconds: 60)
                    }
                    if f.killed {
                        kills += 1
                        let journal = try s.journal()
                        let switched = try expectNeverHalf(s, "after kill \(kills) at \(Int(delay)) ms")
                        if journal == "prepared" || (switched && journal != "done") { midSwitch += 1 }
                    } else {
                        try expectCutoverJSON(f, alreadyDone: switchedBefore)
                        finishedByAttempt = true
                    }
                }
                let switchedBefore = try s.switchRecordLSN() != nil
                let last = try await tidemark(["cutover", "--skip-verify", "--json", "--max-lag-ms", "1000"] + s.planArguments)
                let lsn = try expectCutoverJSON(last, alreadyDone: switchedBefore)
                try await pause(milliseconds: 600)
                let reports = try await crowd.finish()
                let migrated = try await migrate.waitForOwnExit(timeoutSeconds: 20)
                #expect(migrated?.status == 0, "the migrator did not stop on its own after the cutover: \(migrated?.summary ?? "still running")")

                let outcome = checkWriters(reports, s, expectSwitch: true)
                try s.expectTarget(equals: outcome.all, "after the kills")
                try s.expectSource(equals: outcome.onSource, "after the kills")
                try expectSwitched(s, lsn: lsn)
                print("random kills: \(kills) kills in \(attempts) attempts (dry run \(Int(dryMillis)) ms), \(midSwitch) left a journal to resolve; \(outcome.acknowledged) writes acknowledged, \(outcome.refused) refused")
                #expect(kills > 0, "no attempt was killed")
            }
        }
    }
}
