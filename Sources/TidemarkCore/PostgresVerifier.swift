import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// ``Verifier`` for a PostgreSQL target, under the same contract (read its
/// comment): per table, chunks of `chunkRows` source keys in SQLite's key
/// order; for each chunk
/// 1. a PostgreSQL `REPEATABLE READ READ ONLY` transaction reads the applied
///    LSN `L` and the chunk's target rows (binary results);
/// 2. a SQLite read transaction then reads the capture high-water `S >= L`
///    and the chunk's transformed source rows;
/// 3. both sides are turned into the same ``Value``s (``PostgresVerifier/Normal``)
///    and hashed by one function (``ValueRows/hash(_:)``); a mismatch is
///    merged by key and keys changed in the log in (`L`, `S`] are re-checked.
///
/// Values are compared exactly, never through a text round trip of the
/// stored value: integers, the bit pattern of reals (so -0.0 is not 0.0),
/// the bytes of text and blobs. Only where the target column's type has no
/// exact binary counterpart of a SQLite value is a canonical form used on
/// both sides: numeric (the decimal's value), and plan-typed columns
/// (timestamptz, jsonb, …: PostgreSQL's text rendering of the stored value
/// against its rendering of the source value parsed as that type).
///
/// Foreign keys are PostgreSQL's to enforce (added NOT VALID, then
/// validated): nothing extra is reported.
struct PostgresVerifier {
    let plan: Plan
    let options: Verifier.Options

    typealias Report = Verifier.Report
    typealias TableReport = Verifier.TableReport
    typealias Difference = Verifier.Difference

    func run(progress: (String, Int) -> Void) throws -> Report {
        let start = Clock.monotonicNanos()
        guard FileSystemCheck.exists(plan.source) else { throw MigrationError(.missingTable, "source database \(plan.source) does not exist") }
        let source = try Connection(path: plan.source, mode: .readOnly)
        let pg = try PostgresStore.connect(plan.target)
        defer { pg.close() }
        let display = PGConnection.redacted(plan.target)
        return try Self.mapped(display) {
            let state = try PostgresState.load(pg)
            let mappings = try PlanResolver.resolve(plan, source: source, target: source)
            try Verifier.checkVerifiable(state, plan: plan, mappings: mappings)
            let startedAtMicros = Clock.wallMicros()
            let fromLSN = try PostgresState.position(pg)?.applied ?? .zero
            let reader = LogDirectory(plan.log).exists ? try LogReader(directory: plan.log) : nil
            var reports: [TableReport] = []
            for m in mappings {
                try Interruption.check("verifying before \(m.source.name); nothing recorded, verify again")
                let table = try TableCheck(m, plan: plan, source: source, pg: pg, display: display, hasState: state != nil)
                reports.append(try verify(table, reader: reader, progress: progress))
            }
            let report = Report(tables: reports, seconds: Double(Clock.monotonicNanos() - start) / 1e9)
            if state != nil && options.record {
                // As for SQLite targets: the verify's start (time and applied
                // LSN) and its outcome; unsettled keys count as differences.
                let through = try PostgresState.position(pg)?.applied ?? fromLSN
                let differences = reports.reduce(0) { $0 + $1.missingCount + $1.extraCount + $1.differentCount + $1.unsettled.count }
                try pg.transaction {
                    try PostgresState.recordVerify(VerifyRecord(atMicros: startedAtMicros, fromLSN: fromLSN, throughLSN: through, differences: differences), in: pg)
                }
            }
            return report
        }
    }

    /// A lost connection as one line naming the target (never its password).
    static func mapped<R>(_ display: String, _ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let e as PGError where e.connectionLost {
            throw MigrationError(.targetUnavailable, "lost the connection to the PostgreSQL target \(display) while verifying: \(e.message); nothing was recorded — verify again")
        }
    }

    private func verify(_ t: TableCheck, reader: LogReader?, progress: (String, Int) -> Void) throws -> TableReport {
        let m = t.mapping
        var report = TableReport(source: m.source.name, target: m.targetTable)
        report.keyColumns = m.sourceKey
        let n = m.sourceKey.count
        let greater = try TableStatements.keyComparator(m, connection: t.source)
        var lo: [Value]? = nil
        while true {
            // The chunk's upper bound, read in its own short transaction.
            let b = lo == nil ? t.boundFromStart : t.bound
            b.reset()
            try b.bind((lo ?? []) + [.integer(Int64(options.chunkRows - 1))])
            try Interruption.check("verifying \(m.source.name) after \(report.rows) rows; nothing recorded, verify again")
            let hi: [Value]? = try b.step() ? (0..<n).map { b.columnValue(Int32($0)) } : nil
            b.reset()
            let look = try t.readChunk(after: lo, through: hi)
            report.rows += look.source.count
            report.chunks += 1
            if ValueRows.hash(look.source) != ValueRows.hash(look.target) || look.source.count != look.target.count {
                var diff: [Difference] = []
                try ValueRows.merge(source: look.source, target: look.target, keyCount: n, greater: greater) { kind, key in
                    diff.append(Difference(kind: kind, key: key))
                }
                if !diff.isEmpty {
                    report.chunksRechecked += 1
                    // Keys changed between the two snapshots are in flight;
                    // they are re-checked one by one, so a real difference
                    // cannot hide behind a concurrent change.
                    var pending: [Difference] = []
                    let inFlight = try Verifier.changedKeys(m, after: look.applied, through: look.captured, reader: reader)
                    for d in diff {
                        if let inFlight, !inFlight.contains(d.key) {
                            Verifier.record(d, in: &report, keysMax: options.keysMax)
                        } else {
                            pending.append(d)
                        }
                    }
                    try Verifier.recheck(pending, m: m, reader: reader, options: options, report: &report,
                                         same: ValueRows.same, read: { try t.readKeys($0) },
                                         capturedNow: { LSN(UInt64(max(0, try Capture.lastCapturedSeq(t.source)))) })
                }
            }
            progress(m.source.name, report.rows)
            guard let hi else { break }
            lo = hi
        }
        if options.showValues {
            try Verifier.showValues(&report, m: m, same: ValueRows.same, read: { try t.readKeys($0) })
        }
        return report
    }

    /// Value forms both sides are compared in, per target column kind.
    enum Normal {
        /// A source value of a numeric column: an integral real within
        /// Int64 is the integer (numeric keeps the value, not SQLite's class).
        static func sourceNumeric(_ v: Value) -> Value {
            if case .real(let d) = v, d.isFinite, d == d.rounded(), d >= -9.223372036854775808e18, d < 9.223372036854775808e18,
               !(d == 0 && d.sign == .minus) {
                return .integer(Int64(d))
            }
            return v
        }

        /// A numeric target value (PostgreSQL's exact decimal text): the
        /// integer when integral and within Int64; else the real whose
        /// shortest decimal has exactly this value; else the decimal text
        /// itself (which no SQLite integer or real equals: a difference).
        static func targetNumeric(_ v: Value) -> Value {
            guard case .text(let s) = v else { return v }
            guard let c = CanonicalDecimal(s) else { return v }
            if let i = c.int64 { return .integer(i) }
            if let d = Double(s), d.isFinite, CanonicalDecimal(PostgresTableWriter.decimal(d)) == c { return .real(d) }
            return .text("\u{0}numeric " + s)
        }

        /// The text a source value of a plan-typed column is sent as (what
        /// PostgreSQL parses on copy and replay).
        static func textForm(_ v: Value) -> String? {
            switch v {
            case .text(let s): return s
            case .integer(let n): return String(n)
            case .real(let d): return d.isFinite ? PostgresTableWriter.decimal(d) : nil
            case .null, .blob: return nil
            }
        }

        /// A value no PostgreSQL text rendering equals (PostgreSQL text holds
        /// no NUL): a source value the column's type cannot take.
        static func unparseable(_ v: Value) -> Value { .text("\u{0}cannot be parsed: \(v)") }
    }

    /// One table: its statements on both sides and how its values compare.
    final class TableCheck {
        let mapping: TableMapping
        let source: Connection
        let pg: PGConnection
        let kinds: [PostgresValueKind]
        /// `format_type` of each target column (the cast for textual ones).
        let types: [String]
        /// Position in `mapping.columns` of each target key column, in key order.
        let keyPositions: [Int]
        let hasState: Bool
        let boundFromStart: Statement
        let bound: Statement
        /// Source chunk statements by bounds: 2 = lower, 1 = upper.
        private let sourceChunk: [Int: Statement]
        private let targetChunk: [Int: String]
        private let sourcePoint: Statement
        private let targetPoint: String

        init(_ m: TableMapping, plan: Plan, source: Connection, pg: PGConnection, display: String, hasState: Bool) throws {
            mapping = m
            self.source = source
            self.pg = pg
            self.hasState = hasState
            let schema = plan.pgSchema
            guard let catalog = try PostgresCatalog.columns(pg, schema: schema, table: m.targetTable) else {
                throw MigrationError(.missingTable, "target table \(schema).\(m.targetTable) does not exist in \(display); run `tidemark migrate` first")
            }
            var kinds: [PostgresValueKind] = []
            var types: [String] = []
            for c in m.columns {
                guard let have = catalog.first(where: { $0.name == c.target }) else {
                    throw MigrationError(.incompatibleTarget, "target table \(schema).\(m.targetTable) has no column \(c.target); was it altered after the migration began?")
                }
                kinds.append(PostgresValueKind(typeName: have.typeName))
                types.append(have.type)
            }
            self.kinds = kinds
            self.types = types
            let keyPositions = try m.targetKey.map { k in
                guard let i = m.columns.firstIndex(where: { $0.target.lowercased() == k.lowercased() }) else {
                    throw MigrationError(.keyNotCarried, "the target of '\(m.source.name)' does not carry key column '\(k)'")
                }
                return i
            }
            self.keyPositions = keyPositions

            // Source (SQLite): key columns first, then the mapped expressions.
            let sq = quoteIdentifier
            let n = m.sourceKey.count
            let src = "main.\(sq(m.source.name))"
            let srcKey = m.sourceKey.map(sq).joined(separator: ", ")
            let srcTuple = n == 1 ? srcKey : "(\(srcKey))"
            func sp(_ start: Int) -> String {
                let p = (0..<n).map { "?\(start + $0)" }.joined(separator: ", ")
                return n == 1 ? p : "(\(p))"
            }
            let exprs = m.columns.map { "(\($0.expression))" }.joined(separator: ", ")
            boundFromStart = try source.prepare("SELECT \(srcKey) FROM \(src) ORDER BY \(srcKey) LIMIT 1 OFFSET ?1")
            bound = try source.prepare("SELECT \(srcKey) FROM \(src) WHERE \(srcTuple) > \(sp(1)) ORDER BY \(srcKey) LIMIT 1 OFFSET ?\(n + 1)")
            let srcWhere = m.sourceKey.enumerated().map { "\(sq($0.element)) = ?\($0.offset + 1)" }.joined(separator: " AND ")
            sourcePoint = try source.prepare("SELECT \(srcKey), \(exprs) FROM \(src) WHERE \(srcWhere)")

            // Target (PostgreSQL): the mapped columns; text keys compared and
            // ordered in collation "C" (byte order, SQLite's BINARY), whatever
            // the column's own collation; plan-typed columns as their text.
            let q = PGSQL.ident
            let table = q(schema) + "." + q(m.targetTable)
            let cols = zip(m.columns, kinds).map { c, k in k == .textual ? "\(q(c.target))::text" : q(c.target) }.joined(separator: ", ")
            let keyCols = keyPositions.map { i in q(m.columns[i].target) + (kinds[i] == .text ? " COLLATE \"C\"" : "") }
            let tgtKey = keyCols.joined(separator: ", ")
            let tgtTuple = n == 1 ? tgtKey : "(\(tgtKey))"
            func tp(_ start: Int) -> String {
                let p = (0..<n).map { "$\(start + $0)" }.joined(separator: ", ")
                return n == 1 ? p : "(\(p))"
            }
            var sourceChunk: [Int: Statement] = [:]
            var targetChunk: [Int: String] = [:]
            for lower in [false, true] {
                for upper in [false, true] {
                    var s: [String] = [], t: [String] = []
                    if lower { s.append("\(srcTuple) > \(sp(1))"); t.append("\(tgtTuple) > \(tp(1))") }
                    if upper {
                        s.append("\(srcTuple) <= \(sp(lower ? n + 1 : 1))")
                        t.append("\(tgtTuple) <= \(tp(lower ? n + 1 : 1))")
                    }
                    let k = (lower ? 2 : 0) + (upper ? 1 : 0)
                    sourceChunk[k] = try source.prepare("SELECT \(srcKey), \(exprs) FROM \(src)\(s.isEmpty ? "" : " WHERE " + s.joined(separator: " AND ")) ORDER BY \(srcKey)")
                    targetChunk[k] = "SELECT \(cols) FROM \(table)\(t.isEmpty ? "" : " WHERE " + t.joined(separator: " AND ")) ORDER BY \(tgtKey)"
                }
            }
            self.sourceChunk = sourceChunk
            self.targetChunk = targetChunk
            targetPoint = "SELECT \(cols) FROM \(table) WHERE " + keyCols.enumerated().map { "\($0.element) = $\($0.offset + 1)" }.joined(separator: " AND ")
        }

        /// A source key value as a parameter compared with target key column `k`.
        func keyParam(_ v: Value, keyColumn k: Int) -> PGParam {
            switch (kinds[keyPositions[k]], v) {
            case (_, .null): return .value(.null)
            case (.numeric, .integer(let n)): return .textual(String(n))
            case (.numeric, .real(let d)) where d.isFinite: return .textual(PostgresTableWriter.decimal(d))
            case (.bool, .integer(let n)): return .textual(n == 0 ? "false" : "true")
            case (.textual, _): return .textual(Normal.textForm(v))
            default: return .value(v)
            }
        }

        /// The applied LSN in the open target transaction.
        private func applied() throws -> LSN {
            guard hasState else { return .zero }
            let r = try pg.query("SELECT applied_lsn FROM tidemark.migration WHERE id = 1")
            if case .integer(let v)? = r.rows.first?.first { return LSN(UInt64(max(0, v))) }
            return .zero
        }

        /// Runs `body` in a read-only snapshot of the target.
        private func targetSnapshot<R>(_ body: () throws -> R) throws -> R {
            try pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let r = try body()
                try pg.execute("COMMIT")
                return r
            } catch {
                try? pg.execute("ROLLBACK")
                throw error
            }
        }

        /// Runs `body` in one source read transaction (its snapshot begins
        /// at the first read).
        private func sourceSnapshot<R>(_ body: () throws -> R) throws -> R {
            try source.execute("BEGIN")
            defer { if source.isInTransaction { try? source.execute("ROLLBACK") } }
            let r = try body()
            try source.execute("COMMIT")
            return r
        }

        /// A target row in compared form: key values first, then the columns.
        private func targetRow(_ raw: [Value]) -> [Value] {
            var row = raw
            for (i, k) in kinds.enumerated() where k == .numeric { row[i] = Normal.targetNumeric(row[i]) }
            return keyPositions.map { row[$0] } + row
        }

        private func readSource(_ s: Statement) throws -> [[Value]] {
            var rows: [[Value]] = []
            let count = Int(s.columnCount)
            while try s.step() { rows.append((0..<count).map { s.columnValue(Int32($0)) }) }
            return rows
        }

        /// Source rows (key values first) in compared form: numeric values by
        /// value, plan-typed values as PostgreSQL renders them parsed as the
        /// column's type (one batch per column).
        private func normaliseSource(_ rows: inout [[Value]]) throws {
            let n = mapping.sourceKey.count
            for (i, k) in kinds.enumerated() {
                let at = n + i
                switch k {
                case .numeric:
                    for r in rows.indices { rows[r][at] = Normal.sourceNumeric(rows[r][at]) }
                case .textual:
                    var positions: [Int] = []
                    var texts: [String] = []
                    for r in rows.indices {
                        if case .null = rows[r][at] { continue }
                        guard let t = Normal.textForm(rows[r][at]), !t.utf8.contains(0) else {
                            rows[r][at] = Normal.unparseable(rows[r][at])
                            continue
                        }
                        positions.append(r)
                        texts.append(t)
                    }
                    let rendered = try render(texts, as: types[i])
                    for (p, v) in zip(positions, rendered) { rows[p][at] = v ?? Normal.unparseable(rows[p][at]) }
                default:
                    continue
                }
            }
        }

        /// PostgreSQL's text rendering of each text parsed as `type` (nil
        /// where it does not parse), in one query when all parse.
        private func render(_ texts: [String], as type: String) throws -> [Value?] {
            guard !texts.isEmpty else { return [] }
            let sql = "SELECT (v::\(type))::text FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i"
            do {
                let r = try pg.query(sql, [.textual(Self.arrayLiteral(texts))])
                return r.rows.map { $0.first }
            } catch let e as PGError where e.sqlState.map({ $0.hasPrefix("22") }) ?? false {
                // Some value does not parse: one by one, those are nil.
                return try texts.map { t in
                    do {
                        return try pg.query("SELECT ($1::\(type))::text", [.textual(t)]).rows.first?.first
                    } catch let e as PGError where e.sqlState.map({ $0.hasPrefix("22") }) ?? false {
                        return nil
                    }
                }
            }
        }

        /// A text[] literal: every element double-quoted, `"` and `\` escaped.
        static func arrayLiteral(_ texts: [String]) -> String {
            var out = "{"
            for (i, t) in texts.enumerated() {
                if i > 0 { out += "," }
                out += "\""
                for ch in t.unicodeScalars {
                    if ch == "\"" || ch == "\\" { out += "\\" }
                    out.unicodeScalars.append(ch)
                }
                out += "\""
            }
            return out + "}"
        }

        /// One chunk: key in (`lower`, `upper`] (open where nil), both sides
        /// in key order, target snapshot first.
        func readChunk(after lower: [Value]?, through upper: [Value]?) throws -> (applied: LSN, captured: LSN, source: [[Value]], target: [[Value]]) {
            let k = (lower != nil ? 2 : 0) + (upper != nil ? 1 : 0)
            let binds = (lower ?? []) + (upper ?? [])
            let params = binds.enumerated().map { keyParam($0.element, keyColumn: $0.offset % mapping.sourceKey.count) }
            let (appliedLSN, targetRaw) = try targetSnapshot { (try applied(), try pg.query(targetChunk[k]!, params).rows) }
            let s = sourceChunk[k]!
            let (captured, sourceRows0) = try sourceSnapshot { () -> (LSN, [[Value]]) in
                let captured = LSN(UInt64(max(0, try Capture.lastCapturedSeq(source))))
                s.reset()
                defer { s.reset() }
                try s.bind(binds)
                return (captured, try readSource(s))
            }
            var sourceRows = sourceRows0
            try normaliseSource(&sourceRows)
            return (appliedLSN, captured, sourceRows, targetRaw.map(targetRow))
        }

        /// Point reads of `keys` in fresh paired snapshots (for re-checks).
        func readKeys(_ keys: [[Value]]) throws -> Verifier.PairedRead {
            let (appliedLSN, targetRows) = try targetSnapshot { () -> (LSN, [[Value]?]) in
                let a = try applied()
                let rows = try keys.map { key -> [Value]? in
                    let params = key.enumerated().map { keyParam($0.element, keyColumn: $0.offset) }
                    return try pg.query(targetPoint, params).rows.first.map(targetRow)
                }
                return (a, rows)
            }
            let (captured, sourceFound) = try sourceSnapshot { () -> (LSN, [[Value]?]) in
                let captured = LSN(UInt64(max(0, try Capture.lastCapturedSeq(source))))
                let rows = try keys.map { key -> [Value]? in
                    sourcePoint.reset()
                    defer { sourcePoint.reset() }
                    try sourcePoint.bind(key)
                    return try readSource(sourcePoint).first
                }
                return (captured, rows)
            }
            var found = sourceFound
            var present = found.compactMap { $0 }
            try normaliseSource(&present)
            var it = present.makeIterator()
            for i in found.indices where found[i] != nil { found[i] = it.next() }
            return Verifier.PairedRead(applied: appliedLSN, captured: captured, source: found, target: targetRows)
        }
    }
}

/// Rows of ``Value``s as both sides of a PostgreSQL verify compare them:
/// one hash and one equality, exact (integers, the bit pattern of reals,
/// the bytes of text and blobs, NULL), never Swift's Unicode equivalence.
enum ValueRows {
    static func hash(_ rows: [[Value]]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        @inline(__always) func mix(_ v: UInt64) {
            h = (h ^ v) &* 0x0000_0100_0000_01B3
            h ^= h >> 29
        }
        func bytes(_ raw: UnsafeRawBufferPointer) {
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
        for row in rows {
            mix(UInt64(row.count))
            for v in row {
                switch v {
                case .integer(let i): mix(1); mix(UInt64(bitPattern: i))
                case .real(let d): mix(2); mix(d.bitPattern)
                case .text(var s): mix(3); s.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
                case .blob(let b): mix(4); b.withUnsafeBytes { bytes($0) }
                case .null: mix(5)
                }
            }
        }
        return h
    }

    static func same(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.text(let x), .text(let y)): return x.utf8.elementsEqual(y.utf8)
        default: return a == b  // integers, bit patterns of reals, blob bytes, NULL
        }
    }

    static func same(_ a: [Value], _ b: [Value]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { same($0, $1) }
    }

    static func same(_ a: ArraySlice<Value>, _ b: ArraySlice<Value>) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { same($0, $1) }
    }

    /// Merges two key-ordered row lists (key columns first), reporting keys
    /// only in the source (`missing`), only in the target (`extra`) and in
    /// both with other values (`different`).
    /// - Parameter greater: the source key order, decided by SQLite.
    static func merge(source s: [[Value]], target t: [[Value]], keyCount n: Int,
                      greater: ([Value], [Value]) throws -> Bool, visit: (RowDiff.Kind, [Value]) -> Void) throws {
        var i = 0, j = 0
        while i < s.count || j < t.count {
            if i < s.count && j < t.count {
                let ks = s[i][0..<n], kt = t[j][0..<n]
                if same(ks, kt) {
                    if !same(s[i], t[j]) { visit(.different, Array(ks)) }
                    i += 1; j += 1
                } else if try greater(Array(ks), Array(kt)) {
                    visit(.extra, Array(kt)); j += 1
                } else {
                    visit(.missing, Array(ks)); i += 1
                }
            } else if i < s.count {
                visit(.missing, Array(s[i][0..<n])); i += 1
            } else {
                visit(.extra, Array(t[j][0..<n])); j += 1
            }
        }
    }
}

/// A decimal number's exact value, independent of its spelling: sign,
/// significant digits (no leading or trailing zeros) and the power of ten
/// of the last one. "3", "3.0" and "0.3e1" are one value.
struct CanonicalDecimal: Equatable {
    var negative: Bool
    var digits: [UInt8]
    var exponent: Int

    init?(_ text: String) {
        var s = Substring(text)
        var negative = false
        if s.first == "-" { negative = true; s = s.dropFirst() } else if s.first == "+" { s = s.dropFirst() }
        var mantissa = s
        var exp = 0
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = s[..<e]
            guard let x = Int(s[s.index(after: e)...]) else { return nil }
            exp = x
        }
        var digits: [UInt8] = []
        var seenPoint = false
        var fraction = 0
        for ch in mantissa {
            if ch == "." {
                guard !seenPoint else { return nil }
                seenPoint = true
            } else if let d = ch.asciiValue, d >= 48, d <= 57 {
                digits.append(d - 48)
                if seenPoint { fraction += 1 }
            } else {
                return nil
            }
        }
        guard !digits.isEmpty else { return nil }
        exp -= fraction
        while digits.first == 0 { digits.removeFirst() }
        while digits.last == 0 { digits.removeLast(); exp += 1 }
        if digits.isEmpty { negative = false; exp = 0 }
        self.negative = negative
        self.digits = digits
        exponent = exp
    }

    /// The value as an Int64 when it is an integer within range.
    var int64: Int64? {
        if digits.isEmpty { return 0 }
        guard exponent >= 0, digits.count + exponent <= 19 else { return nil }
        var v: Int64 = 0
        for d in digits + Array(repeating: 0, count: exponent) {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = negative ? m.subtractingReportingOverflow(Int64(d)) : m.addingReportingOverflow(Int64(d))
            if o1 || o2 { return nil }
            v = a
        }
        return v
    }
}

extension PostgresState {
    /// Inside a transaction: a verify's start and outcome (what cutover
    /// checks), as ``StateTables/recordVerify(_:in:)`` for SQLite targets.
    static func recordVerify(_ v: VerifyRecord, in pg: PGConnection) throws {
        _ = try pg.query("UPDATE tidemark.migration SET verified_at = $1, verified_from_lsn = $2, verified_through_lsn = $3, verified_differences = $4 WHERE id = 1",
                         [.value(.integer(v.atMicros)), .value(.integer(Int64(v.fromLSN.rawValue))),
                          .value(.integer(Int64(v.throughLSN.rawValue))), .value(.integer(Int64(v.differences)))])
    }
}
