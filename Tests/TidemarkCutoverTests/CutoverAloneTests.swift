import TidemarkTestSupport
import Foundation
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

extension CutoverTests {
    /// `tidemark cutover` with no migrator running: it ships and catches up
    /// by itself (after an earlier `tidemark migrate`, or from nothing at
    /// all), while writers keep writing.
    @Suite struct Alone {
        struct Case: Sendable, CustomStringConvertible {
            var layout: Layout
            /// Run `tidemark migrate` (without --follow) first; else the cutover copies everything itself.
            var migratedFirst: Bool
            var description: String { "\(layout), \(migratedFirst ? "after an earlier migrate" : "from nothing")" }
        }

        @Test(.timeLimit(.minutes(10)), arguments: [
            Case(layout: .reshaped, migratedFirst: true),
            Case(layout: .sameFile, migratedFirst: true),
            Case(layout: .reshaped, migratedFirst: false),
        ])
        func cutoverCatchesUpByItself(_ c: Case) async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: c.layout)
                let crowd = try await Crowd.start(s, python: 1, plain: 1, routing: 1)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                if c.migratedFirst {
                    let migrated = try await tidemark(["migrate"] + s.planArguments)
                    try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                    // Changes pile up in the outbox, unshipped: the cutover must ship them.
                    try await pause(milliseconds: 600)
                    #expect(try Capture.status(connection: Connection(path: s.source, mode: .readOnly))?.backlog ?? 0 > 0,
                            "the writers left no backlog for the cutover to catch up on")
                } else if !c.layout.sameFile {
                    #expect(!FileManager.default.fileExists(atPath: s.target), "nothing was migrated yet")
                }

                let cut = try await tidemark(["cutover", "--skip-verify", "--json", "--max-lag-ms", "1000"] + s.planArguments)
                let lsn = try expectCutoverJSON(cut)
                #expect(try cut.json().int("drained") != nil)
                try await pause(milliseconds: 600)
                let reports = try await crowd.finish()

                let outcome = checkWriters(reports, s, expectSwitch: true)
                try s.expectTarget(equals: outcome.all, "after cutover")
                try s.expectSource(equals: outcome.onSource, "after cutover")
                try expectSwitched(s, lsn: lsn)

                // Running it again changes nothing and says so.
                let again = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                #expect(try expectCutoverJSON(again, alreadyDone: true) == lsn)
            }
        }
    }

    /// `--timeout` reached before the lag is small: one clear line, exit 1,
    /// and the source stays authoritative and writable.
    @Suite struct GivingUp {
        @Test(.timeLimit(.minutes(10)))
        func aTimeoutChangesNothing() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 3_000, batches: 1_000)
                let f = try await tidemark(["cutover", "--skip-verify", "--timeout", "0", "--max-lag-ms", "0"] + s.planArguments)
                #expect(f.status == 1 && f.reason == .exit, "\(f.summary)")
                #expect(f.stderrLines.count == 1 && f.stderr.contains("nothing was changed") && f.stderr.contains("--max-lag-ms"), "\(f.stderr)")
                #expect(try !expectNeverHalf(s, "after a timeout"))
                #expect(try s.journal() == nil)
                #expect(try tryWrite(s.source, "INSERT INTO items(id, owner, n) VALUES (9000000, 'later', 1)") == nil)
                // The migration simply goes on from there.
                let retry = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                try expectCutoverJSON(retry)
                var model = s.initialModel()
                model.apply(.putItem(9_000_000, ItemRow(owner: "later", n: 1, note: nil)))
                try s.expectTarget(equals: model, "after the retry")
            }
        }
    }

    /// `tidemark route --json` before and after the switch.
    @Suite struct Routing {
        @Test(.timeLimit(.minutes(10)))
        func routeNamesTheAuthoritativeStoreBeforeAndAfterCutover() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 300, batches: 100)

                // Before anything: the source, every table under its own name.
                let fresh = try await tidemark(["route", "--json"] + s.planArguments)
                try #require(fresh.status == 0, "\(fresh.summary)")
                try expectRoute(fresh.json(), authority: "source", database: s.source, tables: ["items": "items", "lines": "lines"], lsn: nil)

                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "\(migrated.summary)")
                let before = try await tidemark(["route", "--json"] + s.planArguments)
                try expectRoute(before.json(), authority: "source", database: s.source, tables: ["items": "items", "lines": "lines"], lsn: nil)
                let text = try await tidemark(["route"] + s.planArguments)
                #expect(text.status == 0 && text.stdoutText.hasPrefix("source: \(s.source)\n"), "\(text.summary)")

                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                let lsn = try expectCutoverJSON(cut)
                let after = try await tidemark(["route", "--json"] + s.planArguments)
                try #require(after.status == 0, "\(after.summary)")
                let j = try after.json()
                try expectRoute(j, authority: "target", database: s.target, tables: ["items": "accounts", "lines": "line_items"], lsn: lsn)
                #expect(j.string("at") == (try cut.json().string("at")), "the route's switch time differs from the cutover's: \(after.stdoutText) vs \(cut.stdoutText)")
                let afterText = try await tidemark(["route"] + s.planArguments)
                #expect(afterText.stdoutText.hasPrefix("target: \(s.target) (since LSN \(lsn))\n"), "\(afterText.summary)")

                // The library says the same.
                let route = try Router(plan: try s.loadPlan()).route()
                #expect(route.authority == .target && route.database == s.target && route.lsn == LSN(UInt64(lsn)))
                #expect(route.table(for: "items") == "accounts" && route.table(for: "lines") == "line_items")
            }
        }

        func expectRoute(_ j: [String: Any], authority: String, database: String, tables: [String: String], lsn: Int64?,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(j.string("authority") == authority, "\(j)", sourceLocation: sourceLocation)
            #expect(j.string("database") == database, "\(j)", sourceLocation: sourceLocation)
            #expect(j["tables"] as? [String: String] == tables, "\(j)", sourceLocation: sourceLocation)
            if let lsn {
                #expect(j.int("lsn") == lsn, "\(j)", sourceLocation: sourceLocation)
                #expect(j.string("at") != nil, "\(j)", sourceLocation: sourceLocation)
            } else {
                #expect(j["lsn"] is NSNull && j["at"] is NSNull, "\(j)", sourceLocation: sourceLocation)
            }
        }
    }
}
