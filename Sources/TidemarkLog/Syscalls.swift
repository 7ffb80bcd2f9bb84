import SystemPackage
#if canImport(Glibc)
import Glibc
#else
#error("TidemarkLog's file layer is built for Linux only (fdatasync, flock, readdir through Glibc); see Package.swift")
#endif

/// The few file-system calls swift-system 1.8.1 does not offer, each turned
/// into a thrown ``Errno`` here and nowhere else: fsync of file data and of
/// a directory, the directory calls (mkdir, readdir, unlink, rename) and
/// the appender's lock (flock). Everything else — open, pread, pwrite,
/// ftruncate, fstat, stat, close — is swift-system's ``FileDescriptor`` and
/// ``FilePath``.
///
/// Invariant: no caller reaches these except through ``SystemFile`` and
/// ``FileSystem``, which ask the fault injector (FileFaults.swift, debug
/// builds) first; so every mutating call of the log has one seam.
enum Syscall {
    /// `fdatasync(2)`: the file's data (and the size that reaches it) is on
    /// disk when this returns. Retried on EINTR.
    static func dataSync(_ fd: FileDescriptor) throws(Errno) {
        while fdatasync(fd.rawValue) != 0 {
            if errno == EINTR { continue }
            throw Errno(rawValue: errno)
        }
    }

    /// `fsync(2)` of a directory, so entries created, renamed or removed in
    /// it survive a crash. A file system that cannot sync directories
    /// (EINVAL) has nothing to sync.
    static func syncDirectory(_ path: String) throws(Errno) {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.directory, .closeOnExec])
        } catch {
            throw error as? Errno ?? .ioError
        }
        defer { try? fd.close() }
        while fsync(fd.rawValue) != 0 {
            if errno == EINTR { continue }
            if errno == EINVAL { return }
            throw Errno(rawValue: errno)
        }
    }

    /// `mkdir(2)` with mode 0700 (log directories hold row data); an
    /// existing entry is not an error.
    static func makeDirectory(_ path: String) throws(Errno) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw Errno(rawValue: errno) }
    }

    /// The names in a directory, without "." and "..".
    static func list(_ path: String) throws(Errno) -> [String] {
        guard let dir = opendir(path) else { throw Errno(rawValue: errno) }
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

    /// `rmdir(2)` of an empty directory (the fault injector's power cut).
    static func removeDirectory(_ path: String) throws(Errno) {
        if rmdir(path) != 0 { throw Errno(rawValue: errno) }
    }

    /// `unlink(2)`; a missing file is not an error.
    static func remove(_ path: String) throws(Errno) {
        if unlink(path) != 0 && errno != ENOENT { throw Errno(rawValue: errno) }
    }

    /// `rename(2)`: atomic replacement of `to`.
    static func rename(_ from: String, to: String) throws(Errno) {
        if Glibc.rename(from, to) != 0 { throw Errno(rawValue: errno) }
    }

    /// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open
    /// file description holds it.
    static func tryLock(_ fd: FileDescriptor) throws(Errno) -> Bool {
        while flock(fd.rawValue, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return false }
            throw Errno(rawValue: errno)
        }
        return true
    }
}
