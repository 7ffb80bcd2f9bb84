import TidemarkLog
import TidemarkSQLite

/// A row-by-row comparison of a target table with its transformed source,
/// streaming both sides in key order (memory does not grow with table size).
/// Used when writers are stopped (the demo, tests); `tidemark verify` adds
/// live, chunked checking on top.
public struct TableComparison: Sendable {
    public var table: String
    public var rowsCompared = 0
    public var missing: [[Value]] = []
    public var extra: [[Value]] = []
    public var different: [[Value]] = []
    public var isEqual: Bool { missing.isEmpty && extra.isEmpty && different.isEmpty }

    /// Compares every mapped table of `plan`; keeps at most `keysMax`
    /// example keys per kind of difference.
    public static func compare(plan: Plan, keysMax: Int = 20) throws -> [TableComparison] {
        let source = try Connection(path: plan.source, mode: .readOnly)
        let target = plan.isSameFile ? source : try Connection(path: plan.target, mode: .readOnly)
        // In place, the columns this migration added are the ones compared.
        let mappings = try PlanResolver.resolve(plan, source: source, target: target, ownedColumns: try StateTables.addedColumns(target))
        return try mappings.map { try compare($0, source: source, target: target, keysMax: keysMax) }
    }

    static func compare(_ m: TableMapping, source: Connection, target: Connection, keysMax: Int) throws -> TableComparison {
        let q = quoteIdentifier
        var result = TableComparison(table: m.source.name)
        let srcOrder = m.sourceKey.map(q).joined(separator: ", ")
        let exprs = m.columns.map { "(\($0.expression))" }.joined(separator: ", ")
        let s = try source.prepare("SELECT \(srcOrder), \(exprs) FROM \(q(m.source.name)) ORDER BY \(srcOrder)")
        let tgtKey = m.targetKey.map(q).joined(separator: ", ")
        let tgtCols = m.columns.map { q($0.target) }.joined(separator: ", ")
        let t = try target.prepare("SELECT \(tgtKey), \(tgtCols) FROM \(q(m.targetTable)) ORDER BY \(tgtKey)")
        let greater = try TableStatements.keyComparator(m, connection: source)
        func note(_ list: inout [[Value]], _ key: [Value]) { if list.count < keysMax { list.append(key) } }
        try RowDiff.merge(source: s, target: t, keyCount: m.sourceKey.count, greater: greater,
                          matched: { result.rowsCompared += 1 }) { kind, key in
            switch kind {
            case .missing: note(&result.missing, key)
            case .extra: note(&result.extra, key)
            case .different: note(&result.different, key)
            }
        }
        return result
    }
}

extension TableStatements {
    /// `(a, b) -> a > b` in the source key's order, decided by SQLite.
    static func keyComparator(_ m: TableMapping, connection c: Connection) throws -> ([Value], [Value]) throws -> Bool {
        let n = m.sourceKey.count
        let collated = zip(1...n, m.keyCollations).map { i, coll in "?\(i) COLLATE \(quoteIdentifier(coll))" }.joined(separator: ", ")
        let rhs = (1...n).map { "?\(n + $0)" }.joined(separator: ", ")
        let s = try c.prepare(n == 1 ? "SELECT \(collated) > \(rhs)" : "SELECT (\(collated)) > (\(rhs))")
        return { a, b in
            s.reset()
            try s.bind(a + b)
            _ = try s.step()
            let r = s.columnInt64(0) != 0
            s.reset()
            return r
        }
    }
}

/// The merge both ``TableComparison`` and ``Verifier`` use: two statements
/// yielding rows in the source key's order, key columns first.
enum RowDiff {
    enum Kind { case missing, extra, different }

    /// Steps both statements to the end, reporting each key that is only in
    /// the source (`missing`), only in the target (`extra`), or in both with
    /// other values (`different`); `matched` is called per key in both.
    /// - Parameter greater: the source key order, decided by SQLite.
    static func merge(source s: Statement, target t: Statement, keyCount n: Int,
                      greater: ([Value], [Value]) throws -> Bool, matched: () -> Void = {},
                      visit: (Kind, [Value]) -> Void) throws {
        func row(_ st: Statement) throws -> [Value]? {
            try st.step() ? (0..<Int(st.columnCount)).map { st.columnValue(Int32($0)) } : nil
        }
        var a = try row(s)
        var b = try row(t)
        while a != nil || b != nil {
            if let x = a, let y = b {
                let kx = Array(x[0..<n]), ky = Array(y[0..<n])
                // Exact comparison (text by its bytes): Swift's `==` on
                // strings is Unicode equivalence, under which a decomposed
                // "é" equals a precomposed one that SQLite stores apart.
                if ValueRows.same(kx, ky) {
                    if !ValueRows.same(x, y) { visit(.different, kx) }
                    matched()
                    a = try row(s)
                    b = try row(t)
                } else if try greater(kx, ky) {
                    visit(.extra, ky)
                    b = try row(t)
                } else {
                    visit(.missing, kx)
                    a = try row(s)
                }
            } else if let x = a {
                visit(.missing, Array(x[0..<n]))
                a = try row(s)
            } else if let y = b {
                visit(.extra, Array(y[0..<n]))
                b = try row(t)
            }
        }
    }
}
