import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// What `tidemark status` reports, read without changing anything.
public struct MigrationStatus: Sendable {
    public var state: MigrationState?
    /// The log's last LSN (nil when there is no log yet).
    public var logHeadLSN: LSN?
    /// The source's capture high-water mark.
    public var capturedLSN: LSN
    /// Age of the oldest change not yet applied, in ms (0 when none).
    public var lagMillis: Int
    /// The source holds the cutover's switch record.
    public var switched = false
    /// What differs between the plan file and the plan stored with the
    /// migration (empty: nothing, or nothing stored).
    public var planChanges: [String] = []
    /// The plan stored with the migration (what status reports from).
    public var storedPlan: Plan?
    /// A cutover or rollback journal left between its steps.
    public var journal: PendingJournal?
    /// Secondary indexes of the stored schema not yet built (each is built after its table's copy).
    public var pendingIndexes: [String] = []
    /// Where each `swap:` table's swap stands, one phrase per table.
    public var tableSwaps: [String] = []
    /// A swap's old table is still kept aside (only `finish --drop-source` drops it).
    public var oldTableAside = false
    /// The target as messages name it: a path as the plan resolved it, a
    /// connection string without its password.
    public var target = ""
    /// Each source table's key columns, so keys show as objects
    /// (`{"id": 42}`, as in log records).
    public var keyColumns: [String: [String]] = [:]
    public var lagChanges: Int {
        guard let applied = state?.appliedLSN else { return Int(capturedLSN.rawValue) }
        return capturedLSN > applied ? Int(capturedLSN.rawValue - applied.rawValue) : 0
    }

    /// Reads the status of the migration described by `plan`.
    public static func read(plan: Plan) throws -> MigrationStatus {
        guard FileSystemCheck.exists(plan.source) else {
            throw MigrationError(.missingSource, "source database \(plan.source) does not exist; check `source:` in the plan")
        }
        let source = try Connection(path: plan.source, mode: .readOnly)
        let captured = LSN(UInt64(max(0, try Capture.lastCapturedSeq(source))))
        var state: MigrationState?
        var targetConnection: Connection?
        var postgresPending: [String] = []
        if plan.isPostgres {
            // The state lives in the PostgreSQL target (schema tidemark).
            let pg = try PostgresStore.connect(plan.target)
            defer { pg.close() }
            state = try PostgresState.load(pg)
            if state != nil { postgresPending = try PostgresState.objects(pg).pending.map(\.name) }
        } else if FileSystemCheck.exists(plan.target) {
            targetConnection = try Connection(path: plan.target, mode: .readOnly)
            state = try StateTables.load(targetConnection!)
            // A cutover killed mid-way left its journal unsettled: settle it
            // now (read-only otherwise), so status reports what is true.
            let switched = try SwitchRecord.read(source) != nil
            if let s = state, s.cutover?.kind == .prepared || s.cutover == nil && switched {
                state = try CutoverJournal.settle(plan: plan, source: try Connection(path: plan.source, mode: .readWrite),
                                                  target: try Connection(path: plan.target, mode: .readWrite))
            }
        }
        let switched = try SwitchRecord.read(source) != nil
        var planChanges: [String] = []
        if let stored = state?.plan {
            // Compared read-only against the source's schema; a plan that no
            // longer resolves at all is a change too.
            do {
                let target = !plan.isPostgres && FileSystemCheck.exists(plan.target) ? try Connection(path: plan.target, mode: .readOnly) : source
                let mappings = try PlanResolver.resolve(plan, source: source, target: plan.isSameFile ? source : target,
                                                        ownedColumns: try StateTables.addedColumns(target))
                let current = PlanRecord.make(plan: plan, mappings: mappings)
                if current.fingerprint != stored.fingerprint { planChanges = PlanRecord.differences(stored: stored, current: current) }
            } catch {
                planChanges = ["the plan file no longer resolves (\(error))"]
            }
        }
        var head: LSN?
        var lagMillis = 0
        if LogDirectory(plan.log).exists {
            let reader = try LogReader(directory: plan.log)
            head = try reader.headLSN()
            if let applied = state?.appliedLSN, let head, head > applied {
                let cursor = try reader.cursor(from: applied.next)
                if let next = try cursor.next() {
                    lagMillis = max(0, Int((Clock.wallMicros() - next.timestampMicros) / 1000))
                }
            }
        }
        if lagMillis == 0, let applied = state?.appliedLSN, captured > applied,
           let oldest = try Capture.status(connection: source)?.oldestPendingMicros {
            lagMillis = max(0, Int((Clock.wallMicros() - oldest) / 1000))
        }
        var status = MigrationStatus(state: state, logHeadLSN: head, capturedLSN: captured, lagMillis: lagMillis)
        status.switched = switched
        status.target = plan.displayTarget
        for t in state?.tables ?? [] {
            if let info = try Schema.table(named: t.sourceTable, in: source) { status.keyColumns[t.sourceTable] = info.primaryKey }
        }
        status.planChanges = planChanges
        status.storedPlan = try? state?.plan?.plan()
        status.journal = try Lifecycle.pendingJournal(state, target: targetConnection)
        if state != nil, let targetConnection { status.pendingIndexes = try SchemaStore.pending(.index, in: targetConnection) }
        if plan.isPostgres { status.pendingIndexes = postgresPending }
        if !plan.isPostgres, plan.isSameFile {
            for t in (status.storedPlan ?? plan).tables where t.swap {
                let shadow = TablePlan.shadowName(of: t.source), aside = TablePlan.asideName(of: t.source)
                let hasShadow = try Schema.table(named: shadow, in: source) != nil
                let hasAside = try Schema.table(named: aside, in: source) != nil
                if hasAside { status.oldTableAside = true }
                switch (hasShadow, hasAside) {
                case (true, false) where state?.cutover?.kind == .rolledBack:
                    status.tableSwaps.append("\(t.source) was swapped back (the old shape is live); the new shape stays, fenced, in \(shadow) until `migrate` starts again")
                case (true, false):
                    status.tableSwaps.append("\(t.source) is being rebuilt into \(shadow); the cutover swaps it in")
                case (false, true):
                    status.tableSwaps.append("\(t.source) has its new shape; the old table is kept, guarded, as \(aside) (`rollback` swaps back, `finish --drop-source` drops it)")
                case (false, false) where switched:
                    status.tableSwaps.append("\(t.source) has its new shape; its old table was dropped")
                case (true, true):
                    status.tableSwaps.append("\(t.source) has both \(shadow) and \(aside): a swap left the file in an unexpected state; run `tidemark status` again after any running command ends")
                default:
                    status.tableSwaps.append("\(t.source) is not being swapped now (`migrate` with this plan rebuilds it into \(shadow))")
                }
            }
        }
        return status
    }

    /// The phase, what happened and the one command to run next.
    /// - Parameter planArgument: how the named commands pass the plan.
    public func lifecycle(planArgument: String) -> Lifecycle {
        var l = Lifecycle.assess(state, switched: switched, journal: journal, planChanges: planChanges, planArgument: planArgument,
                                 pendingIndexes: pendingIndexes)
        if !tableSwaps.isEmpty { l.summary += "; table swap: " + tableSwaps.joined(separator: "; ") }
        // Finished, the old table of a swap still aside: dropping it is what is left.
        if l.phase == .finished, oldTableAside { l.next = "tidemark finish --drop-source \(planArgument)" }
        // Where the data lives now, named: after cutover the target is authoritative.
        let cutAt = "cut over at"
        if l.phase == .cutOver, !target.isEmpty, l.summary.hasPrefix(cutAt) {
            l.summary = "cut over to \(target) at" + l.summary.dropFirst(cutAt.count)
        }
        return l
    }

    /// A table's phase as `status` names it: once the migration is cut over
    /// (or rolled back) that is the migration's word, not the copy's
    /// ("following" would say replay still runs into the target).
    public func tablePhase(_ t: TableState, in phase: LifecyclePhase) -> String {
        switch phase {
        case .cutOver, .finished: "cut over to \(target)"
        case .rolledBack: "rolled back"
        default: t.phase.rawValue
        }
    }

    /// What `tidemark status` prints, one line each. The first names the
    /// phase; the last is always the command to run next (`next: …`), so
    /// whatever is added between (a paused copier, a postponed cutover)
    /// goes before it.
    /// - Parameter planArgument: how the named commands pass the plan.
    public func lines(planArgument: String) -> [String] {
        let life = lifecycle(planArgument: planArgument)
        var out = ["phase: \(life.phase.rawValue) — \(life.summary)"]
        if let blocked = life.blocked { out.append("blocked: \(blocked)") }
        if let state {
            for t in state.tables {
                out.append("  \(t.sourceTable) → \(t.targetTable)  \(tablePhase(t, in: life.phase))  rows \(t.rowsCopied)/\(t.rowsEstimate)  tidemark \(t.tidemark.map(Self.keyText) ?? "-")  ceiling \(t.ceiling.map(Self.keyText) ?? "-")")
            }
            if let v = state.verification {
                out.append("last verify: \(Timestamp(microsSinceEpoch: v.atMicros)), LSNs \(v.fromLSN)–\(v.throughLSN), \(v.isClean ? "equal" : "\(v.differences) differences")")
            }
            if state.skipVerifyAtMicros != nil { out.append("cutover was allowed without a clean verify (--skip-verify)") }
            out.append("applied LSN \(state.appliedLSN), log head \(logHeadLSN.map { "\($0)" } ?? "-"), captured \(capturedLSN); lag \(lagChanges) changes, \(lagMillis) ms\(state.caughtUpAtMicros != nil ? "; caught up" : "")")
        } else {
            out.append("\(capturedLSN) changes captured so far")
        }
        out.append("next: " + (life.next ?? "nothing to run: the migration is finished"))
        return out
    }

    /// A key in text: one value as it is, several in parentheses.
    public static func keyText(_ values: [Value]) -> String {
        values.count == 1 ? values[0].description : "(" + values.map(\.description).joined(separator: ", ") + ")"
    }
}
