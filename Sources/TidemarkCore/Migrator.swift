import TidemarkLog
import TidemarkSQLite
import Synchronization

/// Moves captured changes into the log on request.
public protocol ChangeFeed: AnyObject {
    /// Ships every change committed in the source so far and returns the
    /// log's last LSN.
    /// - Parameter sourceWritable: false while the caller holds the source's
    ///   write lock (same-file migrations): the feed must then not write to
    ///   the source (it may leave shipped outbox rows for the next call).
    func ship(sourceWritable: Bool) throws -> LSN
}

/// Tunables of a migration run.
public struct MigratorOptions: Sendable {
    /// Keep following the log after catch-up (until ``Migrator/stop()``).
    public var follow = false
    /// Most changes replayed in one target transaction while following.
    public var replayBatchMax = 200_000
    /// Longest a replay transaction runs before it commits (ms), which bounds
    /// how long the target's write lock is held. Each commit rewrites every
    /// page its changes touched (and the checkpoint copies them again), so a
    /// backlog of changes spread over a large table replays several times
    /// faster in fewer, larger transactions; under a steady load each step
    /// holds only what arrived since the last, and this limit is not reached.
    public var replayBatchMillis = 500
    /// How long to wait for the log to reach a needed LSN before failing.
    public var shipTimeoutMillis = 60_000
    /// Acknowledge the applied LSN to the log's consumer registry this often.
    public var acknowledgeEveryMillis = 1_000
    /// Idle sleep when there is nothing to do while following.
    public var idleMillis = 5
    /// Replay past LSN gaps the log records (lost to `log repair`); see `checkGaps`.
    public var acceptGap = false
    /// Create secondary indexes with the tables and maintain them row by
    /// row during the copy, instead of building each after its table's copy
    /// (the default). Only for measuring the two against each other
    /// (`tidemark-bench migrate`); takes effect when a migration starts.
    package var indexesDuringCopy = false
    /// Most rows the copy writes per second (`--max-rows-per-second`); nil:
    /// as fast as it can. Replay is not limited (see ``RowRateLimiter``).
    public var maxRowsPerSecond: Int?
    /// Before each chunk, the copy waits while taking the source's write
    /// lock takes longer than this (`--max-write-lag-ms`; see ``WriteLockProbe``).
    public var maxWriteLagMillis: Int?
    /// The largest table (in rows) the copy may take in one whole-table
    /// step instead of chunks, as a multiple of `chunk_rows` (see
    /// ``Migrator/wholeTableLimit``); 0 always copies in chunks.
    public var wholeTableChunks = 100
    /// The largest table (in rows) the copy may take in one whole-table
    /// step, whatever `chunk_rows` is.
    public var wholeTableMaxRows = 1_000_000
    /// Fold each follow batch per key before applying it (see
    /// ``Migrator/foldChange(_:)``). Off by default: measured on
    /// `tidemark-bench migrate` (no key changed twice), hashing, holding and
    /// sorting the batch cost more than they saved (replay 0.70× instead of
    /// 0.95× changeset_apply); tests turn it on.
    package var foldReplay = false
    /// Decompress and check the log's next frames on another thread while
    /// the current batch is applied (``RecordPrefetch``). Off by default:
    /// `tidemark-bench migrate` showed no gain beyond its noise (0.92–1.08×
    /// against 0.94×) for 10–12 MB more memory.
    package var decodeAhead = false

    public init(follow: Bool = false) { self.follow = follow }
}

/// A point-in-time view of a migration, for progress and `tidemark status`.
public struct MigrationProgress: Sendable {
    public struct Table: Sendable {
        public var source: String
        public var target: String
        public var phase: CopyPhase
        public var rowsCopied: Int
        public var rowsEstimate: Int
        public var tidemark: [Value]?
        public var ceiling: [Value]?
    }

    public var tables: [Table]
    public var appliedLSN: LSN
    /// The capture high-water mark last seen in the source.
    public var capturedLSN: LSN
    public var changesReplayed: Int
    public var lagChanges: Int { capturedLSN > appliedLSN ? Int(capturedLSN.rawValue - appliedLSN.rawValue) : 0 }
    /// Age of the oldest change not yet applied (0 when caught up).
    public var lagMillis: Int
    public var caughtUp: Bool
    /// Secondary indexes still to be built (each after its table's copy);
    /// the migration is not caught up while any is.
    public var indexesPending: Int = 0
    /// The index being built now: its name and target table.
    public var buildingIndex: (name: String, table: String)? = nil
    /// Why the run does not take its next step now (paused, throttled); nil while it works.
    public var waiting: LiveWaitReason? = nil
}

/// The result of a run.
public struct MigrationSummary: Sendable {
    public var rowsCopied: Int
    public var changesReplayed: Int
    public var appliedLSN: LSN
    public var copySeconds: Double
    public var totalSeconds: Double
    public var caughtUp: Bool
    /// The run ended because the migration was cut over (by another process).
    public var cutOver: Bool = false
}

/// The copy/replay engine: copies each table in key-ordered chunks while
/// replaying logged changes, then follows the log.
///
/// The tidemark invariant (ARCHITECTURE.md), kept by ``copyStep(_:)`` and ``followStep()``:
/// after each target transaction, every target row whose key is at or below
/// the tidemark, or above the ceiling, equals the (transformed) source row as
/// of the LSN stored beside the tidemark.
///
/// Why each step keeps it:
/// - A chunk and the capture high-water `S` are read in one source snapshot,
///   so the chunk is the source state at `S`.
/// - Changes up to `S` are replayed first in the same transaction, except
///   those with key above the old tidemark and at or below the ceiling (the
///   chunk carries their state at `S`) and those of tables not yet started.
/// - Keys above the ceiling did not exist when the copy started, so replay
///   alone builds them.
/// - Chunk, replayed changes, tidemark and applied LSN commit together: a
///   crash leaves either all or none, and resuming re-reads the log after the
///   stored LSN.
public final class Migrator: @unchecked Sendable {
    // @unchecked: used from one thread; only `stopRequested` is shared, and
    // it is an atomic.
    public let plan: Plan
    public private(set) var options: MigratorOptions
    let source: Connection
    /// Where the migration goes (SQLite or PostgreSQL); the engine below
    /// reaches the target only through it.
    let store: TargetStore
    let mappings: [TableMapping]
    let feed: ChangeFeed
    let reader: LogReader
    let consumerName: String
    var state: MigrationState
    /// The log's records from the applied LSN on, read ahead.
    private var records: RecordPrefetch
    /// The next change, read in place (its frame held with it).
    private var lookahead: HeldRecord?
    /// Changes of the current follow batch held back to be applied folded.
    private var fold = FoldWindow()
    /// Changes applied by a folded flush, and flushes that fell back to
    /// unfolded replay (statistics and tests).
    package private(set) var foldedChanges = 0
    package private(set) var foldFallbacks = 0
    private var capturedLSN = LSN.zero
    private var replayed = 0
    private var copied = 0
    private var lastAckNanos: UInt64 = 0
    /// Set by ``stop()`` from any thread, read by ``run(progress:)`` between steps.
    private let stopRequested = Atomic<Bool>(false)
    /// Indexes of the stored schema not yet built, in schema order (see
    /// ``buildIndexStep(_:)``).
    private(set) var pendingIndexes: [TargetSchema.Object] = []
    /// What the target will not get (from the stored schema), for `migrate`
    /// to report before copying.
    public private(set) var notCarried: [TargetSchema.Omission] = []
    /// This run started the migration (resolved and stored the schema).
    public private(set) var startedNow = false
    /// Changes the target refused in the current batch, by table and key,
    /// awaiting a later change of the same row or a retry at the batch's
    /// end (see ``settleRefusals()``); nil outside a batch.
    private var refusals: [String: Refusal]?
    /// The LSN of the change whose refusal stopped the last step.
    private var refusedLSN: LSN?
    /// Pause, write-lag throttle and row rate between steps (LiveControl.swift).
    lazy var live = LiveGate(options: options, plan: plan)
    #if DEBUG
    /// Test seam: runs right after each ``followStep()`` of ``run(progress:)``,
    /// where another process may commit before this one's next write.
    var afterFollowStepForTesting: (() throws -> Void)?
    #endif

    /// The preflight a first run makes (``Preflight/run(plan:mappings:schema:source:keysPerViolation:)``;
    /// tests pass their own).
    package typealias PreflightRunner = (Plan, [TableMapping], TargetSchema, Connection) throws -> PreflightReport

    /// Opens (or resumes) the migration described by `plan`.
    ///
    /// Validates the plan, on first run resolves the target's schema, runs
    /// the preflight (refusing with ``MigrationError/Code/preflight`` before
    /// anything is written), creates missing target tables and the state
    /// tables, and registers as a log consumer.
    public convenience init(plan: Plan, source: Connection, target: Connection, feed: ChangeFeed, sourceID: String, options: MigratorOptions = MigratorOptions()) throws {
        try self.init(plan: plan, source: source, target: target, feed: feed, sourceID: sourceID, options: options, schema: nil, preflight: nil)
    }

    convenience init(plan: Plan, source: Connection, target: Connection, feed: ChangeFeed, sourceID: String, options: MigratorOptions,
                     schema resolvedSchema: TargetSchema?, preflight: PreflightRunner?, preflightDone: Bool = false) throws {
        try self.init(plan: plan, source: source, store: try SQLiteStore(connection: target, source: source, plan: plan), feed: feed,
                      sourceID: sourceID, options: options, schema: resolvedSchema, preflight: preflight, preflightDone: preflightDone)
    }

    /// The SQLite target's connection, for what still speaks SQLite only
    /// (cutover, rollback and status of SQLite targets).
    var target: Connection {
        get throws {
            guard let s = store as? SQLiteStore else {
                throw MigrationError(.unsupported, "this step is not available for the target \(store.displayName) yet")
            }
            return s.connection
        }
    }

    /// - Parameters:
    ///   - schema: the target schema already resolved for a first run (by
    ///     ``open(plan:options:)``, or a test's); nil resolves it here.
    ///   - preflight: the preflight of a first run; nil runs ``Preflight``.
    ///     `preflightDone` skips it (``open(plan:options:)`` ran it before
    ///     creating the target file).
    init(plan: Plan, source: Connection, store: TargetStore, feed: ChangeFeed, sourceID: String, options: MigratorOptions,
         schema resolvedSchema: TargetSchema?, preflight: PreflightRunner?, preflightDone: Bool = false) throws {
        self.plan = plan
        self.options = options
        self.source = source
        self.store = store
        self.feed = feed
        var existing = try store.loadState()
        let mappings = try store.resolveMappings(plan)
        let record = PlanRecord.make(plan: plan, mappings: mappings)
        if let e = existing {
            try Self.checkResumable(e, plan: plan, mappings: mappings, sourceID: sourceID)
            if e.plan == nil {
                // Begun by a version that stored no plan: adopt this one.
                try store.storePlan(record)
                existing?.plan = record
            }
        }
        self.mappings = mappings
        if let existing {
            state = existing
        } else {
            // Resolved once, checked against the source, then stored
            // with the tables. A refused preflight leaves the target without
            // tables or state and the source without capture (installed below).
            let schema = try resolvedSchema ?? TargetSchema.resolve(plan: plan, mappings: mappings, source: source, sameFile: plan.isSameFile)
            if !preflightDone {
                let report = try (preflight ?? { try Preflight.run(plan: $0, mappings: $1, schema: $2, source: $3) })(plan, mappings, schema, source)
                if !report.isClean { throw Self.preflightError(report) }
            }
            state = try store.start(plan: plan, mappings: mappings, schema: schema, sourceID: sourceID,
                                    record: record, indexesDuringCopy: options.indexesDuringCopy)
            startedNow = true
        }
        (notCarried, pendingIndexes) = try store.storedSchema()
        if let e = existing, e.copiedAtMicros == nil, e.cutover == nil, e.tables.allSatisfy({ $0.phase == .following }) {
            // Copied by a version that did not record it: the copy finished
            // at the latest now, and a verify from here on proves it.
            let at = Clock.wallMicros()
            try store.transaction { try store.recordCopied(atMicros: at, lsn: e.appliedLSN) }
            state.copiedAtMicros = at
            state.copiedLSN = e.appliedLSN
        }
        // Prepared now, outside any transaction: some create TEMP tables,
        // which a rolled-back step must not take away.
        // (Not for a table swapped in at cutover: its shadow has its real name now.)
        for m in mappings where !(state.cutover?.kind == .done && TableSwap.isSwap(m, plan: plan)) { _ = try store.writer(for: m) }
        // Capture must cover every planned table before its first chunk is
        // read; installing is idempotent and regenerates triggers whose table
        // changed shape (in place: the columns just added).
        var updateColumns: [String: [String]] = [:]
        for m in mappings where m.shape == .inPlace { updateColumns[m.source.name] = m.sourceColumns }
        // A fresh outbox continues after the log's last LSN (capture may have
        // been uninstalled since that log was written).
        let logHead = LogDirectory(plan.log).exists ? try LogReader(directory: plan.log).headLSN() : .zero
        try Capture.install(connection: source, tables: mappings.map(\.source.name), updateColumns: updateColumns, sourceID: SourceID(sourceID), continuingAfter: logHead)
        reader = try LogReader(directory: plan.log)
        consumerName = "migration-" + Self.consumerSuffix(plan.displayTarget)
        try Consumers(reader.directory).register(consumerName, at: state.appliedLSN)
        let cursor = try reader.cursor(from: state.appliedLSN.next)
        // Read ahead only while following (``followStep()``).
        records = RecordPrefetch(cursor, threaded: false)
        try Self.checkGaps(cursor, appliedLSN: state.appliedLSN, options: options, log: plan.log, store: store)
    }

    /// Whether the migration stored in the target is this plan's, from this source.
    static func checkResumable(_ existing: MigrationState, plan: Plan, mappings: [TableMapping], sourceID: String) throws {
        if existing.sourceID != sourceID {
            throw MigrationError(.foreignState, "the target \(plan.displayTarget) holds a migration from source \(existing.sourceID), not \(sourceID); use a new target or roll that migration back")
        }
        // Invariant: a migration copies, replays and switches with one
        // resolved plan from start to end (see PlanRecord).
        if let stored = existing.plan {
            let current = PlanRecord.make(plan: plan, mappings: mappings)
            if stored.fingerprint != current.fingerprint { throw PlanRecord.mismatch(stored: stored, current: current) }
        }
        guard Set(existing.tables.map { $0.sourceTable.lowercased() }) == Set(mappings.map { $0.source.name.lowercased() }) else {
            throw MigrationError(.foreignState, "the plan's tables differ from those of the migration already in \(plan.displayTarget); finish or roll back that migration first")
        }
    }

    /// How long a same-file migration waits for the file's write lock
    /// before shipping again (see ``run(progress:)``).
    static let sameFileLockWaitMillis: Int32 = 100

    static func consumerSuffix(_ path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let cleaned = String(base.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" ? $0 : "_" })
        return cleaned.isEmpty ? "target" : cleaned
    }

    /// The page cache (KiB) of the connection a migration writes the target
    /// through (`PRAGMA cache_size`), for benchmarks that give a baseline
    /// the same.
    public static var targetCacheKiB: Int { SQLiteStore.cacheKiB }

    /// Asks a running ``run(progress:)`` to return after its current step.
    public func stop() { stopRequested.store(true, ordering: .relaxed) }

    public var currentState: MigrationState { state }
    package var replayedCount: Int { replayed }

    func setFollow(_ follow: Bool) {
        options.follow = follow
        stopRequested.store(false, ordering: .relaxed)
    }

    /// Copies and replays until caught up (or, with `follow`, until stopped).
    public func run(progress: (MigrationProgress) -> Void = { _ in }) throws -> MigrationSummary {
        try run(progress: progress, until: { false })
    }

    /// ``run(progress:)`` that also returns, between two steps, once `done`
    /// says so (a postponed cutover's flag is gone).
    func run(progress: (MigrationProgress) -> Void, until done: () -> Bool) throws -> MigrationSummary {
        defer { liveEnd() }
        // No thread outlives a run: the read-ahead stops (the records it
        // read are kept, and reading goes on where it was). Other readers
        // (a cutover's drain, under the source's write lock) read without a
        // handoff between threads, which a busy machine makes slow.
        defer { records.threaded = false }
        let start = Clock.monotonicNanos()
        var copyDone: UInt64?
        var caughtUp = false
        var cutOver = false
        // Same file: a cutover in another process holds this file's write
        // lock while it waits for the log to reach what it must drain, which
        // this process ships when it owns the log. Waiting out the busy
        // timeout for that lock would stall both (and then fail), so wait
        // briefly and go round again instead: every step ships first.
        let sameFileTarget = plan.isSameFile ? (store as? SQLiteStore)?.connection : nil
        let busyTimeout = sameFileTarget?.busyTimeoutMillis ?? 0
        if let t = sameFileTarget { try t.setBusyTimeout(millis: min(busyTimeout, Self.sameFileLockWaitMillis)) }
        defer { if let t = sameFileTarget { try? t.setBusyTimeout(millis: busyTimeout) } }
        while !stopRequested.load(ordering: .relaxed) {
          // A safe point: every step before this one committed whole.
          try Interruption.check(stopPlace())
          if done() { break }
          do {
            let copyIndex = nextIndexToBuild() == nil ? state.tables.firstIndex(where: { $0.phase != .following }) : nil
            // Live control: paused, throttled or paced, the loop goes round
            // without a step (LiveControl.swift).
            if try !liveGate(copying: copyIndex != nil, progress: progress) { continue }
            if let index = nextIndexToBuild() {
                // After its table's copy, before the copy of the next
                // table goes on and before catch-up can end.
                progress(snapshot(caughtUp: false, building: index))
                try buildIndexStep(index)
            } else if let i = state.tables.firstIndex(where: { $0.phase != .following }) {
                let before = copied
                try copyStep(i)
                liveSpend(rows: copied - before)
            } else {
                if copyDone == nil { copyDone = Clock.monotonicNanos() }
                let (applied, upToDate) = try followStep()
                #if DEBUG
                try afterFollowStepForTesting?()
                #endif
                if upToDate && pendingIndexes.isEmpty {
                    caughtUp = true
                    if state.caughtUpAtMicros == nil {
                        // Only the catch-up time: this process's position may
                        // already be behind the target's (another process
                        // applied more since followStep), and positions move
                        // only beside the rows they describe.
                        let at = Clock.wallMicros()
                        try store.recordCaughtUp(atMicros: at)
                        state.caughtUpAtMicros = at
                    }
                    if !options.follow { progress(snapshot(caughtUp: true)); break }
                }
                if applied == 0 { Clock.sleep(milliseconds: options.idleMillis) }
            }
          } catch let e as MigrationError where e.code == .cutOver {
            cutOver = true
            break
          } catch let e as MigrationError where e.code == .constraint {
            // The step rolled back whole; say why in the state, in a
            // transaction of its own, for `status` (best effort: the error
            // itself is what stops the run).
            let blocked = BlockedStep(lsn: refusedLSN, message: e.message, atMicros: Clock.wallMicros())
            refusedLSN = nil
            try? store.recordBlocked(blocked)
            state.blocked = blocked
            throw e
          } catch let e as SQLiteError where e.primaryCode == .busy && plan.isSameFile {
            // The file stayed locked (see above); the step changed nothing
            // stored, and the next one reloads the stored state.
            Clock.sleep(milliseconds: options.idleMillis)
            continue
          }
            try acknowledge(force: false)
            progress(snapshot(caughtUp: caughtUp))
        }
        try acknowledge(force: true)
        let end = Clock.monotonicNanos()
        return MigrationSummary(
            rowsCopied: copied, changesReplayed: replayed, appliedLSN: state.appliedLSN,
            copySeconds: Double((copyDone ?? end) - start) / 1e9, totalSeconds: Double(end - start) / 1e9, caughtUp: caughtUp || cutOver,
            cutOver: cutOver)
    }

    /// Where a run stands if it stops now (all of it committed).
    func stopPlace() -> String {
        // What is stored, not what this process holds: a step that failed
        // and is retried (same file, busy) may have moved only the latter.
        let stored = (try? store.loadState()) ?? nil
        let s = stored ?? state
        if let t = s.tables.first(where: { $0.phase != .following }) {
            let at = t.tidemark.map { "up to key \(KeyTuple.encode($0))" } ?? "before its first chunk"
            return "copying \(t.sourceTable) \(at), applied LSN \(s.appliedLSN); run the same command to resume"
        }
        if let i = pendingIndexes.first {
            return "\(pendingIndexes.count) index\(pendingIndexes.count == 1 ? "" : "es") still to build (next: \(i.name) on \(i.table)), applied LSN \(s.appliedLSN); run the same command to resume"
        }
        return "following the log at applied LSN \(s.appliedLSN) (everything up to it is in the target); run the same command to resume"
    }

    func snapshot(caughtUp: Bool, building: TargetSchema.Object? = nil) -> MigrationProgress {
        let lagMillis: Int
        if let next = lookahead {
            lagMillis = max(0, Int((Clock.wallMicros() - next.view.timestampMicros) / 1000))
        } else {
            lagMillis = 0
        }
        return MigrationProgress(
            tables: state.tables.map { t in
                MigrationProgress.Table(source: t.sourceTable, target: t.targetTable, phase: t.phase, rowsCopied: t.rowsCopied,
                                        rowsEstimate: t.rowsEstimate, tidemark: t.tidemark, ceiling: t.ceiling)
            },
            appliedLSN: state.appliedLSN, capturedLSN: max(capturedLSN, state.appliedLSN), changesReplayed: replayed,
            lagMillis: lagMillis, caughtUp: caughtUp, indexesPending: pendingIndexes.count,
            buildingIndex: building.map { ($0.name, $0.table) }, waiting: live.waiting)
    }

    private func acknowledge(force: Bool) throws {
        let now = Clock.monotonicNanos()
        guard force || now - lastAckNanos >= UInt64(options.acknowledgeEveryMillis) * 1_000_000 else { return }
        lastAckNanos = now
        try Consumers(reader.directory).acknowledge(consumerName, through: state.appliedLSN)
    }

    /// Reloads the stored state at the start of a target transaction. Another
    /// process (a second migrator, or `tidemark cutover`) may have applied
    /// changes since; the target's write lock serializes us, and the stored
    /// applied LSN says where to continue, so no change is applied twice out
    /// of order.
    ///
    /// - Parameter tablesMayChange: false once every table follows: then only
    ///   the applied LSN and the cutover journal can move, and a single-row
    ///   read tells whether a full reload is needed.
    func syncWithStoredState(tablesMayChange: Bool = true) throws {
        if !tablesMayChange, let p = try store.position(),
           p.applied == state.appliedLSN, p.cutover != .done {
            return
        }
        guard let stored = try store.loadState() else { return }
        if stored.cutover?.kind == .done {
            throw MigrationError(.cutOver, "the migration was cut over at LSN \(stored.cutover?.lsn ?? .zero); the target is authoritative and nothing is left to migrate")
        }
        if stored.appliedLSN != state.appliedLSN {
            records.suspend()
            let cursor = try reader.cursor(from: stored.appliedLSN.next)
            records = RecordPrefetch(cursor, threaded: false)
            try Self.checkGaps(cursor, appliedLSN: stored.appliedLSN, options: options, log: plan.log, store: store)
            lookahead = nil
        }
        state = stored
    }

    /// Ships until the log holds every change up to `lsn`.
    private func waitForLog(_ lsn: LSN, sourceWritable: Bool) throws {
        let deadline = Clock.monotonicNanos() + UInt64(options.shipTimeoutMillis) * 1_000_000
        while try feed.ship(sourceWritable: sourceWritable) < lsn {
            try Interruption.check("waiting for the log to reach LSN \(lsn); nothing of this step was written, applied LSN \(state.appliedLSN)")
            if Clock.monotonicNanos() > deadline {
                throw MigrationError(.shippingStalled, "the log has not reached LSN \(lsn) after \(options.shipTimeoutMillis / 1000) s; is the shipper running (`tidemark capture run`)?")
            }
            Clock.sleep(milliseconds: 2)
        }
    }

    func waitForLogDuringCutover(_ lsn: LSN) throws {
        try waitForLog(lsn, sourceWritable: false)
    }

    /// The next logged change with LSN <= `limit`, or nil.
    ///
    /// The view is valid until the next call (see ``RecordView``): replay
    /// applies it before asking for another.
    func nextChange(through limit: LSN) throws -> RecordView? {
        try nextHeld(through: limit)?.view
    }

    /// ``nextChange(through:)`` with the frame that holds the change: the
    /// view stays valid while the frame is kept.
    private func nextHeld(through limit: LSN) throws -> HeldRecord? {
        if lookahead == nil { lookahead = try records.next() }
        guard let h = lookahead, h.view.lsn <= limit else { return nil }
        lookahead = nil
        guard h.view.lsn > state.appliedLSN else {
            throw MigrationError(.logGap, "the log returned LSN \(h.view.lsn) at or below the applied LSN \(state.appliedLSN)")
        }
        return h
    }

    private func mapping(for table: String) -> (TableMapping, Int)? {
        for (i, m) in mappings.enumerated() where m.source.name == table || m.source.name.lowercased() == table.lowercased() {
            return (m, i)
        }
        return nil
    }

    /// Where the changes of one logged table go.
    private struct ReplayRoute {
        let statements: TableWriter
        /// Index of the table in `state.tables` (ordered by position, which
        /// reloading the stored state keeps).
        let stateIndex: Int
        let sourceTable: String
        /// A key part may hold NULL (see ``checkNullKey(_:_:)``).
        let keyMayBeNull: Bool
        /// The table's SQLite statements when they can bind a change read
        /// in place (``TableStatements/applyInPlace(_:)``).
        let inPlace: TableStatements?
        /// Changes may be folded per key (``foldChange(_:)``): bound in
        /// place, no NULL key part, and keys SQLite finds equal only when
        /// their bytes are (``TableStatements/hasExactKey(_:)``).
        let foldable: Bool
    }

    /// Routes by table name as the log spells it; `.some(nil)` for a
    /// captured table this plan does not migrate. Resolving a name compares
    /// case-insensitively, which costs string allocations: done once per
    /// name, not once per change.
    private var routes: [String: ReplayRoute?] = [:]

    private func route(for table: String) throws -> ReplayRoute? {
        if let cached = routes[table], cached.map({ state.tables.indices.contains($0.stateIndex) && state.tables[$0.stateIndex].sourceTable == $0.sourceTable }) ?? true {
            return cached
        }
        var resolved: ReplayRoute?
        if let (m, _) = mapping(for: table),
           let ti = state.tables.firstIndex(where: { $0.sourceTable.lowercased() == m.source.name.lowercased() }) {
            let writer = try store.writer(for: m)
            let inPlace = (writer as? TableStatements).flatMap { $0.canApplyInPlace ? $0 : nil }
            resolved = ReplayRoute(statements: writer, stateIndex: ti, sourceTable: state.tables[ti].sourceTable,
                                   keyMayBeNull: Self.keyMayBeNull(m), inPlace: inPlace,
                                   foldable: inPlace != nil && !Self.keyMayBeNull(m) && TableStatements.hasExactKey(m))
        }
        routes[table] = .some(resolved)
        return resolved
    }

    /// Applies one change read in place if the tidemark rule says so.
    ///
    /// The common case — a table that follows, of a SQLite target, whose key
    /// cannot be NULL, no refusal open in the batch, not a key change —
    /// binds the change straight from the log's frame. Its effect is the
    /// one ``replay(_:)-(ChangeRecord)`` has on the decoded record: the
    /// tidemark rule applies everything of a following table, and
    /// ``TableStatements/applyInPlace(_:)`` runs the statements `apply`
    /// runs, with the same values. Everything else (and a change the
    /// target refuses, which SQLite undid whole) is decoded and goes the
    /// general way.
    func replay(_ v: RecordView) throws {
        if !hasOpenRefusals {
            guard let route = try route(for: v.table) else {
                // A captured table this plan does not migrate.
                state.appliedLSN = v.lsn
                state.appliedTimestampMicros = v.timestampMicros
                return
            }
            if let s = route.inPlace, !route.keyMayBeNull, state.tables[route.stateIndex].phase == .following,
               v.operation != .update || v.keepsKeyBytes {
                do {
                    if try s.applyInPlace(v) {
                        replayed += 1
                        state.appliedLSN = v.lsn
                        state.appliedTimestampMicros = v.timestampMicros
                        return
                    }
                } catch let e as SQLiteError where e.code.primary == .constraint {
                    // Refused, and undone by SQLite: the general way below
                    // applies it again, and collects or reports the refusal.
                }
            }
        }
        try replay(v.record())
    }

    /// Applies one change if the tidemark rule says so.
    func replay(_ r: ChangeRecord) throws {
        defer {
            state.appliedLSN = r.lsn
            state.appliedTimestampMicros = r.timestampMicros
        }
        guard let route = try route(for: r.table) else { return }  // a captured table this plan does not migrate
        // A key change is two keyed changes (delete the old key, insert the
        // new), each judged against the tidemark on its own: the copy may
        // already hold one key and still have to read the other.
        if let (delete, insert) = r.splitKeyChange() {
            try replay(delete, route: route)
            try replay(insert, route: route)
        } else {
            try replay(r, route: route)
        }
    }

    /// Applies one keyed change (never a key change) if the tidemark rule says so.
    private func replay(_ r: ChangeRecord, route: ReplayRoute) throws {
        let s = route.statements
        // A NULL key part: never applied (see checkNullKey). Pending tables'
        // changes are skipped anyway, and their copy checks the rows.
        if route.keyMayBeNull, state.tables[route.stateIndex].phase != .pending, try checkNullKey(r, s.mapping) {
            // A key change to a NULL key (one update record): the row
            // under the old key is gone all the same.
            if let d = Self.deleteOfOldKey(r, s.mapping) { try replay(d) }
            return
        }
        switch state.tables[route.stateIndex].phase {
        case .pending:
            return  // the copy will read this row's latest state
        case .copying:
            let t = state.tables[route.stateIndex]
            if let ceiling = t.ceiling {
                let key = try s.keyValues(r)
                let aboveTidemark = try t.tidemark.map { try s.isKey(key, above: $0) } ?? true
                let aboveCeiling = try s.isKey(key, above: ceiling)
                if aboveTidemark && !aboveCeiling { return }  // the chunk carries it
            }
        case .following:
            break
        }
        do {
            try s.apply(r)
        } catch let e as MigrationError where e.code == .constraint && refusals != nil {
            refusals![refusalKey(r, route)] = Refusal(record: r, route: route, error: e)
            return
        }
        if let pending = refusals, !pending.isEmpty { refusals!.removeValue(forKey: refusalKey(r, route)) }
        replayed += 1
    }

    /// A change the target refused within the current batch.
    private struct Refusal {
        let record: ChangeRecord
        let route: ReplayRoute
        let error: MigrationError
    }

    private func refusalKey(_ r: ChangeRecord, _ route: ReplayRoute) -> String {
        route.sourceTable.lowercased() + "\u{1F}" + ((try? route.statements.keyValues(r)).map(KeyTuple.encode) ?? "")
    }

    /// Runs `body` (a batch's replay, inside its target transaction) with
    /// refusals collected instead of thrown, then settles them.
    ///
    /// Invariant: a change the target refuses is never skipped. Within
    /// one transaction a later change of the same row replaces it (each
    /// change carries the row's whole image, as the copy's chunks do), so
    /// a source row fixed after the refused change gets past it; one that
    /// no later change replaces is applied again at the batch's end (a row
    /// it collided with may have moved since), and if the target still
    /// refuses it the error stops the step and its transaction rolls back:
    /// nothing of the batch is applied.
    private func collectingRefusals<R>(_ body: () throws -> R) throws -> R {
        refusals = [:]
        defer { refusals = nil }
        let result = try body()
        try settleRefusals()
        return result
    }

    /// Whether the current batch holds refused changes not yet settled
    /// (the batch then runs on to the log's head rather than stop at its
    /// size or time limit, to reach the change that replaces them).
    private var hasOpenRefusals: Bool { !(refusals?.isEmpty ?? true) }

    private func settleRefusals() throws {
        guard var open = refusals, !open.isEmpty else { return }
        refusals = nil
        while true {
            var progressed = false
            for (key, f) in open.sorted(by: { $0.value.record.lsn < $1.value.record.lsn }) {
                do {
                    try f.route.statements.apply(f.record)
                    open.removeValue(forKey: key)
                    replayed += 1
                    progressed = true
                } catch let e as MigrationError where e.code == .constraint {
                    continue
                }
            }
            if open.isEmpty { return }
            if !progressed {
                let first = open.values.min { $0.record.lsn < $1.record.lsn }!
                refusedLSN = first.record.lsn
                throw first.error
            }
        }
    }

    /// One chunk of table `i`, with the changes logged before it.
    func copyStep(_ i: Int) throws {
        let m = mappings.first { $0.source.name.lowercased() == state.tables[i].sourceTable.lowercased() }!
        let s = try store.writer(for: m)
        let sameFile = plan.isSameFile
        if !sameFile {
            // Ship outside the target transaction first, so the wait inside it is short.
            _ = try feed.ship(sourceWritable: true)
        }
        try store.transaction {
            try syncWithStoredState()
            // One source snapshot for S_k and the chunk (first source read starts it).
            let highWater = try store.captureHighWater()
            capturedLSN = max(capturedLSN, highWater)
            var t = state.tables[i]
            guard t.phase != .following else { return }
            // The ceiling is read in this step's snapshot (see the whole-table copy below).
            let startsHere = t.phase == .pending
            if t.phase == .pending {
                // Capture covers the table now, so a NULL key part that
                // appears later is replayed (and stopped) by checkNullKey;
                // one that is already here is found in this snapshot.
                if Self.keyMayBeNull(m) {
                    let rowids = try store.nullKeyRowids(m)
                    if !rowids.isEmpty { throw Self.nullKeyError(m, rowids: rowids, lsn: nil) }
                }
                t.ceiling = try s.ceiling()
                t.rowsEstimate = try s.rowCount()
                t.phase = .copying
            }
            // Everything up to S_k must be in the log before replay.
            try waitForLog(highWater, sourceWritable: !sameFile)
            try collectingRefusals {
                while let r = try nextChange(through: highWater) {
                    // Judged against the old tidemark (state.tables[i] still holds it).
                    try replay(r)
                }
            }
            state.appliedLSN = max(state.appliedLSN, highWater)
            try clearBlockedIfAny()
            guard let ceiling = t.ceiling else {
                t.phase = .following
                state.tables[i] = t
                try store.save(state, table: t)
                try recordCopiedIfDone()
                return
            }
            let upper: [Value]
            let n: Int
            if startsHere, t.rowsEstimate <= wholeTableLimit, let w = s as? TableStatements, try w.copyWholeTable() {
                // The whole table in this one step: a single chunk whose
                // range is every key up to the ceiling. Invariant: the
                // ceiling and the rows were read in this step's one source
                // snapshot, at S_k, so the source holds no key above the
                // ceiling at S_k and the chunk is the whole source table at
                // S_k; the table was pending while the changes up to S_k
                // were replayed, so none of its rows was in the target
                // before (copyWholeTable checks it is empty). The new
                // tidemark is the ceiling, stored with S_k in this
                // transaction: every target row (all at or below the
                // tidemark) equals the source row at S_k.
                upper = ceiling
                n = t.rowsEstimate
            } else {
                // Upper key of this chunk: the chunk_rows-th key above the tidemark, or the ceiling.
                upper = try s.chunkUpper(after: t.tidemark, ceiling: ceiling, rows: live.chunkRows(plan.chunkRows))
                n = try s.copyChunk(after: t.tidemark, through: upper)
            }
            t.rowsCopied += n
            copied += n
            t.tidemark = upper
            if try upper == ceiling || !s.isKey(ceiling, above: upper) { t.phase = .following }
            state.tables[i] = t
            try store.save(state, table: t)
            try recordCopiedIfDone()
        }
    }

    /// The most rows a table may have for its copy to be one whole-table
    /// step (``TableStatements/copyWholeTable()``); 0 when the copy must go
    /// in chunks.
    ///
    /// A whole-table step lets SQLite copy whole records without decoding
    /// them (its transfer of an `INSERT … SELECT` without `WHERE`), which
    /// a key-ranged chunk cannot. What it gives up, and why it is bounded:
    /// it holds one source read transaction and the target's write lock
    /// for the whole table, a crash in it loses (and the next run redoes)
    /// the whole table rather than one chunk, `pause` and a stop wait for
    /// it, and the target's WAL holds the whole table until the commit. So
    /// only tables of at most `wholeTableChunks` chunks and
    /// `wholeTableMaxRows` rows go whole, and never when the copy is
    /// throttled (`--max-rows-per-second`, `--max-write-lag-ms`: their
    /// promises are per chunk) or the source is the target's own file
    /// (the application's writers wait behind every copy step there).
    var wholeTableLimit: Int {
        guard !plan.isSameFile, options.maxRowsPerSecond == nil, options.maxWriteLagMillis == nil else { return 0 }
        let (byChunks, overflow) = plan.chunkRows.multipliedReportingOverflow(by: max(0, options.wholeTableChunks))
        return min(overflow ? Int.max : byChunks, options.wholeTableMaxRows)
    }

    /// Forgets a refused step in the transaction of the next step that
    /// commits (the state said why the migration stood still; it moves now).
    private func clearBlockedIfAny() throws {
        guard state.blocked != nil else { return }
        try store.clearBlocked()
        state.blocked = nil
    }

    /// The next index to build: the first pending one whose table finished
    /// its copy (an index whose table the state does not list waits for
    /// every copy).
    func nextIndexToBuild() -> TargetSchema.Object? {
        let allFollowing = state.tables.allSatisfy { $0.phase == .following }
        return pendingIndexes.first { index in
            state.tables.first { $0.targetTable.lowercased() == index.table.lowercased() }.map { $0.phase == .following } ?? allFollowing
        }
    }

    #if DEBUG
    /// Test seam: runs inside an index build's transaction after the
    /// CREATE INDEX and before the commit (throwing rolls it back, as a
    /// crash there would).
    var beforeIndexCommitForTesting: ((String) throws -> Void)?
    #endif

    /// Builds one secondary index of a table that finished its copy.
    ///
    /// Invariant: an index is `built` in `_tidemark_schema` if and only if
    /// it exists in the target. One transaction replays the changes logged
    /// so far (so a source row fixed after a failed unique build reaches
    /// the target first, as in a copy step), runs the CREATE INDEX and marks
    /// it built; a crash anywhere leaves it absent and `pending`, and the
    /// next run builds it again. An index of that name that already exists
    /// (created with a table made by hand) counts only if its SQL is the
    /// stored one.
    func buildIndexStep(_ index: TargetSchema.Object) throws {
        let sameFile = plan.isSameFile
        if !sameFile { _ = try feed.ship(sourceWritable: true) }
        try store.transaction {
            try syncWithStoredState()
            let highWater = try store.captureHighWater()
            capturedLSN = max(capturedLSN, highWater)
            try waitForLog(highWater, sourceWritable: !sameFile)
            try collectingRefusals {
                while let r = try nextChange(through: highWater) { try replay(r) }
            }
            state.appliedLSN = max(state.appliedLSN, highWater)
            try store.save(state, table: nil)
            try clearBlockedIfAny()
            if try store.buildIndex(index) {
                #if DEBUG
                try beforeIndexCommitForTesting?(index.name)
                #endif
            }
        }
        pendingIndexes.removeAll { $0.name == index.name }
    }

    /// In the transaction that moved the last table to `following`: the
    /// copy finished here (a verify proves the migration only after it).
    private func recordCopiedIfDone() throws {
        guard state.copiedAtMicros == nil, state.tables.allSatisfy({ $0.phase == .following }) else { return }
        let at = Clock.wallMicros()
        try store.recordCopied(atMicros: at, lsn: state.appliedLSN)
        state.copiedAtMicros = at
        state.copiedLSN = state.appliedLSN
    }

    /// Replays available changes in one target transaction. Returns how many
    /// it applied and whether the target has reached the capture high-water
    /// mark read at the start.
    func followStep() throws -> (Int, Bool) {
        try store.prepareForFollowing()
        // The next frames are decompressed and checked on another thread
        // while this batch is applied (``RecordPrefetch``: same records,
        // same order, same errors).
        if options.decodeAhead && !records.threaded { records.threaded = true }
        let logHead = try feed.ship(sourceWritable: true)
        let highWater = try Capture.lastCapturedSeq(source)
        capturedLSN = max(capturedLSN, LSN(UInt64(max(0, highWater))))
        var applied = 0
        // Nothing logged to apply: no transaction (idle followers would
        // otherwise take the target's write lock every few ms). Only check
        // whether another process moved the state (a cutover, say).
        if lookahead == nil { lookahead = try records.next() }
        if lookahead.map({ $0.view.lsn > logHead }) ?? true {
            try syncWithStoredState(tablesMayChange: false)
            return (0, state.appliedLSN.rawValue >= UInt64(max(0, highWater)))
        }
        try store.transaction {
            try syncWithStoredState(tablesMayChange: false)
            let start = Clock.monotonicNanos()
            defer { fold.reset() }
            try collectingRefusals {
                while applied < options.replayBatchMax || hasOpenRefusals, let h = try nextHeld(through: logHead) {
                    if !options.foldReplay {
                        try replay(h.view)
                    } else if try !foldChange(h) {
                        // Not foldable: everything held before it is applied
                        // first, so changes still take effect in LSN order
                        // across the two.
                        try flushFold()
                        try replay(h.view)
                    }
                    applied += 1
                    if applied % 1024 == 0 && !hasOpenRefusals && Clock.monotonicNanos() - start > UInt64(options.replayBatchMillis) * 1_000_000 { break }
                }
                // Before the refusals settle and the position is saved.
                try flushFold()
            }
            if applied > 0 {
                try store.save(state, table: nil)
                try clearBlockedIfAny()
            }
            // State begun by a version that did not record the copy's end.
            if state.copiedAtMicros == nil { try recordCopiedIfDone() }
        }
        return (applied, state.appliedLSN.rawValue >= UInt64(max(0, highWater)))
    }
}

// MARK: Folding a follow batch

/// A key of a folded change: its table (index in the state's tables) and
/// its key fields as encoded in the log. The bytes point into a frame the
/// ``FoldWindow`` holds, so they live as long as the key is used.
struct FoldKey: Hashable {
    let table: Int
    let bytes: UnsafeRawBufferPointer

    static func == (a: FoldKey, b: FoldKey) -> Bool {
        a.table == b.table && a.bytes.elementsEqual(b.bytes)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(table)
        hasher.combine(bytes: bytes)
    }
}

/// The changes of a follow batch held back since the last flush, in LSN
/// order, and per key the latest of them.
struct FoldWindow {
    /// Every held change, in LSN order (what the fallback replays).
    var changes: [HeldRecord] = []
    /// The index in `changes` of each key's latest change.
    var latest: [FoldKey: Int] = [:]
    /// The statements of each held change's table, by state index.
    var statements: [Int: TableStatements] = [:]
    /// The connection the statements run on (one for every SQLite table).
    var connection: Connection?
    /// The position before the first held change.
    var lsnBefore = LSN.zero
    var timestampBefore: Int64 = 0

    var isEmpty: Bool { changes.isEmpty }

    mutating func reset() {
        changes.removeAll(keepingCapacity: true)
        latest.removeAll(keepingCapacity: true)
        connection = nil
    }
}

extension Migrator {
    /// Most changes held back before a flush: bounds the frames kept alive
    /// (and the work a fallback redoes).
    static let foldWindowMax = 32_768

    /// Takes a change into the fold window when it may be folded; false
    /// (having done nothing) when it must be applied the ordinary way.
    ///
    /// Folding applies, per key, only the latest change of the window,
    /// and the keys in key order (sorted for the B-tree's sake), within a
    /// savepoint of the batch's transaction. Why the result is the one
    /// replaying every change in LSN order gives:
    /// - Each change taken sets its row to a whole image or removes it
    ///   (upsert or update by key, delete by key; no triggers or foreign
    ///   keys act on the target's migration connection), so its effect on
    ///   its table depends on nothing but its key: of several changes of one
    ///   key, the last one alone has the effect of all of them.
    /// - Keys are compared by their encoded bytes, which is SQLite's key
    ///   equality only for tables whose key columns use BINARY and have
    ///   INTEGER or TEXT affinity (``TableStatements/hasExactKey(_:)``):
    ///   other tables are not folded. Key changes (an update whose before
    ///   image carries another key: a delete and an insert), NULL key parts,
    ///   tables that do not follow yet, and every change while refusals are
    ///   open take the ordinary path, after the window is flushed, so the
    ///   two paths stay in LSN order.
    /// - Changes of different keys commute unless a constraint across rows
    ///   (a UNIQUE secondary index) sees an intermediate state: folding
    ///   can then raise a conflict that LSN order would not (k1 a→b,
    ///   k2 c→a, k1 b→c). Any constraint error rolls back to the savepoint
    ///   and the window is replayed unfolded, in LSN order, the ordinary
    ///   way (refusals collected as always): exactly today's result.
    /// - The tidemark invariant: only tables that follow are folded, whose
    ///   every key is at or below the tidemark, so every change of theirs
    ///   is applied, folded or not.
    /// - The position: `state.appliedLSN` moves as changes are taken, but it
    ///   is stored only after the window is flushed (``followStep()``
    ///   flushes before it saves, in the same transaction), so the stored
    ///   LSN never covers a change that is not in the target.
    func foldChange(_ h: HeldRecord) throws -> Bool {
        guard !hasOpenRefusals else { return false }
        let v = h.view
        guard let route = try route(for: v.table) else {
            // A captured table this plan does not migrate: nothing to apply
            // (as ``replay(_:)-(RecordView)``), so no reason to flush.
            state.appliedLSN = v.lsn
            state.appliedTimestampMicros = v.timestampMicros
            return true
        }
        guard route.foldable, let s = route.inPlace, state.tables[route.stateIndex].phase == .following,
              v.operation != .update || v.keepsKeyBytes,
              let key = v.keyBytes(named: s.keyNameBytes)
        else { return false }
        if fold.isEmpty {
            fold.lsnBefore = state.appliedLSN
            fold.timestampBefore = state.appliedTimestampMicros
            fold.connection = s.connection
        }
        fold.statements[route.stateIndex] = s
        fold.latest[FoldKey(table: route.stateIndex, bytes: key)] = fold.changes.count
        fold.changes.append(h)
        state.appliedLSN = v.lsn
        state.appliedTimestampMicros = v.timestampMicros
        if fold.changes.count >= Self.foldWindowMax { try flushFold() }
        return true
    }

    /// Applies the fold window: each key's latest change, in key order; on
    /// a constraint error, every held change unfolded in LSN order instead
    /// (see ``foldChange(_:)``).
    func flushFold() throws {
        guard !fold.isEmpty, let c = fold.connection else { return }
        // Key order per table where the key starts with an integer (most
        // keys), for locality; ties and other keys keep LSN order.
        var order: [(table: Int, key: Int64, index: Int)] = []
        order.reserveCapacity(fold.latest.count)
        for (k, i) in fold.latest {
            var first: Int64 = .min
            if let f = fold.changes[i].view.key.first(where: { _ in true }), case .integer(let x) = f.value { first = x }
            order.append((k.table, first, i))
        }
        order.sort { ($0.table, $0.key, $0.index) < ($1.table, $1.key, $1.index) }
        try c.execute("SAVEPOINT tidemark_fold")
        do {
            for o in order {
                let v = fold.changes[o.index].view
                guard let s = fold.statements[o.table] else { continue }
                if try !s.applyInPlace(v) { try s.apply(v.record()) }
            }
        } catch let e where Self.isConstraint(e) {
            try c.execute("ROLLBACK TO tidemark_fold; RELEASE tidemark_fold")
            foldFallbacks += 1
            let held = fold.changes
            fold.reset()
            state.appliedLSN = fold.lsnBefore
            state.appliedTimestampMicros = fold.timestampBefore
            // Exactly the unfolded replay, in LSN order.
            for h in held { try replay(h.view) }
            return
        }
        try c.execute("RELEASE tidemark_fold")
        replayed += fold.changes.count
        foldedChanges += fold.changes.count
        fold.reset()
    }

    static func isConstraint(_ e: Error) -> Bool {
        if let m = e as? MigrationError { return m.code == .constraint }
        if let q = e as? SQLiteError { return q.code.primary == .constraint }
        return false
    }
}

// MARK: Preflight

extension Migrator {
    /// The refusal of a first run whose preflight found source rows the
    /// target would refuse: a summary line, one indented line per
    /// violation, and what to do; the violations ride along as data.
    static func preflightError(_ report: PreflightReport) -> MigrationError {
        var e = MigrationError(.preflight, preflightMessage(report))
        e.violations = report.violations
        return e
    }

    /// The preflight's refusal as text (also what `migrate --dry-run` prints).
    public static func preflightMessage(_ report: PreflightReport) -> String {
        report.message
    }
}

// MARK: NULL key parts

extension Migrator {
    /// Whether a key part of `m`'s source may hold NULL: SQLite allows it in
    /// a rowid table's PRIMARY KEY unless the column is declared NOT NULL
    /// (an INTEGER PRIMARY KEY is the rowid and never NULL; WITHOUT ROWID
    /// tables refuse NULL keys).
    static func keyMayBeNull(_ m: TableMapping) -> Bool {
        guard !m.source.hasRowidAlias, !m.source.isWithoutRowid else { return false }
        return m.sourceKey.contains { k in m.source.columns.first { $0.name == k }?.notNull != true }
    }

    /// Rowids (a few) of source rows with a NULL key part, read on `c`
    /// (in its current snapshot) from `schema`.
    static func nullKeyRowids(_ m: TableMapping, on c: Connection, schema: String, limit: Int = 5) throws -> [Int64] {
        let q = quoteIdentifier
        let cond = m.sourceKey.map { "\(q($0)) IS NULL" }.joined(separator: " OR ")
        return try c.prepare("SELECT rowid FROM \(q(schema)).\(q(m.source.name)) WHERE \(cond) ORDER BY rowid LIMIT \(limit)").rows { $0.columnInt64(0) }
    }

    static func nullKeyError(_ m: TableMapping, rowids: [Int64], lsn: LSN?) -> MigrationError {
        let q = quoteIdentifier
        let list = rowids.map(String.init).joined(separator: ", ")
        let when = lsn.map { " (change at LSN \($0))" } ?? ""
        return MigrationError(.nullKey, "source table '\(m.source.name)' has rows with a NULL in its primary key (\(m.sourceKey.joined(separator: ", ")))\(when), rowid \(list); such rows cannot be keyed and would be duplicated in the target — give them keys (UPDATE \(q(m.source.name)) SET … WHERE rowid IN (\(list))) and declare the key columns NOT NULL, then run the command again; nothing of this step was written")
    }

    /// Judges a change of a table whose key parts may be NULL; true when it
    /// is to be skipped (its key has a NULL part).
    ///
    /// Invariant: the target never holds a row with a NULL key part (`=`
    /// and ON CONFLICT never match NULL, so every later change to it would
    /// add a row). So such a change is never applied. If the source still
    /// holds NULL-keyed rows (read in this transaction's snapshot, at or
    /// after the change), the step stops with an error naming them: the
    /// target would miss rows the source has. If it holds none, the row has
    /// since been given a key (or deleted), and that later change — an
    /// update from the NULL key to the real one, which replay applies as an
    /// insert of the new key — is in the log: skipping this one keeps the
    /// target exact. After the user fixes the rows, a rerun therefore gets
    /// past the change instead of stopping on it forever.
    /// For an update whose before image carries another, NULL-free key: a
    /// delete of that old key (same LSN).
    static func deleteOfOldKey(_ r: ChangeRecord, _ m: TableMapping) -> ChangeRecord? {
        guard r.operation == .update, let before = r.before else { return nil }
        var old: [Field] = []
        for k in m.sourceKey {
            guard let f = before.first(where: { $0.name.lowercased() == k.lowercased() }), f.value != .null else { return nil }
            old.append(Field(f.name, f.value))
        }
        guard old.map(\.value) != r.key.map(\.value) else { return nil }
        return ChangeRecord(lsn: r.lsn, timestampMicros: r.timestampMicros, table: r.table, operation: .delete, key: old, before: before, after: nil)
    }

    func checkNullKey(_ r: ChangeRecord, _ m: TableMapping) throws -> Bool {
        guard r.key.contains(where: { $0.value == .null }) else { return false }
        let rowids = try store.nullKeyRowids(m)
        if !rowids.isEmpty { throw Self.nullKeyError(m, rowids: rowids, lsn: r.lsn) }
        return true
    }
}
