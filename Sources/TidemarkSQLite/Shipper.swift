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
///    and reload the decoder; then read up to ``Options/batchLimit`` outbox
///    rows with `seq` above the log's last LSN.
/// 2. Append them to the log (the appender syncs under its durability policy).
/// 3. Delete the outbox rows at or below the log's *durable* LSN.
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
        public var batchLimit: Int
        /// How long ``run(until:)`` sleeps when a round found nothing to ship.
        public var idlePauseMillis: Int

        /// The longest a round waits for the source's write lock to delete
        /// shipped rows before leaving them to a later round. Short on
        /// purpose: the lock holder may be waiting for this round's append
        /// (a cutover drains the log while it holds the source's write lock),
        /// so waiting out the connection's busy timeout would stall both.
        public var deleteWaitMillis: Int32

        public init(batchLimit: Int = 10_000, idlePauseMillis: Int = 50, deleteWaitMillis: Int32 = 10) {
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

    /// Prepares to ship from `connection` into `appender`.
    ///
    /// - Throws: ``CaptureError`` `notInstalled`; `foreignSource` when the log
    ///   belongs to another source, or is ahead of the outbox (it was filled
    ///   by an earlier installation of capture in this database, whose `seq`s
    ///   started again at 1); `shapeChanged`.
    public init(connection: Connection, appender: LogAppender, options: Options = Options()) throws {
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
        let highWater = try Capture.lastCapturedSeq(connection)
        if appender.lastLSN.rawValue > UInt64(highWater) {
            throw CaptureError(.foreignSource,
                "the log \(appender.directory.path) ends at LSN \(appender.lastLSN), beyond the last change captured in \(connection.path) (seq \(highWater)): capture was reinstalled since that log was written; ship into a new log directory")
        }
        try Self.checkContinuity(connection: connection, appender: appender, highWater: highWater)
        decoder = try OutboxDecoder(connection: connection)
    }

    /// Checks that the log is this installation's, or may become it, and
    /// records the claim in the log before anything is shipped.
    ///
    /// The rule (D2, no clock involved): the log's owner (log.meta
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
            try appender.append(records)
        }
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
        let statement = try connection.cachedStatement("DELETE FROM \(Capture.outboxTable) WHERE seq <= ?1")
        try statement.bind(Int64(clamping: lsn.rawValue), at: 1)
        let busyTimeout = connection.busyTimeoutMillis
        try connection.setBusyTimeout(millis: min(waitMillis, busyTimeout))
        defer { try? connection.setBusyTimeout(millis: busyTimeout) }
        do {
            try statement.execute()
        } catch {
            if error.primaryCode == .busy { return 0 }
            throw error
        }
        return connection.changes
    }
}
