#if canImport(Glibc)
import TidemarkTestSupport
import Glibc
#endif
import ArgumentParser
import Synchronization
import TidemarkCore
import TidemarkDemo
import TidemarkLog
import TidemarkSQLite

/// `tidemark-bench migrate`: the migration engine beside SQLite doing the
/// same work its own way, on the same data, in one run.
///
/// - Snapshot copy: a full `Migrator` run (open, copy every chunk, catch up,
///   close) of a quiet demo shop database into a new file, vs the `sqlite3`
///   CLI running `INSERT INTO t SELECT * FROM src.t` over `ATTACH` into a
///   new file with the very tables the Migrator created.
/// - Indexed copy: the customers table with three secondary indexes (one
///   partial), copied by a full `Migrator` run with the indexes built after
///   the copy (what a migration does) and with them maintained row by row
///   during it, vs `INSERT … SELECT` over `ATTACH` into the indexed table.
/// - Replay: a write workload is applied once to a captured copy of the
///   source while SQLite's session extension records the same changes; the
///   outbox is shipped into the log. Each run then replays the log into a
///   fresh copy of the pre-workload target (a migration whose tables are all
///   `following`: `Migrator.run()` does nothing but replay), beside
///   `sqlite3changeset_apply` of the changeset into another fresh copy.
///   Both results are checked equal to the post-workload source.
/// - Catch-up: lag while the source takes a steady write load and a
///   following Migrator ships and replays (commit in the source → applied
///   in the target).
/// - Peak RSS of the Tidemark phases.
struct MigrateBenchmark: ParsableCommand, BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Snapshot copy, replay, catch-up lag and memory of a migration beside SQLite's own ways.",
        discussion: """
        Goals: copy ≥ 0.8× `INSERT INTO … SELECT` over ATTACH; replay ≥ 1.2× \
        sqlite3changeset_apply of the same changes; peak RSS < 150 MB; lag sub-second. \
        Needs the sqlite3 and sqldiff commands (apt-get install sqlite3 sqlite3-tools).
        """
    )

    @Option(help: "Rows of the demo shop database (40% customers, 60% order lines), at least 500,000 for the goals.")
    var rows = 500_000

    @Option(help: "Logged changes replayed (insert/update/delete mix), at least 1,000,000 for the goals.")
    var changes = 1_000_000

    @Option(help: "Measured runs of copy and replay, each side; medians are reported.")
    var runs = 5

    @Option(help: "chunk_rows of the migration plan.")
    var chunkRows = 10_000

    @Option(help: "Catch-up runs (each: fresh source, copy under load, lag sampled, then the target checked equal to the source).")
    var lagRuns = 3

    @Option(help: "Seconds of lag sampling per catch-up run, after the copy has caught up.")
    var lagSeconds = 10.0

    @Option(help: "Writes per second on the source during catch-up.")
    var writesPerSecond = 2_000

    @Option(help: "Writer threads during catch-up.")
    var writerThreads = 4

    @Option(help: "Workload seed; the same seed gives the same changes.")
    var seed: UInt64 = 20_261_101

    @Option(help: "Scaling: source sizes in rows, comma-separated (100k,1M,10M); each is copied --runs times, printing time per row and peak RSS.")
    var sizes: ScalingSizes?

    /// Which parts of the benchmark run.
    enum Part: String, ExpressibleByArgument, CaseIterable {
        case all, main, scaling, copy
    }

    @Option(help: "all (default: copy, replay, catch-up, and scaling when --sizes is given), main (all but scaling), scaling (needs --sizes) or copy (the snapshot copy and its baselines only).")
    var only: Part = .all

    @Option(help: ArgumentHelp("The copy's whole-table limit in chunks (MigratorOptions.wholeTableChunks); 0 copies every table in chunks.", visibility: .hidden))
    var wholeTableChunks = MigratorOptions().wholeTableChunks

    @OptionGroup var common: BenchCommonOptions

    @Option(help: ArgumentHelp("Run only one path, without baselines, for a profiler: copy or replay.", visibility: .hidden))
    var profile: String?

    @Option(help: ArgumentHelp("With --profile replay: reuse the replay setup of a scratch directory kept with --keep.", visibility: .hidden))
    var reuse: String?

    func validate() throws {
        guard rows >= 1_000 else { throw ValidationError("--rows must be at least 1000") }
        guard changes >= 1_000 else { throw ValidationError("--changes must be at least 1000") }
        guard runs >= 1, lagRuns >= 0 else { throw ValidationError("--runs must be at least 1 and --lag-runs at least 0") }
        guard chunkRows >= 1 else { throw ValidationError("--chunk-rows must be at least 1") }
        guard lagSeconds > 0, writesPerSecond >= 1, writerThreads >= 1 else { throw ValidationError("catch-up settings must be positive") }
        if let profile, profile != "copy" && profile != "replay" {
            throw ValidationError("--profile must be copy or replay, not '\(profile)'")
        }
        if only == .scaling && sizes == nil { throw ValidationError("--only scaling needs --sizes, e.g. --sizes 100k,1M,10M") }
    }

    private var meetsIssueWorkload: Bool { rows >= 500_000 && changes >= 1_000_000 && runs >= 3 }

    func run() throws {
        let dir = try ScratchDirectory(in: scratchParent(scratch), name: "migrate")
        defer { if !keep { try? dir.remove() } }
        guard !dir.path.contains("'") else { throw BenchmarkError("the scratch path must not contain a quote: \(dir.path)") }
        if let profile {
            try runForProfiler(profile, in: dir)
            return
        }
        if only == .copy {
            let o = try measureCopyOnly(in: dir)
            print(json ? o.json.text : o.text)
            if check && !o.table.allPassed { throw ExitCode(1) }
            return
        }
        let main: Outcome? = if only == .scaling { nil } else { try measure(in: dir) }
        let scaling: Outcome? = if let sizes, only != .main { try measureScaling(sizes.rows, in: dir) } else { nil }
        if json {
            // One object: the main part's, with the scaling part under "scaling".
            if let main, let scaling, case .object(let fields) = main.json {
                print(JSON.object(fields + [("scaling", scaling.json)]).text)
            } else {
                for o in [main, scaling].compactMap({ $0 }) { print(o.json.text) }
            }
        } else {
            print([main, scaling].compactMap { $0?.text }.joined(separator: "\n\n"))
            if keep { print("scratch files kept in \(dir.path)") }
        }
        let mainPassed = main.map { $0.table.allPassed && meetsIssueWorkload } ?? true
        if check && !(mainPassed && (scaling?.table.allPassed ?? true)) { throw ExitCode(1) }
    }

    struct Outcome {
        var table: ComparisonTable
        var text: String
        var json: JSON
    }

    static let tables = ["customers", "order_lines"]

    /// Source and target tables the same shape: the baselines need it.
    func identityPlan(source: String, target: String, log: String) -> Plan {
        Plan(source: source, target: target, log: log, chunkRows: chunkRows, tables: Self.tables.map { TablePlan(source: $0) })
    }

    // MARK: Measuring

    private func measure(in dir: ScratchDirectory) throws -> Outcome {
        var memory = PeakMemory()
        let pristine = dir.file("shop.db")
        progress("creating the demo shop database (\(formatNumber(Double(rows))) rows)")
        try DemoShop.create(path: pristine, rows: rows)
        let rowCounts = try Self.tables.map { try countRows(pristine, $0) }

        // (a) Snapshot copy.
        let (copy, insertSelect, rowCopy) = try measureSnapshotCopy(pristine, rowCounts: rowCounts, in: dir, memory: &memory)

        // (a') Indexed copy: secondary indexes built after vs maintained during.
        let indexed = try measureIndexedCopy(pristine, in: dir, memory: &memory)

        // (b) Replay.
        progress("replay: generating \(formatNumber(Double(changes))) changes (session + capture + ship)")
        releaseFreedMemory()
        let setup = try memory.phase("replay-setup") { try prepareReplay(pristine, in: dir) }
        releaseFreedMemory()
        // Baselines: the changeset applied through a connection with the same
        // page cache as the Migrator's target connection, and with SQLite's
        // default cache.
        let cacheKiB = Migrator.targetCacheKiB
        var replay = Runs(), apply = Runs(), applyDefault = Runs()
        for i in 0...runs {
            // Run 0 is the warm-up; its results are checked against the source.
            let ours = try memory.phase("replay") { try replayRun(setup, checkResult: i == 0) }
            releaseFreedMemory()
            let theirs = try memory.phase("replay-baseline") { try changesetRun(setup, cacheKiB: cacheKiB, checkResult: i == 0) }
            releaseFreedMemory()
            let theirsDefault = try memory.phase("replay-baseline") { try changesetRun(setup, cacheKiB: nil, checkResult: i == 0) }
            releaseFreedMemory()
            if i > 0 {
                replay.add(ours)
                apply.add(theirs)
                applyDefault.add(theirsDefault)
            }
            progress("replay \(i == 0 ? "warm-up" : "run \(i)/\(runs)"): tidemark \(describe(ours)), changeset_apply \(describe(theirs)), default cache \(describe(theirsDefault))")
        }

        // (c) Catch-up lag under a steady write load.
        var lagP50: [Double] = [], lagP99: [Double] = [], lagMax: [Double] = [], catchUp: [Double] = []
        var achieved: [Double] = [], lagSamples = 0, writerSkips = 0, writerFailures = 0
        for i in 0..<lagRuns {
            let r = try memory.phase("catch-up") { try lagRun(pristine, in: dir, run: i) }
            releaseFreedMemory()
            let p = Percentiles(r.lagsMillis)
            lagP50.append(p.p50); lagP99.append(p.p99); lagMax.append(p.max)
            catchUp.append(r.catchUpSeconds)
            achieved.append(r.writes.writesPerSecond)
            lagSamples += p.count
            writerSkips += r.writes.skippedAhead
            writerFailures += r.writes.failed
            if let e = r.writes.firstError { throw BenchmarkError("a writer failed during catch-up: \(e)") }
            progress("catch-up run \(i + 1)/\(lagRuns): caught up after \(formatFixed(r.catchUpSeconds, decimals: 2)) s, lag p50 \(formatFixed(p.p50, decimals: 1)) ms, p99 \(formatFixed(p.p99, decimals: 1)) ms, max \(formatFixed(p.max, decimals: 1)) ms over \(p.count) samples, \(formatNumber(r.writes.writesPerSecond)) writes/s")
        }
        let peakRSS = memory.finish()
        let tidemarkPhases = ["copy", "replay", "catch-up"]
        var phasePeaks: [(String, Int)] = []
        for (name, bytes) in memory.phases {
            if let i = phasePeaks.firstIndex(where: { $0.0 == name }) { phasePeaks[i].1 = max(phasePeaks[i].1, bytes) } else { phasePeaks.append((name, bytes)) }
        }
        let tidemarkPeak = phasePeaks.filter { tidemarkPhases.contains($0.0) }.map(\.1).max() ?? 0

        // The table.
        let totalRows = Double(rowCounts.reduce(0, +))
        let n = Double(setup.changes)
        var table = ComparisonTable()
        table.rows += copyComparisons(totalRows: totalRows, copy: copy, insertSelect: insertSelect, rowCopy: rowCopy)
        let indexedRows = Double(indexed.rows)
        table.rows.append(Comparison(
            path: "indexed copy (\(indexed.indexes) indexes), built after the copy", unit: "rows/s",
            tidemark: indexedRows / indexed.after.wall.median, baseline: indexedRows / indexed.insertSelect.wall.median, goal: .none,
            details: [("rows", .int(indexed.rows)), ("indexes", .array(indexed.sql.map(JSON.string)))]
                + Self.details(indexed.after, indexed.insertSelect, "sqlite3 -batch -bail target.db '<CREATE TABLE; CREATE INDEX …; ATTACH; INSERT INTO customers SELECT * FROM src.customers>'")))
        table.rows.append(Comparison(
            path: "  … indexes maintained during the copy", unit: "rows/s",
            tidemark: indexedRows / indexed.during.wall.median, baseline: indexedRows / indexed.insertSelect.wall.median, goal: .none,
            details: Self.details(indexed.during, indexed.insertSelect, nil)))
        table.rows.append(Comparison(
            path: "  … speed built after ÷ speed maintained during", unit: "×",
            tidemark: indexed.during.wall.median / indexed.after.wall.median, baseline: nil, goal: .none,
            details: [("after_seconds", JSON.seconds(indexed.after.wall)), ("during_seconds", JSON.seconds(indexed.during.wall))]))
        table.rows.append(Comparison(
            path: "replay of \(formatNumber(n)) logged changes", unit: "changes/s",
            tidemark: n / replay.wall.median, baseline: n / apply.wall.median,
            goal: .atLeastTimesBaseline(1.2),
            details: [("changes", .int(setup.changes)), ("inserts", .int(setup.counts.inserts)), ("updates", .int(setup.counts.updates)),
                      ("deletes", .int(setup.counts.deletes)), ("changeset_bytes", .int(setup.changesetBytes)), ("log_bytes", .int(setup.logBytes)),
                      ("cache_kib", .int(cacheKiB))]
                + Self.details(replay, apply, "sqlite3changeset_apply (in process, changeset in memory, PRAGMA cache_size = -\(cacheKiB) as the Migrator's target)")))
        table.rows.append(Comparison(
            path: "  … vs changeset_apply at SQLite's default page cache", unit: "changes/s",
            tidemark: n / replay.wall.median, baseline: n / applyDefault.wall.median, goal: .none,
            details: Self.details(replay, applyDefault, "sqlite3changeset_apply (in process, changeset in memory, default cache_size)")))
        if lagRuns > 0 {
            let lagDetails: [(String, JSON)] = [
                ("runs_p50_ms", .array(lagP50.map(JSON.number))), ("runs_p99_ms", .array(lagP99.map(JSON.number))),
                ("runs_max_ms", .array(lagMax.map(JSON.number))), ("samples", .int(lagSamples)),
                ("writes_per_second_target", .int(writesPerSecond)), ("writes_per_second_achieved", .array(achieved.map(JSON.number))),
            ]
            table.rows.append(Comparison(
                path: "catch-up lag p50, \(formatNumber(Double(writesPerSecond))) writes/s", unit: "ms",
                tidemark: Samples(lagP50).median, baseline: nil, goal: .none, details: lagDetails))
            table.rows.append(Comparison(
                path: "catch-up lag p99, \(formatNumber(Double(writesPerSecond))) writes/s", unit: "ms",
                tidemark: Samples(lagP99).median, baseline: nil, goal: .below(1000)))
            table.rows.append(Comparison(
                path: "copy + catch-up under that load", unit: "s",
                tidemark: Samples(catchUp).median, baseline: nil, goal: .none,
                details: [("runs_seconds", .array(catchUp.map(JSON.number)))]))
        }
        table.rows.append(Comparison(
            path: "peak RSS, Tidemark phases", unit: "MB",
            tidemark: megabytes(tidemarkPeak), baseline: nil, goal: .below(150),
            details: [("phases", .object(phasePeaks.map { ($0.0, JSON.number(megabytes($0.1))) })),
                      ("whole_process_mb", .number(megabytes(peakRSS))), ("per_phase_reset", .bool(memory.resettable))]))

        // Text.
        var lines: [String] = []
        lines.append("tidemark-bench migrate: demo shop, \(formatNumber(totalRows)) rows (\(zip(Self.tables, rowCounts).map { "\($0) \(formatNumber(Double($1)))" }.joined(separator: ", "))), \(formatNumber(n)) changes; median of \(runs) run\(runs == 1 ? "" : "s"), SQLite \(Connection.libraryVersion)")
        if !meetsIssueWorkload {
            lines.append("note: the goals are judged on ≥ 500,000 rows, ≥ 1,000,000 changes and ≥ 3 runs; this run is smaller")
        }
        lines.append("")
        lines.append(table.render())
        lines.append("")
        lines.append("wall seconds, min … median … max (CPU seconds, median):")
        lines.append(spreadLine("tidemark copy (Migrator open+run)", copy))
        lines.append(spreadLine("sqlite3 INSERT … SELECT", insertSelect))
        lines.append(spreadLine("sqlite3 INSERT … SELECT … WHERE true", rowCopy))
        lines.append(spreadLine("tidemark indexed copy, built after", indexed.after))
        lines.append(spreadLine("tidemark indexed copy, during", indexed.during))
        lines.append(spreadLine("sqlite3 INSERT … SELECT, indexed", indexed.insertSelect))
        lines.append(spreadLine("tidemark replay (Migrator.run)", replay))
        lines.append(spreadLine("sqlite3changeset_apply, same cache", apply))
        lines.append(spreadLine("sqlite3changeset_apply, default cache", applyDefault))
        lines.append("by CPU time: copy \(formatFixed(insertSelect.cpu.median / copy.cpu.median, decimals: 2))× (\(formatFixed(rowCopy.cpu.median / copy.cpu.median, decimals: 2))× WHERE true), replay \(formatFixed(apply.cpu.median / replay.cpu.median, decimals: 2))× (\(formatFixed(applyDefault.cpu.median / replay.cpu.median, decimals: 2))× default cache) the baseline")
        lines.append("replay workload: \(formatNumber(Double(setup.counts.inserts))) inserts, \(formatNumber(Double(setup.counts.updates))) updates, \(formatNumber(Double(setup.counts.deletes))) deletes over both tables, no row touched twice (a changeset keeps one change per row), transactions of \(ReplayWorkload.transactionSize); changeset \(formatNumber(Double(setup.changesetBytes) / 1e6)) MB, log \(formatNumber(Double(setup.logBytes) / 1e6)) MB; both results equal the post-workload source (sqldiff)")
        if lagRuns > 0 {
            lines.append("catch-up: per run p50 \(lagP50.map { formatFixed($0, decimals: 1) }.joined(separator: ", ")) ms; p99 \(lagP99.map { formatFixed($0, decimals: 1) }.joined(separator: ", ")) ms; max \(lagMax.map { formatFixed($0, decimals: 1) }.joined(separator: ", ")) ms; \(lagSamples) samples (every 10 ms: capture high-water seq in the source → applied LSN in the target), \(lagSeconds) s per run")
            lines.append("          writers: \(writerThreads) threads, autocommit, achieved \(achieved.map { formatNumber($0) }.joined(separator: ", ")) writes/s (target \(formatNumber(Double(writesPerSecond))))" + (writerSkips > 0 ? "; fell behind \(writerSkips)×" : "") + (writerFailures > 0 ? "; \(writerFailures) failed" : ""))
        }
        lines.append("peak RSS by phase: " + phasePeaks.map { "\($0.0) \(formatNumber(megabytes($0.1))) MB" }.joined(separator: ", ")
                     + (memory.resettable ? "" : " (peaks are cumulative: /proc/self/clear_refs refused)"))
        lines.append("baselines: sqlite3 -batch -bail target.db \"PRAGMA journal_mode = WAL; <the Migrator's CREATE TABLEs>; ATTACH … AS src; BEGIN; INSERT INTO t SELECT * FROM src.t …; COMMIT\"")
        lines.append("           the same with WHERE true on each SELECT")
        lines.append("           indexed copy: sqlite3 -batch -bail target.db \"PRAGMA journal_mode = WAL; CREATE TABLE customers …; \(indexed.indexes) × CREATE INDEX …; ATTACH … AS src; BEGIN; INSERT INTO customers SELECT * FROM src.customers; COMMIT\"")
        lines.append("           sqlite3changeset_apply(target, changeset in memory), one transaction; PRAGMA cache_size = -\(cacheKiB) (the Migrator's target connection's), and SQLite's default")

        let json = JSON.object([
            ("benchmark", .string("migrate")),
            ("database_rows", .int(Int(totalRows))), ("changes", .int(setup.changes)), ("runs", .int(runs)), ("seed", .string(String(seed))),
            ("sqlite_version", .string(Connection.libraryVersion)),
            ("peak_rss_bytes", .int(tidemarkPeak)),
            ("all_goals_met", .bool(table.allPassed)),
            ("meets_issue_workload", .bool(meetsIssueWorkload)),
            ("rows", .array(table.rows.map(\.json))),
        ])
        return Outcome(table: table, text: lines.joined(separator: "\n"), json: json)
    }

    // MARK: (a) copy

    /// The snapshot copy `runs` times (after a warm-up), each beside the
    /// `INSERT … SELECT` baselines: (tidemark, INSERT … SELECT, … WHERE true).
    private func measureSnapshotCopy(_ pristine: String, rowCounts: [Int], in dir: ScratchDirectory,
                                     memory: inout PeakMemory) throws -> (Runs, Runs, Runs) {
        var copy = Runs(), insertSelect = Runs(), rowCopy = Runs()
        progress("copy warm-up")
        let ddl = try memory.phase("copy") { try migratorCopy(pristine, in: dir, run: 0).ddl }
        func baselineScript(filter: String) -> String {
            (["PRAGMA journal_mode = WAL"] + ddl + [
                "ATTACH '\(pristine)' AS src", "BEGIN",
            ] + Self.tables.map { "INSERT INTO main.\(quoteIdentifier($0)) SELECT * FROM src.\(quoteIdentifier($0))\(filter)" } + ["COMMIT"])
                .joined(separator: ";\n") + ";"
        }
        // The same statements with `WHERE true`, which turns off SQLite's
        // transfer optimization (whole records copied without decoding them,
        // when an INSERT … SELECT has no WHERE and both tables match): what
        // a row-at-a-time copy such as a chunked one costs.
        let baselineDB = dir.file("insert-select.db")
        let insertSelectCommand = ExternalCommand(["sqlite3", "-batch", "-bail", baselineDB, baselineScript(filter: "")])
        let rowCommand = ExternalCommand(["sqlite3", "-batch", "-bail", baselineDB, baselineScript(filter: " WHERE true")])
        for command in [insertSelectCommand, rowCommand] {
            try removeDatabase(baselineDB)
            _ = try command.run()
            for (table, expected) in zip(Self.tables, rowCounts) {
                let n = try countRows(baselineDB, table)
                guard n == expected else { throw BenchmarkError("the INSERT … SELECT baseline copied \(n) rows of \(table), expected \(expected)") }
            }
        }
        for i in 1...runs {
            let ours = try memory.phase("copy") { try migratorCopy(pristine, in: dir, run: i).timing }
            copy.add(ours)
            try removeDatabase(baselineDB)
            let theirs = try insertSelectCommand.run()
            insertSelect.add(theirs)
            try removeDatabase(baselineDB)
            let rows = try rowCommand.run()
            rowCopy.add(rows)
            progress("copy run \(i)/\(runs): tidemark \(describe(ours)), INSERT … SELECT \(describe(theirs)), … WHERE true \(describe(rows))")
        }
        try removeDatabase(baselineDB)

        return (copy, insertSelect, rowCopy)
    }

    /// Wall and CPU seconds of a measured path and its baseline, for a row's JSON.
    static func details(_ ours: Runs, _ theirs: Runs?, _ command: String?) -> [(String, JSON)] {
        var d: [(String, JSON)] = [("tidemark_seconds", JSON.seconds(ours.wall)), ("tidemark_cpu_seconds", JSON.seconds(ours.cpu))]
        if let theirs {
            d += [("baseline_seconds", JSON.seconds(theirs.wall)), ("baseline_cpu_seconds", JSON.seconds(theirs.cpu)),
                  ("cpu_ratio", .number(theirs.cpu.median / ours.cpu.median))]
        }
        if let command { d.append(("baseline_command", .string(command))) }
        return d
    }

    /// The snapshot copy's goal row and its WHERE-true companion (the main
    /// report and `--only copy` print the same two).
    private func copyComparisons(totalRows: Double, copy: Runs, insertSelect: Runs, rowCopy: Runs) -> [Comparison] {
        [Comparison(
            path: "snapshot copy, full Migrator run", unit: "rows/s",
            tidemark: totalRows / copy.wall.median, baseline: totalRows / insertSelect.wall.median,
            goal: .atLeastTimesBaseline(0.8),
            details: [("rows", .int(Int(totalRows))), ("chunk_rows", .int(chunkRows))]
                + Self.details(copy, insertSelect, "sqlite3 -batch -bail target.db '<ATTACH; INSERT INTO t SELECT * FROM src.t per table>'")),
         Comparison(
            path: "  … vs INSERT … SELECT … WHERE true (no transfer optimization)", unit: "rows/s",
            tidemark: totalRows / copy.wall.median, baseline: totalRows / rowCopy.wall.median, goal: .none,
            details: Self.details(copy, rowCopy, "the same with WHERE true on each SELECT"))]
    }

    /// `--only copy`: the snapshot copy row and its WHERE-true companion.
    private func measureCopyOnly(in dir: ScratchDirectory) throws -> Outcome {
        var memory = PeakMemory()
        let pristine = dir.file("shop.db")
        progress("creating the demo shop database (\(formatNumber(Double(rows))) rows)")
        try DemoShop.create(path: pristine, rows: rows)
        let rowCounts = try Self.tables.map { try countRows(pristine, $0) }
        let (copy, insertSelect, rowCopy) = try measureSnapshotCopy(pristine, rowCounts: rowCounts, in: dir, memory: &memory)
        let totalRows = Double(rowCounts.reduce(0, +))
        var table = ComparisonTable()
        table.rows += copyComparisons(totalRows: totalRows, copy: copy, insertSelect: insertSelect, rowCopy: rowCopy)
        var lines: [String] = []
        lines.append("tidemark-bench migrate --only copy: demo shop, \(formatNumber(totalRows)) rows; median of \(runs) run\(runs == 1 ? "" : "s"), SQLite \(Connection.libraryVersion)")
        lines.append("")
        lines.append(table.render())
        lines.append("")
        lines.append("wall seconds, min … median … max (CPU seconds, median):")
        lines.append(spreadLine("tidemark copy (Migrator open+run)", copy))
        lines.append(spreadLine("sqlite3 INSERT … SELECT", insertSelect))
        lines.append(spreadLine("sqlite3 INSERT … SELECT … WHERE true", rowCopy))
        let json = JSON.object([("benchmark", .string("migrate")), ("only", .string("copy")), ("database_rows", .int(Int(totalRows))),
                                ("runs", .int(runs)), ("all_goals_met", .bool(table.allPassed)), ("rows", .array(table.rows.map(\.json)))])
        return Outcome(table: table, text: lines.joined(separator: "\n"), json: json)
    }

    /// One full Migrator run from a fresh copy of the pristine source into a
    /// new target; returns its timing and the target's CREATE TABLEs.
    func migratorCopy(_ pristine: String, in dir: ScratchDirectory, run: Int) throws -> (timing: Timing, ddl: [String]) {
        let d = dir.subdirectory("copy-\(run)")
        try makeDirectory(d)
        defer { try? removeTree(d) }
        try copyFile(from: pristine, to: d + "/source.db")
        // The copy's own writes reach the disk before the clock starts: the
        // baselines read the pristine file, which has no writes pending, so
        // flushing these during the measured run would charge the setup to
        // the Migrator.
        let fd = open(d + "/source.db", O_RDONLY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
        let plan = identityPlan(source: d + "/source.db", target: d + "/target.db", log: d + "/log")
        let (summary, timing) = try Stopwatch.measure { () throws -> MigrationSummary in
            var options = MigratorOptions()
            options.wholeTableChunks = wholeTableChunks
            let migrator = try Migrator.open(plan: plan, options: options)
            let summary = try migrator.run()
            try migrator.close()
            return summary
        }
        let expected = try Self.tables.reduce(0) { $0 + (try countRows(pristine, $1)) }
        guard summary.rowsCopied == expected, summary.caughtUp else {
            throw BenchmarkError("the Migrator copied \(summary.rowsCopied) rows, expected \(expected)")
        }
        let target = try Connection(path: d + "/target.db", mode: .readOnly)
        var ddl: [String] = []
        for t in Self.tables {
            let s = try target.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1")
            try s.bind(t, at: 1)
            guard try s.step() else { throw BenchmarkError("the Migrator did not create \(t)") }
            ddl.append(s.columnText(0))
        }
        return (timing, ddl)
    }

    // MARK: (a') indexed copy

    /// The customers table's secondary indexes in the indexed-copy runs:
    /// a plain, a composite and a partial one.
    static let customerIndexes = [
        "CREATE INDEX customers_email ON customers(email)",
        "CREATE INDEX customers_name ON customers(last_name, first_name)",
        "CREATE INDEX customers_created ON customers(created_at) WHERE balance > 0",
    ]

    struct IndexedCopy {
        var rows: Int
        var indexes: Int
        var sql: [String]
        var after = Runs(), during = Runs(), insertSelect = Runs()
    }

    /// The customers table with its indexes, copied `runs` times each way.
    private func measureIndexedCopy(_ pristine: String, in dir: ScratchDirectory, memory: inout PeakMemory) throws -> IndexedCopy {
        let source = dir.file("indexed-source.db")
        try copyFile(from: pristine, to: source)
        let tableSQL: String
        do {
            let c = try Connection(path: source, mode: .readWrite)
            for sql in Self.customerIndexes { try c.execute(sql) }
            let s = try c.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'customers'")
            guard try s.step() else { throw BenchmarkError("the demo shop has no customers table") }
            tableSQL = s.columnText(0)
            try c.close()
        }
        let rows = try countRows(source, "customers")
        var result = IndexedCopy(rows: rows, indexes: Self.customerIndexes.count, sql: Self.customerIndexes)
        // What a migration of this table stores: the table, then its indexes
        // (built after the copy unless maintained during it).
        let schema = TargetSchema(
            tables: [.init(source: "customers", target: "customers", createSQL: tableSQL)],
            indexes: Self.customerIndexes.enumerated().map { i, sql in
                .init(kind: .index, name: ["customers_email", "customers_name", "customers_created"][i], table: "customers", sql: sql)
            })
        let baselineDB = dir.file("indexed-insert-select.db")
        let script = (["PRAGMA journal_mode = WAL", tableSQL] + Self.customerIndexes + [
            "ATTACH '\(source)' AS src", "BEGIN", "INSERT INTO main.customers SELECT * FROM src.customers", "COMMIT",
        ]).joined(separator: ";\n") + ";"
        let command = ExternalCommand(["sqlite3", "-batch", "-bail", baselineDB, script])
        func ours(_ during: Bool, run: Int) throws -> Timing {
            let d = dir.subdirectory("indexed-\(during ? "during" : "after")-\(run)")
            try makeDirectory(d)
            defer { try? removeTree(d) }
            try copyFile(from: source, to: d + "/source.db")
            let plan = Plan(source: d + "/source.db", target: d + "/target.db", log: d + "/log", chunkRows: chunkRows,
                            tables: [TablePlan(source: "customers")])
            var options = MigratorOptions()
            options.indexesDuringCopy = during
            let (summary, timing) = try Stopwatch.measure { () throws -> MigrationSummary in
                let migrator = try Migrator.open(plan: plan, options: options, wrappingFeed: { $0 }, schema: schema)
                let summary = try migrator.run()
                try migrator.close()
                return summary
            }
            guard summary.rowsCopied == rows, summary.caughtUp else {
                throw BenchmarkError("the indexed copy copied \(summary.rowsCopied) rows, expected \(rows)")
            }
            let target = try Connection(path: d + "/target.db", mode: .readOnly)
            let n = try target.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'customers\\_%' ESCAPE '\\'")
            _ = try n.step()
            guard n.columnInt64(0) == Int64(Self.customerIndexes.count) else {
                throw BenchmarkError("the indexed copy's target has \(n.columnInt64(0)) of the \(Self.customerIndexes.count) indexes")
            }
            try target.close()
            return timing
        }
        progress("indexed copy warm-up (\(formatNumber(Double(rows))) customers, \(Self.customerIndexes.count) indexes)")
        _ = try memory.phase("copy") { try ours(false, run: 0) }
        for i in 1...runs {
            let after = try memory.phase("copy") { try ours(false, run: i) }
            let during = try memory.phase("copy") { try ours(true, run: i) }
            try removeDatabase(baselineDB)
            let theirs = try command.run()
            guard try countRows(baselineDB, "customers") == rows else { throw BenchmarkError("the indexed INSERT … SELECT baseline copied the wrong number of rows") }
            result.after.add(after)
            result.during.add(during)
            result.insertSelect.add(theirs)
            progress("indexed copy run \(i)/\(runs): built after \(describe(after)), maintained during \(describe(during)), INSERT … SELECT \(describe(theirs))")
        }
        try removeDatabase(baselineDB)
        try removeDatabase(source)
        return result
    }

    // MARK: (b) replay

    struct ReplaySetup {
        var source: String
        var preTarget: String
        var log: String
        var changeset: String
        var changes: Int
        var counts: (inserts: Int, updates: Int, deletes: Int)
        var changesetBytes: Int
        var logBytes: Int
        var directory: String
    }

    /// Migrates the pristine state (all tables `following`, nothing logged),
    /// then applies the workload to the captured source under a session,
    /// ships it into the log and writes the changeset.
    private func prepareReplay(_ pristine: String, in dir: ScratchDirectory) throws -> ReplaySetup {
        let d = dir.subdirectory("replay")
        try makeDirectory(d)
        let source = d + "/source.db", pre = d + "/pre-workload-target.db", log = d + "/log", changesetPath = d + "/workload.changeset"
        try copyFile(from: pristine, to: source)
        do {
            let migrator = try Migrator.open(plan: identityPlan(source: source, target: pre, log: log))
            let summary = try migrator.run()
            try migrator.close()
            guard summary.caughtUp, summary.changesReplayed == 0 else { throw BenchmarkError("the pre-workload migration did not end caught up and idle") }
        }
        let writer = try Connection(path: source, mode: .readWrite)
        let shipConnection = try Connection(path: source, mode: .readWrite)
        guard let sourceID = try Capture.storedSourceID(shipConnection) else { throw BenchmarkError("capture is not installed in \(source)") }
        let appender = try LogAppender(directory: log, sourceID: sourceID, options: LogOptions(durability: .none))
        let shipper = try Shipper(connection: shipConnection, appender: appender)
        let headBefore = appender.lastLSN
        let session = try SessionRecorder(connection: writer, tables: Self.tables)
        try ReplayWorkload.apply(to: writer, changes: changes, seed: seed) { _ = try shipper.drain() }
        _ = try shipper.drain()
        let shipped = Int(appender.lastLSN.rawValue - headBefore.rawValue)
        try appender.close()
        let changesetBytes = try session.writeChangeset(to: changesetPath)
        session.close()
        try writer.close()
        try shipConnection.close()
        guard shipped == changes else { throw BenchmarkError("the log received \(shipped) changes, expected \(changes)") }
        let counts = try Changeset(path: changesetPath).count()
        guard counts.inserts + counts.updates + counts.deletes == changes else {
            throw BenchmarkError("the changeset holds \(counts.inserts + counts.updates + counts.deletes) changes, expected \(changes)")
        }
        let logBytes = try LogDirectory(log).segments().reduce(0) { $0 + (try fileSize($1.path)) }
        // Settle every file (WAL checkpointed into the main files).
        try copyDatabase(from: pre, to: d + "/scratch.db")
        try copyDatabase(from: source, to: d + "/scratch.db")
        try removeDatabase(d + "/scratch.db")
        return ReplaySetup(source: source, preTarget: pre, log: log, changeset: changesetPath, changes: changes, counts: counts,
                           changesetBytes: changesetBytes, logBytes: logBytes, directory: d)
    }

    /// Our replay: `Migrator.run()` on a fresh copy of the pre-workload
    /// target, whose tables are all following, with the log full.
    private func replayRun(_ setup: ReplaySetup, checkResult: Bool) throws -> Timing {
        let target = setup.directory + "/tidemark-target.db"
        try copyDatabase(from: setup.preTarget, to: target)
        let migrator = try Migrator.open(plan: identityPlan(source: setup.source, target: target, log: setup.log))
        let (summary, timing) = try Stopwatch.measure { try migrator.run() }
        try migrator.close()
        guard summary.changesReplayed == setup.changes, summary.caughtUp else {
            throw BenchmarkError("the Migrator replayed \(summary.changesReplayed) changes, expected \(setup.changes)")
        }
        if checkResult { try checkEqual(setup.source, target, what: "the replayed target") }
        try removeDatabase(target)
        return timing
    }

    /// The baseline: `sqlite3changeset_apply` on another fresh copy, with
    /// `cacheKiB` of page cache (nil: SQLite's default).
    private func changesetRun(_ setup: ReplaySetup, cacheKiB: Int?, checkResult: Bool) throws -> Timing {
        let target = setup.directory + "/changeset-target.db"
        try copyDatabase(from: setup.preTarget, to: target)
        let changeset = try Changeset(path: setup.changeset)
        let connection = try Connection(path: target, mode: .readWrite)
        if let cacheKiB { try connection.execute("PRAGMA cache_size = -\(cacheKiB)") }
        let ((), timing) = try Stopwatch.measure { try changeset.apply(to: connection) }
        try connection.close()
        if checkResult { try checkEqual(setup.source, target, what: "the changeset-applied target") }
        try removeDatabase(target)
        return timing
    }

    /// `sqldiff --table T a b` prints nothing for every table.
    private func checkEqual(_ a: String, _ b: String, what: String) throws {
        let out = a + ".sqldiff"
        defer { try? removeTree(out) }
        for t in Self.tables {
            _ = try ExternalCommand(["sqldiff", "--table", t, a, b], output: .file(out)).run()
            let size = try fileSize(out)
            guard size == 0 else { throw BenchmarkError("\(what) differs from the source in table \(t) (sqldiff printed \(size) bytes)") }
        }
    }

    // MARK: (c) catch-up

    struct LagRun {
        var lagsMillis: [Double]
        var catchUpSeconds: Double
        var writes: PacedWriters.Outcome
    }

    /// A fresh source under a steady write load, migrated with `follow`:
    /// once caught up, a sampler notes the source's capture high-water seq
    /// every 10 ms; a sample's lag is the time until the target's applied
    /// LSN reaches it.
    private func lagRun(_ pristine: String, in dir: ScratchDirectory, run: Int) throws -> LagRun {
        let d = dir.subdirectory("lag-\(run)")
        try makeDirectory(d)
        defer { try? removeTree(d) }
        let source = d + "/source.db"
        try copyFile(from: pristine, to: source)
        var options = MigratorOptions(follow: true)
        options.idleMillis = 5
        let migrator = try Migrator.open(plan: identityPlan(source: source, target: d + "/target.db", log: d + "/log"), options: options)
        let writers = PacedWriters(path: source, threads: writerThreads, writesPerSecond: writesPerSecond)
        try writers.start()

        let sampling = SharedFlag()
        let samplerStop = SharedFlag()
        let pending = Shared<[(seq: Int64, at: UInt64)]>([])
        let sampler = JoinableThread {
            guard let c = try? Connection(path: source, mode: .readOnly) else { return }
            var next = monotonicNanos()
            while !samplerStop.isSet {
                sleep(until: next)
                next += 10_000_000
                guard sampling.isSet, let seq = try? Capture.lastCapturedSeq(c) else { continue }
                let at = monotonicNanos()
                pending.withLock { $0.append((seq, at)) }
            }
        }
        let start = monotonicNanos()
        let sourceReader = try Connection(path: source, mode: .readOnly)
        var caughtUpAt: UInt64?
        var samplingEnds: UInt64 = .max
        var writes: PacedWriters.Outcome?
        var finalSeq: Int64 = .max
        var lags: [Double] = []
        lags.reserveCapacity(Int(lagSeconds * 100) + 16)
        let result: Result<MigrationSummary, Error> = Result {
            try migrator.run { p in
                let now = monotonicNanos()
                if caughtUpAt == nil && p.caughtUp {
                    caughtUpAt = now
                    samplingEnds = now + UInt64(lagSeconds * 1e9)
                    sampling.set(true)
                }
                let applied = Int64(p.appliedLSN.rawValue)
                let left = pending.withLock { queue -> Int in
                    var k = 0
                    while k < queue.count && queue[k].seq <= applied {
                        lags.append(millis(queue[k].at, now))
                        k += 1
                    }
                    queue.removeFirst(k)
                    return queue.count
                }
                if now >= samplingEnds && writes == nil {
                    // Sampling is over: stop the writers, then let the
                    // migration apply their last changes, so the target can
                    // be checked equal to the source.
                    sampling.set(false)
                    writes = writers.finish()
                    finalSeq = (try? Capture.lastCapturedSeq(sourceReader)) ?? 0
                }
                if writes != nil && left == 0 && applied >= finalSeq { migrator.stop() }
            }
        }
        samplerStop.set(true)
        sampler.join()
        if writes == nil { writes = writers.finish() }
        try migrator.close()
        _ = try result.get()
        guard let caughtUpAt else { throw BenchmarkError("the migration never caught up") }
        try checkEqual(source, d + "/target.db", what: "the target after catch-up run \(run + 1)")
        return LagRun(lagsMillis: lags, catchUpSeconds: Double(caughtUpAt - start) / 1e9, writes: writes!)
    }

    // MARK: Profiling

    /// `--profile`: only the chosen path, `runs` times, for a profiler
    /// (e.g. `valgrind --tool=callgrind … --profile replay --changes 100000`).
    private func runForProfiler(_ path: String, in dir: ScratchDirectory) throws {
        let pristine = dir.file("shop.db")
        if reuse == nil { try DemoShop.create(path: pristine, rows: rows) }
        if path == "copy" {
            for i in 1...runs {
                let t = try migratorCopy(pristine, in: dir, run: i).timing
                progress("copy run \(i)/\(runs): \(describe(t))")
            }
        } else {
            var setup: ReplaySetup
            if let reuse {
                let d = reuse + "/replay"
                let counts = try Changeset(path: d + "/workload.changeset").count()
                setup = ReplaySetup(source: d + "/source.db", preTarget: d + "/pre-workload-target.db", log: d + "/log",
                                    changeset: d + "/workload.changeset", changes: counts.inserts + counts.updates + counts.deletes,
                                    counts: counts, changesetBytes: 0, logBytes: 0, directory: d)
            } else {
                setup = try prepareReplay(pristine, in: dir)
                progress("replay setup in \(dir.path) (reuse with --keep --reuse \(dir.path))")
            }
            for i in 1...runs {
                let t = try replayRun(setup, checkResult: false)
                progress("replay run \(i)/\(runs): \(describe(t)) (\(formatNumber(Double(setup.changes) / t.wallSeconds)) changes/s)")
            }
        }
    }
}

/// The number of rows of `table` in the database at `path`.
func countRows(_ path: String, _ table: String) throws -> Int {
    let c = try Connection(path: path, mode: .readOnly)
    let s = try c.prepare("SELECT count(*) FROM \(quoteIdentifier(table))")
    _ = try s.step()
    return Int(s.columnInt64(0))
}

/// The replay benchmark's workload on the demo shop: inserts of new rows and
/// updates and deletes of existing ones, randomly interleaved, in
/// transactions of ``transactionSize``. No row is touched twice, so a
/// session changeset (one change per row) holds every change the capture
/// triggers log, and the two baselines do exactly the same work.
enum ReplayWorkload {
    static let transactionSize = 1_000
    /// Ship (call `ship`) after this many transactions, so the outbox stays small.
    static let shipEvery = 50

    private enum Key { case customer(Int64), line(Int64, Int64) }

    static func apply(to c: Connection, changes: Int, seed: UInt64, ship: () throws -> Void) throws {
        var random = SplitMix64(seed: seed)
        var pool: [Key] = []
        try c.prepare("SELECT id FROM customers").forEachRow { pool.append(.customer($0.columnInt64(0))) }
        try c.prepare("SELECT order_id, line FROM order_lines").forEachRow { pool.append(.line($0.columnInt64(0), $0.columnInt64(1))) }
        for i in stride(from: pool.count - 1, to: 0, by: -1) { pool.swapAt(i, random.below(i + 1)) }
        var updates = min(changes * 30 / 100, pool.count * 6 / 10)
        var deletes = min(changes * 15 / 100, pool.count * 3 / 10)
        var inserts = changes - updates - deletes
        var next = 0
        func top(_ sql: String) throws -> Int64 { let s = try c.prepare(sql); _ = try s.step(); return s.columnInt64(0) }
        var nextCustomer = try top("SELECT max(id) FROM customers") + 1
        var nextOrder = try top("SELECT max(order_id) FROM order_lines") + 1
        var nextLine: Int64 = 1

        let insertCustomer = try c.prepare("INSERT INTO customers(id, email, first_name, last_name, balance, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        let updateCustomer = try c.prepare("UPDATE customers SET balance = balance + ?1, email = ?2 WHERE id = ?3")
        let deleteCustomer = try c.prepare("DELETE FROM customers WHERE id = ?1")
        let insertLine = try c.prepare("INSERT INTO order_lines(order_id, line, sku, qty, unit_price) VALUES (?1, ?2, ?3, ?4, ?5)")
        let updateLine = try c.prepare("UPDATE order_lines SET qty = qty + ?1, unit_price = ?2 WHERE order_id = ?3 AND line = ?4")
        let deleteLine = try c.prepare("DELETE FROM order_lines WHERE order_id = ?1 AND line = ?2")

        var done = 0, transactions = 0
        while done < changes {
            try c.transaction(.immediate) {
                for _ in 0..<min(transactionSize, changes - done) {
                    let k = done
                    let r = random.below(inserts + updates + deletes)
                    let statement: Statement
                    if r < inserts {
                        inserts -= 1
                        if random.below(100) < 40 {
                            statement = insertCustomer
                            try statement.execute([.integer(nextCustomer), .text("bench\(nextCustomer)@example.com"), .text("Bench"),
                                                   .text("Writer\(k % 97)"), .real(Double(random.below(100_000)) / 100),
                                                   k % 5 == 0 ? .null : .text("note \(k)"), .integer(1_800_000_000 + Int64(k))])
                            nextCustomer += 1
                        } else {
                            statement = insertLine
                            try statement.execute([.integer(nextOrder), .integer(nextLine), .text("sku-\(random.below(5000))"),
                                                   .integer(Int64(1 + random.below(9))), .real(Double(random.below(10_000)) / 100)])
                            nextLine += 1
                            if nextLine > 3 { nextLine = 1; nextOrder += 1 }
                        }
                    } else if r < inserts + updates {
                        updates -= 1
                        switch pool[next] {
                        case .customer(let id):
                            statement = updateCustomer
                            try statement.execute([.real(Double(1 + random.below(1000)) / 8), .text("updated\(k)@example.com"), .integer(id)])
                        case .line(let order, let line):
                            statement = updateLine
                            try statement.execute([.integer(Int64(1 + random.below(5))), .real(Double(random.below(10_000)) / 100 + 0.005),
                                                   .integer(order), .integer(line)])
                        }
                        next += 1
                    } else {
                        deletes -= 1
                        switch pool[next] {
                        case .customer(let id):
                            statement = deleteCustomer
                            try statement.execute([.integer(id)])
                        case .line(let order, let line):
                            statement = deleteLine
                            try statement.execute([.integer(order), .integer(line)])
                        }
                        next += 1
                    }
                    guard c.changes == 1 else { throw BenchmarkError("workload change \(k) (\(statement.sql)) changed \(c.changes) rows") }
                    done += 1
                }
            }
            transactions += 1
            if transactions % shipEvery == 0 { try ship() }
        }
    }
}
