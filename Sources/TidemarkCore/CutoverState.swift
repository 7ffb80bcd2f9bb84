import TidemarkLog

/// Where the switch to the target stands: the cutover journal kept in the
/// target's migration state (nil there: no cutover has begun).
///
/// Invariants:
/// - `prepared` exists only between the target transaction that drained the
///   last changes and the source's commit of its switch record (the commit
///   point); a crash leaves it, and ``CutoverJournal`` settles it to `done`
///   (the record exists) or to nil (it does not).
/// - `done` iff the source holds the switch record (two stores: once
///   settled); its LSN and time are the record's.
/// - `rolledBack` keeps the LSN and time of the switch it undid (none when a
///   rollback abandoned a migration that never switched).
///
/// Stored compatibly with every earlier version: the column `cutover_state`
/// holds ``Kind/rawValue`` ("prepared", "done", "rolled-back" or NULL) and
/// the LSN, time and pause sit in `cutover_lsn`, `cutover_at` and
/// `cutover_pause_us` (see ``stored`` and ``init(stored:lsn:atMicros:pauseMicros:)``).
public enum CutoverState: Sendable, Equatable {
    /// The target is ready and journaled; the source has not committed.
    case prepared(lsn: LSN, atMicros: Int64)
    /// The target is authoritative since `lsn`. `pauseMicros`: the writers'
    /// pause, when the cutover measured it (not when a crash was settled).
    case done(lsn: LSN, atMicros: Int64, pauseMicros: Int64?)
    /// A rollback made the source authoritative again.
    case rolledBack(lsn: LSN?, atMicros: Int64?, pauseMicros: Int64?)

    /// The stored name of each case.
    public enum Kind: String, Sendable {
        case prepared
        case done
        case rolledBack = "rolled-back"
    }

    public var kind: Kind {
        switch self {
        case .prepared: .prepared
        case .done: .done
        case .rolledBack: .rolledBack
        }
    }

    /// The LSN of the switch (prepared or made), if any.
    public var lsn: LSN? {
        switch self {
        case .prepared(let lsn, _), .done(let lsn, _, _): lsn
        case .rolledBack(let lsn, _, _): lsn
        }
    }

    /// The state after a rollback of this one.
    public var rolledBack: CutoverState {
        switch self {
        case .prepared(let lsn, let at): .rolledBack(lsn: lsn, atMicros: at, pauseMicros: nil)
        case .done(let lsn, let at, let pause): .rolledBack(lsn: lsn, atMicros: at, pauseMicros: pause)
        case .rolledBack: self
        }
    }

    /// The columns it is stored in.
    public var stored: (state: String, lsn: LSN?, atMicros: Int64?, pauseMicros: Int64?) {
        switch self {
        case .prepared(let lsn, let at): (Kind.prepared.rawValue, lsn, at, nil)
        case .done(let lsn, let at, let pause): (Kind.done.rawValue, lsn, at, pause)
        case .rolledBack(let lsn, let at, let pause): (Kind.rolledBack.rawValue, lsn, at, pause)
        }
    }

    /// Reads the stored columns; nil when no cutover has begun. Throws for a
    /// state this version does not know, or a prepared or done switch
    /// without its LSN and time (which no version writes).
    public init?(stored state: String?, lsn: LSN?, atMicros: Int64?, pauseMicros: Int64?) throws(MigrationError) {
        guard let state else { return nil }
        switch Kind(rawValue: state) {
        case .prepared?:
            guard let lsn, let atMicros else { throw Self.incomplete(state) }
            self = .prepared(lsn: lsn, atMicros: atMicros)
        case .done?:
            guard let lsn, let atMicros else { throw Self.incomplete(state) }
            self = .done(lsn: lsn, atMicros: atMicros, pauseMicros: pauseMicros)
        case .rolledBack?:
            self = .rolledBack(lsn: lsn, atMicros: atMicros, pauseMicros: pauseMicros)
        case nil:
            throw MigrationError(.foreignState, "the target's migration state has an unknown cutover state '\(state)' (written by a newer Tidemark?); use that version")
        }
    }

    private static func incomplete(_ state: String) -> MigrationError {
        MigrationError(.foreignState, "the target's migration state says the cutover is \(state) but has no LSN or time for it; it was not written by Tidemark — restore the target from a backup or start the migration again")
    }
}
