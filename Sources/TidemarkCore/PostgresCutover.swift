import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// Cutover into a PostgreSQL target: the same fenced switch as between two
/// SQLite files (see ``Migrator/cutover(_:progress:)``), journaled in both
/// stores.
///
/// Steps and the commit point:
/// 1. reverse capture on the target tables (triggers into `tidemark.outbox`,
///    own transaction, before the pause);
/// 2. the source's write lock (writers wait on their busy timeout);
/// 3. one PostgreSQL transaction: drain the last changes, drop the outbox
///    rows the drain itself produced (echoes of source changes), move the
///    identity sequences past the highest keys, journal "prepared";
/// 4. guards and the switch record on the source, COMMIT: the commit point;
/// 5. journal "done" in PostgreSQL.
/// A crash between 3 and 4 leaves "prepared" with no switch record: the next
/// command undoes it (``resolveInterruptedPostgresCutover(_:)``); after 4 it
/// finishes it.
extension Migrator {
    func cutoverPostgres(_ o: CutoverOptions, _ pgs: PostgresStore, progress: (MigrationProgress) -> Void) throws -> CutoverReport {
        try resolveInterruptedPostgresCutover(pgs)
        if case .done(let lsn, let at, let pause)? = try store.loadState()?.cutover {
            return .alreadyDone(lsn: lsn, atMicros: at, pauseMicros: pause, dryRun: o.dryRun)
        }
        let stored = try store.loadState()
        try Lifecycle.requireProven(stored, skipVerify: o.skipVerify)
        if o.skipVerify && !o.dryRun {
            try pgs.mapped { try pgs.pg.transaction { _ = try pgs.pg.query("UPDATE tidemark.migration SET skip_verify_at = $1 WHERE id = 1", [.value(.integer(Clock.wallMicros()))]) } }
        }
        // Triggers and views PostgreSQL does not get: refused unless accepted.
        let blocking = notCarried.filter(\.blocksCutover)
        if !blocking.isEmpty && !o.dropTriggers {
            let list = blocking.map { "\($0.kind) \($0.name) on \($0.table) (\($0.reason))" }.joined(separator: "; ")
            throw MigrationError(.schemaIncomplete, "the PostgreSQL target does not get \(list); recreate them there after cutover and run `tidemark cutover --drop-triggers`, or keep the source")
        }
        let dropped = o.dropTriggers ? blocking.map { "\($0.kind) \($0.name) on \($0.table) (\($0.reason))" } : []
        // 1. Catch up until the lag is small, building what indexes remain.
        let waited = try catchUpForCutover(o, buildingIndexes: true, progress: progress)
        if let index = pendingIndexes.first {
            throw MigrationError(.schemaIncomplete, "\(pendingIndexes.count) index\(pendingIndexes.count == 1 ? "" : "es") or foreign key\(pendingIndexes.count == 1 ? "" : "s") of the PostgreSQL target are not built yet (next: \(index.name)); run `tidemark migrate` until it has caught up, then cut over")
        }
        if o.dryRun {
            let p = snapshot(caughtUp: true)
            return CutoverReport(lsn: p.appliedLSN, atMicros: Clock.wallMicros(), pauseMillis: 0, drained: 0,
                                 waitedSeconds: waited, dryRun: true, alreadyDone: false, droppedObjects: dropped)
        }
        // 1. Reverse capture, so a rollback can carry PostgreSQL's writes back.
        let captured = try mappings.map { m in try PostgresReverse.capturedTable(m, pgs: pgs) }
        try pgs.mapped { try PGCapture.install(pgs.pg, tables: captured) }
        CrashHook.reached(.reverseCapture)

        let lock = try Connection(path: plan.source, mode: .readWrite, busyTimeoutMillis: Int32(max(1000, o.maxPauseMillis * 2)))
        defer { try? lock.close() }
        // 2. The source write lock: writers now wait on their busy timeout.
        try lock.execute("BEGIN IMMEDIATE")
        let pauseStart = Clock.monotonicNanos()
        var prepared = false
        do {
            CrashHook.reached(.locked)
            try Interruption.check("cutover: before the commit point; rolled back, the source stays authoritative")
            let highWater = LSN(UInt64(max(0, try Capture.lastCapturedSeq(lock))))
            try waitForLogDuringCutover(highWater)
            let at = Clock.wallMicros()
            var drained = 0
            let sequences = try pgs.mapped { try PostgresState.sequences(pgs.pg) }
            try store.transaction {
                try syncWithStoredState()
                drained = try drain(through: highWater)
                try checkPause(pauseStart, o, "draining")
                try pgs.flush()
                // Echoes: the drain's own writes, captured by the triggers
                // installed above. They are source changes already in the log.
                try pgs.pg.execute("DELETE FROM tidemark.outbox")
                for (table, sql) in sequences {
                    // The source's AUTOINCREMENT counter, read under its write lock (final).
                    let counter = try lock.prepare("SELECT coalesce((SELECT seq FROM main.sqlite_sequence WHERE name = ?1), 0) WHERE EXISTS (SELECT 1 FROM main.sqlite_schema WHERE name = 'sqlite_sequence')")
                    try counter.bind([.text(table)])
                    let floor: Int64 = try counter.step() ? counter.columnInt64(0) : 0
                    _ = try pgs.pg.query(sql, [.value(.integer(floor))])
                }
                state.cutover = .prepared(lsn: highWater, atMicros: at)
                state.reverseFromSeq = Int64(highWater.rawValue)
                try store.save(state, table: nil)
                try PostgresState.saveCutover(state, in: pgs.pg)
            }
            prepared = true
            CrashHook.reached(.prepared)
            // 4. Guards and the switch record: the commit point.
            for m in mappings { for sql in Guards.createSQL(m, plan: plan, lsn: highWater) { try lock.execute(sql) } }
            try lock.execute(SwitchRecord.createSQL)
            try lock.prepare("INSERT OR REPLACE INTO \(SwitchRecord.table)(id, lsn, at, target, tables) VALUES (1, ?, ?, ?, ?)")
                .execute([.integer(Int64(highWater.rawValue)), .integer(at), .text(plan.displayTarget),
                          .text(mappings.map { "\($0.source.name)=\($0.targetTable)" }.joined(separator: ","))])
            CrashHook.reached(.guarded)
            try checkPause(pauseStart, o, "switching")
            try Interruption.check("cutover: before the commit point; rolled back, the source stays authoritative")
            try lock.execute("COMMIT")
            CrashHook.reached(.switched)
            LogOrigins.recordSwitch(plan: plan, from: highWater.next, toTarget: true)
            let pause = Double(Clock.monotonicNanos() - pauseStart) / 1e6
            state.cutover = .done(lsn: highWater, atMicros: at, pauseMicros: Int64(pause * 1000))
            try pgs.mapped { try pgs.pg.transaction { try PostgresState.saveCutover(state, in: pgs.pg) } }
            return CutoverReport(lsn: highWater, atMicros: at, pauseMillis: pause, drained: drained, waitedSeconds: waited,
                                 dryRun: false, alreadyDone: false, droppedObjects: dropped)
        } catch {
            if lock.isInTransaction { try? lock.execute("ROLLBACK") }
            if prepared { try? resolveInterruptedPostgresCutover(pgs) }
            throw error
        }
    }

    /// Finishes or undoes a PostgreSQL cutover a crash interrupted: decided
    /// under the source's write lock by the switch record (the commit
    /// point). Busy lock: a cutover is running; nothing is changed.
    func resolveInterruptedPostgresCutover(_ pgs: PostgresStore) throws {
        guard let s = try pgs.mapped({ try PostgresRollback.settleCutover(plan: plan, pg: pgs.pg) }) else { return }
        state.cutover = s.cutover
    }
}

extension PostgresState {
    static func saveCutover(_ state: MigrationState, in pg: PGConnection) throws {
        let c = state.cutover?.stored
        _ = try pg.query("UPDATE tidemark.migration SET cutover_state = $1, cutover_lsn = $2, cutover_at = $3, cutover_pause_us = $4, reverse_from = $5 WHERE id = 1",
                         [.value(c.map { .text($0.state) } ?? .null), .value(c?.lsn.map { .integer(Int64($0.rawValue)) } ?? .null),
                          .value(c?.atMicros.map { .integer($0) } ?? .null), .value(c?.pauseMicros.map { .integer($0) } ?? .null),
                          .value(state.reverseFromSeq.map { .integer($0) } ?? .null)])
    }
}

/// Reverse capture of a PostgreSQL target's tables.
enum PostgresReverse {
    /// What PGCapture records for one mapped table: its PostgreSQL table,
    /// key and column types, logged under the target table's name (as
    /// SQLite reverse capture logs target names; rollback maps them back).
    static func capturedTable(_ m: TableMapping, pgs: PostgresStore) throws -> PGCapturedTable {
        let schema = pgs.plan.pgSchema
        guard let columns = try PostgresCatalog.columns(pgs.pg, schema: schema, table: m.targetTable) else {
            throw MigrationError(.missingTable, "target table \(schema).\(m.targetTable) is missing from \(pgs.displayName)")
        }
        return PGCapturedTable(schema: schema, name: m.targetTable, logTable: m.targetTable, keyColumns: m.targetKey,
                               columns: columns.map { PGCapturedColumn($0.name, $0.type) })
    }
}
