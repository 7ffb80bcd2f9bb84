import TidemarkCore
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import Synchronization

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
        /// A PostgreSQL connection string to migrate into, or nil for the
        /// SQLite file `shop-v2.db` in `directory`. The demo owns the target
        /// tables `accounts` and `order_lines` of its schema (`public`) and
        /// the schema `tidemark` there: it drops them before it starts.
        public var target: String?

        public init(directory: String, rows: Int = 200_000, seconds: Double = 5, writesPerSecond: Int = 1_500, writerThreads: Int = 2,
                    target: String? = nil) {
            self.directory = directory
            self.rows = rows
            self.seconds = seconds
            self.writesPerSecond = writesPerSecond
            self.writerThreads = writerThreads
            self.target = target
        }

        /// The target as output may show it: the PostgreSQL connection string
        /// without its password, nil for the SQLite file.
        public var displayTarget: String? { target.map { PGConnection.redacted($0) } }
    }

    public struct Summary: Sendable {
        public var rows: Int
        public var rowsCopied: Int
        public var changesReplayed: Int
        public var catchUpSeconds: Double
        public var writesAcknowledged: Int
        public var writesFailed: Int
        public var writesRerouted: Int
        public var writesPerSecond: Double
        public var verify: Verifier.Report
        public var cutover: CutoverReport
        /// Write latencies (ms) of writes issued around the cutover.
        public var pauseP50Millis: Double
        public var pauseP99Millis: Double
        public var pauseMaxMillis: Double
        /// Acknowledged inserts missing from the authoritative store.
        public var lostWrites: Int
        public var insertsChecked: Int
        public var firstError: String?
        public var ok: Bool { verify.isEqual && lostWrites == 0 && writesFailed == 0 }
    }

    public enum Event: Sendable {
        case created(path: String, rows: Int, seconds: Double)
        case writersStarted(threads: Int, writesPerSecond: Int)
        case progress(MigrationProgress)
        case caughtUp(seconds: Double)
        case verifying
        case verified(Verifier.Report)
        case cuttingOver
        case cutOver(CutoverReport)
        case writersStopped(acknowledged: Int, failed: Int, rerouted: Int)
    }

    public static func run(_ options: Options, events: (Event) -> Void) throws -> Summary {
        let dir = options.directory
        try makeDirectory(dir)
        for name in ["shop.db", "shop.db-wal", "shop.db-shm", "shop-v2.db", "shop-v2.db-wal", "shop-v2.db-shm"] {
            _ = unlink(dir + "/" + name)
        }
        removeTree(dir + "/changelog")
        if let target = options.target {
            guard Plan.isConnectionString(target) else {
                throw MigrationError(.badPlan, "demo target must be a PostgreSQL connection string (postgres://… or host=… dbname=…); omit it for the SQLite file")
            }
        }
        let planPath = dir + "/tidemark.yml"
        try writeFile(planPath, options.target.map { DemoShop.planYAML(target: $0) } ?? DemoShop.planYAML())
        // A connection string may hold a password: the plan is the owner's only.
        if options.target != nil { _ = chmod(planPath, 0o600) }
        let plan = try Plan.load(path: planPath)
        if plan.isPostgres { try DemoShop.clearPostgres(plan) }

        let t0 = Clock.monotonicNanos()
        try DemoShop.create(path: plan.source, rows: options.rows)
        events(.created(path: plan.source, rows: options.rows, seconds: seconds(since: t0)))

        // Capture before the writers start, so every change they make is logged.
        let migrator = try Migrator.open(plan: plan, options: MigratorOptions(follow: true))
        defer { try? migrator.close() }
        let stats = DemoShop.WriterStats()
        let wait = DemoShop.startWriters(path: plan.source, threads: options.writerThreads, writesPerSecond: options.writesPerSecond,
                                         stats: stats, router: Router(plan: plan))
        events(.writersStarted(threads: options.writerThreads, writesPerSecond: options.writesPerSecond))
        let writeStart = Clock.monotonicNanos()
        func stopWriters() {
            stats.stop.store(true, ordering: .relaxed)
            wait()
        }

        let start = Clock.monotonicNanos()
        var caughtUpAt: UInt64?
        let verify: Verifier.Report
        let cut: CutoverReport
        do {
            // The migrator copies, replays and then follows on its own thread,
            // as `tidemark migrate --follow` would in its own process.
            let latest = Mutex<MigrationProgress?>(nil)
            let outcome = Mutex<Result<MigrationSummary, MigrationError>?>(nil)
            spawnThread {
                do {
                    let summary = try migrator.run { p in latest.withLock { $0 = p } }
                    outcome.withLock { $0 = .success(summary) }
                } catch {
                    outcome.withLock { $0 = .failure(error as? MigrationError ?? MigrationError(.badPlan, "\(error)")) }
                }
            }
            func finished() -> Result<MigrationSummary, MigrationError>? { outcome.withLock { $0 } }
            var verified: Verifier.Report?
            while finished() == nil {
                Clock.sleep(milliseconds: 100)
                guard let p = latest.withLock({ $0 }) else { continue }
                events(.progress(p))
                guard p.caughtUp else { continue }
                if caughtUpAt == nil {
                    caughtUpAt = Clock.monotonicNanos()
                    events(.caughtUp(seconds: seconds(since: start)))
                }
                if verified == nil && seconds(since: caughtUpAt!) >= options.seconds {
                    // Prove equality under the live load, while replay goes on.
                    events(.verifying)
                    verified = try Verifier(plan: plan).run()
                    events(.verified(verified!))
                    migrator.stop()
                }
            }
            if case .failure(let e) = finished()! { throw e }
            verify = verified!
            // Switch while the writers keep writing through the Router.
            events(.cuttingOver)
            stats.measuring.store(true, ordering: .relaxed)
            Clock.sleep(milliseconds: 200)
            var o = CutoverOptions()
            o.maxLagMillis = 1_000
            cut = try migrator.cutover(o)
            Clock.sleep(milliseconds: 500)
            stats.measuring.store(false, ordering: .relaxed)
            events(.cutOver(cut))
            Clock.sleep(milliseconds: 500)
        } catch {
            stopWriters()
            throw error
        }
        stopWriters()
        let writeSeconds = seconds(since: writeStart)
        events(.writersStopped(acknowledged: stats.acknowledged.load(ordering: .relaxed), failed: stats.failed.load(ordering: .relaxed),
                               rerouted: stats.rerouted.load(ordering: .relaxed)))

        // Every acknowledged insert must be in the authoritative store.
        let keys = stats.insertedKeys
        let lost = try DemoShop.countMissing(keys, route: try Router(plan: plan).route(), plan: plan)
        let lat = stats.latencies.sorted()
        func pct(_ p: Double) -> Double { lat.isEmpty ? 0 : Double(lat[min(lat.count - 1, Int(Double(lat.count) * p))]) / 1000 }
        return Summary(
            rows: options.rows, rowsCopied: migrator.currentState.tables.reduce(0) { $0 + $1.rowsCopied },
            changesReplayed: migrator.replayedCount,
            catchUpSeconds: caughtUpAt.map { Double($0 - start) / 1e9 } ?? 0,
            writesAcknowledged: stats.acknowledged.load(ordering: .relaxed), writesFailed: stats.failed.load(ordering: .relaxed),
            writesRerouted: stats.rerouted.load(ordering: .relaxed),
            writesPerSecond: Double(stats.acknowledged.load(ordering: .relaxed)) / max(0.001, writeSeconds),
            verify: verify, cutover: cut, pauseP50Millis: pct(0.5), pauseP99Millis: pct(0.99), pauseMaxMillis: pct(1.0),
            lostWrites: lost, insertsChecked: keys.count, firstError: stats.error)
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
