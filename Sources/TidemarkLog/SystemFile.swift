import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, turned into a one-line ``LogError``.
func ioError(_ what: String, _ path: String, errno: Errno) -> LogError {
    LogError(.io, "\(what) \(path): \(errno.description)")
}

func ioError(_ what: String, _ path: String, errno code: Int32) -> LogError {
    ioError(what, path, errno: Errno(rawValue: code))
}

/// Runs a swift-system call, turning what it throws (an ``Errno``) into a
/// ``LogError`` naming the call and the path.
@inline(__always)
func systemCall<T>(_ what: String, _ path: String, _ body: () throws -> T) throws(LogError) -> T {
    do {
        return try body()
    } catch let e as Errno {
        throw ioError(what, path, errno: e)
    } catch {
        throw LogError(.io, "\(what) \(path): \(error)")
    }
}

/// An owned file descriptor. All log file I/O goes through here, so faults
/// (ENOSPC, EIO, short writes) have one seam and every call's status becomes
/// a thrown error in one place. The calls are swift-system's
/// ``FileDescriptor``; fsync is ``Syscall/dataSync(_:)``.
final class SystemFile {
    let descriptor: FileDescriptor
    let path: String
    #if DEBUG
    /// The fault injector watching this file, and the process generation it
    /// was opened in (see FileFaults.swift).
    private let faults: FileFaults?
    private let generation: Int?
    #endif

    private init(_ descriptor: FileDescriptor, path: String) {
        self.descriptor = descriptor
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

    deinit { try? descriptor.close() }

    /// Opens read-only.
    static func openForReading(_ path: String) throws(LogError) -> SystemFile {
        let fd = try systemCall("cannot open", path) { try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) }
        return SystemFile(fd, path: path)
    }

    /// Opens read-write; creates with mode 0600 (log files hold row data).
    static func openForWriting(_ path: String, create: Bool, exclusive: Bool = false) throws(LogError) -> SystemFile {
        var options: FileDescriptor.OpenOptions = [.closeOnExec]
        if create { options.insert(.create) }
        if exclusive { options.insert(.exclusiveCreate) }
        if create { try FileSystem.check(.create, path, "cannot open") }
        let fd = try systemCall("cannot open", path) {
            try FileDescriptor.open(FilePath(path), .readWrite, options: options, permissions: create ? [.ownerReadWrite] : nil)
        }
        return SystemFile(fd, path: path)
    }

    func size() throws(LogError) -> Int {
        try systemCall("cannot stat", path) { Int(try descriptor.stat().size) }
    }

    /// Reads up to `count` bytes at `offset`; returns fewer only at end of file.
    func read(at offset: Int, count: Int, into buffer: inout [UInt8]) throws(LogError) -> Int {
        buffer.growZeroed(to: count)
        let descriptor = descriptor
        return try systemCall("cannot read", path) {
            try buffer.withUnsafeMutableBytes { raw in
                var total = 0
                while total < count {
                    // pread; swift-system retries EINTR.
                    let n = try descriptor.read(fromAbsoluteOffset: Int64(offset + total),
                                                into: UnsafeMutableRawBufferPointer(rebasing: raw[total..<count]))
                    if n == 0 { break }
                    total += n
                }
                return total
            }
        }
    }

    /// Writes all of `bytes` at `offset`, retrying short writes.
    func write(_ bytes: [UInt8], at offset: Int) throws(LogError) {
        try write(bytes, count: bytes.count, at: offset)
    }

    /// Writes the first `count` bytes of `bytes` at `offset`, retrying short writes.
    func write(_ bytes: [UInt8], count: Int, at offset: Int) throws(LogError) {
        precondition(count <= bytes.count)
        var limit = count
        let torn = try !check(.write, "cannot write")
        // A torn write (fault injection): half of it lands, then EIO.
        if torn { limit = count / 2 }
        let descriptor = descriptor
        try systemCall("cannot write", path) {
            try bytes.withUnsafeBytes { raw in
                // pwrite until all is written; swift-system retries EINTR.
                _ = try descriptor.writeAll(toAbsoluteOffset: Int64(offset), UnsafeRawBufferPointer(rebasing: raw[0..<limit]))
            }
        }
        if torn { throw ioError("cannot write", path, errno: .ioError) }
    }

    func sync() throws(LogError) {
        _ = try check(.sync, "cannot fsync")
        do {
            try Syscall.dataSync(descriptor)
        } catch {
            throw ioError("cannot fsync", path, errno: error)
        }
        #if DEBUG
        faults?.didSync(descriptor)
        #endif
    }

    func truncate(to size: Int) throws(LogError) {
        _ = try check(.truncate, "cannot truncate")
        try systemCall("cannot truncate", path) { try descriptor.resize(to: Int64(size)) }
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
        case .tear: throw ioError(what, path, errno: .ioError)
        }
        #endif
    }

    /// Whether anything exists at `path` (a dangling symbolic link counts).
    static func exists(_ path: String) -> Bool {
        (try? FilePath(path).stat(followTargetSymlink: false)) != nil
    }

    static func isDirectory(_ path: String) -> Bool {
        (try? FilePath(path).stat())?.type == .directory
    }

    static func makeDirectory(_ path: String) throws(LogError) {
        if isDirectory(path) { return }
        try check(.makeDirectory, path, "cannot create directory")
        do { try Syscall.makeDirectory(path) } catch { throw ioError("cannot create directory", path, errno: error) }
    }

    static func list(_ path: String) throws(LogError) -> [String] {
        do { return try Syscall.list(path) } catch { throw ioError("cannot list", path, errno: error) }
    }

    static func remove(_ path: String) throws(LogError) {
        if !exists(path) { return }
        try check(.remove, path, "cannot remove")
        do { try Syscall.remove(path) } catch { throw ioError("cannot remove", path, errno: error) }
    }

    /// fsync of a directory, so a created, renamed or removed entry survives a crash.
    static func syncDirectory(_ path: String) throws(LogError) {
        try check(.syncDirectory, path, "cannot fsync directory")
        do { try Syscall.syncDirectory(path) } catch { throw ioError("cannot fsync directory", path, errno: error) }
        #if DEBUG
        FileFaults.injector(for: path)?.didSyncDirectory(path)
        #endif
    }

    /// Renames `from` to `to` (same directory); durable only after the
    /// directory is synced.
    static func rename(_ from: String, to: String) throws(LogError) {
        try check(.rename, to, "cannot rename \(from) to")
        do { try Syscall.rename(from, to: to) } catch { throw ioError("cannot rename \(from) to", to, errno: error) }
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
            try? Syscall.remove(temp)
            throw error
        }
        try syncDirectory(directory)
    }
}

/// Numbers the temp files of ``SystemFile/writeAtomically(_:_:directory:)``.
private let atomicWriteCounter = Atomic<UInt64>(0)
