#if canImport(Glibc)
import Glibc
#endif

// Measuring tools shared by every benchmark: wall time of a closure, the
// durations of repeated runs, and this process's peak resident memory.

/// A failure of the benchmark itself (missing tool, wrong output size, a
/// baseline command that failed). One line a person can act on.
struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// How long something took: wall-clock time, and the CPU time this process
/// (or a child) spent, which a busy shared machine disturbs far less.
struct Timing {
    var wallSeconds = 0.0
    var cpuSeconds = 0.0

    static func += (a: inout Timing, b: Timing) {
        a.wallSeconds += b.wallSeconds
        a.cpuSeconds += b.cpuSeconds
    }
}

/// Measures closures with the monotonic clock and the process CPU clock.
enum Stopwatch {
    /// Runs `body` and returns its result and how long it took.
    static func measure<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> (result: T, timing: Timing) {
        let cpuStart = processCPUSeconds()
        let start = ContinuousClock.now
        let result = try body()
        let wall = seconds(ContinuousClock.now - start)
        return (result, Timing(wallSeconds: wall, cpuSeconds: processCPUSeconds() - cpuStart))
    }

    static func seconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }

    /// CPU time of all threads of this process.
    static func processCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// The durations, in seconds, of repeated runs of one measured path.
///
/// Benchmarks report the median: one slow run (a page-cache flush, a noisy
/// neighbour) moves it far less than it moves the mean.
struct Samples {
    private(set) var seconds: [Double] = []

    init(_ seconds: [Double] = []) { self.seconds = seconds }

    mutating func add(_ s: Double) { seconds.append(s) }

    var count: Int { seconds.count }

    var median: Double {
        precondition(!seconds.isEmpty, "median of no samples")
        let s = seconds.sorted()
        let mid = s.count / 2
        return s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
    }

    var min: Double { seconds.min() ?? .nan }
    var max: Double { seconds.max() ?? .nan }

    /// `work` units per second at the median duration (e.g. bytes/s).
    func rate(_ work: Double) -> Double { work / median }
}

/// Wall and CPU durations of repeated runs of one path.
struct Runs {
    var wall = Samples()
    var cpu = Samples()

    mutating func add(_ t: Timing) {
        wall.add(t.wallSeconds)
        cpu.add(t.cpuSeconds)
    }

    var count: Int { wall.count }
}

/// Resident memory of this process, from `/proc/self/status`.
///
/// `VmHWM` is the peak resident set size since the process started or since
/// the peak was last reset through `/proc/self/clear_refs` (Linux 4.0+):
/// > 5 (since Linux 4.0): Reset the peak resident set size ("high water
/// > mark") to the process's current resident set size value.  (proc(5))
/// That lets one benchmark report the peak of each phase separately while
/// ``PeakMemory`` still keeps the peak of the whole run.
enum ResidentMemory {
    /// Peak resident set size in bytes (`VmHWM`), or nil off Linux.
    static func peakBytes() -> Int? { statusField("VmHWM:") }

    /// Current resident set size in bytes (`VmRSS`).
    static func currentBytes() -> Int? { statusField("VmRSS:") }

    /// Resets `VmHWM` to the current RSS. Returns false when the kernel
    /// refuses (then phase peaks are really whole-process peaks).
    @discardableResult
    static func resetPeak() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    /// Reads one `Name:   1234 kB` line of /proc/self/status.
    private static func statusField(_ name: String) -> Int? {
        guard let text = readSmallFile("/proc/self/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let digits = line.dropFirst(name.count).filter { $0.isNumber }
            return Int(digits).map { $0 * 1024 }
        }
        return nil
    }
}

/// Peak resident memory per phase, and of the whole run.
///
/// Each phase starts by resetting the kernel's high-water mark, so a phase's
/// peak is what that phase used; the whole-run peak is the largest value
/// seen, including any peak before the first phase.
struct PeakMemory {
    private(set) var overallBytes: Int
    private(set) var phases: [(name: String, bytes: Int)] = []
    let resettable: Bool

    init() {
        overallBytes = ResidentMemory.peakBytes() ?? 0
        // Probe once: without a working reset, phase peaks are cumulative.
        resettable = ResidentMemory.resetPeak()
    }

    /// Runs `body` as the phase `name` and records its peak RSS.
    mutating func phase<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        overallBytes = Swift.max(overallBytes, ResidentMemory.peakBytes() ?? 0)
        if resettable { ResidentMemory.resetPeak() }
        let result = try body()
        let peak = ResidentMemory.peakBytes() ?? 0
        phases.append((name, peak))
        overallBytes = Swift.max(overallBytes, peak)
        return result
    }

    /// The whole run's peak so far (call at the end).
    mutating func finish() -> Int {
        overallBytes = Swift.max(overallBytes, ResidentMemory.peakBytes() ?? 0)
        return overallBytes
    }
}

/// Reads a file of at most a few hundred KiB (proc files report size 0, so
/// read until EOF).
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The size of a file in bytes.
func fileSize(_ path: String) throws -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else {
        throw BenchmarkError("cannot stat \(path): \(String(cString: strerror(errno)))")
    }
    return Int(st.st_size)
}
