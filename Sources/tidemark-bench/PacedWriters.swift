import Synchronization
import TidemarkCore
import TidemarkDemo
import TidemarkLog
import TidemarkSQLite

/// Application writers for the demo shop schema (`DemoShop.schema`) at a
/// fixed total rate: the demo's own writes (`DemoShop.WriteMix` through a
/// `DemoShop.AppStore`: autocommit inserts, updates, some changing the key,
/// and deletes on both tables), from several threads with their own
/// connections and a 5 s busy timeout, as an application would. What this
/// adds to the demo's writers is the pacing and the per-write timing below.
///
/// Each write has a *scheduled* time (thread start + k × interval). Its
/// latency is measured from that time, not from when the thread got round to
/// issuing it: a write due while the previous one was blocked waits too, as
/// a request arriving at that moment would (no "coordinated omission").
/// A thread that falls more than a second behind skips ahead and counts it.
///
/// With a `Router`, a write refused by a cutover's guard trigger routes
/// again and is retried at the new location (same schema: the benchmarks
/// migrate with an identity plan, so the store writes the source's columns);
/// the refused attempt counts in its latency.
final class PacedWriters: @unchecked Sendable {
    // @unchecked: `threads` is touched only by the thread that calls
    // start/finish; everything the writer threads share is a Mutex or Atomic.
    struct Write: Sendable {
        var scheduled: UInt64
        var issued: UInt64
        var done: UInt64
        var ok: Bool
        var rerouted: Bool
        var latencyMillis: Double { millis(scheduled, done) }
    }

    struct Outcome {
        var writes: [Write]
        var failed: Int
        var rerouted: Int
        var skippedAhead: Int
        var firstError: String?
        var seconds: Double
        var writesPerSecond: Double { seconds > 0 ? Double(writes.count) / seconds : 0 }
    }

    let path: String
    let threadCount: Int
    let writesPerSecond: Int
    let router: Router?
    private let stopFlag = Atomic<Bool>(false)
    private let results = Mutex<[ThreadResult]>([])
    private var threads: [JoinableThread] = []
    private var startNanos: UInt64 = 0

    struct ThreadResult: Sendable {
        var writes: [Write] = []
        var failed = 0
        var rerouted = 0
        var skippedAhead = 0
        var error: String?
    }

    init(path: String, threads: Int, writesPerSecond: Int, router: Router? = nil) {
        self.path = path
        self.threadCount = threads
        self.writesPerSecond = writesPerSecond
        self.router = router
    }

    /// Starts the threads. Throws when the database cannot be read.
    func start() throws {
        // Read once, before any thread writes: each thread inserts keys in
        // its own range above these.
        let c = try Connection(path: path, mode: .readOnly)
        func top(_ sql: String) throws -> Int64 { let s = try c.prepare(sql); _ = try s.step(); return s.columnInt64(0) }
        let customers = max(1, try top("SELECT max(id) FROM customers"))
        let orders = max(1, try top("SELECT max(order_id) FROM order_lines"))
        try c.close()
        startNanos = monotonicNanos()
        let interval = UInt64(1e9 * Double(threadCount) / Double(writesPerSecond))
        for t in 0..<threadCount {
            // Threads are staggered so the writes arrive evenly spread.
            let first = startNanos + UInt64(t) * interval / UInt64(threadCount)
            threads.append(JoinableThread { [self] in
                var result = ThreadResult()
                do {
                    try write(thread: t, customers: customers, orders: orders, first: first, interval: interval, into: &result)
                } catch {
                    result.error = "\(error)"
                }
                let finished = result
                results.withLock { $0.append(finished) }
            })
        }
    }

    /// Stops the writers, waits for them and returns every write.
    func finish() -> Outcome {
        stopFlag.store(true, ordering: .relaxed)
        for t in threads { t.join() }
        let seconds = Double(monotonicNanos() - startNanos) / 1e9
        let all = results.withLock { $0 }
        var writes = all.flatMap(\.writes)
        writes.sort { $0.scheduled < $1.scheduled }
        return Outcome(
            writes: writes, failed: all.reduce(0) { $0 + $1.failed }, rerouted: all.reduce(0) { $0 + $1.rerouted },
            skippedAhead: all.reduce(0) { $0 + $1.skippedAhead }, firstError: all.compactMap(\.error).first, seconds: seconds)
    }

    private func write(thread: Int, customers: Int64, orders: Int64, first: UInt64, interval: UInt64, into result: inout ThreadResult) throws {
        // The benchmark's plan is an identity plan, and its commits are
        // SQLite's default (FULL), as they were measured before.
        let options = DemoShop.StoreOptions(targetShape: .sameAsSource, synchronousNormal: false)
        var route = try router?.route()
        var store = try DemoShop.openStore(path: path, route: route, router: router, options: options)
        var mix = DemoShop.WriteMix(thread: thread, top: (customers, orders))
        result.writes.reserveCapacity(1 << 16)
        var due = first
        while !stopFlag.load(ordering: .relaxed) {
            sleep(until: due)
            let scheduled = due
            due += interval
            let issued = monotonicNanos()
            if issued > due + 1_000_000_000 {
                due = issued
                result.skippedAhead += 1
            }
            let write = mix.next()
            var ok = true, rerouted = false
            var attempt = 0
            while true {
                attempt += 1
                do {
                    try store.execute(write.statement, write.parameters)
                } catch {
                    if let router, Router.isMovedError(error), attempt < 3 {
                        // Cut over: route again and write at the new location.
                        route = try router.route()
                        store = try DemoShop.openStore(path: path, route: route, router: router, options: options)
                        rerouted = true
                        result.rerouted += 1
                        continue
                    }
                    ok = false
                    result.failed += 1
                    if result.error == nil {
                        result.error = "\(error) (after \(formatFixed(millis(issued, monotonicNanos()), decimals: 1)) ms)"
                    }
                }
                break
            }
            result.writes.append(Write(scheduled: scheduled, issued: issued, done: monotonicNanos(), ok: ok, rerouted: rerouted))
        }
    }
}
