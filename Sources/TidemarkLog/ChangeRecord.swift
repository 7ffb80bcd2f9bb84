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
    /// Primary-key columns and their values. For an update this is the new
    /// key; when the update changed the key (``isKeyChange``) the old one is
    /// ``beforeKey``. (Logs written before capture format 2 carry a key change
    /// as a delete of the old key and an insert of the new one instead; both
    /// are ordinary records.)
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

extension ChangeRecord {
    /// The key the row had before the change: the key columns' values in the
    /// before image (in ``key``'s order), or nil for an insert or when the
    /// before image lacks a key column.
    public var beforeKey: [Field]? {
        guard let before else { return nil }
        var fields: [Field] = []
        fields.reserveCapacity(key.count)
        for field in key {
            guard let old = before.first(where: { $0.name == field.name }) else { return nil }
            fields.append(old)
        }
        return fields
    }

    /// Whether this is an update that moved the row to another key: its
    /// before image's key differs from ``key`` (compared exactly, storage
    /// class and bits, as the log stores them).
    ///
    /// A key change is one record (the row moved, and its audit trail says
    /// so), but anything that places rows by key must treat it as two
    /// changes: the old key is gone, the new key holds the after image —
    /// see ``splitKeyChange()``.
    public var isKeyChange: Bool {
        guard operation == .update, let beforeKey else { return false }
        return beforeKey != key
    }

    /// A key change as the two changes it makes to keyed rows: a delete of
    /// the old key (with the before image) and an insert of the new key (with
    /// the after image), both at this record's LSN and time. Nil when this is
    /// not a key change (``isKeyChange``).
    ///
    /// Each half is judged on its own by whoever applies it (a replayer's
    /// tidemark may cover one key and not the other). Applying both in this
    /// order leaves the same rows as an old log's delete+insert pair.
    public func splitKeyChange() -> (delete: ChangeRecord, insert: ChangeRecord)? {
        guard isKeyChange, let beforeKey else { return nil }
        let delete = ChangeRecord(
            lsn: lsn, timestampMicros: timestampMicros, table: table, operation: .delete,
            key: beforeKey, before: before, after: nil)
        let insert = ChangeRecord(
            lsn: lsn, timestampMicros: timestampMicros, table: table, operation: .insert,
            key: key, before: nil, after: after)
        return (delete, insert)
    }

    /// The record as keyed-row changes: the two halves of a key change
    /// (``splitKeyChange()``), otherwise the record itself.
    public var keyedChanges: [ChangeRecord] {
        if let (delete, insert) = splitKeyChange() { return [delete, insert] }
        return [self]
    }
}
