#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Synchronization
import TidemarkLog
import TidemarkSQLite

// Helpers the SQLite benchmarks share: database file copies, percentiles,
// threads that can be joined, and handing freed memory back before a phase
// whose peak RSS is reported.

/// Copies a SQLite database file to `destination`, so that every measured
/// run starts from the same bytes.
///
/// The source is checkpointed first (`wal_checkpoint(TRUNCATE)`), so the
/// main file alone holds every committed page; the destination's stale
/// `-wal`/`-shm` files, if any, are removed.
func copyDatabase(from source: String, to destination: String) throws {
    do {
        let c = try Connection(path: source, mode: .readWrite)
        let s = try c.prepare("PRAGMA wal_checkpoint(TRUNCATE)")
        _ = try s.step()
        // busy = 1 means a reader or writer kept the checkpoint from finishing.
        guard s.columnInt64(0) == 0 else { throw BenchmarkError("cannot checkpoint \(source): it is in use") }
        s.reset()
        try c.close()
    }
    for suffix in ["", "-wal", "-shm", "-journal"] { try removeTree(destination + suffix) }
    try copyFile(from: source, to: destination)
}

/// Byte copy of a regular file (created 0600).
func copyFile(from source: String, to destination: String) throws {
    let input = open(source, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else { throw BenchmarkError("cannot open \(source): \(String(cString: strerror(errno)))") }
    defer { close(input) }
    let output = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard output >= 0 else { throw BenchmarkError("cannot create \(destination): \(String(cString: strerror(errno)))") }
    defer { close(output) }
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw BenchmarkError("cannot read \(source): \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        var done = 0
        while done < n {
            let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + done, n - done) }
            if w < 0 { if errno == EINTR { continue }; throw BenchmarkError("cannot write \(destination): \(String(cString: strerror(errno)))") }
            done += w
        }
    }
}

/// Removes a database file together with its `-wal`, `-shm` and `-journal`.
func removeDatabase(_ path: String) throws {
    for suffix in ["", "-wal", "-shm", "-journal"] { try removeTree(path + suffix) }
}

/// Returns freed heap memory to the kernel, so that the next phase's peak
/// RSS is not inflated by what an earlier phase (e.g. generating a
/// workload) freed but glibc kept.
func releaseFreedMemory() {
    #if canImport(Glibc)
    _ = glibcMallocTrim(0)
    #endif
}

#if canImport(Glibc)
// malloc.h is not part of Swift's Glibc module.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
#endif

/// Percentiles of a sample, nearest-rank: p(q) is the smallest value with at
/// least q of the sample at or below it.
struct Percentiles {
    let sorted: [Double]

    init(_ values: [Double]) { sorted = values.sorted() }

    var count: Int { sorted.count }

    func value(_ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = Int((q * Double(sorted.count)).rounded(.up))
        return sorted[Swift.min(sorted.count - 1, Swift.max(0, rank - 1))]
    }

    var p50: Double { value(0.50) }
    var p99: Double { value(0.99) }
    var max: Double { sorted.last ?? .nan }
}

/// A thread that can be waited for (``spawnThread`` threads are detached).
final class JoinableThread {
    private var thread = pthread_t()

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts `body` on a new OS thread at once.
    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<Body>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    /// Waits until the thread's body has returned.
    func join() {
        pthread_join(thread, nil)
    }
}

/// The monotonic clock, in nanoseconds.
func monotonicNanos() -> UInt64 { Clock.monotonicNanos() }

/// Sleeps until the monotonic clock reaches `nanos` (or returns at once).
func sleep(until nanos: UInt64) {
    let now = Clock.monotonicNanos()
    guard nanos > now else { return }
    let wait = nanos - now
    var ts = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
    var rest = timespec()
    while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
}

/// Milliseconds between two monotonic readings.
func millis(_ from: UInt64, _ to: UInt64) -> Double { to >= from ? Double(to - from) / 1e6 : -Double(from - to) / 1e6 }

/// The wall-clock spread line printed under every table.
func spreadLine(_ name: String, _ r: Runs, width: Int = 38) -> String {
    "  \(name.padding(to: width)) \(formatFixed(r.wall.min, decimals: 3)) … \(formatFixed(r.wall.median, decimals: 3)) … \(formatFixed(r.wall.max, decimals: 3))   (cpu \(formatFixed(r.cpu.median, decimals: 3)))"
}

/// The directory scratch files go in: --scratch, $TMPDIR or /tmp.
func scratchParent(_ option: String?) -> String {
    option ?? getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
}

/// Creates a directory (0700); an existing one is fine.
func makeDirectory(_ path: String) throws {
    if mkdir(path, 0o700) != 0 && errno != EEXIST {
        throw BenchmarkError("cannot create \(path): \(String(cString: strerror(errno)))")
    }
}

/// "Timing" as one short phrase for progress lines.
func describe(_ t: Timing) -> String {
    "\(formatFixed(t.wallSeconds, decimals: 3)) s (cpu \(formatFixed(t.cpuSeconds, decimals: 3)) s)"
}

/// A Boolean that threads share (a class, so escaping closures can hold it).
final class SharedFlag: Sendable {
    private let atomic = Atomic<Bool>(false)
    var isSet: Bool { atomic.load(ordering: .relaxed) }
    func set(_ value: Bool = true) { atomic.store(value, ordering: .relaxed) }
}

/// A value that threads share under a lock.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// The options every benchmark takes: where scratch files go, JSON or a
/// table, whether to keep the scratch directory, and whether a missed goal
/// fails the run.
struct BenchCommonOptions: ParsableArguments {
    @Option(help: "Directory for scratch files (default: $TMPDIR or /tmp).")
    var scratch: String?

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    @Flag(help: "Keep the scratch directory (databases, logs) for inspection.")
    var keep = false

    @Flag(help: "Exit with status 1 when a goal is missed or the run is smaller than the goals need.")
    var check = false
}

/// A benchmark command with the common options, read as its own.
protocol BenchCommand {
    var common: BenchCommonOptions { get }
}

extension BenchCommand {
    var scratch: String? { common.scratch }
    var json: Bool { common.json }
    var keep: Bool { common.keep }
    var check: Bool { common.check }
}
