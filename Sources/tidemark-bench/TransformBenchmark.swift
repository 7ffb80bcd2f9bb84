import TidemarkTestSupport
import ArgumentParser
import Synchronization
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// `tidemark-bench transform`: one table change (`--type price REAL`) on a
/// 1M-row table with an index, while an application commits small
/// transactions at a steady rate, by three tools side by side, each on a
/// fresh copy of the same file:
/// - `tidemark transform` (in this process, through the library the
///   command calls): capture, copy/replay into a shadow, verify, swap;
/// - `sqlite-utils transform` (its own process; installed with pip when
///   missing): SQLite's 12-step rebuild in one transaction;
/// - the plain 12-step rebuild in one transaction, here (`BEGIN IMMEDIATE`,
///   create, `INSERT … SELECT`, drop, rename, index, commit).
/// Each tool's total time, and the application's waits: each write's
/// latency from when it was due (a write queued behind a blocked one
/// counts its wait), p50/p99/max over the writes due while the tool ran.
struct TransformBenchmark: ParsableCommand, BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "transform",
        abstract: "Online table rebuild (tidemark transform) beside sqlite-utils transform and the one-transaction 12-step rebuild, under writers.",
        discussion: "Goals: writers' max wait < 100 ms during tidemark transform; its total time ≤ 3× the one-transaction rebuild."
    )

    @Option(help: "Rows of the table.")
    var rows = 1_000_000

    @Option(help: "Writes per second (small autocommit transactions) during each tool's run.")
    var writesPerSecond = 1_000

    @Option(help: "Writer threads, each with its own connection (busy timeout 30 s, so a stalled write waits, as an application's would, rather than fail).")
    var writerThreads = 2

    @OptionGroup var common: BenchCommonOptions

    func validate() throws {
        guard rows >= 1_000 else { throw ValidationError("--rows must be at least 1000") }
        guard writesPerSecond >= 1, writerThreads >= 1 else { throw ValidationError("writer settings must be positive") }
    }

    static let schema = """
        PRAGMA journal_mode = WAL;
        CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER, sku TEXT, note TEXT);
        CREATE INDEX items_sku ON items(sku);
        """

    struct Result {
        var tool: String
        var seconds: Double
        var waits: [Double]
        var writes: Int
        var failed: Int
        var firstError: String?
        var detail: String
    }

    func run() throws {
        let dir = try ScratchDirectory(in: scratchParent(scratch), name: "transform")
        defer { if !keep { try? dir.remove() } }
        let pristine = dir.file("pristine.db")
        progress("creating a \(formatNumber(Double(rows)))-row table with an index")
        let db = try Connection(path: pristine, mode: .readWriteCreate)
        try db.execute(Self.schema)
        try db.execute("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(rows))
            INSERT INTO items SELECT i, 'item number ' || i, i % 1000, 'sku-' || (i * 7919 % \(rows)), CASE WHEN i % 3 = 0 THEN NULL ELSE 'a short note ' || i END FROM n
            """)
        try db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try db.close()

        var results: [Result] = []
        results.append(try measure("tidemark transform", pristine, dir) { path in
            var o = TransformOptions()
            o.types = [.init("price", "REAL")]
            let p = try Transform.prepare(db: path, table: "items", options: o)
            let t0 = monotonicNanos()
            var settings = Transform.Settings()
            if let v = getenv("TIDEMARK_BENCH_CHUNK_ROWS"), let n = Int(String(cString: v)) { settings.chunkRows = n }
            if let v = getenv("TIDEMARK_BENCH_YIELD"), let r = Double(String(cString: v)) { settings.yieldRatio = r }
            let r = try Transform.run(p, settings: settings) { event in
                if case .step(let name) = event, getenv("TIDEMARK_BENCH_TRACE") != nil {
                    progress("  \(formatFixed(millis(t0, monotonicNanos()), decimals: 0)) ms: \(name)")
                }
            }
            return "swap paused writers \(formatFixed(r.cutover?.pauseMillis ?? .nan, decimals: 1)) ms (lock held); \(r.rowsCopied) rows copied, \(r.changesReplayed) changes replayed, \(r.verifiedRows) verified"
        })
        let sqliteUtils = try sqliteUtilsCommand()
        if let sqliteUtils {
            results.append(try measure("sqlite-utils transform", pristine, dir) { path in
                _ = try ExternalCommand([sqliteUtils, "transform", path, "items", "--type", "price", "REAL"]).run()
                return "sqlite-utils \(sqliteUtilsVersion(sqliteUtils))"
            })
        }
        results.append(try measure("12-step rebuild, one transaction", pristine, dir) { path in
            let c = try Connection(path: path, mode: .readWrite, busyTimeoutMillis: 30_000)
            defer { try? c.close() }
            try c.execute("PRAGMA foreign_keys = OFF")
            try c.execute("BEGIN IMMEDIATE")
            do {
                try c.execute("CREATE TABLE items_new(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, sku TEXT, note TEXT)")
                try c.execute("INSERT INTO items_new(id, name, price, sku, note) SELECT id, name, price, sku, note FROM items")
                try c.execute("DROP TABLE items")
                try c.execute("ALTER TABLE items_new RENAME TO items")
                try c.execute("CREATE INDEX items_sku ON items(sku)")
                try c.execute("PRAGMA foreign_key_check")
                try c.execute("COMMIT")
            } catch {
                try? c.execute("ROLLBACK")
                throw error
            }
            return "BEGIN IMMEDIATE; CREATE; INSERT … SELECT; DROP; RENAME; CREATE INDEX; COMMIT"
        })

        let tidemark = results[0]
        let rebuild = results.last!
        let t = Percentiles(tidemark.waits)
        let waitGoal = t.max < 100
        let timeGoal = tidemark.seconds <= 3 * rebuild.seconds
        if json {
            print(JSON.object([
                ("benchmark", .string("transform")), ("rows", .int(rows)), ("writes_per_second", .int(writesPerSecond)),
                ("writer_threads", .int(writerThreads)), ("sqlite_version", .string(Connection.libraryVersion)),
                ("sqlite_utils", sqliteUtils == nil ? .string("not available") : .string(sqliteUtilsVersion(sqliteUtils!))),
                ("goal_max_wait_below_100ms", .bool(waitGoal)), ("goal_total_within_3x_rebuild", .bool(timeGoal)),
                ("tools", .array(results.map { r in
                    let p = Percentiles(r.waits)
                    return .object([("tool", .string(r.tool)), ("seconds", .number(r.seconds)), ("writes", .int(r.writes)),
                                    ("failed", .int(r.failed)), ("wait_p50_ms", .number(p.p50)), ("wait_p99_ms", .number(p.p99)),
                                    ("wait_max_ms", .number(p.max)), ("detail", .string(r.detail))])
                })),
            ]).text)
        } else {
            var lines: [String] = []
            lines.append("tidemark-bench transform: --type price REAL on a \(formatNumber(Double(rows)))-row table with an index, under \(formatNumber(Double(writesPerSecond))) writes/s (\(writerThreads) threads, autocommit); SQLite \(Connection.libraryVersion)")
            lines.append("")
            lines.append("| tool | total s | writers' wait p50 ms | p99 ms | max ms | writes | failed |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|")
            for r in results {
                let p = Percentiles(r.waits)
                lines.append("| \(r.tool) | \(formatFixed(r.seconds, decimals: 2)) | \(formatFixed(p.p50, decimals: 1)) | \(formatFixed(p.p99, decimals: 1)) | \(formatFixed(p.max, decimals: 1)) | \(r.writes) | \(r.failed) |")
            }
            if sqliteUtils == nil { lines.append("| sqlite-utils transform | not run: sqlite-utils is not installed and `pip install sqlite-utils` failed | | | | | |") }
            lines.append("")
            lines.append("goals: writers' max wait during tidemark transform < 100 ms: \(waitGoal ? "met" : "MISSED") (\(formatFixed(t.max, decimals: 1)) ms); total ≤ 3× the one-transaction rebuild: \(timeGoal ? "met" : "MISSED") (\(formatFixed(tidemark.seconds / rebuild.seconds, decimals: 2))×)")
            for r in results {
                lines.append("\(r.tool): \(r.detail)" + (r.firstError.map { "; first writer error: \($0)" } ?? ""))
            }
            lines.append("wait: from when a write was due to when it returned, over the writes due while the tool ran")
            print(lines.joined(separator: "\n"))
            if keep { print("scratch files kept in \(dir.path)") }
        }
        if check && !(waitGoal && timeGoal) { throw ExitCode(1) }
    }

    /// Runs `tool` on a fresh copy of `pristine` while writers write.
    func measure(_ name: String, _ pristine: String, _ dir: ScratchDirectory, _ tool: (String) throws -> String) throws -> Result {
        let d = dir.subdirectory(name.split(separator: " ")[0].lowercased())
        try makeDirectory(d)
        let path = d + "/app.db"
        try copyDatabase(from: pristine, to: path)
        progress("\(name): running under \(writesPerSecond) writes/s")
        let writers = try ItemWriters(path: path, threads: writerThreads, writesPerSecond: writesPerSecond)
        sleep(until: monotonicNanos() + 300_000_000)  // steady before
        let start = monotonicNanos()
        let detail = try tool(path)
        let end = monotonicNanos()
        sleep(until: monotonicNanos() + 300_000_000)  // and after: writes queued behind the tool finish
        let outcome = writers.finish()
        let during = outcome.writes.filter { $0.scheduled >= start && $0.scheduled <= end }
        if let v = getenv("TIDEMARK_BENCH_TRACE") {
            // Where the long waits were, relative to the tool's start
            // (TIDEMARK_BENCH_TRACE=MS: those longer than MS, default 200).
            let threshold = Double(String(cString: v)) ?? 200
            for w in during where w.latencyMillis > threshold {
                progress("  wait \(formatFixed(w.latencyMillis, decimals: 0)) ms for a write due at \(formatFixed(millis(start, w.scheduled), decimals: 0)) ms")
            }
        }
        if !keep { try? removeTree(d) }
        return Result(tool: name, seconds: Double(end - start) / 1e9, waits: during.map(\.latencyMillis),
                      writes: during.count, failed: outcome.failed, firstError: outcome.firstError, detail: detail)
    }

    /// `sqlite-utils` from PATH, installed with pip when missing; nil when
    /// neither works (the report says so).
    func sqliteUtilsCommand() throws -> String? {
        func find() -> String? {
            for dir in (String(cString: getenv("PATH")) ).split(separator: ":") {
                let p = String(dir) + "/sqlite-utils"
                if access(p, X_OK) == 0 { return p }
            }
            return nil
        }
        if let p = find() { return p }
        progress("sqlite-utils is not installed; trying `python3 -m pip install sqlite-utils`")
        _ = try? ExternalCommand(["python3", "-m", "pip", "install", "--quiet", "sqlite-utils"]).run()
        return find()
    }

    func sqliteUtilsVersion(_ command: String) -> String {
        let out = "/tmp/tidemark-bench-sqlite-utils-version-\(getpid())"
        defer { unlink(out) }
        guard (try? ExternalCommand([command, "--version"], output: .file(out)).run()) != nil else { return "?" }
        return readSmallFile(out)?.split(separator: " ").last.map { String($0).trimmingCharacters(in: "\n") } ?? "?"
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// The application for ``TransformBenchmark``: paced autocommit writes on
/// `items` (update a price, insert, delete) at a fixed total rate; each
/// write's latency is measured from when it was due (see ``PacedWriters``).
final class ItemWriters: @unchecked Sendable {
    // @unchecked: `threads` is touched only by the caller's thread; the
    // writer threads share only the Atomic and the Mutex.
    private let stop = Atomic<Bool>(false)
    private let results = Mutex<[PacedWriters.ThreadResult]>([])
    private var threads: [JoinableThread] = []
    private let startNanos: UInt64

    init(path: String, threads count: Int, writesPerSecond: Int) throws {
        let c = try Connection(path: path, mode: .readOnly)
        let s = try c.prepare("SELECT max(id) FROM items")
        _ = try s.step()
        let top = s.columnInt64(0)
        try c.close()
        startNanos = monotonicNanos()
        let interval = UInt64(1e9 * Double(count) / Double(writesPerSecond))
        for t in 0..<count {
            let first = startNanos + UInt64(t) * interval / UInt64(count)
            threads.append(JoinableThread { [self] in
                var result = PacedWriters.ThreadResult()
                do { try write(path: path, thread: t, top: top, first: first, interval: interval, into: &result) } catch { result.error = "\(error)" }
                let finished = result
                results.withLock { $0.append(finished) }
            })
        }
    }

    private func write(path: String, thread: Int, top: Int64, first: UInt64, interval: UInt64, into result: inout PacedWriters.ThreadResult) throws {
        let c = try Connection(path: path, mode: .readWrite, busyTimeoutMillis: 30_000)
        // Prepared once, as an application would: after the swap SQLite
        // re-prepares them against the new table by itself.
        let update = try c.prepare("UPDATE items SET price = ?1 WHERE id = ?2")
        let insert = try c.prepare("INSERT INTO items(id, name, price, sku) VALUES (?1, 'new', ?2, 'sku-new')")
        let delete = try c.prepare("DELETE FROM items WHERE id = ?1")
        var next = top + 1 + Int64(thread) * 100_000_000
        var random = SplitMix64(seed: 9_000 + UInt64(thread))
        var due = first
        while !stop.load(ordering: .relaxed) {
            sleep(until: due)
            let scheduled = due
            due += interval
            let issued = monotonicNanos()
            if issued > due + 1_000_000_000 { due = issued; result.skippedAhead += 1 }
            let pick = random.below(100)
            let id = 1 + Int64(random.below(Int(top)))
            var ok = true
            do {
                if pick < 60 {
                    try update.execute([.integer(Int64(random.below(1000))), .integer(id)])
                } else if pick < 85 {
                    try insert.execute([.integer(next), .integer(Int64(random.below(1000)))])
                    next += 1
                } else {
                    try delete.execute([.integer(id)])
                }
            } catch {
                ok = false
                result.failed += 1
                if result.error == nil { result.error = "\(error)" }
            }
            result.writes.append(PacedWriters.Write(scheduled: scheduled, issued: issued, done: monotonicNanos(), ok: ok, rerouted: false))
        }
        try c.close()
    }

    func finish() -> PacedWriters.Outcome {
        stop.store(true, ordering: .relaxed)
        for t in threads { t.join() }
        let all = results.withLock { $0 }
        var writes = all.flatMap(\.writes)
        writes.sort { $0.scheduled < $1.scheduled }
        return PacedWriters.Outcome(writes: writes, failed: all.reduce(0) { $0 + $1.failed }, rerouted: 0,
                                    skippedAhead: all.reduce(0) { $0 + $1.skippedAhead }, firstError: all.compactMap(\.error).first,
                                    seconds: Double(monotonicNanos() - startNanos) / 1e9)
    }
}
