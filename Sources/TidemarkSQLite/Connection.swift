import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One open SQLite database connection, and the only owner of its handle.
///
/// A connection is used by one thread at a time and is deliberately not
/// `Sendable`: it is opened with `SQLITE_OPEN_NOMUTEX` (SQLite's multi-thread
/// mode), in which
/// > a single database connection [must not be] used simultaneously in two or
/// > more threads.
/// Code that wants a connection on another thread hands it over (it is a
/// fresh, unshared value) rather than sharing it.
///
/// Closing (explicitly or in `deinit`) finalizes the cached statements and
/// calls `sqlite3_close_v2`, so statements still held elsewhere stay valid
/// until they are released.
public final class Connection {
    /// How to open the database file.
    public enum OpenMode: Sendable {
        /// Read only; the file must exist.
        case readOnly
        /// Read and write; the file must exist. The default, so that a typo in
        /// a path never creates an empty database.
        case readWrite
        /// Read and write, creating an empty database when the file is missing.
        case readWriteCreate

        var flags: Int32 {
            switch self {
            case .readOnly: SQLITE_OPEN_READONLY
            case .readWrite: SQLITE_OPEN_READWRITE
            case .readWriteCreate: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
            }
        }
    }

    /// A transaction's locking behaviour at `BEGIN`.
    public enum TransactionKind: Sendable {
        /// Takes locks on first read or write.
        case deferred
        /// Takes the write lock at once (waiting up to the busy timeout), so the
        /// body cannot fail later with `SQLITE_BUSY` on its first write.
        case immediate
        /// Like immediate; in WAL mode the same as immediate.
        case exclusive

        var beginSQL: String {
            switch self {
            case .deferred: "BEGIN DEFERRED"
            case .immediate: "BEGIN IMMEDIATE"
            case .exclusive: "BEGIN EXCLUSIVE"
            }
        }
    }

    /// A journal mode (`PRAGMA journal_mode`).
    public enum JournalMode: String, Sendable {
        case delete, truncate, persist, memory, wal, off
    }

    /// The `sqlite3*`, nil once closed; never exposed outside the package.
    private var db: OpaquePointer?
    /// The path the connection was opened with.
    public let path: String
    private var statementCache: [String: Statement] = [:]
    /// The busy timeout currently installed on the handle.
    public private(set) var busyTimeoutMillis: Int32

    /// Opens the database at `path` and checks that it is a SQLite database.
    ///
    /// `sqlite3_open_v2` opens files lazily — it succeeds on any file and the
    /// first read fails — so the schema is read once here, and the failures a
    /// person can act on are reported by name.
    ///
    /// - Parameters:
    ///   - path: A file path, or `:memory:`.
    ///   - mode: Whether to write, and whether a missing file is created.
    ///   - busyTimeoutMillis: How long a statement waits for another
    ///     connection's lock before failing with `SQLITE_BUSY`.
    /// - Throws: ``SQLiteError``: code `SQLITE_CANTOPEN` with "… does not
    ///   exist" for a missing file (without `.readWriteCreate`),
    ///   `SQLITE_NOTADB` with "… is not a SQLite database", or what SQLite said.
    ///   - vfs: The name of a registered SQLite VFS, nil for the default
    ///     (tests use a VFS that simulates power loss).
    public init(path: String, mode: OpenMode = .readWrite, busyTimeoutMillis: Int32 = 5000, vfs: String? = nil) throws(SQLiteError) {
        self.path = path
        self.busyTimeoutMillis = busyTimeoutMillis
        var handle: OpaquePointer?
        let flags = mode.flags | SQLITE_OPEN_NOMUTEX
        let code = sqlite3_open_v2(path, &handle, flags, vfs)
        guard code == SQLITE_OK, let handle else {
            let error = Self.openError(code, handle: handle, path: path)
            // > Whether or not an error occurs when it is opened, resources
            // > associated with the database connection handle should be
            // > released by passing it to sqlite3_close()
            sqlite3_close_v2(handle)
            throw error
        }
        self.db = handle
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, busyTimeoutMillis)
        do {
            let check = try prepare("PRAGMA schema_version")
            try check.step()
        } catch {
            sqlite3_close_v2(handle)
            self.db = nil
            if error.primaryCode == .notADatabase {
                throw SQLiteError(
                    code: error.code,
                    message: "\(path) is not a SQLite database (\(error.message))",
                    path: path)
            }
            throw SQLiteError(code: error.code, message: "cannot read \(path): \(error.message)", path: path)
        }
    }

    private static func openError(_ code: Int32, handle: OpaquePointer?, path: String) -> SQLiteError {
        let base = SQLiteError.from(code, db: handle, path: path)
        guard code & 0xFF == SQLITE_CANTOPEN else { return base }
        var status = stat()
        if stat(path, &status) != 0 {
            return SQLiteError(code: base.code, message: "\(path) does not exist", path: path)
        }
        if (status.st_mode & S_IFMT) == S_IFDIR {
            return SQLiteError(code: base.code, message: "\(path) is a directory, not a SQLite database", path: path)
        }
        return SQLiteError(
            code: base.code,
            message: "cannot open \(path) (\(base.message)): check its permissions and those of its directory",
            path: path)
    }

    deinit {
        statementCache.removeAll()
        if let db { sqlite3_close_v2(db) }
    }

    /// Finalizes the cached statements and closes the handle. Statements still
    /// referenced elsewhere keep the handle alive until they are released.
    /// Calling `close()` twice does nothing.
    public func close() throws(SQLiteError) {
        guard let db else { return }
        statementCache.removeAll()
        let code = sqlite3_close_v2(db)
        if code != SQLITE_OK { throw SQLiteError.from(code, db: db, path: path) }
        self.db = nil
    }

    /// The open handle, or a misuse error after ``close()``.
    package func handle() throws(SQLiteError) -> OpaquePointer {
        guard let db else {
            throw SQLiteError(code: .misuse, message: "the connection to \(path) is closed", path: path)
        }
        return db
    }

    // MARK: Statements

    /// Runs `sql`, which may hold several statements separated by `;`.
    /// Values must not be spliced into `sql`; use ``prepare(_:)`` and bind them.
    public func execute(_ sql: String) throws(SQLiteError) {
        let db = try handle()
        var cMessage: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(db, sql, nil, nil, &cMessage)
        if code != SQLITE_OK {
            var error = SQLiteError.from(code, db: db, sql: sql)
            if let cMessage {
                error.message = String(cString: cMessage)
                sqlite3_free(cMessage)
            }
            throw error
        }
    }

    /// Compiles one SQL statement.
    ///
    /// - Throws: ``SQLiteError`` for invalid SQL, and `SQLITE_MISUSE` when `sql`
    ///   holds no statement or more than one (use ``execute(_:)`` for scripts).
    public func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        try prepare(sql, flags: 0)
    }

    private func prepare(_ sql: String, flags: UInt32) throws(SQLiteError) -> Statement {
        let db = try handle()
        var stmt: OpaquePointer?
        var rest = ""
        let code = sql.withCString { cSQL -> Int32 in
            var tail: UnsafePointer<CChar>?
            let code = sqlite3_prepare_v3(db, cSQL, -1, flags, &stmt, &tail)
            if let tail { rest = String(cString: tail) }
            return code
        }
        guard code == SQLITE_OK else { throw SQLiteError.from(code, db: db, sql: sql) }
        guard let stmt else {
            throw SQLiteError(code: .misuse, message: "no SQL statement to prepare", sql: sql)
        }
        let statement = Statement(handle: stmt, sql: sql)
        if !Self.isBlank(rest, db: db) {
            throw SQLiteError(
                code: .misuse,
                message: "more than one SQL statement given to prepare; run scripts with execute",
                sql: sql)
        }
        return statement
    }

    /// Whether `sql` compiles to no statement: white space, comments and
    /// empty statements (`;`) only.
    private static func isBlank(_ sql: String, db: OpaquePointer) -> Bool {
        if sql.allSatisfy({ $0.isWhitespace || $0 == ";" }) { return true }
        var rest = sql
        // Bounded: each round consumes at least one character of `rest`.
        while !rest.isEmpty {
            var stmt: OpaquePointer?
            var next = ""
            let code = rest.withCString { cSQL -> Int32 in
                var tail: UnsafePointer<CChar>?
                let code = sqlite3_prepare_v2(db, cSQL, -1, &stmt, &tail)
                if let tail { next = String(cString: tail) }
                return code
            }
            sqlite3_finalize(stmt)
            if code != SQLITE_OK || stmt != nil || next.utf8.count >= rest.utf8.count { return false }
            rest = next
        }
        return true
    }

    /// A prepared statement for `sql`, compiled once per connection and reused.
    ///
    /// The statement comes back reset with its bindings cleared. It is shared:
    /// finish using it before asking for the same SQL again (a nested request
    /// would rewind it under the outer user).
    public func cachedStatement(_ sql: String) throws(SQLiteError) -> Statement {
        if let statement = statementCache[sql] {
            statement.reset()
            statement.clearBindings()
            return statement
        }
        // > SQLITE_PREPARE_PERSISTENT … a hint to the query planner that the
        // > prepared statement will be retained for a long time and probably reused many times.
        let statement = try prepare(sql, flags: UInt32(SQLITE_PREPARE_PERSISTENT))
        statementCache[sql] = statement
        return statement
    }

    /// The number of statements in the cache.
    public var cachedStatementCount: Int { statementCache.count }

    // MARK: Transactions

    /// Whether a transaction is open (SQLite is not in autocommit mode).
    public var isInTransaction: Bool {
        guard let db else { return false }
        return sqlite3_get_autocommit(db) == 0
    }

    /// Runs `body` in a transaction: commits when it returns, rolls back when
    /// it throws (or when the commit fails), and rethrows.
    ///
    /// - Throws: what `body` threw, or ``SQLiteError`` from BEGIN/COMMIT;
    ///   `SQLITE_MISUSE` when a transaction is already open.
    public func transaction<R>(_ kind: TransactionKind = .deferred, _ body: () throws -> R) throws -> R {
        if isInTransaction {
            throw SQLiteError(code: .misuse, message: "a transaction is already open on this connection", path: path)
        }
        try cachedStatement(kind.beginSQL).execute()
        let result: R
        do {
            result = try body()
            try cachedStatement("COMMIT").execute()
        } catch {
            rollbackIfOpen()
            throw error
        }
        return result
    }

    /// Rolls back the open transaction, if SQLite still has one (some errors,
    /// such as `SQLITE_FULL`, roll it back by themselves).
    private func rollbackIfOpen() {
        guard isInTransaction, let db else { return }
        sqlite3_exec(db, "ROLLBACK", nil, nil, nil)
    }

    // MARK: State

    /// Rows changed by the most recent INSERT, UPDATE or DELETE.
    public var changes: Int {
        guard let db else { return 0 }
        return Int(sqlite3_changes64(db))
    }

    /// Rows changed since the connection opened.
    public var totalChanges: Int {
        guard let db else { return 0 }
        return Int(sqlite3_total_changes64(db))
    }

    /// The rowid of the most recent successful INSERT on this connection.
    public var lastInsertRowID: Int64 {
        guard let db else { return 0 }
        return sqlite3_last_insert_rowid(db)
    }

    /// Changes how long statements wait for another connection's lock.
    public func setBusyTimeout(millis: Int32) throws(SQLiteError) {
        let db = try handle()
        let code = sqlite3_busy_timeout(db, millis)
        if code != SQLITE_OK { throw SQLiteError.from(code, db: db) }
        busyTimeoutMillis = millis
    }

    /// The current journal mode.
    public func journalMode() throws(SQLiteError) -> JournalMode {
        try readJournalMode(prepare("PRAGMA journal_mode"))
    }

    /// Switches the journal mode and returns the mode now in force, which
    /// differs from `mode` when SQLite declined (e.g. WAL for `:memory:`).
    ///
    /// > The WAL journaling mode uses a write-ahead log instead of a rollback
    /// > journal … WAL is persistent; after being set it stays in effect
    /// > across multiple database connections and after closing and reopening
    /// - Throws: ``SQLiteError``, e.g. when called inside a transaction.
    @discardableResult
    public func setJournalMode(_ mode: JournalMode) throws(SQLiteError) -> JournalMode {
        // The mode is a keyword, not a value: PRAGMA arguments cannot be bound.
        try readJournalMode(prepare("PRAGMA journal_mode = \(mode.rawValue)"))
    }

    private func readJournalMode(_ statement: Statement) throws(SQLiteError) -> JournalMode {
        guard try statement.step() else {
            throw SQLiteError(code: .error, message: "PRAGMA journal_mode returned no row", sql: statement.sql)
        }
        let name = statement.columnText(0).lowercased()
        guard let mode = JournalMode(rawValue: name) else {
            throw SQLiteError(code: .error, message: "unknown journal mode '\(name)'", sql: statement.sql)
        }
        return mode
    }

    /// The SQLite library version this process runs, e.g. "3.40.1".
    public static var libraryVersion: String { String(cString: sqlite3_libversion()) }
}
