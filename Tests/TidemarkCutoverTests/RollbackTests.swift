import TidemarkTestSupport
import Foundation
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

extension CutoverTests {
    /// `tidemark rollback` before the switch (abandon: the source is left as
    /// the writers made it) and after it (the target's writes are carried
    /// back, the source is authoritative again, the target is fenced).
    @Suite struct RollingBack {
        /// Writers keep writing through the migration and the rollback. The
        /// source ends holding exactly what they wrote, value for value, with
        /// no trace of capture (triggers, outbox, its sequence row); the
        /// tables the migration created are gone.
        @Test(.timeLimit(.minutes(10)), arguments: [Layout.reshaped, .sameFile])
        func beforeCutoverTheSourceIsExactlyWhatWritersWrote(_ layout: Layout) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: layout)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let crowd = try await Crowd.start(s, python: 1, plain: 2, routing: 0, ratePerSecond: 80)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)
                try await pause(milliseconds: 300)
                let stopped = try await migrate.terminate()
                #expect(stopped.status == 143 && stopped.reason == .exit, "migrate --follow on SIGTERM (stops at a safe point, exit 143): \(stopped.summary)")
                #expect(try s.tableExists(layout.items.table, in: s.target))

                let rollback = try await tidemark(["rollback", "--json"] + s.planArguments)
                try #require(rollback.status == 0, "rollback: \(rollback.summary)")
                let j = try rollback.json()
                #expect(j.string("kind") == "abandoned", "\(rollback.stdoutText)")
                #expect(Set(j["dropped"] as? [String] ?? []) == [layout.items.table, layout.linesTable], "\(rollback.stdoutText)")
                try await pause(milliseconds: 300)  // writers write on, now without capture
                let reports = try await crowd.finish()

                let outcome = checkWriters(reports, s, expectSwitch: false)
                #expect(outcome.refused == 0)
                try s.expectSource(equals: outcome.all, "after rollback")
                let leftInSource = try s.tidemarkObjects(in: s.source)
                #expect(leftInSource.isEmpty, "left in the source: \(leftInSource)")
                #expect(try rows(s.source, "SELECT name FROM sqlite_schema WHERE type = 'trigger'").isEmpty)
                #expect(try rows(s.source, "PRAGMA integrity_check") == [[.text("ok")]])
                for table in [layout.items.table, layout.linesTable] {
                    #expect(try !s.tableExists(table, in: s.target), "\(table) is still in \(s.target)")
                }
                let leftInTarget = try s.tidemarkObjects(in: s.target)
                #expect(leftInTarget.isEmpty, "left in the target: \(leftInTarget)")
                let route = try await tidemark(["route", "--json"] + s.planArguments)
                #expect(try route.json().string("authority") == "source")
                // A second rollback has nothing to do.
                let again = try await tidemark(["rollback", "--json"] + s.planArguments)
                #expect(again.status == 0 && (try? again.json().string("kind")) == "nothing-to-do", "\(again.summary)")
            }
        }

        /// Routing writers write to the target after the switch and keep
        /// writing through the rollback (refused by the target's new guards,
        /// they route back); a Python writer keeps writing the source
        /// throughout. Afterwards the source holds every acknowledged write,
        /// wherever it landed, through the plan's inverse; the Router says
        /// source; the target refuses writes naming the source.
        @Test(.timeLimit(.minutes(10)), arguments: [Layout.identity, .renamed, .computedWithInverse, .sameFileIdentity])
        func afterCutoverEveryTargetWriteComesBack(_ layout: Layout) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: layout)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let crowd = try await Crowd.start(s, python: 1, plain: 0, routing: 2, ratePerSecond: 80)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)
                try await pause(milliseconds: 300)
                let cut = try await tidemark(["cutover", "--skip-verify", "--json", "--max-lag-ms", "1000"] + s.planArguments)
                try expectCutoverJSON(cut)
                let migrated = try await migrate.waitForOwnExit(timeoutSeconds: 20)
                #expect(migrated?.status == 0, "the migrator did not stop after the cutover: \(migrated?.summary ?? "still running")")
                try await pause(milliseconds: 500)  // writes to the target

                let rollback = try await tidemark(["rollback", "--json"] + s.planArguments)
                try #require(rollback.status == 0, "rollback: \(rollback.summary)")
                let j = try rollback.json()
                #expect(j.string("kind") == "reversed", "\(rollback.stdoutText)")
                #expect((j.int("changes_replayed_back") ?? 0) > 0, "\(rollback.stdoutText)")
                try await pause(milliseconds: 500)  // writes back on the source
                let reports = try await crowd.finish()

                let outcome = checkWriters(reports, s, expectSwitch: true, monotone: false)
                for r in reports where r.routing {
                    let stores = r.events.compactMap { if case .ok(_, let store) = $0 { store } else { nil } }
                    #expect(stores.contains(.target), "\(r.name) never wrote to the target")
                    #expect(stores.last == .source, "\(r.name) did not come back to the source")
                    #expect(r.events.contains { if case .refused(_, _, .target) = $0 { true } else { false } },
                            "\(r.name) was never refused by the target after the rollback")
                }
                try s.expectSource(equals: outcome.all, "after rollback")
                #expect(try s.switchRecordLSN() == nil)
                #expect(try rows(s.source, "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name IN ('items', 'lines')").isEmpty,
                        "triggers left on the source tables")
                #expect(try !s.tableExists("_tidemark_outbox", in: s.source), "capture left in the source")
                #expect(try s.journal() == "rolled-back")
                let route = try await tidemark(["route", "--json"] + s.planArguments)
                #expect(try route.json().string("authority") == "source", "\(route.summary)")
                #expect(try Router(plan: try s.loadPlan()).route().authority == .source)

                let q = quoteIdentifier
                let refused = try tryWrite(s.target, "INSERT INTO \(q(layout.items.table))(\(q(layout.items.id)), \(q(layout.items.owner)), \(q(layout.items.n))) VALUES (9999999, 'late', 2)")
                #expect(refused?.hasPrefix(rolledBackRefusal(s, table: layout.items.table)) == true, "a write to the target after rollback: \(refused ?? "accepted")")
                let lineRefused = try tryWrite(s.target, "DELETE FROM \(q(layout.linesTable)) WHERE batch = 1")
                #expect(lineRefused?.hasPrefix(rolledBackRefusal(s, table: layout.linesTable)) == true, "\(lineRefused ?? "accepted")")
                #expect(try tryWrite(s.source, "INSERT INTO items(id, owner, n) VALUES (9999999, 'late', 1)") == nil)
                print("rollback after cutover (\(layout)): \(outcome.acknowledged) writes acknowledged, \(outcome.refused) refused, \(j.int("changes_replayed_back") ?? -1) replayed back")
            }
        }

        /// Same file, with the log shipped by `tidemark capture run` in its
        /// own process (the migrator then only reads the log): reverse
        /// capture shares the source's outbox, so the shipper keeps moving
        /// the target's changes after the switch into the log and deleting
        /// them from the outbox. Rollback must still carry every one back.
        @Test(.timeLimit(.minutes(10)))
        func sameFileWithASeparateShipperLosesNoTargetWrite() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .sameFileIdentity, items: 300, batches: 100)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let install = try await tidemark(["capture", "install", "--source", s.source, "--log", s.log, "--tables", "items,lines"])
                try #require(install.status == 0, "\(install.summary)")
                let shipper = reaper.add(try Child.tidemark(["capture", "run", "--source", s.source, "--log", s.log, "--interval-ms", "5"]))
                try shipper.start()
                // The shipper must own the log before the migrator looks (else the migrator ships).
                let pid = shipper.processIdentifier
                let lockDeadline = ContinuousClock.now + .seconds(20)
                while (try? String(contentsOfFile: s.log + "/LOCK", encoding: .utf8))?.contains("\(pid)") != true {
                    try #require(shipper.isRunning && ContinuousClock.now < lockDeadline, "capture run never took the log: \(shipper.stderrText)")
                    try await pause(milliseconds: 10)
                }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)
                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                try expectCutoverJSON(cut)
                let migrated = try await migrate.waitForOwnExit(timeoutSeconds: 20)
                #expect(migrated?.status == 0, "\(migrated?.summary ?? "still running")")

                // The application writes to the new tables; the shipper ships on.
                var model = s.initialModel()
                let t = try Connection(path: s.target, mode: .readWrite)
                for id in Int64(8_000_000)..<8_000_040 {
                    try t.prepare("INSERT INTO items_new(id, owner, n, note) VALUES (?, 'app', 1, NULL)").execute([.integer(id)])
                    model.apply(.putItem(id, ItemRow(owner: "app", n: 1, note: nil)))
                }
                try t.execute("UPDATE items_new SET n = 77 WHERE id = 5; DELETE FROM lines_new WHERE batch = 7")
                model.items[5]!.n = 77
                model.lines[LineKey(batch: 7, line: 1)] = nil
                model.lines[LineKey(batch: 7, line: 2)] = nil
                try t.close()
                try await pause(milliseconds: 300)
                let stopped = try await shipper.terminate()
                #expect(stopped.status == 0, "capture run on SIGTERM: \(stopped.summary)")

                let rollback = try await tidemark(["rollback", "--json"] + s.planArguments)
                try #require(rollback.status == 0, "rollback: \(rollback.summary)")
                #expect(try rollback.json().int("changes_replayed_back") == 43, "\(rollback.stdoutText)")
                try s.expectSource(equals: model, "after rollback")
            }
        }

        /// A computed column without a declared inverse: rollback after the
        /// cutover refuses with one clear line and changes nothing.
        @Test(.timeLimit(.minutes(10)))
        func afterCutoverAComputedColumnWithoutInverseIsRefused() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .computedWithoutInverse, items: 300, batches: 100)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "\(migrated.summary)")
                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                let lsn = try expectCutoverJSON(cut)
                let t = try Connection(path: s.target, mode: .readWrite)
                try t.execute("""
                    INSERT INTO items2(id, owner, n2, note) VALUES (7000000, 'app', 14, 'after the switch');
                    UPDATE items2 SET n2 = 0 WHERE id = 3;
                    DELETE FROM items2 WHERE id = 4;
                    DELETE FROM lines WHERE batch = 2 AND line = 1;
                    """)
                try t.close()
                func snapshot() throws -> [[[Value]]] {
                    [try s.sourceItems(), try s.sourceLines(), try s.targetItems(), try s.targetLines(),
                     try rows(s.source, "SELECT type, name, sql FROM sqlite_schema ORDER BY name"),
                     try rows(s.target, "SELECT type, name, sql FROM sqlite_schema ORDER BY name"),
                     try rows(s.target, "SELECT * FROM _tidemark_migration"),
                     try rows(s.target, "SELECT count(*), max(seq) FROM _tidemark_outbox")]
                }
                let before = try snapshot()

                let rollback = try await tidemark(["rollback"] + s.planArguments)
                #expect(rollback.status == 1 && rollback.reason == .exit, "\(rollback.summary)")
                #expect(rollback.stdout.isEmpty)
                #expect(rollback.stderrLines.count == 1, "\(rollback.stderr)")
                #expect(rollback.stderr.hasPrefix("tidemark: ") && rollback.stderr.contains("items2.n2") && rollback.stderr.contains("inverse:"),
                        "the refusal should name the computed column and what to declare: \(rollback.stderr)")

                #expect(try snapshot() == before, "a refused rollback changed something")
                try expectSwitched(s, lsn: lsn)
                let route = try await tidemark(["route", "--json"] + s.planArguments)
                #expect(try route.json().string("authority") == "target")
                #expect(try tryWrite(s.target, "INSERT INTO items2(id, owner, n2) VALUES (7000001, 'app', 2)") == nil, "the target must stay writable")
            }
        }
    }
}
