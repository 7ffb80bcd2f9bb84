import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The errno of a failed system call, turned into a one-line ``LogError``.
func ioError(_ what: String, _ path: String, errno code: Int32 = errno) -> LogError {
    let reason = String(cString: strerror(code))
    return LogError(.io, "\(what) \(path): \(reason)")
}

/// An owned file descriptor. All log file I/O goes through here, so faults
/// (ENOSPC, EIO, short writes) have one seam and every call's status becomes
/// a thrown error in one place.
final class SystemFile {
    let fd: Int32
    let path: String
    #if DEBUG
    /// The fault injector watching this file, and the process generation it
    /// was opened in (see FileFaults.swift).
    private let faults: FileFaults?
    private let generation: Int?
    #endif

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        #if DEBUG
        faults = FileFaults.injector(for: path)
        generation = faults?.currentGeneration
        #endif
    }

    /// DEBUG: asks the fault injector (if one watches this file) whether
    /// `operation` may proceed; throws the injected failure. Release: nothing.
    @inline(__always)
    private func check(_ operation: FileFaultOperation, _ what: String) throws(LogError) -> Bool {
        #if DEBUG
        guard let faults else { return true }
        switch faults.intercept(operation, path, generation: generation) {
        case .proceed: return true
        case .fail(let e): throw ioError(what, path, errno: e)
        case .tear: return false
        }
        #else
        return true
        #endif
    }

    deinit { close(fd) }

    /// Opens read-only.
    static func openForReading(_ path: String) throws(LogError) -> SystemFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("cannot open", path) }
        return SystemFile(fd: fd, path: path)
    }

    /// Opens read-write; creates with mode 0600 (log files hold row data).
    static func openForWriting(_ path: String, create: Bool, exclusive: Bool = false) throws(LogError) -> SystemFile {
        var flags = O_RDWR | O_CLOEXEC
        if create { flags |= O_CREAT }
        if exclusive { flags |= O_EXCL }
        if create { try FileSystem.check(.create, path, "cannot open") }
        let fd = open(path, flags, 0o600)
        guard fd >= 0 else { throw ioError("cannot open", path) }
        return SystemFile(fd: fd, path: path)
    }

    func size() throws(LogError) -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("cannot stat", path) }
        return Int(st.st_size)
    }

    /// Reads up to `count` bytes at `offset`; returns fewer only at end of file.
    func read(at offset: Int, count: Int, into buffer: inout [UInt8]) throws(LogError) -> Int {
        buffer.growZeroed(to: count)
        var total = 0
        var failure: Int32 = 0
        buffer.withUnsafeMutableBytes { raw in
            while total < count {
                let n = pread(fd, raw.baseAddress! + total, count - total, off_t(offset + total))
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if n == 0 { break }
                total += n
            }
        }
        if failure != 0 { throw ioError("cannot read", path, errno: failure) }
        return total
    }

    /// Writes all of `bytes` at `offset`, retrying short writes.
    func write(_ bytes: [UInt8], at offset: Int) throws(LogError) {
        try write(bytes, count: bytes.count, at: offset)
    }

    /// Writes the first `count` bytes of `bytes` at `offset`, retrying short writes.
    func write(_ bytes: [UInt8], count: Int, at offset: Int) throws(LogError) {
        precondition(count <= bytes.count)
        var done = 0
        var failure: Int32 = 0
        var limit = count
        if try !check(.write, "cannot write") {
            // A torn write (fault injection): half of it lands, then EIO.
            limit = count / 2
            failure = EIO
        }
        bytes.withUnsafeBytes { raw in
            while done < limit {
                let n = pwrite(fd, raw.baseAddress! + done, limit - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                done += n
            }
        }
        if failure != 0 { throw ioError("cannot write", path, errno: failure) }
    }

    func sync() throws(LogError) {
        _ = try check(.sync, "cannot fsync")
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw ioError("cannot fsync", path)
        }
        #if DEBUG
        faults?.didSync(fd: fd)
        #endif
    }

    func truncate(to size: Int) throws(LogError) {
        _ = try check(.truncate, "cannot truncate")
        guard ftruncate(fd, off_t(size)) == 0 else { throw ioError("cannot truncate", path) }
    }
}

/// The kinds of mutating file calls, numbered by the fault injector.
#if DEBUG
typealias FileFaultOperation = FileFaults.Operation
#else
enum FileFaultOperation { case create, write, sync, truncate, rename, remove, makeDirectory, syncDirectory }
#endif

enum FileSystem {
    /// DEBUG: lets the fault injector watching `path` (if any) fail the call.
    @inline(__always)
    static func check(_ operation: FileFaultOperation, _ path: String, _ what: String) throws(LogError) {
        #if DEBUG
        guard let faults = FileFaults.injector(for: path) else { return }
        switch faults.intercept(operation, path, generation: nil) {
        case .proceed: return
        case .fail(let e): throw ioError(what, path, errno: e)
        case .tear: throw ioError(what, path, errno: EIO)
        }
        #endif
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func makeDirectory(_ path: String) throws(LogError) {
        if isDirectory(path) { return }
        try check(.makeDirectory, path, "cannot create directory")
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw ioError("cannot create directory", path) }
    }

    static func list(_ path: String) throws(LogError) -> [String] {
        guard let dir = opendir(path) else { throw ioError("cannot list", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func remove(_ path: String) throws(LogError) {
        if !exists(path) { return }
        try check(.remove, path, "cannot remove")
        if unlink(path) != 0 && errno != ENOENT { throw ioError("cannot remove", path) }
    }

    /// fsync of a directory, so a created, renamed or removed entry survives a crash.
    static func syncDirectory(_ path: String) throws(LogError) {
        try check(.syncDirectory, path, "cannot fsync directory")
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("cannot open directory", path) }
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL { throw ioError("cannot fsync directory", path) }
        #if DEBUG
        FileFaults.injector(for: path)?.didSyncDirectory(path)
        #endif
    }

    /// Renames `from` to `to` (same directory); durable only after the
    /// directory is synced.
    static func rename(_ from: String, to: String) throws(LogError) {
        try check(.rename, to, "cannot rename \(from) to")
        guard posixRename(from, to) == 0 else { throw ioError("cannot rename \(from) to", to) }
    }

    static func readSmallFile(_ path: String) throws(LogError) -> String {
        let file = try SystemFile.openForReading(path)
        let size = try file.size()
        var buf = [UInt8]()
        let n = try file.read(at: 0, count: size, into: &buf)
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    /// Writes `contents` to `path` atomically: temp file, fsync, rename, fsync dir.
    static func writeAtomically(_ path: String, _ contents: String, directory: String) throws(LogError) {
        // Unique per write, not only per process: two threads of one process
        // (two migrators acknowledging one consumer) must not share a temp
        // file, or one's rename finds it gone.
        let temp = path + ".tmp-\(getpid())-\(atomicWriteCounter.add(1, ordering: .relaxed).newValue)"
        do {
            let file = try SystemFile.openForWriting(temp, create: true)
            try file.truncate(to: 0)
            try file.write(Array(contents.utf8), at: 0)
            try file.sync()
        }
        do {
            try rename(temp, to: path)
        } catch {
            _ = unlink(temp)
            throw error
        }
        try syncDirectory(directory)
    }
}

#if canImport(Glibc)
private let posixRename = Glibc.rename
#elseif canImport(Darwin)
private let posixRename = Darwin.rename
#endif

/// Monotonic clock in nanoseconds, and wall clock in microseconds.
package enum Clock {
    package static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    package static func wallMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    package static func sleep(milliseconds: Int) {
        usleep(useconds_t(milliseconds * 1000))
    }
}

/// Numbers the temp files of ``SystemFile/writeAtomically(_:_:directory:)``.
private let atomicWriteCounter = Atomic<UInt64>(0)
