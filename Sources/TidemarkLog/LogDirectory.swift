import SystemPackage
#if canImport(Glibc)
import Glibc
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
/// DIR/log.meta              format, source id, writer kind, owner, gaps (key=value lines)
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
        try meta().sourceID
    }

    /// The log's metadata (log.meta, format 1 or 2).
    public func meta() throws(LogError) -> LogMeta {
        guard FileSystem.isDirectory(path) else {
            throw LogError(.notALog, "log directory \(path) does not exist; create it with `tidemark capture install` or `tidemark log append`")
        }
        guard FileSystem.exists(metaPath) else {
            throw LogError(.notALog, "\(path) is not a Tidemark log (no log.meta)")
        }
        return try LogMeta.parse(try FileSystem.readSmallFile(metaPath), path: metaPath)
    }

    /// Replaces log.meta atomically (temp file, fsync, rename, fsync of the
    /// directory), always in the current format. Callers hold the append lock.
    func writeMeta(_ meta: LogMeta) throws(LogError) {
        try FileSystem.writeAtomically(metaPath, meta.text, directory: path)
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
        try writeMeta(LogMeta(sourceID: source))
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
    private var descriptor: FileDescriptor?

    init(directory: LogDirectory) throws(LogError) {
        let path = directory.lockPath
        let fd = try systemCall("cannot open lock file", path) {
            try FileDescriptor.open(FilePath(path), .readWrite, options: [.create, .closeOnExec], permissions: [.ownerReadWrite])
        }
        let locked: Bool
        do {
            locked = try Self.lockWithin(fd, milliseconds: 500)
        } catch {
            try? fd.close()
            throw ioError("cannot lock", path, errno: error)
        }
        if !locked {
            var holder = ""
            var buf = [UInt8](repeating: 0, count: 32)
            let n = (try? buf.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }) ?? 0
            if n > 0, let pid = Int(String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").first ?? "") {
                holder = " (pid \(pid))"
            }
            try? fd.close()
            throw LogError(.locked, "another appender\(holder) is writing to the log \(directory.path); stop it first or use a different log")
        }
        // The holder's pid, for the message above (best effort: the lock is
        // the flock, not this text).
        let pid = Array("\(getpid())\n".utf8)
        _ = try? fd.resize(to: 0)
        _ = try? fd.writeAll(toAbsoluteOffset: 0, pid)
        descriptor = fd
    }

    /// Tries the lock for up to `milliseconds`. A lock its holder released a
    /// moment ago can still be held for a few milliseconds: a thread of the
    /// same process that forks a child copies every descriptor, and the copy
    /// keeps the flock until the child execs (O_CLOEXEC closes it only then).
    /// A real holder still makes the open fail, half a second later.
    static func lockWithin(_ fd: FileDescriptor, milliseconds: Int) throws(Errno) -> Bool {
        var waited = 0
        while try !Syscall.tryLock(fd) {
            guard waited < milliseconds else { return false }
            Clock.sleep(milliseconds: 10)
            waited += 10
        }
        return true
    }

    /// Releases the lock (closing the descriptor drops the flock).
    func release() {
        try? descriptor?.close()
        descriptor = nil
    }

    deinit { release() }
}

/// The contents of `log.meta`: who may write the log, and what it lacks.
///
/// Format 2 (key=value lines, any order, unknown keys refused):
///
/// ```
/// format=2
/// source_id=<1-64 bytes>
/// writer=capture|append          absent until the first writer claims the log
/// installation_id=<id>           capture only: the installation that owns it
/// gap=<first LSN>-<last LSN>     zero or more: ranges lost to repair
/// ```
///
/// Format 1 had only `format=1` and `source_id`; it still reads (no writer,
/// no owner, no gaps) and is rewritten as format 2 by the first claim.
///
/// Identity never depends on a clock: a capture
/// installation proves it owns the log by its random id, not by time.
public struct LogMeta: Sendable, Equatable {
    /// Who appends to a log. One log has one kind for its whole life: LSNs of
    /// a capture log are its source's outbox `seq`s, which an `append`
    /// writer would take.
    public enum Writer: String, Sendable {
        case capture
        case append
    }

    public static let currentFormat = 2

    /// The format the file was read in (1 or 2); writes use ``currentFormat``.
    public var format: Int = LogMeta.currentFormat
    public var sourceID: SourceID
    public var writer: Writer?
    /// The capture installation that owns the log (writer `capture`).
    public var installationID: String?
    /// LSN ranges whose changes are lost (quarantined by `log repair`).
    public var gaps: [ClosedRange<LSN>] = []

    public init(sourceID: SourceID, writer: Writer? = nil, installationID: String? = nil, gaps: [ClosedRange<LSN>] = []) {
        self.sourceID = sourceID
        self.writer = writer
        self.installationID = installationID
        self.gaps = gaps
    }

    var text: String {
        var out = "format=\(Self.currentFormat)\nsource_id=\(sourceID.rawValue)\n"
        if let writer { out += "writer=\(writer.rawValue)\n" }
        if let installationID { out += "installation_id=\(installationID)\n" }
        for g in gaps { out += "gap=\(g.lowerBound.rawValue)-\(g.upperBound.rawValue)\n" }
        return out
    }

    static func parse(_ text: String, path: String) throws(LogError) -> LogMeta {
        var fields: [(String, String)] = []
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            fields.append((String(parts[0]), String(parts[1])))
        }
        let format = fields.first { $0.0 == "format" }?.1
        guard let format, let version = Int(format), version == 1 || version == 2 else {
            throw LogError(.notALog, "\(path): unsupported log format \(format ?? "(missing)"); this build reads formats 1 and 2")
        }
        guard let source = fields.first(where: { $0.0 == "source_id" })?.1, !source.isEmpty else {
            throw LogError(.notALog, "\(path) has no source_id")
        }
        var meta = LogMeta(sourceID: SourceID(source))
        meta.format = version
        guard version == 2 else { return meta }
        for (key, value) in fields {
            switch key {
            case "format", "source_id":
                continue
            case "writer":
                guard let w = Writer(rawValue: value) else {
                    throw LogError(.notALog, "\(path): unknown writer '\(value)' (expected capture or append)")
                }
                meta.writer = w
            case "installation_id":
                meta.installationID = value
            case "gap":
                let bounds = value.split(separator: "-")
                guard bounds.count == 2, let a = UInt64(bounds[0]), let b = UInt64(bounds[1]), a <= b else {
                    throw LogError(.notALog, "\(path): bad gap '\(value)'")
                }
                meta.gaps.append(LSN(a)...LSN(b))
            default:
                throw LogError(.notALog, "\(path): unknown key '\(key)'; written by a newer Tidemark?")
            }
        }
        return meta
    }
}
