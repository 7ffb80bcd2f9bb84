#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TidemarkLog

/// `tidemark-bench log`: the change log's append and read throughput,
/// compression ratio and peak memory, each beside the `zstd` CLI doing the
/// same work on the same bytes.
///
/// - Append: `LogAppender` (encode + compress + write) vs `zstd -3` compressing
///   the exact uncompressed record bytes the log holds, into a file.
/// - Read: `LogCursor` decoding every record vs `zstd -dc` of the same
///   segment files. A segment is a valid zstd stream whose skippable frames
///   (frame metadata) `zstd -dc` drops, so it yields exactly the record bytes.
///
/// Records are generated before the clock starts: each run regenerates the
/// same seeded workload batch by batch and times only the `append` calls, so
/// a million records never sit in memory at once.
///
/// Then the audit rows (``AuditBenchmark``): history of one key and a
/// 5-minute window out of a 10M-record log vs `zstd -dc | grep`, and
/// `log as-of --output` vs replaying from an empty database. `--only`
/// runs one part.
struct LogBenchmark: ParsableCommand, BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Change-log append/read throughput, compression and memory beside the zstd CLI.",
        discussion: """
        Goals: append ≥ 0.5× and read ≥ 0.7× the zstd CLI, peak RSS < 150 MB. \
        MB are 10^6 bytes of uncompressed record bytes. Needs the zstd command (apt-get install zstd).

        Audit: history of one key and a 5-minute window out of a 10M-record log, by the \
        tidemark binary built beside this one, ≥ 10× faster than zstd -dc | grep of the same log; \
        as-of --output of a 1M-row table rewinding 100k changes ≥ 1× replaying from an empty database; \
        tidemark's own peak RSS < 64 MB (measured under /usr/bin/time when present).
        """
    )

    @Option(help: "Records per run (at least 1,000,000 for the goals).")
    var records = 1_000_000

    @Option(help: "Measured runs per path; medians are reported (at least 5 for the goals).")
    var runs = 5

    @Option(help: "Records per append call with durability none.")
    var batchSize = 10_000

    @Option(help: "Records per append call in the durability-commit row.")
    var commitBatchSize = 1_000

    @Option(help: "Runs of the durability-commit row, shown for information (0 skips it).")
    var commitRuns = 3

    @Option(help: "Workload seed; the same seed gives the same records.")
    var seed: UInt64 = 20_261_101

    @OptionGroup var common: BenchCommonOptions

    /// Which parts of the benchmark run.
    enum Part: String, ExpressibleByArgument, CaseIterable {
        case all, throughput, audit
    }

    @Option(help: "all (default), throughput (append, read, compression, memory) or audit (history, window, as-of).")
    var only: Part = .all

    @OptionGroup(title: "Audit rows")
    var audit: AuditOptions

    @Option(help: ArgumentHelp("Run only one path, without baselines, for a profiler: append or read.", visibility: .hidden))
    var profile: String?

    func validate() throws {
        guard records >= 1 else { throw ValidationError("--records must be at least 1") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard batchSize >= 1, commitBatchSize >= 1 else { throw ValidationError("batch sizes must be at least 1") }
        guard commitRuns >= 0 else { throw ValidationError("--commit-runs must be 0 or more") }
        if let profile, profile != "append" && profile != "read" {
            throw ValidationError("--profile must be append or read, not '\(profile)'")
        }
    }

    func run() throws {
        let parent = scratch ?? getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        let dir = try ScratchDirectory(in: parent, name: "log")
        defer { if !keep { try? dir.remove() } }
        if let profile {
            try runForProfiler(profile, in: dir)
            return
        }
        // The audit rows need the tidemark binary: say so before minutes of throughput runs.
        if only != .throughput { _ = try AuditBenchmark.tidemarkBinary() }
        let throughput: Outcome? = if only == .audit { nil } else { try measure(in: dir) }
        let auditRows: Outcome? = if only == .throughput { nil } else {
            try AuditBenchmark(options: audit, runs: runs, seed: seed, dir: dir).measure()
        }
        let outcomes = [throughput, auditRows].compactMap { $0 }
        if json {
            // One object: the throughput part's, with the audit part under "audit".
            if let throughput, let auditRows, case .object(let fields) = throughput.json {
                print(JSON.object(fields + [("audit", auditRows.json)]).text)
            } else {
                for o in outcomes { print(o.json.text) }
            }
        } else {
            print(outcomes.map(\.text).joined(separator: "\n\n"))
            if keep { print("scratch files kept in \(dir.path)") }
        }
        if check && !outcomes.allSatisfy({ $0.table.allPassed && $0.meetsWorkload }) { throw ExitCode(1) }
    }

    // MARK: Measuring

    /// One run of appending the whole workload to a fresh log.
    struct AppendRun {
        var timing: Timing
        var statistics: AppenderStatistics
        var segments: [String]
    }

    struct Outcome {
        var table: ComparisonTable
        var text: String
        var json: JSON
        /// Whether the sizes and runs are those the goals are judged on.
        var meetsWorkload: Bool
    }

    /// The goals are judged on at least a million records, median of 5.
    private var meetsIssueWorkload: Bool { records >= 1_000_000 && runs >= 5 }

    private func measure(in dir: ScratchDirectory) throws -> Outcome {
        var memory = PeakMemory()
        let raw = dir.file("records.raw")
        let rawCompressed = dir.file("records.raw.zst")
        let compressCommand = ExternalCommand(["zstd", "-3", "-q", "-f", raw, "-o", rawCompressed])

        // Append, durability none, interleaved with the zstd -3 baseline so
        // drift in the machine's speed hits both sides alike.
        var append = Runs(), zstdCompress = Runs()
        var logPath = ""
        var last: AppendRun?
        try memory.phase("append") {
            // Warm-up (not counted): also yields the exact record bytes for
            // the baseline, via zstd -dc of the log's own segments.
            progress("append warm-up")
            let warm = try appendAll(to: dir.subdirectory("log-warmup"), durability: .none, batchSize: batchSize)
            _ = try ExternalCommand(["zstd", "-dc", "-q"] + warm.segments, output: .file(raw)).run()
            let rawSize = try fileSize(raw)
            guard rawSize == warm.statistics.uncompressedBytes else {
                throw BenchmarkError("zstd -dc of the segments gave \(rawSize) bytes but the appender wrote \(warm.statistics.uncompressedBytes) uncompressed bytes")
            }
            try removeTree(dir.subdirectory("log-warmup"))
            for i in 0..<runs {
                if !logPath.isEmpty { try removeTree(logPath) }
                logPath = dir.subdirectory("log-\(i)")
                let run = try appendAll(to: logPath, durability: .none, batchSize: batchSize)
                guard run.statistics.uncompressedBytes == rawSize, run.statistics.records == records else {
                    throw BenchmarkError("run \(i + 1) wrote \(run.statistics.uncompressedBytes) bytes in \(run.statistics.records) records; the workload is not deterministic")
                }
                append.add(run.timing)
                last = run
                let z = try compressCommand.run()
                zstdCompress.add(z)
                progress("append run \(i + 1)/\(runs): tidemark \(describe(run.timing)), zstd -3 \(describe(z))")
            }
        }
        guard let last else { throw BenchmarkError("no append run was measured") }
        let stats = last.statistics
        let segments = last.segments
        let uncompressed = Double(stats.uncompressedBytes)
        let onDisk = try segments.reduce(0) { $0 + (try fileSize($1)) }
        let zstdSize = try fileSize(rawCompressed)

        // Append, durability commit, for information: what fsync per call costs.
        var commit = Runs()
        var commitSyncs = 0
        if commitRuns > 0 {
            try memory.phase("append-commit") {
                for i in 0..<commitRuns {
                    let path = dir.subdirectory("log-commit")
                    let run = try appendAll(to: path, durability: .commit, batchSize: commitBatchSize)
                    commit.add(run.timing)
                    commitSyncs = run.statistics.syncs
                    try removeTree(path)
                    progress("commit run \(i + 1)/\(commitRuns): \(describe(run.timing))")
                }
            }
        }

        // Read: every record fully decoded, beside zstd -dc of the same segments.
        let decompressCommand = ExternalCommand(["zstd", "-dc", "-q"] + segments)
        var read = Runs(), readAhead = Runs(), zstdDecompress = Runs()
        try memory.phase("read") {
            for i in 0..<runs {
                let t = try readAll(logPath)
                read.add(t)
                let a = try readAll(logPath, ahead: true)
                readAhead.add(a)
                let z = try decompressCommand.run()
                zstdDecompress.add(z)
                progress("read run \(i + 1)/\(runs): tidemark \(describe(t)), read ahead \(describe(a)), zstd -dc \(describe(z))")
            }
        }
        let peakRSS = memory.finish()

        // The table: throughput at the median wall time of each side.
        let recordCount = Double(records)
        func details(_ ours: Runs, _ theirs: Runs?, _ command: ExternalCommand?) -> [(String, JSON)] {
            var d: [(String, JSON)] = [("tidemark_seconds", JSON.seconds(ours.wall)), ("tidemark_cpu_seconds", JSON.seconds(ours.cpu))]
            if let theirs, let command {
                d += [("baseline_seconds", JSON.seconds(theirs.wall)), ("baseline_cpu_seconds", JSON.seconds(theirs.cpu)),
                      ("cpu_ratio", .number(theirs.cpu.median / ours.cpu.median)),
                      ("baseline_command", .string(command.displayText))]
            }
            return d
        }
        var table = ComparisonTable()
        table.rows.append(Comparison(
            path: "append, durability none", unit: "MB/s",
            tidemark: uncompressed / 1e6 / append.wall.median, baseline: uncompressed / 1e6 / zstdCompress.wall.median,
            goal: .atLeastTimesBaseline(0.5),
            details: [("batch_size", .int(batchSize))] + details(append, zstdCompress, compressCommand)))
        table.rows.append(Comparison(
            path: "append, durability none", unit: "rec/s",
            tidemark: recordCount / append.wall.median, baseline: recordCount / zstdCompress.wall.median,
            goal: .atLeastTimesBaseline(0.5)))
        if commitRuns > 0 {
            table.rows.append(Comparison(
                path: "append, durability commit, \(formatNumber(Double(commitBatchSize)))/call", unit: "MB/s",
                tidemark: uncompressed / 1e6 / commit.wall.median, baseline: nil, goal: .none,
                details: [("batch_size", .int(commitBatchSize)), ("syncs", .int(commitSyncs))] + details(commit, nil, nil)))
        }
        table.rows.append(Comparison(
            path: "read, every record decoded", unit: "MB/s",
            tidemark: uncompressed / 1e6 / read.wall.median, baseline: uncompressed / 1e6 / zstdDecompress.wall.median,
            goal: .atLeastTimesBaseline(0.7),
            details: details(read, zstdDecompress, decompressCommand)))
        table.rows.append(Comparison(
            path: "read, every record decoded", unit: "rec/s",
            tidemark: recordCount / read.wall.median, baseline: recordCount / zstdDecompress.wall.median,
            goal: .atLeastTimesBaseline(0.7)))
        table.rows.append(Comparison(
            path: "read ahead on a second thread, every record decoded", unit: "MB/s",
            tidemark: uncompressed / 1e6 / readAhead.wall.median, baseline: uncompressed / 1e6 / zstdDecompress.wall.median,
            goal: .none, details: details(readAhead, zstdDecompress, decompressCommand)))
        table.rows.append(Comparison(
            path: "compression ratio (uncompressed / on disk)", unit: "×",
            tidemark: uncompressed / Double(onDisk), baseline: uncompressed / Double(zstdSize), goal: .none,
            details: [("tidemark_bytes_on_disk", .int(onDisk)), ("baseline_bytes", .int(zstdSize))]))
        table.rows.append(Comparison(
            path: "peak RSS, whole benchmark process", unit: "MB",
            tidemark: megabytes(peakRSS), baseline: nil, goal: .below(150),
            details: [("phases", .object(memory.phases.map { ($0.name, JSON.number(megabytes($0.bytes))) })),
                      ("per_phase_reset", .bool(memory.resettable))]))

        // Text.
        let averageBytes = uncompressed / recordCount
        var lines: [String] = []
        lines.append("tidemark-bench log: \(formatNumber(recordCount)) shop records (avg \(formatFixed(averageBytes, decimals: 1)) B encoded, \(formatNumber(uncompressed / 1e6)) MB uncompressed), median of \(runs) run\(runs == 1 ? "" : "s"), seed \(seed)")
        if !meetsIssueWorkload {
            lines.append("note: the goals are judged on ≥ 1,000,000 records and ≥ 5 runs; this run is smaller")
        }
        lines.append("")
        lines.append(table.render())
        lines.append("")
        lines.append("wall seconds, min … median … max (CPU seconds, median):")
        let spreads: [(String, Runs)] = [
            ("tidemark append", append), ("zstd -3", zstdCompress), ("tidemark append, commit", commit),
            ("tidemark read", read), ("zstd -dc", zstdDecompress),
        ]
        for (name, r) in spreads where r.count > 0 {
            lines.append("  \(name.padding(to: 24)) \(formatFixed(r.wall.min, decimals: 3)) … \(formatFixed(r.wall.median, decimals: 3)) … \(formatFixed(r.wall.max, decimals: 3))   (cpu \(formatFixed(r.cpu.median, decimals: 3)))")
        }
        lines.append("by CPU time: append \(formatFixed(zstdCompress.cpu.median / append.cpu.median, decimals: 2))×, read \(formatFixed(zstdDecompress.cpu.median / read.cpu.median, decimals: 2))× the baseline (less disturbed by other load on the machine)")
        lines.append("log: \(stats.frames) frames in \(segments.count) segment\(segments.count == 1 ? "" : "s"), \(formatNumber(Double(onDisk) / 1e6)) MB on disk; append calls of \(formatNumber(Double(batchSize))) records")
        if commitRuns > 0 {
            lines.append("commit row: \(commitSyncs) fdatasyncs per run, median of \(commitRuns)")
        }
        lines.append("peak RSS by phase: " + memory.phases.map { "\($0.name) \(formatNumber(megabytes($0.bytes))) MB" }.joined(separator: ", ")
                     + (memory.resettable ? "" : " (peaks are cumulative: /proc/self/clear_refs refused)"))
        lines.append("baselines: \(compressCommand.displayText)")
        lines.append("           \(decompressCommand.displayText)")

        let json = JSON.object([
            ("benchmark", .string("log")),
            ("records", .int(records)), ("runs", .int(runs)), ("seed", .string(String(seed))),
            ("uncompressed_bytes", .int(stats.uncompressedBytes)),
            ("average_record_bytes", .number(averageBytes)),
            ("frames", .int(stats.frames)), ("segments", .int(segments.count)),
            ("peak_rss_bytes", .int(peakRSS)),
            ("all_goals_met", .bool(table.allPassed)),
            ("meets_issue_workload", .bool(meetsIssueWorkload)),
            ("rows", .array(table.rows.map(\.json))),
        ])
        return Outcome(table: table, text: lines.joined(separator: "\n"), json: json, meetsWorkload: meetsIssueWorkload)
    }

    /// `--profile`: only the chosen path, `runs` times, so a profiler's
    /// samples are (nearly) all that path. The read path's log is written
    /// first; the append path includes generating the workload.
    private func runForProfiler(_ path: String, in dir: ScratchDirectory) throws {
        let log = dir.subdirectory("log")
        if path == "read" {
            _ = try appendAll(to: log, durability: .none, batchSize: batchSize)
            progress("profiling read")
        }
        for i in 0..<runs {
            let t: Timing
            if path == "read" {
                t = try readAll(log)
            } else {
                t = try appendAll(to: log, durability: .none, batchSize: batchSize).timing
                try removeTree(log)
            }
            progress("\(path) run \(i + 1)/\(runs): \(describe(t))")
        }
    }

    /// Appends the whole workload to a new log at `path`; times only the
    /// `append` calls and the final `close`, not generating the records.
    private func appendAll(to path: String, durability: Durability, batchSize: Int) throws -> AppendRun {
        let appender = try LogAppender(directory: path, options: LogOptions(durability: durability))
        var workload = ShopWorkload(seed: seed)
        var timing = Timing()
        var left = records
        while left > 0 {
            let batch = workload.next(min(left, batchSize))
            timing += try Stopwatch.measure { try appender.append(assigningLSNs: batch) }.timing
            left -= batch.count
        }
        timing += try Stopwatch.measure { try appender.close() }.timing
        let segments = try LogDirectory(path).segments().map(\.path)
        return AppendRun(timing: timing, statistics: appender.statistics, segments: segments)
    }

    /// Reads every record of the log at `path`, fully decoded, from opening
    /// the reader to the end of the log.
    ///
    /// `ahead`: the next frames are decompressed and checked on a second
    /// thread (``RecordPrefetch``, replay's read-ahead) while this one walks
    /// the records.
    private func readAll(_ path: String, ahead: Bool = false) throws -> Timing {
        let ((count, fields), timing) = try Stopwatch.measure { () throws -> (Int, Int) in
            let cursor = try LogReader(directory: path).cursor()
            let prefetch = ahead ? RecordPrefetch(cursor, threaded: true) : nil
            func next() throws -> RecordView? {
                if let prefetch { return try prefetch.next()?.view }
                return try cursor.nextView()
            }
            var count = 0, fields = 0
            var last = LSN.zero
            // Records read in place (as replay reads them): every field of
            // every image decoded, no copy made.
            while let r = try next() {
                guard r.lsn > last else { throw BenchmarkError("LSN \(r.lsn) after \(last): records out of order") }
                last = r.lsn
                count += 1
                // Decode every value so no work can be skipped.
                func touch(_ image: FieldsView?) {
                    guard let image else { return }
                    for f in image {
                        fields &+= 1 &+ f.name.count
                        switch f.value {
                        case .null: break
                        case .integer(let i): fields &+= Int(truncatingIfNeeded: i) & 1
                        case .real(let d): fields &+= Int(truncatingIfNeeded: d.bitPattern) & 1
                        case .text(let b), .blob(let b): fields &+= b.count
                        }
                    }
                }
                touch(r.key)
                touch(r.before)
                touch(r.after)
            }
            return (count, fields)
        }
        guard count == records, fields > 0 else {
            throw BenchmarkError("read \(count) records from \(path), expected \(records)")
        }
        return timing
    }
}

extension String {
    func padding(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// One progress line on standard error (stdout stays clean for --json).
func progress(_ message: String) {
    let line = Array(("tidemark-bench: " + message + "\n").utf8)
    line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
}
