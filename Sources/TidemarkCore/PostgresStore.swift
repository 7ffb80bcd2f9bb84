import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// The PostgreSQL target store.
///
/// The migration state lives in the target database, schema `tidemark`
/// (``PostgresState``), and is written in the same PostgreSQL transaction
/// as the rows it describes. The source is read through the migrator's own
/// SQLite connection: ``transaction(_:)`` opens a read transaction on it
/// around the PostgreSQL one, so the capture high-water mark, the chunk and
/// its bounds come from one source snapshot (it begins at the first read).
///
/// Replayed changes are folded per key and sent as batch statements per
/// table (plan-typed tables: queued and sent pipelined), see
/// ``PostgresTableWriter``; every read of the target, every COPY and the
/// commit flush them first.
///
/// A table's folded changes are sent every ``foldedSendKeys`` keys without
/// waiting for the server (``PGConnection/sendPipelined(_:_:)``): the
/// server applies one part of a batch while this process decodes and folds
/// the next (two cores at work). Invariant: every part is sent inside the
/// step's one PostgreSQL transaction, in the order it was folded, and its
/// result is read — its error thrown — at the next ``flush()``, which runs
/// before any read of the target and before the position is saved and
/// committed; a part the server refuses aborts that transaction, so
/// nothing of the step commits (the same as one statement per batch).
final class PostgresStore: TargetStore {
    let pg: PGConnection
    let source: Connection
    let plan: Plan
    /// The target schema's tables in PostgreSQL terms, from the preflight
    /// (set before ``start(plan:mappings:schema:sourceID:record:indexesDuringCopy:)``
    /// on a first run).
    var schemaPlan: PostgresSchemaPlan?
    private var writers: [String: PostgresTableWriter] = [:]
    /// Changes of tables that cannot be folded (plan-typed columns), queued
    /// for the next pipeline flush, in apply order.
    var queued: [(statement: String, params: [PGParam])] = []
    /// While set, each change is applied at once inside a savepoint, so a
    /// refusal is reported on the change itself and leaves the transaction
    /// usable (see ``transaction(_:)``).
    private(set) var careful = false
    private var statementCounter = 0

    var displayName: String { PGConnection.redacted(plan.target) }

    /// The advisory lock every migration step of a database holds.
    static let stepLockKey: Int64 = 0x7469_6465_6d61_726b  // "tidemark"

    /// Most changes queued before a flush (bounds memory and the pipeline).
    static let pipelineDepth = 2_000

    /// Keys a table's folded changes reach before they are sent, pipelined
    /// (bounds memory; a part large enough that one round of array
    /// statements costs little beside the rows it carries).
    static let foldedSendKeys = 4_096

    init(plan: Plan, source: Connection) throws {
        self.plan = plan
        self.source = source
        pg = try Self.connect(plan.target)
        // This session replays the source's changes: reverse capture (at
        // cutover) must not record them as the target's own writes.
        try mapped { try pg.execute("SET \(PGCapture.replayingSetting) = 'on'") }
    }

    /// Connects, turning libpq's failure into one line that names the
    /// target (without its password) and what to check.
    static func connect(_ conninfo: String) throws -> PGConnection {
        do {
            return try PGConnection(conninfo)
        } catch let e as PGError {
            throw MigrationError(.targetUnavailable, "cannot connect to the PostgreSQL target \(PGConnection.redacted(conninfo)): \(e.message); check `target:` in the plan (host, port, database, user), the server, and the password (~/.pgpass or PGPASSWORD)")
        }
    }

    func nextStatementName(_ prefix: String) -> String {
        statementCounter += 1
        return "tm_\(prefix)_\(statementCounter)"
    }

    // MARK: Transactions

    /// One PostgreSQL transaction, inside one source read transaction.
    ///
    /// Invariant: everything `body` wrote (queued or not) commits with the
    /// state it saved, or none of it does. A change the target refuses in a
    /// pipelined batch aborts the whole PostgreSQL transaction; the step is
    /// then run again from the stored state in careful mode, where each
    /// change runs in its own savepoint, so the migrator's refusal rules
    /// (a later change of the same row replaces a refused one) apply
    /// exactly as on SQLite.
    func transaction<R>(_ body: () throws -> R) throws -> R {
        do {
            return try attempt(body)
        } catch let e as MigrationError where e.code == .constraint && !careful {
            careful = true
            defer { careful = false }
            return try attempt(body)
        }
    }

    private func attempt<R>(_ body: () throws -> R) throws -> R {
        let ownSourceTransaction = !source.isInTransaction
        if ownSourceTransaction { try source.execute("BEGIN") }
        defer { if ownSourceTransaction && source.isInTransaction { try? source.execute("ROLLBACK") } }
        discardPending()
        do {
            return try mapped {
                try pg.transaction {
                    // Invariant: one migration step at a time writes this
                    // database (what the target's write lock does for
                    // SQLite): a second migrator, or a cutover catching up,
                    // waits here, then reads the state the first committed.
                    _ = try pg.query("SELECT pg_advisory_xact_lock(\(Self.stepLockKey))")
                    let result = try body()
                    try flush()
                    return result
                }
            }
        } catch {
            discardPending()
            throw error
        }
    }

    /// Forgets what a rolled-back transaction had not sent (and the results
    /// of what it sent pipelined).
    private func discardPending() {
        pg.discardPipeline()
        queued.removeAll(keepingCapacity: true)
        for w in dirty { w.discardFolded() }
        dirty.removeAll()
    }

    /// PostgreSQL errors as migration errors: a lost connection names the
    /// target and says a rerun resumes; others pass through.
    func mapped<R>(_ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let e as PGError where e.connectionLost {
            throw MigrationError(.targetUnavailable, "lost the connection to the PostgreSQL target \(displayName): \(e.message); the step in progress was rolled back — run the same command to resume")
        }
    }

    /// Any PostgreSQL error as one line naming the target: a missing
    /// privilege says which grant is needed; the rest say what the server said.
    static func migrationError(_ e: PGError, target: String) -> MigrationError {
        if e.connectionLost {
            return MigrationError(.targetUnavailable, "lost the connection to the PostgreSQL target \(target): \(e.message); nothing half-done is left — run the same command to resume")
        }
        if e.sqlState == "42501" {
            return MigrationError(.targetUnavailable, "the PostgreSQL target \(target) refused: \(e.message); the user needs CONNECT and CREATE on the database and CREATE on the target schema (README, PostgreSQL privileges) — grant them or connect as such a user")
        }
        return MigrationError(.incompatibleTarget, "the PostgreSQL target \(target) refused: \(e.description)")
    }

    /// Writers holding folded changes of the open batch, in the order they got them.
    private var dirty: [PostgresTableWriter] = []

    func markDirty(_ w: PostgresTableWriter) { dirty.append(w) }

    /// Sends every queued and folded change (inside the open transaction)
    /// and reads every result of what was sent pipelined: when it returns,
    /// the server has applied all of it.
    func flush() throws {
        do {
            if !dirty.isEmpty {
                let writers = dirty
                dirty.removeAll()
                for w in writers { try w.flushFolded() }
            }
            // The parts sent while folding, and the last ones just sent:
            // their first error, in the order they were sent.
            try pg.settlePipeline()
        } catch let e as PGError where Self.isRefusal(e) {
            throw MigrationError(.constraint, "the PostgreSQL target refused a change of a replayed batch: \(e.description); the batch is applied again change by change")
        }
        guard !queued.isEmpty else { return }
        let batch = queued
        queued.removeAll(keepingCapacity: true)
        do {
            try pg.withPipeline { p in
                for q in batch { try p.sendPrepared(q.statement, q.params) }
            }
        } catch let e as PGError where Self.isRefusal(e) {
            throw MigrationError(.constraint, "the PostgreSQL target refused a change of a replayed batch: \(e.description); the batch is applied again change by change")
        }
    }

    /// A constraint or data error: the row, not the connection, is at fault.
    static func isRefusal(_ e: PGError) -> Bool {
        guard let s = e.sqlState, !e.connectionLost else { return false }
        return s.hasPrefix("23") || s.hasPrefix("22")
    }

    /// Queues (or, in careful mode, runs at once in a savepoint) one prepared statement.
    func enqueue(_ statement: String, _ params: [PGParam], record: ChangeRecord, table: String) throws {
        if careful {
            try pg.execute("SAVEPOINT tm_change")
            do {
                _ = try pg.execPrepared(statement, params)
                try pg.execute("RELEASE SAVEPOINT tm_change")
            } catch let e as PGError where Self.isRefusal(e) {
                try pg.execute("ROLLBACK TO SAVEPOINT tm_change")
                let key = record.key.map { "\($0.name)=\($0.value)" }.joined(separator: ", ")
                throw MigrationError(.constraint, "the target refused the change at LSN \(record.lsn) (\(record.operation) of \(record.table) \(key)) into \(table): \(e.description); nothing of its batch was applied and it is never skipped — fix the row in the source (its next change replaces this one) or change the plan, then run `tidemark migrate`")
            }
            return
        }
        queued.append((statement, params))
        if queued.count >= Self.pipelineDepth { try flush() }
    }

    // MARK: State

    func loadState() throws -> MigrationState? {
        try flush()
        return try mapped { try PostgresState.load(pg) }
    }

    func position() throws -> (applied: LSN, cutover: CutoverState.Kind?)? {
        try flush()
        return try mapped { try PostgresState.position(pg) }
    }

    func save(_ state: MigrationState, table: TableState?) throws {
        try flush()
        try PostgresState.save(state, table: table, in: pg)
    }

    func recordCaughtUp(atMicros: Int64) throws {
        try mapped { try pg.transaction { _ = try pg.query("UPDATE tidemark.migration SET caught_up_at = $1 WHERE id = 1 AND caught_up_at IS NULL", [.value(.integer(atMicros))]) } }
    }

    func recordCopied(atMicros: Int64, lsn: LSN) throws {
        try flush()
        _ = try pg.query("UPDATE tidemark.migration SET copied_at = $1, copied_lsn = $2 WHERE id = 1 AND copied_at IS NULL",
                         [.value(.integer(atMicros)), .value(.integer(Int64(lsn.rawValue)))])
    }

    func recordBlocked(_ b: BlockedStep) throws {
        try mapped {
            try pg.transaction {
                _ = try pg.query("UPDATE tidemark.migration SET blocked_lsn = $1, blocked_message = $2, blocked_at = $3 WHERE id = 1",
                                 [.value(b.lsn.map { .integer(Int64($0.rawValue)) } ?? .null), .value(.text(b.message)), .value(.integer(b.atMicros))])
            }
        }
    }

    func clearBlocked() throws {
        try flush()
        try pg.execute("UPDATE tidemark.migration SET blocked_lsn = NULL, blocked_message = NULL, blocked_at = NULL WHERE id = 1")
    }

    func invalidateVerify() throws {
        try mapped { try pg.execute("UPDATE tidemark.migration SET verified_at = NULL, verified_from_lsn = NULL, verified_through_lsn = NULL, verified_differences = NULL WHERE id = 1") }
    }

    func storePlan(_ record: PlanRecord) throws {
        try mapped {
            try pg.transaction {
                _ = try pg.query("UPDATE tidemark.migration SET plan_fingerprint = $1, plan_json = $2 WHERE id = 1", [.value(.text(record.fingerprint)), .value(.text(record.json))])
            }
        }
    }

    // MARK: Setting up

    func resolveMappings(_ plan: Plan) throws -> [TableMapping] {
        let mappings = try PlanResolver.resolve(plan, source: source, target: source)
        return mappings
    }

    func start(plan: Plan, mappings: [TableMapping], schema: TargetSchema, sourceID: String,
               record: PlanRecord, indexesDuringCopy: Bool) throws -> MigrationState {
        guard let translated = schemaPlan else {
            throw MigrationError(.foreignState, "the PostgreSQL target's schema was not resolved before the migration started; run `tidemark migrate` again")
        }
        let q = PGSQL.ident
        return try mapped {
            try pg.transaction {
                try PostgresState.create(in: pg)
                if try PostgresState.position(pg) != nil {
                    throw MigrationError(.foreignState, "the PostgreSQL target \(displayName) already holds a migration's state (schema tidemark); finish or roll back that migration first")
                }
                _ = try pg.execute("CREATE SCHEMA IF NOT EXISTS \(q(translated.schema))")
                var created: Set<String> = []
                for t in translated.tables {
                    if let existing = try PostgresCatalog.columns(pg, schema: translated.schema, table: t.target) {
                        try PostgresCatalog.checkExisting(pg, schema: translated.schema, table: t, existing: existing)
                    } else {
                        try pg.execute(t.createSQL)
                        if let identity = t.identity { try pg.execute(identity.sequenceSQL) }
                        created.insert(t.source)
                    }
                }
                let start: LSN = try sourceRead { try captureHighWater() }
                var state = MigrationState(
                    sourceID: sourceID, sourcePath: plan.source, appliedLSN: start, appliedTimestampMicros: Clock.wallMicros(),
                    startedAtMicros: Clock.wallMicros(), caughtUpAtMicros: nil,
                    tables: mappings.enumerated().map { i, m in
                        TableState(sourceTable: m.source.name, targetTable: m.targetTable, position: i, phase: .pending,
                                   tidemark: nil, ceiling: nil, rowsCopied: 0, rowsEstimate: 0)
                    })
                state.plan = record
                try PostgresState.insert(state, schema: translated.schema, created: created, in: pg)
                var objects: [(kind: String, name: String, table: String, sql: String)] = []
                for t in translated.tables {
                    for i in t.indexes { objects.append(("index", i.name, t.target, i.sql)) }
                }
                // Foreign keys wait for every table's copy (their table is
                // not one the state lists): NOT VALID, then VALIDATE.
                for t in translated.tables {
                    for f in t.foreignKeys { objects.append(("index", f.name, "", f.add + ";\n" + f.validate)) }
                }
                // Identity sequences, moved past the highest key at cutover
                // (table_name: the source table, whose sqlite_sequence counts).
                for t in translated.tables {
                    if let identity = t.identity { objects.append(("sequence", identity.sequence, t.source, identity.setvalSQL)) }
                }
                for o in translated.omissions {
                    objects.append(("omission", o.name, o.table, [o.kind, o.reason, o.blocksCutover ? "blocks" : ""].joined(separator: "\u{1F}")))
                }
                try PostgresState.storeObjects(objects, in: pg)
                if indexesDuringCopy {
                    for o in objects where o.kind == "index" && !o.table.isEmpty {
                        try pg.execute(o.sql)
                        try PostgresState.setObjectState(name: o.name, state: "built", in: pg)
                    }
                }
                return state
            }
        }
    }

    /// Runs `body` inside a source read transaction (unless one is open).
    func sourceRead<R>(_ body: () throws -> R) throws -> R {
        guard !source.isInTransaction else { return try body() }
        try source.execute("BEGIN")
        defer { if source.isInTransaction { try? source.execute("ROLLBACK") } }
        return try body()
    }

    func storedSchema() throws -> (omissions: [TargetSchema.Omission], pending: [TargetSchema.Object]) {
        try mapped { try PostgresState.objects(pg) }
    }

    // MARK: Copy and replay

    func captureHighWater() throws -> LSN {
        try SQLiteStore.captureHighWater(on: source, schema: "main")
    }

    func nullKeyRowids(_ m: TableMapping) throws -> [Int64] {
        try Migrator.nullKeyRowids(m, on: source, schema: "main")
    }

    func writer(for m: TableMapping) throws -> TableWriter {
        if let w = writers[m.source.name.lowercased()] { return w }
        // A new writer reads the catalog: what was sent pipelined is read
        // first (its refusal reported as the batch's, see flush()).
        try flush()
        let w = try mapped { try PostgresTableWriter(mapping: m, store: self) }
        writers[m.source.name.lowercased()] = w
        return w
    }

    func prepareForFollowing() throws {}

    func buildIndex(_ index: TargetSchema.Object) throws -> Bool {
        try flush()
        guard try PostgresState.objectState(name: index.name, in: pg) == "pending" else { return false }
        do {
            try pg.execute(index.sql)
        } catch let e as PGError where Self.isRefusal(e) {
            throw MigrationError(.constraint, "building \(index.name) on the PostgreSQL target: \(e.description); fix the source rows it names, then run `tidemark migrate`")
        }
        try PostgresState.setObjectState(name: index.name, state: "built", in: pg)
        return true
    }
}

/// The migration state tables in the target database, schema `tidemark`:
/// the same rows as the SQLite target's `_tidemark_migration*` tables.
enum PostgresState {
    static let createSQL = """
        CREATE SCHEMA IF NOT EXISTS tidemark;
        CREATE TABLE IF NOT EXISTS tidemark.migration(
          id integer PRIMARY KEY CHECK (id = 1),
          target_schema text NOT NULL,
          source_id text NOT NULL,
          source_path text NOT NULL,
          applied_lsn bigint NOT NULL,
          applied_ts bigint NOT NULL,
          started_at bigint NOT NULL,
          caught_up_at bigint,
          cutover_state text CHECK (cutover_state IN ('prepared', 'done', 'rolled-back')),
          cutover_lsn bigint, cutover_at bigint, cutover_pause_us bigint, reverse_from bigint,
          plan_fingerprint text, plan_json text,
          copied_at bigint, copied_lsn bigint,
          verified_at bigint, verified_from_lsn bigint, verified_through_lsn bigint, verified_differences bigint,
          skip_verify_at bigint,
          blocked_lsn bigint, blocked_message text, blocked_at bigint);
        CREATE TABLE IF NOT EXISTS tidemark.migration_tables(
          source_table text PRIMARY KEY,
          target_table text NOT NULL,
          position integer NOT NULL,
          phase text NOT NULL CHECK (phase IN ('pending', 'copying', 'following')),
          tidemark text,
          ceiling text,
          rows_copied bigint NOT NULL DEFAULT 0,
          rows_estimate bigint NOT NULL DEFAULT 0,
          created boolean NOT NULL DEFAULT false);
        CREATE TABLE IF NOT EXISTS tidemark.schema_objects(
          position serial PRIMARY KEY,
          kind text NOT NULL CHECK (kind IN ('index', 'omission', 'sequence')),
          name text NOT NULL,
          table_name text NOT NULL,
          sql text NOT NULL,
          state text NOT NULL CHECK (state IN ('pending', 'built', 'created')));
        """

    static func create(in pg: PGConnection) throws { try pg.execute(createSQL) }

    static func exists(_ pg: PGConnection) throws -> Bool {
        let r = try pg.query("SELECT to_regclass('tidemark.migration') IS NOT NULL")
        if case .integer(1)? = r.rows.first?.first { return true }
        return false
    }

    static func position(_ pg: PGConnection) throws -> (applied: LSN, cutover: CutoverState.Kind?)? {
        guard try exists(pg) else { return nil }
        let r = try pg.query("SELECT applied_lsn, cutover_state FROM tidemark.migration WHERE id = 1")
        guard let row = r.rows.first, case .integer(let applied) = row[0] else { return nil }
        if case .text(let s) = row[1] { return (LSN(UInt64(max(0, applied))), CutoverState.Kind(rawValue: s)) }
        return (LSN(UInt64(max(0, applied))), nil)
    }

    static func load(_ pg: PGConnection) throws -> MigrationState? {
        guard try exists(pg) else { return nil }
        let r = try pg.query("""
            SELECT source_id, source_path, applied_lsn, applied_ts, started_at, caught_up_at, cutover_state, cutover_lsn, cutover_at,
                   cutover_pause_us, reverse_from, plan_fingerprint, plan_json, copied_at, copied_lsn, verified_at, verified_from_lsn,
                   verified_through_lsn, verified_differences, skip_verify_at, blocked_lsn, blocked_message, blocked_at
            FROM tidemark.migration WHERE id = 1
            """)
        guard let m = r.rows.first else { return nil }
        func int(_ i: Int) -> Int64? { if case .integer(let v) = m[i] { return v }; return nil }
        func text(_ i: Int) -> String? { if case .text(let v) = m[i] { return v }; return nil }
        func lsn(_ i: Int) -> LSN? { int(i).map { LSN(UInt64(max(0, $0))) } }
        var state = MigrationState(
            sourceID: text(0) ?? "", sourcePath: text(1) ?? "", appliedLSN: lsn(2) ?? .zero,
            appliedTimestampMicros: int(3) ?? 0, startedAtMicros: int(4) ?? 0, caughtUpAtMicros: int(5), tables: [],
            cutover: try CutoverState(stored: text(6), lsn: lsn(7), atMicros: int(8), pauseMicros: int(9)), reverseFromSeq: int(10))
        if let f = text(11), let j = text(12) { state.plan = PlanRecord(fingerprint: f, json: j) }
        state.copiedAtMicros = int(13)
        state.copiedLSN = lsn(14)
        if let at = int(15), let from = lsn(16), let through = lsn(17), let d = int(18) {
            state.verification = VerifyRecord(atMicros: at, fromLSN: from, throughLSN: through, differences: Int(d))
        }
        state.skipVerifyAtMicros = int(19)
        if let message = text(21) { state.blocked = BlockedStep(lsn: lsn(20), message: message, atMicros: int(22) ?? 0) }
        let t = try pg.query("SELECT source_table, target_table, position, phase, tidemark, ceiling, rows_copied, rows_estimate FROM tidemark.migration_tables ORDER BY position")
        for row in t.rows {
            func s(_ i: Int) -> String? { if case .text(let v) = row[i] { return v }; return nil }
            func n(_ i: Int) -> Int64 { if case .integer(let v) = row[i] { return v }; return 0 }
            guard let phase = s(3).flatMap(CopyPhase.init(rawValue:)) else {
                throw MigrationError(.foreignState, "unknown phase '\(s(3) ?? "")' in tidemark.migration_tables")
            }
            state.tables.append(TableState(
                sourceTable: s(0) ?? "", targetTable: s(1) ?? "", position: Int(n(2)), phase: phase,
                tidemark: try s(4).map(KeyTuple.decode), ceiling: try s(5).map(KeyTuple.decode),
                rowsCopied: Int(n(6)), rowsEstimate: Int(n(7))))
        }
        return state
    }

    static func insert(_ state: MigrationState, schema: String, created: Set<String>, in pg: PGConnection) throws {
        _ = try pg.query("INSERT INTO tidemark.migration(id, target_schema, source_id, source_path, applied_lsn, applied_ts, started_at, plan_fingerprint, plan_json) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)",
                         [.value(.text(schema)), .value(.text(state.sourceID)), .value(.text(state.sourcePath)),
                          .value(.integer(Int64(state.appliedLSN.rawValue))), .value(.integer(state.appliedTimestampMicros)),
                          .value(.integer(state.startedAtMicros)),
                          .value(state.plan.map { .text($0.fingerprint) } ?? .null), .value(state.plan.map { .text($0.json) } ?? .null)])
        for t in state.tables {
            _ = try pg.query("INSERT INTO tidemark.migration_tables(source_table, target_table, position, phase, created) VALUES ($1, $2, $3, $4, $5)",
                             [.value(.text(t.sourceTable)), .value(.text(t.targetTable)), .value(.integer(Int64(t.position))),
                              .value(.text(t.phase.rawValue)), .textual(created.contains(t.sourceTable) ? "true" : "false")])
        }
    }

    /// Invariant (as for SQLite targets): the stored applied LSN never
    /// moves backwards; a caller behind the stored position fails and its
    /// transaction, rows included, rolls back.
    static func save(_ state: MigrationState, table: TableState?, in pg: PGConnection) throws {
        let r = try pg.query("UPDATE tidemark.migration SET applied_lsn = $1, applied_ts = $2, caught_up_at = coalesce(caught_up_at, $3) WHERE id = 1 AND applied_lsn <= $1",
                             [.value(.integer(Int64(state.appliedLSN.rawValue))), .value(.integer(state.appliedTimestampMicros)),
                              .value(state.caughtUpAtMicros.map { .integer($0) } ?? .null)])
        if r.affectedRows != 1 {
            throw MigrationError(.foreignState, "the target's applied LSN is past this process's \(state.appliedLSN): another process applied changes meanwhile; nothing was written — run the command again")
        }
        guard let table else { return }
        _ = try pg.query("UPDATE tidemark.migration_tables SET phase = $1, tidemark = $2, ceiling = $3, rows_copied = $4, rows_estimate = $5 WHERE source_table = $6",
                         [.value(.text(table.phase.rawValue)), .value(table.tidemark.map { .text(KeyTuple.encode($0)) } ?? .null),
                          .value(table.ceiling.map { .text(KeyTuple.encode($0)) } ?? .null),
                          .value(.integer(Int64(table.rowsCopied))), .value(.integer(Int64(table.rowsEstimate))), .value(.text(table.sourceTable))])
    }

    static func storeObjects(_ objects: [(kind: String, name: String, table: String, sql: String)], in pg: PGConnection) throws {
        try pg.execute("DELETE FROM tidemark.schema_objects")
        for o in objects {
            _ = try pg.query("INSERT INTO tidemark.schema_objects(kind, name, table_name, sql, state) VALUES ($1, $2, $3, $4, $5)",
                             [.value(.text(o.kind)), .value(.text(o.name)), .value(.text(o.table)), .value(.text(o.sql)),
                              .value(.text(o.kind == "omission" ? "created" : "pending"))])
        }
    }

    /// The identity sequences' `setval` statements and their source tables.
    static func sequences(_ pg: PGConnection) throws -> [(sourceTable: String, sql: String)] {
        let r = try pg.query("SELECT table_name, sql FROM tidemark.schema_objects WHERE kind = 'sequence' ORDER BY position")
        return r.rows.compactMap { row in
            guard case .text(let t) = row[0], case .text(let sql) = row[1] else { return nil }
            return (t, sql)
        }
    }

    static func objects(_ pg: PGConnection) throws -> (omissions: [TargetSchema.Omission], pending: [TargetSchema.Object]) {
        guard try exists(pg) else { return ([], []) }
        let r = try pg.query("SELECT kind, name, table_name, sql, state FROM tidemark.schema_objects ORDER BY position")
        var omissions: [TargetSchema.Omission] = []
        var pending: [TargetSchema.Object] = []
        for row in r.rows {
            func s(_ i: Int) -> String { if case .text(let v) = row[i] { return v }; return "" }
            if s(0) == "omission" {
                let parts = s(3).split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init)
                omissions.append(.init(kind: parts.first ?? "", name: s(1), table: s(2), reason: parts.count > 1 ? parts[1] : "",
                                       blocksCutover: parts.count > 2 && parts[2] == "blocks"))
            } else if s(0) == "index" && s(4) == "pending" {
                pending.append(.init(kind: .index, name: s(1), table: s(2), sql: s(3)))
            }
        }
        return (omissions, pending)
    }

    static func objectState(name: String, in pg: PGConnection) throws -> String? {
        let r = try pg.query("SELECT state FROM tidemark.schema_objects WHERE kind = 'index' AND name = $1", [.value(.text(name))])
        if case .text(let s)? = r.rows.first?.first { return s }
        return nil
    }

    static func setObjectState(name: String, state: String, in pg: PGConnection) throws {
        _ = try pg.query("UPDATE tidemark.schema_objects SET state = $1 WHERE kind = 'index' AND name = $2", [.value(.text(state)), .value(.text(name))])
    }
}

/// What the PostgreSQL catalog says about a target table.
enum PostgresCatalog {
    struct Column: Equatable {
        var name: String
        /// `format_type` of the column, e.g. "bigint", "double precision", "numeric(10,2)".
        var type: String
        /// `pg_type.typname`, e.g. "int8", "float8", "text".
        var typeName: String
        var notNull: Bool
    }

    /// The table's columns in order, or nil when it does not exist.
    static func columns(_ pg: PGConnection, schema: String, table: String) throws -> [Column]? {
        let r = try pg.query("""
            SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, a.attnotnull
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_type t ON t.oid = a.atttypid
            WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, [.value(.text(schema)), .value(.text(table))])
        guard !r.rows.isEmpty else { return nil }
        return r.rows.map { row in
            func s(_ i: Int) -> String { if case .text(let v) = row[i] { return v }; return "" }
            var nn = false
            if case .integer(let b) = row[3] { nn = b != 0 }
            return Column(name: s(0), type: s(1), typeName: s(2), notNull: nn)
        }
    }

    /// The primary key's columns in key order.
    static func primaryKey(_ pg: PGConnection, schema: String, table: String) throws -> [String] {
        let r = try pg.query("""
            SELECT a.attname::text FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary ORDER BY k.ord
            """, [.value(.text(schema)), .value(.text(table))])
        return r.rows.compactMap { if case .text(let s)? = $0.first { return s }; return nil }
    }

    /// An existing target table is taken only if it has the planned
    /// columns with the planned types, the planned key, and no rows.
    static func checkExisting(_ pg: PGConnection, schema: String, table t: PostgresTable, existing: [Column]) throws {
        let name = "\(schema).\(t.target)"
        for c in t.columns {
            guard let have = existing.first(where: { $0.name == c.name }) else {
                throw MigrationError(.incompatibleTarget, "target table \(name) already exists without column \(c.name); drop it (Tidemark creates it) or add the column as \(c.type)")
            }
            let want = c.type.replacingOccurrences(of: " COLLATE \"C\"", with: "")
            if have.type.lowercased() != want.lowercased() {
                throw MigrationError(.incompatibleTarget, "target table \(name) already exists and its column \(c.name) is \(have.type), not \(want); drop the table (Tidemark creates it) or change the column's type")
            }
        }
        let pk = try primaryKey(pg, schema: schema, table: t.target)
        guard pk == t.primaryKey else {
            throw MigrationError(.incompatibleTarget, "target table \(name) already exists with primary key (\(pk.joined(separator: ", "))), but the plan keys it by (\(t.primaryKey.joined(separator: ", "))); drop it or fix its key")
        }
        let r = try pg.query("SELECT EXISTS (SELECT 1 FROM \(PGSQL.ident(schema)).\(PGSQL.ident(t.target)))")
        if case .integer(1)? = r.rows.first?.first {
            throw MigrationError(.targetNotEmpty, "target table \(name) already holds rows not written by this migration; empty it or choose another target")
        }
    }
}

/// How one target column's values travel to PostgreSQL, from its type in
/// the catalog. Values are sent exactly or refused: never cast.
enum PostgresValueKind: Equatable {
    case int8, float8, text, bytea, numeric, bool
    /// Sent as text that PostgreSQL parses (plan-typed columns: timestamptz,
    /// date, jsonb, uuid, …; the preflight proved the source values parse).
    case textual

    init(typeName: String) {
        switch typeName {
        case "int8": self = .int8
        case "float8": self = .float8
        case "text", "varchar", "bpchar": self = .text
        case "bytea": self = .bytea
        case "numeric": self = .numeric
        case "bool": self = .bool
        default: self = .textual
        }
    }

    /// Whether COPY BINARY can carry it (textual values need PostgreSQL's parser).
    var isBinary: Bool { self != .textual }

    /// The array element type a batch statement sends it as.
    var elementType: PGType? {
        switch self {
        case .int8: return .int8
        case .float8: return .float8
        case .text: return .text
        case .bytea: return .bytea
        case .numeric: return .numeric
        case .bool: return .bool
        case .textual: return nil
        }
    }

    var arrayTypeSQL: String {
        switch self {
        case .int8: return "bigint[]"
        case .float8: return "double precision[]"
        case .text: return "text[]"
        case .bytea: return "bytea[]"
        case .numeric: return "numeric[]"
        case .bool: return "boolean[]"
        case .textual: return "text[]"
        }
    }
}

/// One mapped table of a PostgreSQL target: source reads on the source
/// connection, writes through COPY BINARY (chunks) and pipelined prepared
/// upserts and deletes (replay).
final class PostgresTableWriter: TableWriter {
    let mapping: TableMapping
    unowned let store: PostgresStore
    let keys: SourceKeys
    let qualifiedTarget: String
    /// Target columns in `mapping.columns` order, as the catalog has them.
    let kinds: [PostgresValueKind]
    let columnNames: [String]
    /// Position in `mapping.columns` of each target key column, in key order.
    let keyPositions: [Int]
    let chunk: Statement
    let chunkFromStart: Statement
    /// Expression mappings: the one-row image table on the source
    /// connection (declared like the source table) and the expressions over it.
    let imageUpdate: Statement?
    let imageSelect: Statement?
    let upsertName: String
    let deleteName: String
    let insertName: String
    let copySQL: String
    /// Source column (lowercased) → position in `sourceColumns`.
    let sourcePosition: [String: Int]
    /// Batch statements (nil when a column needs PostgreSQL's parser): one
    /// DELETE and one multi-row upsert per batch, over arrays.
    let batchDeleteName: String?
    let batchUpsertName: String?
    /// The open batch, folded: each target key's last image (its columns'
    /// binary forms), or nil when its last change deleted it.
    ///
    /// Why folding keeps the invariant: every change carries the row's whole
    /// image, so a key's last change in the batch alone decides its state at
    /// the batch's end; the batch commits with the position of its last
    /// change, and nothing reads the target in between. Folding reorders
    /// writes across keys, which can trip a constraint the in-order writes
    /// would not (a UNIQUE value moving between rows, a foreign key): that
    /// refusal rolls the step back, and the store runs it again change by
    /// change (``PostgresStore/transaction(_:)``).
    ///
    /// An image is one buffer: each column's array element (its length as
    /// a big-endian Int32, -1 for NULL, then its bytes) in column order —
    /// one allocation per row, copied as is into the batch's arrays.
    private var folded: [[Value]: [UInt8]?] = [:]
    /// The size of the last image folded (reserved up front for the next,
    /// up to 1 KiB: a row with a large value does not inflate the others).
    private var imageCapacity = 64

    init(mapping m: TableMapping, store: PostgresStore) throws {
        mapping = m
        self.store = store
        let pg = store.pg
        let schema = store.plan.pgSchema
        keys = try SourceKeys(mapping: m, connection: store.source, schema: "main")
        let q = PGSQL.ident
        qualifiedTarget = q(schema) + "." + q(m.targetTable)
        guard let catalog = try PostgresCatalog.columns(pg, schema: schema, table: m.targetTable) else {
            throw MigrationError(.incompatibleTarget, "target table \(schema).\(m.targetTable) does not exist in \(store.displayName); it was dropped after the migration began — roll the migration back (`tidemark rollback`) and migrate again")
        }
        var kinds: [PostgresValueKind] = []
        for c in m.columns {
            guard let have = catalog.first(where: { $0.name == c.target }) else {
                throw MigrationError(.incompatibleTarget, "target table \(schema).\(m.targetTable) has no column \(c.target); was it altered after the migration began?")
            }
            kinds.append(PostgresValueKind(typeName: have.typeName))
        }
        self.kinds = kinds
        let keyPositions = try m.targetKey.map { k in
            guard let i = m.columns.firstIndex(where: { $0.target.lowercased() == k.lowercased() }) else {
                throw MigrationError(.keyNotCarried, "the target of '\(m.source.name)' does not carry key column '\(k)'")
            }
            return i
        }
        self.keyPositions = keyPositions
        let columnNames = m.columns.map(\.target)
        self.columnNames = columnNames
        var pos: [String: Int] = [:]
        for (i, col) in m.sourceColumns.enumerated() { pos[col.lowercased()] = i }
        sourcePosition = pos

        let sq = quoteIdentifier
        let src = "main.\(sq(m.source.name))"
        let n = m.sourceKey.count
        let keyList = m.sourceKey.map(sq).joined(separator: ", ")
        let key = n == 1 ? keyList : "(\(keyList))"
        func params(from start: Int) -> String {
            let p = (0..<n).map { "?\(start + $0)" }.joined(separator: ", ")
            return n == 1 ? p : "(\(p))"
        }
        let exprs = m.columns.map { "(\($0.expression))" }.joined(separator: ", ")
        let c = store.source
        chunk = try c.prepare("SELECT \(exprs) FROM \(src) WHERE \(key) > \(params(from: 1)) AND \(key) <= \(params(from: n + 1)) ORDER BY \(keyList)")
        chunkFromStart = try c.prepare("SELECT \(exprs) FROM \(src) WHERE \(key) <= \(params(from: 1)) ORDER BY \(keyList)")
        if m.isIdentity {
            imageUpdate = nil
            imageSelect = nil
        } else {
            // As for SQLite targets (TableStatements): expressions are
            // evaluated by SQLite over the after image, held in a one-row
            // TEMP table declared like the source table, so they mean what
            // they mean in the copy.
            let (update, image) = try SourceImage.create(m, prefix: "_tidemark_pgimage_", on: c)
            imageUpdate = update
            imageSelect = try c.prepare("SELECT \(exprs) FROM \(image)")
        }

        let cols = columnNames.map(q).joined(separator: ", ")
        let values = (1...columnNames.count).map { "$\($0)" }.joined(separator: ", ")
        let pk = m.targetKey.map(q).joined(separator: ", ")
        let keyAt = keyPositions
        let nonKey = columnNames.enumerated().filter { !keyAt.contains($0.offset) }.map(\.element)
        let onConflict = nonKey.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + nonKey.map { "\(q($0)) = EXCLUDED.\(q($0))" }.joined(separator: ", ")
        upsertName = store.nextStatementName("up")
        try pg.prepare(upsertName, "INSERT INTO \(qualifiedTarget) (\(cols)) VALUES (\(values)) ON CONFLICT (\(pk)) \(onConflict)", types: Array(repeating: nil, count: columnNames.count))
        insertName = store.nextStatementName("in")
        try pg.prepare(insertName, "INSERT INTO \(qualifiedTarget) (\(cols)) VALUES (\(values))", types: Array(repeating: nil, count: columnNames.count))
        deleteName = store.nextStatementName("del")
        let keyWhere = m.targetKey.enumerated().map { "\(q($0.element)) = $\($0.offset + 1)" }.joined(separator: " AND ")
        try pg.prepare(deleteName, "DELETE FROM \(qualifiedTarget) WHERE \(keyWhere)", types: Array(repeating: nil, count: m.targetKey.count))
        copySQL = "COPY \(qualifiedTarget) (\(cols)) FROM STDIN (FORMAT binary)"
        if kinds.allSatisfy(\.isBinary) {
            let keyArrays = keyPositions.enumerated().map { "$\($0.offset + 1)::\(kinds[$0.element].arrayTypeSQL)" }.joined(separator: ", ")
            let keyCols = m.targetKey.map(q).joined(separator: ", ")
            let del = store.nextStatementName("bdel")
            try pg.prepare(del, "DELETE FROM \(qualifiedTarget) WHERE (\(keyCols)) IN (SELECT * FROM unnest(\(keyArrays)))", types: Array(repeating: nil, count: keyPositions.count))
            batchDeleteName = del
            let arrays = kinds.enumerated().map { "$\($0.offset + 1)::\($0.element.arrayTypeSQL)" }.joined(separator: ", ")
            let up = store.nextStatementName("bup")
            try pg.prepare(up, "INSERT INTO \(qualifiedTarget) (\(cols)) SELECT * FROM unnest(\(arrays)) ON CONFLICT (\(pk)) \(onConflict)", types: Array(repeating: nil, count: kinds.count))
            batchUpsertName = up
        } else {
            batchDeleteName = nil
            batchUpsertName = nil
        }
    }

    /// One value's binary form for a batch array (nil: NULL); the same
    /// exactness rules as ``param(_:column:)``.
    private func element(_ v: Value, column i: Int) throws -> [UInt8]?? {
        if case .null = v { return .some(nil) }
        switch (kinds[i], v) {
        case (.int8, .integer(let n)): return PGArrayBuilder.int8(n)
        case (.float8, .real(let d)): return PGArrayBuilder.float8(d)
        case (.float8, .integer(let n)) where n.magnitude <= 1 << 53: return PGArrayBuilder.float8(Double(n))
        case (.text, .text(let s)): return s.utf8.contains(0) ? nil : Array(s.utf8)
        case (.text, .integer(let n)): return Array(String(n).utf8)
        case (.bytea, .blob(let b)): return b
        case (.numeric, .integer(let n)): return try PGArrayBuilder.numeric(decimal: String(n))
        case (.numeric, .real(let d)):
            guard d.isFinite, !(d == 0 && d.sign == .minus) else { return nil }
            return try PGArrayBuilder.numeric(decimal: Self.decimal(d))
        case (.bool, .integer(let n)) where n == 0 || n == 1: return PGArrayBuilder.bool(n == 1)
        default: return nil
        }
    }

    /// Appends `v`'s array element for column `i` to `row` (see ``folded``);
    /// false, with nothing appended, when the column cannot hold it exactly.
    /// The same rules as ``element(_:column:)``.
    private func appendElement(_ v: Value, column i: Int, to row: inout [UInt8]) throws -> Bool {
        switch (kinds[i], v) {
        case (_, .null): PGArrayBuilder.appendNull(to: &row)
        case (.int8, .integer(let n)): PGArrayBuilder.appendInt8(n, to: &row)
        case (.float8, .real(let d)): PGArrayBuilder.appendFloat8(d, to: &row)
        case (.float8, .integer(let n)) where n.magnitude <= 1 << 53: PGArrayBuilder.appendFloat8(Double(n), to: &row)
        case (.text, .text(let s)):
            if s.utf8.contains(0) { return false }
            PGArrayBuilder.appendBytes(s.utf8, to: &row)
        case (.bytea, .blob(let b)): PGArrayBuilder.appendBytes(b, to: &row)
        default:
            guard let e = try element(v, column: i), let bytes = e else { return false }
            PGArrayBuilder.appendBytes(bytes, to: &row)
        }
        return true
    }

    /// Sends the folded batch, pipelined (its result is read at the store's
    /// next flush): deletes first (they free UNIQUE values), then one upsert
    /// of every remaining image.
    ///
    /// Sent in parts while a batch is folded (``PostgresStore/foldedSendKeys``):
    /// a key folded again after its part was sent lands in a later part,
    /// and the server runs the parts in the order they were sent, so the
    /// key still ends in its last image.
    func flushFolded() throws {
        guard !folded.isEmpty, let del = batchDeleteName, let up = batchUpsertName else { return }
        // Emptied in place at the end (keeping its storage for the next part);
        // on a throw the step rolls back and discardFolded() empties it.
        defer { folded.removeAll(keepingCapacity: true) }
        var keyArrays = keyPositions.map { PGArrayBuilder(elementType: kinds[$0].elementType ?? .text) }
        var columnArrays = kinds.map { PGArrayBuilder(elementType: $0.elementType ?? .text) }
        var deletes = 0, upserts = 0
        for (key, image) in folded {
            if let image {
                let complete = image.withUnsafeBufferPointer { row -> Bool in
                    var at = 0
                    for i in columnArrays.indices {
                        guard let next = columnArrays[i].appendEncoded(row, at: at) else { return false }
                        at = next
                    }
                    return at == row.count
                }
                // fold() writes one element per column; anything else is a bug here, never sent.
                guard complete else {
                    throw MigrationError(.foreignState, "replaying into \(mapping.targetTable): a folded row image of key \(KeyTuple.encode(key)) does not hold one value per column; nothing of this step was written — run `tidemark migrate` again")
                }
                upserts += 1
            } else {
                for (k, v) in key.enumerated() {
                    guard let e = try element(v, column: keyPositions[k]) else { continue }
                    keyArrays[k].append(e)
                }
                deletes += 1
            }
        }
        if deletes > 0 { try store.pg.sendPipelined(del, keyArrays.map { .value(.blob($0.bytes)) }) }
        if upserts > 0 { try store.pg.sendPipelined(up, columnArrays.map { .value(.blob($0.bytes)) }) }
    }

    func discardFolded() { folded.removeAll(keepingCapacity: true) }

    func keyValues(_ r: ChangeRecord) throws -> [Value] { try keys.keyValues(r) }
    func isKey(_ key: [Value], above bound: [Value]) throws -> Bool { try keys.isKey(key, above: bound) }
    func ceiling() throws -> [Value]? { try keys.highest() }
    func rowCount() throws -> Int { try keys.rowCount() }
    func chunkUpper(after tidemark: [Value]?, ceiling: [Value], rows: Int) throws -> [Value] {
        try keys.chunkUpper(after: tidemark, ceiling: ceiling, rows: rows)
    }

    /// A value PostgreSQL cannot hold exactly in this column: refused, with
    /// the row's key and what to do (never cast or cut).
    func refusal(_ column: Int, _ value: Value, key: [Value], lsn: LSN? = nil) -> MigrationError {
        let kind = kinds[column]
        let what: String
        switch value {
        case .text(let s) where s.utf8.contains(0): what = "text with a NUL character"
        case .text: what = "text"
        case .integer: what = "an integer"
        case .real(let d): what = d.isFinite ? (d == 0 && d.sign == .minus ? "-0.0" : "a real") : "a non-finite real"
        case .blob: what = "a blob"
        case .null: what = "NULL"
        }
        let at = lsn.map { " (change at LSN \($0))" } ?? ""
        return MigrationError(.constraint, "\(mapping.source.name) key \(KeyTuple.encode(key))\(at): column \(columnNames[column]) holds \(what), which the PostgreSQL column (\(kind)) cannot hold exactly; nothing of this step was written — fix the row in the source (its next change replaces this one) or give the column a plan `type:` that holds it, then run `tidemark migrate`")
    }

    /// `v` as a parameter of column `i`, or nil when it cannot go there exactly.
    func param(_ v: Value, column i: Int) -> PGParam? {
        if case .null = v { return .value(.null) }
        switch (kinds[i], v) {
        case (.int8, .integer), (.float8, .real), (.bytea, .blob): return .value(v)
        // As SQLite's affinity would store them (the preflight allows the
        // same): an integer exactly representable in a double, an integer
        // into text as its decimal digits.
        case (.float8, .integer(let n)) where n.magnitude <= 1 << 53: return .value(.real(Double(n)))
        case (.text, .integer(let n)): return .value(.text(String(n)))
        case (.text, .text(let s)): return s.utf8.contains(0) ? nil : .value(v)
        case (.numeric, .integer(let n)): return .textual(String(n))
        case (.numeric, .real(let d)):
            guard d.isFinite, !(d == 0 && d.sign == .minus) else { return nil }
            return .textual(PostgresTableWriter.decimal(d))
        case (.bool, .integer(let n)) where n == 0 || n == 1: return .textual(n == 1 ? "true" : "false")
        case (.textual, .text(let s)): return s.utf8.contains(0) ? nil : .textual(s)
        case (.textual, .integer(let n)): return .textual(String(n))
        case (.textual, .real(let d)) where d.isFinite: return .textual(PostgresTableWriter.decimal(d))
        default: return nil
        }
    }

    /// The shortest decimal that reads back as `d` (what numeric stores).
    static func decimal(_ d: Double) -> String {
        let s = d.description
        guard let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) else { return s }
        // Swift writes 1e-05; numeric's parser takes that form as well.
        return String(s[..<e]) + "e" + String(s[s.index(after: e)...])
    }

    func copyChunk(after tidemark: [Value]?, through upper: [Value]) throws -> Int {
        try store.flush()
        let s = tidemark == nil ? chunkFromStart : chunk
        s.reset()
        defer { s.reset() }
        try s.bind((tidemark ?? []) + upper)
        let count = columnNames.count
        if kinds.allSatisfy(\.isBinary) {
            do {
                return try store.pg.copyIn(copySQL) { buffer in
                    while try s.step() {
                        buffer.beginRow(fieldCount: count)
                        for i in 0..<count { try encode(s, column: i, into: &buffer) }
                    }
                }
            } catch let e as PGError where PostgresStore.isRefusal(e) {
                throw MigrationError(.constraint, "copying \(mapping.source.name) into \(mapping.targetTable) after key \(tidemark.map(KeyTuple.encode) ?? "(start)"): the PostgreSQL target refused a row: \(e.description); nothing of this chunk was written — fix the source rows or the plan, then run `tidemark migrate`")
            }
        }
        // Plan-typed columns need PostgreSQL's parser: pipelined inserts.
        var n = 0
        var batch: [[PGParam]] = []
        func send() throws {
            guard !batch.isEmpty else { return }
            let rows = batch
            batch.removeAll(keepingCapacity: true)
            do {
                try store.pg.withPipeline { p in for r in rows { try p.sendPrepared(insertName, r) } }
            } catch let e as PGError where PostgresStore.isRefusal(e) {
                throw MigrationError(.constraint, "copying \(mapping.source.name) into \(mapping.targetTable) after key \(tidemark.map(KeyTuple.encode) ?? "(start)"): the PostgreSQL target refused a row: \(e.description); nothing of this chunk was written — fix the source rows or the plan, then run `tidemark migrate`")
            }
        }
        while try s.step() {
            var row: [PGParam] = []
            row.reserveCapacity(count)
            for i in 0..<count {
                let v = s.columnValue(Int32(i))
                guard let p = param(v, column: i) else { throw refusal(i, v, key: keyOf(s)) }
                row.append(p)
            }
            batch.append(row)
            n += 1
            if batch.count >= PostgresStore.pipelineDepth { try send() }
        }
        try send()
        return n
    }

    /// The source key of the chunk row `s` is on (for messages).
    private func keyOf(_ s: Statement) -> [Value] {
        keyPositions.map { s.columnValue(Int32($0)) }
    }

    /// One field of COPY BINARY straight from the source row: exact, or refused.
    private func encode(_ s: Statement, column i: Int, into b: inout PGCopyBuffer) throws {
        let type = s.columnType(Int32(i))
        if type == .null { b.null(); return }
        switch (kinds[i], type) {
        case (.int8, .integer): b.int8(s.columnInt64(Int32(i)))
        case (.float8, .real): b.float8(s.columnDouble(Int32(i)))
        case (.float8, .integer) where s.columnInt64(Int32(i)).magnitude <= 1 << 53: b.float8(Double(s.columnInt64(Int32(i))))
        case (.text, .integer): b.text(String(s.columnInt64(Int32(i))))
        case (.bool, .integer) where s.columnInt64(Int32(i)) == 0 || s.columnInt64(Int32(i)) == 1:
            b.bool(s.columnInt64(Int32(i)) == 1)
        case (.text, .text):
            // The bytes as stored, checked (valid UTF-8, no NUL): a String
            // round trip would replace invalid bytes without a word.
            let ok: Bool = s.withColumnBytes(Int32(i)) { raw in
                guard !raw.contains(0) else { return false }
                if let base = raw.baseAddress {
                    var it = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: raw.count).makeIterator()
                    var decoder = UTF8()
                    loop: while true {
                        switch decoder.decode(&it) {
                        case .scalarValue: continue
                        case .emptyInput: break loop
                        case .error: return false
                        }
                    }
                    b.raw(Array(raw))
                } else {
                    b.raw([])
                }
                return true
            }
            if !ok { throw MigrationError(.constraint, "\(mapping.source.name) key \(KeyTuple.encode(keyOf(s))): column \(columnNames[i]) holds text with a NUL character or bytes that are not UTF-8, which PostgreSQL text cannot hold; nothing of this chunk was written — fix the row in the source (or store it as a BLOB), then run `tidemark migrate`") }
        case (.bytea, .blob): s.withColumnBytes(Int32(i)) { b.raw(Array($0)) }
        case (.numeric, .integer): try b.numeric(decimal: String(s.columnInt64(Int32(i))))
        case (.numeric, .real):
            let d = s.columnDouble(Int32(i))
            guard d.isFinite, !(d == 0 && d.sign == .minus) else { throw refusal(i, .real(d), key: keyOf(s)) }
            try b.numeric(decimal: Self.decimal(d))
        default:
            throw refusal(i, s.columnValue(Int32(i)), key: keyOf(s))
        }
    }

    /// Folds one change into the open batch (see ``folded``); a value the
    /// target cannot hold is refused here, at its change, as unfolded.
    private func fold(_ r: ChangeRecord) throws {
        if folded.isEmpty { store.markDirty(self) }
        switch r.operation {
        case .insert, .update:
            guard let after = r.after else { return }
            let row = try targetRow(after, lsn: r.lsn)
            var image: [UInt8] = []
            image.reserveCapacity(min(imageCapacity, 1_024))
            for (i, v) in row.enumerated() {
                guard try appendElement(v, column: i, to: &image) else { throw refusal(i, v, key: try keyValues(r), lsn: r.lsn) }
            }
            imageCapacity = image.count
            folded[keyPositions.map { row[$0] }] = .some(image)
        case .delete:
            let key = try keyValues(r)
            for (k, v) in key.enumerated() where try element(v, column: keyPositions[k]) == nil { return }  // a key no row can have
            folded[key] = .some(nil)
        }
        if folded.count >= PostgresStore.foldedSendKeys { try flushFolded() }
    }

    /// The target row of an after image: values in target column order.
    private func targetRow(_ image: [Field], lsn: LSN) throws -> [Value] {
        if let select = imageSelect, let update = imageUpdate {
            update.reset()
            try SourceImage.bind(image, mapping: mapping, positions: sourcePosition, lsn: lsn, to: update)
            try update.execute()
            update.reset()
            select.reset()
            defer { select.reset() }
            guard try select.step() else { return [] }
            return (0..<columnNames.count).map { select.columnValue(Int32($0)) }
        }
        if imageHints.count != mapping.columns.count { imageHints = Array(repeating: 0, count: mapping.columns.count) }
        var row: [Value] = []
        row.reserveCapacity(mapping.columns.count)
        for (j, c) in mapping.columns.enumerated() {
            let name = c.sourceColumn ?? c.target
            // Column names are unique in a table, so an exact match at the
            // hinted place is the one the search below would find.
            let hint = imageHints[j]
            if hint < image.count, image[hint].name == name {
                row.append(image[hint].value)
                continue
            }
            guard let k = image.firstIndex(where: { $0.name == name }) ?? image.firstIndex(where: { $0.name.lowercased() == name.lowercased() }) else {
                throw MigrationError(.logGap, "change at LSN \(lsn) of '\(mapping.source.name)' lacks column '\(name)'; was the table altered? Re-run capture install and restart the migration")
            }
            imageHints[j] = k
            row.append(image[k].value)
        }
        return row
    }

    /// Where each mapped column was in the last after image (a table's
    /// images list their columns in one order): looked at first.
    private var imageHints: [Int] = []

    func apply(_ r: ChangeRecord) throws {
        if batchUpsertName != nil && !store.careful {
            try fold(r)
            return
        }
        switch r.operation {
        case .insert, .update:
            guard let after = r.after else { return }
            let row = try targetRow(after, lsn: r.lsn)
            var params: [PGParam] = []
            params.reserveCapacity(row.count)
            for (i, v) in row.enumerated() {
                guard let p = param(v, column: i) else { throw refusal(i, v, key: try keyValues(r), lsn: r.lsn) }
                params.append(p)
            }
            try store.enqueue(upsertName, params, record: r, table: mapping.targetTable)
        case .delete:
            let key = try keyValues(r)
            var params: [PGParam] = []
            for (k, v) in key.enumerated() {
                guard let p = param(v, column: keyPositions[k]) else { return }  // a key no row can have
                params.append(p)
            }
            try store.enqueue(deleteName, params, record: r, table: mapping.targetTable)
        }
    }
}
