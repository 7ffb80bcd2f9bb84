#if canImport(Glibc)
import Glibc
#endif
import CSQLite
import TidemarkSQLite

// SQLite's session extension, the replay baseline: a session records the row
// changes made through one connection as a changeset, and
// `sqlite3changeset_apply` applies a changeset to another database.
// Debian's libsqlite3 is built with SQLITE_ENABLE_SESSION; CSQLite's shim.h
// defines the macros that make sqlite3.h declare the API.
//
// > A session object records changes to one or more tables … a changeset
// > contains at most one change per row (a row inserted then updated is one
// > INSERT of the final values). (sqlite.org/sessionintro.html, paraphrased)
// So a workload that must reach the changeset change for change touches
// each row at most once.

/// Records the changes to `tables` made through `connection`.
final class SessionRecorder {
    private var session: OpaquePointer?

    init(connection: Connection, tables: [String]) throws {
        let db = try connection.handle()
        var s: OpaquePointer?
        let rc = sqlite3session_create(db, "main", &s)
        guard rc == SQLITE_OK, let s else { throw BenchmarkError("sqlite3session_create failed (\(rc)); is libsqlite3 built with SQLITE_ENABLE_SESSION?") }
        session = s
        for table in tables {
            let rc = sqlite3session_attach(s, table)
            guard rc == SQLITE_OK else { throw BenchmarkError("sqlite3session_attach(\(table)) failed (\(rc))") }
        }
    }

    deinit { if let session { sqlite3session_delete(session) } }

    /// Writes the changeset recorded so far to `path` (streamed: the
    /// changeset itself is never held in memory whole). Returns its size.
    func writeChangeset(to path: String) throws -> Int {
        guard let session else { throw BenchmarkError("the session is closed") }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchmarkError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { _ = Glibc.close(fd) }
        let rc = sqlite3session_changeset_strm(session, { context, data, count in
            let fd = Int32(Int(bitPattern: context))
            var done = 0
            while done < Int(count) {
                let w = write(fd, data! + done, Int(count) - done)
                if w < 0 { if errno == EINTR { continue }; return SQLITE_IOERR }
                done += w
            }
            return SQLITE_OK
        }, UnsafeMutableRawPointer(bitPattern: Int(fd)))
        guard rc == SQLITE_OK else { throw BenchmarkError("sqlite3session_changeset_strm failed (\(rc))") }
        return try fileSize(path)
    }

    /// Frees the session (and the memory of everything it recorded).
    func close() {
        if let session { sqlite3session_delete(session) }
        session = nil
    }
}

/// A changeset held in memory.
struct Changeset {
    var bytes: [UInt8]

    /// Reads a changeset file.
    init(path: String) throws {
        let size = try fileSize(path)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchmarkError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { _ = Glibc.close(fd) }
        bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 { if errno == EINTR { continue }; throw BenchmarkError("cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { throw BenchmarkError("\(path) ended early") }
            done += n
        }
    }

    /// Changes by operation, counted by iterating the changeset.
    func count() throws -> (inserts: Int, updates: Int, deletes: Int) {
        var counts = (inserts: 0, updates: 0, deletes: 0)
        try bytes.withUnsafeBytes { raw in
            var iterator: OpaquePointer?
            // SQLite only reads the buffer; the C API just is not const.
            var rc = sqlite3changeset_start(&iterator, Int32(raw.count), UnsafeMutableRawPointer(mutating: raw.baseAddress))
            guard rc == SQLITE_OK else { throw BenchmarkError("sqlite3changeset_start failed (\(rc))") }
            defer { sqlite3changeset_finalize(iterator) }
            while true {
                rc = sqlite3changeset_next(iterator)
                if rc != SQLITE_ROW { break }
                var table: UnsafePointer<CChar>?
                var columns: Int32 = 0, op: Int32 = 0, indirect: Int32 = 0
                sqlite3changeset_op(iterator, &table, &columns, &op, &indirect)
                switch op {
                case SQLITE_INSERT: counts.inserts += 1
                case SQLITE_UPDATE: counts.updates += 1
                case SQLITE_DELETE: counts.deletes += 1
                default: break
                }
            }
            guard rc == SQLITE_DONE else { throw BenchmarkError("iterating the changeset failed (\(rc))") }
        }
        return counts
    }

    /// `sqlite3changeset_apply` of the whole changeset to `connection`'s
    /// main database, in one transaction (the function's own savepoint).
    /// Any conflict aborts: the target must be the database the changes
    /// were recorded against.
    func apply(to connection: Connection) throws {
        let db = try connection.handle()
        // SQLite only reads the buffer (no copy of it is timed).
        let rc = bytes.withUnsafeBytes { raw in
            sqlite3changeset_apply(db, Int32(raw.count), UnsafeMutableRawPointer(mutating: raw.baseAddress), nil,
                                   { _, _, _ in SQLITE_CHANGESET_ABORT }, nil)
        }
        guard rc == SQLITE_OK else {
            throw BenchmarkError("sqlite3changeset_apply failed (\(rc)): \(String(cString: sqlite3_errmsg(db)))")
        }
    }
}
