import ArgumentParser
import TidemarkDemo
import TidemarkSQLite

/// `--sizes 100k,1M,10M`: row counts, each with an optional k or M suffix.
struct ScalingSizes: ExpressibleByArgument {
    var rows: [Int]

    init?(argument: String) {
        var rows: [Int] = []
        for part in argument.split(separator: ",") {
            var text = part.trimmingSpaces.lowercased()
            var scale = 1
            if text.hasSuffix("k") { scale = 1_000; text.removeLast() } else if text.hasSuffix("m") { scale = 1_000_000; text.removeLast() }
            guard let n = Int(text), n >= 1, n <= Int.max / scale, n * scale >= 1_000 else { return nil }
            rows.append(n * scale)
        }
        guard !rows.isEmpty else { return nil }
        self.rows = rows.sorted()
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

extension Substring {
    var trimmingSpaces: String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}

/// The scaling part of `tidemark-bench migrate`: a full Migrator copy of the
/// demo shop at each size, `--runs` times, its time per row and peak RSS.
/// Cost must grow linearly (time per row within ``linearFactor`` of the
/// smallest size's) and memory stay flat (peak RSS within ``flatFactor`` of
/// the smallest size's, and at most ``memoryCeilingMB`` at every size).
extension MigrateBenchmark {
    static let linearFactor = 1.5
    static let flatFactor = 1.25
    static let memoryCeilingMB = 64.0

    struct ScalingPoint {
        var rows: Int
        var copy = Runs()
        var peakBytes = 0
        var microsPerRow: Double { copy.wall.median / Double(rows) * 1e6 }
        var peakMB: Double { megabytes(peakBytes) }
    }

    func measureScaling(_ sizes: [Int], in dir: ScratchDirectory) throws -> Outcome {
        var memory = PeakMemory()
        var points: [ScalingPoint] = []
        for size in sizes {
            let pristine = dir.file("scale-\(size).db")
            progress("scaling: creating the demo shop database (\(formatNumber(Double(size))) rows)")
            try DemoShop.create(path: pristine, rows: size)
            let rows = try Self.tables.reduce(0) { $0 + (try countRows(pristine, $1)) }
            var point = ScalingPoint(rows: rows)
            for i in 1...runs {
                // What the phase holds beforehand (the workload's freed pages) is
                // handed back, so the phase's peak is the copy's own.
                releaseFreedMemory()
                let t = try memory.phase("scale-\(size)") { try migratorCopy(pristine, in: dir, run: i).timing }
                point.peakBytes = max(point.peakBytes, memory.phases.last?.bytes ?? 0)
                point.copy.add(t)
                progress("scaling \(formatNumber(Double(rows))) rows, run \(i)/\(runs): \(describe(t)), peak RSS \(formatNumber(megabytes(memory.phases.last?.bytes ?? 0))) MB")
            }
            try removeDatabase(pristine)
            points.append(point)
        }
        guard let smallest = points.first, let largest = points.last else { throw BenchmarkError("no scaling size was measured") }

        var table = ComparisonTable()
        for p in points {
            table.rows.append(Comparison(
                path: "scaling: copy of \(formatNumber(Double(p.rows))) rows, time per row (baseline: smallest size)", unit: "µs/row",
                tidemark: p.microsPerRow, baseline: smallest.microsPerRow, goal: .atMostTimesBaseline(Self.linearFactor),
                details: [("rows", .int(p.rows)), ("tidemark_seconds", JSON.seconds(p.copy.wall)), ("tidemark_cpu_seconds", JSON.seconds(p.copy.cpu))]))
            table.rows.append(Comparison(
                path: "scaling: copy of \(formatNumber(Double(p.rows))) rows, peak RSS", unit: "MB",
                tidemark: p.peakMB, baseline: nil, goal: .atMost(Self.memoryCeilingMB), details: [("rows", .int(p.rows))]))
        }
        table.rows.append(Comparison(
            path: "scaling: time per row, largest ÷ smallest size (linear)", unit: "×",
            tidemark: largest.microsPerRow / smallest.microsPerRow, baseline: nil, goal: .atMost(Self.linearFactor),
            details: [("smallest_rows", .int(smallest.rows)), ("largest_rows", .int(largest.rows))]))
        table.rows.append(Comparison(
            path: "scaling: peak RSS, largest ÷ smallest size (flat)", unit: "×",
            tidemark: largest.peakMB / smallest.peakMB, baseline: nil, goal: .atMost(Self.flatFactor),
            details: [("smallest_mb", .number(smallest.peakMB)), ("largest_mb", .number(largest.peakMB))]))

        var lines: [String] = []
        lines.append("tidemark-bench migrate, scaling: full Migrator copy of the demo shop at each size, median of \(runs) run\(runs == 1 ? "" : "s"); peak RSS of this process during the copy (VmHWM reset per run); SQLite \(Connection.libraryVersion)")
        lines.append("")
        let cells = points.map { p -> [String] in
            let linear = p.microsPerRow <= Self.linearFactor * smallest.microsPerRow
            let flat = p.peakMB <= Self.flatFactor * smallest.peakMB && p.peakMB <= Self.memoryCeilingMB
            return [formatNumber(Double(p.rows)), formatFixed(p.copy.wall.median, decimals: 2), formatFixed(p.microsPerRow, decimals: 3),
                    formatFixed(p.microsPerRow / smallest.microsPerRow, decimals: 2) + "×", formatFixed(p.peakMB, decimals: 1),
                    formatFixed(p.peakMB / smallest.peakMB, decimals: 2) + "×", linear ? "yes" : "NO", flat ? "yes" : "NO"]
        }
        lines.append(renderTable(header: ["rows", "copy s", "µs/row", "× smallest", "peak RSS MB", "× smallest", "linear", "flat"],
                                 rows: cells, rightAligned: [0, 1, 2, 3, 4, 5]))
        lines.append("")
        lines.append(table.render())
        lines.append("")
        lines.append("linear: time per row ≤ \(Self.linearFactor)× the smallest size's; flat: peak RSS ≤ \(Self.flatFactor)× the smallest size's and ≤ \(formatNumber(Self.memoryCeilingMB)) MB")
        let json = JSON.object([
            ("benchmark", .string("migrate-scaling")), ("sizes", .array(points.map { .int($0.rows) })), ("runs", .int(runs)),
            ("linear", .bool(largest.microsPerRow <= Self.linearFactor * smallest.microsPerRow)),
            ("flat", .bool(points.allSatisfy { $0.peakMB <= Self.flatFactor * smallest.peakMB && $0.peakMB <= Self.memoryCeilingMB })),
            ("all_goals_met", .bool(table.allPassed)),
            ("rows", .array(table.rows.map(\.json))),
        ])
        return Outcome(table: table, text: lines.joined(separator: "\n"), json: json)
    }
}
