import TidemarkLog

/// Turns outbox rows into ``TidemarkLog/ChangeRecord``s, using the shape each
/// row was written with.
///
/// A row is decoded if and only if: its table has a recorded shape whose
/// `fromSeq` is below the row's `seq`; its `op` is 1, 2 or 3; the outbox has
/// the value columns its images need; and its text values are valid UTF-8.
/// Anything else is a ``CaptureError`` `badOutboxRow` naming the `seq` —
/// never skipped.
public struct OutboxDecoder: Sendable {
    /// Shapes per table, oldest first.
    private let shapes: [String: [CapturedTable]]
    /// Value columns the outbox had when the decoder was made; ``read(from:after:limit:)`` selects them all.
    public let valueColumns: Int

    public init(shapes: [CapturedTable], valueColumns: Int) {
        var byTable: [String: [CapturedTable]] = [:]
        for shape in shapes { byTable[shape.name, default: []].append(shape) }
        self.shapes = byTable.mapValues { $0.sorted { $0.fromSeq < $1.fromSeq } }
        self.valueColumns = valueColumns
    }

    /// A decoder for the shapes recorded in `connection`'s database. Read
    /// inside the transaction that reads the rows, so that shapes and outbox
    /// width agree with them.
    public init(connection: Connection) throws {
        self.init(shapes: try Capture.shapes(connection), valueColumns: try Capture.outboxValueColumns(connection))
    }

    /// The columns `SELECT` must return, in order, for ``decode(_:)``.
    public var selectColumns: String {
        (["seq", "ts", "tbl", "op"] + (0..<valueColumns).map { Capture.valueColumn($0 + 1) }).joined(separator: ", ")
    }

    /// The shape that wrote row `seq` of `table`.
    public func shape(of table: String, seq: Int64) -> CapturedTable? {
        guard let candidates = shapes[table] else { return nil }
        return candidates.last { $0.fromSeq < seq }
    }

    /// Decodes the current row of `statement`, which selects
    /// ``selectColumns`` from the outbox, reading each value straight from
    /// the statement in its own storage class.
    public func decode(_ statement: Statement) throws -> ChangeRecord {
        var cache = ShapeCache()
        return try decode(statement, cache: &cache)
    }

    /// The shapes of the table the previous row named, so that a run of rows
    /// of one table looks its shapes up once rather than hashing the table
    /// name per row. It only ever holds `shapes[table]` for its `table`.
    struct ShapeCache {
        var table: String?
        var candidates: [CapturedTable] = []
    }

    /// ``decode(_:)`` with a cache of the shape lookup, kept by the caller
    /// over the rows of one read.
    func decode(_ statement: Statement, cache: inout ShapeCache) throws -> ChangeRecord {
        let seq = statement.columnInt64(0)
        let table = statement.columnText(2)
        func fail(_ why: String) -> CaptureError {
            CaptureError(.badOutboxRow, "outbox row \(seq) (table '\(table)') cannot be decoded: \(why)", table: table)
        }
        guard seq > 0 else { throw fail("seq must be positive") }
        if cache.table != table {
            cache.table = table
            cache.candidates = shapes[table] ?? []
        }
        guard let shape = cache.candidates.last(where: { $0.fromSeq < seq }) else {
            throw fail("no captured shape is recorded for it; was capture installed with this table?")
        }
        let opCode = statement.columnInt64(3)
        guard (1...3).contains(opCode), let operation = ChangeOperation(rawValue: UInt8(opCode)) else {
            throw fail("unknown operation \(opCode)")
        }
        let width = shape.columns.count
        let imageCount = operation == .update ? 2 : 1
        guard imageCount * width <= valueColumns else {
            throw fail("its images need \(imageCount * width) value columns and the outbox has \(valueColumns)")
        }

        func image(_ first: Int32) throws -> [Field] {
            var fields: [Field] = []
            fields.reserveCapacity(width)
            for (offset, name) in shape.columns.enumerated() {
                let column = first + Int32(offset)
                let value: Value
                if statement.columnType(column) == .text {
                    // Swift text must be valid UTF-8; SQLite does not check.
                    guard let text = statement.withColumnBytes(column, { String(validating: $0, as: UTF8.self) }) else {
                        throw fail("the text of column '\(name)' is not valid UTF-8")
                    }
                    value = .text(text)
                } else {
                    value = statement.columnValue(column)
                }
                fields.append(Field(name, value))
            }
            return fields
        }
        let first = try image(4)
        let before: [Field]?, after: [Field]?
        switch operation {
        case .insert: (before, after) = (nil, first)
        case .delete: (before, after) = (first, nil)
        case .update: (before, after) = (first, try image(4 + Int32(width)))
        }
        let keyImage = after ?? before ?? []
        let key = try shape.keyColumns.map { name in
            guard let field = keyImage.first(where: { $0.name == name }) else {
                throw fail("key column '\(name)' is not among the captured columns")
            }
            return field
        }
        return ChangeRecord(
            lsn: LSN(UInt64(seq)),
            timestampMicros: statement.columnInt64(1),
            table: table,
            operation: operation,
            key: key,
            before: before,
            after: after)
    }

    /// Reads up to `limit` outbox rows with `seq` above `after`, in `seq`
    /// order, decoded.
    public func read(from connection: Connection, after: LSN, limit: Int) throws -> [ChangeRecord] {
        let statement = try connection.cachedStatement(
            "SELECT \(selectColumns) FROM \(Capture.outboxTable) WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        try statement.bind(Int64(clamping: after.rawValue), at: 1)
        try statement.bind(Int64(limit), at: 2)
        var records: [ChangeRecord] = []
        var cache = ShapeCache()
        try statement.forEachRow { records.append(try decode($0, cache: &cache)) }
        return records
    }
}
