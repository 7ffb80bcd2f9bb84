import ArgumentParser
import TidemarkCore
import TidemarkDemo
import TidemarkLog
import TidemarkSQLite

/// `tidemark-bench cutover`: what writers see while a migration cuts over,
/// and how fast `verify` proves a migrated pair of files equal, beside
/// `sqldiff`.
///
/// - Cutover: several times, each on a fresh copy of the demo shop: writers
///   keep a steady autocommit load on the source (through a `Router`, so
///   after the switch they move to the target); a Migrator copies, catches
///   up and follows; after a steady second it is stopped and
///   `Migrator.cutover` runs — as `tidemark cutover` does when no migrator
///   is running: it catches up the last changes, takes the source's write
///   lock, drains, installs the guards and switches. Each write's latency is
///   measured from the moment it was due (so writes that queue behind a
///   blocked one count their wait); the writes due between the call and its
///   return are the cutover window. The baseline column is the same writers'
///   latency in the steady second before it.
/// - Verify: `Verifier` on a quiet migrated pair (identity plan, so both
///   files hold the same tables), beside `sqldiff --table T` of each table.
struct CutoverBenchmark: ParsableCommand, BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "Writer pause during cutover under load, and verify throughput beside sqldiff.",
        discussion: """
        Goals: writer pause p99 < 100 ms under 2,000 writes/s; verify ≥ 1× sqldiff. \
        Needs the sqldiff command (apt-get install sqlite3-tools).
        """
    )

    @Option(help: "Rows of the demo shop database (40% customers, 60% order lines).")
    var rows = 500_000

    @Option(help: "Cutovers, each from a fresh copy of the database (the window of each holds only some tens of writes).")
    var cutovers = 10

    @Option(help: "Writes per second on the source (and, after the switch, the target).")
    var writesPerSecond = 2_000

    @Option(help: "Writer threads, each with its own connection.")
    var writerThreads = 4

    @Option(help: "Seconds of steady following before each cutover (the baseline latencies).")
    var steadySeconds = 1.0

    @Option(help: "Measured verify runs, each side; medians are reported.")
    var runs = 5

    @OptionGroup var common: BenchCommonOptions

    func validate() throws {
        guard rows >= 1_000 else { throw ValidationError("--rows must be at least 1000") }
        guard cutovers >= 1, runs >= 1 else { throw ValidationError("--cutovers and --runs must be at least 1") }
        guard writesPerSecond >= 1, writerThreads >= 1, steadySeconds > 0 else { throw ValidationError("writer settings must be positive") }
    }

    private var meetsIssueWorkload: Bool { writesPerSecond >= 2_000 && cutovers >= 3 && runs >= 3 }

    static let tables = ["customers", "order_lines"]

    func plan(_ d: String) -> Plan {
        Plan(source: d + "/source.db", target: d + "/target.db", log: d + "/log", chunkRows: 10_000,
             tables: Self.tables.map { TablePlan(source: $0) })
    }

    func run() throws {
        let dir = try ScratchDirectory(in: scratchParent(scratch), name: "cutover")
        defer { if !keep { try? dir.remove() } }
        var memory = PeakMemory()
        let pristine = dir.file("shop.db")
        progress("creating the demo shop database (\(formatNumber(Double(rows))) rows)")
        try DemoShop.create(path: pristine, rows: rows)

        // Cutovers under load.
        var window: [Double] = [], reroutedWindow: [Double] = [], steady: [Double] = [], lockHeld: [Double] = [], perCutover: [(p99: Double, max: Double, writes: Int)] = []
        var achieved: [Double] = [], rerouted = 0, drained: [Int] = [], skipped = 0
        for i in 0..<cutovers {
            let r = try memory.phase("cutover") { try cutoverRun(pristine, in: dir, run: i) }
            releaseFreedMemory()
            let w = Percentiles(r.window)
            window += r.window
            reroutedWindow += r.rerouted
            steady += r.steady
            lockHeld.append(r.report.pauseMillis)
            drained.append(r.report.drained)
            perCutover.append((w.p99, w.max, w.count))
            achieved.append(r.writes.writesPerSecond)
            rerouted += r.writes.rerouted
            skipped += r.writes.skippedAhead
            progress("cutover \(i + 1)/\(cutovers): \(w.count) writes in the window (\(formatFixed(r.windowMillis, decimals: 0)) ms), p50 \(formatFixed(w.p50, decimals: 1)) ms, p99 \(formatFixed(w.p99, decimals: 1)) ms, max \(formatFixed(w.max, decimals: 1)) ms; lock held \(formatFixed(r.report.pauseMillis, decimals: 1)) ms, \(r.report.drained) changes drained; \(formatNumber(r.writes.writesPerSecond)) writes/s, \(r.writes.rerouted) rerouted")
        }

        // Verify vs sqldiff on a quiet migrated pair.
        let v = try memory.phase("verify") { try verifyComparison(pristine, in: dir) }
        let peakRSS = memory.finish()

        let win = Percentiles(window), base = Percentiles(steady)
        var table = ComparisonTable()
        let latencyDetails: [(String, JSON)] = [
            ("window_writes", .int(win.count)), ("steady_writes", .int(base.count)),
            ("per_cutover_p99_ms", .array(perCutover.map { .number($0.p99) })),
            ("per_cutover_max_ms", .array(perCutover.map { .number($0.max) })),
            ("per_cutover_window_writes", .array(perCutover.map { .int($0.writes) })),
            ("writes_per_second_target", .int(writesPerSecond)),
            ("writes_per_second_achieved", .array(achieved.map(JSON.number))),
            ("rerouted_writes", .int(rerouted)),
            ("rerouted_window_latencies_ms", .array(reroutedWindow.map(JSON.number))),
        ]
        table.rows.append(Comparison(path: "writer latency in the cutover window, p50", unit: "ms",
                                     tidemark: win.p50, baseline: base.p50, goal: .none, details: latencyDetails))
        table.rows.append(Comparison(path: "writer latency in the cutover window, p99", unit: "ms",
                                     tidemark: win.p99, baseline: base.p99, goal: .below(100)))
        table.rows.append(Comparison(path: "writer latency in the cutover window, max", unit: "ms",
                                     tidemark: win.max, baseline: base.max, goal: .none))
        table.rows.append(Comparison(path: "source write lock held (reported pause), median", unit: "ms",
                                     tidemark: Samples(lockHeld).median, baseline: nil, goal: .none,
                                     details: [("per_cutover_ms", .array(lockHeld.map(JSON.number))), ("drained", .array(drained.map(JSON.int)))]))
        table.rows.append(Comparison(
            path: "verify, quiet migrated pair", unit: "rows/s",
            tidemark: Double(v.rows) / v.verify.wall.median, baseline: Double(v.rows) / v.sqldiff.wall.median,
            goal: .atLeastTimesBaseline(1.0),
            details: [("rows", .int(v.rows)), ("tidemark_seconds", JSON.seconds(v.verify.wall)), ("tidemark_cpu_seconds", JSON.seconds(v.verify.cpu)),
                      ("baseline_seconds", JSON.seconds(v.sqldiff.wall)), ("baseline_cpu_seconds", JSON.seconds(v.sqldiff.cpu)),
                      ("cpu_ratio", .number(v.sqldiff.cpu.median / v.verify.cpu.median)),
                      ("baseline_command", .string(Self.tables.map { "sqldiff --table \($0) source.db target.db" }.joined(separator: "; ")))]))
        var phasePeaks: [(String, Int)] = []
        for (name, bytes) in memory.phases {
            if let i = phasePeaks.firstIndex(where: { $0.0 == name }) { phasePeaks[i].1 = max(phasePeaks[i].1, bytes) } else { phasePeaks.append((name, bytes)) }
        }
        table.rows.append(Comparison(path: "peak RSS, whole benchmark process", unit: "MB", tidemark: megabytes(peakRSS), baseline: nil, goal: .below(150),
                                     details: [("phases", .object(phasePeaks.map { ($0.0, JSON.number(megabytes($0.1))) }))]))

        if json {
            print(JSON.object([
                ("benchmark", .string("cutover")), ("database_rows", .int(rows)), ("cutovers", .int(cutovers)), ("runs", .int(runs)),
                ("writes_per_second", .int(writesPerSecond)), ("writer_threads", .int(writerThreads)),
                ("sqlite_version", .string(Connection.libraryVersion)),
                ("all_goals_met", .bool(table.allPassed)), ("meets_issue_workload", .bool(meetsIssueWorkload)),
                ("rows", .array(table.rows.map(\.json))),
            ]).text)
        } else {
            var lines: [String] = []
            lines.append("tidemark-bench cutover: demo shop, \(formatNumber(Double(rows))) rows, identity plan; \(cutovers) cutover\(cutovers == 1 ? "" : "s") under \(formatNumber(Double(writesPerSecond))) writes/s (\(writerThreads) threads, autocommit, 5 s busy timeout); verify median of \(runs), SQLite \(Connection.libraryVersion)")
            if !meetsIssueWorkload { lines.append("note: the goals are judged on 2,000 writes/s, ≥ 3 cutovers and ≥ 3 verify runs; this run is smaller") }
            lines.append("")
            lines.append(table.render())
            lines.append("")
            lines.append("latency: from when a write was due to when it returned (a write queued behind a blocked one counts its wait); window = writes due between the cutover call and its return, pooled over \(cutovers) cutovers (\(win.count) writes); baseline = the same writers in the steady \(formatFixed(steadySeconds, decimals: 1)) s before each (\(base.count) writes)")
            let rr = Percentiles(reroutedWindow)
            lines.append("of the window's writes, \(rr.count) were refused by a guard and retried at the target (route again, open a connection, prepare): p50 \(formatFixed(rr.p50, decimals: 1)) ms, max \(formatFixed(rr.max, decimals: 1)) ms; the rest waited on the lock with SQLite's busy handler, which sleeps 1, 2, 5, 10, … ms between tries")
            lines.append("per cutover: p99 \(perCutover.map { formatFixed($0.p99, decimals: 1) }.joined(separator: ", ")) ms; max \(perCutover.map { formatFixed($0.max, decimals: 1) }.joined(separator: ", ")) ms; lock held \(lockHeld.map { formatFixed($0, decimals: 1) }.joined(separator: ", ")) ms; drained \(drained.map(String.init).joined(separator: ", ")) changes")
            lines.append("writers: achieved \(achieved.map { formatNumber($0) }.joined(separator: ", ")) writes/s; \(rerouted) writes refused by a guard and rerouted to the target; none failed" + (skipped > 0 ? "; fell behind by > 1 s \(skipped)×" : ""))
            lines.append("wall seconds, min … median … max (CPU seconds, median):")
            lines.append(spreadLine("tidemark verify", v.verify))
            lines.append(spreadLine("sqldiff --table, both tables", v.sqldiff))
            lines.append("by CPU time: verify \(formatFixed(v.sqldiff.cpu.median / v.verify.cpu.median, decimals: 2))× sqldiff; both found the pair equal (\(formatNumber(Double(v.rows))) rows)")
            lines.append("peak RSS by phase: " + phasePeaks.map { "\($0.0) \(formatNumber(megabytes($0.1))) MB" }.joined(separator: ", "))
            print(lines.joined(separator: "\n"))
            if keep { print("scratch files kept in \(dir.path)") }
        }
        if check && !(table.allPassed && meetsIssueWorkload) { throw ExitCode(1) }
    }

    // MARK: Cutover

    struct CutoverRun {
        var window: [Double]
        /// Latencies of the window's writes that a guard refused and that
        /// were retried at the target (routing again, a new connection).
        var rerouted: [Double]
        var steady: [Double]
        var windowMillis: Double
        var report: CutoverReport
        var writes: PacedWriters.Outcome
    }

    private func cutoverRun(_ pristine: String, in dir: ScratchDirectory, run: Int) throws -> CutoverRun {
        let d = dir.subdirectory("cutover-\(run)")
        try makeDirectory(d)
        defer { if !keep { try? removeTree(d) } }
        let plan = plan(d)
        try copyFile(from: pristine, to: plan.source)
        let migrator = try Migrator.open(plan: plan, options: MigratorOptions(follow: true))
        let writers = PacedWriters(path: plan.source, threads: writerThreads, writesPerSecond: writesPerSecond, router: Router(plan: plan))
        try writers.start()
        var report: CutoverReport?
        var steadyStart: UInt64 = 0, steadyEnd: UInt64 = 0, callStart: UInt64 = 0, callEnd: UInt64 = 0
        do {
            // Copy, catch up and follow on a thread, as `tidemark migrate --follow` would.
            let caughtUp = SharedFlag()
            let failure = Shared<String?>(nil)
            let follower = JoinableThread {
                do {
                    _ = try migrator.run { p in if p.caughtUp { caughtUp.set() } }
                } catch {
                    failure.withLock { $0 = "\(error)" }
                }
            }
            let deadline = monotonicNanos() + 300_000_000_000
            while !caughtUp.isSet && failure.withLock({ $0 }) == nil && monotonicNanos() < deadline { sleep(until: monotonicNanos() + 10_000_000) }
            steadyStart = monotonicNanos()
            sleep(until: steadyStart + UInt64(steadySeconds * 1e9))
            steadyEnd = monotonicNanos()
            migrator.stop()
            follower.join()
            if let e = failure.withLock({ $0 }) { throw BenchmarkError("the migration failed: \(e)") }
            guard caughtUp.isSet else { throw BenchmarkError("the migration did not catch up within 300 s") }
            // The switch, while the writers keep writing.
            callStart = monotonicNanos()
            // The benchmark measures the switch's pause; the verify gate
            // (a separate pass over every row) is not part of it.
            var options = CutoverOptions()
            options.skipVerify = true
            report = try migrator.cutover(options)
            callEnd = monotonicNanos()
            sleep(until: callEnd + 500_000_000)
        } catch {
            _ = writers.finish()
            try? migrator.close()
            throw error
        }
        let writes = writers.finish()
        try migrator.close()
        if let e = writes.firstError { throw BenchmarkError("a writer failed during cutover \(run + 1): \(e)") }
        guard writes.failed == 0 else { throw BenchmarkError("\(writes.failed) writes failed during cutover \(run + 1)") }
        guard writes.rerouted > 0 else { throw BenchmarkError("no writer was moved to the target by cutover \(run + 1)") }
        let inWindow = writes.writes.filter { $0.scheduled >= callStart && $0.scheduled <= callEnd }
        let window = inWindow.map(\.latencyMillis)
        let reroutedWindow = inWindow.filter(\.rerouted).map(\.latencyMillis)
        let steady = writes.writes.filter { $0.scheduled >= steadyStart && $0.scheduled < steadyEnd }.map(\.latencyMillis)
        return CutoverRun(window: window, rerouted: reroutedWindow, steady: steady, windowMillis: millis(callStart, callEnd), report: report!, writes: writes)
    }

    // MARK: Verify

    struct VerifyComparison {
        var rows: Int
        var verify: Runs
        var sqldiff: Runs
    }

    private func verifyComparison(_ pristine: String, in dir: ScratchDirectory) throws -> VerifyComparison {
        let d = dir.subdirectory("verify")
        try makeDirectory(d)
        let plan = plan(d)
        try copyFile(from: pristine, to: plan.source)
        do {
            let migrator = try Migrator.open(plan: plan)
            let summary = try migrator.run()
            try migrator.close()
            guard summary.caughtUp else { throw BenchmarkError("the migration for verify did not catch up") }
        }
        // Settle both files (WAL checkpointed) so neither side reads a WAL.
        try copyDatabase(from: plan.source, to: d + "/scratch.db")
        try copyDatabase(from: plan.target, to: d + "/scratch.db")
        try removeDatabase(d + "/scratch.db")
        let out = d + "/sqldiff.out"
        let commands = Self.tables.map { ExternalCommand(["sqldiff", "--table", $0, plan.source, plan.target], output: .file(out)) }
        func sqldiff() throws -> Timing {
            var total = Timing()
            for c in commands {
                total += try c.run()
                let size = try fileSize(out)
                guard size == 0 else { throw BenchmarkError("sqldiff found differences in the migrated pair (\(size) bytes of output)") }
            }
            return total
        }
        func verify() throws -> (Timing, Int) {
            let (report, timing) = try Stopwatch.measure { try Verifier(plan: plan).run() }
            guard report.isEqual else { throw BenchmarkError("verify found differences in the migrated pair") }
            return (timing, report.rows)
        }
        progress("verify warm-up")
        let (_, rows) = try verify()
        _ = try sqldiff()
        var ours = Runs(), theirs = Runs()
        for i in 1...runs {
            let (t, _) = try verify()
            ours.add(t)
            let s = try sqldiff()
            theirs.add(s)
            progress("verify run \(i)/\(runs): tidemark \(describe(t)), sqldiff \(describe(s))")
        }
        return VerifyComparison(rows: rows, verify: ours, sqldiff: theirs)
    }
}
