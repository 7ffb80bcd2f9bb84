import Foundation
import Testing
import TidemarkTestSupport

/// The built `tidemark-bench`, beside the built `tidemark`.
func benchExecutable() throws -> String {
    let path = URL(fileURLWithPath: try tidemarkExecutable()).deletingLastPathComponent().appendingPathComponent("tidemark-bench").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw ProcessFailure("no tidemark-bench beside the tidemark executable (\(path)); build it with `swift build --product tidemark-bench`")
    }
    return path
}

@Suite struct BenchReportTests {
    /// The design's performance table ("What good looks like"), each row's path
    /// as written there, with the report's goal names that measure it.
    static let designTable: [(String, [String])] = [
        ("log append (encode+compress+write)", ["log append (encode+compress+write) vs zstd -3"]),
        ("log read (decode)", ["log read (decode every record) vs zstd -dc"]),
        ("capture overhead, autocommit writes", ["capture, autocommit writes, vs uncaptured"]),
        ("capture overhead, bulk insert", ["capture, bulk transaction of one-row INSERTs, vs uncaptured"]),
        ("snapshot copy SQLite→SQLite", ["snapshot copy SQLite→SQLite vs INSERT … SELECT over ATTACH",
                                         "snapshot copy, using both cores, vs INSERT … SELECT"]),
        ("replay into SQLite", ["replay into SQLite vs sqlite3changeset_apply, same page cache"]),
        ("verify", ["verify vs sqldiff"]),
        ("copy SQLite→PostgreSQL", ["copy SQLite→PostgreSQL vs pgloader", "copy SQLite→PostgreSQL vs sqlite3 -csv | psql COPY",
                                    "copy SQLite→PostgreSQL, values changed"]),
        ("replay into PostgreSQL", ["replay into PostgreSQL"]),
        ("online table rebuild", ["online table rebuild, writers' max wait", "online table rebuild, total vs the 12-step rebuild"]),
        ("audit query (one key, a 5-min window)", ["audit query, history of one key vs zstd -dc | grep",
                                                   "audit query, a 5-min window vs zstd -dc | grep"]),
        ("memory", ["memory, reading any log (tidemark history/tail/as-of peak RSS)",
                    "memory, peak RSS of a migration at the largest scaling size",
                    "memory flat in table size (peak RSS, largest ÷ smallest size)"]),
        ("cutover", ["cutover under 2,000 writes/s, writer pause p99"]),
    ]

    /// The speed work's table ("Where it stands") and its Scaling bullet.
    static let issueTable: [(String, [String])] = [
        ("log read (decode every record) vs `zstd -dc` MB/s", ["log read (decode every record) vs zstd -dc"]),
        ("replay vs `sqlite3changeset_apply` of the same changes, same page cache", ["replay into SQLite vs sqlite3changeset_apply, same page cache"]),
        ("snapshot copy vs one `INSERT … SELECT` over ATTACH", ["snapshot copy SQLite→SQLite vs INSERT … SELECT over ATTACH",
                                                              "snapshot copy, using both cores, vs INSERT … SELECT"]),
        ("verify vs `sqldiff`", ["verify vs sqldiff"]),
        ("capture, one bulk transaction of one-row INSERTs, vs uncaptured", ["capture, bulk transaction of one-row INSERTs, vs uncaptured"]),
        ("capture, autocommit writes, vs uncaptured", ["capture, autocommit writes, vs uncaptured"]),
        ("shipper", ["shipper, outbox → log (durability commit)"]),
        ("peak RSS of a migration", ["memory, peak RSS of a migration at the largest scaling size",
                                     "memory flat in table size (peak RSS, largest ÷ smallest size)"]),
        ("Scaling: cost must grow linearly", ["copy cost linear in table size (time per row, largest ÷ smallest)"]),
    ]

    /// `all --list-goals --json`: no benchmark runs.
    static func listedGoals() throws -> [[String: Any]] {
        let out = try runProcess(try benchExecutable(), ["all", "--list-goals", "--json"], timeoutSeconds: 60)
        _ = try out.succeeded("tidemark-bench all --list-goals")
        return try #require(out.json()["goals"] as? [[String: Any]])
    }

    @Test func theReportHasARowForEveryGoalOfBothTables() throws {
        let goals = try Self.listedGoals()
        var sourceOf: [String: String] = [:]
        for g in goals {
            let name = try #require(g["goal_name"] as? String)
            #expect(sourceOf[name] == nil, "goal listed twice: \(name)")
            sourceOf[name] = try #require(g["source"] as? String)
            #expect(g["goal"] is String, "goal \(name) has no goal value")
        }
        var claimed = Set<String>()
        for (table, rows, source) in [("design", Self.designTable, "design"), ("speed", Self.issueTable, "speed")] {
            for (path, names) in rows {
                for name in names {
                    let s = sourceOf[name]
                    #expect(s != nil, "\(table)'s row '\(path)' has no report row '\(name)'")
                    #expect(s?.contains(source) ?? false, "report row '\(name)' does not say it is written in \(source) (says \(s ?? "nothing"))")
                    claimed.insert(name)
                }
            }
        }
        // No report row that neither table asks for.
        #expect(Set(sourceOf.keys).subtracting(claimed).isEmpty, "report rows no table asks for: \(Set(sourceOf.keys).subtracting(claimed).sorted())")
    }

    /// A tiny real run of two parts, one of them repeated per process: the
    /// JSON parses and every row of those parts carries its measured values.
    @Test func aTinyRunPrintsJSONWithEveryRowMeasured() throws {
        try withTemporaryDirectory("bench-all") { dir in
            let out = try runProcess(try benchExecutable(),
                                     ["all", "--tiny", "--runs", "2", "--only", "capture,transform", "--json", "--scratch", dir],
                                     timeoutSeconds: 300)
            _ = try out.succeeded("tidemark-bench all --tiny")
            let report = try out.json()
            #expect(report["benchmark"] as? String == "all")
            #expect(report["runs"] as? Int == 2)
            let rows = try #require(report["rows"] as? [[String: Any]])
            let expected = try Self.listedGoals().filter { ["capture", "transform"].contains($0["part"] as? String) }
            #expect(rows.map { $0["goal_name"] as? String } == expected.map { $0["goal_name"] as? String })
            #expect(rows.count == 5)
            for row in rows {
                let name = row["goal_name"] as? String ?? "?"
                #expect(row["error"] is NSNull, "\(name): \(row["error"] ?? "")")
                #expect(row["tidemark"] is Double || row["tidemark"] is Int, "\(name) has no tidemark value")
                #expect(row["met"] is Bool, "\(name) has no met value")
                // capture measures its medians inside one process; transform once per process.
                #expect(row["measured_runs"] as? Int == (row["part"] as? String == "transform" ? 2 : 1), "\(name): \(row["measured_runs"] ?? "")")
            }
            let total = try #require(rows.first { ($0["goal_name"] as? String)?.hasPrefix("online table rebuild, total") ?? false })
            #expect(total["ratio"] is Double, "the rebuild row has no ratio")
        }
    }
}
