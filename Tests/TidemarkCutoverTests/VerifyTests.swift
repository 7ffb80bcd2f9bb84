import TidemarkTestSupport
import Foundation
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

extension CutoverTests {
    /// `tidemark verify`: finds every kind of injected difference by its
    /// exact key, and says nothing of a correct migration under live load.
    @Suite struct Verify {
        /// A row changed (in value, and in storage class only), added and
        /// deleted directly in the target, in the rowid table and in the
        /// composite-key table: each reported under its exact key, in text
        /// and JSON, exit 1.
        @Test(.timeLimit(.minutes(10)))
        func injectedDifferencesAreReportedByExactKey() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 1_200, batches: 400)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let clean = try await tidemark(["verify", "--chunk-rows", "100"] + s.planArguments)
                try #require(clean.status == 0, "verify before injecting: \(clean.summary)")

                let t = try Connection(path: s.target, mode: .readWrite)
                try t.execute("""
                    UPDATE accounts SET n2 = n2 + 1 WHERE id = 777;
                    UPDATE accounts SET note = CAST(note AS BLOB) WHERE id = 778;
                    INSERT INTO accounts(id, holder, n2, note) VALUES (5000000, 'ghost', 2, NULL);
                    DELETE FROM accounts WHERE id = 11;
                    UPDATE line_items SET qty = qty + 1 WHERE batch = 123 AND line = 2;
                    INSERT INTO line_items(batch, line, qty, sku) VALUES (123, 3, 1, 'ghost');
                    DELETE FROM line_items WHERE batch = 399 AND line = 1;
                    """)
                try t.close()

                let text = try await tidemark(["verify", "--chunk-rows", "100"] + s.planArguments)
                #expect(text.status == 1 && text.reason == .exit, "\(text.summary)")
                let lines = text.stdoutText.split(separator: "\n").map(String.init)
                for expected in [
                    "items → accounts: 1 missing, 1 extra, 2 different",
                    "  missing   11", "  extra     5000000", "  different 777", "  different 778",
                    "lines → line_items: 1 missing, 1 extra, 1 different",
                    "  missing   (399, 1)", "  extra     (123, 3)", "  different (123, 2)",
                    "NOT equal",
                ] {
                    #expect(lines.contains(expected), "verify's report lacks '\(expected)':\n\(text.stdoutText)")
                }
                #expect(lines.count == 10, "unexpected lines in:\n\(text.stdoutText)")

                let json = try await tidemark(["verify", "--json", "--chunk-rows", "100"] + s.planArguments)
                #expect(json.status == 1 && json.reason == .exit, "\(json.summary)")
                let j = try json.json()
                #expect(j.bool("equal") == false)
                let tables = try #require(j["tables"] as? [[String: Any]])
                let items = try #require(tables.first { $0.string("source") == "items" })
                let lineTable = try #require(tables.first { $0.string("source") == "lines" })
                // Keys are objects of the source key's columns (`{"id":11}`), as in log records.
                func keys(_ t: [String: Any], _ kind: String) -> [[Int64]] {
                    let columns = t.string("source") == "lines" ? ["batch", "line"] : ["id"]
                    return (t[kind] as? [[String: NSNumber]] ?? []).map { key in
                        key.count == columns.count ? columns.map { key[$0]?.int64Value ?? -1 } : []
                    }
                }
                #expect(items.string("target") == "accounts" && lineTable.string("target") == "line_items")
                #expect(keys(items, "missing") == [[11]] && items.int("missing_count") == 1, "\(items)")
                #expect(keys(items, "extra") == [[5_000_000]] && items.int("extra_count") == 1, "\(items)")
                #expect(keys(items, "different") == [[777], [778]] && items.int("different_count") == 2, "\(items)")
                #expect(keys(lineTable, "missing") == [[399, 1]] && lineTable.int("missing_count") == 1, "\(lineTable)")
                #expect(keys(lineTable, "extra") == [[123, 3]] && lineTable.int("extra_count") == 1, "\(lineTable)")
                #expect(keys(lineTable, "different") == [[123, 2]] && lineTable.int("different_count") == 1, "\(lineTable)")
                #expect(keys(items, "unsettled").isEmpty && keys(lineTable, "unsettled").isEmpty)
                #expect(items.int("rows") == 1_200 && lineTable.int("rows") == 800, "rows counts the source's rows")
            }
        }

        /// With `tidemark migrate --follow` replaying and writers writing,
        /// verify reports equality (exit 0) every time; once the writers stop
        /// and the migrator catches up, the target holds exactly what they wrote.
        @Test(.timeLimit(.minutes(10)))
        func silentOnACorrectMigrationUnderLoad() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 3_000, batches: 1_000)
                let reaper = Reaper()
                defer { reaper.reapAll() }
                let crowd = try await Crowd.start(s, python: 1, plain: 2, routing: 0, ratePerSecond: 100)
                defer { crowd.python.stopAndReap(); crowd.swift.stop.store(true, ordering: .relaxed) }
                let migrate = reaper.add(try Child.tidemark(["migrate", "--follow"] + s.planArguments))
                try migrate.start()
                try await s.waitUntilCaughtUp(child: migrate)

                var verifyMillis: [Int] = []
                for (round, chunk) in ["250", "10000", "100", "1000"].enumerated() {
                    try await pause(milliseconds: 200)
                    let started = ContinuousClock.now
                    let v = try await tidemark(["verify", "--json", "--chunk-rows", chunk] + s.planArguments)
                    verifyMillis.append(Int((ContinuousClock.now - started).millis))
                    #expect(v.status == 0, "verify round \(round) under load: \(v.summary)")
                    if v.status == 0 {
                        let j = try v.json()
                        #expect(j.bool("equal") == true)
                        for t in j["tables"] as? [[String: Any]] ?? [] {
                            #expect((t["unsettled"] as? [Any])?.isEmpty == true, "\(t)")
                        }
                    }
                }
                let reports = try await crowd.finish()
                let outcome = checkWriters(reports, s, expectSwitch: false)
                #expect(outcome.refused == 0)
                print("verify under load: \(outcome.acknowledged) writes acknowledged; verify runs took \(verifyMillis) ms")

                let stopped = try await migrate.terminate()
                #expect(stopped.status == 143 && stopped.reason == .exit, "migrate --follow on SIGTERM (stops at a safe point, exit 143): \(stopped.summary)")
                let caughtUp = try await tidemark(["migrate"] + s.planArguments)
                #expect(caughtUp.status == 0, "\(caughtUp.summary)")
                try s.expectTarget(equals: outcome.all, "after the load")
                try s.expectSource(equals: outcome.all, "after the load")
                let quiet = try await tidemark(["verify"] + s.planArguments)
                #expect(quiet.status == 0 && quiet.stdoutText.contains("equal: "), "\(quiet.summary)")
            }
        }
    }
}
