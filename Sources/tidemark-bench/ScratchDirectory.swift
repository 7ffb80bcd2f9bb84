#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory for one benchmark's files, removed with everything in
/// it by ``remove()``.
struct ScratchDirectory {
    let path: String

    /// Creates `<parent>/tidemark-bench-<name>-XXXXXX`.
    init(in parent: String, name: String) throws {
        var template = Array("\(parent)/tidemark-bench-\(name)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else {
            throw BenchmarkError("cannot create a scratch directory in \(parent): \(String(cString: strerror(errno)))")
        }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A path inside the directory.
    func file(_ name: String) -> String { path + "/" + name }

    /// A new, empty subdirectory path (not created: the log creates its own).
    func subdirectory(_ name: String) -> String { path + "/" + name }

    func remove() throws { try removeTree(path) }
}

/// Removes `path` and, if it is a directory, everything below it. Symbolic
/// links are removed, never followed.
func removeTree(_ path: String) throws {
    var st = stat()
    guard lstat(path, &st) == 0 else {
        if errno == ENOENT { return }
        throw BenchmarkError("cannot stat \(path): \(String(cString: strerror(errno)))")
    }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        guard let dir = opendir(path) else {
            throw BenchmarkError("cannot list \(path): \(String(cString: strerror(errno)))")
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names { try removeTree(path + "/" + name) }
        guard rmdir(path) == 0 else { throw BenchmarkError("cannot remove \(path): \(String(cString: strerror(errno)))") }
    } else {
        guard unlink(path) == 0 else { throw BenchmarkError("cannot remove \(path): \(String(cString: strerror(errno)))") }
    }
}
