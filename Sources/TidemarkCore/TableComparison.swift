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
        let n = m.sourceKey.count
        let srcOrder = m.sourceKey.map(q).joined(separator: ", ")
        let exprs = m.columns.map { "(\($0.expression))" }.joined(separator: ", ")
        let s = try source.prepare("SELECT \(srcOrder), \(exprs) FROM \(q(m.source.name)) ORDER BY \(srcOrder)")
        let tgtKey = m.targetKey.map(q).joined(separator: ", ")
        let tgtCols = m.columns.map { q($0.target) }.joined(separator: ", ")
        let t = try target.prepare("SELECT \(tgtKey), \(tgtCols) FROM \(q(m.targetTable)) ORDER BY \(tgtKey)")
        let cmp = try TableStatements.keyComparator(m, connection: source)
        func row(_ st: Statement) -> [Value] { (0..<Int(st.columnCount)).map { st.columnValue(Int32($0)) } }
        var sr: [Value]? = try s.step() ? row(s) : nil
        var tr: [Value]? = try t.step() ? row(t) : nil
        func note(_ list: inout [[Value]], _ key: [Value]) { if list.count < keysMax { list.append(key) } }
        var missingCount = 0, extraCount = 0, differentCount = 0
        while sr != nil || tr != nil {
            if let a = sr, let b = tr {
                let ka = Array(a[0..<n]), kb = Array(b[0..<n])
                if ka == kb {
                    if Array(a[n...]) != Array(b[n...]) { note(&result.different, ka); differentCount += 1 }
                    result.rowsCompared += 1
                    sr = try s.step() ? row(s) : nil
                    tr = try t.step() ? row(t) : nil
                } else if try cmp(ka, kb) {
                    note(&result.extra, kb); extraCount += 1
                    tr = try t.step() ? row(t) : nil
                } else {
                    note(&result.missing, ka); missingCount += 1
                    sr = try s.step() ? row(s) : nil
                }
            } else if let a = sr {
                note(&result.missing, Array(a[0..<n])); missingCount += 1
                sr = try s.step() ? row(s) : nil
            } else if let b = tr {
                note(&result.extra, Array(b[0..<n])); extraCount += 1
                tr = try t.step() ? row(t) : nil
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
