import CSQLite
import TidemarkLog

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Moves captured changes from a source's outbox into its change log,
/// exactly once, in `seq` order, with LSN = `seq`.
///
/// One round:
/// 1. In one read transaction (one snapshot): if the schema changed since the
///    last round, check every captured table's shape (``Capture/checkShapes(connection:)``)
///    and reload the decoder; check that the source still holds what the log
///    holds (see below); then read up to ``Options/batchLimit`` outbox rows
///    with `seq` above the log's last LSN.
/// 2. Make the source's WAL durable up to what step 1 read (one sync per
///    round, whatever the number of rows).
/// 3. Append them to the log (the appender syncs under its durability policy).
/// 4. Delete the outbox rows at or below the log's *durable* LSN.
///
/// Why step 2: writers commonly run `synchronous = NORMAL`, whose commits a
/// power loss may undo. A change the log holds but the source lost is a
/// change that never happened, and the source would hand its `seq` to a new
/// change, which would look "already shipped". So the log only ever holds
/// commits the source holds durably. And because a source can still go back
/// (a restored backup, a writer with `synchronous = OFF`), step 1 refuses to
/// go on when the source's sequence is behind the log, or when a leftover
/// outbox row at or below the log's last LSN differs from the log's record
/// of that LSN (a reused `seq`): never a silent drop.
///
/// One source has one shipper at a time: a shipper holds the source's
/// ``ShipperLock`` for its lifetime.
///
/// Why a crash anywhere neither loses nor duplicates a change: the log, not
/// the outbox, records what was shipped. A row is deleted only after the log
/// holds it durably (step 3 follows step 2), so no change exists in neither
/// place; and step 1 reads only rows above the log's last LSN, which the
/// appender recovers on open, so a row that reached the log before a crash
/// but was not yet deleted is deleted by the next round, not appended again.
/// This relies on committed `seq`s appearing in increasing order: SQLite has
/// one writer at a time and AUTOINCREMENT hands out increasing values, so a
/// snapshot that holds `seq` n holds every committed `seq` below n.
///
/// A shipper owns its connection and appender and is used from one thread.
public final class Shipper {
    public struct Options: Sendable {
        /// The most outbox rows read, appended and deleted per round; bounds
        /// memory and the length of the delete transaction.
        ///
        /// Each round syncs twice whatever its size (the source's WAL before
        /// the append, the log at the append), so a backlog ships in fewer,
        /// larger rounds. 20,000 is the compromise: a round of small rows
        /// holds some 10 MB of decoded records (50,000 held 25 MB and took a
        /// migration's peak RSS near its 64 MB budget) and its delete keeps
        /// the source's write lock for milliseconds, while 500,000 rows cost
        /// 50 syncs instead of the 100 of 10,000-row rounds.
        public var batchLimit: Int
        /// How long ``run(until:)`` sleeps when a round found nothing to ship.
        public var idlePauseMillis: Int

        /// The longest a round waits for the source's write lock to delete
        /// shipped rows before leaving them to a later round. Short on
        /// purpose: the lock holder may be waiting for this round's append
        /// (a cutover drains the log while it holds the source's write lock),
        /// so waiting out the connection's busy timeout would stall both.
        public var deleteWaitMillis: Int32

        public init(batchLimit: Int = 20_000, idlePauseMillis: Int = 50, deleteWaitMillis: Int32 = 10) {
            precondition(batchLimit > 0 && idlePauseMillis >= 0 && deleteWaitMillis >= 0)
            self.batchLimit = batchLimit
            self.idlePauseMillis = idlePauseMillis
            self.deleteWaitMillis = deleteWaitMillis
        }
    }

    /// What one round did.
    public struct Round: Sendable, Hashable {
        /// Changes appended to the log.
        public var shipped: Int
        /// Outbox rows deleted (shipped in this round or an earlier one).
        public var deleted: Int
        /// The log's last LSN after the round.
        public var lastLSN: LSN
    }

    public let connection: Connection
    public let appender: LogAppender
    public let options: Options
    private var decoder: OutboxDecoder
    private var checkedSchemaVersion: Int64?
    /// Held for the shipper's lifetime: one shipper per source.
    private let lock: ShipperLock
    /// Every outbox row with `seq` at or below this is known to equal the
    /// log's record of that LSN: it was read by this shipper before it was
    /// appended, or compared with the log by ``checkSourceHoldsLog(_:)``.
    private var verifiedThrough: LSN = .zero

    /// Prepares to ship from `connection` into `appender`.
    ///
    /// - Throws: ``CaptureError`` `notInstalled`; `foreignSource` when the log
    ///   belongs to another source, or is ahead of the outbox (it was filled
    ///   by an earlier installation of capture in this database, whose `seq`s
    ///   started again at 1); `sourceBehindLog` when the log is this
    ///   installation's but the source lost commits it holds;
    ///   `shipperRunning`; `shapeChanged`.
    ///
    /// - Parameter lock: the source's ``ShipperLock`` when the caller took it
    ///   before opening the log (so that a refused process creates nothing);
    ///   nil to take it here. `shipperRunning` when another process holds it.
    public init(connection: Connection, appender: LogAppender, options: Options = Options(), lock: ShipperLock? = nil) throws {
        self.connection = connection
        self.appender = appender
        self.options = options
        guard let source = try Capture.storedSourceID(connection) else {
            throw CaptureError(.notInstalled,
                "capture is not installed in \(connection.path); run `tidemark capture install` first")
        }
        guard source == appender.sourceID else {
            throw CaptureError(.foreignSource,
                "the log \(appender.directory.path) belongs to source \(appender.sourceID), but \(connection.path) is captured as source \(source); use the log made for this database")
        }
        try Capture.checkBoundLog(connection, logPath: appender.directory.path)
        let highWater = try Capture.lastCapturedSeq(connection)
        if appender.lastLSN.rawValue > UInt64(highWater) {
            // The log is this installation's own: the source lost commits
            // the log holds (not a reinstall).
            if let id = try Capture.installationID(connection), appender.meta.installationID == id {
                throw Self.sourceBehind(connection, appender, counter: highWater)
            }
            throw CaptureError(.foreignSource,
                "the log \(appender.directory.path) ends at LSN \(appender.lastLSN), beyond the last change captured in \(connection.path) (seq \(highWater)): capture was reinstalled since that log was written; ship into a new log directory")
        }
        // Before the claim below writes to the log: a second shipper for this
        // source changes nothing.
        precondition(lock.map { $0.path == ShipperLock.lockPath(forSource: connection.path) } ?? true,
                     "the shipper lock given is another source's")
        self.lock = try lock ?? ShipperLock(sourcePath: connection.path, logPath: appender.directory.path)
        decoder = try OutboxDecoder(connection: connection)
        // Leftover outbox rows must match the log before anything, the claim
        // below included, is written: this also catches an unclaimed log of
        // an earlier installation whose seqs were handed out again. A log
        // another installation owns is left to the identity check, whose
        // refusal says more.
        let owner = appender.meta.installationID
        let installationID = try Capture.installationID(connection)
        if owner == nil || owner == installationID {
            let last = appender.lastLSN
            try connection.transaction(.deferred) { try checkSourceHoldsLog(last) }
        }
        try Self.checkContinuity(connection: connection, appender: appender, highWater: highWater)
        // The round's delete need not be durable: a delete a power cut undoes
        // brings back rows at or below the log's last LSN, which the next
        // shipper compares with the log and deletes again. So it commits
        // without a sync of its own; the round's one source sync is the one
        // before the append (``syncWriteAheadLog()``).
        try connection.execute("PRAGMA synchronous = NORMAL")
    }

    #if DEBUG
    /// Test seam (DEBUG builds only): called at each named point of a round
    /// ("source-synced", "appended"), on the shipping thread.
    package var testHook: ((String) throws -> Void)?
    #endif

    @inline(__always)
    private func reached(_ point: String) throws {
        #if DEBUG
        try testHook?(point)
        #endif
    }

    /// Releases the source's ``ShipperLock`` now rather than at `deinit`
    /// (another shipper may then start). The shipper must not be used after.
    public func releaseLock() {
        lock.release()
    }

    /// The source's outbox sequence is behind the log: it lost commits the
    /// log holds.
    private static func sourceBehind(_ connection: Connection, _ appender: LogAppender, counter: Int64) -> CaptureError {
        CaptureError(.sourceBehindLog,
            "the log \(appender.directory.path) holds changes up to LSN \(appender.lastLSN), but \(connection.path) has captured only up to seq \(counter): the source lost commits the log holds (a power loss under `synchronous = NORMAL`, or a restored backup) and would reuse their seqs; nothing was shipped — the log and what was replayed from it hold changes the source no longer has: migrate again into a new log (uninstall capture with --force, then install it with the new log)")
    }

    /// Checks that the log is this installation's, or may become it, and
    /// records the claim in the log before anything is shipped.
    ///
    /// The rule (no clock involved): the log's owner (log.meta
    /// `installation_id`) is this installation — accepted; or the log ends at
    /// exactly this installation's first `seq` — a continuation: the new
    /// installation (capture reinstalled continuing after the log, reverse
    /// capture after a cutover, a re-migration after an abandon) takes the
    /// log over, durably, before it appends. A log ending below the first
    /// `seq` misses changes; one ending above it holds another
    /// installation's changes (seqs restarted): both refused. Without this, a
    /// log of an earlier installation would make the shipper delete new
    /// outbox rows as "already shipped". A log made by `log append` is never
    /// shipped into: its LSNs are not this source's seqs.
    private static func checkContinuity(connection: Connection, appender: LogAppender, highWater: Int64) throws {
        let meta = appender.meta
        if meta.writer == .append {
            throw LogError(.wrongWriter, "the log \(appender.directory.path) was made by `tidemark log append`; capture cannot ship into it (its LSNs would collide with the appended ones); ship capture into a new log directory")
        }
        guard let installation = try Capture.installation(connection) else { return }
        let last = appender.lastLSN
        let firstSeq = UInt64(max(0, installation.firstSeq))
        let reinstall = "capture was installed again in \(connection.path) (changes start after LSN \(firstSeq))"
        if last.rawValue < firstSeq {
            throw CaptureError(.foreignSource,
                "the log \(appender.directory.path) ends at LSN \(last) but \(reinstall); the changes in between are not in this log: ship into the log that holds them, or reinstall continuing after LSN \(last)")
        }
        guard let id = try Capture.installationID(connection) else {
            // Installed before installations had ids: such an installation
            // never claimed a log, so it may only ship into an unclaimed one.
            if let owner = meta.installationID {
                throw CaptureError(.foreignSource,
                    "the log \(appender.directory.path) belongs to capture installation \(owner), and the capture in \(connection.path) predates installation ids; reinstall capture continuing after LSN \(last)")
            }
            return
        }
        if meta.installationID == id { return }
        // An unclaimed log (format 1, written before owners were recorded, or
        // filled through the appender API) is taken as is: nothing marks it
        // as another installation's, and `highWater` above bounds it.
        guard last.rawValue == firstSeq || meta.installationID == nil else {
            let owner = meta.installationID.map { " (installation \($0))" } ?? ""
            throw CaptureError(.foreignSource,
                "the log \(appender.directory.path) ends at LSN \(last) with changes of an earlier installation\(owner), but \(reinstall): ship into a new log, or reinstall capture continuing after LSN \(last)")
        }
        try appender.claim(.capture, installation: id)
    }

    /// Runs one round (see the type's documentation).
    ///
    /// - Throws: ``CaptureError`` (`shapeChanged`, `badOutboxRow`),
    ///   ``TidemarkLog/LogError`` from the appender, ``SQLiteError``. After an
    ///   error nothing is lost: the next round (or the next process) resumes
    ///   from the log's last LSN.
    /// - Parameter deleteShipped: false while the caller holds the source's
    ///   write lock (a same-file migration step): rows are then only
    ///   appended, and a later round deletes them.
    @discardableResult
    public func shipOnce(deleteShipped: Bool = true) throws -> Round {
        let shippedBefore = appender.lastLSN
        let records = try connection.transaction(.deferred) { () throws -> [ChangeRecord] in
            try checkShapesIfSchemaChanged()
            try checkSourceHoldsLog(shippedBefore)
            do {
                return try decoder.read(from: connection, after: shippedBefore, limit: options.batchLimit)
            } catch let error as CaptureError where error.code == .badOutboxRow {
                // A shape recorded after the decoder was loaded (a reinstall
                // without a schema change cannot happen, but be sure).
                decoder = try OutboxDecoder(connection: connection)
                return try decoder.read(from: connection, after: shippedBefore, limit: options.batchLimit)
            }
        }
        if !records.isEmpty {
            // Invariant: the log holds only commits the source holds durably.
            // What the read above saw sits in the source's WAL (or, once
            // checkpointed, in the database file); sync the WAL before the log
            // takes it. One sync per round covers every row read.
            try connection.syncWriteAheadLog()
            try reached("source-synced")
            try appender.append(records)
            try reached("appended")
        }
        // Rows up to here were read by this shipper, then appended.
        verifiedThrough = appender.lastLSN
        let deleted = deleteShipped ? try self.deleteShipped(upTo: appender.durableLSNValue, waitMillis: options.deleteWaitMillis) : 0
        return Round(shipped: records.count, deleted: deleted, lastLSN: appender.lastLSN)
    }

    /// Ships rounds until `shouldStop` returns true, pausing
    /// ``Options/idlePauseMillis`` (in slices of at most 10 ms, checking
    /// `shouldStop` between them) whenever the outbox is empty. Under
    /// sustained writes it does not pause, which keeps the outbox small.
    public func run(until shouldStop: () -> Bool) throws {
        while !shouldStop() {
            let round = try shipOnce()
            if round.shipped == 0 {
                var remaining = options.idlePauseMillis
                while remaining > 0 && !shouldStop() {
                    let slice = min(remaining, 10)
                    usleep(useconds_t(slice * 1000))
                    remaining -= slice
                }
            }
        }
    }

    /// Ships until everything captured when the call began is in the log and
    /// gone from the outbox; returns the number of changes shipped. Bounded:
    /// changes captured meanwhile may be left for the next call.
    @discardableResult
    public func drain() throws -> Int {
        let target = LSN(UInt64(try Capture.lastCapturedSeq(connection)))
        var shipped = 0
        while true {
            let round = try shipOnce()
            shipped += round.shipped
            if round.lastLSN >= target || round.shipped == 0 {
                // One more delete for rows the last round appended, waiting
                // the connection's whole busy timeout: this is the last chance.
                _ = try deleteShipped(upTo: appender.durableLSNValue, waitMillis: connection.busyTimeoutMillis)
                return shipped
            }
        }
    }

    /// Stops when the source no longer holds what the log holds, before a
    /// round can delete or skip anything. Called in the round's read
    /// transaction.
    ///
    /// 1. The outbox sequence (`sqlite_sequence`) must be at or above the
    ///    log's last LSN; otherwise the next change would reuse a shipped seq
    ///    (commits lost, not yet reused).
    /// 2. Outbox rows at or below the log's last LSN that this shipper did not
    ///    append itself (left by a shipper that stopped between append and
    ///    delete) must equal the log's records of their LSNs; a difference is
    ///    a seq reused for another change, which would otherwise be deleted
    ///    as "already shipped". Read once per shipper, not per round.
    private func checkSourceHoldsLog(_ last: LSN) throws {
        guard last > .zero else { return }
        let counter = try Capture.lastCapturedSeq(connection)
        if UInt64(max(0, counter)) < last.rawValue {
            throw Self.sourceBehind(connection, appender, counter: counter)
        }
        guard verifiedThrough < last else { return }
        let statement = try connection.cachedStatement(
            "SELECT \(decoder.selectColumns) FROM \(Capture.outboxTable) WHERE seq > ?1 AND seq <= ?2 ORDER BY seq")
        try statement.bind(Int64(clamping: verifiedThrough.rawValue), at: 1)
        try statement.bind(Int64(clamping: last.rawValue), at: 2)
        var cursor: LogCursor?
        var logged: ChangeRecord?
        // LSNs in a gap recorded by `log repair` have no record to compare.
        let gaps = appender.meta.gaps
        try statement.forEachRow { row in
            let outbox = try decoder.decode(row)
            if gaps.contains(where: { $0.contains(outbox.lsn) }) { return }
            if cursor == nil { cursor = try LogReader(directory: appender.directory.path).cursor(from: outbox.lsn) }
            while logged.map({ $0.lsn < outbox.lsn }) ?? true, let next = try cursor!.next() { logged = next }
            guard let logged, logged.lsn == outbox.lsn, logged == outbox else {
                throw CaptureError(.sourceBehindLog,
                    "outbox row seq \(outbox.lsn) (table '\(outbox.table)') differs from the log's record of LSN \(outbox.lsn) in \(appender.directory.path): the source lost commits the log holds (a power loss under `synchronous = NORMAL`, a restored backup) or capture was reinstalled without continuing after this log, and the seq now names another change; nothing was deleted or shipped — the log no longer matches the source: migrate again into a new log (uninstall capture with --force, then install it with the new log)",
                    table: outbox.table)
            }
        }
        verifiedThrough = last
    }

    /// Checks shapes and reloads the decoder when `PRAGMA schema_version`
    /// moved: every ALTER TABLE, trigger change and reinstall bumps it, and
    /// reading it is far cheaper than introspecting every table each round.
    /// Called inside the round's read transaction, so the check and the rows
    /// read after it see the same schema.
    private func checkShapesIfSchemaChanged() throws {
        let statement = try connection.cachedStatement("PRAGMA schema_version")
        defer { statement.reset() }
        try statement.step()
        let version = statement.columnInt64(0)
        if version == checkedSchemaVersion { return }
        try Capture.checkShapes(connection: connection)
        decoder = try OutboxDecoder(connection: connection)
        checkedSchemaVersion = version
    }

    /// Deletes outbox rows at or below `lsn`, which the log holds durably,
    /// waiting at most `waitMillis` for the write lock. A busy source (a long
    /// writer, a cutover) is not an error: the rows stay and the next round
    /// deletes them.
    private func deleteShipped(upTo lsn: LSN, waitMillis: Int32) throws -> Int {
        guard lsn > .zero else { return 0 }
        let busyTimeout = connection.busyTimeoutMillis
        try connection.setBusyTimeout(millis: min(waitMillis, busyTimeout))
        defer { try? connection.setBusyTimeout(millis: busyTimeout) }
        do {
            // Invariant: `sqlite_sequence` is at or above every seq ever
            // deleted from the outbox, so SQLite never hands a shipped seq out
            // again. SQLite writes an AUTOINCREMENT counter back only when a
            // statement ends; a statement stopped under `OR FAIL` keeps the
            // outbox rows its triggers wrote but not the counter, and once
            // those rows are gone the next change would reuse their seq (an
            // LSN the log already holds). Raising the counter and deleting
            // in one transaction closes that.
            return try connection.transaction(.immediate) {
                let highest = try connection.cachedStatement("SELECT max(seq) FROM \(Capture.outboxTable) WHERE seq <= ?1")
                defer { highest.reset() }
                try highest.bind(Int64(clamping: lsn.rawValue), at: 1)
                guard try highest.step(), !highest.columnIsNull(0) else { return 0 }
                let deletedMax = highest.columnInt64(0)
                highest.reset()
                try Capture.raiseSequence(connection, toAtLeast: deletedMax)
                let statement = try connection.cachedStatement("DELETE FROM \(Capture.outboxTable) WHERE seq <= ?1")
                try statement.bind(Int64(clamping: lsn.rawValue), at: 1)
                try statement.execute()
                return connection.changes
            }
        } catch {
            if let e = error as? SQLiteError, e.primaryCode == .busy { return 0 }
            throw error
        }
    }
}

extension Connection {
    /// Syncs the main database's write-ahead log through SQLite's own file
    /// handle (the database file itself when not in WAL mode), without taking
    /// any lock: what a `synchronous = FULL` commit does, for commits others
    /// made under `synchronous = NORMAL`.
    ///
    /// Why this is enough. SQLite's WAL documentation:
    /// > Writers sync the WAL on every transaction commit if PRAGMA
    /// > synchronous is set to FULL but omit this sync if PRAGMA synchronous
    /// > is set to NORMAL.
    /// One sync of the file covers every frame written before it. A checkpoint
    /// may move the frames into the database file and the WAL may then be
    /// reset between the shipper's read and this sync; that is covered too
    /// (PRAGMA synchronous):
    /// > In WAL mode when synchronous is NORMAL (1), the WAL file is
    /// > synchronized before each checkpoint and the database file is
    /// > synchronized after each completed checkpoint and the WAL file header
    /// > is synchronized when a WAL file begins to be reused after a checkpoint.
    /// (A writer with `synchronous = OFF` syncs nothing, not even at a
    /// checkpoint; no shipper can make its commits durable.) The handle comes
    /// from `sqlite3_file_control`:
    /// > The SQLITE_FCNTL_JOURNAL_POINTER works similarly except that it
    /// > returns the sqlite3_file object associated with the journal file
    /// > instead of the main database.
    /// Going through the VFS's xSync (not a bare fsync) also syncs the WAL's
    /// directory entry when SQLite has just created the file, and honours the
    /// platform's sync method.
    package func syncWriteAheadLog() throws(SQLiteError) {
        let db = try handle()
        var file: UnsafeMutablePointer<sqlite3_file>?
        var code = sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &file)
        if code != SQLITE_OK || file?.pointee.pMethods == nil {
            // Not in WAL mode: commits are in the database file.
            file = nil
            code = sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &file)
        }
        guard code == SQLITE_OK, let file, let sync = file.pointee.pMethods?.pointee.xSync else {
            throw SQLiteError(code: .error, message: "cannot reach the file of \(path) to sync it (code \(code))", path: path)
        }
        code = sync(file, SQLITE_SYNC_NORMAL)
        guard code == SQLITE_OK else {
            throw SQLiteError(code: SQLiteError.Code(code), message: "cannot sync the write-ahead log of \(path) (\(String(cString: sqlite3_errstr(code))))", path: path)
        }
    }
}
