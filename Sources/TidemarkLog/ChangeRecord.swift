/// A named column value inside a key or a row image.
public struct Field: Sendable, Hashable {
    public var name: String
    public var value: Value
    public init(_ name: String, _ value: Value) {
        self.name = name
        self.value = value
    }
}

/// The kind of row change a record describes.
public enum ChangeOperation: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case insert = 1
    case update = 2
    case delete = 3

    public var description: String {
        switch self {
        case .insert: "insert"
        case .update: "update"
        case .delete: "delete"
        }
    }

    public init?(name: String) {
        switch name {
        case "insert": self = .insert
        case "update": self = .update
        case "delete": self = .delete
        default: return nil
        }
    }
}

/// One committed row change.
///
/// Invariants (checked by ``ChangeRecord/validate()`` before a record is
/// appended): inserts carry an after image and no before image, deletes a
/// before image and no after image, updates both; the key is not empty.
public struct ChangeRecord: Sendable, Hashable {
    /// Position in the log; strictly increasing.
    public var lsn: LSN
    /// Commit time in microseconds since the Unix epoch.
    public var timestampMicros: Int64
    public var table: String
    public var operation: ChangeOperation
    /// Primary-key columns and their values (for an update, the new key; a key
    /// change is logged by capture as a delete plus an insert).
    public var key: [Field]
    public var before: [Field]?
    public var after: [Field]?

    public init(
        lsn: LSN, timestampMicros: Int64, table: String, operation: ChangeOperation,
        key: [Field], before: [Field]?, after: [Field]?
    ) {
        self.lsn = lsn
        self.timestampMicros = timestampMicros
        self.table = table
        self.operation = operation
        self.key = key
        self.before = before
        self.after = after
    }

    /// Throws ``LogError`` with code `.invalidRecord` when the images do not
    /// match the operation.
    public func validate() throws(LogError) {
        func fail(_ why: String) -> LogError {
            LogError(.invalidRecord, "record at LSN \(lsn) for table '\(table)': \(why)")
        }
        if table.isEmpty { throw fail("table name is empty") }
        if key.isEmpty { throw fail("key is empty") }
        switch operation {
        case .insert:
            if after == nil { throw fail("insert needs an after image") }
            if before != nil { throw fail("insert must not have a before image") }
        case .update:
            if after == nil || before == nil { throw fail("update needs before and after images") }
        case .delete:
            if before == nil { throw fail("delete needs a before image") }
            if after != nil { throw fail("delete must not have an after image") }
        }
    }
}
