import ArgumentParser
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `tidemark-bench capture`: write throughput with and without capture
/// triggers, side by side in one run, and shipper throughput from a full
/// outbox into a log.
struct CaptureBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Capture overhead (autocommit and bulk writes) and shipper throughput.")

    @Option(help: "Rows in the bulk transaction.")
    var bulkRows = 500_000

    @Option(help: "Single-row autocommit transactions (each one syncs).")
    var autocommitRows = 2_000

    @Option(help: "Directory for the scratch databases and log (default: a new one under /tmp).")
    var directory: String?

    func run() throws {
        let dir = try directory ?? makeTemporaryDirectory()
        print("SQLite \(Connection.libraryVersion), scratch directory \(dir)")
        print("| path | without capture | with capture | ratio | goal |")
        print("|---|---|---|---|---|")

        // Each autocommit insert waits for fsync, so wall time is what counts;
        // plain and captured runs alternate in rounds so that disk noise from
        // other processes falls on both alike.
        let plainAutoDB = try makeDatabase(path: "\(dir)/plain-auto.db", captured: false)
        let capturedAutoDB = try makeDatabase(path: "\(dir)/captured-auto.db", captured: true)
        var plainAutoSeconds = 0.0, capturedAutoSeconds = 0.0
        let rounds = 10
        for round in 0..<rounds {
            let ids = (round * autocommitRows / rounds + 1)...((round + 1) * autocommitRows / rounds)
            plainAutoSeconds += try autocommitSeconds(plainAutoDB, ids: ids)
            capturedAutoSeconds += try autocommitSeconds(capturedAutoDB, ids: ids)
        }
        row("autocommit inserts, one fsync each (rows/s, wall time)",
            Double(autocommitRows) / plainAutoSeconds, Double(autocommitRows) / capturedAutoSeconds, goal: "≥ 0.9×")

        let plainBulk = try writeRate(path: "\(dir)/plain-bulk.db", captured: false, rows: bulkRows)
        let capturedBulk = try writeRate(path: "\(dir)/captured-bulk.db", captured: true, rows: bulkRows)
        row("bulk insert, one transaction, one statement per row (rows/s)", plainBulk, capturedBulk, goal: "≥ 0.5×")

        let plainSelect = try insertSelectRate(path: "\(dir)/plain-select.db", captured: false, rows: bulkRows)
        let capturedSelect = try insertSelectRate(path: "\(dir)/captured-select.db", captured: true, rows: bulkRows)
        row("bulk INSERT … SELECT, one statement (rows/s)", plainSelect, capturedSelect, goal: "≥ 0.5×")

        // The bulk run left `bulkRows` changes in the outbox; each shipper run
        // gets its own copy of that database and a fresh log.
        do {
            let full = try Connection(path: "\(dir)/captured-bulk.db")
            for durability in ["commit", "none"] {
                try full.prepare("VACUUM INTO ?1").execute([.text("\(dir)/ship-\(durability).db")])
            }
        }
        for durability in [Durability.commit, .none] {
            let db = try Connection(path: "\(dir)/ship-\(durability).db")
            let appender = try LogAppender(
                directory: "\(dir)/log-\(durability)", sourceID: try Capture.storedSourceID(db),
                options: LogOptions(durability: durability))
            let shipper = try Shipper(connection: db, appender: appender)
            var shipped = 0
            let seconds = try cpuSeconds { shipped = try shipper.drain() }
            try appender.close()
            print("| shipper, full outbox → log, durability \(durability) (changes/s, CPU time) | | \(format(Double(shipped) / seconds)) | | ≥ 300k/s |")
        }
    }

    /// One statement inserting `rows` rows: the trigger runs once per row but
    /// the statement (and its statement journal) once in all.
    private func insertSelectRate(path: String, captured: Bool, rows: Int) throws -> Double {
        let db = try makeDatabase(path: path, captured: captured)
        let insert = try db.prepare("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
            INSERT INTO items(id, name, score, qty, data)
            SELECT i, 'name-' || i, i * 0.1, i % 1000, x'000102030405060708090a0b0c0d0e0f' FROM n
            """)
        let seconds = try cpuSeconds { try db.transaction(.immediate) { try insert.execute([.integer(Int64(rows))]) } }
        return Double(rows) / seconds
    }

    private func makeDatabase(path: String, captured: Bool) throws -> Connection {
        let db = try Connection(path: path, mode: .readWriteCreate)
        try db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, score REAL, qty INTEGER, data BLOB)")
        try db.setJournalMode(.wal)
        if captured {
            try Capture.install(connection: db, sourceID: SourceID.random())
        }
        return db
    }

    /// CPU seconds this process spent in `body`: SQLite and the shipper run
    /// in-process, and CPU time is far less disturbed by a busy machine than
    /// wall time. (The autocommit case waits on fsync, so it uses wall time.)
    private func cpuSeconds(_ body: () throws -> Void) throws -> Double {
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start)
        try body()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &end)
        return Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    }

    private static let payload: [UInt8] = (0..<16).map { UInt8($0) }

    private func insertRow(_ statement: Statement, _ i: Int) throws {
        try statement.execute([
            .integer(Int64(i)), .text("name-\(i)"), .real(Double(i) * 0.1), .integer(Int64(i % 1000)), .blob(Self.payload),
        ])
    }

    private func autocommitSeconds(_ db: Connection, ids: ClosedRange<Int>) throws -> Double {
        let insert = try db.cachedStatement("INSERT INTO items(id, name, score, qty, data) VALUES (?1, ?2, ?3, ?4, ?5)")
        let start = ContinuousClock.now
        for i in ids { try insertRow(insert, i) }
        return (ContinuousClock.now - start).wallSeconds
    }

    private func writeRate(path: String, captured: Bool, rows: Int) throws -> Double {
        let db = try makeDatabase(path: path, captured: captured)
        let insert = try db.prepare("INSERT INTO items(id, name, score, qty, data) VALUES (?1, ?2, ?3, ?4, ?5)")
        let seconds = try cpuSeconds { try db.transaction(.immediate) { for i in 1...rows { try insertRow(insert, i) } } }
        return Double(rows) / seconds
    }

    private func row(_ name: String, _ plain: Double, _ captured: Double, goal: String) {
        let ratio = captured / plain
        print("| \(name) | \(format(plain)) | \(format(captured)) | \(String(Int((ratio * 100).rounded())))% | \(goal) |")
    }

    private func format(_ rate: Double) -> String {
        rate >= 10_000 ? "\(Int((rate / 1000).rounded()))k" : "\(Int(rate.rounded()))"
    }

    private func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/tidemark-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw ValidationError("cannot create a scratch directory under /tmp")
        }
        return String(cString: made)
    }
}

extension Duration {
    fileprivate var wallSeconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
