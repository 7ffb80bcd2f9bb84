import CSQLite

extension Connection {
    /// Copies this connection's `main` database into the database file at
    /// `path` with SQLite's online backup API, and returns the copy opened.
    ///
    /// The copy is taken in one `sqlite3_backup_step(-1)`, which reads the
    /// whole source inside one read transaction: it is one consistent
    /// snapshot even while other connections write. (Copying in several
    /// steps would let a writer's commit restart the backup, over and over
    /// under steady writes.) On a WAL database writers are not blocked while
    /// the copy is made; on a rollback-journal database they wait for it.
    ///
    /// > sqlite3_backup_step() … If N is negative, all remaining source pages
    /// > are copied.
    ///
    /// - Parameter path: The destination file; created when missing,
    ///   overwritten when it exists.
    /// - Throws: ``SQLiteError`` naming the destination and what SQLite said,
    ///   e.g. `SQLITE_BUSY` when the source stays locked past the busy
    ///   timeout, or a full disk.
    @discardableResult
    public func backup(to path: String) throws(SQLiteError) -> Connection {
        let source = try handle()
        let destination = try Connection(path: path, mode: .readWriteCreate, busyTimeoutMillis: busyTimeoutMillis)
        let target = try destination.handle()
        guard let backup = sqlite3_backup_init(target, "main", source, "main") else {
            // > If an error occurs within sqlite3_backup_init(D,N,S,M), then
            // > NULL is returned and an error code and error message are stored
            // > in the destination database connection D.
            let error = SQLiteError.from(sqlite3_errcode(target), db: target, path: path)
            throw SQLiteError(code: error.code, message: "cannot back up \(self.path) into \(path): \(error.message)", path: path)
        }
        var code = sqlite3_backup_step(backup, -1)
        // A lock held by another connection: wait as a statement would.
        var waitedMillis: Int32 = 0
        while (code == SQLITE_BUSY || code == SQLITE_LOCKED) && waitedMillis < busyTimeoutMillis {
            sqlite3_sleep(10)
            waitedMillis += 10
            code = sqlite3_backup_step(backup, -1)
        }
        // > sqlite3_backup_finish() … If an out-of-memory condition or IO
        // > error occurred during any prior sqlite3_backup_step() call … then
        // > sqlite3_backup_finish() returns the corresponding error code.
        let finish = sqlite3_backup_finish(backup)
        if code != SQLITE_DONE || finish != SQLITE_OK {
            let failed = code != SQLITE_DONE ? code : finish
            let error = SQLiteError.from(failed, db: target, path: path)
            throw SQLiteError(code: error.code, message: "backing up \(self.path) into \(path) failed: \(error.message)", path: path)
        }
        return destination
    }
}
