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
    /// The switch and its way back under crashes, and what follows them:
    /// migrating again, reverse capture's place in the log, in-place guards,
    /// abandoning, finishing.
    @Suite struct Lifecycle {
        // MARK: Crash sweep

        struct SweepCase: Sendable, CustomStringConvertible {
            var layout: Layout
            /// The command killed: "cutover" or "rollback".
            var command: String
            var step: String
            /// The command run next: "cutover" or "rollback".
            var resolver: String
            var seed: UInt64
            var description: String { "\(layout.name): \(command) killed at \(step), resolved by \(resolver) (sweep seed \(seed))" }
        }

        static let sweepSeed: UInt64 = ProcessInfo.processInfo.environment["TIDEMARK_SWEEP_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 1...999_999)

        /// Every step of cutover and of rollback, two files and one file, each
        /// resolved by either command; by default a seeded sample (one case of
        /// each shape and command); all with TIDEMARK_FULL_SWEEP=1.
        static var sweepCases: [SweepCase] {
            let groups: [(Layout, String, [String])] = [
                (.identity, "cutover", ["reverse-capture", "locked", "prepared", "guarded", "switched"]),
                (.sameFileIdentity, "cutover", ["reverse-capture", "locked", "guarded"]),
                (.identity, "rollback", ["rollback-fenced", "rollback-shipped", "rollback-applied", "rollback-switched"]),
                (.sameFileIdentity, "rollback", ["rollback-fenced", "rollback-applied"]),
            ]
            let full = ProcessInfo.processInfo.environment["TIDEMARK_FULL_SWEEP"] == "1"
            var rng = SplitMix(seed: sweepSeed)
            var out: [SweepCase] = []
            for (layout, command, steps) in groups {
                let all = steps.flatMap { step in ["cutover", "rollback"].map { SweepCase(layout: layout, command: command, step: step, resolver: $0, seed: sweepSeed) } }
                if full { out += all } else { out.append(all[Int(rng.next() % UInt64(all.count))]) }
            }
            return out
        }

        /// SIGKILL at a step of `cutover` or `rollback` while routing writers
        /// write, then the other (or the same) command: whichever store ends
        /// authoritative holds every acknowledged write, none lost, none
        /// applied twice; no write was acknowledged where nobody reads.
        @Test(.timeLimit(.minutes(10)), arguments: sweepCases)
        func killedAtEveryStepOfCutoverAndRollbackLosesNoWrite(_ c: SweepCase) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: c.layout, items: 300, batches: 100)
                let crowd = try await Crowd.start(s, python: 0, plain: 0, routing: 2, ratePerSecond: 80)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "\(c): migrate: \(migrated.summary)")
                let crash = ["TIDEMARK_CRASH_AT": c.step]
                if c.command == "cutover" {
                    let killed = try await tidemark(["cutover", "--json", "--skip-verify", "--max-lag-ms", "1000", "--max-pause-ms", "15000"] + s.planArguments, environment: crash)
                    try #require(killed.killed, "\(c): not killed: \(killed.summary)")
                } else {
                    let cut = try await tidemark(["cutover", "--json", "--skip-verify", "--max-lag-ms", "1000", "--max-pause-ms", "15000"] + s.planArguments)
                    try expectCutoverJSON(cut)
                    try await pause(milliseconds: 300)  // writes on the target
                    let killed = try await tidemark(["rollback", "--json"] + s.planArguments, environment: crash)
                    try #require(killed.killed, "\(c): not killed: \(killed.summary)")
                }
                try expectNeverHalf(s, "\(c): right after the kill")
                if c.command == "rollback" {
                    let status = try RollbackJournal.status(plan: try s.loadPlan())
                    if !s.layout.sameFile {
                        #expect(status?.nextCommand == "tidemark rollback", "\(c): journal status \(String(describing: status))")
                    }
                }
                try await pause(milliseconds: 200)  // writers meet the half-done state
                let resolved = try await tidemark([c.resolver, "--json"] + (c.resolver == "cutover" ? ["--skip-verify", "--max-pause-ms", "15000"] : []) + s.planArguments)
                let refusedAsRolledBack = c.resolver == "cutover" && c.step == "rollback-switched"
                if refusedAsRolledBack {
                    #expect(resolved.status == 1 && resolved.stderr.contains("tidemark migrate"), "\(c): \(resolved.summary)")
                } else {
                    #expect(resolved.status == 0, "\(c): \(resolved.summary)")
                }
                // (Same file, rolled back: the new tables' fences share the
                // old tables' guard-name prefix, which expectNeverHalf reads.)
                if !(s.layout.sameFile && c.resolver == "rollback") { try expectNeverHalf(s, "\(c): after \(c.resolver)") }
                #expect(try RollbackJournal.status(plan: try s.loadPlan()).map { $0.phase != .prepared } ?? true, "\(c): a rollback journal is still open")
                try await pause(milliseconds: 300)  // writers write where the Router says
                let reports = try await crowd.finish()

                var all = s.initialModel()
                var acknowledged = 0, paused = 0
                for r in reports {
                    for e in r.events {
                        switch e {
                        case .ok(let w, _): all.apply(w); acknowledged += 1
                        case .refused: break
                        case .failed(let m):
                            // Not acknowledged, so not owed: refusals while a
                            // crashed command left both stores fenced, and
                            // tables an abandon removed from the target.
                            if m.contains("router still says") || m.contains("no such table") || m.contains("tidemark:") { paused += 1 } else {
                                Issue.record("\(c): \(r.name): \(m)")
                            }
                        }
                    }
                }
                let route = try Router(plan: try s.loadPlan()).route()
                if route.authority == .target {
                    try s.expectTarget(equals: all, "\(c): target after recovery")
                } else {
                    try s.expectSource(equals: all, "\(c): source after recovery")
                }
                #expect(acknowledged > 0)
                print("\(c): \(acknowledged) writes acknowledged, \(paused) refused while paused; \(route.authority.rawValue) authoritative")
            }
        }

        // MARK: Migrating again

        /// migrate → cutover → rollback, twice, then migrate → cutover, with
        /// routing writers throughout: the last target holds every
        /// acknowledged write, and the log's LSNs only ever grow.
        @Test(.timeLimit(.minutes(10)))
        func cutoverRollbackMigrateAgainCarriesEveryWrite() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .identity, items: 300, batches: 100)
                let crowd = try await Crowd.start(s, python: 0, plain: 0, routing: 2, ratePerSecond: 80)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                for round in 1...3 {
                    let migrated = try await tidemark(["migrate"] + s.planArguments)
                    try #require(migrated.status == 0, "round \(round): migrate: \(migrated.summary)")
                    let cut = try await tidemark(["cutover", "--json", "--skip-verify", "--max-lag-ms", "1000", "--max-pause-ms", "15000"] + s.planArguments)
                    try expectCutoverJSON(cut)
                    try await pause(milliseconds: 300)
                    if round == 3 { break }
                    let back = try await tidemark(["rollback", "--json"] + s.planArguments)
                    try #require(back.status == 0, "round \(round): rollback: \(back.summary)")
                    #expect(try back.json().string("kind") == "reversed")
                    try await pause(milliseconds: 300)
                }
                let reports = try await crowd.finish()
                let outcome = checkWriters(reports, s, expectSwitch: true, monotone: false)
                try s.expectTarget(equals: outcome.all, "after the third cutover")
                let cursor = try LogReader(directory: s.log).cursor(from: .zero)
                var last = LSN.zero
                var n = 0
                while let r = try cursor.next() {
                    #expect(r.lsn > last, "LSN \(r.lsn) after \(last)")
                    last = r.lsn
                    n += 1
                }
                print("three migrations: \(outcome.acknowledged) writes acknowledged; the log holds \(n) records up to LSN \(last)")
            }
        }

        // MARK: Reverse capture in the same log

        /// After cutover the target's outbox continues the log past the switch
        /// LSN; shipping it into another log is refused; shipped into the
        /// migration's log, rollback carries it back from there, and the next
        /// capture installation continues after it.
        @Test(.timeLimit(.minutes(10)))
        func reverseCaptureContinuesTheSameLog() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .identity, items: 100, batches: 20)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "\(migrated.summary)")
                let lsn = try expectCutoverJSON(try await tidemark(["cutover", "--json", "--skip-verify"] + s.planArguments))
                #expect(try rows(s.target, "SELECT seq FROM sqlite_sequence WHERE name = '_tidemark_outbox'") == [[.integer(lsn)]],
                        "the target's outbox does not continue after the switch LSN \(lsn)")
                var model = s.initialModel()
                let t = try Connection(path: s.target, mode: .readWrite)
                try t.execute("INSERT INTO items(id, owner, n, note) VALUES (900001, 'app', 1, NULL); UPDATE items SET n = 5 WHERE id = 3; DELETE FROM lines WHERE batch = 4 AND line = 1")
                try t.close()
                model.apply(.putItem(900001, ItemRow(owner: "app", n: 1, note: nil)))
                model.items[3]!.n = 5
                model.lines[LineKey(batch: 4, line: 1)] = nil

                let elsewhere = try await tidemark(["capture", "run", "--once", "--source", s.target, "--log", root + "/other-log"])
                #expect(elsewhere.status != 0 && elsewhere.stderr.contains(s.log.split(separator: "/").last.map(String.init) ?? "changelog"),
                        "shipping reverse capture into another log: \(elsewhere.summary)")
                let shipped = try await tidemark(["capture", "run", "--once", "--source", s.target, "--log", s.log])
                #expect(shipped.status == 0, "\(shipped.summary)")
                let head = try LogReader(directory: s.log).headLSN()
                #expect(head.rawValue == UInt64(lsn) + 3, "log head \(head) after the switch at \(lsn) and three target writes")

                let back = try await tidemark(["rollback", "--json"] + s.planArguments)
                try #require(back.status == 0, "\(back.summary)")
                #expect(try back.json().int("changes_replayed_back") == 3, "\(back.stdoutText)")
                try s.expectSource(equals: model, "after rollback")
                let again = try await tidemark(["migrate"] + s.planArguments)
                try #require(again.status == 0, "migrate after rollback: \(again.summary)")
                let first = try Capture.installation(try Connection(path: s.source, mode: .readOnly))?.firstSeq
                #expect(first == Int64(head.rawValue), "the new installation starts after \(first ?? -1), not after the last reverse LSN \(head)")
                try s.expectTarget(equals: model, "after migrating again")
            }
        }

        // MARK: In place

        static func inPlaceScenario(_ root: String) throws -> (db: String, plan: String) {
            let db = root + "/people.db"
            let c = try Connection(path: db, mode: .readWriteCreate)
            _ = try c.setJournalMode(.wal)
            try c.execute("CREATE TABLE people(id INTEGER PRIMARY KEY, first TEXT, last TEXT, age INTEGER)")
            try c.transaction(.immediate) {
                for i in 1...50 { try c.prepare("INSERT INTO people VALUES (?, ?, ?, ?)").execute([.integer(Int64(i)), .text("f\(i)"), .text("l\(i)"), .integer(Int64(i))]) }
            }
            try c.close()
            let plan = root + "/plan.yml"
            try """
                source: people.db
                target: people.db
                log: changelog
                tables:
                  people:
                    columns:
                      full: "first || ' ' || last"

                """.write(toFile: plan, atomically: true, encoding: .utf8)
            return (db, plan)
        }

        /// After an in-place cutover: old code's INSERT without the new column
        /// and UPDATE of a replaced column are refused with the guard's
        /// message; new code writes the new column and every other column.
        @Test(.timeLimit(.minutes(10)))
        func inPlaceGuardRefusesOnlyWritesThatLeaveTheNewColumnWrong() async throws {
            try await withTemporaryDirectory { root in
                let (db, plan) = try Self.inPlaceScenario(root)
                let migrated = try await tidemark(["migrate", "--plan", plan])
                try #require(migrated.status == 0, "\(migrated.summary)")
                try expectCutoverJSON(try await tidemark(["cutover", "--json", "--skip-verify", "--plan", plan]))
                let oldInsert = try tryWrite(db, "INSERT INTO people(id, first, last, age) VALUES (1001, 'a', 'b', 3)")
                #expect(oldInsert?.hasPrefix("tidemark: people was migrated in place") == true, "old code's insert: \(oldInsert ?? "accepted")")
                let oldUpdate = try tryWrite(db, "UPDATE people SET first = 'z' WHERE id = 2")
                #expect(oldUpdate?.hasPrefix("tidemark: people was migrated in place") == true, "update of a replaced column: \(oldUpdate ?? "accepted")")
                for sql in ["INSERT INTO people(id, first, last, age, full) VALUES (1002, 'a', 'b', 3, 'a b')",
                            "INSERT INTO people(id, age, full) VALUES (1003, 5, 'new only')",
                            "UPDATE people SET age = 99 WHERE id = 1",
                            "UPDATE people SET full = 'x y' WHERE id = 1",
                            "DELETE FROM people WHERE id = 3"] {
                    #expect(try tryWrite(db, sql) == nil, "refused: \(sql)")
                }
                #expect(try rows(db, "SELECT full, age FROM people WHERE id IN (1, 2, 1003) ORDER BY id") ==
                        [[.text("x y"), .integer(99)], [.text("f2 l2"), .integer(2)], [.text("new only"), .integer(5)]])
            }
        }

        /// Abandoning an in-place migration works (capture goes before the
        /// column it names), twice in a row, and migrating again works.
        @Test(.timeLimit(.minutes(10)))
        func abandoningAnInPlaceMigrationWorksAndIsIdempotent() async throws {
            try await withTemporaryDirectory { root in
                let (db, plan) = try Self.inPlaceScenario(root)
                let migrated = try await tidemark(["migrate", "--plan", plan])
                try #require(migrated.status == 0, "\(migrated.summary)")
                let back = try await tidemark(["rollback", "--json", "--plan", plan])
                try #require(back.status == 0, "abandon: \(back.summary)")
                #expect(try back.json().string("kind") == "abandoned")
                #expect(try rows(db, "SELECT count(*) FROM pragma_table_info('people') WHERE name = 'full'") == [[.integer(0)]])
                #expect(try rows(db, "SELECT name FROM sqlite_schema WHERE name LIKE '\\_tidemark%' ESCAPE '\\'").isEmpty)
                let again = try await tidemark(["rollback", "--json", "--plan", plan])
                #expect(again.status == 0 && (try? again.json().string("kind")) == "nothing-to-do", "\(again.summary)")
                let remigrated = try await tidemark(["migrate", "--plan", plan])
                try #require(remigrated.status == 0, "\(remigrated.summary)")
                #expect(try rows(db, "SELECT full FROM people WHERE id = 7") == [[.text("f7 l7")]])
            }
        }

        // MARK: Finish and abandon leftovers

        /// `finish` after a kept cutover: the dry run lists and changes
        /// nothing; the run removes reverse capture and the state, keeps the
        /// guards and the route; `--drop-source` drops the old tables.
        @Test(.timeLimit(.minutes(10)))
        func finishRemovesWhatOnlyARollbackNeeds() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .identity, items: 100, batches: 20)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "\(migrated.summary)")
                try expectCutoverJSON(try await tidemark(["cutover", "--json", "--skip-verify"] + s.planArguments))
                #expect(try tryWrite(s.target, "INSERT INTO items(id, owner, n) VALUES (900001, 'app', 1)") == nil)
                func snapshot() throws -> [[[Value]]] {
                    [try rows(s.source, "SELECT type, name FROM sqlite_schema ORDER BY name"),
                     try rows(s.target, "SELECT type, name FROM sqlite_schema ORDER BY name")]
                }
                let before = try snapshot()
                let dry = try await tidemark(["finish", "--dry-run", "--json"] + s.planArguments)
                try #require(dry.status == 0, "\(dry.summary)")
                let listed = try dry.json()["removed"] as? [String] ?? []
                #expect(listed.contains("table _tidemark_migration in \(s.target)") && listed.contains("table _tidemark_outbox in \(s.target)"), "\(listed)")
                #expect(try snapshot() == before, "a dry run changed something")
                let done = try await tidemark(["finish", "--json"] + s.planArguments)
                try #require(done.status == 0, "\(done.summary)")
                #expect(try done.json()["removed"] as? [String] == listed)
                let leftInTarget = try s.tidemarkObjects(in: s.target)
                #expect(leftInTarget.isEmpty, "left in the target: \(leftInTarget)")
                #expect(try s.guards(in: s.source).count == 6)
                #expect(try Router(plan: try s.loadPlan()).route().authority == .target)
                #expect(try LogReader(directory: s.log).headLSN() > LSN(0))
                let dropped = try await tidemark(["finish", "--drop-source"] + s.planArguments)
                #expect(dropped.status == 0, "\(dropped.summary)")
                #expect(try !s.tableExists("items", in: s.source) && !s.tableExists("lines", in: s.source))
            }
        }

        /// `rollback` before cutover is a complete abandon (dry run first):
        /// `migrate` afterwards works with no manual step and its capture
        /// continues the kept log's LSNs.
        @Test(.timeLimit(.minutes(10)))
        func abandonThenMigrateAgainContinuesTheLog() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .identity, items: 100, batches: 20)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "\(migrated.summary)")
                let w = try Connection(path: s.source, mode: .readWrite)
                try w.execute("UPDATE items SET n = 7 WHERE id < 10")
                _ = try await tidemark(["migrate"] + s.planArguments)
                let dry = try await tidemark(["rollback", "--dry-run", "--json"] + s.planArguments)
                try #require(dry.status == 0, "\(dry.summary)")
                let listed = try dry.json()["removed"] as? [String] ?? []
                #expect(listed.contains("table _tidemark_outbox in \(s.source)") && listed.contains("table items in \(s.target)"), "\(listed)")
                #expect(try Capture.isInstalled(try Connection(path: s.source, mode: .readOnly)), "a dry run removed capture")
                let head = try LogReader(directory: s.log).headLSN()
                let back = try await tidemark(["rollback", "--json"] + s.planArguments)
                try #require(back.status == 0, "\(back.summary)")
                #expect(try back.json()["removed"] as? [String] == listed)
                try w.execute("UPDATE items SET n = 8 WHERE id < 5")
                let again = try await tidemark(["migrate"] + s.planArguments)
                try #require(again.status == 0, "\(again.summary)")
                #expect(try Capture.installation(try Connection(path: s.source, mode: .readOnly))?.firstSeq == Int64(head.rawValue))
                #expect(try rows(s.target, "SELECT n FROM items WHERE id IN (4, 9) ORDER BY id") == [[.integer(8)], [.integer(7)]])
            }
        }
    }
}
