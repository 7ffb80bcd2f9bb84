import TidemarkLog

/// Turns outbox rows into ``TidemarkLog/ChangeRecord``s, using the shape each
/// row was written with.
///
/// A row is decoded if and only if: its table has a recorded shape whose
/// `fromSeq` is below the row's `seq`; its `op` is 1, 2 or 3; its `key` parses
/// to one value per key column; its images are present exactly as the
/// operation requires and parse to one value per column. Anything else is a
/// ``CaptureError`` `badOutboxRow` naming the `seq` — never skipped.
public struct OutboxDecoder: Sendable {
    /// Shapes per table, oldest first.
    private let shapes: [String: [CapturedTable]]

    public init(shapes: [CapturedTable]) {
        var byTable: [String: [CapturedTable]] = [:]
        for shape in shapes { byTable[shape.name, default: []].append(shape) }
        self.shapes = byTable.mapValues { $0.sorted { $0.fromSeq < $1.fromSeq } }
    }

    /// A decoder for the shapes recorded in `connection`'s database.
    public init(connection: Connection) throws {
        self.init(shapes: try Capture.shapes(connection))
    }

    /// The columns `SELECT` must return, in order, for ``decode(_:)``.
    public static let selectColumns = "seq, ts, tbl, op, key, before, after"

    /// The shape that wrote row `seq` of `table`.
    public func shape(of table: String, seq: Int64) -> CapturedTable? {
        guard let candidates = shapes[table] else { return nil }
        return candidates.last { $0.fromSeq < seq }
    }

    /// Decodes the current row of `statement`, which selects
    /// ``selectColumns`` from the outbox. Values are parsed in place from
    /// SQLite's buffers.
    public func decode(_ statement: Statement) throws -> ChangeRecord {
        let seq = statement.columnInt64(0)
        let table = statement.columnText(2)
        func fail(_ why: String) -> CaptureError {
            CaptureError(.badOutboxRow, "outbox row \(seq) (table '\(table)') cannot be decoded: \(why)", table: table)
        }
        guard seq > 0 else { throw fail("seq must be positive") }
        guard let shape = shape(of: table, seq: seq) else {
            throw fail("no captured shape is recorded for it; was capture installed with this table?")
        }
        guard let operation = ChangeOperation(rawValue: UInt8(clamping: max(0, statement.columnInt64(3)))),
              statement.columnInt64(3) <= 3
        else { throw fail("unknown operation \(statement.columnInt64(3))") }

        func values(_ column: Int32, count: Int, what: String) throws -> [Value] {
            var values: [Value] = []
            values.reserveCapacity(count)
            do {
                try statement.withColumnBytes(column) { bytes in
                    try QuotedValue.parseList(bytes, into: &values)
                }
            } catch let error as QuotedValue.SyntaxError {
                throw fail("\(what): \(error)")
            }
            guard values.count == count else {
                throw fail("\(what) has \(values.count) values for \(count) columns")
            }
            return values
        }
        func image(_ column: Int32, what: String) throws -> [Field]? {
            if statement.columnIsNull(column) { return nil }
            let parsed = try values(column, count: shape.columns.count, what: what)
            return zip(shape.columns, parsed).map { Field($0, $1) }
        }
        guard !statement.columnIsNull(4) else { throw fail("the key is NULL") }
        let keyValues = try values(4, count: shape.keyColumns.count, what: "key")
        let key = zip(shape.keyColumns, keyValues).map { Field($0, $1) }
        let before = try image(5, what: "before image")
        let after = try image(6, what: "after image")

        let record = ChangeRecord(
            lsn: LSN(UInt64(seq)),
            timestampMicros: statement.columnInt64(1),
            table: table,
            operation: operation,
            key: key,
            before: before,
            after: after)
        do {
            try record.validate()
        } catch {
            throw fail(error.message)
        }
        return record
    }

    /// Reads up to `limit` outbox rows with `seq` above `after`, in `seq`
    /// order, decoded.
    public func read(from connection: Connection, after: LSN, limit: Int) throws -> [ChangeRecord] {
        let statement = try connection.cachedStatement(
            "SELECT \(Self.selectColumns) FROM \(Capture.outboxTable) WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        try statement.bind(Int64(clamping: after.rawValue), at: 1)
        try statement.bind(Int64(limit), at: 2)
        var records: [ChangeRecord] = []
        try statement.forEachRow { records.append(try decode($0)) }
        return records
    }
}
