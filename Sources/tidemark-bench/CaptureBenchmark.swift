import ArgumentParser
import TidemarkLog
import TidemarkSQLite

/// `tidemark-bench capture`: write throughput with and without capture
/// triggers, side by side in one run, and shipper throughput from a full
/// outbox into a log.
///
/// - Autocommit: single-row inserts, each its own transaction and fsync,
///   into a captured and an uncaptured database, alternating in rounds (and
///   which side goes first) so that disk noise falls on both alike; each
///   round is one sample.
/// - Bulk: one transaction of `--bulk-rows` single-row INSERT statements,
///   and one `INSERT … SELECT` of as many rows, each run into a fresh
///   database, captured and not, alternating.
/// - Shipper: a captured bulk run leaves every row in the outbox; each run
///   ships a fresh copy of that database into a new log (`Shipper.drain`),
///   with durability commit and none.
struct CaptureBench: ParsableCommand, BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Capture overhead (autocommit and bulk writes) and shipper throughput (median of several runs; table or --json).",
        discussion: """
        Goals: captured writes ≥ 0.9× uncaptured for autocommit, ≥ 0.5× for a bulk \
        transaction of ≥ 500,000 rows; shipper ≥ 300,000 changes/s.
        """
    )

    @Option(help: "Rows in each bulk transaction (at least 500,000 for the goals).")
    var bulkRows = 500_000

    @Option(help: "Single-row autocommit transactions per side, over all rounds (each one syncs).")
    var autocommitRows = 5_000

    @Option(help: "Autocommit rounds (samples), alternating captured and uncaptured.")
    var rounds = 10

    @Option(help: "Measured runs of each bulk and shipper path; medians are reported.")
    var runs = 5

    @OptionGroup var common: BenchCommonOptions

    func validate() throws {
        guard bulkRows >= 1, autocommitRows >= 1, rounds >= 1, runs >= 1 else { throw ValidationError("counts must be at least 1") }
        guard autocommitRows >= rounds else { throw ValidationError("--autocommit-rows must be at least --rounds") }
    }

    private var meetsIssueWorkload: Bool { bulkRows >= 500_000 && runs >= 3 && rounds >= 5 }

    func run() throws {
        let dir = try ScratchDirectory(in: scratchParent(scratch), name: "capture")
        defer { if !keep { try? dir.remove() } }
        var memory = PeakMemory()

        // Autocommit: rounds alternate, each a sample of both sides.
        var plainAuto = Runs(), capturedAuto = Runs()
        try memory.phase("autocommit") {
            let plain = try makeDatabase(path: dir.file("plain-auto.db"), captured: false)
            let captured = try makeDatabase(path: dir.file("captured-auto.db"), captured: true)
            for round in 0..<rounds {
                let ids = (round * autocommitRows / rounds + 1)...((round + 1) * autocommitRows / rounds)
                // Alternate which side goes first, so neither always
                // inherits the other's pending checkpoint or disk flush.
                let p: Timing, c: Timing
                if round % 2 == 0 {
                    p = try autocommit(plain, ids: ids)
                    c = try autocommit(captured, ids: ids)
                } else {
                    c = try autocommit(captured, ids: ids)
                    p = try autocommit(plain, ids: ids)
                }
                plainAuto.add(p)
                capturedAuto.add(c)
                progress("autocommit round \(round + 1)/\(rounds) (\(ids.count) rows): without \(describe(p)), with \(describe(c))")
            }
        }
        let perRound = Double(autocommitRows) / Double(rounds)

        // Bulk: fresh databases each run, alternating.
        var plainBulk = Runs(), capturedBulk = Runs(), plainSelect = Runs(), capturedSelect = Runs()
        let fullOutbox = dir.file("full-outbox.db")
        try memory.phase("bulk") {
            for i in 1...runs {
                let p = try bulkInsert(path: dir.file("bulk.db"), captured: false)
                let c = try bulkInsert(path: dir.file("bulk.db"), captured: true, keepAs: i == 1 ? fullOutbox : nil)
                plainBulk.add(p)
                capturedBulk.add(c)
                let ps = try insertSelect(path: dir.file("bulk.db"), captured: false)
                let cs = try insertSelect(path: dir.file("bulk.db"), captured: true)
                plainSelect.add(ps)
                capturedSelect.add(cs)
                progress("bulk run \(i)/\(runs): statements without \(describe(p)), with \(describe(c)); INSERT … SELECT without \(describe(ps)), with \(describe(cs))")
            }
        }

        // Shipper: a full outbox (the first captured bulk run) into a new log.
        let durabilities: [Durability] = [.commit, Durability.none]
        var ship = [Runs(), Runs()]
        var syncs = [0, 0]
        try memory.phase("shipper") {
            for i in 1...runs {
                for (k, durability) in durabilities.enumerated() {
                    let (t, n, s) = try shipAll(fullOutbox, durability: durability, in: dir)
                    guard n == bulkRows else { throw BenchmarkError("the shipper shipped \(n) changes, expected \(bulkRows)") }
                    ship[k].add(t)
                    syncs[k] = s
                    progress("shipper run \(i)/\(runs), durability \(durability): \(describe(t))")
                }
            }
        }
        let peakRSS = memory.finish()

        // The table: throughput at the median wall time of each side.
        func details(_ ours: Runs, _ theirs: Runs?) -> [(String, JSON)] {
            var d: [(String, JSON)] = [("tidemark_seconds", JSON.seconds(ours.wall)), ("tidemark_cpu_seconds", JSON.seconds(ours.cpu))]
            if let theirs {
                d += [("baseline_seconds", JSON.seconds(theirs.wall)), ("baseline_cpu_seconds", JSON.seconds(theirs.cpu)),
                      ("cpu_ratio", .number(theirs.cpu.median / ours.cpu.median))]
            }
            return d
        }
        let bulk = Double(bulkRows)
        var table = ComparisonTable()
        table.rows.append(Comparison(
            path: "autocommit inserts, one fsync each, captured vs not", unit: "rows/s",
            tidemark: perRound / capturedAuto.wall.median, baseline: perRound / plainAuto.wall.median,
            goal: .atLeastTimesBaseline(0.9),
            details: [("rows_per_round", .number(perRound)), ("rounds", .int(rounds))] + details(capturedAuto, plainAuto)))
        table.rows.append(Comparison(
            path: "bulk insert, one transaction, one statement per row", unit: "rows/s",
            tidemark: bulk / capturedBulk.wall.median, baseline: bulk / plainBulk.wall.median,
            goal: .atLeastTimesBaseline(0.5), details: [("rows", .int(bulkRows))] + details(capturedBulk, plainBulk)))
        table.rows.append(Comparison(
            path: "bulk INSERT … SELECT, one statement", unit: "rows/s",
            tidemark: bulk / capturedSelect.wall.median, baseline: bulk / plainSelect.wall.median,
            goal: .atLeastTimesBaseline(0.5), details: [("rows", .int(bulkRows))] + details(capturedSelect, plainSelect)))
        for (k, durability) in durabilities.enumerated() {
            let r = ship[k]
            table.rows.append(Comparison(
                path: "shipper, full outbox → log, durability \(durability)", unit: "changes/s",
                tidemark: bulk / r.wall.median, baseline: nil, goal: .atLeast(500_000),
                details: [("changes", .int(bulkRows)), ("syncs", .int(syncs[k])),
                          ("changes_per_cpu_second", .number(bulk / r.cpu.median))] + details(r, nil)))
        }
        table.rows.append(Comparison(
            path: "peak RSS, whole benchmark process", unit: "MB", tidemark: megabytes(peakRSS), baseline: nil, goal: .below(150),
            details: [("phases", .object(memory.phases.map { ($0.name, JSON.number(megabytes($0.bytes))) }))]))

        if json {
            print(JSON.object([
                ("benchmark", .string("capture")), ("bulk_rows", .int(bulkRows)), ("autocommit_rows", .int(autocommitRows)),
                ("rounds", .int(rounds)), ("runs", .int(runs)), ("sqlite_version", .string(Connection.libraryVersion)),
                ("peak_rss_bytes", .int(peakRSS)),
                ("all_goals_met", .bool(table.allPassed)), ("meets_issue_workload", .bool(meetsIssueWorkload)),
                ("rows", .array(table.rows.map(\.json))),
            ]).text)
        } else {
            var lines: [String] = []
            lines.append("tidemark-bench capture: items(id INTEGER PRIMARY KEY, name TEXT, score REAL, qty INTEGER, data BLOB), WAL; tidemark = with capture triggers, baseline = without; autocommit median of \(rounds) rounds of \(formatNumber(perRound)) rows, bulk and shipper median of \(runs) runs of \(formatNumber(bulk)) rows; SQLite \(Connection.libraryVersion)")
            if !meetsIssueWorkload { lines.append("note: the goals are judged on ≥ 500,000 bulk rows, ≥ 3 runs and ≥ 5 rounds; this run is smaller") }
            lines.append("")
            lines.append(table.render())
            lines.append("")
            lines.append("wall seconds, min … median … max (CPU seconds, median):")
            lines.append(spreadLine("autocommit round, without", plainAuto))
            lines.append(spreadLine("autocommit round, with capture", capturedAuto))
            lines.append(spreadLine("bulk statements, without", plainBulk))
            lines.append(spreadLine("bulk statements, with capture", capturedBulk))
            lines.append(spreadLine("INSERT … SELECT, without", plainSelect))
            lines.append(spreadLine("INSERT … SELECT, with capture", capturedSelect))
            lines.append(spreadLine("shipper, durability commit", ship[0]))
            lines.append(spreadLine("shipper, durability none", ship[1]))
            lines.append("by CPU time: bulk statements \(formatFixed(plainBulk.cpu.median / capturedBulk.cpu.median, decimals: 2))×, INSERT … SELECT \(formatFixed(plainSelect.cpu.median / capturedSelect.cpu.median, decimals: 2))×; shipper \(formatNumber(bulk / ship[0].cpu.median)) (commit) and \(formatNumber(bulk / ship[1].cpu.median)) (none) changes per CPU second")
            lines.append("peak RSS by phase: " + memory.phases.map { "\($0.name) \(formatNumber(megabytes($0.bytes))) MB" }.joined(separator: ", "))
            print(lines.joined(separator: "\n"))
            if keep { print("scratch files kept in \(dir.path)") }
        }
        if check && !(table.allPassed && meetsIssueWorkload) { throw ExitCode(1) }
    }

    // MARK: Paths

    private func makeDatabase(path: String, captured: Bool) throws -> Connection {
        try removeDatabase(path)
        let db = try Connection(path: path, mode: .readWriteCreate)
        try db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, score REAL, qty INTEGER, data BLOB)")
        try db.setJournalMode(.wal)
        if captured {
            try Capture.install(connection: db, sourceID: SourceID.random())
        }
        return db
    }

    private static let payload: [UInt8] = (0..<16).map { UInt8($0) }

    private func insertRow(_ statement: Statement, _ i: Int) throws {
        try statement.execute([
            .integer(Int64(i)), .text("name-\(i)"), .real(Double(i) * 0.1), .integer(Int64(i % 1000)), .blob(Self.payload),
        ])
    }

    /// Each insert its own transaction, so each waits for its fsync.
    private func autocommit(_ db: Connection, ids: ClosedRange<Int>) throws -> Timing {
        let insert = try db.cachedStatement("INSERT INTO items(id, name, score, qty, data) VALUES (?1, ?2, ?3, ?4, ?5)")
        return try Stopwatch.measure { for i in ids { try insertRow(insert, i) } }.timing
    }

    /// One transaction of `bulkRows` single-row statements into a fresh
    /// database; `keepAs` saves the (captured) result for the shipper.
    private func bulkInsert(path: String, captured: Bool, keepAs: String? = nil) throws -> Timing {
        let db = try makeDatabase(path: path, captured: captured)
        let insert = try db.prepare("INSERT INTO items(id, name, score, qty, data) VALUES (?1, ?2, ?3, ?4, ?5)")
        let timing = try Stopwatch.measure { try db.transaction(.immediate) { for i in 1...bulkRows { try insertRow(insert, i) } } }.timing
        try db.close()
        if let keepAs { try copyDatabase(from: path, to: keepAs) }
        try removeDatabase(path)
        return timing
    }

    /// One statement inserting `bulkRows` rows: the trigger runs once per row
    /// but the statement (and its statement journal) once in all.
    private func insertSelect(path: String, captured: Bool) throws -> Timing {
        let db = try makeDatabase(path: path, captured: captured)
        let insert = try db.prepare("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
            INSERT INTO items(id, name, score, qty, data)
            SELECT i, 'name-' || i, i * 0.1, i % 1000, x'000102030405060708090a0b0c0d0e0f' FROM n
            """)
        let timing = try Stopwatch.measure { try db.transaction(.immediate) { try insert.execute([.integer(Int64(bulkRows))]) } }.timing
        try db.close()
        try removeDatabase(path)
        return timing
    }

    /// Ships a fresh copy of the full-outbox database into a new log.
    private func shipAll(_ fullOutbox: String, durability: Durability, in dir: ScratchDirectory) throws -> (Timing, Int, Int) {
        let path = dir.file("ship.db"), log = dir.subdirectory("ship-log")
        try copyDatabase(from: fullOutbox, to: path)
        try removeTree(log)
        let db = try Connection(path: path, mode: .readWrite)
        guard let sourceID = try Capture.storedSourceID(db) else { throw BenchmarkError("capture is not installed in \(path)") }
        let appender = try LogAppender(directory: log, sourceID: sourceID, options: LogOptions(durability: durability))
        let shipper = try Shipper(connection: db, appender: appender)
        let (shipped, timing) = try Stopwatch.measure { try shipper.drain() }
        let syncs = appender.statistics.syncs
        try appender.close()
        try db.close()
        try removeDatabase(path)
        try removeTree(log)
        return (timing, shipped, syncs)
    }
}
