import TidemarkLog
import TidemarkSQLite

/// Where a table's copy stands.
public enum CopyPhase: String, Sendable {
    /// Copy not started; its changes are skipped (the copy will read them).
    case pending
    /// Chunks being copied between the tidemark and the ceiling.
    case copying
    /// Copied; every change is replayed.
    case following
}

/// Per-table migration state, stored in the target.
public struct TableState: Sendable, Equatable {
    public var sourceTable: String
    public var targetTable: String
    public var position: Int
    public var phase: CopyPhase
    /// Highest key copied so far (nil: nothing copied yet).
    public var tidemark: [Value]?
    /// Highest key when the copy started (nil: the table was empty or copy not started).
    public var ceiling: [Value]?
    public var rowsCopied: Int
    public var rowsEstimate: Int
}

/// The migration's durable state: stored in the target, in the same
/// transaction as the changes it describes, so a crash at any point resumes
/// exactly where the last commit left off.
public struct MigrationState: Sendable, Equatable {
    public var sourceID: String
    public var sourcePath: String
    /// Every logged change with LSN <= this is reflected in the target
    /// (for tables past `pending`, subject to the tidemark rule).
    public var appliedLSN: LSN
    /// Commit time of the change at `appliedLSN` (µs), for lag in time.
    public var appliedTimestampMicros: Int64
    public var startedAtMicros: Int64
    public var caughtUpAtMicros: Int64?
    public var tables: [TableState]
    /// The cutover journal (nil: no cutover has begun).
    public var cutover: CutoverState?
    /// Reverse capture: target outbox `seq` at the switch; rollback replays
    /// the target's changes after it back into the source.
    public var reverseFromSeq: Int64?
    /// The resolved plan this migration was started with (nil only for a
    /// migration begun by a version that did not store it; the next
    /// `migrate` adopts the current plan then).
    public var plan: PlanRecord?
    /// When every table finished its copy, and the applied LSN then: a
    /// verify only proves the migration when it started after this.
    public var copiedAtMicros: Int64?
    public var copiedLSN: LSN?
    /// The last `tidemark verify` that ran to its end.
    public var verification: VerifyRecord?
    /// When a cutover was allowed without a clean verify (`--skip-verify`).
    public var skipVerifyAtMicros: Int64?
    /// The step the target refused last (a replayed change that breaks a
    /// constraint, a chunk, a unique index that cannot be built): kept in
    /// its own small transaction after the step rolled back, so `status`
    /// shows why the migration stands still; cleared by the next step that
    /// commits.
    public var blocked: BlockedStep?
    /// Live control: a pause `tidemark pause` asked for, and what a running
    /// `migrate` or postponed `cutover` waits for now (see LiveControl.swift).
    public var live = LiveControlState()

    /// Tables in copy order.
    public func table(_ source: String) -> TableState? {
        tables.first { $0.sourceTable.lowercased() == source.lowercased() }
    }
}

/// A step the target refused (see ``MigrationState/blocked``).
public struct BlockedStep: Sendable, Equatable {
    /// The refused change's LSN (nil when a chunk or an index build was refused).
    public var lsn: LSN?
    /// The one line `migrate` printed: table, key, constraint, LSN, what to do.
    public var message: String
    public var atMicros: Int64

    public init(lsn: LSN?, message: String, atMicros: Int64) {
        self.lsn = lsn
        self.message = message
        self.atMicros = atMicros
    }
}

/// What the last complete `tidemark verify` found, kept so that cutover can
/// require a clean one made after the copy finished.
public struct VerifyRecord: Sendable, Equatable {
    /// When the verify started (µs since the epoch).
    public var atMicros: Int64
    /// Applied LSN in the target when it started and when it ended: the
    /// changes it covered.
    public var fromLSN: LSN
    public var throughLSN: LSN
    /// Missing + extra + different rows, plus keys still changing (unsettled).
    public var differences: Int

    public var isClean: Bool { differences == 0 }

    public init(atMicros: Int64, fromLSN: LSN, throughLSN: LSN, differences: Int) {
        self.atMicros = atMicros
        self.fromLSN = fromLSN
        self.throughLSN = throughLSN
        self.differences = differences
    }
}

/// Encoding of key tuples for the state tables: SQLite `quote()` literals,
/// comma-separated, so every storage class round-trips exactly.
enum KeyTuple {
    static func encode(_ values: [Value]) -> String {
        values.map(QuotedValue.literal).joined(separator: ",")
    }

    static func decode(_ text: String) throws -> [Value] {
        do {
            return try QuotedValue.parseList(text)
        } catch {
            throw MigrationError(.foreignState, "stored key tuple '\(text)' is unreadable: \(error)")
        }
    }
}

/// The state tables, created in the target database.
///
/// ```
/// _tidemark_migration          one row: source id, applied LSN, times
/// _tidemark_migration_tables   one row per table: phase, tidemark, ceiling, counts
/// ```
enum StateTables {
    static let migration = "_tidemark_migration"
    static let tables = "_tidemark_migration_tables"

    static let createSQL = """
        CREATE TABLE IF NOT EXISTS \(migration)(
          id INTEGER PRIMARY KEY CHECK (id = 1),
          source_id TEXT NOT NULL,
          source_path TEXT NOT NULL,
          applied_lsn INTEGER NOT NULL,
          applied_ts INTEGER NOT NULL,
          started_at INTEGER NOT NULL,
          caught_up_at INTEGER,
          cutover_state TEXT CHECK (cutover_state IN ('prepared', 'done', 'rolled-back')),
          cutover_lsn INTEGER,
          cutover_at INTEGER,
          cutover_pause_us INTEGER,
          reverse_from INTEGER,
          \(laterColumns.map { "\($0.name) \($0.type)" }.joined(separator: ",\n  ")));
        CREATE TABLE IF NOT EXISTS \(tables)(
          source_table TEXT PRIMARY KEY,
          target_table TEXT NOT NULL,
          position INTEGER NOT NULL,
          phase TEXT NOT NULL CHECK (phase IN ('pending', 'copying', 'following')),
          tidemark TEXT,
          ceiling TEXT,
          rows_copied INTEGER NOT NULL DEFAULT 0,
          rows_estimate INTEGER NOT NULL DEFAULT 0,
          added_columns TEXT NOT NULL DEFAULT '',
          created INTEGER NOT NULL DEFAULT 0,
          adopted_columns TEXT NOT NULL DEFAULT '');
        """

    /// Columns of `_tidemark_migration` added after its first version: a
    /// target written by an older Tidemark gets them from ``upgrade(_:)``,
    /// and ``load(_:)`` reads them only where they exist (status stays
    /// read-only).
    static let laterColumns: [(name: String, type: String)] = [
        ("plan_fingerprint", "TEXT"), ("plan_json", "TEXT"),
        ("copied_at", "INTEGER"), ("copied_lsn", "INTEGER"),
        ("verified_at", "INTEGER"), ("verified_from_lsn", "INTEGER"), ("verified_through_lsn", "INTEGER"),
        ("verified_differences", "INTEGER"), ("skip_verify_at", "INTEGER"),
        ("blocked_lsn", "INTEGER"), ("blocked_message", "TEXT"), ("blocked_at", "INTEGER"),
    ] + liveColumns

    /// Columns of `_tidemark_migration_tables` added after its first version.
    static let laterTableColumns: [(name: String, type: String)] = [
        ("adopted_columns", "TEXT NOT NULL DEFAULT ''"),
    ]

    /// Adds the ``laterColumns`` an older state table lacks.
    static func upgrade(_ c: Connection) throws {
        guard try exists(c) else { return }
        let have = try presentColumns(c)
        for col in laterColumns where !have.contains(col.name) {
            try c.execute("ALTER TABLE \(migration) ADD COLUMN \(col.name) \(col.type)")
        }
        let haveTables = try presentColumns(c, of: tables)
        for col in laterTableColumns where !haveTables.contains(col.name) {
            try c.execute("ALTER TABLE \(tables) ADD COLUMN \(col.name) \(col.type)")
        }
    }

    private static func presentColumns(_ c: Connection, of table: String = migration) throws -> Set<String> {
        Set(try c.prepare("SELECT name FROM pragma_table_info('\(table)')").rows { $0.columnText(0) })
    }

    static func exists(_ c: Connection) throws -> Bool {
        try Schema.table(named: migration, in: c) != nil
    }

    /// The stored applied LSN and cutover journal only: one cached
    /// single-row read, for the replay loop's per-transaction check.
    static func position(_ c: Connection) throws -> (applied: LSN, cutover: CutoverState.Kind?)? {
        let s = try c.cachedStatement("SELECT applied_lsn, cutover_state FROM \(migration) WHERE id = 1")
        defer { s.reset() }
        guard try s.step() else { return nil }
        return (LSN(UInt64(max(0, s.columnInt64(0)))), s.columnIsNull(1) ? nil : CutoverState.Kind(rawValue: s.columnText(1)))
    }

    static func load(_ c: Connection) throws -> MigrationState? {
        guard try exists(c) else { return nil }
        let m = try c.prepare("SELECT source_id, source_path, applied_lsn, applied_ts, started_at, caught_up_at, cutover_state, cutover_lsn, cutover_at, cutover_pause_us, reverse_from FROM \(migration) WHERE id = 1")
        guard try m.step() else { return nil }
        func optional(_ i: Int32) -> Int64? { m.columnIsNull(i) ? nil : m.columnInt64(i) }
        var state = MigrationState(
            sourceID: m.columnText(0), sourcePath: m.columnText(1), appliedLSN: LSN(UInt64(m.columnInt64(2))),
            appliedTimestampMicros: m.columnInt64(3), startedAtMicros: m.columnInt64(4),
            caughtUpAtMicros: optional(5), tables: [],
            cutover: try CutoverState(stored: m.columnIsNull(6) ? nil : m.columnText(6), lsn: optional(7).map { LSN(UInt64($0)) },
                                      atMicros: optional(8), pauseMicros: optional(9)),
            reverseFromSeq: optional(10))
        // Each later column where it exists: `status` reads a target an
        // older Tidemark wrote without upgrading it (it stays read-only).
        let have = try presentColumns(c)
        let later = laterColumns.map(\.name).filter(have.contains)
        if !later.isEmpty {
            let l = try c.prepare("SELECT \(later.joined(separator: ", ")) FROM \(migration) WHERE id = 1")
            if try l.step() {
                var at: [String: Int32] = [:]
                for (i, name) in later.enumerated() { at[name] = Int32(i) }
                func int(_ name: String) -> Int64? { at[name].flatMap { l.columnIsNull($0) ? nil : l.columnInt64($0) } }
                func text(_ name: String) -> String? { at[name].flatMap { l.columnIsNull($0) ? nil : l.columnText($0) } }
                func lsn(_ name: String) -> LSN? { int(name).map { LSN(UInt64(max(0, $0))) } }
                if let fingerprint = text("plan_fingerprint"), let json = text("plan_json") {
                    state.plan = PlanRecord(fingerprint: fingerprint, json: json)
                }
                state.copiedAtMicros = int("copied_at")
                state.copiedLSN = lsn("copied_lsn")
                if let at = int("verified_at"), let from = lsn("verified_from_lsn"), let through = lsn("verified_through_lsn"), let d = int("verified_differences") {
                    state.verification = VerifyRecord(atMicros: at, fromLSN: from, throughLSN: through, differences: Int(d))
                }
                state.skipVerifyAtMicros = int("skip_verify_at")
                if let message = text("blocked_message") {
                    state.blocked = BlockedStep(lsn: lsn("blocked_lsn"), message: message, atMicros: int("blocked_at") ?? 0)
                }
                state.live = LiveControlState(int: int, text: text)
            }
        }
        let t = try c.prepare("SELECT source_table, target_table, position, phase, tidemark, ceiling, rows_copied, rows_estimate FROM \(tables) ORDER BY position")
        while try t.step() {
            guard let phase = CopyPhase(rawValue: t.columnText(3)) else {
                throw MigrationError(.foreignState, "unknown phase '\(t.columnText(3))' in \(tables)")
            }
            state.tables.append(TableState(
                sourceTable: t.columnText(0), targetTable: t.columnText(1), position: Int(t.columnInt64(2)), phase: phase,
                tidemark: t.columnIsNull(4) ? nil : try KeyTuple.decode(t.columnText(4)),
                ceiling: t.columnIsNull(5) ? nil : try KeyTuple.decode(t.columnText(5)),
                rowsCopied: Int(t.columnInt64(6)), rowsEstimate: Int(t.columnInt64(7))))
        }
        return state
    }

    /// In-place columns this migration owns, per source table (lowercased):
    /// those it added and those it adopted (existing and empty when it
    /// began). Both may exist on a resume; only added ones are dropped by
    /// an abandon (see ``addedColumnsByTarget(_:)``).
    static func addedColumns(_ c: Connection) throws -> [String: Set<String>] {
        guard try exists(c) else { return [:] }
        let adopted = try presentColumns(c, of: tables).contains("adopted_columns")
        var out: [String: Set<String>] = [:]
        let s = try c.prepare("SELECT source_table, added_columns, \(adopted ? "adopted_columns" : "''") FROM \(tables)")
        while try s.step() {
            let cols = (s.columnText(1).split(separator: ",") + s.columnText(2).split(separator: ",")).map { String($0).lowercased() }
            out[s.columnText(0).lowercased()] = Set(cols)
        }
        return out
    }

    /// In-place columns this migration adopted: they existed (empty) before
    /// it, so an abandon keeps them and only empties them again.
    static func adoptedColumnsByTarget(_ c: Connection) throws -> [(table: String, columns: [String])] {
        guard try exists(c), try presentColumns(c, of: tables).contains("adopted_columns") else { return [] }
        return try c.prepare("SELECT target_table, adopted_columns FROM \(tables) WHERE adopted_columns <> ''").rows {
            ($0.columnText(0), $0.columnText(1).split(separator: ",").map(String.init))
        }
    }

    /// Target tables this migration created (dropped again by rollback).
    static func createdTables(_ c: Connection) throws -> [String] {
        guard try exists(c) else { return [] }
        return try c.prepare("SELECT target_table FROM \(tables) WHERE created = 1").rows { $0.columnText(0) }
    }

    static func addedColumnsByTarget(_ c: Connection) throws -> [(table: String, columns: [String])] {
        guard try exists(c) else { return [] }
        return try c.prepare("SELECT target_table, added_columns FROM \(tables) WHERE added_columns <> ''").rows {
            ($0.columnText(0), $0.columnText(1).split(separator: ",").map(String.init))
        }
    }

    static func saveCutover(_ state: MigrationState, in c: Connection) throws {
        let m = try c.cachedStatement("UPDATE \(migration) SET cutover_state = ?, cutover_lsn = ?, cutover_at = ?, cutover_pause_us = ?, reverse_from = ? WHERE id = 1")
        let c = state.cutover?.stored
        try m.execute([c.map { .text($0.state) } ?? .null, c?.lsn.map { .integer(Int64($0.rawValue)) } ?? .null,
                       c?.atMicros.map { .integer($0) } ?? .null, c?.pauseMicros.map { .integer($0) } ?? .null,
                       state.reverseFromSeq.map { .integer($0) } ?? .null])
    }

    static func insert(_ state: MigrationState, addedColumns: [String: [String]], adoptedColumns: [String: [String]] = [:],
                       created: Set<String> = [], into c: Connection) throws {
        try c.execute(createSQL)
        let m = try c.prepare("INSERT INTO \(migration)(id, source_id, source_path, applied_lsn, applied_ts, started_at) VALUES (1, ?, ?, ?, ?, ?)")
        try m.execute([.text(state.sourceID), .text(state.sourcePath), .integer(Int64(state.appliedLSN.rawValue)),
                       .integer(state.appliedTimestampMicros), .integer(state.startedAtMicros)])
        if let plan = state.plan { try storePlan(plan, in: c) }
        let t = try c.prepare("INSERT INTO \(tables)(source_table, target_table, position, phase, added_columns, created, adopted_columns) VALUES (?, ?, ?, ?, ?, ?, ?)")
        for ts in state.tables {
            try t.execute([.text(ts.sourceTable), .text(ts.targetTable), .integer(Int64(ts.position)), .text(ts.phase.rawValue),
                           .text((addedColumns[ts.sourceTable] ?? []).joined(separator: ",")),
                           .integer(created.contains(ts.sourceTable) ? 1 : 0),
                           .text((adoptedColumns[ts.sourceTable] ?? []).joined(separator: ","))])
        }
    }

    /// Saves the applied position and one table's progress (inside the
    /// caller's transaction, beside the target rows it describes).
    ///
    /// Invariant: the stored applied LSN never moves backwards. The UPDATE
    /// only matches while the stored position is at or below the new one; a
    /// caller holding an older position than the target (another process
    /// applied more since this one last read the state) gets an error, and
    /// its transaction, rows included, rolls back. Writing the older
    /// position would make the next run apply those changes a second time,
    /// out of order (a UNIQUE constraint then stops it for good).
    static func save(_ state: MigrationState, table: TableState?, in c: Connection) throws {
        let m = try c.cachedStatement("UPDATE \(migration) SET applied_lsn = ?1, applied_ts = ?2, caught_up_at = coalesce(caught_up_at, ?3) WHERE id = 1 AND applied_lsn <= ?1")
        try m.execute([.integer(Int64(state.appliedLSN.rawValue)), .integer(state.appliedTimestampMicros),
                       state.caughtUpAtMicros.map { .integer($0) } ?? .null])
        if c.changes != 1 {
            let stored = try position(c)?.applied
            throw MigrationError(.foreignState, "the target's applied LSN is \(stored.map { "\($0)" } ?? "missing"), past this process's \(state.appliedLSN): another process applied changes meanwhile; nothing was written — run the command again")
        }
        guard let table else { return }
        let t = try c.cachedStatement("UPDATE \(tables) SET phase = ?, tidemark = ?, ceiling = ?, rows_copied = ?, rows_estimate = ? WHERE source_table = ?")
        try t.execute([.text(table.phase.rawValue), table.tidemark.map { .text(KeyTuple.encode($0)) } ?? .null,
                       table.ceiling.map { .text(KeyTuple.encode($0)) } ?? .null,
                       .integer(Int64(table.rowsCopied)), .integer(Int64(table.rowsEstimate)), .text(table.sourceTable)])
    }
}

extension StateTables {
    /// Records the first catch-up, touching nothing else: the applied
    /// position moves only beside the rows it describes (``save(_:table:in:)``).
    static func recordCaughtUp(atMicros: Int64, in c: Connection) throws {
        try c.cachedStatement("UPDATE \(migration) SET caught_up_at = ? WHERE id = 1 AND caught_up_at IS NULL").execute([.integer(atMicros)])
    }

    /// Records that every table finished its copy (once; inside the
    /// transaction that moved the last table to `following`).
    static func recordCopied(atMicros: Int64, lsn: LSN, in c: Connection) throws {
        try c.cachedStatement("UPDATE \(migration) SET copied_at = ?, copied_lsn = ? WHERE id = 1 AND copied_at IS NULL")
            .execute([.integer(atMicros), .integer(Int64(lsn.rawValue))])
    }

    static func recordVerify(_ v: VerifyRecord, in c: Connection) throws {
        try c.prepare("UPDATE \(migration) SET verified_at = ?, verified_from_lsn = ?, verified_through_lsn = ?, verified_differences = ? WHERE id = 1")
            .execute([.integer(v.atMicros), .integer(Int64(v.fromLSN.rawValue)), .integer(Int64(v.throughLSN.rawValue)), .integer(Int64(v.differences))])
    }

    /// Forgets the last verify, so that cutover needs a fresh one: for
    /// whatever makes an earlier proof worthless (say, replaying across a
    /// repaired gap in the log). Inside the caller's transaction.
    static func invalidateVerify(in c: Connection) throws {
        try c.prepare("UPDATE \(migration) SET verified_at = NULL, verified_from_lsn = NULL, verified_through_lsn = NULL, verified_differences = NULL WHERE id = 1").execute()
    }

    static func recordSkipVerify(atMicros: Int64, in c: Connection) throws {
        try c.prepare("UPDATE \(migration) SET skip_verify_at = ? WHERE id = 1").execute([.integer(atMicros)])
    }

    /// Records a refused step (its own small transaction, after the step
    /// rolled back).
    static func recordBlocked(_ b: BlockedStep, in c: Connection) throws {
        try c.prepare("UPDATE \(migration) SET blocked_lsn = ?, blocked_message = ?, blocked_at = ? WHERE id = 1")
            .execute([b.lsn.map { .integer(Int64($0.rawValue)) } ?? .null, .text(b.message), .integer(b.atMicros)])
    }

    /// Forgets a refused step: in the transaction of the next step that commits.
    static func clearBlocked(in c: Connection) throws {
        try c.prepare("UPDATE \(migration) SET blocked_lsn = NULL, blocked_message = NULL, blocked_at = NULL WHERE id = 1").execute()
    }

    static func storePlan(_ p: PlanRecord, in c: Connection) throws {
        try c.prepare("UPDATE \(migration) SET plan_fingerprint = ?, plan_json = ? WHERE id = 1").execute([.text(p.fingerprint), .text(p.json)])
    }

    /// Every table the migration state lives in, for removing it whole.
    public static let all = [tables, migration]
}
