#if canImport(Glibc)
import TidemarkTestSupport
import Glibc
#endif
import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// `tidemark-bench postgres`: a SQLite table loaded into PostgreSQL by
/// Tidemark, by the `sqlite3 -csv | psql \copy` pipe and by pgloader, side by
/// side on the same generated table, in one run.
///
/// - Copy: each tool loads a fresh copy of the source into a fresh database
///   (median wall time of `--runs`).
/// - Values changed: every loaded row is read back (binary results) and
///   compared with the source value by value (REAL bit for bit, TEXT and
///   BLOB bytes, NULLs), once per tool.
/// - Replay: with Tidemark's migration caught up, `--changes` inserts,
///   updates and deletes are written to the captured source; the Migrator's
///   next run (shipping and replaying them) is timed.
/// - Verify of the whole table, under paced writes of a following migration
///   (`--verify-writes-per-second`, 0 = idle).
struct PostgresBenchmark: ParsableCommand, BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "postgres",
        abstract: "A SQLite table into PostgreSQL: Tidemark beside the sqlite3|psql COPY pipe and pgloader; replay and verify.",
        discussion: """
        Goals: Tidemark copy ≥ 2× pgloader's speed and ≥ 0.7× the psql COPY pipe; replay ≥ 150,000 \
        changes/s; 0 values changed. Starts a throwaway PostgreSQL cluster (initdb, pg_ctl) unless --server is given. \
        Needs sqlite3, psql and pgloader (apt-get install sqlite3 postgresql-client pgloader).
        """
    )

    @Option(help: "Rows of the generated source table, at least 1,000,000 for the goals.")
    var rows = 1_000_000

    @Option(help: "Changes written to the captured source and replayed (insert/update/delete mix); default 200,000, or rows ÷ 5 for a table under 1,000,000 rows.")
    var changes: Int?

    /// `--changes`, or its default for the table's size (a quick run stays quick).
    private var changeCount: Int { changes ?? (rows >= 1_000_000 ? 200_000 : max(100, rows / 5)) }

    @Option(help: "Measured runs of each tool; medians are reported.")
    var runs = 3

    @Option(help: "chunk_rows of the migration plan.")
    var chunkRows = 10_000

    @Option(help: "Writes per second on the source while verify runs (0: verify an idle source).")
    var verifyWritesPerSecond = 500

    @Option(help: "Seed of the generated table and the changes.")
    var seed: UInt64 = 20_261_201

    @Option(help: "An existing PostgreSQL server (postgres://user@host:port/db or postgres:///db?host=/socket/dir); databases tmbench_* are created and dropped in it.")
    var server: String?

    @Option(help: "Seconds after which a pgloader run is killed (it can hang on data it cannot format).")
    var pgloaderTimeout = 900

    @Flag(help: "Edge rows with REALs beyond float4's range and subnormals too (pgloader then loads no row: its speed is no baseline).")
    var fullEdges = false

    @Flag(help: "Skip pgloader (its row then shows no baseline).")
    var noPgloader = false

    @OptionGroup var common: BenchCommonOptions

    func validate() throws {
        guard rows >= 1_000 else { throw ValidationError("--rows must be at least 1000") }
        guard changeCount >= 100 else { throw ValidationError("--changes must be at least 100") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard chunkRows >= 1 else { throw ValidationError("--chunk-rows must be at least 1") }
        guard verifyWritesPerSecond >= 0 else { throw ValidationError("--verify-writes-per-second must be 0 or more") }
    }

    private var meetsIssueWorkload: Bool { rows >= 1_000_000 && runs >= 3 }

    func run() throws {
        let dir = try ScratchDirectory(in: scratchParent(scratch), name: "postgres")
        defer { if !keep { try? dir.remove() } }
        guard !dir.path.contains("'") else { throw BenchmarkError("the scratch path must not contain a quote: \(dir.path)") }
        progress(server == nil ? "starting a throwaway PostgreSQL cluster" : "connecting to the server")
        let pg = try server.map { try BenchPostgres(uri: $0) } ?? BenchPostgres()
        defer { pg.dropAll() }
        let outcome = try measure(in: dir, pg)
        if json {
            print(outcome.json.text)
        } else {
            print(outcome.text)
            if keep { print("scratch files kept in \(dir.path)") }
        }
        if check && !(outcome.table.allPassed && outcome.tidemarkAvailable && meetsIssueWorkload) { throw ExitCode(1) }
    }

    struct Outcome {
        var table: ComparisonTable
        var tidemarkAvailable: Bool
        var text: String
        var json: JSON
    }

    // MARK: Measuring

    private func measure(in dir: ScratchDirectory, _ pg: BenchPostgres) throws -> Outcome {
        let pristine = dir.file("source.db")
        progress("generating the source table (\(formatNumber(Double(rows))) rows, seed \(seed))")
        try PostgresSourceTable.create(path: pristine, rows: rows, seed: seed, fullEdges: fullEdges)
        let sourceBytes = try fileSize(pristine)

        var pipe = Runs(), loader = Runs(), ours = Runs(), oursCopySeconds = Samples()
        var replay = Runs(), verify = Runs()
        // CPU seconds of the PostgreSQL server during each timed phase.
        var pipeServer = Samples(), loaderServer = Samples(), oursServer = Samples(), replayServer = Samples()
        var pipeDiff: ValueDifferences?, loaderDiff: ValueDifferences?, oursDiff: ValueDifferences?, replayDiff: ValueDifferences?
        var loaderStatus = "not run"
        var tidemarkError: String?, verifyError: String?
        var verifyReports: [String] = []
        var replayed = 0, workload = ReplayCounts()
        var verifyWrites: [Double] = [], verifyDifferences: [Int] = []

        // The pipe's two scripts, in files: no SQL in a shell word. REAL goes
        // through printf('%!.17g'): sqlite3's own CSV text has 15 digits,
        // which rounds -1.7976931348623157e308 out of double's range and
        // stops the whole COPY.
        let querySQL = dir.file("pipe-query.sql")
        try writeText(querySQL, """
            SELECT id, printf('%!.17g', r), name, n, CASE WHEN data IS NULL THEN NULL ELSE '\\x' || hex(data) END, note FROM t ORDER BY id;

            """)
        let copyScript = dir.file("pipe-copy.psql")
        try writeText(copyScript, "\\copy t FROM pstdin (FORMAT csv)\n")

        for i in 1...runs {
            let first = i == 1
            // (2) sqlite3 -csv | psql \copy into a pre-created table.
            do {
                let db = try pg.createDatabase("pipe\(i)")
                let c = try PGConnection(pg.uri(db))
                try c.execute(PostgresSourceTable.postgresCreateSQL)
                c.close()
                let cpu0 = pg.serverSeconds()
                let t = try shell("set -o pipefail; sqlite3 -batch -bail -csv '\(pristine)' < '\(querySQL)' | psql -X -q -v ON_ERROR_STOP=1 -d \"$TIDEMARK_BENCH_PGURI\" -f '\(copyScript)'",
                                  uri: pg.uri(db), log: dir.file("pipe.log"))
                pipe.add(t)
                if let cpu0, let cpu1 = pg.settledServerSeconds() { pipeServer.add(cpu1 - cpu0) }
                if first { progress("checking the psql pipe's values"); pipeDiff = try ValueDifferences.compare(source: pristine, target: pg.uri(db)) }
                try pg.dropDatabase(db)
                progress("run \(i)/\(runs): sqlite3 | psql \\copy \(describe(t))")
            }
            // (3) pgloader with its defaults.
            if !noPgloader {
                let db = try pg.createDatabase("pgloader\(i)")
                let source = dir.file("pgloader-source.db")
                try copyFile(from: pristine, to: source)
                let log = dir.file("pgloader.log")
                do {
                    let cpu0 = pg.serverSeconds()
                    let t = try shell("timeout --kill-after=10 \(pgloaderTimeout) pgloader 'sqlite://\(source)' \"$TIDEMARK_BENCH_PGLOADER_URI\"", uri: pg.uri(db), loaderURI: pg.pgloaderURI(db), log: log)
                    loader.add(t)
                    if let cpu0, let cpu1 = pg.settledServerSeconds() { loaderServer.add(cpu1 - cpu0) }
                    loaderStatus = "exit 0"
                    if first { progress("checking pgloader's values"); loaderDiff = try ValueDifferences.compare(source: pristine, target: pg.uri(db)) }
                    progress("run \(i)/\(runs): pgloader \(describe(t))")
                } catch let e as BenchmarkError {
                    loaderStatus = e.description
                    progress("run \(i)/\(runs): pgloader failed: \(e) (its output: \(log))")
                }
                try removeDatabase(source)
                try pg.dropDatabase(db)
            }
            // (4) Tidemark, then (6) replay and (7) verify on its migration.
            if tidemarkError == nil {
                let r = try tidemarkRun(run: i, in: dir, pristine: pristine, pg, compare: first)
                switch r {
                case .unavailable(let why):
                    tidemarkError = why
                    progress("run \(i)/\(runs): Tidemark into PostgreSQL not available yet: \(why)")
                case .measured(let m):
                    ours.add(m.copy)
                    if let c = m.copyServerCPU { oursServer.add(c) }
                    if let c = m.replayServerCPU { replayServer.add(c) }
                    oursCopySeconds.add(m.copySeconds)
                    if let d = m.copyDiff { oursDiff = d }
                    if let d = m.replayDiff { replayDiff = d }
                    replay.add(m.replay)
                    replayed = m.replayed
                    workload = m.workload
                    if let v = m.verify { verify.add(v); verifyDifferences.append(m.verifyDifferences) }
                    if let e = m.verifyError { verifyError = e }
                    if !m.verifyReport.isEmpty { verifyReports.append(m.verifyReport) }
                    if let w = m.verifyWritesPerSecond { verifyWrites.append(w) }
                    progress("run \(i)/\(runs): tidemark copy \(describe(m.copy)), replay \(describe(m.replay))"
                             + (m.verify.map { ", verify \(describe($0))" } ?? ""))
                }
            }
        }

        // The table.
        let n = Double(rows)
        var table = ComparisonTable()
        let oursRate = ours.count > 0 ? n / ours.wall.median : .nan
        func seconds(_ r: Runs) -> [(String, JSON)] { r.count > 0 ? [("seconds", JSON.seconds(r.wall)), ("cpu_seconds", JSON.seconds(r.cpu))] : [] }
        // A Tidemark figure not measured (not available yet) is NaN: printed
        // "nan", never a met goal, null in JSON.
        let pipeRate = pipe.count > 0 ? n / pipe.wall.median : .nan
        table.rows.append(Comparison(
            path: "copy vs sqlite3 -csv | psql \\copy", unit: "rows/s",
            tidemark: oursRate, baseline: pipeRate, goal: .atLeastTimesBaseline(0.7),
            details: [("rows", .int(rows))] + (ours.count > 0 ? [("tidemark_seconds", JSON.seconds(ours.wall)), ("tidemark_copy_seconds", JSON.seconds(oursCopySeconds))] : [])
                + [("baseline_seconds", JSON.seconds(pipe.wall)), ("baseline_command", .string("sqlite3 -csv src.db < query.sql | psql -f copy.psql (\\copy t FROM pstdin (FORMAT csv))"))]))
        if !noPgloader {
            table.rows.append(Comparison(
                path: "copy vs pgloader (defaults)", unit: "rows/s",
                tidemark: oursRate, baseline: loader.count > 0 ? n / loader.wall.median : nil, goal: .atLeastTimesBaseline(2),
                details: [("baseline_seconds", JSON.seconds(loader.wall)), ("baseline_command", .string("pgloader sqlite:///src.db postgresql://user@unix:/socket:port/db")),
                          ("baseline_status", .string(loaderStatus))]))
        }
        func changed(_ d: ValueDifferences?) -> Double? { d.map { Double($0.changedValues + $0.missingRows * PostgresSourceTable.columns.count) } }
        table.rows.append(Comparison(
            path: "values changed by the copy (vs psql pipe)", unit: "values",
            tidemark: changed(oursDiff) ?? .nan, baseline: changed(pipeDiff), goal: .below(1),
            details: [("tidemark_differences", oursDiff?.json ?? .null), ("baseline_differences", pipeDiff?.json ?? .null)]))
        if !noPgloader {
            table.rows.append(Comparison(
                path: "values changed by the copy (vs pgloader)", unit: "values",
                tidemark: changed(oursDiff) ?? .nan, baseline: changed(loaderDiff), goal: .none,
                details: [("baseline_differences", loaderDiff?.json ?? .null)]))
        }
        table.rows.append(Comparison(
            path: "replay of \(formatNumber(Double(changeCount))) changes into PostgreSQL", unit: "changes/s",
            tidemark: replay.count > 0 ? Double(replayed) / replay.wall.median : .nan, baseline: nil, goal: .atLeast(150_000),
            details: [("changes", .int(replayed)), ("inserts", .int(workload.inserts)), ("updates", .int(workload.updates)),
                      ("deletes", .int(workload.deletes))] + seconds(replay)))
        table.rows.append(Comparison(
            path: "values changed after replay", unit: "values",
            tidemark: changed(replayDiff) ?? .nan, baseline: nil, goal: .below(1), details: [("tidemark_differences", replayDiff?.json ?? .null)]))
        if verify.count > 0 {
            let rowsVerified = Double(rows + workload.inserts - workload.deletes)
            table.rows.append(Comparison(
                path: "verify of \(formatNumber(rowsVerified)) rows, " + (verifyWritesPerSecond > 0 ? "\(formatNumber(Double(verifyWritesPerSecond))) writes/s" : "idle source"),
                unit: "rows/s", tidemark: rowsVerified / verify.wall.median, baseline: nil, goal: .none,
                details: seconds(verify) + [("writes_per_second_achieved", .array(verifyWrites.map(JSON.number))),
                                            ("reports", .array(verifyReports.map(JSON.string)))]))
            table.rows.append(Comparison(
                path: "rows verify found not equal (worst run)", unit: "rows",
                tidemark: Double(verifyDifferences.max() ?? 0), baseline: nil, goal: .below(1),
                details: [("runs", .array(verifyDifferences.map(JSON.int)))]))
        }

        // Text.
        var lines: [String] = []
        lines.append("tidemark-bench postgres: table t, \(formatNumber(n)) rows × 6 columns (SQLite file \(formatNumber(megabytes(sourceBytes))) MB), \(formatNumber(Double(changeCount))) changes; median of \(runs) run\(runs == 1 ? "" : "s"); PostgreSQL \(pg.serverVersion / 10_000).\(pg.serverVersion % 10_000) (\(pg.description)), SQLite \(Connection.libraryVersion)")
        if !meetsIssueWorkload { lines.append("note: the goals are judged on ≥ 1,000,000 rows and ≥ 3 runs; this run is smaller") }
        if let tidemarkError { lines.append("Tidemark into PostgreSQL: not available yet (\(tidemarkError))") }
        lines.append("")
        lines.append(table.render())
        lines.append("")
        lines.append("wall seconds, min … median … max (CPU seconds of this process or the child, median):")
        if ours.count > 0 {
            lines.append(spreadLine("tidemark copy (Migrator open+run)", ours))
            lines.append("  \("  … of which copy (summary)".padding(to: 38)) \(formatFixed(oursCopySeconds.median, decimals: 3))")
        }
        lines.append(spreadLine("sqlite3 -csv | psql \\copy", pipe))
        if loader.count > 0 { lines.append(spreadLine("pgloader", loader)) }
        if replay.count > 0 { lines.append(spreadLine("tidemark replay (Migrator.run)", replay)) }
        if verify.count > 0 { lines.append(spreadLine("tidemark verify", verify)) }
        let serverCPU: [(String, Samples)] = [("tidemark copy", oursServer), ("psql pipe", pipeServer), ("pgloader", loaderServer), ("tidemark replay", replayServer)]
        if serverCPU.contains(where: { $0.1.count > 0 }) {
            lines.append("PostgreSQL server CPU seconds (median): " + serverCPU.filter { $0.1.count > 0 }.map { "\($0.0) \(formatFixed($0.1.median, decimals: 2))" }.joined(separator: ", "))
        }
        lines.append("rates: " + ([("tidemark", ours), ("psql pipe", pipe), ("pgloader", loader)] as [(String, Runs)])
            .filter { $0.1.count > 0 }.map { "\($0.0) \(formatNumber(n / $0.1.wall.median)) rows/s" }.joined(separator: ", "))
        lines.append("values read back from PostgreSQL (binary) and compared with the source, REAL bit for bit, TEXT/BLOB bytes, NULLs:")
        for (name, d) in [("tidemark", oursDiff), ("tidemark after replay", replayDiff), ("psql pipe", pipeDiff), ("pgloader", loaderDiff)] {
            guard let d else { continue }
            lines.append("  \(name.padding(to: 22)) \(d.summary)" + (d.examples.isEmpty ? "" : "; e.g. " + d.examples.prefix(2).joined(separator: "; ")))
        }
        lines.append("pgloader: \(noPgloader ? "skipped (--no-pgloader)" : loaderStatus)")
        if replay.count > 0 {
            lines.append("replay workload: \(formatNumber(Double(workload.inserts))) inserts, \(formatNumber(Double(workload.updates))) updates, \(formatNumber(Double(workload.deletes))) deletes in transactions of \(PostgresReplayWorkload.transactionSize), no row touched twice; timed: Migrator.run() (ships the outbox into the log and replays it)")
        }
        if !verifyReports.isEmpty { lines.append("verify: " + verifyReports.joined(separator: "; ")) }
        if let verifyError { lines.append("verify: not available yet (\(verifyError))") }
        lines.append("baselines: sqlite3 -batch -bail -csv src.db < query.sql | psql -X -q -v ON_ERROR_STOP=1 -d <db> -f copy.psql, into a pre-created table (bigint primary key, double precision, text, bigint, bytea, text);")
        lines.append("           the query selects REAL as printf('%!.17g', r) (sqlite3's CSV has 15 digits: -DBL_MAX then fails the COPY), BLOB as '\\x' || hex(data) (bytea's hex input), the rest as sqlite3 prints it; copy.psql: \\copy t FROM pstdin (FORMAT csv)")
        lines.append("           pgloader sqlite:///src.db postgresql://postgres@unix:/socket/dir:port/db, its defaults (creates the table and its index itself)")

        let json = JSON.object([
            ("benchmark", .string("postgres")),
            ("rows", .int(rows)), ("changes", .int(changeCount)), ("runs", .int(runs)), ("seed", .string(String(seed))),
            ("postgres_version", .int(pg.serverVersion)), ("sqlite_version", .string(Connection.libraryVersion)),
            ("tidemark_available", .bool(tidemarkError == nil)), ("tidemark_error", tidemarkError.map(JSON.string) ?? .null),
            ("verify_error", verifyError.map(JSON.string) ?? .null),
            ("pgloader_status", .string(noPgloader ? "skipped" : loaderStatus)),
            ("baseline_seconds", .object([("psql_pipe", JSON.seconds(pipe.wall)), ("pgloader", JSON.seconds(loader.wall))])),
            ("server_cpu_seconds", .object([("tidemark_copy", JSON.seconds(oursServer)), ("psql_pipe", JSON.seconds(pipeServer)),
                                            ("pgloader", JSON.seconds(loaderServer)), ("tidemark_replay", JSON.seconds(replayServer))])),
            ("values_changed", .object([("tidemark", oursDiff?.json ?? .null), ("tidemark_after_replay", replayDiff?.json ?? .null),
                                        ("psql_pipe", pipeDiff?.json ?? .null), ("pgloader", loaderDiff?.json ?? .null)])),
            ("all_goals_met", .bool(table.allPassed && tidemarkError == nil)),
            ("meets_issue_workload", .bool(meetsIssueWorkload)),
            ("table", .array(table.rows.map(\.json))),
        ])
        return Outcome(table: table, tidemarkAvailable: tidemarkError == nil, text: lines.joined(separator: "\n"), json: json)
    }

    // MARK: Tidemark

    enum TidemarkRun {
        case unavailable(String)
        case measured(Measured)
    }

    struct Measured {
        var copy: Timing
        var copySeconds: Double
        var copyDiff: ValueDifferences?
        var replay: Timing
        var replayed: Int
        var workload: ReplayCounts
        var replayDiff: ValueDifferences?
        var verify: Timing?
        var verifyError: String?
        var verifyReport: String
        var verifyDifferences = 0
        var copyServerCPU: Double?
        var replayServerCPU: Double?
        var verifyWritesPerSecond: Double?
    }

    /// One Tidemark run: a full Migrator run (open + run) from a fresh
    /// source copy into a fresh database, then the replay workload and a
    /// timed catch-up run, then verify.
    private func tidemarkRun(run: Int, in dir: ScratchDirectory, pristine: String, _ pg: BenchPostgres, compare: Bool) throws -> TidemarkRun {
        let d = dir.subdirectory("tidemark-\(run)")
        try makeDirectory(d)
        defer { try? removeTree(d) }
        let source = d + "/source.db"
        try copyFile(from: pristine, to: source)
        let db = try pg.createDatabase("tidemark\(run)")
        defer { try? pg.dropDatabase(db) }
        let uri = pg.uri(db)
        let plan = Plan(source: source, target: uri, log: d + "/log", chunkRows: chunkRows, tables: [TablePlan(source: PostgresSourceTable.name)])

        // (4) Copy. Until the Migrator takes PostgreSQL targets, opening
        // fails; the row then says so instead of failing the benchmark.
        let migrator: Migrator
        let summary: MigrationSummary
        let copy: Timing
        let copyCPU0 = pg.serverSeconds()
        do {
            let ((m, s), t) = try Stopwatch.measure { () throws -> (Migrator, MigrationSummary) in
                let m = try Migrator.open(plan: plan)
                return (m, try m.run())
            }
            (migrator, summary, copy) = (m, s, t)
        } catch {
            return .unavailable("\(error)".replacingURIs(uri, nil))
        }
        guard summary.rowsCopied == rows, summary.caughtUp else {
            try? migrator.close()
            throw BenchmarkError("the Migrator copied \(summary.rowsCopied) rows into PostgreSQL, expected \(rows)")
        }
        var m = Measured(copy: copy, copySeconds: summary.copySeconds, replay: Timing(), replayed: 0, workload: ReplayCounts(), verifyReport: "")
        if let copyCPU0, let c = pg.settledServerSeconds() { m.copyServerCPU = c - copyCPU0 }
        if compare {
            progress("checking Tidemark's values")
            m.copyDiff = try ValueDifferences.compare(source: source, target: uri)
        }

        // (6) Replay: the workload on the captured source, then the
        // Migrator's next run (not following) ships and replays it.
        do {
            let writer = try Connection(path: source, mode: .readWrite)
            m.workload = try PostgresReplayWorkload.apply(to: writer, changes: changeCount, seed: seed &+ UInt64(run))
            try writer.close()
            let replayCPU0 = pg.serverSeconds()
            let (s, t) = try Stopwatch.measure { try migrator.run() }
            if let replayCPU0, let c = pg.settledServerSeconds() { m.replayServerCPU = c - replayCPU0 }
            guard s.caughtUp, s.changesReplayed == changeCount else {
                try? migrator.close()
                throw BenchmarkError("the Migrator replayed \(s.changesReplayed) changes into PostgreSQL, expected \(changeCount)")
            }
            m.replay = t
            m.replayed = s.changesReplayed
        }
        try migrator.close()
        if compare {
            progress("checking Tidemark's values after replay")
            m.replayDiff = try ValueDifferences.compare(source: source, target: uri)
        }

        // (7) Verify, under paced writes of a following migration.
        do {
            let r = try verifyRun(plan: plan, source: source)
            m.verify = r.timing
            m.verifyReport = r.report
            m.verifyDifferences = r.differences
            m.verifyWritesPerSecond = r.writesPerSecond
        } catch let e as BenchmarkError {
            throw e
        } catch {
            m.verifyError = "\(error)".replacingURIs(uri, nil)
        }
        return .measured(m)
    }

    /// `Verifier.run()` of the plan; with `--verify-writes-per-second`, a
    /// following Migrator and a paced writer run meanwhile (so verify sees
    /// rows changing under it, as in a live migration).
    /// A report that is not equal is a result (the table's "verify found"
    /// row), not a failure of the benchmark.
    private func verifyRun(plan: Plan, source: String) throws -> (timing: Timing, report: String, writesPerSecond: Double?, differences: Int) {
        guard verifyWritesPerSecond > 0 else {
            let (report, t) = try Stopwatch.measure { try Verifier(plan: plan).run() }
            return (t, "idle source: " + Self.reportText(report), nil, Self.differences(report))
        }
        var options = MigratorOptions(follow: true)
        options.idleMillis = 5
        let follower = try Migrator.open(plan: plan, options: options)
        let followResult = Shared<String?>(nil)
        let followThread = JoinableThread {
            do { _ = try follower.run() } catch { followResult.withLock { $0 = "\(error)" } }
        }
        let stop = SharedFlag()
        let writes = Shared<(done: Int, seconds: Double, error: String?)>((0, 0, nil))
        let rate = verifyWritesPerSecond, maxID = Int64(rows), seed = self.seed
        let writer = JoinableThread {
            do {
                let c = try Connection(path: source, mode: .readWrite)
                let update = try c.prepare("UPDATE t SET note = ?1, r = ?2 WHERE id = ?3")
                var random = SplitMix64(seed: seed ^ 0x5EED)
                let start = monotonicNanos()
                let interval = UInt64(1e9 / Double(rate))
                var k = 0
                while !stop.isSet {
                    sleep(until: start + UInt64(k) * interval)
                    try update.execute([.text("verify-write \(k)"), .real(PostgresSourceTable.real(&random)), .integer(1 + Int64(random.below(Int(maxID))))])
                    k += 1
                }
                let seconds = Double(monotonicNanos() - start) / 1e9
                try c.close()
                writes.withLock { $0 = (k, seconds, nil) }
            } catch {
                writes.withLock { $0.error = "\(error)" }
            }
        }
        // Let the follower reach its steady state before verify starts.
        sleep(until: monotonicNanos() + 300_000_000)
        let measured = Result { try Stopwatch.measure { try Verifier(plan: plan).run() } }
        stop.set()
        writer.join()
        follower.stop()
        followThread.join()
        try follower.close()
        if let e = followResult.withLock({ $0 }) { throw BenchmarkError("the following Migrator failed during verify: \(e)") }
        let w = writes.withLock { $0 }
        if let e = w.error { throw BenchmarkError("the verify-time writer failed: \(e)") }
        let (report, t) = try measured.get()
        let achieved = w.seconds > 0 ? Double(w.done) / w.seconds : 0
        return (t, "under \(formatNumber(achieved)) writes/s: " + Self.reportText(report), achieved, Self.differences(report))
    }

    /// Rows missing, extra, different or unsettled, over all tables.
    private static func differences(_ r: Verifier.Report) -> Int {
        r.tables.reduce(0) { $0 + $1.missingCount + $1.extraCount + $1.differentCount + $1.unsettled.count + $1.foreignKeyCount }
    }

    private static func reportText(_ r: Verifier.Report) -> String {
        r.tables.map { "\($0.rows) rows in \($0.chunks) chunks, \($0.chunksRechecked) rechecked, missing \($0.missingCount), extra \($0.extraCount), different \($0.differentCount)" }
            .joined(separator: "; ") + (r.isEqual ? ", equal" : ", NOT equal")
    }

    // MARK: External commands

    /// Runs `script` with bash, the target's URIs in the environment (never
    /// on a command line this benchmark prints), output to `log`.
    private func shell(_ script: String, uri: String, loaderURI: String? = nil, log: String) throws -> Timing {
        setenv("TIDEMARK_BENCH_PGURI", uri, 1)
        setenv("TIDEMARK_BENCH_PGLOADER_URI", loaderURI ?? "", 1)
        defer {
            unsetenv("TIDEMARK_BENCH_PGURI")
            unsetenv("TIDEMARK_BENCH_PGLOADER_URI")
        }
        do {
            return try ExternalCommand(["bash", "-c", "exec >'\(log)' 2>&1; " + script]).run()
        } catch let e as BenchmarkError {
            throw BenchmarkError("\(e.description.replacingURIs(uri, loaderURI)); see \(log)")
        }
    }

    private func writeText(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchmarkError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw BenchmarkError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

private extension String {
    /// The message with the URIs (which may hold a password) redacted.
    func replacingURIs(_ uri: String, _ loaderURI: String?) -> String {
        var s = self
        for u in [uri, loaderURI].compactMap({ $0 }) where !u.isEmpty {
            s = s.split(separator: u, omittingEmptySubsequences: false).joined(separator: "<target>")
        }
        return s
    }
}

struct ReplayCounts {
    var inserts = 0, updates = 0, deletes = 0
}

/// The replay workload on table t: inserts of new ids, updates and deletes
/// of existing rows, randomly interleaved in transactions of
/// ``transactionSize``; no row is touched twice, so the number of captured
/// changes is exactly `changes`.
enum PostgresReplayWorkload {
    static let transactionSize = 1_000

    static func apply(to c: Connection, changes: Int, seed: UInt64) throws -> ReplayCounts {
        var random = SplitMix64(seed: seed)
        func top(_ sql: String) throws -> Int64 { let s = try c.prepare(sql); _ = try s.step(); return s.columnInt64(0) }
        let maxID = try top("SELECT max(id) FROM t")
        let existing = Int(try top("SELECT count(*) FROM t"))
        var updates = min(changes * 40 / 100, existing / 2)
        var deletes = min(changes * 20 / 100, existing / 4)
        var inserts = changes - updates - deletes
        let counts = ReplayCounts(inserts: inserts, updates: updates, deletes: deletes)
        // Distinct existing ids for updates and deletes (ids are 1…maxID,
        // dense in the generated table): a random stride walk.
        var pool: [Int64] = []
        pool.reserveCapacity(updates + deletes)
        let step = Int64(max(1, existing / max(1, updates + deletes)))
        var next: Int64 = 1 + Int64(random.below(Int(step)))
        while pool.count < updates + deletes && next <= maxID { pool.append(next); next += step }
        guard pool.count == updates + deletes else { throw BenchmarkError("the source has too few rows for \(changes) changes") }
        for i in stride(from: pool.count - 1, to: 0, by: -1) { pool.swapAt(i, random.below(i + 1)) }
        var nextID = maxID + 1, used = 0, done = 0

        let insert = try c.prepare("INSERT INTO t(id, r, name, n, data, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        let update = try c.prepare("UPDATE t SET r = ?1, name = ?2, n = ?3 WHERE id = ?4")
        let delete = try c.prepare("DELETE FROM t WHERE id = ?1")
        while done < changes {
            try c.transaction(.immediate) {
                for _ in 0..<min(transactionSize, changes - done) {
                    let r = random.below(inserts + updates + deletes)
                    if r < inserts {
                        inserts -= 1
                        try insert.execute(PostgresSourceTable.row(id: nextID, &random))
                        nextID += 1
                    } else if r < inserts + updates {
                        updates -= 1
                        try update.execute([.real(PostgresSourceTable.real(&random)), .text(PostgresSourceTable.text(&random, maxFragments: 6)),
                                            random.chance(10) ? .null : .integer(PostgresSourceTable.integer(&random)), .integer(pool[used])])
                        used += 1
                    } else {
                        deletes -= 1
                        try delete.execute([.integer(pool[used])])
                        used += 1
                    }
                    guard c.changes == 1 else { throw BenchmarkError("replay workload change \(done) changed \(c.changes) rows") }
                    done += 1
                }
            }
        }
        return counts
    }
}
