/// A record read in place: its header decoded, its key and images left as
/// offsets into the decompressed frame that holds it.
///
/// Decoding a record into a ``ChangeRecord`` builds an array and a
/// ``Value`` per field (and a `String` or `[UInt8]` per text or blob) only
/// to free them once the change is applied; that was about a third of
/// replay's time. A view allocates nothing: ``LogCursor/nextView()`` checks
/// the record's whole structure (every length, count and tag) as
/// ``LogCursor/next()`` does, and the fields are then walked straight from
/// the frame's bytes.
///
/// Lifetime: the bytes belong to the cursor's frame buffer, which the
/// cursor reuses for the next frame. A view (and every ``FieldView``,
/// ``ValueView`` and buffer taken from it) is valid only until the cursor
/// that returned it reads past the current frame (its next `next()` or
/// `nextView()` call that loads a frame) or is released. ``record()``
/// copies it into an ordinary record that has no such limit.
public struct RecordView {
    public let lsn: LSN
    public let timestampMicros: Int64
    public let operation: ChangeOperation
    public let table: String
    /// The frame's content; each offset below is into it.
    let base: UnsafeRawBufferPointer
    let keyAt: Int
    /// Offsets of the images' field counts; -1 when absent.
    let beforeAt: Int
    let afterAt: Int

    /// Primary-key columns and their values (see ``ChangeRecord/key``).
    public var key: FieldsView { FieldsView(base: base, at: keyAt) }
    public var before: FieldsView? { beforeAt < 0 ? nil : FieldsView(base: base, at: beforeAt) }
    public var after: FieldsView? { afterAt < 0 ? nil : FieldsView(base: base, at: afterAt) }

    /// The record with its fields copied out of the frame.
    public func record() -> ChangeRecord {
        ChangeRecord(lsn: lsn, timestampMicros: timestampMicros, table: table, operation: operation,
                     key: key.fields(), before: before?.fields(), after: after?.fields())
    }

    /// Whether this is an update whose before image holds the key columns
    /// with exactly the key's bytes (the same names, storage classes and
    /// encoded values): certainly not a key change. False when unsure (a
    /// key column missing from the before image, or bytes that differ —
    /// ``ChangeRecord/isKeyChange`` then decides on the decoded record).
    public var keepsKeyBytes: Bool {
        guard operation == .update, let before else { return false }
        for k in key {
            guard let old = before.first(named: k.name), old.valueBytes.elementsEqual(k.valueBytes) else { return false }
        }
        return true
    }

    /// Reads and checks the key and images of the record whose header was
    /// just read (`reader` is after the table name), without copying them.
    static func make(header: RecordEncoding.Header, flags: UInt8, table: String,
                     _ reader: inout ByteReader) throws(DecodeFailure) -> RecordView {
        let keyAt = reader.offset
        try FieldsView.check(&reader)
        var beforeAt = -1, afterAt = -1
        if flags & RecordEncoding.flagBefore != 0 {
            beforeAt = reader.offset
            try FieldsView.check(&reader)
        }
        if flags & RecordEncoding.flagAfter != 0 {
            afterAt = reader.offset
            try FieldsView.check(&reader)
        }
        guard reader.offset == header.end else {
            throw DecodeFailure(what: "record at LSN \(header.lsn) has \(header.end - reader.offset) stray bytes")
        }
        return RecordView(lsn: header.lsn, timestampMicros: header.timestampMicros, operation: header.operation,
                          table: table, base: reader.base, keyAt: keyAt, beforeAt: beforeAt, afterAt: afterAt)
    }
}

/// The fields of a key or row image inside a ``RecordView`` (same lifetime).
public struct FieldsView: Sequence {
    let base: UnsafeRawBufferPointer
    /// Offset of the first field (after the count).
    let start: Int
    public let count: Int

    init(base: UnsafeRawBufferPointer, at offset: Int) {
        var r = UncheckedReader(base: base, offset: offset)
        count = Int(r.varint())
        start = r.offset
        self.base = base
    }

    public func makeIterator() -> Iterator { Iterator(reader: UncheckedReader(base: base, offset: start), left: count) }

    public struct Iterator: IteratorProtocol {
        var reader: UncheckedReader
        var left: Int

        @inline(__always)
        public mutating func next() -> FieldView? {
            guard left > 0 else { return nil }
            left -= 1
            let name = reader.bytes(Int(reader.varint()))
            let valueStart = reader.offset
            let value: ValueView
            switch reader.u8() {
            case RecordEncoding.tagInteger: value = .integer(reader.zigzag())
            case RecordEncoding.tagReal: value = .real(Double(bitPattern: reader.le64()))
            case RecordEncoding.tagText: value = .text(reader.bytes(Int(reader.varint())))
            case RecordEncoding.tagBlob: value = .blob(reader.bytes(Int(reader.varint())))
            default: value = .null  // tagNull: check(_:) refused any other tag
            }
            return FieldView(name: name, value: value,
                             valueBytes: UnsafeRawBufferPointer(rebasing: reader.base[valueStart..<reader.offset]))
        }
    }

    /// The first field whose name has exactly these bytes.
    public func first(named name: UnsafeRawBufferPointer) -> FieldView? {
        for f in self where f.name.elementsEqual(name) { return f }
        return nil
    }

    /// The fields copied out as ordinary ``Field``s.
    public func fields() -> [Field] {
        var out = [Field]()
        out.reserveCapacity(count)
        for f in self { out.append(Field(f.nameString, f.value.value)) }
        return out
    }

    /// Checks a field list at `reader.offset` as `RecordEncoding.decodeFields`
    /// does (the same failures for the same bytes) and moves past it.
    @inline(__always)
    static func check(_ reader: inout ByteReader) throws(DecodeFailure) {
        let count = try reader.varint()
        guard count <= UInt64(reader.remaining / 2) else {
            throw DecodeFailure(what: "field count \(count) exceeds the data")
        }
        for _ in 0..<count {
            _ = reader.offsetAfterLength(try reader.length())
            switch try reader.u8() {
            case RecordEncoding.tagNull: break
            case RecordEncoding.tagInteger: _ = try reader.varint()
            case RecordEncoding.tagReal: _ = try reader.u64()
            case RecordEncoding.tagText, RecordEncoding.tagBlob: _ = reader.offsetAfterLength(try reader.length())
            case let tag: throw DecodeFailure(what: "unknown value tag \(tag)")
            }
        }
    }
}

/// One field of a ``FieldsView`` (same lifetime).
public struct FieldView {
    /// The column name's UTF-8 bytes.
    public let name: UnsafeRawBufferPointer
    public let value: ValueView
    /// The value as encoded (tag and payload): equal bytes are equal values
    /// (the encoding of each value is unique).
    public let valueBytes: UnsafeRawBufferPointer

    public var nameString: String { String(decoding: name, as: UTF8.self) }
}

/// A value inside a ``RecordView``; text and blob bytes are not copied.
public enum ValueView {
    case null
    case integer(Int64)
    case real(Double)
    /// UTF-8 bytes.
    case text(UnsafeRawBufferPointer)
    case blob(UnsafeRawBufferPointer)

    /// The value copied out (what ``LogCursor/next()`` returns for it).
    public var value: Value {
        switch self {
        case .null: .null
        case .integer(let i): .integer(i)
        case .real(let d): .real(d)
        case .text(let b): .text(String(decoding: b, as: UTF8.self))
        case .blob(let b): .blob(Array(b.bindMemory(to: UInt8.self)))
        }
    }
}

/// Reads bytes a checked pass (``FieldsView/check(_:)``) already proved
/// well formed: no bounds checks beyond the buffer's own in debug builds.
struct UncheckedReader {
    let base: UnsafeRawBufferPointer
    var offset: Int

    @inline(__always)
    mutating func u8() -> UInt8 {
        let b = base[offset]
        offset += 1
        return b
    }

    @inline(__always)
    mutating func le64() -> UInt64 {
        let v = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        offset += 8
        return UInt64(littleEndian: v)
    }

    @inline(__always)
    mutating func varint() -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = u8()
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    @inline(__always)
    mutating func zigzag() -> Int64 {
        let u = varint()
        return Int64(bitPattern: u >> 1) ^ -Int64(bitPattern: u & 1)
    }

    @inline(__always)
    mutating func bytes(_ n: Int) -> UnsafeRawBufferPointer {
        let slice = UnsafeRawBufferPointer(rebasing: base[offset..<(offset + n)])
        offset += n
        return slice
    }
}
