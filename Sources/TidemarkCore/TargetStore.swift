import TidemarkLog
import TidemarkSQLite

/// What the migrator needs of the store it migrates into: SQLite
/// (``SQLiteStore``) and PostgreSQL (``PostgresStore``) implement it.
///
/// The tidemark invariant (see ``Migrator``) rests on three promises every
/// store keeps:
/// - ``transaction(_:)`` is one atomic target transaction, and the source
///   reads made inside it (``captureHighWater()``, the chunk, the bounds)
///   all see one source snapshot, which begins at the first of them;
/// - the migration state is stored in the target, written only inside such
///   a transaction, beside the rows it describes (``save(_:table:)``);
/// - applying a change is idempotent (upsert by key, delete by key).
protocol TargetStore: AnyObject {
    /// The target as messages name it (a path, or a connection string
    /// without its password).
    var displayName: String { get }

    /// Runs `body` in one target transaction (write-locked for SQLite),
    /// with one source snapshot for the reads inside it; commits when it
    /// returns, rolls back everything when it throws.
    func transaction<R>(_ body: () throws -> R) throws -> R

    // MARK: State (see MigrationState)

    func loadState() throws -> MigrationState?
    /// The stored applied LSN and cutover journal only (a cheap read).
    func position() throws -> (applied: LSN, cutover: CutoverState.Kind?)?
    /// Inside a transaction: the applied position (never backwards) and
    /// one table's progress.
    func save(_ state: MigrationState, table: TableState?) throws
    /// Own transaction.
    func recordCaughtUp(atMicros: Int64) throws
    /// Inside a transaction.
    func recordCopied(atMicros: Int64, lsn: LSN) throws
    /// Own transaction (after a refused step rolled back).
    func recordBlocked(_ b: BlockedStep) throws
    /// Inside a transaction.
    func clearBlocked() throws
    /// Own transaction.
    func invalidateVerify() throws
    /// Own transaction: the plan of a migration begun before plans were stored.
    func storePlan(_ record: PlanRecord) throws

    // MARK: Setting up

    /// The plan's tables resolved against the source and this target.
    func resolveMappings(_ plan: Plan) throws -> [TableMapping]
    /// First run: creates (or checks) the target tables and writes the
    /// initial state and the stored schema, in one transaction.
    func start(plan: Plan, mappings: [TableMapping], schema: TargetSchema, sourceID: String,
               record: PlanRecord, indexesDuringCopy: Bool) throws -> MigrationState
    /// What the stored schema does not carry, and the indexes (or other
    /// deferred objects) still to build, in build order.
    func storedSchema() throws -> (omissions: [TargetSchema.Omission], pending: [TargetSchema.Object])

    // MARK: Copy and replay

    /// Inside a transaction: the capture high-water mark in the step's
    /// source snapshot.
    func captureHighWater() throws -> LSN
    /// Inside a transaction: rowids of source rows with a NULL key part, in
    /// the step's source snapshot.
    func nullKeyRowids(_ m: TableMapping) throws -> [Int64]
    func writer(for m: TableMapping) throws -> TableWriter
    /// Called once before replay alone remains (outside a transaction).
    func prepareForFollowing() throws
    /// Inside a transaction: builds a deferred object (an index) and marks
    /// it built; false when another process built it already.
    func buildIndex(_ index: TargetSchema.Object) throws -> Bool
}

/// One mapped table of a store: the source side (keys, chunk bounds, in
/// the step's source snapshot) and the target side (chunk copy, replay).
protocol TableWriter: AnyObject {
    var mapping: TableMapping { get }
    /// Key values of a record in source key order.
    func keyValues(_ r: ChangeRecord) throws -> [Value]
    /// Whether `key` > `bound` as SQLite orders the source key.
    func isKey(_ key: [Value], above bound: [Value]) throws -> Bool
    /// The source's highest key now (nil: empty table).
    func ceiling() throws -> [Value]?
    func rowCount() throws -> Int
    /// The key of the last row of the next chunk: the `rows`-th key above
    /// `tidemark` (from the start when nil), or `ceiling`.
    func chunkUpper(after tidemark: [Value]?, ceiling: [Value], rows: Int) throws -> [Value]
    /// Copies source rows with key in (`tidemark`, `upper`] into the target;
    /// returns how many. A refused row throws ``MigrationError/Code/constraint``.
    func copyChunk(after tidemark: [Value]?, through upper: [Value]) throws -> Int
    /// Applies one logged change (never a key change). Idempotent.
    func apply(_ r: ChangeRecord) throws
}

/// Source-side statements of one table: key order, ceiling, chunk bounds,
/// read on `connection` from `schema` (the target's connection with the
/// source ATTACHed for SQLite targets, so they share its snapshot; the
/// source's own connection for PostgreSQL targets).
final class SourceKeys {
    let mapping: TableMapping
    let keyList: String
    /// `(?1 COLLATE c1, ...) > (?n+1, ...)`: key above a bound, by SQLite's rules.
    let keyAbove: Statement
    let copyBound: Statement
    let copyBoundFromStart: Statement
    let ceiling: Statement
    let count: Statement

    init(mapping m: TableMapping, connection c: Connection, schema: String) throws {
        mapping = m
        let q = quoteIdentifier
        let src = "\(schema).\(q(m.source.name))"
        let n = m.sourceKey.count
        keyList = m.sourceKey.map(q).joined(separator: ", ")
        let key = n == 1 ? keyList : "(\(keyList))"
        func params(from start: Int) -> String {
            let p = (0..<n).map { "?\(start + $0)" }.joined(separator: ", ")
            return n == 1 ? p : "(\(p))"
        }
        let collated = zip(1...n, m.keyCollations).map { i, coll in "?\(i) COLLATE \(q(coll))" }.joined(separator: ", ")
        keyAbove = try c.prepare("SELECT \(n == 1 ? collated : "(\(collated))") > \(params(from: n + 1))")
        let orderAsc = m.sourceKey.map(q).joined(separator: ", ")
        let orderDesc = m.sourceKey.map { q($0) + " DESC" }.joined(separator: ", ")
        ceiling = try c.prepare("SELECT \(keyList) FROM \(src) ORDER BY \(orderDesc) LIMIT 1")
        count = try c.prepare("SELECT count(*) FROM \(src)")
        // The key of the last row of the next chunk: rows above the tidemark
        // and at or below the ceiling, in key order.
        copyBound = try c.prepare("SELECT \(keyList) FROM \(src) WHERE \(key) > \(params(from: 1)) AND \(key) <= \(params(from: n + 1)) ORDER BY \(orderAsc) LIMIT 1 OFFSET ?\(2 * n + 1)")
        copyBoundFromStart = try c.prepare("SELECT \(keyList) FROM \(src) WHERE \(key) <= \(params(from: 1)) ORDER BY \(orderAsc) LIMIT 1 OFFSET ?\(n + 1)")
    }

    /// Key values of a record in source key order.
    func keyValues(_ r: ChangeRecord) throws -> [Value] {
        if r.key.count == mapping.sourceKey.count,
           zip(r.key, mapping.sourceKey).allSatisfy({ $0.name == $1 }) {
            return r.key.map(\.value)
        }
        return try mapping.sourceKey.map { k in
            guard let f = r.key.first(where: { $0.name.lowercased() == k.lowercased() }) else {
                throw MigrationError(.logGap, "change at LSN \(r.lsn) of '\(r.table)' lacks key column '\(k)'")
            }
            return f.value
        }
    }

    func isKey(_ key: [Value], above bound: [Value]) throws -> Bool {
        keyAbove.reset()
        try keyAbove.bind(key + bound)
        _ = try keyAbove.step()
        let above = keyAbove.columnInt64(0) != 0
        keyAbove.reset()
        return above
    }

    func readKey(_ s: Statement) -> [Value] {
        (0..<mapping.sourceKey.count).map { s.columnValue(Int32($0)) }
    }

    func highest() throws -> [Value]? {
        ceiling.reset()
        defer { ceiling.reset() }
        return try ceiling.step() ? readKey(ceiling) : nil
    }

    func rowCount() throws -> Int {
        count.reset()
        defer { count.reset() }
        _ = try count.step()
        return Int(count.columnInt64(0))
    }

    func chunkUpper(after tidemark: [Value]?, ceiling: [Value], rows: Int) throws -> [Value] {
        let bound: Statement = tidemark == nil ? copyBoundFromStart : copyBound
        bound.reset()
        defer { bound.reset() }
        try bound.bind((tidemark ?? []) + ceiling + [.integer(Int64(rows - 1))])
        return try bound.step() ? readKey(bound) : ceiling
    }
}

/// A logged after image, in SQLite: the one-row TEMP table, declared like the
/// source table (each column's affinity and collation), that expression
/// mappings are evaluated over, so an expression means over a replayed
/// change what it means in the copy, which reads the source table.
enum SourceImage {
    /// Creates (again) the image table of `m` on `c`; returns the UPDATE that
    /// fills it (parameters in `sourceColumns` order) and its qualified name.
    static func create(_ m: TableMapping, prefix: String, on c: Connection) throws -> (update: Statement, table: String) {
        let q = quoteIdentifier
        let name = q(prefix + m.source.name)
        let table = "temp." + name
        let defs = m.sourceColumns.map { column -> String in
            let info = m.source.columns.first { $0.name == column }
            let coll = info?.collation ?? "BINARY"
            return q(column) + TableStatements.affinityType(info?.declaredType ?? "") + (coll.uppercased() == "BINARY" ? "" : " COLLATE " + q(coll))
        }
        try c.execute("DROP TABLE IF EXISTS \(table); CREATE TEMP TABLE \(name)(\(defs.joined(separator: ", "))); INSERT INTO \(table) DEFAULT VALUES")
        let update = try c.prepare("UPDATE \(table) SET " + m.sourceColumns.enumerated().map { "\(q($0.element)) = ?\($0.offset + 1)" }.joined(separator: ", "))
        return (update, table)
    }

    /// Binds an image's fields to parameters 1…n in `sourceColumns` order;
    /// a field the table no longer has is skipped, a missing one is an error.
    static func bind(_ image: [Field], mapping: TableMapping, positions: [String: Int], lsn: LSN, to s: Statement) throws {
        var bound = 0
        for (i, f) in image.enumerated() {
            let p: Int
            if i < mapping.sourceColumns.count && mapping.sourceColumns[i] == f.name {
                p = i
            } else if let found = positions[f.name.lowercased()] {
                p = found
            } else {
                continue
            }
            try s.bind(f.value, at: Int32(p + 1))
            bound += 1
        }
        guard bound == mapping.sourceColumns.count else {
            throw MigrationError(.logGap, "change at LSN \(lsn) of '\(mapping.source.name)' has \(bound) of its \(mapping.sourceColumns.count) columns; was the table altered? Re-run capture install and restart the migration")
        }
    }
}
