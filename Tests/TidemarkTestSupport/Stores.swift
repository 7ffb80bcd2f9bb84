import TidemarkLog
import TidemarkSQLite

/// Reading what the tests wrote: rows of a SQLite database and records of a
/// change log (each test target once held its own copy).

extension Connection {
    /// All rows of `sql`, for assertions.
    public func values(_ sql: String, _ arguments: [Value] = []) throws -> [[Value]] {
        let statement = try prepare(sql)
        try statement.bind(arguments)
        return try statement.rows { row in (0..<row.columnCount).map { row.columnValue($0) } }
    }

    /// The first column of the first row of `sql` as an integer; 0 when
    /// there is no row or it is not an integer.
    public func integer(_ sql: String, _ arguments: [Value] = []) throws -> Int64 {
        let rows = try values(sql, arguments)
        guard let first = rows.first?.first, case .integer(let i) = first else { return 0 }
        return i
    }
}

extension LogCursor {
    /// Every record left in the cursor, in LSN order.
    public func allRecords() throws -> [ChangeRecord] {
        var out: [ChangeRecord] = []
        while let r = try next() { out.append(r) }
        return out
    }
}

/// Every record in the log at `path` from `from`, in LSN order.
public func logRecords(_ path: String, from: LSN = .zero) throws -> [ChangeRecord] {
    try LogReader(directory: path).cursor(from: from).allRecords()
}
