#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

/// `tidemark-bench all`: every speed goal (the design's performance table
/// and the speed work's table, `GoalCatalog`) in one report. Each benchmark runs as its own process
/// (`tidemark-bench <part> --json`, so each has its own peak RSS and a crash
/// in one leaves the others' rows), and the catalog (``GoalCatalog``) reads
/// each goal's number from that output.
struct AllBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Every speed goal with its ratio, median of --runs runs, and whether it is met.",
        discussion: """
        Runs log, capture, migrate, migrate --sizes (scaling), cutover, postgres and transform, each as its own process \
        with --json, and prints one row per goal. --quick uses small sizes (a smoke run of a few minutes; \
        ratios are indicative only, the goals are judged on the full sizes). Progress goes to standard error.
        """
    )

    /// The workload sizes of a report.
    enum Size: String {
        case full, quick, tiny

        var defaultScalingSizes: [Int] {
            switch self {
            case .full: [100_000, 1_000_000, 10_000_000]
            case .quick: [20_000, 200_000]
            case .tiny: [2_000, 4_000]
            }
        }
    }

    @Option(help: "Measured runs of each path; every row is the median (at least 5 for the goals).")
    var runs = 5

    @Flag(help: "Small sizes: a smoke run that finishes in a few minutes.")
    var quick = false

    @Flag(help: ArgumentHelp("Smallest sizes, for the tests (seconds; the numbers mean nothing).", visibility: .hidden))
    var tiny = false

    @Option(help: "Only these parts, comma-separated: \(BenchPart.allCases.map(\.rawValue).joined(separator: ",")).")
    var only: PartList?

    @Option(help: "Table sizes of the scaling part (default 100k,1M,10M; --quick 20k,200k).")
    var sizes: ScalingSizes?

    @Flag(help: "List the goals and the benchmark that measures each, without running anything.")
    var listGoals = false

    @OptionGroup var common: BenchCommonOptions

    struct PartList: ExpressibleByArgument {
        var parts: [BenchPart]
        init?(argument: String) {
            var parts: [BenchPart] = []
            for name in argument.split(separator: ",") {
                guard let p = BenchPart(rawValue: name.trimmingSpaces) else { return nil }
                if !parts.contains(p) { parts.append(p) }
            }
            guard !parts.isEmpty else { return nil }
            self.parts = parts
        }
    }

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard !(quick && tiny) else { throw ValidationError("--quick and --tiny exclude each other") }
    }

    var size: Size { tiny ? .tiny : quick ? .quick : .full }

    /// The report's one row per goal.
    struct Row {
        var spec: GoalSpec
        var runs: [Measured] = []
        var error: String?

        /// Medians over the runs of the part's process (one run: its own medians).
        var tidemark: Double? { runs.isEmpty ? nil : Samples(runs.map(\.tidemark)).median }
        var baseline: Double? {
            let b = runs.compactMap(\.baseline).filter(\.isFinite)
            return b.count == runs.count && !b.isEmpty ? Samples(b).median : nil
        }
        /// The median of the per-run ratios (one run: tidemark ÷ baseline).
        var ratio: Double? {
            let r = runs.compactMap { m in m.baseline.map { m.tidemark / $0 } }.filter(\.isFinite)
            return r.count == runs.count && !r.isEmpty ? Samples(r).median : nil
        }
        var met: Bool? {
            guard let t = tidemark else { return nil }
            switch spec.goal {
            case .atLeastTimesBaseline(let f): return ratio.map { $0 >= f }
            case .atMostTimesBaseline(let f): return ratio.map { $0 <= f }
            case .atLeast(let x): return t >= x
            case .below(let x): return t < x
            case .atMost(let x): return t <= x
            }
        }
        var metText: String {
            // The part's error itself is printed once, under the table.
            if error != nil { return "not measured: \(spec.part.rawValue) failed" }
            switch met {
            case .some(true): return "yes"
            case .some(false): return "NO"
            case .none: return "not measured: no such row in the benchmark's output"
            }
        }

        var json: JSON {
            .object([
                ("goal_name", .string(spec.name)), ("source", .string(spec.source.rawValue)), ("part", .string(spec.part.rawValue)),
                ("unit", .string(spec.unit)),
                ("tidemark", tidemark.map(JSON.number) ?? .null), ("baseline", baseline.map(JSON.number) ?? .null),
                ("ratio", ratio.map(JSON.number) ?? .null), ("goal", spec.goal.goal.jsonText.map(JSON.string) ?? .null),
                ("met", met.map(JSON.bool) ?? .null), ("measured_runs", .int(runs.count)),
                ("error", error.map(JSON.string) ?? .null),
                ("runs_tidemark", .array(runs.map { JSON.number($0.tidemark) })),
                ("runs_baseline", .array(runs.map { $0.baseline.map(JSON.number) ?? JSON.null })),
            ])
        }
    }

    /// What one part's processes did.
    struct PartRun {
        var part: BenchPart
        var arguments: [String]
        var outputs: [JSONValue] = []
        var seconds = 0.0
        var error: String?
    }

    func run() throws {
        let goals = GoalCatalog.goals.filter { only?.parts.contains($0.part) ?? true }
        if listGoals {
            if common.json {
                print(JSON.object([("goals", .array(goals.map { g -> JSON in
                    JSON.object([("goal_name", .string(g.name)), ("source", .string(g.source.rawValue)), ("part", .string(g.part.rawValue)),
                             ("unit", .string(g.unit)), ("goal", g.goal.goal.jsonText.map(JSON.string) ?? .null)])
                }))]).text)
            } else {
                print(renderTable(header: ["goal", "written in", "benchmark", "goal"],
                                  rows: goals.map { [$0.name.replacingPipes, $0.source.rawValue, $0.part.rawValue, $0.goal.goal.text(unit: $0.unit)] }))
            }
            return
        }
        let exe = try Self.ownExecutable()
        let dir = try ScratchDirectory(in: scratchParent(common.scratch), name: "all")
        defer { if !common.keep { try? dir.remove() } }
        let parts = BenchPart.allCases.filter { p in goals.contains { $0.part == p } }
        var partRuns: [PartRun] = []
        let started = ContinuousClock.now
        for part in parts {
            var args = part.arguments(runs: runs, size: size, sizes: sizes?.rows) + ["--json"]
            if let s = common.scratch { args += ["--scratch", s] }
            var pr = PartRun(part: part, arguments: args)
            let repeats = part.repeats(runs: runs)
            for k in 1...repeats {
                progress("all: \(part.rawValue)\(repeats > 1 ? " (process \(k)/\(repeats))" : ""): tidemark-bench \(args.joined(separator: " "))")
                let out = dir.file("\(part.rawValue)-\(k).json")
                do {
                    let t = try ExternalCommand([exe] + args, output: .file(out)).run()
                    pr.seconds += t.wallSeconds
                    guard let text = readSmallFile(out) else { throw BenchmarkError("cannot read \(out)") }
                    // A benchmark printing two parts prints two objects, one a line.
                    for line in text.split(separator: "\n") where !line.allSatisfy({ $0 == " " }) {
                        pr.outputs.append(try JSONValue.parse(String(line)))
                    }
                } catch {
                    pr.error = "\(error)"
                    progress("all: \(part.rawValue) failed: \(error)")
                    break
                }
            }
            partRuns.append(pr)
        }
        let totalSeconds = Stopwatch.seconds(ContinuousClock.now - started)

        var rows: [Row] = []
        for spec in goals {
            var row = Row(spec: spec)
            guard let pr = partRuns.first(where: { $0.part == spec.part }) else { continue }
            if let e = pr.error { row.error = e }
            // One process run is one sample; a part printing several objects
            // (one a line) is searched object by object.
            if row.error == nil {
                for output in pr.outputs {
                    if let m = spec.extract(output) { row.runs.append(m) }
                }
            }
            rows.append(row)
        }
        let allMet = rows.allSatisfy { $0.met == true }
        // The goals are judged at full sizes, on medians of at least 5 runs,
        // with the scaling part reaching 10M rows.
        let largestScaling = parts.contains(.scaling) ? (sizes?.rows ?? size.defaultScalingSizes).max() ?? 0 : 10_000_000
        let smallerThanGoals = size != .full || runs < 5 || largestScaling < 10_000_000

        if common.json {
            print(JSON.object([
                ("benchmark", .string("all")), ("size", .string(size.rawValue)), ("runs", .int(runs)),
                ("seconds", .number(totalSeconds)),
                ("parts", .array(partRuns.map { p -> JSON in
                    JSON.object([("part", .string(p.part.rawValue)), ("arguments", .array(p.arguments.map(JSON.string))),
                             ("processes", .int(p.outputs.count)), ("seconds", .number(p.seconds)), ("error", p.error.map(JSON.string) ?? .null)])
                })),
                ("all_goals_met", .bool(allMet)), ("smaller_than_goals", .bool(smallerThanGoals)),
                ("rows", .array(rows.map(\.json))),
            ]).text)
        } else {
            var lines: [String] = []
            lines.append("tidemark-bench all (\(size.rawValue) sizes): every speed goal, median of \(runs) run\(runs == 1 ? "" : "s"); \(formatNumber(totalSeconds)) s")
            if size != .full { lines.append("note: \(size.rawValue) sizes are a smoke run; the goals are judged on the full sizes") }
            if runs < 5 { lines.append("note: the goals are judged on the median of at least 5 runs; this run has \(runs)") }
            if largestScaling < 10_000_000 { lines.append("note: the scaling goals are judged up to 10M rows; this run's largest size is \(largestScaling)") }
            lines.append("")
            let cells = rows.map { r -> [String] in
                let unit = r.spec.unit == "×" ? "×" : " " + r.spec.unit
                // A goal name may hold a shell pipe: escaped, as a Markdown table cell.
                return [r.spec.name.replacingPipes, r.spec.source.rawValue,
                        r.tidemark.map { formatNumber($0) + unit } ?? "—",
                        r.baseline.map { formatNumber($0) + unit } ?? "—",
                        r.ratio.map { formatFixed($0, decimals: 2) + "×" } ?? "—",
                        r.spec.goal.goal.text(unit: r.spec.unit), r.metText]
            }
            lines.append(renderTable(header: ["goal", "in", "tidemark", "baseline", "ratio", "goal", "met"], rows: cells, rightAligned: [2, 3, 4]))
            lines.append("")
            lines.append("baselines and sizes: the part's own report (tidemark-bench <part> --help); per part:")
            for p in partRuns {
                lines.append("  \(p.part.rawValue.padding(to: 10)) \(formatFixed(p.seconds, decimals: 1)) s: tidemark-bench \(p.arguments.joined(separator: " "))"
                             + (p.error.map { " — FAILED: \($0)" } ?? ""))
            }
            lines.append("met: \(rows.filter { $0.met == true }.count) of \(rows.count) goals")
            print(lines.joined(separator: "\n"))
            if common.keep { print("scratch files kept in \(dir.path)") }
        }
        if partRuns.contains(where: { $0.error != nil }) || (common.check && (!allMet || smallerThanGoals)) { throw ExitCode(1) }
    }

    /// This program's own path, to run each part as a child process.
    static func ownExecutable() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw BenchmarkError("cannot find this program's path (/proc/self/exe): \(String(cString: strerror(errno)))") }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension String {
    /// `|` escaped for a Markdown table cell.
    var replacingPipes: String { split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|") }
}
