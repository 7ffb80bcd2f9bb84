import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// Where a migration stands, from a user's point of view.
///
/// ```
/// planned ──migrate──▶ copying ──migrate──▶ caught up ──verify (clean)──▶ verified ──cutover──▶ cut over ──finish──▶ finished
///                                             ▲   │                          │                     │
///                                             └───┘ verify (differences)     │                     │
///   rollback from any state before cut over ──▶ planned (abandoned)          │        rollback ──▶ rolled back
/// ```
///
/// A phase is not stored as a separate label: it is derived from facts the
/// state records in the same row as the plan fingerprint, each written in
/// the transaction that made it true (tables' copy phases, `copied_at`, the
/// verify record, the cutover journal). A label stored beside them could
/// disagree with them after a crash; a derived one cannot.
public enum LifecyclePhase: String, Sendable, CaseIterable {
    /// Nothing migrated yet (no state in the target).
    case planned
    /// Some table is still being copied, or a secondary index built after
    /// its table's copy is still to be built.
    case copying
    /// Every table copied and replay following, but no clean verify since.
    case caughtUp = "caught up"
    /// A verify found no difference after the copy finished: cutover may go.
    case verified
    /// The target is authoritative.
    case cutOver = "cut over"
    /// `finish` removed the migration state; the old tables stay guarded.
    case finished
    /// Switched back to the source after a cutover.
    case rolledBack = "rolled back"
    /// A cutover stopped between its steps (a crash); `cutover` settles it.
    case cutoverInterrupted = "cutover interrupted"
    /// A rollback stopped between its steps; `rollback` settles it.
    case rollbackInterrupted = "rollback interrupted"

    /// What moves a migration between phases.
    public enum Event: Sendable {
        case migrate, copyFinished, verifyClean, verifyFoundDifferences, cutover, finish, rollback
    }

    /// The phase after `event`, or nil when the event does not apply here
    /// (the command refuses or has nothing to do). The table the README's
    /// diagram draws.
    public func after(_ event: Event) -> LifecyclePhase? {
        switch (self, event) {
        case (.planned, .migrate): .copying
        case (.copying, .migrate): .copying
        case (.copying, .copyFinished): .caughtUp
        case (.caughtUp, .verifyClean), (.verified, .verifyClean): .verified
        case (.caughtUp, .verifyFoundDifferences), (.verified, .verifyFoundDifferences): .caughtUp
        case (.caughtUp, .migrate), (.verified, .migrate): self
        case (.verified, .cutover): .cutOver
        case (.cutoverInterrupted, .cutover): .cutOver
        case (.cutOver, .finish): .finished
        case (.cutOver, .rollback), (.rollbackInterrupted, .rollback): .rolledBack
        case (.planned, .rollback), (.copying, .rollback), (.caughtUp, .rollback), (.verified, .rollback): .planned
        case (.rolledBack, .migrate): .copying
        default: nil
        }
    }
}

/// A cutover or rollback journal left between its steps.
///
/// Extension point for the switch journals: ``Lifecycle/pendingJournal``
/// reports the cutover journal's `prepared` state today; a rollback journal
/// (or more steps) adds its case there, and `status` names the command that
/// settles it without any other change.
public struct PendingJournal: Sendable, Equatable {
    public enum Kind: String, Sendable { case cutover, rollback }
    public var kind: Kind
    /// The journaled step it stopped after (e.g. "prepared").
    public var step: String

    public init(kind: Kind, step: String) {
        self.kind = kind
        self.step = step
    }
}

/// The phase of a migration, what happened, and the one command to run next.
public struct Lifecycle: Sendable {
    public var phase: LifecyclePhase
    /// One line: what happened so far.
    public var summary: String
    /// The one command to run next (nil: nothing needs to run).
    public var next: String?
    /// Why the usual next step is blocked (the plan changed), if it is.
    public var blocked: String?

    /// Half-finished journals (see ``PendingJournal``): the cutover's in
    /// the stored state; a rollback journal kept in its own table of the
    /// target is read here through `target` (add its case below), so that
    /// `status` names `rollback` as the command that settles it.
    /// - Parameter target: the target, read-only (nil when it does not exist).
    public static func pendingJournal(_ state: MigrationState?, target: Connection? = nil) throws -> PendingJournal? {
        if state?.cutover?.kind == .prepared { return PendingJournal(kind: .cutover, step: "prepared") }
        // The rollback journal (see ``RollbackJournal``): unsettled while
        // "prepared" (fenced, commit point maybe not reached) or "abandoning".
        if let target, let entry = try RollbackJournal.read(target), entry.phase != .committed {
            return PendingJournal(kind: .rollback, step: entry.phase.rawValue)
        }
        return nil
    }

    /// The phase `state` is in.
    /// - Parameter switched: the source holds the cutover's switch record.
    public static func phase(of state: MigrationState?, switched: Bool, journal: PendingJournal? = nil, pendingIndexes: [String] = []) -> LifecyclePhase {
        if let journal { return journal.kind == .cutover ? .cutoverInterrupted : .rollbackInterrupted }
        guard let state else { return switched ? .finished : .planned }
        switch state.cutover {
        case .done?: return .cutOver
        case .rolledBack?: return .rolledBack
        case .prepared?, nil: break
        }
        if state.tables.contains(where: { $0.phase != .following }) || !pendingIndexes.isEmpty { return .copying }
        return isProven(state) ? .verified : .caughtUp
    }

    /// A clean verify that started after every table's copy finished.
    static func isProven(_ state: MigrationState) -> Bool {
        guard let v = state.verification, v.isClean,
              state.tables.allSatisfy({ $0.phase == .following }) else { return false }
        guard let copiedAt = state.copiedAtMicros else { return false }
        return v.atMicros >= copiedAt && v.fromLSN >= (state.copiedLSN ?? .zero)
    }

    /// Describes `state` for `tidemark status`.
    /// - Parameters:
    ///   - planArgument: how the commands named should pass the plan (e.g. `--plan shop.yml`).
    ///   - planChanges: what differs from the stored plan (empty: nothing).
    ///   - pendingIndexes: indexes of the stored schema not yet built.
    public static func assess(_ state: MigrationState?, switched: Bool, journal: PendingJournal? = nil,
                              planChanges: [String] = [], planArgument: String, pendingIndexes: [String] = []) -> Lifecycle {
        let phase = phase(of: state, switched: switched, journal: journal, pendingIndexes: pendingIndexes)
        func cmd(_ c: String) -> String { "tidemark \(c) \(planArgument)" }
        var l: Lifecycle
        switch phase {
        case .planned:
            l = Lifecycle(phase: phase, summary: "nothing migrated yet", next: cmd("migrate"))
        case .copying:
            if let t = state!.tables.first(where: { $0.phase != .following }) {
                l = Lifecycle(phase: phase, summary: "copying: \(t.sourceTable) is \(t.phase.rawValue) (\(t.rowsCopied) of about \(t.rowsEstimate) rows)", next: cmd("migrate"))
            } else {
                l = Lifecycle(phase: phase, summary: "copy finished; \(pendingIndexes.count) secondary index\(pendingIndexes.count == 1 ? "" : "es") still to build (\(pendingIndexes.joined(separator: ", ")))", next: cmd("migrate"))
            }
        case .caughtUp:
            if let v = state!.verification, !v.isClean, v.atMicros >= (state!.copiedAtMicros ?? .max) {
                l = Lifecycle(phase: phase, summary: "copy finished; the last verify found \(v.differences) differences (LSNs \(v.fromLSN)–\(v.throughLSN)); find their cause, then verify again", next: cmd("verify"))
            } else {
                l = Lifecycle(phase: phase, summary: "copy finished and replay following; not verified since", next: cmd("verify"))
            }
        case .verified:
            let v = state!.verification!
            l = Lifecycle(phase: phase, summary: "verified equal at \(Timestamp(microsSinceEpoch: v.atMicros)) (LSNs \(v.fromLSN)–\(v.throughLSN)); ready to switch", next: cmd("cutover"))
        case .cutOver:
            l = Lifecycle(phase: phase, summary: "cut over at LSN \(state!.cutover?.lsn.map { "\($0)" } ?? "?"): the target is authoritative\(state!.skipVerifyAtMicros != nil ? " (switched with --skip-verify)" : ""); `rollback` switches back", next: cmd("finish"))
        case .finished:
            l = Lifecycle(phase: phase, summary: "finished: the target is authoritative and the migration state is removed; the old tables stay guarded", next: nil)
        case .rolledBack:
            l = Lifecycle(phase: phase, summary: "rolled back after cutover: the source is authoritative again; `migrate` starts a new migration", next: cmd("migrate"))
        case .cutoverInterrupted:
            l = Lifecycle(phase: phase, summary: "a cutover stopped after its \(journal?.step ?? "?") step (or is running now); running cutover again finishes or undoes it", next: cmd("cutover"))
        case .rollbackInterrupted:
            l = Lifecycle(phase: phase, summary: "a rollback stopped after its \(journal?.step ?? "?") step (or is running now); running rollback again finishes it", next: cmd("rollback"))
        }
        if let b = state?.blocked, [.copying, .caughtUp, .verified].contains(phase) {
            // The target refused a step; the same command goes on once
            // the row (or the plan) is fixed.
            l.blocked = "the target refused a step\(b.lsn.map { " at LSN \($0)" } ?? "") (\(Timestamp(microsSinceEpoch: b.atMicros))): \(b.message)"
            l.next = "fix the row in the source (or the plan), then run " + cmd("migrate")
        }
        if !planChanges.isEmpty, [.copying, .caughtUp, .verified, .cutOver].contains(phase) {
            l.blocked = "the plan changed since this migration began: \(planChanges.joined(separator: "; ")); restore the plan as it was, or roll back and migrate again"
            l.next = cmd("rollback")
        }
        return l
    }

    init(phase: LifecyclePhase, summary: String, next: String?, blocked: String? = nil) {
        self.phase = phase
        self.summary = summary
        self.next = next
        self.blocked = blocked
    }

    /// Refuses a cutover that nothing proved: the copy must have finished
    /// and a verify found no difference after it. This is the only defence
    /// against writes no trigger sees (incremental BLOB I/O) made before the
    /// verify; `skipVerify` overrides it.
    public static func requireProven(_ state: MigrationState?, skipVerify: Bool) throws {
        if skipVerify { return }
        let how = "run `tidemark migrate` until caught up, then `tidemark verify`, then cutover (or pass --skip-verify to switch unproven)"
        guard let state else {
            throw MigrationError(.notVerified, "nothing has been migrated yet, so nothing proves the target; \(how)")
        }
        if state.cutover?.kind == .done { return }
        if state.cutover?.kind == .rolledBack {
            // The proof was of the first switch; writes since went both ways.
            throw MigrationError(.notVerified, "this migration was cut over and rolled back; its verify proves nothing now — run `tidemark migrate` to start again, then `tidemark verify`, then cutover")
        }
        if let t = state.tables.first(where: { $0.phase != .following }) {
            throw MigrationError(.notVerified, "the copy has not finished (\(t.sourceTable) is \(t.phase.rawValue)); \(how)")
        }
        guard let v = state.verification, let copiedAt = state.copiedAtMicros,
              v.atMicros >= copiedAt, v.fromLSN >= (state.copiedLSN ?? .zero) else {
            throw MigrationError(.notVerified, "no verify has run since the copy finished; run `tidemark verify`, then cutover (or pass --skip-verify to switch unproven)")
        }
        guard v.isClean else {
            throw MigrationError(.notVerified, "the last verify (at \(Timestamp(microsSinceEpoch: v.atMicros)), LSNs \(v.fromLSN)–\(v.throughLSN)) found \(v.differences) differences; resolve them and verify again (or pass --skip-verify to switch anyway)")
        }
    }

    /// ``requireProven(_:skipVerify:)`` read-only from the files of `plan`,
    /// before a cutover command opens anything for writing: a refusal
    /// changes nothing (no target, capture or log is created).
    public static func checkCutover(plan: Plan, skipVerify: Bool) throws {
        if skipVerify { return }
        let state: MigrationState?
        if plan.isPostgres {
            let pg = try PostgresStore.connect(plan.target)
            defer { pg.close() }
            do { state = try PostgresState.load(pg) } catch let e as PGError { throw PostgresStore.migrationError(e, target: plan.displayTarget) }
        } else {
            state = FileSystemCheck.exists(plan.target) ? try StateTables.load(try Connection(path: plan.target, mode: .readOnly)) : nil
        }
        // A cutover a crash interrupted (journal or switch record) is settled
        // by the command itself, whatever the verify says.
        if state?.cutover?.kind == .prepared || state?.cutover?.kind == .done { return }
        if FileSystemCheck.exists(plan.source), try SwitchRecord.read(try Connection(path: plan.source, mode: .readOnly)) != nil { return }
        try requireProven(state, skipVerify: false)
    }
}

extension Migrator {
    /// The cutover gate, called at the start of ``cutover(_:progress:)``
    /// once an interrupted cutover is settled: refuses an unproven switch,
    /// or records that `--skip-verify` overrode it.
    /// A dry run records nothing.
    func requireProvenForCutover(skipVerify: Bool, dryRun: Bool) throws {
        let stored = try StateTables.load(target)
        try Lifecycle.requireProven(stored, skipVerify: skipVerify)
        if skipVerify, !dryRun, stored?.cutover?.kind != .done {
            try target.transaction(.immediate) { try StateTables.recordSkipVerify(atMicros: Clock.wallMicros(), in: target) }
        }
    }
}
