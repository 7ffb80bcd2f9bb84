#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One segment file: named by the 16 hex digits of its first LSN, so
/// directory order is log order.
public struct SegmentFile: Sendable, Hashable, Comparable {
    public let baseLSN: LSN
    public let path: String
    public var name: String { Self.name(for: baseLSN) }

    public static func < (a: SegmentFile, b: SegmentFile) -> Bool { a.baseLSN < b.baseLSN }

    static let suffix = ".seg"

    static func name(for lsn: LSN) -> String {
        let hex = String(lsn.rawValue, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex + suffix
    }

    static func parse(_ name: String) -> LSN? {
        guard name.hasSuffix(suffix), name.utf8.count == 16 + suffix.utf8.count else { return nil }
        return UInt64(name.prefix(16), radix: 16).map { LSN($0) }
    }
}

/// The layout of a log directory:
///
/// ```
/// DIR/log.meta              format version and source id (key=value lines)
/// DIR/LOCK                  flock(2)-held by the one appender; holds its pid
/// DIR/<16 hex>.seg          segments, named by first LSN
/// DIR/consumers/<name>      acknowledged LSN of each registered consumer
/// ```
public struct LogDirectory: Sendable {
    public let path: String

    public init(_ path: String) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        self.path = p
    }

    var metaPath: String { path + "/log.meta" }
    var lockPath: String { path + "/LOCK" }
    var consumersPath: String { path + "/consumers" }

    /// Whether `path` holds a Tidemark log.
    public var exists: Bool { FileSystem.exists(metaPath) }

    /// The source this log belongs to.
    public func sourceID() throws(LogError) -> SourceID {
        guard FileSystem.isDirectory(path) else {
            throw LogError(.notALog, "log directory \(path) does not exist; create it with `tidemark capture install` or `tidemark log append`")
        }
        guard FileSystem.exists(metaPath) else {
            throw LogError(.notALog, "\(path) is not a Tidemark log (no log.meta)")
        }
        let text = try FileSystem.readSmallFile(metaPath)
        var format: String?
        var source: String?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            if parts[0] == "format" { format = String(parts[1]) }
            if parts[0] == "source_id" { source = String(parts[1]) }
        }
        guard format == "1" else {
            throw LogError(.notALog, "\(metaPath): unsupported log format \(format ?? "(missing)"); this build reads format 1")
        }
        guard let source, !source.isEmpty else { throw LogError(.notALog, "\(metaPath) has no source_id") }
        return SourceID(source)
    }

    /// Creates the directory and its metadata for `source`. Idempotent for
    /// the same source; refuses a non-empty directory that is not a log.
    func create(source: SourceID) throws(LogError) {
        if FileSystem.isDirectory(path) {
            if FileSystem.exists(metaPath) { return }
            let entries = try FileSystem.list(path).filter { $0 != "LOCK" && !$0.hasPrefix("log.meta.tmp") }
            guard entries.isEmpty else {
                throw LogError(.notALog, "\(path) is not empty and is not a Tidemark log; choose another directory")
            }
        } else {
            try FileSystem.makeDirectory(path)
        }
        guard source.rawValue.utf8.count <= 64, !source.rawValue.contains("\n"), !source.rawValue.isEmpty else {
            throw LogError(.invalidRecord, "source id must be 1-64 bytes without newlines")
        }
        try FileSystem.writeAtomically(metaPath, "format=1\nsource_id=\(source.rawValue)\n", directory: path)
    }

    /// Segment files in LSN order.
    public func segments() throws(LogError) -> [SegmentFile] {
        guard FileSystem.isDirectory(path) else {
            throw LogError(.notALog, "log directory \(path) does not exist")
        }
        return try FileSystem.list(path).compactMap { name in
            SegmentFile.parse(name).map { SegmentFile(baseLSN: $0, path: path + "/" + name) }
        }.sorted()
    }
}

/// The single-appender lock: `flock(LOCK_EX | LOCK_NB)` on DIR/LOCK, held
/// for the appender's lifetime and released by the kernel if it dies.
final class AppendLock {
    private var fd: Int32

    init(directory: LogDirectory) throws(LogError) {
        let path = directory.lockPath
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ioError("cannot open lock file", path) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            var holder = ""
            var buf = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buf, 32, 0)
            if n > 0, let pid = Int(String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").first ?? "") {
                holder = " (pid \(pid))"
            }
            close(fd)
            if e == EWOULDBLOCK {
                throw LogError(.locked, "another appender\(holder) is writing to the log \(directory.path); stop it first or use a different log")
            }
            throw ioError("cannot lock", path, errno: e)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        self.fd = fd
    }

    /// Releases the lock (closing the descriptor drops the flock).
    func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    deinit { release() }
}
