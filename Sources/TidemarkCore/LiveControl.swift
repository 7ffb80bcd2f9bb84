import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Live control of a running migration, in the manner of gh-ost's throttle
// and postponed cut-over:
//
// - `migrate --max-rows-per-second N`: the copy is paced by a token bucket
//   (``RowRateLimiter``);
// - `migrate --max-write-lag-ms N`: before each chunk a timed probe of the
//   source's write lock (``WriteLockProbe``); the copier waits while it is slow;
// - `tidemark pause` / `tidemark resume`: a column of the migration state
//   (`paused_at`), read by a running `migrate` between its steps;
// - `tidemark cutover --postpone-flag FILE`: the cutover keeps the target
//   caught up and switches once FILE is gone.
//
// Everything is stored in the migration's state row (`_tidemark_migration`),
// each change in a small transaction of its own, so a SIGKILL at any point
// leaves a migration that resumes: a pause stays recorded (the next `migrate`
// starts paused, and says so), and a waiting process's record carries a
// heartbeat, so that `status` can tell a live wait from one whose process died.

// MARK: State

/// What a running process waits for, as stored in the migration state.
public struct LiveWait: Sendable, Equatable {
    /// For a migration process: ``LiveWaitReason/kind`` (`paused`,
    /// `write-lag`). For a postponed cutover: the flag file's absolute path.
    public var what: String
    /// One phrase for people (a migration process's waits only).
    public var detail: String?
    public var sinceMicros: Int64
    /// The waiting process's last heartbeat (it writes one every second).
    public var seenAtMicros: Int64

    public init(what: String, detail: String?, sinceMicros: Int64, seenAtMicros: Int64) {
        self.what = what
        self.detail = detail
        self.sinceMicros = sinceMicros
        self.seenAtMicros = seenAtMicros
    }

    /// Whether the waiting process is still there: its heartbeat is recent.
    /// (A SIGKILL leaves the record; it simply stops being current.)
    public func isCurrent(nowMicros: Int64) -> Bool {
        nowMicros - seenAtMicros <= LiveControlState.staleAfterMicros
    }
}

/// Live control as stored in the migration state.
public struct LiveControlState: Sendable, Equatable {
    /// When `tidemark pause` paused the migration; nil when it is not paused.
    public var pausedAtMicros: Int64?
    /// What a running migration process (`migrate`, or a postponed
    /// `cutover` keeping the target caught up) waits for now.
    public var migrationWait: LiveWait?
    /// A cutover postponed by `--postpone-flag`, waiting for its flag file to go.
    public var cutoverWait: LiveWait?

    public var isPaused: Bool { pausedAtMicros != nil }

    /// A waiting process writes its heartbeat this often.
    static let heartbeatMicros: Int64 = 1_000_000
    /// A wait whose heartbeat is older than this has no process behind it.
    static let staleAfterMicros: Int64 = 5_000_000

    public init() {}

    /// From the columns of `_tidemark_migration` (see ``StateTables/liveColumns``).
    init(int: (String) -> Int64?, text: (String) -> String?) {
        pausedAtMicros = int("paused_at")
        if let what = text("migrate_wait"), let since = int("migrate_wait_since") {
            migrationWait = LiveWait(what: what, detail: text("migrate_wait_detail"), sinceMicros: since,
                                     seenAtMicros: int("migrate_wait_seen") ?? since)
        }
        if let flag = text("cutover_wait"), let since = int("cutover_wait_since") {
            cutoverWait = LiveWait(what: flag, detail: nil, sinceMicros: since, seenAtMicros: int("cutover_wait_seen") ?? since)
        }
    }
}

/// Why a running migration does not take its next step now (progress and status).
public enum LiveWaitReason: Sendable, Equatable, CustomStringConvertible {
    /// `tidemark pause` (at the time given); `tidemark resume` lets it go on.
    case paused(sinceMicros: Int64)
    /// `--max-write-lag-ms`: taking the source's write lock took `tookMillis`
    /// (nil: it was still not free after the probe's timeout), above the limit.
    case writeLag(tookMillis: Int?, limitMillis: Int)

    /// As stored: `paused` or `write-lag`.
    public var kind: String {
        switch self {
        case .paused: "paused"
        case .writeLag: "write-lag"
        }
    }

    public var description: String {
        switch self {
        case .paused:
            "paused by `tidemark pause`: neither copying nor replaying"
        case .writeLag(let took, let limit):
            "throttled: the source's write lock took \(took.map { "\($0) ms" } ?? "over \(limit) ms (timed out)"), above --max-write-lag-ms \(limit); no chunk is copied until it is faster"
        }
    }
}

extension MigrationError.Code {
    /// The migration is paused (`tidemark pause`), so this command waits for `tidemark resume`.
    public static let paused = MigrationError.Code("paused")
    /// There is no migration (yet, or any more) for this command to act on.
    public static let noMigration = MigrationError.Code("no-migration")
}

extension StateTables {
    /// Columns of `_tidemark_migration` for live control (part of ``laterColumns``).
    static let liveColumns: [(name: String, type: String)] = [
        ("paused_at", "INTEGER"),
        ("migrate_wait", "TEXT"), ("migrate_wait_detail", "TEXT"), ("migrate_wait_since", "INTEGER"), ("migrate_wait_seen", "INTEGER"),
        ("cutover_wait", "TEXT"), ("cutover_wait_since", "INTEGER"), ("cutover_wait_seen", "INTEGER"),
    ]

    /// When the migration was paused (nil: not paused): one cached
    /// single-row read, for the run loop's check between steps.
    static func pausedAt(_ c: Connection) throws -> Int64? {
        let s = try c.cachedStatement("SELECT paused_at FROM main.\(migration) WHERE id = 1")
        defer { s.reset() }
        guard try s.step(), !s.columnIsNull(0) else { return nil }
        return s.columnInt64(0)
    }

    /// Pauses (at `atMicros`) or resumes (nil). Inside the caller's transaction.
    static func setPaused(_ atMicros: Int64?, in c: Connection) throws {
        try c.prepare("UPDATE main.\(migration) SET paused_at = ? WHERE id = 1").execute([atMicros.map { .integer($0) } ?? .null])
    }

    static func setMigrationWait(_ w: LiveWait?, in c: Connection) throws {
        try c.cachedStatement("UPDATE main.\(migration) SET migrate_wait = ?, migrate_wait_detail = ?, migrate_wait_since = ?, migrate_wait_seen = ? WHERE id = 1")
            .execute([w.map { .text($0.what) } ?? .null, w?.detail.map { .text($0) } ?? .null,
                      w.map { .integer($0.sinceMicros) } ?? .null, w.map { .integer($0.seenAtMicros) } ?? .null])
    }

    static func setCutoverWait(_ w: LiveWait?, in c: Connection) throws {
        try c.cachedStatement("UPDATE main.\(migration) SET cutover_wait = ?, cutover_wait_since = ?, cutover_wait_seen = ? WHERE id = 1")
            .execute([w.map { .text($0.what) } ?? .null, w.map { .integer($0.sinceMicros) } ?? .null, w.map { .integer($0.seenAtMicros) } ?? .null])
    }
}

// MARK: Pacing the copy

/// `--max-rows-per-second N`: a token bucket the copy draws from.
///
/// Invariant: the bucket starts empty and holds at most ``chunkRows``
/// tokens; a chunk starts only when it is full, and spends the rows it
/// copied (at most ``chunkRows``). So from the start the copy never runs
/// ahead of N rows per second, and any window of T seconds holds at most
/// N·T + ``chunkRows`` rows (a tenth of a second's worth).
struct RowRateLimiter {
    let rowsPerSecond: Int
    /// Most rows one chunk copies (the bucket's size).
    let chunkRows: Int
    private var tokens = 0.0
    private var lastNanos: UInt64

    init(rowsPerSecond: Int, planChunkRows: Int, nowNanos: UInt64) {
        self.rowsPerSecond = max(1, rowsPerSecond)
        chunkRows = max(1, min(planChunkRows, self.rowsPerSecond / 10))
        lastNanos = nowNanos
    }

    /// How long until the next chunk may start (0: now).
    mutating func waitNanos(nowNanos: UInt64) -> UInt64 {
        if nowNanos > lastNanos {
            tokens = min(Double(chunkRows), tokens + Double(nowNanos - lastNanos) * Double(rowsPerSecond) / 1e9)
            lastNanos = nowNanos
        }
        let missing = Double(chunkRows) - tokens
        return missing <= 0 ? 0 : UInt64((missing / Double(rowsPerSecond) * 1e9).rounded(.up))
    }

    mutating func spend(_ rows: Int) { tokens -= Double(rows) }
}

/// `--max-write-lag-ms N`: how long the source's write lock takes to get,
/// measured on a connection of its own by `BEGIN IMMEDIATE; ROLLBACK`, the
/// same wait an application's next write would see.
final class WriteLockProbe {
    let path: String
    let limitMillis: Int
    private var connection: Connection?

    init(path: String, limitMillis: Int) {
        self.path = path
        self.limitMillis = max(1, limitMillis)
    }

    /// Milliseconds the write lock took, or nil when it was not free within
    /// the probe's timeout (a little above the limit: it never waits long).
    /// Holds the lock for no more than the two statements.
    func measure() throws -> Int? {
        if connection == nil {
            connection = try Connection(path: path, mode: .readWrite, busyTimeoutMillis: Int32(clamping: limitMillis + max(10, limitMillis / 4)))
        }
        guard let c = connection else { return nil }
        let start = Clock.monotonicNanos()
        do {
            try c.execute("BEGIN IMMEDIATE")
        } catch let e as SQLiteError where e.primaryCode == .busy {
            return nil
        }
        let took = Int((Clock.monotonicNanos() - start) / 1_000_000)
        try c.execute("ROLLBACK")
        return took
    }

    func close() { try? connection?.close(); connection = nil }
}

/// What the run loop keeps for live control between its steps.
final class LiveGate {
    var rate: RowRateLimiter?
    let probe: WriteLockProbe?
    /// The pause as last read, and when (monotonic ns).
    var pausedAt: Int64?
    private var pauseReadNanos: UInt64 = 0
    /// What the run waits for now, as progress reports it.
    var waiting: LiveWaitReason?
    /// What this process stored in `migrate_wait`, since when, and its last heartbeat.
    private var recorded: (kind: String, sinceMicros: Int64, beatNanos: UInt64)?

    /// How often a running migration reads whether it is paused.
    static let pollMillis = 50

    init(options: MigratorOptions, plan: Plan) {
        rate = options.maxRowsPerSecond.map { RowRateLimiter(rowsPerSecond: $0, planChunkRows: plan.chunkRows, nowNanos: Clock.monotonicNanos()) }
        probe = options.maxWriteLagMillis.map { WriteLockProbe(path: plan.source, limitMillis: $0) }
    }

    /// Rows the next chunk copies at most.
    func chunkRows(_ planChunkRows: Int) -> Int { rate.map { min(planChunkRows, $0.chunkRows) } ?? planChunkRows }

    /// Reads the stored pause at most every ``pollMillis`` (every time while paused).
    func refreshPause(_ c: Connection?) throws {
        guard let c else { return }
        let now = Clock.monotonicNanos()
        guard pausedAt != nil || now - pauseReadNanos >= UInt64(Self.pollMillis) * 1_000_000 else { return }
        pausedAt = try StateTables.pausedAt(c)
        pauseReadNanos = now
    }

    /// Stores what the run waits for (nil: nothing), with a heartbeat every
    /// second while it waits.
    ///
    /// Best effort, on purpose: this is what `status` shows, never what the
    /// migration's correctness rests on, and a busy target (a same-file
    /// migration whose source is being written) must not stop a run that
    /// is only waiting. A write that fails is tried again at the next beat.
    func record(_ reason: LiveWaitReason?, on c: Connection?) {
        waiting = reason
        guard let c else { return }
        let now = Clock.monotonicNanos()
        guard let reason else {
            if recorded != nil {
                if (try? c.transaction(.immediate) { try StateTables.setMigrationWait(nil, in: c) }) != nil { recorded = nil }
            }
            return
        }
        if let r = recorded, r.kind == reason.kind, now - r.beatNanos < UInt64(LiveControlState.heartbeatMicros) * 1000 { return }
        let wall = Clock.wallMicros()
        let since = recorded.flatMap { $0.kind == reason.kind ? $0.sinceMicros : nil } ?? wall
        let w = LiveWait(what: reason.kind, detail: reason.description, sinceMicros: since, seenAtMicros: wall)
        if (try? c.transaction(.immediate) { try StateTables.setMigrationWait(w, in: c) }) != nil {
            recorded = (reason.kind, since, now)
        }
    }
}

extension Migrator {
    /// The SQLite target's connection, where live control is stored (nil for
    /// PostgreSQL targets, which have none yet: `pause` refuses them).
    var liveConnection: Connection? { (store as? SQLiteStore)?.connection }

    /// Whether the next step (a copy chunk when `copying`) may run now. When
    /// it may not — paused, the source's write lock is slow, the row rate
    /// is spent — it waits one short slice and returns false: the run loop
    /// goes round (a safe point for signals and ``stop()``) and asks again.
    ///
    /// Invariant: no step starts while the stored state says paused, as
    /// last read at most ``LiveGate/pollMillis`` ago; a step already running
    /// finishes (each is one bounded transaction).
    func liveGate(copying: Bool, progress: (MigrationProgress) -> Void) throws -> Bool {
        let c = liveConnection
        try live.refreshPause(c)
        if let at = live.pausedAt {
            live.record(.paused(sinceMicros: at), on: c)
            progress(snapshot(caughtUp: false))
            Clock.sleep(milliseconds: LiveGate.pollMillis)
            return false
        }
        if copying, let probe = live.probe {
            let took = try probe.measure()
            if took.map({ $0 > probe.limitMillis }) ?? true {
                live.record(.writeLag(tookMillis: took, limitMillis: probe.limitMillis), on: c)
                progress(snapshot(caughtUp: false))
                Clock.sleep(milliseconds: 50)
                return false
            }
        }
        live.record(nil, on: c)
        if copying, var rate = live.rate {
            let wait = rate.waitNanos(nowNanos: Clock.monotonicNanos())
            live.rate = rate
            if wait > 0 {
                // In slices, so that signals and a pause are noticed.
                usleep(useconds_t(min(wait / 1000, 50_000)))
                return false
            }
        }
        return true
    }

    /// After a copy step: the rows it copied leave the bucket.
    func liveSpend(rows: Int) {
        guard var rate = live.rate else { return }
        rate.spend(rows)
        live.rate = rate
    }

    /// When a run ends: forgets what it waited for and closes the probe.
    func liveEnd() {
        live.record(nil, on: liveConnection)
        live.probe?.close()
    }
}

// MARK: pause / resume

/// `tidemark pause` and `tidemark resume`: a pause is a column of the
/// migration state, read by a running migration between its steps (at
/// least every ``LiveGate/pollMillis`` ms), never a signal.
public enum LiveControl {
    /// What `pause` did.
    public struct PauseReport: Sendable {
        public var pausedAtMicros: Int64
        /// It was paused already (since ``pausedAtMicros``); nothing changed.
        public var alreadyPaused: Bool
        /// A running migration process said it paused (within the wait).
        public var acknowledged: Bool
        /// The applied LSN when it returned.
        public var appliedLSN: LSN
    }

    /// What `resume` did.
    public struct ResumeReport: Sendable {
        /// When the pause began (nil: it was not paused; nothing changed).
        public var pausedAtMicros: Int64?
        public var resumedAtMicros: Int64
    }

    /// How long `pause` waits for a running migration to say it paused.
    public static let acknowledgeWaitMillis = 2_000

    /// Pauses the migration of `plan`: a running `migrate` (or a postponed
    /// cutover) stops copying and replaying before its next step; one that
    /// is not running starts paused. Waits up to `acknowledgeMillis` for a
    /// running one to say so.
    public static func pause(plan: Plan, acknowledgeMillis: Int = acknowledgeWaitMillis) throws -> PauseReport {
        let c = try openState(plan, for: "pause")
        defer { try? c.close() }
        let now = Clock.wallMicros()
        // One transaction: the state checked and the pause stored together.
        let (at, already) = try c.transaction(.immediate) { () throws -> (Int64, Bool) in
            try StateTables.upgrade(c)
            let s = try requireRunnable(c, plan: plan, for: "pause")
            if let at = s.live.pausedAtMicros { return (at, true) }
            try StateTables.setPaused(now, in: c)
            return (now, false)
        }
        var acknowledged = false
        let deadline = Clock.monotonicNanos() + UInt64(max(0, acknowledgeMillis)) * 1_000_000
        while true {
            let s = try StateTables.load(c)
            if let w = s?.live.migrationWait, w.what == "paused",
               w.seenAtMicros >= at, w.isCurrent(nowMicros: Clock.wallMicros()) {
                acknowledged = true
            }
            if acknowledged || Clock.monotonicNanos() >= deadline {
                return PauseReport(pausedAtMicros: at, alreadyPaused: already, acknowledged: acknowledged, appliedLSN: s?.appliedLSN ?? .zero)
            }
            Clock.sleep(milliseconds: 20)
        }
    }

    /// Resumes a paused migration (nothing to do when it is not paused).
    public static func resume(plan: Plan) throws -> ResumeReport {
        let c = try openState(plan, for: "resume")
        defer { try? c.close() }
        let now = Clock.wallMicros()
        let was = try c.transaction(.immediate) { () throws -> Int64? in
            try StateTables.upgrade(c)
            guard let s = try StateTables.load(c) else { throw notStarted(plan, for: "resume") }
            guard let at = s.live.pausedAtMicros else { return nil }
            try StateTables.setPaused(nil, in: c)
            return at
        }
        return ResumeReport(pausedAtMicros: was, resumedAtMicros: now)
    }

    /// The target holding the migration state, opened for writing; refused
    /// (changing nothing) when there is none.
    private static func openState(_ plan: Plan, for command: String) throws -> Connection {
        if plan.isPostgres {
            throw MigrationError(.unsupported, "`tidemark \(command)` is not available for a PostgreSQL target (\(plan.displayTarget)) yet, so nothing there is paused; "
                                 + "to take load off the source, stop `tidemark migrate` with Ctrl-C (it resumes where it stopped) or run it with --max-rows-per-second / --max-write-lag-ms")
        }
        guard FileSystemCheck.exists(plan.target) else { throw notStarted(plan, for: command) }
        let c = try Connection(path: plan.target, mode: .readWrite)
        guard try StateTables.exists(c) else {
            try? c.close()
            throw notStarted(plan, for: command)
        }
        return c
    }

    private static func notStarted(_ plan: Plan, for command: String) -> MigrationError {
        MigrationError(.noMigration, "no migration to \(command): \(plan.displayTarget) holds no migration state; start one with `tidemark migrate`, then \(command) it")
    }

    /// The stored state, refusing a migration that has nothing left to run.
    private static func requireRunnable(_ c: Connection, plan: Plan, for command: String) throws -> MigrationState {
        guard let s = try StateTables.load(c) else { throw notStarted(plan, for: command) }
        switch s.cutover {
        case .done(let lsn, _, _):
            throw MigrationError(.noMigration, "nothing to \(command): the migration into \(plan.displayTarget) was cut over at LSN \(lsn) and no longer copies or replays")
        case .rolledBack:
            throw MigrationError(.noMigration, "nothing to \(command): the migration into \(plan.displayTarget) was rolled back; `tidemark migrate` starts it anew")
        default:
            return s
        }
    }
}

// MARK: cutover --postpone-flag

extension Migrator {
    /// `tidemark cutover [--postpone-flag FILE]`: refuses while the migration
    /// is paused; with a flag, first keeps the target caught up (copying
    /// and replaying as `migrate --follow` does) until FILE no longer
    /// exists and the migration is not paused, then cuts over as
    /// ``cutover(_:progress:)`` does.
    ///
    /// While it waits, the migration state records the flag with a
    /// heartbeat (`status` shows it). A signal while waiting stops it with
    /// nothing switched: the source stays authoritative, and every step the
    /// wait took committed whole, as `migrate`'s do.
    /// - Parameter waiting: called once when the wait begins, with the flag's absolute path.
    public func cutover(_ o: CutoverOptions, postponeFlag: String?, waiting: (String) -> Void = { _ in },
                        progress: (MigrationProgress) -> Void = { _ in }) throws -> CutoverReport {
        if !o.dryRun, let c = liveConnection, let w = try StateTables.load(c)?.live.cutoverWait, !w.isCurrent(nowMicros: Clock.wallMicros()) {
            // A postponed cutover that a crash stopped left its record: gone now.
            try c.transaction(.immediate) { try StateTables.setCutoverWait(nil, in: c) }
        }
        if let flag = postponeFlag, !o.dryRun {
            try postponeCutover(flag: flag, waiting: waiting, progress: progress)
        } else if !o.dryRun, let c = liveConnection, let at = try StateTables.pausedAt(c) {
            throw MigrationError(.paused, "the migration was paused at \(Timestamp(microsSinceEpoch: at)) (`tidemark pause`); nothing was switched — run `tidemark resume` first, or cut over with --postpone-flag FILE to wait for both")
        }
        let report = try cutover(o, progress: progress)
        if !report.dryRun, let c = liveConnection {
            // Switched: no cutover waits any more, whatever a killed one left.
            // Best effort: the switch committed, and this is only status's hint.
            _ = try? c.transaction(.immediate) { try StateTables.setCutoverWait(nil, in: c) }
        }
        return report
    }

    /// Follows until `flag` is gone and the migration is not paused.
    func postponeCutover(flag: String, waiting: (String) -> Void, progress: (MigrationProgress) -> Void) throws {
        guard let c = liveConnection else {
            throw MigrationError(.unsupported, "--postpone-flag is not available for a PostgreSQL target (\(plan.displayTarget)) yet; run `tidemark cutover` when it should happen")
        }
        let path = Self.absolutePath(flag)
        guard FileSystemCheck.exists(path) else { return }
        // A migration already cut over has nothing to wait for.
        if let s = try store.loadState(), s.cutover?.kind == .done { return }
        let since = Clock.wallMicros()
        try c.transaction(.immediate) {
            try StateTables.setCutoverWait(LiveWait(what: path, detail: nil, sinceMicros: since, seenAtMicros: since), in: c)
        }
        // Cleared on every way out but a crash; a crash's record stops
        // being current when its heartbeat ages (LiveWait.isCurrent).
        defer { _ = try? c.transaction(.immediate) { try StateTables.setCutoverWait(nil, in: c) } }
        waiting(path)
        let wasFollowing = options.follow
        setFollow(true)
        defer { setFollow(wasFollowing) }
        var beat = Clock.monotonicNanos()
        do {
            _ = try run(progress: progress) { [self] in
                let now = Clock.monotonicNanos()
                if now - beat >= UInt64(LiveControlState.heartbeatMicros) * 1000 {
                    // Best effort, as LiveGate.record: status's hint only.
                    let wall = Clock.wallMicros()
                    if (try? c.transaction(.immediate) {
                        try StateTables.setCutoverWait(LiveWait(what: path, detail: nil, sinceMicros: since, seenAtMicros: wall), in: c)
                    }) != nil { beat = now }
                }
                return !FileSystemCheck.exists(path) && live.pausedAt == nil
            }
        } catch let e as InterruptedError {
            throw InterruptedError(signal: e.signal, place: "while the cutover was postponed (waiting for \(path) to be removed); nothing was switched, the source stays authoritative; the target is caught up to applied LSN \(state.appliedLSN)")
        }
    }

    /// `path` made absolute against the working directory, so that the
    /// stored flag names the same file for every process that reads it.
    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let cwd = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (cwd.hasSuffix("/") ? cwd : cwd + "/") + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }
}
