import TidemarkLog
import TidemarkSQLite

/// Before anything is copied to PostgreSQL: finds the source values
/// PostgreSQL cannot hold exactly in the column types
/// ``PostgresSchema/translate(plan:mappings:schema:pgSchema:observedClasses:)``
/// gives them, and observes each column's storage class (which types the
/// columns without affinity).
///
/// One pass over each copy table (the plan's expressions over every source
/// row, in key order, in one read transaction), per value:
/// - its storage class against the column's encoding (an `INTEGER` column
///   holding text, a `NUMERIC` column holding text or a blob, a blob for a
///   `timestamptz`, …); a column without affinity must hold one class;
/// - text: no NUL (PostgreSQL text cannot hold it), valid UTF-8 (read as the
///   raw bytes SQLite stores);
/// - `numeric`: reals must be finite and not -0.0 (numeric has neither);
/// - `double precision` from an integer: exactly representable (|i| ≤ 2^53);
/// - `boolean`: integers 0 and 1;
/// - plan-typed columns (encoding ``PGEncoding/textual``): the value's text
///   form must be read by the server as that type (batched, see
///   ``ParseCheck``); without a server these are listed as not checked.
///
/// NOT NULL, CHECK, UNIQUE and foreign keys are the SQLite ``Preflight``'s.
public enum PostgresPreflight {
    /// Given a PostgreSQL type and text inputs, the (0-based) positions of
    /// the inputs the server does not accept as that type.
    public typealias ParseCheck = (_ type: String, _ inputs: [String]) throws -> [Int]

    /// Values per server round trip of the parse check.
    static let parseBatch = 1000

    /// The scan, with the server's parse check given as a function (nil:
    /// plan-typed values are not checked and listed in `unchecked`).
    public static func run(plan: Plan, mappings: [TableMapping], schema: TargetSchema, source: Connection,
                           parseCheck: ParseCheck?, keysPerViolation: Int = 5) throws
        -> (report: PreflightReport, observedClasses: [String: [String: String]]) {
        var report = PreflightReport()
        var observed: [String: [String: String]] = [:]
        func scanAll() throws {
            for m in mappings where m.shape == .copy {
                guard let table = schema.table(forSource: m.source.name) else { continue }
                var scan = try TypeScan(mapping: m, table: table, keysMax: max(0, keysPerViolation), parseCheck: parseCheck)
                try scan.run(source: source)
                report.violations += scan.violations
                report.unchecked += scan.unchecked
                report.rowsChecked += scan.rows
                observed[m.targetTable] = scan.observed
            }
        }
        if source.isInTransaction { try scanAll() } else { try source.transaction(.deferred) { try scanAll() } }
        return (report, observed)
    }

    /// Whether `bytes` are valid UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF).
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b < 0x80 { i += 1; continue }
            var need = 0
            var min: UInt32 = 0
            var cp: UInt32 = 0
            if b & 0xE0 == 0xC0 { need = 1; min = 0x80; cp = UInt32(b & 0x1F) }
            else if b & 0xF0 == 0xE0 { need = 2; min = 0x800; cp = UInt32(b & 0x0F) }
            else if b & 0xF8 == 0xF0 { need = 3; min = 0x10000; cp = UInt32(b & 0x07) }
            else { return false }
            guard i + need < n else { return false }
            for k in 1...need {
                let c = bytes[i + k]
                guard c & 0xC0 == 0x80 else { return false }
                cp = (cp << 6) | UInt32(c & 0x3F)
            }
            if cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) { return false }
            i += need + 1
        }
        return true
    }
}

/// The type scan of one copy table.
struct TypeScan {
    let m: TableMapping
    let table: TargetSchema.Table
    let keysMax: Int
    let parseCheck: PostgresPreflight.ParseCheck?
    let rules: [PostgresSchema.ColumnRule]
    var violations: [PreflightViolation] = []
    var unchecked: [String] = []
    var rows = 0
    var observed: [String: String] = [:]

    /// Rows of one problem of one column: how many, the first keys.
    struct Problem {
        var order: Int
        var constraint: String
        var kind: String
        var hint: String
        var count = 0
        var keys: [[Field]] = []
    }
    /// Per column: rows per storage class with their first keys (row
    /// number, key), and the problems found.
    struct ColumnState {
        var classCount: [String: Int] = [:]
        var classKeys: [String: [(Int, [Field])]] = [:]
        var problems: [String: Problem] = [:]
        /// Text problems (NUL, UTF-8): reported only when the column is sent as text.
        var textProblems: [String: Problem] = [:]
        /// Values waiting for the server's parse check.
        var pending: [(String, [Field])] = []
    }

    init(mapping: TableMapping, table: TargetSchema.Table, keysMax: Int, parseCheck: PostgresPreflight.ParseCheck?) throws {
        m = mapping
        self.table = table
        self.keysMax = keysMax
        self.parseCheck = parseCheck
        rules = try PostgresSchema.columnRules(mapping, createSQL: table.createSQL)
    }

    mutating func run(source: Connection) throws {
        let q = quoteIdentifier
        let keyCount = m.sourceKey.count
        let sql = "SELECT " + (m.sourceKey.map(q) + m.columns.map(\.expression)).joined(separator: ", ")
            + " FROM " + q(m.source.name) + " ORDER BY " + m.sourceKey.map(q).joined(separator: ", ")
        let s = try source.prepare(sql)
        var states = Array(repeating: ColumnState(), count: m.columns.count)
        var row = 0
        while try s.step() {
            row += 1
            var key: [Field]? = nil
            func keyFields() -> [Field] {
                if let key { return key }
                let k = (0..<keyCount).map { Field(m.sourceKey[$0], s.columnValue(Int32($0))) }
                key = k
                return k
            }
            for j in 0..<m.columns.count {
                let idx = Int32(keyCount + j)
                let cls = s.columnType(idx)
                if cls == .null { continue }
                let clsName = cls.description
                states[j].classCount[clsName, default: 0] += 1
                if (states[j].classKeys[clsName]?.count ?? 0) < keysMax {
                    states[j].classKeys[clsName, default: []].append((row, keyFields()))
                }
                if cls == .text {
                    let (hasNul, valid) = s.withColumnBytes(idx) { b in
                        (b.contains(0), PostgresPreflight.isValidUTF8(b))
                    }
                    if hasNul { note(&states[j].textProblems, "nul", order: 1, kind: "text", constraint: "\(m.columns[j].target): text with a NUL character", hint: "PostgreSQL text cannot hold NUL (U+0000): strip it from those rows (replace(col, char(0), '')) or store them as BLOBs", keyFields) }
                    if !valid { note(&states[j].textProblems, "utf8", order: 2, kind: "text", constraint: "\(m.columns[j].target): text that is not valid UTF-8", hint: "PostgreSQL text must be valid UTF-8: correct those rows' bytes, or store them as BLOBs (CAST(col AS BLOB))", keyFields) }
                    if hasNul || !valid, case .fixed(_, let e, _) = rules[j], e == .text || e == .textual { continue }
                }
                guard case .fixed(let type, let encoding, _) = rules[j] else { continue }
                try check(&states[j], j: j, type: type, encoding: encoding, cls: cls, statement: s, idx: idx, keyFields)
            }
        }
        rows = row
        for j in 0..<m.columns.count {
            try flush(&states[j], j: j)
            finish(states[j], j: j)
        }
    }

    func note(_ problems: inout [String: Problem], _ id: String, order: Int, kind: String, constraint: String, hint: String, _ key: () -> [Field]) {
        var p = problems[id] ?? Problem(order: order, constraint: constraint, kind: kind, hint: hint)
        p.count += 1
        if p.keys.count < keysMax { p.keys.append(key()) }
        problems[id] = p
    }

    /// One non-NULL value of a column with a fixed type.
    func check(_ st: inout ColumnState, j: Int, type: String, encoding: PGEncoding, cls: StorageClass,
                        statement s: Statement, idx: Int32, _ key: () -> [Field]) throws {
        let col = m.columns[j].target
        let mismatchHint = "correct those rows in the source, or give the column a PostgreSQL type that holds them (the plan's type:, or create:)"
        func mismatch() {
            note(&st.problems, "class-\(cls)", order: 0, kind: "type", constraint: "\(col) (\(type)): \(cls) values", hint: mismatchHint, key)
        }
        switch encoding {
        case .int8: if cls != .integer { mismatch() }
        case .float8:
            if cls == .integer {
                // Sent as the same double: exact only up to 2^53.
                let i = s.columnInt64(idx)
                if i.magnitude > (1 << 53) {
                    note(&st.problems, "float-int", order: 3, kind: "type", constraint: "\(col) (\(type)): integers beyond 2^53, which a double cannot hold exactly", hint: mismatchHint, key)
                }
            } else if cls != .real { mismatch() }
        case .text: if cls != .text && cls != .integer { mismatch() }
        case .bytea: if cls != .blob { mismatch() }
        case .numeric:
            if cls == .real {
                let d = s.columnDouble(idx)
                if !d.isFinite || (d == 0 && d.sign == .minus) {
                    note(&st.problems, "numeric-real", order: 3, kind: "type", constraint: "\(col) (\(type)): infinity or -0.0, which numeric cannot hold", hint: "correct those rows, or declare the column REAL (double precision) in the source or the plan", key)
                }
            } else if cls != .integer { mismatch() }
        case .bool:
            if cls != .integer || (s.columnInt64(idx) != 0 && s.columnInt64(idx) != 1) {
                note(&st.problems, "bool", order: 3, kind: "type", constraint: "\(col) (\(type)): values other than the integers 0 and 1", hint: "correct those rows, or map the column with an expression giving 0 or 1", key)
            }
        case .textual:
            guard cls != .blob, let text = PostgresSchema.textualInput(s.columnValue(idx)) else { mismatch(); return }
            guard parseCheck != nil else { return }
            st.pending.append((text, key()))
            if st.pending.count >= PostgresPreflight.parseBatch { try flush(&st, j: j) }
        }
    }

    /// Sends the pending values of a plan-typed column to the server.
    func flush(_ st: inout ColumnState, j: Int) throws {
        guard let parseCheck, !st.pending.isEmpty, case .fixed(let type, _, _) = rules[j] else { return }
        let batch = st.pending
        st.pending.removeAll(keepingCapacity: true)
        for i in try parseCheck(type, batch.map(\.0)) where i >= 0 && i < batch.count {
            note(&st.problems, "parse", order: 4, kind: "type",
                 constraint: "\(m.columns[j].target) (\(type)): values PostgreSQL does not accept as \(type)",
                 hint: "correct those rows, or the plan's expression or type: for the column", { batch[i].1 })
        }
    }

    mutating func finish(_ st: ColumnState, j: Int) {
        let col = m.columns[j].target
        var problems = Array(st.problems.values)
        // The class that holds most values (ties: in a fixed order).
        let order = ["integer", "real", "text", "blob"]
        let major = st.classCount.max { a, b in a.value != b.value ? a.value < b.value : order.firstIndex(of: a.key)! > order.firstIndex(of: b.key)! }?.key
        observed[col] = major ?? "null"
        var sentAsText = false
        switch rules[j] {
        case .fixed(let type, let encoding, _):
            sentAsText = encoding == .text || encoding == .textual
            if encoding == .textual, parseCheck == nil, st.classCount.values.reduce(0, +) > 0 {
                unchecked.append("\(m.source.name) -> \(m.targetTable): values of \(col) are not checked to be valid \(type) (no PostgreSQL server given)")
            }
        case .byValues(let declared):
            sentAsText = major == "text"
            if st.classCount.count > 1, let major {
                let others = st.classCount.filter { $0.key != major }
                let keys = others.keys.flatMap { st.classKeys[$0] ?? [] }.sorted { $0.0 < $1.0 }.prefix(keysMax).map(\.1)
                let mix = order.compactMap { c in st.classCount[c].map { "\($0) \(c)" } }.joined(separator: ", ")
                let typeHint = declared.isEmpty ? "no type" : "type \(declared)"
                problems.append(Problem(order: 0, constraint: "\(col) (\(typeHint)): mixed storage classes (\(mix))", kind: "type",
                                        hint: "PostgreSQL columns hold one type: correct those rows so the column holds only \(major) values, or give the column a plan type: that holds them (e.g. type: text)",
                                        count: others.values.reduce(0, +), keys: Array(keys)))
            }
        }
        if sentAsText { problems += st.textProblems.values }
        for p in problems.sorted(by: { ($0.order, $0.constraint) < ($1.order, $1.constraint) }) {
            violations.append(PreflightViolation(table: m.source.name, targetTable: m.targetTable, kind: p.kind, constraint: p.constraint,
                                                 rows: p.count, keys: p.keys, hint: p.hint))
        }
    }
}
