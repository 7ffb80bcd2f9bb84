// Every goal Tidemark's speed is judged on, in one list: the rows of the
// design's performance table ("What good looks like") and of the speed work's table, each
// naming the benchmark that measures it and how to find its number in that
// benchmark's `--json` output. `tidemark-bench all` prints one row per entry.

/// A benchmark subcommand `tidemark-bench all` runs as its own process.
enum BenchPart: String, CaseIterable, Sendable {
    case log, capture, migrate, scaling, cutover, postgres, transform

    /// The subcommand's arguments for one report run.
    func arguments(runs: Int, size: AllBenchmark.Size, sizes: [Int]?) -> [String] {
        let n = String(runs)
        let sizeList = (sizes ?? size.defaultScalingSizes).map(String.init).joined(separator: ",")
        switch (self, size) {
        case (.log, .full): return ["log", "--runs", n]
        case (.log, .quick): return ["log", "--runs", n, "--records", "100000", "--commit-runs", "0", "--audit-records", "300000",
                                     "--as-of-rows", "100000", "--as-of-changes", "10000"]
        case (.log, .tiny): return ["log", "--runs", n, "--records", "2000", "--batch-size", "500", "--commit-runs", "0",
                                    "--audit-records", "2000", "--as-of-rows", "500", "--as-of-changes", "100"]
        case (.capture, .full): return ["capture", "--runs", n, "--rounds", String(max(runs, 10))]
        case (.capture, .quick): return ["capture", "--runs", n, "--rounds", String(max(runs, 5)), "--bulk-rows", "50000", "--autocommit-rows", "500"]
        case (.capture, .tiny): return ["capture", "--runs", n, "--rounds", n, "--bulk-rows", "2000", "--autocommit-rows", String(max(runs, 20))]
        case (.migrate, .full): return ["migrate", "--only", "main", "--runs", n, "--lag-runs", "0"]
        case (.migrate, .quick): return ["migrate", "--only", "main", "--runs", n, "--lag-runs", "0", "--rows", "50000", "--changes", "50000"]
        case (.migrate, .tiny): return ["migrate", "--only", "main", "--runs", n, "--lag-runs", "0", "--rows", "2000", "--changes", "2000"]
        case (.scaling, _): return ["migrate", "--only", "scaling", "--runs", n, "--sizes", sizeList]
        case (.cutover, .full): return ["cutover", "--runs", n, "--cutovers", String(max(runs, 10))]
        case (.cutover, .quick): return ["cutover", "--runs", n, "--cutovers", String(max(runs, 3)), "--rows", "20000", "--steady-seconds", "0.5"]
        case (.cutover, .tiny): return ["cutover", "--runs", n, "--cutovers", "1", "--rows", "2000", "--steady-seconds", "0.2"]
        case (.postgres, .full): return ["postgres", "--runs", n]
        case (.postgres, .quick): return ["postgres", "--runs", n, "--rows", "20000"]
        case (.postgres, .tiny): return ["postgres", "--runs", n, "--rows", "2000"]
        case (.transform, .full): return ["transform"]
        case (.transform, .quick): return ["transform", "--rows", "50000"]
        case (.transform, .tiny): return ["transform", "--rows", "2000"]
        }
    }

    /// How many times the process is run: benchmarks with their own
    /// `--runs` take the median inside; transform measures once per process.
    func repeats(runs: Int) -> Int { self == .transform ? runs : 1 }
}

/// Where a goal is written down.
enum GoalSource: String, Sendable {
    case design = "design"
    case issue = "speed"
    case both = "design, speed"
}

/// One measured value of a goal: Tidemark's number and its baseline's.
struct Measured {
    var tidemark: Double
    var baseline: Double?
}

/// One goal: its name as the tables word it, where it is written, the
/// benchmark that measures it and how to read the number from its JSON.
struct GoalSpec: Sendable {
    var name: String
    var source: GoalSource
    var part: BenchPart
    var unit: String
    var goal: GoalValue
    var extract: @Sendable (JSONValue) -> Measured?
}

/// `Goal` as a Sendable value for the catalog (the same cases).
enum GoalValue: Sendable {
    case atLeastTimesBaseline(Double), atLeast(Double), below(Double), atMost(Double), atMostTimesBaseline(Double)

    var goal: Goal {
        switch self {
        case .atLeastTimesBaseline(let f): .atLeastTimesBaseline(f)
        case .atLeast(let x): .atLeast(x)
        case .below(let x): .below(x)
        case .atMost(let x): .atMost(x)
        case .atMostTimesBaseline(let f): .atMostTimesBaseline(f)
        }
    }
}

/// The first row of a benchmark's JSON whose path starts with `prefix`
/// (and contains `containing`) in `unit`.
func benchRow(_ json: JSONValue, prefix: String, containing: String? = nil, unit: String) -> Measured? {
    for o in json.allObjects {
        guard let path = o["path"]?.string, o["unit"]?.string == unit, path.hasPrefix(prefix),
              containing.map({ path.contains($0) }) ?? true,
              let t = o["tidemark"]?.number, t.isFinite else { continue }
        return Measured(tidemark: t, baseline: o["baseline"]?.number)
    }
    return nil
}

/// The transform benchmark's tool entry whose name starts with `prefix`.
func transformTool(_ json: JSONValue, _ prefix: String) -> JSONValue? {
    json["tools"]?.array?.first { $0["tool"]?.string?.hasPrefix(prefix) ?? false }
}

enum GoalCatalog {
    static let goals: [GoalSpec] = [
        GoalSpec(name: "log append (encode+compress+write) vs zstd -3", source: .design, part: .log, unit: "MB/s",
                 goal: .atLeastTimesBaseline(0.5)) { benchRow($0, prefix: "append, durability none", unit: "MB/s") },
        GoalSpec(name: "log read (decode every record) vs zstd -dc", source: .both, part: .log, unit: "MB/s",
                 goal: .atLeastTimesBaseline(0.7)) { benchRow($0, prefix: "read, every record decoded", unit: "MB/s") },
        GoalSpec(name: "capture, autocommit writes, vs uncaptured", source: .both, part: .capture, unit: "rows/s",
                 goal: .atLeastTimesBaseline(0.9)) { benchRow($0, prefix: "autocommit inserts", unit: "rows/s") },
        GoalSpec(name: "capture, bulk transaction of one-row INSERTs, vs uncaptured", source: .both, part: .capture, unit: "rows/s",
                 goal: .atLeastTimesBaseline(0.5)) { benchRow($0, prefix: "bulk insert, one transaction", unit: "rows/s") },
        GoalSpec(name: "shipper, outbox → log (durability commit)", source: .issue, part: .capture, unit: "changes/s",
                 goal: .atLeast(500_000)) { benchRow($0, prefix: "shipper, full outbox → log, durability commit", unit: "changes/s") },
        GoalSpec(name: "snapshot copy SQLite→SQLite vs INSERT … SELECT over ATTACH", source: .both, part: .migrate, unit: "rows/s",
                 goal: .atLeastTimesBaseline(0.8)) { benchRow($0, prefix: "snapshot copy, full Migrator run", unit: "rows/s") },
        GoalSpec(name: "snapshot copy, using both cores, vs INSERT … SELECT", source: .both, part: .migrate, unit: "rows/s",
                 goal: .atLeastTimesBaseline(1.0)) { benchRow($0, prefix: "snapshot copy, full Migrator run", unit: "rows/s") },
        GoalSpec(name: "replay into SQLite vs sqlite3changeset_apply, same page cache", source: .both, part: .migrate, unit: "changes/s",
                 goal: .atLeastTimesBaseline(1.2)) { benchRow($0, prefix: "replay of ", unit: "changes/s") },
        GoalSpec(name: "verify vs sqldiff", source: .both, part: .cutover, unit: "rows/s",
                 goal: .atLeastTimesBaseline(1.0)) { benchRow($0, prefix: "verify, quiet migrated pair", unit: "rows/s") },
        GoalSpec(name: "copy SQLite→PostgreSQL vs pgloader", source: .design, part: .postgres, unit: "rows/s",
                 goal: .atLeastTimesBaseline(2)) { benchRow($0, prefix: "copy vs pgloader", unit: "rows/s") },
        GoalSpec(name: "copy SQLite→PostgreSQL vs sqlite3 -csv | psql COPY", source: .design, part: .postgres, unit: "rows/s",
                 goal: .atLeastTimesBaseline(0.7)) { benchRow($0, prefix: "copy vs sqlite3 -csv | psql", unit: "rows/s") },
        GoalSpec(name: "copy SQLite→PostgreSQL, values changed", source: .design, part: .postgres, unit: "values",
                 goal: .atMost(0)) { benchRow($0, prefix: "values changed by the copy (vs psql pipe)", unit: "values") },
        GoalSpec(name: "replay into PostgreSQL", source: .design, part: .postgres, unit: "changes/s",
                 goal: .atLeast(150_000)) { benchRow($0, prefix: "replay of ", containing: "PostgreSQL", unit: "changes/s") },
        GoalSpec(name: "online table rebuild, writers' max wait", source: .design, part: .transform, unit: "ms",
                 goal: .below(100)) { json in
            transformTool(json, "tidemark")?["wait_max_ms"]?.number.map { Measured(tidemark: $0, baseline: nil) }
        },
        GoalSpec(name: "online table rebuild, total vs the 12-step rebuild", source: .design, part: .transform, unit: "s",
                 goal: .atMostTimesBaseline(3)) { json in
            guard let t = transformTool(json, "tidemark")?["seconds"]?.number,
                  let b = transformTool(json, "12-step")?["seconds"]?.number else { return nil }
            return Measured(tidemark: t, baseline: b)
        },
        GoalSpec(name: "audit query, history of one key vs zstd -dc | grep", source: .design, part: .log, unit: "queries/s",
                 goal: .atLeastTimesBaseline(10)) { benchRow($0, prefix: "history of one key", unit: "queries/s") },
        GoalSpec(name: "audit query, a 5-min window vs zstd -dc | grep", source: .design, part: .log, unit: "queries/s",
                 goal: .atLeastTimesBaseline(10)) { benchRow($0, prefix: "", containing: "window", unit: "queries/s") },
        GoalSpec(name: "memory, reading any log (tidemark history/tail/as-of peak RSS)", source: .design, part: .log, unit: "MB",
                 goal: .atMost(64)) { json in
            let peaks = json.allObjects.compactMap { o -> Double? in
                guard o["path"]?.string?.hasPrefix("peak RSS, tidemark ") ?? false else { return nil }
                return o["tidemark"]?.number
            }
            return peaks.max().map { Measured(tidemark: $0, baseline: nil) }
        },
        GoalSpec(name: "memory, peak RSS of a migration at the largest scaling size", source: .both, part: .scaling, unit: "MB",
                 goal: .atMost(64)) { json in
            json.allObjects.last { ($0["path"]?.string?.hasPrefix("scaling: copy of") ?? false) && $0["unit"]?.string == "MB" }
                .flatMap { $0["tidemark"]?.number }.map { Measured(tidemark: $0, baseline: nil) }
        },
        GoalSpec(name: "memory flat in table size (peak RSS, largest ÷ smallest size)", source: .both, part: .scaling, unit: "×",
                 goal: .atMost(MigrateBenchmark.flatFactor)) { benchRow($0, prefix: "scaling: peak RSS, largest", unit: "×") },
        GoalSpec(name: "copy cost linear in table size (time per row, largest ÷ smallest)", source: .issue, part: .scaling, unit: "×",
                 goal: .atMost(MigrateBenchmark.linearFactor)) { benchRow($0, prefix: "scaling: time per row, largest", unit: "×") },
        GoalSpec(name: "cutover under 2,000 writes/s, writer pause p99", source: .design, part: .cutover, unit: "ms",
                 goal: .below(100)) { benchRow($0, prefix: "writer latency in the cutover window, p99", unit: "ms") },
    ]
}
