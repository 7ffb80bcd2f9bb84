import TidemarkLog
import TidemarkSQLite

/// The SQLite target store: applies copied chunks and replayed changes,
/// and holds the migration state, all through one connection so that a
/// chunk, the changes replayed before it and the new state commit together.
///
/// The source is reached through the same connection — `main` when source
/// and target are one file, else ATTACHed read-only as `tm_src` — so the
/// capture high-water mark and the chunk are read in one source snapshot.
final class SQLiteStore: TargetStore {
    let connection: Connection
    /// Schema name under which source tables are read.
    let sourceSchema: String
    private var tables: [String: TableStatements] = [:]

    /// Page cache of the target connection while following, in KiB.
    /// SQLite's default (2 MiB) is far smaller than what one replay
    /// transaction touches when changes are spread over a large table: pages
    /// are then spilled to the WAL and read back again within the
    /// transaction. The cache grows only as pages are used, so this bounds
    /// memory rather than allocating it. The copy, which appends in key
    /// order, gains nothing from it (and pays ~3% CPU for the extra pages),
    /// so it is set when replay alone remains (``prepareForFollowing()``).
    static let cacheKiB = 32 * 1024
    private var followingCacheSet = false

    /// The source's own connection (plan resolution).
    let source: Connection
    let path: String

    init(connection: Connection, source: Connection, plan: Plan) throws {
        self.connection = connection
        self.source = source
        self.path = plan.target
        let sourcePath = plan.source
        let sameFile = plan.isSameFile
        // Rows arrive in key order, not parent first, so the connection
        // the migration writes through never enforces foreign keys (verify
        // checks them). Set outside any transaction: inside one it is a no-op.
        try connection.execute("PRAGMA foreign_keys = OFF")
        try StateTables.upgrade(connection)
        if sameFile {
            sourceSchema = "main"
        } else {
            sourceSchema = "tm_src"
            let attached = try connection.prepare("SELECT count(*) FROM pragma_database_list WHERE name = 'tm_src'")
            _ = try attached.step()
            if attached.columnInt64(0) == 0 {
                try connection.prepare("ATTACH DATABASE ? AS tm_src").execute([.text("file:" + Self.uriEscaped(sourcePath) + "?mode=ro")])
            }
        }
    }

    static func uriEscaped(_ path: String) -> String {
        var out = ""
        for u in path.utf8 {
            switch u {
            case UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "%"):
                let hex = String(u, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" : "") + hex
            default: out.unicodeScalars.append(Unicode.Scalar(u))
            }
        }
        return out
    }

    /// Sizes the page cache for replay (once, outside a transaction).
    func prepareForFollowing() throws {
        guard !followingCacheSet else { return }
        try connection.execute("PRAGMA cache_size = -\(Self.cacheKiB)")
        followingCacheSet = true
    }

    func statements(for m: TableMapping) throws -> TableStatements {
        if let s = tables[m.source.name.lowercased()] { return s }
        let s = try TableStatements(mapping: m, connection: connection, sourceSchema: sourceSchema)
        tables[m.source.name.lowercased()] = s
        return s
    }

    /// The capture high-water mark as seen by this connection's current
    /// source snapshot.
    func captureHighWater() throws -> LSN {
        try Self.captureHighWater(on: connection, schema: sourceSchema)
    }

    /// The capture high-water mark of the source read as `schema` on `c`,
    /// in `c`'s current snapshot.
    static func captureHighWater(on c: Connection, schema sourceSchema: String) throws -> LSN {
        let exists = try c.cachedStatement("SELECT count(*) FROM \(sourceSchema).sqlite_schema WHERE type = 'table' AND name IN ('sqlite_sequence', '_tidemark_outbox')")
        defer { exists.reset() }
        _ = try exists.step()
        guard exists.columnInt64(0) == 2 else { return .zero }
        // The larger of the counter and the outbox's highest seq: the counter
        // lags rows an `OR FAIL` statement kept (see `Capture.lastCapturedSeq`).
        let s = try c.cachedStatement("""
            SELECT max(coalesce((SELECT seq FROM \(sourceSchema).sqlite_sequence WHERE name = '_tidemark_outbox'), 0),
                       coalesce((SELECT max(seq) FROM \(sourceSchema)._tidemark_outbox), 0))
            """)
        defer { s.reset() }
        guard try s.step() else { return .zero }
        return LSN(UInt64(max(0, s.columnInt64(0))))
    }
}

extension SQLiteStore {
    var displayName: String { path }

    func transaction<R>(_ body: () throws -> R) throws -> R {
        try connection.transaction(.immediate, body)
    }

    func loadState() throws -> MigrationState? { try StateTables.load(connection) }
    func position() throws -> (applied: LSN, cutover: CutoverState.Kind?)? { try StateTables.position(connection) }
    func save(_ state: MigrationState, table: TableState?) throws { try StateTables.save(state, table: table, in: connection) }
    func recordCaughtUp(atMicros: Int64) throws {
        try connection.transaction(.immediate) { try StateTables.recordCaughtUp(atMicros: atMicros, in: connection) }
    }
    func recordCopied(atMicros: Int64, lsn: LSN) throws { try StateTables.recordCopied(atMicros: atMicros, lsn: lsn, in: connection) }
    func recordBlocked(_ b: BlockedStep) throws {
        try connection.transaction(.immediate) { try StateTables.recordBlocked(b, in: connection) }
    }
    func clearBlocked() throws { try StateTables.clearBlocked(in: connection) }
    func invalidateVerify() throws {
        try connection.transaction(.immediate) { try StateTables.invalidateVerify(in: connection) }
    }
    func storePlan(_ record: PlanRecord) throws {
        try connection.transaction(.immediate) { try StateTables.storePlan(record, in: connection) }
    }

    func resolveMappings(_ plan: Plan) throws -> [TableMapping] {
        try PlanResolver.resolve(plan, source: source, target: connection, ownedColumns: try StateTables.addedColumns(connection))
    }

    func start(plan: Plan, mappings: [TableMapping], schema: TargetSchema, sourceID: String,
               record: PlanRecord, indexesDuringCopy: Bool) throws -> MigrationState {
        try TargetSetup.start(plan: plan, mappings: mappings, schema: schema, target: connection, store: self, sourceID: sourceID,
                              record: record, indexesDuringCopy: indexesDuringCopy)
    }

    func storedSchema() throws -> (omissions: [TargetSchema.Omission], pending: [TargetSchema.Object]) {
        guard let stored = try SchemaStore.load(connection) else { return ([], []) }
        let pending = Set(try SchemaStore.pending(.index, in: connection))
        return (stored.omissions, stored.indexes.filter { pending.contains($0.name) })
    }

    func nullKeyRowids(_ m: TableMapping) throws -> [Int64] {
        try Migrator.nullKeyRowids(m, on: connection, schema: sourceSchema)
    }

    func writer(for m: TableMapping) throws -> TableWriter { try statements(for: m) }

    /// Invariant: an index is `built` in `_tidemark_schema` if and only if
    /// it exists in the target (the CREATE INDEX and the mark commit
    /// together). An index of that name that already exists (created with
    /// a table made by hand) counts only if its SQL is the stored one.
    func buildIndex(_ index: TargetSchema.Object) throws -> Bool {
        let stateOf = try connection.prepare("SELECT state FROM \(SchemaStore.table) WHERE kind = 'index' AND name = ?1")
        try stateOf.bind([.text(index.name)])
        guard try stateOf.step(), stateOf.columnText(0) == "pending" else { return false }  // another process built it
        let existing = try connection.prepare("SELECT sql FROM main.sqlite_schema WHERE type = 'index' AND name = ?1 COLLATE NOCASE")
        try existing.bind([.text(index.name)])
        if try existing.step() {
            guard existing.columnText(0) == index.sql else {
                throw MigrationError(.incompatibleTarget, "the target already has an index named \(index.name) that differs from the one the migration builds (\(index.sql)); drop or rename it, then run `tidemark migrate`")
            }
        } else {
            if let refused = try TableStatements.constraintMessage({ () throws(SQLiteError) in try connection.execute(index.sql) }) {
                throw IndexDuplicates.error(index, target: connection, sqliteMessage: refused)
            }
        }
        try SchemaStore.setState(.index, name: index.name, state: "built", in: connection)
        return true
    }
}

/// Prepared statements for one mapped table.
final class TableStatements: TableWriter {
    let mapping: TableMapping
    let connection: Connection
    let keyList: String
    /// Source column name (lowercased) → bind position in `sourceColumns` order.
    let sourcePosition: [String: Int]
    let upsert: Statement?
    /// For expression mappings: fills the one-row image table the upsert reads.
    let imageUpdate: Statement?
    /// For identity mappings whose key cannot be respelled (see
    /// ``hasExactKey(_:)``): `UPDATE … SET non-key columns WHERE key`, bound
    /// like the upsert. A logged update then costs one key lookup instead of
    /// the upsert's two (insert attempt, conflict, update); when no row has
    /// the key, the upsert inserts it, so the effect is the upsert's.
    let updateByKey: Statement?
    /// For identity mappings: the source column of each target column, in order.
    let identityNames: [String]?
    /// `identityNames` and the source key's names as UTF-8 bytes, which
    /// ``applyInPlace(_:)`` compares with a logged change's field names.
    let identityNameBytes: [[UInt8]]?
    let keyNameBytes: [[UInt8]]
    let delete: Statement?
    let inPlaceUpdate: Statement?
    /// Key order, ceiling and chunk bounds, read through the same connection.
    let keys: SourceKeys
    let copyChunk: Statement
    let copyChunkFromStart: Statement
    /// `INSERT INTO target SELECT * FROM source`, for
    /// ``copyWholeTable()``; nil when the mapping is not the plain copy of
    /// every column in order.
    private let wholeTableSQL: String?
    /// `SELECT 1 FROM target LIMIT 1`: whether the target table has a row.
    private let targetHasRow: Statement?

    init(mapping m: TableMapping, connection c: Connection, sourceSchema: String) throws {
        mapping = m
        connection = c
        let q = quoteIdentifier
        let src = "\(sourceSchema).\(q(m.source.name))"
        let tgt = q(m.targetTable)
        let n = m.sourceKey.count
        keyList = m.sourceKey.map(q).joined(separator: ", ")
        let key = n == 1 ? keyList : "(\(keyList))"
        func params(from start: Int) -> String {
            let p = (0..<n).map { "?\(start + $0)" }.joined(separator: ", ")
            return n == 1 ? p : "(\(p))"
        }
        identityNames = m.isIdentity ? m.columns.map { $0.sourceColumn! } : nil
        identityNameBytes = identityNames.map { $0.map { Array($0.utf8) } }
        keyNameBytes = m.sourceKey.map { Array($0.utf8) }
        var pos: [String: Int] = [:]
        for (i, col) in m.sourceColumns.enumerated() { pos[col.lowercased()] = i }
        sourcePosition = pos

        keys = try SourceKeys(mapping: m, connection: c, schema: sourceSchema)
        let orderAsc = m.sourceKey.map(q).joined(separator: ", ")

        let exprs = m.columns.map { "(\($0.expression))" }.joined(separator: ", ")
        switch m.shape {
        case .copy:
            let cols = m.columns.map { q($0.target) }.joined(separator: ", ")
            let targetKey = m.targetKey.map(q).joined(separator: ", ")
            // A conflict means keys equal under the key's collation and
            // affinity, not equal values: under NOCASE, 'abc' -> 'ABC' is an
            // update of the same key, and in a column without affinity 1 and
            // 1.0 are one key. Such key columns are set too, so the target
            // keeps the source's spelling; other key values cannot differ.
            let respelled = m.targetKey.enumerated().filter { i, _ in
                let source = m.source.columns.first { $0.name == m.sourceKey[i] }
                return m.keyCollations[i].uppercased() != "BINARY" || Self.hasNoAffinity(source?.declaredType ?? "")
            }.map(\.element)
            let updated = m.columns.filter { c in
                !m.targetKey.contains { $0.lowercased() == c.target.lowercased() } || respelled.contains { $0.lowercased() == c.target.lowercased() }
            }
            let onConflict = updated.isEmpty
                ? "ON CONFLICT(\(targetKey)) DO NOTHING"
                : "ON CONFLICT(\(targetKey)) DO UPDATE SET " + updated.map { "\(q($0.target)) = excluded.\(q($0.target))" }.joined(separator: ", ")
            copyChunk = try c.prepare("INSERT INTO \(tgt)(\(cols)) SELECT \(exprs) FROM \(src) WHERE \(key) > \(params(from: 1)) AND \(key) <= \(params(from: n + 1)) ORDER BY \(orderAsc)")
            copyChunkFromStart = try c.prepare("INSERT INTO \(tgt)(\(cols)) SELECT \(exprs) FROM \(src) WHERE \(key) <= \(params(from: 1)) ORDER BY \(orderAsc)")
            if m.isIdentity {
                // Values bound straight from the after image, in target column order.
                let values = (1...m.columns.count).map { "?\($0)" }.joined(separator: ", ")
                upsert = try c.prepare("INSERT INTO \(tgt)(\(cols)) VALUES (\(values)) \(onConflict)")
                imageUpdate = nil
                if m.columns.contains(where: { c in !m.targetKey.contains { $0.lowercased() == c.target.lowercased() } }) && Self.hasExactKey(m) {
                    func isKey(_ column: String) -> Bool { m.targetKey.contains { $0.lowercased() == column.lowercased() } }
                    let sets = m.columns.enumerated().filter { !isKey($0.element.target) }
                        .map { "\(q($0.element.target)) = ?\($0.offset + 1)" }.joined(separator: ", ")
                    let keyWhere = m.columns.enumerated().filter { isKey($0.element.target) }
                        .map { "\(q($0.element.target)) = ?\($0.offset + 1)" }.joined(separator: " AND ")
                    updateByKey = try c.prepare("UPDATE \(tgt) SET \(sets) WHERE \(keyWhere)")
                } else {
                    updateByKey = nil
                }
            } else {
                // Expressions are evaluated over the after image held in a
                // one-row TEMP table declared like the source table (each
                // column's affinity and collation), so that they mean what
                // they mean in the copy, which reads the source table: with
                // a NOCASE column `email = 'X'` ignores case, and with a TEXT
                // column `code > 5` compares text. Over bare bound values
                // both would differ. The image values already carry the
                // column's affinity, so storing them again changes none.
                let (update, image) = try SourceImage.create(m, prefix: "_tidemark_image_", on: c)
                imageUpdate = update
                upsert = try c.prepare("INSERT INTO \(tgt)(\(cols)) SELECT \(exprs) FROM \(image) WHERE true \(onConflict)")
                updateByKey = nil
            }
            if Self.copiesEveryColumnInOrder(m, connection: c, sourceSchema: sourceSchema) {
                wholeTableSQL = "INSERT INTO main.\(tgt) SELECT * FROM \(src)"
                targetHasRow = try c.prepare("SELECT 1 FROM main.\(tgt) LIMIT 1")
            } else {
                wholeTableSQL = nil
                targetHasRow = nil
            }
            let targetWhere = m.targetKey.enumerated().map { "\(q($0.element)) = ?\($0.offset + 1)" }.joined(separator: " AND ")
            delete = try c.prepare("DELETE FROM \(tgt) WHERE \(targetWhere)")
            inPlaceUpdate = nil
        case .inPlace:
            // Same table, same file: new columns are computed from the row as
            // it is now, which is at least as new as any logged change.
            let sets = m.columns.map { "\(q($0.target)) = (\($0.expression))" }.joined(separator: ", ")
            copyChunk = try c.prepare("UPDATE \(tgt) SET \(sets) WHERE \(key) > \(params(from: 1)) AND \(key) <= \(params(from: n + 1))")
            copyChunkFromStart = try c.prepare("UPDATE \(tgt) SET \(sets) WHERE \(key) <= \(params(from: 1))")
            let keyWhere = m.sourceKey.enumerated().map { "\(q($0.element)) = ?\($0.offset + 1)" }.joined(separator: " AND ")
            inPlaceUpdate = try c.prepare("UPDATE \(tgt) SET \(sets) WHERE \(keyWhere)")
            upsert = nil
            imageUpdate = nil
            updateByKey = nil
            delete = nil
            wholeTableSQL = nil
            targetHasRow = nil
        }
    }

    /// Whether `INSERT INTO target SELECT * FROM source` is the plan's copy
    /// of `m`: the target table's columns are the mapping's, in order, and
    /// each is the source column at its place, as it is; no column of
    /// either table is hidden or generated (`SELECT *` and an INSERT
    /// without a column list skip those).
    static func copiesEveryColumnInOrder(_ m: TableMapping, connection c: Connection, sourceSchema: String) -> Bool {
        guard m.shape == .copy, m.isIdentity else { return false }
        func columns(_ schema: String, _ table: String) -> [String]? {
            guard let s = try? c.prepare("SELECT name, hidden FROM pragma_table_xinfo(?1, ?2) ORDER BY cid"),
                  (try? s.bind([.text(table), .text(schema)])) != nil,
                  let rows = try? s.rows({ ($0.columnText(0), $0.columnInt64(1)) }),
                  rows.allSatisfy({ $0.1 == 0 }) else { return nil }
            return rows.map(\.0)
        }
        guard let source = columns(sourceSchema, m.source.name), let target = columns("main", m.targetTable),
              source.count == m.columns.count, target.count == m.columns.count else { return false }
        for (i, column) in m.columns.enumerated() {
            guard column.target.lowercased() == target[i].lowercased(),
                  column.sourceColumn?.lowercased() == source[i].lowercased() else { return false }
        }
        return true
    }

    /// A type name with the affinity SQLite gives a column declared `type`
    /// (its rules, in their order), with a leading space; empty for none.
    static func affinityType(_ type: String) -> String {
        let t = type.uppercased()
        if t.contains("INT") { return " INTEGER" }
        if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") { return " TEXT" }
        if t.isEmpty || t.contains("BLOB") { return "" }
        if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") { return " REAL" }
        return " NUMERIC"
    }

    /// Whether a column declared `type` has no affinity (SQLite's rules:
    /// no type, or BLOB without INT/CHAR/CLOB/TEXT), so it keeps 1 and 1.0 apart.
    static func hasNoAffinity(_ type: String) -> Bool {
        let t = type.uppercased()
        if t.isEmpty { return true }
        return t.contains("BLOB") && !t.contains("INT") && !t.contains("CHAR") && !t.contains("CLOB") && !t.contains("TEXT")
    }

    /// Whether two key values that SQLite finds equal are always the same
    /// value: every key column compares with BINARY and has INTEGER or TEXT
    /// affinity (SQLite's rules: a declared type containing INT; else CHAR,
    /// CLOB or TEXT). Then a logged update's key is spelled exactly as the
    /// target row's, and updating the other columns by key is all the
    /// upsert would do. Under NOCASE ('abc' vs 'ABC') or without affinity
    /// (1 vs 1.0) it is not, and such tables keep the upsert.
    static func hasExactKey(_ m: TableMapping) -> Bool {
        zip(m.sourceKey, m.keyCollations).allSatisfy { name, collation in
            let type = (m.source.columns.first { $0.name == name }?.declaredType ?? "").uppercased()
            return collation.uppercased() == "BINARY"
                && (type.contains("INT") || type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT"))
        }
    }

    func keyValues(_ r: ChangeRecord) throws -> [Value] { try keys.keyValues(r) }
    func isKey(_ key: [Value], above bound: [Value]) throws -> Bool { try keys.isKey(key, above: bound) }
    func ceiling() throws -> [Value]? { try keys.highest() }
    func rowCount() throws -> Int { try keys.rowCount() }
    func chunkUpper(after tidemark: [Value]?, ceiling: [Value], rows: Int) throws -> [Value] {
        try keys.chunkUpper(after: tidemark, ceiling: ceiling, rows: rows)
    }

    /// Runs `body`; a constraint error becomes its message, other errors are thrown.
    static func constraintMessage(_ body: () throws(SQLiteError) -> Void) throws(SQLiteError) -> String? {
        do {
            try body()
            return nil
        } catch {
            if error.code.primary == .constraint { return error.message }
            throw error
        }
    }

    func copyChunk(after tidemark: [Value]?, through upper: [Value]) throws -> Int {
        let copy: Statement = tidemark == nil ? copyChunkFromStart : copyChunk
        copy.reset()
        try copy.bind((tidemark ?? []) + upper)
        let refused = try Self.constraintMessage { () throws(SQLiteError) in try copy.execute() }
        let n = connection.changes
        copy.reset()
        if let refused {
            throw MigrationError(.constraint, "copying \(mapping.source.name) into \(mapping.targetTable) after key \(tidemark.map(KeyTuple.encode) ?? "(start)"): the target refused a row: \(refused); nothing of this chunk was written — fix the source rows or the plan, then run `tidemark migrate`")
        }
        return n
    }

    /// Copies every row of the source table (in the current snapshot) into
    /// the empty target table in one statement, which SQLite runs as its
    /// record transfer: each record copied whole, without decoding it. True
    /// when it did; false, having written nothing, when it cannot: the
    /// mapping is not the plain copy of every column (see
    /// ``copiesEveryColumnInOrder(_:connection:sourceSchema:)``), the
    /// target table has a row, or SQLite would not transfer records for
    /// this pair of tables (declared differently, triggers on the target,
    /// an index the source lacks…; its program then has no `RowData`).
    /// SQLite 3.40 also declines it for a rowid table with any index (a
    /// non-INTEGER primary key's included) when the source is ATTACHed
    /// read-only, as here: such tables go in chunks.
    /// The caller then copies in chunks. Never a partial copy: a refused
    /// row throws, and the caller's transaction rolls back.
    func copyWholeTable() throws -> Bool {
        guard let sql = wholeTableSQL, let hasRow = targetHasRow else { return false }
        hasRow.reset()
        let nonEmpty = try hasRow.step()
        hasRow.reset()
        guard !nonEmpty else { return false }
        // Asked each time: SQLite decides on the schema as it is now.
        let program = try connection.prepare("EXPLAIN " + sql)
        var transfers = false
        while try program.step() {
            if program.columnText(1) == "RowData" { transfers = true; break }
        }
        program.reset()
        guard transfers else { return false }
        let copy = try connection.prepare(sql)
        if let refused = try Self.constraintMessage({ () throws(SQLiteError) in try copy.execute() }) {
            throw MigrationError(.constraint, "copying \(mapping.source.name) into \(mapping.targetTable) in one step: the target refused a row: \(refused); nothing of this table was written — fix the source rows or the plan, then run `tidemark migrate`")
        }
        return true
    }

    /// Applies one logged change. Idempotent: upsert by key, delete by key.
    func apply(_ r: ChangeRecord) throws {
        do {
            switch (mapping.shape, r.operation) {
            case (.copy, .update) where updateByKey != nil:
                guard let after = r.after else { return }
                let s = updateByKey!
                s.reset()
                try bindImage(after, lsn: r.lsn, to: s)
                try s.execute()
                if connection.changes == 0 {
                    // No row with this key (yet): insert it, as the upsert would.
                    let u = upsert!
                    u.reset()
                    try bindImage(after, lsn: r.lsn, to: u)
                    try u.execute()
                }
            case (.copy, .insert), (.copy, .update):
                guard let after = r.after else { return }
                if let image = imageUpdate {
                    image.reset()
                    try bindImage(after, lsn: r.lsn, to: image)
                    try image.execute()
                    upsert!.reset()
                    try upsert!.execute()
                } else {
                    let s = upsert!
                    s.reset()
                    try bindImage(after, lsn: r.lsn, to: s)
                    try s.execute()
                }
            case (.copy, .delete):
                let s = delete!
                s.reset()
                try bindKey(r, to: s)
                try s.execute()
            case (.inPlace, .insert), (.inPlace, .update):
                let s = inPlaceUpdate!
                s.reset()
                try bindKey(r, to: s)
                try s.execute()
            case (.inPlace, .delete):
                return  // the application deleted the row itself
            }
        } catch let e as SQLiteError where e.code.primary == .constraint {
            let key = r.key.map { "\($0.name)=\($0.value)" }.joined(separator: ", ")
            // SQLite's message names the constraint (its name, or the CHECK's
            // expression, or table.column for NOT NULL and UNIQUE).
            throw MigrationError(.constraint, "the target refused the change at LSN \(r.lsn) (\(r.operation) of \(r.table) \(key)) into \(mapping.targetTable): \(e.message); nothing of its batch was applied and it is never skipped — fix the row in the source (its next change replaces this one) or change the plan, then run `tidemark migrate`")
        }
    }

    /// Whether ``applyInPlace(_:)`` can apply this table's changes: an
    /// identity copy, whose parameters are the image's values as they are.
    var canApplyInPlace: Bool { mapping.shape == .copy && identityNames != nil && imageUpdate == nil && upsert != nil && delete != nil }

    /// Applies one change read in place, binding its values straight from
    /// the log's frame (`SQLITE_STATIC`): the statements and values of
    /// ``apply(_:)`` for the decoded record, without copying it. Returns
    /// false, having changed nothing, when the image's columns are not the
    /// table's in order under their exact names (or the key's, for a
    /// delete): the caller then applies the decoded record. Never called
    /// for a key change. A refused change throws SQLite's constraint error,
    /// with nothing of it applied.
    ///
    /// Invariant: no statement holds a pointer into the frame once this
    /// returns (the bindings are cleared), so a frame buffer reused for the
    /// next frame is never read through a stale binding.
    func applyInPlace(_ v: RecordView) throws -> Bool {
        switch v.operation {
        case .insert, .update:
            guard let after = v.after, let names = identityNameBytes, after.count == names.count else { return false }
            let s = v.operation == .update ? (updateByKey ?? upsert!) : upsert!
            guard try bindInPlace(after, names: names, to: s) else { return false }
            defer { s.clearBindings() }
            try s.execute()
            if s === updateByKey && connection.changes == 0 {
                // No row with this key (yet): insert it, as the upsert would.
                let u = upsert!
                _ = try bindInPlace(after, names: names, to: u)
                defer { u.clearBindings() }
                try u.execute()
            }
            return true
        case .delete:
            let s = delete!
            guard try bindInPlace(v.key, names: keyNameBytes, to: s) else { return false }
            defer { s.clearBindings() }
            try s.execute()
            return true
        }
    }

    /// Binds `fields` to parameters 1…n when their names are exactly
    /// `names`, in order; false (bindings then undefined) otherwise.
    @inline(__always)
    private func bindInPlace(_ fields: FieldsView, names: [[UInt8]], to s: Statement) throws -> Bool {
        guard fields.count == names.count else { return false }
        var i = 0
        for f in fields {
            let same = names[i].withUnsafeBytes { f.name.elementsEqual($0) }
            guard same else {
                s.clearBindings()
                return false
            }
            let at = Int32(i + 1)
            switch f.value {
            case .null: try s.bindNull(at: at)
            case .integer(let x): try s.bind(x, at: at)
            case .real(let d): try s.bind(d, at: at)
            case .text(let b): try s.bindStatic(text: b, at: at)
            case .blob(let b): try s.bindStatic(blob: b, at: at)
            }
            i += 1
        }
        return true
    }

    /// Binds a record's key values to parameters 1…n, in source key order.
    private func bindKey(_ r: ChangeRecord, to s: Statement) throws {
        let key = mapping.sourceKey
        if r.key.count == key.count {
            var inOrder = true
            for i in 0..<key.count where r.key[i].name != key[i] { inOrder = false; break }
            if inOrder {
                for i in 0..<key.count { try s.bind(r.key[i].value, at: Int32(i + 1)) }
                return
            }
        }
        try s.bind(try keyValues(r))
    }

    private func bindImage(_ image: [Field], lsn: LSN, to s: Statement) throws {
        if let names = identityNames {
            // Target columns in order; each names its source column.
            for i in 0..<names.count {
                if i < image.count && image[i].name == names[i] {
                    try s.bind(image[i].value, at: Int32(i + 1))
                } else if let f = image.first(where: { $0.name.lowercased() == names[i].lowercased() }) {
                    try s.bind(f.value, at: Int32(i + 1))
                } else {
                    throw MigrationError(.logGap, "change at LSN \(lsn) of '\(mapping.source.name)' lacks column '\(names[i])'; was the table altered? Re-run capture install and restart the migration")
                }
            }
        } else {
            try SourceImage.bind(image, mapping: mapping, positions: sourcePosition, lsn: lsn, to: s)
        }
    }

}
