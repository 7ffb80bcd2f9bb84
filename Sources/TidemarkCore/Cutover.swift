import TidemarkLog
import TidemarkSQLite

/// Tunables of `tidemark cutover`.
public struct CutoverOptions: Sendable {
    /// Wait until the oldest unapplied change is younger than this.
    public var maxLagMillis = 500
    /// Give up (changing nothing) if writers would be paused longer.
    public var maxPauseMillis = 2_000
    /// Give up (changing nothing) if the lag is not reached in time.
    public var timeoutSeconds = 60.0
    /// Check everything and report, but do not switch.
    public var dryRun = false
    /// Switch without a clean verify since the copy finished (recorded in
    /// the migration state; the command line warns).
    public var skipVerify = false
    /// Switch although some of the source's triggers or views could not be
    /// carried to the target (they are listed in ``CutoverReport/droppedObjects``;
    /// the command line warns). Without it such a cutover is refused.
    public var dropTriggers = false
    public init() {}
}

/// What a cutover did.
public struct CutoverReport: Sendable {
    /// The LSN at which the target became authoritative.
    public var lsn: LSN
    public var atMicros: Int64
    /// How long the source's write lock was held (what writers waited at most).
    public var pauseMillis: Double
    /// Changes replayed while the lock was held.
    public var drained: Int
    public var waitedSeconds: Double
    public var dryRun: Bool
    /// The switch had already happened (possibly finished now from a journal).
    public var alreadyDone: Bool
    /// Triggers and views of the source the target does not get, accepted
    /// by ``CutoverOptions/dropTriggers``, as `<kind> <name> on <table> (<why>)`.
    public var droppedObjects: [String] = []

    /// The report of a switch made earlier (by another run, or settled
    /// from its journal): nothing drained, nothing waited.
    static func alreadyDone(lsn: LSN, atMicros: Int64, pauseMicros: Int64?, dryRun: Bool) -> CutoverReport {
        CutoverReport(lsn: lsn, atMicros: atMicros, pauseMillis: Double(pauseMicros ?? 0) / 1000, drained: 0,
                      waitedSeconds: 0, dryRun: dryRun, alreadyDone: true)
    }
}

/// The record of the switch kept in the source database: its presence is the
/// commit point of a cutover. Readers of ``Router`` and a crashed cutover's
/// recovery both decide by it.
enum SwitchRecord {
    static let table = "_tidemark_cutover"

    static let createSQL = """
        CREATE TABLE IF NOT EXISTS \(table)(
          id INTEGER PRIMARY KEY CHECK (id = 1),
          lsn INTEGER NOT NULL,
          at INTEGER NOT NULL,
          target TEXT NOT NULL,
          tables TEXT NOT NULL)
        """

    struct Row {
        var lsn: LSN
        var atMicros: Int64
        var target: String
        var tables: String
    }

    static func read(_ c: Connection, schema: String = "main") throws -> Row? {
        let exists = try c.prepare("SELECT count(*) FROM \(schema).sqlite_schema WHERE type = 'table' AND name = '\(table)'")
        _ = try exists.step()
        guard exists.columnInt64(0) > 0 else { return nil }
        let s = try c.prepare("SELECT lsn, at, target, tables FROM \(schema).\(table) WHERE id = 1")
        guard try s.step() else { return nil }
        return Row(lsn: LSN(UInt64(s.columnInt64(0))), atMicros: s.columnInt64(1), target: s.columnText(2), tables: s.columnText(3))
    }
}

/// Guard triggers: after cutover every write to a migrated source table (or,
/// in place, to its migrated columns) fails with a message naming the new
/// location, so nothing is written where nobody reads.
enum Guards {
    static func names(_ m: TableMapping) -> [String] {
        ["insert", "update", "delete"].map { "_tidemark_guard_\(m.source.name)_\($0)" }
    }

    static func createSQL(_ m: TableMapping, plan: Plan, lsn: LSN) -> [String] {
        let q = quoteIdentifier
        let place = plan.isSameFile ? m.targetTable : "\(plan.displayTarget) table \(m.targetTable)"
        let message = "tidemark: \(m.source.name) has moved to \(place) (cutover at LSN \(lsn)); write there"
        let literal = "'" + message.replacingOccurrences(of: "'", with: "''") + "'"
        let raise = "BEGIN SELECT RAISE(ABORT, \(literal)); END"
        let n = names(m)
        if TableSwap.isSwap(m, plan: plan) {
            // The old table, set aside by the swap, refuses every write.
            let aside = TablePlan.asideName(of: m.source.name)
            let msg = "tidemark: \(aside) is the old \(m.source.name), set aside by a table swap (cutover at LSN \(lsn)); write to \(m.source.name)"
            let raise = "BEGIN SELECT RAISE(ABORT, '\(msg.replacingOccurrences(of: "'", with: "''"))'); END"
            return [
                "CREATE TRIGGER IF NOT EXISTS \(q(n[0])) BEFORE INSERT ON \(q(aside)) \(raise)",
                "CREATE TRIGGER IF NOT EXISTS \(q(n[1])) BEFORE UPDATE ON \(q(aside)) \(raise)",
                "CREATE TRIGGER IF NOT EXISTS \(q(n[2])) BEFORE DELETE ON \(q(aside)) \(raise)",
            ]
        }
        switch m.shape {
        case .copy:
            return [
                "CREATE TRIGGER IF NOT EXISTS \(q(n[0])) BEFORE INSERT ON \(q(m.source.name)) \(raise)",
                "CREATE TRIGGER IF NOT EXISTS \(q(n[1])) BEFORE UPDATE ON \(q(m.source.name)) \(raise)",
                "CREATE TRIGGER IF NOT EXISTS \(q(n[2])) BEFORE DELETE ON \(q(m.source.name)) \(raise)",
            ]
        case .inPlace:
            // Same table, new columns. The invariant after cutover: every
            // row's new columns hold what the plan computes from its replaced
            // columns, or what new code wrote into them. Old code breaks it
            // in two ways, and only those are refused: an INSERT that leaves
            // a new column NULL where the plan would compute a value (old
            // code does not know the column), and an UPDATE of a replaced
            // column (the new column would go stale). New code may write the
            // new columns and every column no new column is computed from.
            let msg = "tidemark: \(m.source.name) was migrated in place to columns \(m.columns.map(\.target).joined(separator: ", ")) (cutover at LSN \(lsn)); write those"
            let lit = "'" + msg.replacingOccurrences(of: "'", with: "''") + "'"
            var out: [String] = []
            let data = m.source.dataColumns.map(\.name)
            let row = data.map { "NEW.\(q($0)) AS \(q($0))" }.joined(separator: ", ")
            let wrong = m.columns.map { c in
                "(NEW.\(q(c.target)) IS NULL AND (SELECT (\(c.expression)) FROM (SELECT \(row))) IS NOT NULL)"
            }.joined(separator: " OR ")
            if !m.columns.isEmpty {
                out.append("CREATE TRIGGER IF NOT EXISTS \(q(n[0])) BEFORE INSERT ON \(q(m.source.name)) BEGIN SELECT RAISE(ABORT, \(lit)) WHERE \(wrong); END")
            }
            let replaced = replacedColumns(m)
            if !replaced.isEmpty {
                out.append("CREATE TRIGGER IF NOT EXISTS \(q(n[1])) BEFORE UPDATE OF \(replaced.map(q).joined(separator: ", ")) ON \(q(m.source.name)) BEGIN SELECT RAISE(ABORT, \(lit)); END")
            }
            return out
        }
    }

    /// In place: the source columns some new column is computed from (key
    /// columns excepted: a key change is a new row, judged by the insert
    /// guard). Found by the identifiers the plan's expressions name; a word
    /// that is not a column (a function name) matches nothing.
    static func replacedColumns(_ m: TableMapping) -> [String] {
        var named = Set<String>()
        for c in m.columns { named.formUnion(SQLIdentifiers.scan(c.expression).map { $0.lowercased() }) }
        return m.sourceColumns.filter { c in
            named.contains(c.lowercased()) && !m.sourceKey.contains { $0.lowercased() == c.lowercased() }
        }
    }

    static func dropSQL(_ m: TableMapping) -> [String] {
        names(m).map { "DROP TRIGGER IF EXISTS \(quoteIdentifier($0))" }
    }
}

/// The identifiers an SQL expression names: bare words and quoted names
/// ("x", `x`, [x]); string literals and numbers are skipped.
enum SQLIdentifiers {
    static func scan(_ sql: String) -> [String] {
        var out: [String] = []
        let cs = Array(sql)
        var i = 0
        while i < cs.count {
            let c = cs[i]
            if c == "'" {
                i += 1
                while i < cs.count { if cs[i] == "'" { if i + 1 < cs.count && cs[i + 1] == "'" { i += 2; continue }; break }; i += 1 }
                i += 1
            } else if "\"`[".contains(c) {
                let close: Character = c == "[" ? "]" : c
                var name = ""
                i += 1
                while i < cs.count {
                    if cs[i] == close { if close != "]" && i + 1 < cs.count && cs[i + 1] == close { name.append(close); i += 2; continue }; break }
                    name.append(cs[i]); i += 1
                }
                i += 1
                out.append(name)
            } else if c.isLetter || c == "_" {
                var name = ""
                while i < cs.count && (cs[i].isLetter || cs[i].isNumber || "_$".contains(cs[i])) { name.append(cs[i]); i += 1 }
                out.append(name)
            } else if c.isNumber {
                while i < cs.count && (cs[i].isLetter || cs[i].isNumber || cs[i] == ".") { i += 1 }
            } else {
                i += 1
            }
        }
        return out
    }
}

extension String {
    func replacingOccurrences(of a: String, with b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: a) {
            out += rest[..<r.lowerBound]
            out += b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of needle: String) -> Range<Substring.Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}

/// Settles the target's cutover journal against the source's switch record,
/// the commit point: a journal left "prepared" by a crash is completed to
/// "done" when the record exists, and cleared (the source stays
/// authoritative) when it does not. Used by the next cutover and by
/// `tidemark status`, so a killed cutover is resolved by either.
enum CutoverJournal {
    /// Returns the (settled) stored state, or nil when the target has none.
    ///
    /// The decision is taken under the source's write lock: a live cutover
    /// holds it from before it journals "prepared" until it commits the
    /// switch record, so holding it proves no cutover is between the two,
    /// and the record read then is final. If the lock stays busy past the
    /// connection's busy timeout, a cutover is running: nothing is changed.
    /// A record without a "done" journal is settled as done whatever the
    /// journal says (a cutover that committed is finished).
    static func settle(plan: Plan, source: Connection, target: Connection) throws -> MigrationState? {
        guard let stored = try StateTables.load(target) else { return nil }
        switch stored.cutover {
        case .prepared?: break
        case .done?, .rolledBack?: return stored
        case nil:
            // Nothing to settle (the usual case: no lock taken), unless the
            // source holds a switch record this journal never saw.
            if try SwitchRecord.read(source) == nil { return stored }
        }
        // Same file: the target transaction below is the file's write lock.
        let lockSource = !plan.isSameFile
        if lockSource {
            let begun: SQLiteError? = Self.begin(source)
            if let begun {
                if begun.primaryCode == .busy { return stored }
                throw begun
            }
        }
        do {
            let settled = try target.transaction(.immediate) { try settleLocked(source: source, target: target) }
            if lockSource { try source.execute("ROLLBACK") }
            return settled
        } catch {
            if lockSource && source.isInTransaction { try? source.execute("ROLLBACK") }
            throw error
        }
    }

    private static func begin(_ c: Connection) -> SQLiteError? {
        do {
            try c.execute("BEGIN IMMEDIATE")
            return nil
        } catch {
            return error
        }
    }

    /// The decision itself, with both write locks held.
    private static func settleLocked(source: Connection, target: Connection) throws -> MigrationState? {
        guard var s = try StateTables.load(target) else { return nil }
        switch s.cutover {
        case .prepared?, nil: break
        case .done?, .rolledBack?: return s
        }
        if let record = try SwitchRecord.read(source) {
            // The pause was never measured: the run that made it died.
            s.cutover = .done(lsn: record.lsn, atMicros: record.atMicros, pauseMicros: nil)
        } else {
            guard s.cutover != nil else { return s }
            // Undone: the application's triggers and views, created in the
            // "prepared" transaction, go again (they exist iff the cutover
            // committed). The sequences may stay raised: a larger sequence
            // only skips ids.
            try CutoverSchema.dropObjects(target)
            s.cutover = nil
        }
        try StateTables.saveCutover(s, in: target)
        return s
    }
}

/// Reverse capture on a separate target file (see ``Migrator/cutover(_:progress:)``).
enum ReverseCapture {
    /// In the transaction that journals "prepared", with the source's write
    /// lock held: makes the target's outbox continue the log right after the
    /// switch LSN and binds it to the log. Returns the `seq` the target's own
    /// writes start after (the switch LSN).
    ///
    /// Rows already in the target's outbox are echoes of the migration's own
    /// replay (installed before the pause, the triggers saw the drain): they
    /// are the source's changes again, never shipped (the log is bound only
    /// now), and are dropped. With them gone, the sequence may be set to the
    /// switch LSN even where the echoes had counted past it.
    /// > The content of the SQLITE_SEQUENCE table can be modified using
    /// > ordinary UPDATE, INSERT, and DELETE statements.
    static func startAfterSwitch(_ target: Connection, at lsn: LSN, logPath: String) throws -> Int64 {
        guard try Capture.isInstalled(target) else { return Int64(lsn.rawValue) }
        let switchSeq = Int64(clamping: lsn.rawValue)
        try target.execute("DELETE FROM main._tidemark_outbox")
        try target.prepare("DELETE FROM main.sqlite_sequence WHERE name = '_tidemark_outbox'").execute()
        try target.prepare("INSERT INTO main.sqlite_sequence(name, seq) VALUES ('_tidemark_outbox', ?1)").execute([.integer(switchSeq)])
        try target.prepare("INSERT OR REPLACE INTO main._tidemark_meta(name, value) VALUES ('first_seq', ?1)").execute([.text(String(switchSeq))])
        try Capture.bindLog(target, logPath: logPath)
        return switchSeq
    }
}

extension Migrator {
    /// Finishes or undoes a cutover that a crash interrupted (see ``CutoverJournal``).
    func resolveInterruptedCutover() throws {
        if let settled = try CutoverJournal.settle(plan: plan, source: source, target: target) {
            state.cutover = settled.cutover
        }
    }

    /// Makes the target authoritative: waits for a small lag, pauses writers
    /// for as short as it can (the source write lock), drains the last
    /// changes, installs guard triggers on the old tables, and records the
    /// switch in both stores. If anything fails, or the pause would exceed
    /// `maxPauseMillis`, everything is rolled back and the source stays
    /// authoritative; running it again is safe.
    ///
    /// Crash safety: the target is journaled "prepared" (in the same
    /// transaction as the drained changes) before the source commits its
    /// switch record and guards; the source commit is the commit point, and
    /// ``resolveInterruptedCutover()`` settles a crash on either side of it.
    /// When source and target are one file, all of it is one transaction.
    public func cutover(_ o: CutoverOptions, progress: (MigrationProgress) -> Void = { _ in }) throws -> CutoverReport {
        if let pgs = store as? PostgresStore { return try cutoverPostgres(o, pgs, progress: progress) }
        try resolveInterruptedCutover()
        if case .done(let lsn, let at, let pause)? = try StateTables.load(target)?.cutover {
            return .alreadyDone(lsn: lsn, atMicros: at, pauseMicros: pause, dryRun: o.dryRun)
        }
        try requireProvenForCutover(skipVerify: o.skipVerify, dryRun: o.dryRun)  // lifecycle: no unproven cutover (Lifecycle.swift)
        // Triggers and views the target cannot carry: refused unless accepted.
        let dropped = try CutoverSchema.blockingOmissions(target, accept: o.dropTriggers).map(CutoverSchema.describe)
        // 1. Catch up until the lag is small (nothing is changed if we give up).
        let waited = try catchUpForCutover(o, buildingIndexes: false, progress: progress)
        // Every secondary index built (the catch-up above may have built the
        // last ones): a target without them is no home for the application.
        try CutoverSchema.requireIndexesBuilt(target, plan: plan)
        if o.dryRun {
            let p = snapshot(caughtUp: true)
            return CutoverReport(lsn: p.appliedLSN, atMicros: Clock.wallMicros(), pauseMillis: 0, drained: 0,
                                 waitedSeconds: waited, dryRun: true, alreadyDone: false, droppedObjects: dropped)
        }
        // Reverse capture on the target tables, so a rollback after cutover can
        // carry the target's writes back. Installed before the pause (DDL in
        // its own transaction); `reverseFromSeq`, read after the drain, marks
        // where the application's writes begin.
        //
        // One timeline (the log outlives the migration): reverse capture
        // ships into this migration's log, under the log's source id, with
        // `seq`s continuing past the switch LSN (set in the prepared
        // transaction, once that LSN is known), and it is bound to that log
        // so that no shipper takes it anywhere else.
        // (A swapped table gets its capture in the swap itself, under its
        // real name: see TableSwap.)
        let reverseTables = mappings.filter { $0.shape == .copy && !TableSwap.isSwap($0, plan: plan) }.map(\.targetTable)
        if !reverseTables.isEmpty {
            // Its own connection: the migrator's has the source ATTACHed, and
            // trigger names are resolved across attached schemas.
            let conn = try Connection(path: plan.target, mode: .readWrite)
            let captured: Int64 = try Capture.lastCapturedSeq(source)
            let after: LSN = max(state.appliedLSN, LSN(UInt64(max(Int64(0), captured))))
            try Capture.install(connection: conn, tables: reverseTables, sourceID: SourceID(state.sourceID), continuingAfter: after)
            try conn.close()
            CrashHook.reached(.reverseCapture)
        }
        var report = plan.isSameFile ? try cutoverOneFile(o, waited: waited) : try cutoverTwoFiles(o, waited: waited)
        report.droppedObjects = dropped
        return report
    }

    /// Copies and replays until the lag is within `o`'s limits, or throws
    /// (having switched nothing) when `o.timeoutSeconds` pass first; returns
    /// the seconds waited. `buildingIndexes`: pending index builds are steps
    /// of the catch-up too (PostgreSQL targets; SQLite cutover refuses
    /// unbuilt indexes after it instead).
    func catchUpForCutover(_ o: CutoverOptions, buildingIndexes: Bool, progress: (MigrationProgress) -> Void) throws -> Double {
        let waitStart = Clock.monotonicNanos()
        let deadline = waitStart + UInt64(o.timeoutSeconds * 1e9)
        while true {
            try Interruption.check("waiting for the lag before cutover; nothing was switched, the source stays authoritative")  // an interrupt point (Interruption)
            if buildingIndexes, let index = nextIndexToBuild() {
                try buildIndexStep(index)
            } else if let i = state.tables.firstIndex(where: { $0.phase != .following }) {
                try copyStep(i)
            } else {
                _ = try followStep()
                let p = snapshot(caughtUp: false)
                progress(p)
                if p.lagMillis <= o.maxLagMillis && p.lagChanges <= 10_000 { break }
            }
            if Clock.monotonicNanos() > deadline {
                let p = snapshot(caughtUp: false)
                throw MigrationError(.cutoverTimeout, "the lag is still \(p.lagMillis) ms (\(p.lagChanges) changes) after \(Int(o.timeoutSeconds)) s, above --max-lag-ms \(o.maxLagMillis); nothing was changed — let `tidemark migrate --follow` catch up, or raise the limits")
            }
        }
        return Double(Clock.monotonicNanos() - waitStart) / 1e9
    }

    func checkPause(_ start: UInt64, _ o: CutoverOptions, _ step: String) throws {
        let ms = Double(Clock.monotonicNanos() - start) / 1e6
        if ms > Double(o.maxPauseMillis) {
            throw MigrationError(.pauseExceeded, "cutover would pause writers for more than \(o.maxPauseMillis) ms (\(Int(ms)) ms at \(step)); rolled back, the source stays authoritative — retry when the write load is lower or raise --max-pause-ms")
        }
    }

    func drain(through highWater: LSN) throws -> Int {
        var n = 0
        while let r = try nextChange(through: highWater) {
            try replay(r)
            n += 1
        }
        if state.appliedLSN < highWater { state.appliedLSN = highWater }
        return n
    }

    private func cutoverTwoFiles(_ o: CutoverOptions, waited: Double) throws -> CutoverReport {
        let lock = try Connection(path: plan.source, mode: .readWrite, busyTimeoutMillis: Int32(max(1000, o.maxPauseMillis * 2)))
        // 2. Take the source write lock: writers now wait on their busy timeout.
        try lock.execute("BEGIN IMMEDIATE")
        let pauseStart = Clock.monotonicNanos()
        var prepared = false
        do {
            CrashHook.reached(.locked)
            try Interruption.check("cutover: before the commit point; rolled back, the source stays authoritative")  // an interrupt point (Interruption)
            // 3. Everything committed before the lock is below this mark.
            let highWater = LSN(UInt64(max(0, try Capture.lastCapturedSeq(lock))))
            try waitForLogDuringCutover(highWater)
            var drained = 0
            let at = Clock.wallMicros()
            try target.transaction(.immediate) {
                try syncWithStoredState()
                drained = try drain(through: highWater)
                try checkPause(pauseStart, o, "draining")
                state.reverseFromSeq = try ReverseCapture.startAfterSwitch(target, at: highWater, logPath: plan.log)
                // Sequences, triggers and views in the transaction that
                // journals "prepared": in place before the commit point (so
                // before anyone writes the target), and undone with the
                // journal if the source never commits (CutoverJournal.settle).
                // The source is read on the lock's connection: under its
                // write lock the values are final.
                try CutoverSchema.moveSequencesForward(target, source: lock)
                try CutoverSchema.createObjects(target)
                state.cutover = .prepared(lsn: highWater, atMicros: at)
                try StateTables.save(state, table: nil, in: target)
                try StateTables.saveCutover(state, in: target)
            }
            prepared = true
            CrashHook.reached(.prepared)
            // 4 + 5. Guards and the switch record: the commit point.
            for m in mappings { for sql in Guards.createSQL(m, plan: plan, lsn: highWater) { try lock.execute(sql) } }
            try lock.execute(SwitchRecord.createSQL)
            try lock.prepare("INSERT OR REPLACE INTO \(SwitchRecord.table)(id, lsn, at, target, tables) VALUES (1, ?, ?, ?, ?)")
                .execute([.integer(Int64(highWater.rawValue)), .integer(at), .text(plan.target),
                          .text(mappings.map { "\($0.source.name)=\($0.targetTable)" }.joined(separator: ","))])
            CrashHook.reached(.guarded)
            try checkPause(pauseStart, o, "switching")
            try Interruption.check("cutover: before the commit point; rolled back, the source stays authoritative")  // an interrupt point (Interruption); after COMMIT none: it finishes
            try lock.execute("COMMIT")
            CrashHook.reached(.switched)
            LogOrigins.recordSwitch(plan: plan, from: highWater.next, toTarget: true)
            let pause = Double(Clock.monotonicNanos() - pauseStart) / 1e6
            state.cutover = .done(lsn: highWater, atMicros: at, pauseMicros: Int64(pause * 1000))
            try target.transaction(.immediate) { try StateTables.saveCutover(state, in: target) }
            return CutoverReport(lsn: highWater, atMicros: at, pauseMillis: pause, drained: drained, waitedSeconds: waited,
                                 dryRun: false, alreadyDone: false)
        } catch {
            if lock.isInTransaction { try? lock.execute("ROLLBACK") }
            if prepared { try? resolveInterruptedCutover() }
            throw error
        }
    }

    private func cutoverOneFile(_ o: CutoverOptions, waited: Double) throws -> CutoverReport {
        var report: CutoverReport?
        let swaps = mappings.filter { TableSwap.isSwap($0, plan: plan) }
        if !swaps.isEmpty {
            // Before BEGIN (foreign_keys is a no-op inside a transaction):
            // with foreign keys off and legacy_alter_table on, the renames
            // rewrite no REFERENCES clause, view or trigger body, so whatever
            // names the table names the new one after the swap.
            try TableSwap.prepareConnection(target)
        }
        defer { if !swaps.isEmpty { try? TableSwap.restoreConnection(target) } }
        let pauseStart = Clock.monotonicNanos()
        // One transaction on the one file: lock, drain, guard, record, commit.
        try target.transaction(.immediate) {
            let start = Clock.monotonicNanos()
            CrashHook.reached(.locked)
            try syncWithStoredState()
            let highWater = try store.captureHighWater()
            try waitForLogDuringCutover(highWater)
            let drained = try drain(through: highWater)
            try checkPause(start, o, "draining")
            state.reverseFromSeq = try Capture.lastCapturedSeq(target)
            // Sequences, triggers and views (a replaced view gets its new
            // definition) in the one cutover transaction.
            try CutoverSchema.moveSequencesForward(target, source: target)
            // The swap: old tables aside, shadows to the real names, capture
            // moved (before the triggers and views, which name the real table).
            let accepted = swaps.isEmpty ? [] : try CutoverSchema.blockingOmissions(target, accept: true)
            for m in swaps { try TableSwap.swap(m, in: target, sourceID: SourceID(state.sourceID), accepted: accepted) }
            if !swaps.isEmpty { CrashHook.reached(.swapped) }
            try CutoverSchema.createObjects(target)
            // The file's one outbox already continues the log; bind it to it.
            if try Capture.isInstalled(target) { try Capture.bindLog(target, logPath: plan.log) }
            let at = Clock.wallMicros()
            for m in mappings { for sql in Guards.createSQL(m, plan: plan, lsn: highWater) { try target.execute(sql) } }
            try target.execute(SwitchRecord.createSQL)
            try target.prepare("INSERT OR REPLACE INTO \(SwitchRecord.table)(id, lsn, at, target, tables) VALUES (1, ?, ?, ?, ?)")
                .execute([.integer(Int64(highWater.rawValue)), .integer(at), .text(plan.target),
                          .text(mappings.map { "\($0.source.name)=\(TableSwap.isSwap($0, plan: plan) ? $0.source.name : $0.targetTable)" }.joined(separator: ","))])
            state.cutover = .done(lsn: highWater, atMicros: at, pauseMicros: Int64(Double(Clock.monotonicNanos() - start) / 1e3))
            try StateTables.save(state, table: nil, in: target)
            try StateTables.saveCutover(state, in: target)
            CrashHook.reached(.guarded)
            try checkPause(start, o, "switching")
            try Interruption.check("cutover: before the commit point; rolled back, the source stays authoritative")  // an interrupt point (Interruption)
            report = CutoverReport(lsn: highWater, atMicros: at, pauseMillis: 0, drained: drained, waitedSeconds: waited,
                                   dryRun: false, alreadyDone: false)
        }
        report!.pauseMillis = Double(Clock.monotonicNanos() - pauseStart) / 1e6
        LogOrigins.recordSwitch(plan: plan, from: report!.lsn.next, toTarget: true)
        return report!
    }
}
