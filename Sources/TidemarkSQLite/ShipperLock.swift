import TidemarkLog

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one-shipper-per-source lock: `flock(LOCK_EX | LOCK_NB)` on
/// `<source>-tidemark.lock` beside the source database, held for a
/// ``Shipper``'s lifetime and freed by the kernel when its holder dies
/// (kill -9 included), so a crash never leaves a stale lock behind.
///
/// Why: each log directory has its own appender lock, but two shippers on
/// one source with *different* logs would each ship, and delete, the outbox
/// rows the other needs. Every shipping path (`capture run`, `migrate`,
/// `cutover`) builds a ``Shipper``, and a shipper holds this lock, so one
/// source has at most one shipper at a time. Processes on the *same* log
/// never get here: the log's own appender lock makes them readers.
///
/// File contents, rewritten by each holder (so a refused process can name
/// the running one):
///
///     <pid>\n<absolute log directory>\n
public final class ShipperLock {
    /// The lock file's path.
    public let path: String
    /// The log directory the holder ships into.
    public let logPath: String
    private var fd: Int32

    /// The lock file for the source database at `sourcePath` (symbolic links
    /// resolved, so two spellings of one file share one lock).
    public static func lockPath(forSource sourcePath: String) -> String {
        canonical(sourcePath) + "-tidemark.lock"
    }

    /// Takes the lock for `sourcePath`, recording this process and `logPath`.
    ///
    /// - Throws: ``CaptureError`` `shipperRunning`, naming the holder's pid and
    ///   log, when another shipper holds it; `io` when the file cannot be
    ///   opened or locked.
    public convenience init(sourcePath: String, logPath: String) throws(CaptureError) {
        switch try Self.take(sourcePath: sourcePath, logPath: logPath) {
        case .taken(let fd, let path, let log):
            self.init(fd: fd, path: path, logPath: log)
        case .held(let error, _):
            throw error
        }
    }

    /// Takes the lock, or returns nil when the holder ships into the same log
    /// (this process can then read the log the holder fills: a migrator
    /// beside `tidemark capture run`, a cutover beside `migrate --follow`).
    ///
    /// - Throws: ``CaptureError`` `shipperRunning` when the holder ships into
    ///   another log; `io`.
    public static func acquire(sourcePath: String, logPath: String) throws(CaptureError) -> ShipperLock? {
        switch try take(sourcePath: sourcePath, logPath: logPath) {
        case .taken(let fd, let path, let log):
            return ShipperLock(fd: fd, path: path, logPath: log)
        case .held(let error, let sameLog):
            if sameLog { return nil }
            throw error
        }
    }

    private init(fd: Int32, path: String, logPath: String) {
        self.fd = fd
        self.path = path
        self.logPath = logPath
    }

    private enum Outcome {
        case taken(fd: Int32, path: String, log: String)
        case held(CaptureError, sameLog: Bool)
    }

    private static func take(sourcePath: String, logPath: String) throws(CaptureError) -> Outcome {
        let path = lockPath(forSource: sourcePath)
        let log = canonical(logPath)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CaptureError(.io, "cannot open the shipper lock \(path): \(String(cString: strerror(errno))); check the permissions of the source's directory")
        }
        // A lock released a moment ago may still be held by a forked child
        // between fork and exec (it copies every descriptor): wait briefly.
        var locked = flock(fd, LOCK_EX | LOCK_NB) == 0
        var e = locked ? 0 : errno
        var waited = 0
        while !locked, e == EWOULDBLOCK, waited < 500 {
            usleep(10_000)
            waited += 10
            locked = flock(fd, LOCK_EX | LOCK_NB) == 0
            e = locked ? 0 : errno
        }
        if !locked {
            defer { close(fd) }
            guard e == EWOULDBLOCK else {
                throw CaptureError(.io, "cannot lock \(path): \(String(cString: strerror(e)))")
            }
            let holder = readHolder(fd)
            let who = holder.map { "pid \($0.pid), log \($0.log)" } ?? "pid unknown"
            let sameLog = holder?.log == log
            let advice = sameLog ? "it ships into the same log; let it ship" : "stop it first, or use its log"
            return .held(CaptureError(.shipperRunning,
                "another shipper (\(who)) is shipping from \(sourcePath); one source has one shipper at a time — \(advice)"),
                sameLog: sameLog)
        }
        let contents = Array("\(getpid())\n\(log)\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, contents, contents.count, 0)
        return .taken(fd: fd, path: path, log: log)
    }

    /// The process shipping from `sourcePath` now, if any: its pid and log.
    /// Creates nothing (for `capture status`).
    public static func holder(ofSource sourcePath: String) -> (pid: Int, log: String)? {
        let fd = open(lockPath(forSource: sourcePath), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 { return nil }  // nobody holds it
        return readHolder(fd)
    }

    /// The holder's pid and log. A holder writes them just after it takes
    /// the lock, so an empty file is retried briefly (at most ~100 ms).
    private static func readHolder(_ fd: Int32) -> (pid: Int, log: String)? {
        for _ in 0..<50 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = pread(fd, &buffer, buffer.count, 0)
            if n > 0 {
                let lines = String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                if lines.count >= 3, let pid = Int(lines[0]) { return (pid, String(lines[1])) }
            }
            usleep(2000)
        }
        return nil
    }

    /// `path` made absolute with symbolic links resolved; for a file that does
    /// not exist yet, its directory resolved and its name appended.
    static func canonical(_ path: String) -> String {
        if let resolved = realpath(path, nil) {
            defer { free(resolved) }
            return String(cString: resolved)
        }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard let resolved = realpath(directory.isEmpty ? "/" : directory, nil) else { return path }
        defer { free(resolved) }
        let base = String(cString: resolved)
        return (base == "/" ? "" : base) + "/" + name
    }

    /// Releases the lock (closing the descriptor drops the flock).
    public func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    deinit { release() }
}
