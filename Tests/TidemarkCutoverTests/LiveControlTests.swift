import Foundation
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
import TidemarkTestSupport

// Live control of a running migration (`migrate --max-rows-per-second`,
// `--max-write-lag-ms`, `pause`/`resume`, `cutover --postpone-flag`), each
// with the real executable, real files and other real processes.

extension CutoverTests {
    @Suite struct LiveControl {
        /// Rows the scenario's source holds (1,500 items + 2 × 500 lines).
        static let scenarioRows = 2_500

        /// `--max-rows-per-second N`: copying R rows takes at least R/N seconds
        /// (the bucket starts empty), and no longer than that plus slack.
        @Test(.timeLimit(.minutes(10)))
        func rowRateLimitPacesTheCopy() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped)
                let rate = 1_000
                let f = try await tidemark(["migrate", "--json", "--max-rows-per-second", "\(rate)"] + s.planArguments)
                try #require(f.status == 0, "migrate: \(f.summary)")
                let j = try f.json()
                #expect(j.int("rows_copied") == Int64(Self.scenarioRows))
                let least = Double(Self.scenarioRows) / Double(rate)
                let took = try #require(j.double("copy_seconds"))
                #expect(took >= least * 0.97, "copied \(Self.scenarioRows) rows in \(took) s, faster than \(rate) rows/s allows (\(least) s)")
                #expect(took < least + 20, "the rate limit slowed the copy far below \(rate) rows/s: \(took) s")
                try s.expectTarget(equals: s.initialModel(), "after a paced copy")

                // A rate below 1 is bad usage: argument-parser's exit 64, one line.
                let bad = try await tidemark(["migrate", "--max-rows-per-second", "0"] + s.planArguments)
                #expect(bad.status == 64 && bad.stderr.contains("--max-rows-per-second"), "\(bad.summary)")
            }
        }

        /// `--max-write-lag-ms N`: while another process holds the source's
        /// write lock (so an application's write would wait), no chunk is
        /// copied; once it lets go, the copy goes on and finishes.
        @Test(.timeLimit(.minutes(10)))
        func writeLagHoldsTheCopy() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                // Paced (5 s in all), so that the lock lands mid-copy.
                let migrate = reaper.add(try Child.tidemark(["migrate", "--max-rows-per-second", "500", "--max-write-lag-ms", "50"] + s.planArguments))
                try await migrate.start()
                try await waitFor("the copy to begin", child: migrate) { copiedRows(s) > 0 }

                let holder = reaper.add(Child(executable: try python3Executable(), ["-c", """
                    import sqlite3, sys, time
                    c = sqlite3.connect(sys.argv[1], isolation_level=None)
                    c.execute("BEGIN IMMEDIATE")
                    print("locked", flush=True)
                    time.sleep(2.5)
                    c.execute("ROLLBACK")
                    """, s.source]))
                try await holder.start()
                try await waitFor("the lock holder", child: holder) { holder.stdoutText.contains("locked") }
                let atLock = copiedRows(s)
                // A chunk already past its probe may still commit.
                try await pause(milliseconds: 300)
                let held = copiedRows(s)
                let status = try await tidemark(["status", "--json"] + s.planArguments)
                let live = try #require(try status.json()["live"] as? [String: Any], "\(status.summary)")
                let waiting = live["migration_waiting"] as? [String: Any]
                #expect(waiting?.string("reason") == "write-lag", "status while throttled: \(status.stdoutText)")
                try await pause(milliseconds: 1_500)
                let stillHeld = copiedRows(s)
                #expect(holder.isRunning, "the lock holder let go too early to tell")
                #expect(held == stillHeld, "rows were copied while the source's write lock was held: \(held) → \(stillHeld)")
                #expect(held - atLock <= 50, "more than one chunk (50 rows) was copied after the lock was taken: \(atLock) → \(held)")
                #expect(held < Self.scenarioRows)
                #expect(migrate.stderrText.contains("throttled"), "migrate did not say it waits: \(migrate.stderrText)")

                let h = try await holder.waitForExit(timeoutSeconds: 30)
                #expect(h.status == 0, "\(h.summary)")
                let m = try await migrate.waitForExit(timeoutSeconds: 60)
                try #require(m.status == 0, "migrate: \(m.summary)")
                #expect(m.stdoutText.contains("caught up: \(Self.scenarioRows) rows copied"), "\(m.summary)")
                #expect(m.stderr.contains("no longer throttled"), "\(m.stderr)")
                try s.expectTarget(equals: s.initialModel(), "after a throttled copy")
                let v = try await tidemark(["verify"] + s.planArguments)
                #expect(v.status == 0, "verify: \(v.summary)")
            }
        }

        /// `tidemark pause` / `resume` from another process: a running
        /// `migrate --follow` stops replaying while writers go on writing,
        /// then catches up; a pause recorded while no migration runs makes
        /// the next `migrate` start paused, and say so.
        @Test(.timeLimit(.minutes(10)))
        func pauseStopsAFollowingMigrationUntilResumed() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                // Nothing to pause before a migration exists: one line, non-zero, nothing made.
                let early = try await tidemark(["pause"] + s.planArguments)
                #expect(early.status == 1 && early.stderrLines.count == 1 && early.stderr.contains("no migration to pause"), "\(early.summary)")
                let earlyResume = try await tidemark(["resume", "--json"] + s.planArguments)
                #expect(earlyResume.status == 1 && earlyResume.stderrLines.count == 1
                        && earlyResume.stderr.hasPrefix(#"{"error":{"code":"no_migration""#), "\(earlyResume.summary)")
                #expect(!FileManager.default.fileExists(atPath: s.target))

                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try await migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)
                let writers = SwiftWriters(scenario: s, firstIndex: 0, routing: [false], writers: 1, ratePerSecond: 200)
                defer { writers.stop.store(true, ordering: .relaxed) }
                try await pause(milliseconds: 500)

                let paused = try await tidemark(["pause", "--json"] + s.planArguments)
                try #require(paused.status == 0, "pause: \(paused.summary)")
                let pj = try paused.json()
                #expect(pj.bool("paused") == true && pj.bool("already_paused") == false)
                #expect(pj.bool("acknowledged") == true, "the running migrate did not confirm the pause: \(paused.stdoutText)")
                let applied = try appliedLSN(s)
                let captured = try capturedSeq(s)
                try await pause(milliseconds: 2_000)
                #expect(try appliedLSN(s) == applied, "the target moved while paused")
                #expect(try capturedSeq(s) > captured + 100, "the writers did not write while paused")
                let status = try await tidemark(["status"] + s.planArguments)
                #expect(status.stdoutText.contains("paused for ") && status.stdoutText.contains("tidemark resume"), "\(status.stdoutText)")
                let statusJSON = try await tidemark(["status", "--json"] + s.planArguments)
                let live = try #require(try statusJSON.json()["live"] as? [String: Any])
                #expect(live.bool("paused") == true && (live.int("paused_seconds") ?? -1) >= 1, "\(statusJSON.stdoutText)")
                #expect(migrate.stderrText.contains("paused since"), "migrate did not say it paused: \(migrate.stderrText)")

                let resumed = try await tidemark(["resume", "--json"] + s.planArguments)
                try #require(resumed.status == 0, "resume: \(resumed.summary)")
                #expect(try resumed.json().bool("resumed") == true)
                try await waitFor("replay to move again", child: migrate) { ((try? appliedLSN(s)) ?? 0) > applied }
                let reports = try await writers.finish()
                #expect(reports.allSatisfy { $0.failures.isEmpty })
                let last = try capturedSeq(s)
                try await waitFor("the target to catch up", child: migrate) { ((try? appliedLSN(s)) ?? 0) >= last }
                _ = try await migrate.terminate()
                let v = try await tidemark(["verify"] + s.planArguments)
                #expect(v.status == 0, "verify after resume: \(v.summary)")

                // Paused while nothing runs: recorded, and the next migrate starts paused.
                let idle = try await tidemark(["pause", "--json"] + s.planArguments)
                #expect(idle.status == 0 && (try? idle.json().bool("acknowledged")) == false, "\(idle.summary)")
                let idleStatus = try await tidemark(["status"] + s.planArguments)
                #expect(idleStatus.stdoutText.contains("next `tidemark migrate` starts paused"), "\(idleStatus.stdoutText)")
                try tryWrite(s.source, "INSERT INTO items(id, owner, n) VALUES (8000000, 'late', 1)").map { Issue.record("write failed: \($0)") }
                let next = reaper.add(try Child.tidemark(["migrate", "--json"] + s.planArguments))
                try await next.start()
                try await waitFor("the new migrate to say it is paused", child: next) { next.stderrText.contains(#"{"live":{"waiting":"paused""#) }
                let before = try appliedLSN(s)
                try await pause(milliseconds: 700)
                let afterWait = try appliedLSN(s)
                #expect(next.isRunning && afterWait == before, "a paused migrate moved or ended")
                let again = try await tidemark(["resume"] + s.planArguments)
                #expect(again.status == 0 && again.stdoutText.contains("resumed after"), "\(again.summary)")
                let done = try await next.waitForExit(timeoutSeconds: 60)
                #expect(done.status == 0 && (try? done.json().bool("caught_up")) == true, "\(done.summary)")
                let notPaused = try await tidemark(["resume"] + s.planArguments)
                #expect(notPaused.status == 0 && notPaused.stdoutText.contains("not paused"), "\(notPaused.summary)")
            }
        }

        /// A paused migrate killed with SIGKILL: the pause survives (the next
        /// migrate starts paused), and after `resume` it finishes the copy
        /// where the killed one stopped.
        @Test(.timeLimit(.minutes(10)))
        func aKilledPausedMigrationResumes() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let first = reaper.add(try Child.tidemark(["migrate", "--max-rows-per-second", "1000"] + s.planArguments))
                try await first.start()
                try await waitFor("the copy to begin", child: first) { copiedRows(s) > 0 }
                let paused = try await tidemark(["pause", "--json"] + s.planArguments)
                #expect(paused.status == 0 && (try? paused.json().bool("acknowledged")) == true, "\(paused.summary)")
                let atPause = copiedRows(s)
                #expect(atPause < Self.scenarioRows, "the copy ended before the pause")
                first.sendSignal(SIGKILL)
                let killed = try await first.waitForExit(timeoutSeconds: 30)
                #expect(killed.killed, "\(killed.summary)")

                let second = reaper.add(try Child.tidemark(["migrate", "--json"] + s.planArguments))
                try await second.start()
                try await waitFor("the next migrate to start paused", child: second) { second.stderrText.contains(#"{"live":{"waiting":"paused""#) }
                try await pause(milliseconds: 300)
                #expect(copiedRows(s) == atPause, "copied while paused")
                let resumed = try await tidemark(["resume"] + s.planArguments)
                #expect(resumed.status == 0, "\(resumed.summary)")
                let done = try await second.waitForExit(timeoutSeconds: 60)
                try #require(done.status == 0, "\(done.summary)")
                #expect(try done.json().int("rows_copied") == Int64(Self.scenarioRows - atPause))
                try s.expectTarget(equals: s.initialModel(), "after a killed, paused migration resumed")
            }
        }

        /// `cutover --postpone-flag FILE`: keeps replaying while FILE exists
        /// (status shows the wait), Ctrl-C while waiting switches nothing,
        /// and removing FILE cuts over with every acknowledged write.
        @Test(.timeLimit(.minutes(10)), arguments: [Layout.reshaped, Layout.sameFile])
        func postponedCutoverWaitsForTheFlag(_ layout: Layout) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: layout)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let crowd = try await Crowd.start(s, python: 1, plain: 1, routing: 1)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let flag = root + "/postpone.flag"
                try Data().write(to: URL(fileURLWithPath: flag))
                let arguments = ["cutover", "--skip-verify", "--json", "--max-lag-ms", "1000", "--postpone-flag", flag] + s.planArguments

                // Ctrl-C while waiting: nothing switched, nothing left waiting.
                let first = reaper.add(try Child.tidemark(arguments))
                try await first.start()
                try await waitFor("the first cutover to wait", child: first) { first.stderrText.contains(#"{"live":{"waiting":"postpone-flag""#) }
                first.sendSignal(SIGINT)
                let stopped = try await first.waitForExit(timeoutSeconds: 30)
                #expect(stopped.status == 130 && stopped.stderr.contains("nothing was switched"), "\(stopped.summary)")
                #expect(try s.switchRecordLSN() == nil)
                #expect(try s.journal() == nil)
                let afterStop = try await tidemark(["status"] + s.planArguments)
                #expect(!afterStop.stdoutText.contains("cutover postponed for"), "\(afterStop.stdoutText)")

                let cut = reaper.add(try Child.tidemark(arguments))
                try await cut.start()
                try await waitFor("the cutover to wait", child: cut) { cut.stderrText.contains(#"{"live":{"waiting":"postpone-flag""#) }
                let early = try appliedLSN(s)
                try await pause(milliseconds: 2_000)
                #expect(cut.isRunning, "the cutover did not wait for the flag: \(cut.stderrText)")
                #expect(try s.switchRecordLSN() == nil, "switched while the flag exists")
                #expect(try appliedLSN(s) > early, "the target was not kept caught up while waiting")
                let status = try await tidemark(["status", "--json"] + s.planArguments)
                let live = try #require(try status.json()["live"] as? [String: Any], "\(status.summary)")
                let waiting = try #require(live["cutover_waiting"] as? [String: Any], "status does not show the wait: \(status.stdoutText)")
                #expect(waiting.string("flag") == flag)
                let text = try await tidemark(["status"] + s.planArguments)
                #expect(text.stdoutText.contains("cutover postponed for") && text.stdoutText.contains(flag), "\(text.stdoutText)")

                try FileManager.default.removeItem(atPath: flag)
                let f = try await cut.waitForExit(timeoutSeconds: 60)
                let lsn = try expectCutoverJSON(f)
                try await pause(milliseconds: 600)
                let reports = try await crowd.finish()
                let outcome = checkWriters(reports, s, expectSwitch: true)
                try s.expectTarget(equals: outcome.all, "after the postponed cutover")
                try s.expectSource(equals: outcome.onSource, "after the postponed cutover")
                try expectSwitched(s, lsn: lsn)
                let after = try await tidemark(["status", "--json"] + s.planArguments)
                #expect((try after.json()["live"] as? [String: Any])?["cutover_waiting"] is NSNull, "\(after.stdoutText)")
            }
        }

        /// A postponed cutover killed with SIGKILL while waiting switches
        /// nothing; the next cutover switches and leaves no wait behind.
        @Test(.timeLimit(.minutes(10)))
        func aKilledPostponedCutoverLeavesNothingWaiting() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 300, batches: 100)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let flag = root + "/hold"
                try Data().write(to: URL(fileURLWithPath: flag))
                let waiting = reaper.add(try Child.tidemark(["cutover", "--skip-verify", "--postpone-flag", flag] + s.planArguments))
                try await waiting.start()
                try await waitFor("the cutover to wait", child: waiting) { waiting.stderrText.contains("cutover postponed") }
                waiting.sendSignal(SIGKILL)
                #expect(try await waiting.waitForExit(timeoutSeconds: 30).killed)
                #expect(try s.switchRecordLSN() == nil)
                #expect(try s.journal() == nil)
                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                try expectCutoverJSON(cut)
                let status = try await tidemark(["status"] + s.planArguments)
                #expect(!status.stdoutText.contains("postponed"), "\(status.stdoutText)")
            }
        }

        /// A cutover refuses to start while the migration is paused (without a
        /// postpone flag): one line, nothing switched.
        @Test(.timeLimit(.minutes(10)))
        func cutoverRefusesWhilePaused() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 200, batches: 50)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let paused = try await tidemark(["pause"] + s.planArguments)
                try #require(paused.status == 0, "\(paused.summary)")
                let refused = try await tidemark(["cutover", "--skip-verify"] + s.planArguments)
                #expect(refused.status == 1 && refused.stderrLines.count == 1 && refused.stderr.contains("tidemark resume"), "\(refused.summary)")
                #expect(try s.switchRecordLSN() == nil)
                #expect(try s.journal() == nil)
                _ = try await tidemark(["resume"] + s.planArguments)
                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                try expectCutoverJSON(cut)
                // After cutover there is nothing to pause.
                let late = try await tidemark(["pause", "--json"] + s.planArguments)
                #expect(late.status == 1 && late.stderr.contains("\"code\":\"no_migration\""), "\(late.summary)")
            }
        }

        /// PostgreSQL targets have no live control yet: `pause` and `resume`
        /// refuse in one line (JSON with --json), before connecting.
        @Test(.timeLimit(.minutes(10)))
        func pauseRefusesAPostgresTarget() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 10, batches: 5)
                let plan = root + "/pg.yml"
                try "source: source.db\ntarget: postgres://127.0.0.1:1/nothing\nlog: changelog\ntables:\n  items: {}\n".write(toFile: plan, atomically: true, encoding: .utf8)
                let p = try await tidemark(["pause", "--plan", plan])
                #expect(p.status == 1 && p.stderrLines.count == 1 && p.stderr.contains("PostgreSQL target"), "\(p.summary)")
                let r = try await tidemark(["resume", "--json", "--plan", plan])
                #expect(r.status == 1 && r.stderr.hasPrefix(#"{"error":{"code":"unsupported""#), "\(r.summary)")
                #expect(!FileManager.default.fileExists(atPath: s.log), "a refused pause made the log")
            }
        }
    }
}

/// Rows copied so far, summed over the target's tables (0 before the state exists).
private func copiedRows(_ s: Scenario) -> Int {
    guard let r = try? rows(s.target, "SELECT coalesce(sum(rows_copied), 0) FROM _tidemark_migration_tables"),
          case .integer(let n)? = r.first?.first else { return 0 }
    return Int(n)
}

private func appliedLSN(_ s: Scenario) throws -> Int64 {
    guard case .integer(let n)? = try rows(s.target, "SELECT applied_lsn FROM _tidemark_migration").first?.first else { return 0 }
    return n
}

/// The source's capture high-water mark.
private func capturedSeq(_ s: Scenario) throws -> Int64 {
    try Capture.lastCapturedSeq(Connection(path: s.source, mode: .readOnly))
}

/// Polls `condition` every 20 ms for up to 30 s; fails early if `child` exits.
private func waitFor(_ what: String, child: Child, _ condition: () throws -> Bool) async throws {
    let start = ContinuousClock.now
    while try !condition() {
        if !child.isRunning {
            throw ChildTimedOut(description: "\(child.name) exited while waiting for \(what): \(child.stderrText)")
        }
        if (ContinuousClock.now - start).millis > 30_000 {
            throw ChildTimedOut(description: "timed out waiting for \(what); \(child.name) stderr: \(child.stderrText)")
        }
        try await pause(milliseconds: 20)
    }
}
