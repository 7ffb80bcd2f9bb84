import TidemarkLog
import TidemarkSQLite

/// `tidemark demo`: builds a shop database, keeps writers busy, migrates it
/// to a reshaped target while they write, catches up, stops the writers and
/// proves the target equals the transformed source row for row.
public enum Demo {
    public struct Options: Sendable {
        public var directory: String
        public var rows: Int
        /// How long writers keep writing while the migration follows after catch-up.
        public var seconds: Double
        public var writesPerSecond: Int
        public var writerThreads: Int

        public init(directory: String, rows: Int = 200_000, seconds: Double = 5, writesPerSecond: Int = 1_500, writerThreads: Int = 2) {
            self.directory = directory
            self.rows = rows
            self.seconds = seconds
            self.writesPerSecond = writesPerSecond
            self.writerThreads = writerThreads
        }
    }

    public struct Summary: Sendable {
        public var rows: Int
        public var rowsCopied: Int
        public var changesReplayed: Int
        public var catchUpSeconds: Double
        public var writesAcknowledged: Int
        public var writesFailed: Int
        public var writesPerSecond: Double
        public var comparisons: [TableComparison]
        public var maxLagMillis: Int
        public var equal: Bool { comparisons.allSatisfy(\.isEqual) }
    }

    public enum Event: Sendable {
        case created(path: String, rows: Int, seconds: Double)
        case writersStarted(threads: Int, writesPerSecond: Int)
        case progress(MigrationProgress)
        case caughtUp(seconds: Double)
        case writersStopped(acknowledged: Int, failed: Int)
        case verifying
    }

    public static func run(_ options: Options, events: (Event) -> Void) throws -> Summary {
        let dir = options.directory
        try makeDirectory(dir)
        for name in ["shop.db", "shop.db-wal", "shop.db-shm", "shop-v2.db", "shop-v2.db-wal", "shop-v2.db-shm"] {
            _ = unlink(dir + "/" + name)
        }
        removeTree(dir + "/changelog")
        let planPath = dir + "/tidemark.yml"
        try writeFile(planPath, DemoShop.planYAML())
        let plan = try Plan.load(path: planPath)

        let t0 = Clock.monotonicNanos()
        try DemoShop.create(path: plan.source, rows: options.rows)
        events(.created(path: plan.source, rows: options.rows, seconds: seconds(since: t0)))

        // Capture before the writers start, so every change they make is logged.
        let migrator = try Migrator.open(plan: plan, options: MigratorOptions(follow: true))
        defer { try? migrator.close() }
        let stats = DemoShop.WriterStats()
        let wait = DemoShop.startWriters(path: plan.source, threads: options.writerThreads, writesPerSecond: options.writesPerSecond, stats: stats)
        events(.writersStarted(threads: options.writerThreads, writesPerSecond: options.writesPerSecond))
        let writeStart = Clock.monotonicNanos()

        let start = Clock.monotonicNanos()
        var caughtUpAt: UInt64?
        var maxLag = 0
        var failure: Error?
        do {
            _ = try migrator.run { p in
                events(.progress(p))
                if p.caughtUp {
                    maxLag = max(maxLag, p.lagMillis)
                    if caughtUpAt == nil {
                        caughtUpAt = Clock.monotonicNanos()
                        events(.caughtUp(seconds: seconds(since: start)))
                    }
                    if seconds(since: caughtUpAt!) >= options.seconds { migrator.stop() }
                }
            }
        } catch {
            failure = error
        }
        stats.stop.store(true, ordering: .relaxed)
        wait()
        let writeSeconds = seconds(since: writeStart)
        events(.writersStopped(acknowledged: stats.acknowledged.load(ordering: .relaxed), failed: stats.failed.load(ordering: .relaxed)))
        if let failure { throw failure }

        // Drain what the writers made last, then compare with writers stopped.
        migrator.setFollow(false)
        _ = try migrator.run()
        events(.verifying)
        let comparisons = try TableComparison.compare(plan: plan)
        return Summary(
            rows: options.rows, rowsCopied: migrator.currentState.tables.reduce(0) { $0 + $1.rowsCopied },
            changesReplayed: migrator.replayedCount,
            catchUpSeconds: caughtUpAt.map { Double($0 - start) / 1e9 } ?? 0,
            writesAcknowledged: stats.acknowledged.load(ordering: .relaxed), writesFailed: stats.failed.load(ordering: .relaxed),
            writesPerSecond: Double(stats.acknowledged.load(ordering: .relaxed)) / max(0.001, writeSeconds),
            comparisons: comparisons, maxLagMillis: maxLag)
    }

    static func seconds(since t: UInt64) -> Double { Double(Clock.monotonicNanos() - t) / 1e9 }
}

#if canImport(Glibc)
import Glibc
#endif

func makeDirectory(_ path: String) throws {
    if mkdir(path, 0o755) != 0 && errno != EEXIST {
        throw MigrationError(.badPlan, "cannot create directory \(path): \(String(cString: strerror(errno)))")
    }
}

func writeFile(_ path: String, _ text: String) throws {
    guard let f = fopen(path, "wb") else { throw MigrationError(.badPlan, "cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    let bytes = Array(text.utf8)
    guard fwrite(bytes, 1, bytes.count, f) == bytes.count else { throw MigrationError(.badPlan, "cannot write \(path)") }
}

func removeTree(_ path: String) {
    guard let dir = opendir(path) else { _ = unlink(path); return }
    var names: [String] = []
    while let e = readdir(dir) {
        let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        if name != "." && name != ".." { names.append(name) }
    }
    closedir(dir)
    for n in names { removeTree(path + "/" + n) }
    rmdir(path)
}
