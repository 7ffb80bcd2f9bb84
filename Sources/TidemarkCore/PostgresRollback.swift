import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// `tidemark rollback` for a PostgreSQL target.
///
/// Before cutover: the abandon (capture off the source, the tables this
/// migration created and its state dropped from PostgreSQL).
///
/// After cutover, journaled like a rollback between two SQLite files:
/// 1. fence PostgreSQL (guard triggers refuse every write, naming the SQLite
///    file) and journal "prepared" in `tidemark.rollback`;
/// 2. ship PostgreSQL's captured writes into the migration's log (one
///    timeline), waiting for transactions still open to end;
/// 3. one source transaction: drop the source's guards, carry every
///    reverse change back through each table's inverse, move the source's
///    AUTOINCREMENT counters past PostgreSQL's sequences, drop the switch
///    record, COMMIT: the commit point;
/// 4. journal "committed", the migration "rolled-back"; reverse capture off
///    (the fence stays: PostgreSQL no longer holds the live data).
/// A crash anywhere: the next `rollback` goes on from the journal; after the
/// commit point it only writes the journal.
enum PostgresRollback {
    /// How long to wait for PostgreSQL transactions that were open when the
    /// fence went up to end (their rows cannot be shipped before).
    static let shipWaitMillis = 60_000

    static func run(plan: Plan, dryRun: Bool) throws -> RollbackReport {
        guard FileSystemCheck.exists(plan.source) else { throw MigrationError(.missingTable, "source database \(plan.source) does not exist") }
        let source = try Connection(path: plan.source, mode: dryRun ? .readOnly : .readWrite)
        let pgs = try PostgresStore(plan: plan, source: source)
        let pg = pgs.pg
        if !dryRun { try settleCutover(plan: plan, pg: pg) }
        let state = try pgs.mapped { try PostgresState.load(pg) }
        let switched = try SwitchRecord.read(source)
        let journal = try pgs.mapped { try Journal.read(pg) }
        let cutOver = switched != nil || state?.cutover?.kind == .done
        if journal == .prepared || (journal != .committed && cutOver) {
            guard let state else {
                throw MigrationError(.foreignState, "\(plan.source) records a cutover to \(plan.displayTarget), but that database has no migration state (schema tidemark); restore it before rolling back")
            }
            if dryRun { return RollbackReport(kind: .reversed, droppedTables: [], changesReplayedBack: 0, removed: [], dryRun: true) }
            return try reverse(plan: plan, source: source, pgs: pgs, state: state, switched: switched != nil)
        }
        return try abandon(plan: plan, source: source, pgs: pgs, state: state, dryRun: dryRun)
    }

    /// Settles a cutover a crash interrupted ("prepared" in PostgreSQL): by
    /// the source's switch record (the commit point), under the source's
    /// write lock. A busy lock means a cutover is running: nothing changes.
    /// Returns the settled state, or nil when there was nothing to settle.
    @discardableResult
    static func settleCutover(plan: Plan, pg: PGConnection) throws -> MigrationState? {
        guard var s = try PostgresState.load(pg), case .prepared? = s.cutover else { return nil }
        let lock = try Connection(path: plan.source, mode: .readWrite)
        defer { try? lock.close() }
        do {
            try lock.execute("BEGIN IMMEDIATE")
        } catch {
            if error.primaryCode == .busy { return nil }
            throw error
        }
        defer { if lock.isInTransaction { try? lock.execute("ROLLBACK") } }
        if let record = try SwitchRecord.read(lock) {
            // The pause was never measured: the run that made it died.
            s.cutover = .done(lsn: record.lsn, atMicros: record.atMicros, pauseMicros: nil)
        } else {
            s.cutover = nil
        }
        try pg.transaction { try PostgresState.saveCutover(s, in: pg) }
        return s
    }

    /// The rollback journal in PostgreSQL: one row, `prepared` or `committed`.
    enum Journal {
        /// The journaled phase (nil: no rollback has begun). Stored as the
        /// phase's raw value, as SQLite targets store theirs.
        static func read(_ pg: PGConnection) throws -> RollbackJournal.Phase? {
            let r = try pg.query("SELECT to_regclass('tidemark.rollback') IS NOT NULL")
            guard case .integer(1)? = r.rows.first?.first else { return nil }
            let p = try pg.query("SELECT phase FROM tidemark.rollback WHERE id = 1")
            guard case .text(let s)? = p.rows.first?.first else { return nil }
            guard let phase = RollbackJournal.Phase(rawValue: s) else {
                throw MigrationError(.foreignState, "tidemark.rollback holds an unknown phase '\(s)' (written by a newer Tidemark?); use that version")
            }
            return phase
        }

        static func write(_ pg: PGConnection, _ phase: RollbackJournal.Phase) throws {
            try pg.execute("CREATE TABLE IF NOT EXISTS tidemark.rollback(id integer PRIMARY KEY CHECK (id = 1), phase text NOT NULL, at bigint NOT NULL)")
            _ = try pg.query("INSERT INTO tidemark.rollback(id, phase, at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET phase = EXCLUDED.phase, at = EXCLUDED.at",
                             [.value(.text(phase.rawValue)), .value(.integer(Clock.wallMicros()))])
        }
    }

    static func mappings(_ plan: Plan, source: Connection) throws -> [TableMapping] {
        try PlanResolver.resolve(plan, source: source, target: source)
    }

    static func reverse(plan: Plan, source: Connection, pgs: PostgresStore, state: MigrationState, switched: Bool) throws -> RollbackReport {
        let pg = pgs.pg
        let schema = plan.pgSchema
        let mappings = try mappings(plan, source: source)
        var inverses: [Rollback.Inverse] = []
        for m in mappings {
            guard let columns = try PostgresCatalog.columns(pg, schema: schema, table: m.targetTable) else {
                throw MigrationError(.missingTable, "target table \(schema).\(m.targetTable) is missing from \(plan.displayTarget)")
            }
            let tablePlan = plan.tables.first { $0.source.lowercased() == m.source.name.lowercased() }!
            inverses.append(try Rollback.Inverse(m, plan: tablePlan, source: source, targetColumns: columns.map(\.name)))
        }
        let byTarget = Dictionary(inverses.map { ($0.mapping.targetTable, $0) }, uniquingKeysWith: { a, _ in a })
        let from = state.cutover?.lsn ?? LSN(UInt64(max(0, state.reverseFromSeq ?? 0)))

        // 1. Fence and journal (one PostgreSQL transaction each; the fence
        //    first: once it stands, no new write reaches PostgreSQL).
        if try Journal.read(pg) != .prepared {
            try pgs.mapped {
                try PGGuard.install(pg, schema: schema, tables: mappings.map(\.targetTable),
                                    message: "tidemark: this table was rolled back to SQLite file \(plan.source); write there")
                try pg.transaction { try Journal.write(pg, .prepared) }
            }
        }
        CrashHook.reached(.rollbackFenced)

        // 2. Ship what PostgreSQL captured into the log.
        if switched {
            try ship(plan: plan, pgs: pgs, floor: from)
            if try Capture.isInstalled(source) { try Capture.uninstall(connection: source, force: true) }
            CrashHook.reached(.rollbackShipped)
        }

        // 3. The source side, one transaction: the commit point.
        var replayed = 0
        try source.execute("PRAGMA foreign_keys = OFF")
        try source.execute("BEGIN IMMEDIATE")
        do {
            if switched {
                var changes: [ChangeRecord] = []
                if LogDirectory(plan.log).exists {
                    let reader = try LogReader(directory: plan.log)
                    let cursor = try reader.cursor(from: from.next, tables: Set(byTarget.keys))
                    while let r = try cursor.next() { changes.append(r) }
                }
                for m in mappings { for sql in Guards.dropSQL(m) { try source.execute(sql) } }
                let suspended = try Rollback.suspendApplicationTriggers(source, tables: mappings.map(\.source.name))
                for r in changes {
                    guard let inv = byTarget[r.table] else { continue }
                    do {
                        try inv.apply(r)
                    } catch let e as SQLiteError {
                        let key = r.key.map { "\($0.name)=\($0.value)" }.joined(separator: ", ")
                        throw MigrationError(.constraint, "rollback: \(inv.mapping.source.name) refused PostgreSQL's change of \(r.table) (\(key)) at LSN \(r.lsn): \(e.message); nothing was carried back and \(plan.displayTarget) is fenced; loosen that constraint in the source, then run `tidemark rollback` again")
                    }
                    replayed += 1
                }
                for sql in suspended { try source.execute(sql) }
                // The source never hands out an id PostgreSQL used.
                for (table, _) in try PostgresState.sequences(pg) {
                    guard let m = mappings.first(where: { $0.source.name == table }), let key = m.targetKey.first else { continue }
                    let seq = try pg.query("SELECT pg_get_serial_sequence($1, $2)", [.value(.text("\(PGSQL.ident(schema)).\(PGSQL.ident(m.targetTable))")), .value(.text(key))])
                    guard case .text(let seqName)? = seq.rows.first?.first else { continue }
                    let last = try pg.query("SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM \(seqName)")
                    guard case .integer(let value)? = last.rows.first?.first else { continue }
                    let hasSequence = try source.prepare("SELECT count(*) FROM main.sqlite_schema WHERE name = 'sqlite_sequence'")
                    _ = try hasSequence.step()
                    if hasSequence.columnInt64(0) == 1 {
                        try source.prepare("UPDATE main.sqlite_sequence SET seq = max(seq, ?1) WHERE name = ?2").execute([.integer(value), .text(table)])
                    }
                }
                try source.execute("DROP TABLE IF EXISTS \(SwitchRecord.table)")
            }
            CrashHook.reached(.rollbackApplied)
            try source.execute("COMMIT")  // the commit point
            CrashHook.reached(.rollbackSwitched)
            if switched { LogOrigins.recordSwitch(plan: plan, from: nil, toTarget: false) }
        } catch {
            if source.isInTransaction { try? source.execute("ROLLBACK") }
            throw error
        }
        // 4. PostgreSQL's side.
        var st = state
        st.cutover = st.cutover?.rolledBack ?? .rolledBack(lsn: nil, atMicros: nil, pauseMicros: nil)
        try pgs.mapped {
            try pg.transaction {
                try PostgresState.saveCutover(st, in: pg)
                try Journal.write(pg, .committed)
            }
            let captured = try mappings.map { try PostgresReverse.capturedTable($0, pgs: pgs) }
            try PGCapture.uninstall(pg, tables: captured, dropOutbox: true)
        }
        if try Capture.isInstalled(source) { try Capture.uninstall(connection: source, force: true) }
        return RollbackReport(kind: .reversed, droppedTables: [], changesReplayedBack: replayed, removed: [])
    }

    /// Ships PostgreSQL's captured changes into the log until none is left,
    /// waiting (bounded) for transactions still open to end.
    static func ship(plan: Plan, pgs: PostgresStore, floor: LSN) throws {
        guard try pgs.mapped({ try PGCapture.isInstalled(pgs.pg) }) else { return }
        guard let appender = try Rollback.ownAppender(plan.log) else {
            throw MigrationError(.shippingStalled, "the log \(plan.log) is held by another process; stop it (`tidemark migrate --follow` or `tidemark capture run`), then run `tidemark rollback` again")
        }
        defer { try? appender.close() }
        let shipper = try PGShipper(connection: pgs.pg)
        defer { shipper.close() }
        let deadline = Clock.monotonicNanos() + UInt64(shipWaitMillis) * 1_000_000
        while true {
            _ = try pgs.mapped { try shipper.ship(into: appender, after: floor) }
            if try shipper.pending() == 0 { return }
            if Clock.monotonicNanos() > deadline {
                throw MigrationError(.shippingStalled, "PostgreSQL transactions that wrote before the fence are still open after \(shipWaitMillis / 1000) s, so their changes cannot be carried back yet; end them (pg_stat_activity), then run `tidemark rollback` again — \(plan.displayTarget) stays fenced")
            }
            Clock.sleep(milliseconds: 20)
        }
    }

    /// Before a new migration into a PostgreSQL target a rollback left
    /// behind: the old migration's tables (guarded, holding its rows), its
    /// reverse capture and its state go, so the new one copies afresh. Only
    /// after a completed rollback (the source is authoritative again).
    static func clearForNewMigration(plan: Plan, pgs: PostgresStore) throws {
        let pg = pgs.pg
        guard try pgs.mapped({ try PostgresState.exists(pg) }), let state = try PostgresState.load(pg),
              state.cutover?.kind == .rolledBack, try Journal.read(pg) == .committed else { return }
        let schema = plan.pgSchema
        let r = try pg.query("SELECT target_table FROM tidemark.migration_tables WHERE created ORDER BY position")
        let created = r.rows.compactMap { row -> String? in if case .text(let s)? = row.first { return s }; return nil }
        try pgs.mapped {
            try PGGuard.remove(pg, schema: schema, tables: state.tables.map(\.targetTable))
            try pg.transaction {
                for t in created { try pg.execute("DROP TABLE IF EXISTS \(PGSQL.ident(schema)).\(PGSQL.ident(t)) CASCADE") }
                try pg.execute("DROP TABLE IF EXISTS tidemark.migration, tidemark.migration_tables, tidemark.schema_objects, tidemark.rollback, tidemark.outbox CASCADE")
            }
        }
    }

    /// Rollback before cutover: nothing was switched. Capture off the
    /// source, and from PostgreSQL the tables this migration created (only
    /// those) and its state. Idempotent.
    static func abandon(plan: Plan, source: Connection, pgs: PostgresStore, state: MigrationState?, dryRun: Bool) throws -> RollbackReport {
        let pg = pgs.pg
        let schema = plan.pgSchema
        var created: [String] = []
        if try pgs.mapped({ try PostgresState.exists(pg) }) {
            let r = try pg.query("SELECT target_table FROM tidemark.migration_tables WHERE created ORDER BY position")
            created = r.rows.compactMap { if case .text(let s)? = $0.first { return s }; return nil }
        }
        var removed: [String] = []
        if try Capture.isInstalled(source) { removed.append("capture triggers and outbox in \(plan.source)") }
        removed += created.map { "table \(schema).\($0) in \(plan.displayTarget)" }
        if state != nil { removed.append("migration state (schema tidemark) in \(plan.displayTarget)") }
        if dryRun { return RollbackReport(kind: .abandoned, droppedTables: created, changesReplayedBack: 0, removed: removed, dryRun: true) }
        if try Capture.isInstalled(source) { try Capture.uninstall(connection: source, force: true) }
        try pgs.mapped {
            try pg.transaction {
                for t in created { try pg.execute("DROP TABLE IF EXISTS \(PGSQL.ident(schema)).\(PGSQL.ident(t)) CASCADE") }
                try pg.execute("DROP TABLE IF EXISTS tidemark.migration, tidemark.migration_tables, tidemark.schema_objects, tidemark.rollback, tidemark.outbox CASCADE")
            }
        }
        let consumer = "migration-" + Migrator.consumerSuffix(plan.displayTarget)
        if try Rollback.hasConsumer(plan: plan, consumer) { try Consumers(LogDirectory(plan.log)).unregister(consumer) }
        return RollbackReport(kind: .abandoned, droppedTables: created, changesReplayedBack: 0, removed: removed)
    }
}
