#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TidemarkLog
import TidemarkSQLite

/// Proves the target equals the transformed source while writers keep
/// writing, without a long transaction on either side.
///
/// Per table, in source-key chunks:
/// 1. Open a target read transaction and read the applied LSN `L` stored
///    there; hash the chunk's target rows.
/// 2. Open a source read transaction and read the capture high-water `S`
///    (`S >= L`: the target never applies what was not captured); hash the
///    chunk's transformed source rows.
/// 3. Equal hashes: the chunk is equal. Otherwise stream both sides again
///    (same snapshots) and list differing keys. A key whose row changed in
///    the log between `L` and `S` is *in flight* — the two snapshots are of
///    different moments for it — and the chunk is checked again (bounded
///    passes). Every other differing key is a real difference.
///
/// So a correct migration under load reports nothing, and an injected
/// difference is reported with its exact key.
public struct Verifier {
    public struct Options: Sendable {
        public var chunkRows = 10_000
        /// How often a chunk with only in-flight differences is re-checked.
        public var passesMax = 20
        /// Example keys kept per kind of difference and table.
        public var keysMax = 100
        /// Record the outcome in the migration state (what cutover checks).
        public var record = true
        /// Read both sides' values of each kept key once the table is
        /// compared (``TableReport/values``).
        public var showValues = false
        public init() {}
    }

    /// Both sides of one differing key, read again after its table was
    /// compared (in one fresh pair of snapshots, like a re-check), so what
    /// is shown is what the two stores hold now.
    public struct DifferingRow: Sendable, Equatable {
        /// The key (the source's key columns).
        public var key: [Value]
        /// The source row, transformed by the plan, by target column (nil: none).
        public var source: [Field]?
        /// The target row by column (nil: none).
        public var target: [Field]?
        /// The columns whose values differ, when both rows exist.
        public var columns: [ColumnDifference]

        /// What the two rows are now.
        public enum State: String, Sendable {
            case onlyInSource = "only in the source"
            case onlyInTarget = "only in the target"
            case different
            /// Equal, or gone from both, when read again (it changed meanwhile).
            case settled
        }

        public var state: State {
            switch (source, target) {
            case (.some, nil): .onlyInSource
            case (nil, .some): .onlyInTarget
            case (.some, .some) where !columns.isEmpty: .different
            default: .settled
            }
        }
    }

    /// One column of a differing key: its source and target values.
    public struct ColumnDifference: Sendable, Equatable {
        public var column: String
        public var source: Value
        public var target: Value
    }

    public struct TableReport: Sendable {
        public var source: String
        public var target: String
        public var rows = 0
        public var chunks = 0
        public var chunksRechecked = 0
        public var missing: [[Value]] = []
        public var extra: [[Value]] = []
        public var different: [[Value]] = []
        public var missingCount = 0
        public var extraCount = 0
        public var differentCount = 0
        /// Keys still changing after every pass (not counted as differences).
        public var unsettled: [[Value]] = []
        /// Target rows whose parent row is missing (`PRAGMA foreign_key_check`
        /// on the target table), the first `keysMax` of them.
        public var foreignKeys: [ForeignKeyViolation] = []
        public var foreignKeyCount = 0
        /// The source key's column names (keys above are in this order).
        public var keyColumns: [String] = []
        /// With ``Options/showValues``: both sides of each kept missing,
        /// extra and different key, in that order.
        public var values: [DifferingRow] = []
        public var isEqual: Bool { missingCount == 0 && extraCount == 0 && differentCount == 0 && unsettled.isEmpty && foreignKeyCount == 0 }
    }

    /// A target row whose foreign key names no parent row.
    public struct ForeignKeyViolation: Sendable, Equatable {
        /// The row's key (empty when the table has no rowid to find it by).
        public var key: [Value]
        /// The target row's rowid; nil in a WITHOUT ROWID table.
        public var rowid: Int64?
        /// The parent table the foreign key names.
        public var parent: String
    }

    public struct Report: Sendable {
        public var tables: [TableReport]
        public var seconds: Double
        public var isEqual: Bool { tables.allSatisfy(\.isEqual) }
        public var rows: Int { tables.reduce(0) { $0 + $1.rows } }
    }

    let plan: Plan
    let options: Options

    public init(plan: Plan, options: Options = Options()) {
        self.plan = plan
        self.options = options
    }

    /// A verify compares only a migration that has caught up, and only
    /// against the plan it was started with (another would compare, and
    /// record, the wrong thing). Both stores' verifies check this first.
    static func checkVerifiable(_ state: MigrationState?, plan: Plan, mappings: [TableMapping]) throws {
        guard let state else { return }
        for t in state.tables where t.phase != .following {
            throw MigrationError(.badPlan, "table \(t.sourceTable) is still \(t.phase.rawValue); verify after `tidemark migrate` has caught up")
        }
        if let stored = state.plan {
            let current = PlanRecord.make(plan: plan, mappings: mappings)
            if stored.fingerprint != current.fingerprint { throw PlanRecord.mismatch(stored: stored, current: current) }
        }
    }

    public func run(progress: (String, Int) -> Void = { _, _ in }) throws -> Report {
        // A PostgreSQL target: the same contract, see PostgresVerifier.
        if plan.isPostgres { return try PostgresVerifier(plan: plan, options: options).run(progress: progress) }
        let start = Clock.monotonicNanos()
        guard FileSystemCheck.exists(plan.source) else { throw MigrationError(.missingTable, "source database \(plan.source) does not exist") }
        guard FileSystemCheck.exists(plan.target) else { throw MigrationError(.missingTable, "target database \(plan.target) does not exist; run `tidemark migrate` first") }
        let source = try Connection(path: plan.source, mode: .readOnly)
        let target = try Connection(path: plan.target, mode: .readOnly)
        let state = try StateTables.load(target)
        let mappings = try PlanResolver.resolve(plan, source: source, target: source,
                                                ownedColumns: try StateTables.addedColumns(target))
        try Self.checkVerifiable(state, plan: plan, mappings: mappings)
        if let m = mappings.first(where: { TableSwap.isSwap($0, plan: plan) }), try TableSwap.isSwapped(m.source.name, in: source) {
            throw MigrationError(.cutOver, "\(m.source.name) was swapped in at cutover (its old table is \(TablePlan.asideName(of: m.source.name))), so there is no shadow left to compare; nothing was verified — `tidemark status` names the next step")
        }
        let startedAtMicros = Clock.wallMicros()
        let fromLSN = try StateTables.position(target)?.applied ?? .zero
        let reader = LogDirectory(plan.log).exists ? try LogReader(directory: plan.log) : nil
        var reports: [TableReport] = []
        for m in mappings {
            try Interruption.check("verifying before \(m.source.name); nothing recorded, verify again")
            var r = try verify(m, source: source, target: target, reader: reader, progress: progress)
            // Copy and replay run with foreign keys off (rows arrive in key
            // order, not parent-first), so this is where they are proven.
            if m.shape == .copy { try checkForeignKeys(m, source: source, target: target, report: &r) }
            reports.append(r)
        }
        let report = Report(tables: reports, seconds: Double(Clock.monotonicNanos() - start) / 1e9)
        if state != nil && options.record {
            // What cutover requires: the verify's start (time and applied
            // LSN) and its outcome. Unsettled keys count as differences: they
            // prove nothing.
            let through = try StateTables.position(target)?.applied ?? fromLSN
            let differences = reports.reduce(0) { $0 + $1.missingCount + $1.extraCount + $1.differentCount + $1.unsettled.count + $1.foreignKeyCount }
            let writer = try Connection(path: plan.target, mode: .readWrite)
            defer { try? writer.close() }
            try writer.transaction(.immediate) {
                try StateTables.upgrade(writer)
                try StateTables.recordVerify(VerifyRecord(atMicros: startedAtMicros, fromLSN: fromLSN, throughLSN: through, differences: differences), in: writer)
            }
        }
        return report
    }

    private func verify(_ m: TableMapping, source: Connection, target: Connection, reader: LogReader?, progress: (String, Int) -> Void) throws -> TableReport {
        let q = quoteIdentifier
        var report = TableReport(source: m.source.name, target: m.targetTable)
        report.keyColumns = m.sourceKey
        let n = m.sourceKey.count
        let srcKey = m.sourceKey.map(q).joined(separator: ", ")
        let tgtKey = m.targetKey.map(q).joined(separator: ", ")
        let srcKeyTuple = n == 1 ? srcKey : "(\(srcKey))"
        let tgtKeyTuple = n == 1 ? tgtKey : "(\(tgtKey))"
        func params(_ start: Int) -> String {
            let p = (0..<n).map { "?\(start + $0)" }.joined(separator: ", ")
            return n == 1 ? p : "(\(p))"
        }
        let exprs = m.columns.map { "(\($0.expression))" }.joined(separator: ", ")
        let tcols = m.columns.map { q($0.target) }.joined(separator: ", ")
        // Statements for each combination of open/closed chunk bounds.
        func select(_ from: String, _ key: String, _ keyTuple: String, _ cols: String, lower: Bool, upper: Bool, conn: Connection) throws -> Statement {
            var conds: [String] = []
            if lower { conds.append("\(keyTuple) > \(params(1))") }
            if upper { conds.append("\(keyTuple) <= \(params(lower ? n + 1 : 1))") }
            let whereSQL = conds.isEmpty ? "" : " WHERE " + conds.joined(separator: " AND ")
            return try conn.prepare("SELECT \(key), \(cols) FROM \(from)\(whereSQL) ORDER BY \(key)")
        }
        // Index (lower ? 2 : 0) + (upper ? 1 : 0).
        var srcStatements: [Statement] = []
        var tgtStatements: [Statement] = []
        for lower in [false, true] {
            for upper in [false, true] {
                srcStatements.append(try select(q(m.source.name), srcKey, srcKeyTuple, exprs, lower: lower, upper: upper, conn: source))
                tgtStatements.append(try select(q(m.targetTable), tgtKey, tgtKeyTuple, tcols, lower: lower, upper: upper, conn: target))
            }
        }
        // The chunk scans: the next `chunkRows` rows after the lower bound
        // (none for the first chunk), on each side. The source's last key is
        // the chunk's upper bound, so no separate scan is needed to find it.
        func scan(_ from: String, _ key: String, _ keyTuple: String, _ cols: String, lower: Bool, conn: Connection) throws -> Statement {
            let whereSQL = lower ? " WHERE \(keyTuple) > \(params(1))" : ""
            return try conn.prepare("SELECT \(key), \(cols) FROM \(from)\(whereSQL) ORDER BY \(key) LIMIT ?\(lower ? n + 1 : 1)")
        }
        let srcScans = [try scan(q(m.source.name), srcKey, srcKeyTuple, exprs, lower: false, conn: source),
                        try scan(q(m.source.name), srcKey, srcKeyTuple, exprs, lower: true, conn: source)]
        let tgtScans = [try scan(q(m.targetTable), tgtKey, tgtKeyTuple, tcols, lower: false, conn: target),
                        try scan(q(m.targetTable), tgtKey, tgtKeyTuple, tcols, lower: true, conn: target)]
        let greater = try TableStatements.keyComparator(m, connection: source)
        let appliedStatement = try StateTables.exists(target) ? try target.prepare("SELECT applied_lsn FROM \(StateTables.migration) WHERE id = 1") : nil
        // Reading the schema version starts the target's read transaction
        // (its WAL snapshot) when there is no applied LSN to read.
        let snapshotStatement = try target.prepare("PRAGMA schema_version")

        var lo: [Value]? = nil
        while true {
            try Interruption.check("verifying \(m.source.name) after \(report.rows) rows; nothing recorded, verify again")
            let outcome = try compareChunk(lo: lo, srcScan: srcScans[lo == nil ? 0 : 1], tgtScan: tgtScans[lo == nil ? 0 : 1],
                                           srcStatements: srcStatements, tgtStatements: tgtStatements, keyCount: n,
                                           source: source, target: target, applied: appliedStatement, snapshot: snapshotStatement,
                                           greater: greater)
            report.rows += outcome.rows
            report.chunks += 1
            if !outcome.diff.isEmpty {
                report.chunksRechecked += 1
                // Keys changed between the two snapshots are in flight; they
                // are re-checked one by one below, so a real difference cannot
                // hide behind a concurrent change.
                var pending: [Difference] = []
                let inFlight = try Self.changedKeys(m, after: outcome.applied, through: outcome.captured, reader: reader)
                for d in outcome.diff {
                    if let inFlight, !inFlight.contains(d.key) { record(d, in: &report) } else { pending.append(d) }
                }
                try recheck(pending, m: m, source: source, target: target, applied: appliedStatement, reader: reader, report: &report)
            }
            progress(m.source.name, report.rows)
            guard let hi = outcome.upper else { break }
            lo = hi
        }
        if options.showValues {
            try Self.showValues(&report, m: m, same: ValueRows.same, read: try pointReads(m, source: source, target: target, applied: appliedStatement))
        }
        return report
    }

    /// Fills ``TableReport/values`` for the keys `report` kept: one paired
    /// look at both sides (`read`, as a re-check takes it), then the columns
    /// that differ by `same`. Shared by the SQLite and PostgreSQL verifies.
    static func showValues(_ report: inout TableReport, m: TableMapping, same: (Value, Value) -> Bool,
                           read: ([[Value]]) throws -> PairedRead) throws {
        let keys = report.missing + report.extra + report.different
        guard !keys.isEmpty else { return }
        let look = try read(keys)
        let n = m.sourceKey.count
        let names = m.columns.map(\.target)
        // Rows are key columns first, then one value per mapped column.
        func fields(_ row: [Value]?) -> [Field]? {
            row.map { zip(names, $0.dropFirst(n)).map { Field($0, $1) } }
        }
        for (i, key) in keys.enumerated() {
            var row = DifferingRow(key: key, source: fields(look.source[i]), target: fields(look.target[i]), columns: [])
            if let a = row.source, let b = row.target {
                row.columns = zip(a, b).filter { !same($0.value, $1.value) }.map { ColumnDifference(column: $0.name, source: $0.value, target: $1.value) }
            }
            report.values.append(row)
        }
    }

    /// Target rows of `m` whose parent is missing. A row whose parent is
    /// applied a moment later (a replay step between the two) is not one:
    /// only rows found again after the target has applied everything the
    /// source had captured at the first look are counted.
    private func checkForeignKeys(_ m: TableMapping, source: Connection, target: Connection, report: inout TableReport) throws {
        let q = quoteIdentifier
        struct Hit: Hashable { var rowid: Int64?; var fkid: Int64; var parent: String }
        func look() throws -> [Hit] {
            do {
                let s = try target.prepare("PRAGMA foreign_key_check(\(q(m.targetTable)))")
                return try s.rows { Hit(rowid: $0.columnIsNull(1) ? nil : $0.columnInt64(1), fkid: $0.columnInt64(3), parent: $0.columnText(2)) }
            } catch {
                throw MigrationError(.constraint, "the foreign keys of target table \(m.targetTable) cannot be checked: \((error as? SQLiteError)?.message ?? "\(error)"); give the parent table a PRIMARY KEY or UNIQUE index on the referenced columns")
            }
        }
        var hits = try look()
        guard !hits.isEmpty else { return }
        let captured = LSN(UInt64(max(0, (try? Capture.lastCapturedSeq(source)) ?? 0)))
        let hasState = try StateTables.exists(target)
        let deadline = Clock.monotonicNanos() + 2_000_000_000
        while hasState, (try StateTables.position(target)?.applied ?? captured) < captured, Clock.monotonicNanos() < deadline {
            Clock.sleep(milliseconds: 20)
        }
        let again = Set(try look())
        hits = hits.filter { again.contains($0) }
        report.foreignKeyCount = hits.count
        if hits.contains(where: { $0.rowid == nil }) {
            // A WITHOUT ROWID table: no rowid to find the rows by: the keys come from a query per
            // foreign key (the count from the PRAGMA).
            let fks = try target.prepare("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq")
            try fks.bind([.text(m.targetTable)])
            var byID: [(id: Int64, parent: String, from: [String], to: [String])] = []
            while try fks.step() {
                let id = fks.columnInt64(0), to = fks.columnIsNull(3) ? "" : fks.columnText(3)
                if let i = byID.firstIndex(where: { $0.id == id }) { byID[i].from.append(fks.columnText(2)); byID[i].to.append(to) }
                else { byID.append((id, fks.columnText(1), [fks.columnText(2)], [to])) }
            }
            for fk in byID where hits.contains(where: { $0.fkid == fk.id }) && report.foreignKeys.count < options.keysMax {
                for key in try ForeignKeyOrphans.keys(in: target, child: m.targetTable, key: m.targetKey, parent: fk.parent, from: fk.from, to: fk.to,
                                                      limit: options.keysMax - report.foreignKeys.count) {
                    report.foreignKeys.append(ForeignKeyViolation(key: key, rowid: nil, parent: fk.parent))
                }
            }
            return
        }
        let keyOf = try target.prepare("SELECT \(m.targetKey.map(q).joined(separator: ", ")) FROM \(q(m.targetTable)) WHERE rowid = ?1")
        for h in hits.prefix(options.keysMax) {
            var key: [Value] = []
            if let rowid = h.rowid {
                keyOf.reset()
                try keyOf.bind([.integer(rowid)])
                if try keyOf.step() { key = (0..<m.targetKey.count).map { keyOf.columnValue(Int32($0)) } }
                keyOf.reset()
            }
            report.foreignKeys.append(ForeignKeyViolation(key: key, rowid: h.rowid, parent: h.parent))
        }
    }

    private func record(_ d: Difference, in report: inout TableReport) {
        Self.record(d, in: &report, keysMax: options.keysMax)
    }

    /// Counts one real difference, keeping the first `keysMax` keys per kind.
    static func record(_ d: Difference, in report: inout TableReport, keysMax: Int) {
        switch d.kind {
        case .missing: report.missingCount += 1; if report.missing.count < keysMax { report.missing.append(d.key) }
        case .extra: report.extraCount += 1; if report.extra.count < keysMax { report.extra.append(d.key) }
        case .different: report.differentCount += 1; if report.different.count < keysMax { report.different.append(d.key) }
        }
    }

    /// Re-checks in-flight keys with point reads in fresh paired snapshots
    /// (see ``recheck(_:m:reader:options:report:same:read:capturedNow:)``).
    private func recheck(_ keys: [Difference], m: TableMapping, source: Connection, target: Connection, applied: Statement?,
                         reader: LogReader?, report: inout TableReport) throws {
        guard !keys.isEmpty else { return }
        try Self.recheck(keys, m: m, reader: reader, options: options, report: &report, same: ValueRows.same,
                         read: try pointReads(m, source: source, target: target, applied: applied),
                         capturedNow: { LSN(UInt64(max(0, try Capture.lastCapturedSeq(source)))) })
    }

    /// Point reads of keys of `m` in fresh paired snapshots: the target's
    /// first (with its applied LSN), then the source's (with its capture
    /// high-water mark).
    private func pointReads(_ m: TableMapping, source: Connection, target: Connection, applied: Statement?) throws -> ([[Value]]) throws -> PairedRead {
        let q = quoteIdentifier
        let srcWhere = m.sourceKey.enumerated().map { "\(q($0.element)) = ?\($0.offset + 1)" }.joined(separator: " AND ")
        let tgtWhere = m.targetKey.enumerated().map { "\(q($0.element)) = ?\($0.offset + 1)" }.joined(separator: " AND ")
        let exprs = m.columns.map { "(\($0.expression))" }.joined(separator: ", ")
        let srcRow = try source.prepare("SELECT \(m.sourceKey.map(q).joined(separator: ", ")), \(exprs) FROM \(q(m.source.name)) WHERE \(srcWhere)")
        let tgtRow = try target.prepare("SELECT \(m.targetKey.map(q).joined(separator: ", ")), \(m.columns.map { q($0.target) }.joined(separator: ", ")) FROM \(q(m.targetTable)) WHERE \(tgtWhere)")
        func read(_ s: Statement, _ key: [Value]) throws -> [Value]? {
            s.reset()
            try s.bind(key)
            defer { s.reset() }
            return try s.step() ? (0..<Int(s.columnCount)).map { s.columnValue(Int32($0)) } : nil
        }
        return { keys in
            try target.execute("BEGIN")
            var appliedLSN = LSN.zero
            if let applied {
                applied.reset()
                if try applied.step() { appliedLSN = LSN(UInt64(max(0, applied.columnInt64(0)))) }
                applied.reset()
            }
            let targetRows = try keys.map { try read(tgtRow, $0) }
            try target.execute("COMMIT")
            try source.execute("BEGIN")
            let captured = LSN(UInt64(max(0, try Capture.lastCapturedSeq(source))))
            let sourceRows = try keys.map { try read(srcRow, $0) }
            try source.execute("COMMIT")
            return PairedRead(applied: appliedLSN, captured: captured, source: sourceRows, target: targetRows)
        }
    }

    /// One look at some keys in paired snapshots: the target's (read first,
    /// with its applied LSN) and then the source's (with its capture
    /// high-water mark); rows key columns first, nil where the key has none.
    struct PairedRead {
        var applied: LSN
        var captured: LSN
        var source: [[Value]?]
        var target: [[Value]?]
    }

    /// Re-checks in-flight keys with point reads in fresh paired snapshots
    /// until each is equal, really different (differs while not in flight),
    /// or still changing after `passesMax` passes (unsettled). Shared by
    /// the SQLite and PostgreSQL verifies: `read` takes the paired look,
    /// `same` says whether two rows are equal.
    static func recheck(_ keys: [Difference], m: TableMapping, reader: LogReader?, options: Options, report: inout TableReport,
                        same: ([Value], [Value]) -> Bool, read: ([[Value]]) throws -> PairedRead,
                        capturedNow: () throws -> LSN) throws {
        guard !keys.isEmpty else { return }
        var pending = keys
        var pass = 0
        while !pending.isEmpty && pass < options.passesMax {
            pass += 1
            Clock.sleep(milliseconds: min(200, 5 * pass * pass))
            let look = try read(pending.map(\.key))
            let inFlight = try changedKeys(m, after: look.applied, through: look.captured, reader: reader)
            var still: [Difference] = []
            for (i, d) in pending.enumerated() {
                let a = look.source[i], b = look.target[i]
                switch (a, b) {
                case (nil, nil): continue  // settled: gone on both sides
                case let (x?, y?) where same(x, y): continue  // settled: equal
                default: break
                }
                let kind: Difference.Kind = a == nil ? .extra : b == nil ? .missing : .different
                if let inFlight, !inFlight.contains(d.key) {
                    record(Difference(kind: kind, key: d.key), in: &report, keysMax: options.keysMax)
                } else {
                    still.append(Difference(kind: kind, key: d.key))
                }
            }
            pending = still
        }
        if !pending.isEmpty, let reader, try reader.headLSN() < capturedNow() {
            throw MigrationError(.notCaughtUp, "the change log stays behind the source's captured changes, so differences cannot be told from changes in flight; keep `tidemark migrate --follow` (or `tidemark capture run`) running and verify again")
        }
        for d in pending where report.unsettled.count < options.keysMax { report.unsettled.append(d.key) }
    }

    struct Difference {
        typealias Kind = RowDiff.Kind
        var kind: Kind
        var key: [Value]
    }

    struct ChunkOutcome {
        var rows: Int
        var applied: LSN
        var captured: LSN
        var diff: [Difference]
        /// The chunk's inclusive upper key, where the next chunk starts; nil
        /// when the chunk reached the end of the source table.
        var upper: [Value]?
    }

    /// Compares the chunk after `lo` (from the start when nil) in paired
    /// snapshots; on a mismatch, lists the differing keys from the same
    /// snapshots.
    ///
    /// Snapshot order: a WAL read transaction takes its snapshot at its first
    /// read, not at `BEGIN`. The target's is taken first (reading its applied
    /// LSN `L`), then the source's (reading its capture high-water `S`), both
    /// on this thread and before any hashing starts; so the target's rows are
    /// never newer than the source's and every key that differs only because
    /// of the gap changed in (L, S]. Only then are the two sides hashed at
    /// once, the target on a second thread: each thread reads only its own
    /// connection, inside the snapshot already fixed.
    ///
    /// The chunk is the source's next `chunkRows` rows; the target's next
    /// `chunkRows` rows are hashed beside them. Equal hashes (keys included)
    /// and counts mean the same rows with the same keys, so both sides hold
    /// exactly these rows up to the source's last key, which is where the
    /// next chunk starts. Otherwise both sides are merged again over the
    /// source's range (lower, last key] — open above when the source ran
    /// out — so every target row is compared in exactly one chunk.
    private func compareChunk(lo: [Value]?, srcScan: Statement, tgtScan: Statement,
                              srcStatements: [Statement], tgtStatements: [Statement], keyCount n: Int,
                              source: Connection, target: Connection, applied: Statement?, snapshot: Statement,
                              greater: ([Value], [Value]) throws -> Bool) throws -> ChunkOutcome {
        try target.execute("BEGIN")
        defer { try? target.execute("COMMIT") }
        var appliedLSN = LSN.zero
        if let applied {
            applied.reset()
            if try applied.step() { appliedLSN = LSN(UInt64(max(0, applied.columnInt64(0)))) }
            applied.reset()
        } else {
            snapshot.reset()
            _ = try snapshot.step()
            snapshot.reset()
        }
        try source.execute("BEGIN")
        defer { try? source.execute("COMMIT") }
        let captured = LSN(UInt64(max(0, try Capture.lastCapturedSeq(source))))
        let limit = options.chunkRows
        let binds = (lo ?? []) + [.integer(Int64(limit))]
        let ((sHash, sRows, last), (tHash, tRows, _)) = try Self.bothAtOnce(
            { try Self.hash(srcScan, binds: binds, keyCount: n, keepKeyAtRow: limit) },
            { try Self.hash(tgtScan, binds: binds, keyCount: n, keepKeyAtRow: nil) })
        // A full chunk ends at its last key; a short one reached the end.
        let upper = sRows == limit ? last : nil
        if sHash == tHash && sRows == tRows {
            return ChunkOutcome(rows: sRows, applied: appliedLSN, captured: captured, diff: [], upper: upper)
        }
        // Drill down: merge both sides over (lo, upper] in key order.
        let k = (lo != nil ? 2 : 0) + (upper != nil ? 1 : 0)
        let src = srcStatements[k], tgt = tgtStatements[k]
        let rangeBinds = (lo ?? []) + (upper ?? [])
        var diff: [Difference] = []
        src.reset(); tgt.reset()
        try src.bind(rangeBinds); try tgt.bind(rangeBinds)
        defer { src.reset(); tgt.reset() }
        try RowDiff.merge(source: src, target: tgt, keyCount: n, greater: greater) { kind, key in
            diff.append(Difference(kind: kind, key: key))
        }
        return ChunkOutcome(rows: sRows, applied: appliedLSN, captured: captured, diff: diff, upper: upper)
    }

    /// Runs `a` on a new thread and `b` on this one, and returns both results
    /// once both are done (the join orders the other thread's writes before
    /// the return). Used with each closure reading its own connection only.
    static func bothAtOnce<A, B>(_ a: () throws -> A, _ b: () throws -> B) throws -> (A, B) {
        try withoutActuallyEscaping(a) { a in
            var first: Result<A, any Error>?
            let job = ThreadJob { first = Result { try a() } }
            let started = job.start()
            let second = Result { try b() }
            // Without a thread (pthread_create failed) the work runs here,
            // after `b`: slower, the same result.
            if started { job.join() } else { job.run() }
            guard let first else { throw MigrationError(.badPlan, "verify's hashing thread ended without a result; verify again") }
            return (try first.get(), try second.get())
        }
    }

    /// Streams a chunk, hashing every column's storage class and bytes as
    /// SQLite holds them (no conversion to Swift values); keeps the key of
    /// row number `keepKeyAtRow` (1-based).
    static func hash(_ s: Statement, binds: [Value], keyCount n: Int, keepKeyAtRow: Int?) throws -> (UInt64, Int, [Value]?) {
        s.reset()
        try s.bind(binds)
        defer { s.reset() }
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        var rows = 0
        var kept: [Value]?
        let columns = Int32(s.columnCount)
        @inline(__always) func mix(_ v: UInt64) {
            h = (h ^ v) &* 0x0000_0100_0000_01B3
            h ^= h >> 29
        }
        while try s.step() {
            rows += 1
            if rows == keepKeyAtRow { kept = (0..<n).map { s.columnValue(Int32($0)) } }
            for i in 0..<columns {
                switch s.columnType(i) {
                case .integer: mix(1); mix(UInt64(bitPattern: s.columnInt64(i)))
                case .real: mix(2); mix(s.columnDouble(i).bitPattern)
                case .null: mix(5)
                case let type:
                    mix(type == .text ? 3 : 4)
                    s.withColumnBytes(i) { raw in
                        mix(UInt64(raw.count))
                        var j = 0
                        while j + 8 <= raw.count {
                            mix(raw.loadUnaligned(fromByteOffset: j, as: UInt64.self))
                            j += 8
                        }
                        var tail: UInt64 = 0
                        while j < raw.count { tail = tail << 8 | UInt64(raw[j]); j += 1 }
                        mix(tail)
                    }
                }
            }
        }
        return (h, rows, kept)
    }

    /// Keys of `m`'s table changed by logged changes with LSN in (after,
    /// through], or nil if the log does not reach `through` within a second
    /// (nobody is shipping).
    static func changedKeys(_ m: TableMapping, after: LSN, through: LSN, reader: LogReader?) throws -> ExactKeys? {
        guard through > after else { return ExactKeys() }
        guard let reader else { return nil }
        let deadline = Clock.monotonicNanos() + 1_000_000_000
        while try reader.headLSN() < through {
            if Clock.monotonicNanos() > deadline { return nil }
            Clock.sleep(milliseconds: 10)
        }
        let cursor = try reader.cursor(from: after.next, tables: [m.source.name])
        var keys = ExactKeys()
        while let r = try cursor.next(), r.lsn <= through {
            // A key change moves a row: both its old and its new key are in flight.
            for change in r.keyedChanges {
                keys.insert(m.sourceKey.map { k in change.key.first { $0.name.lowercased() == k.lowercased() }?.value ?? .null })
            }
        }
        return keys
    }
}

/// One closure run on its own OS thread, then joined.
private final class ThreadJob: @unchecked Sendable {
    // @unchecked: `run` (and what it captures) is used by the started thread
    // only between `pthread_create` and `pthread_join`, and by the starter
    // only before the one and after the other; the join orders the two.
    let run: () -> Void
    private var thread = pthread_t()

    init(_ run: @escaping () -> Void) { self.run = run }

    /// Starts the thread; false when none could be created.
    func start() -> Bool {
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            guard let arg else { return nil }
            Unmanaged<ThreadJob>.fromOpaque(arg).takeRetainedValue().run()
            return nil
        }, box)
        if rc != 0 { Unmanaged<ThreadJob>.fromOpaque(box).release() }
        return rc == 0
    }

    func join() { pthread_join(thread, nil) }
}

/// A set of keys compared as SQLite compares them: text by its UTF-8 bytes.
/// (A `Set<[Value]>` would use Swift's string equality, Unicode canonical
/// equivalence, under which a decomposed "é" is the same key as the
/// precomposed one that SQLite stores as another row.)
struct ExactKeys: Sendable {
    private var keys: Set<ExactKey> = []

    init(_ keys: [[Value]] = []) { for key in keys { insert(key) } }

    mutating func insert(_ key: [Value]) { keys.insert(ExactKey(values: key)) }
    func contains(_ key: [Value]) -> Bool { keys.contains(ExactKey(values: key)) }
    var count: Int { keys.count }
    var isEmpty: Bool { keys.isEmpty }
}

/// A key whose equality and hash are byte-exact (invariant: `==` is
/// ``ValueRows/same(_:_:)``, and equal keys hash alike).
private struct ExactKey: Hashable, Sendable {
    var values: [Value]

    static func == (a: ExactKey, b: ExactKey) -> Bool { ValueRows.same(a.values, b.values) }

    func hash(into hasher: inout Hasher) {
        hasher.combine(values.count)
        for value in values {
            switch value {
            case .text(var text):
                hasher.combine(3)
                text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
            default:
                // Integers, reals, blobs and NULL: `same` is `==` for these.
                hasher.combine(value)
            }
        }
    }
}
