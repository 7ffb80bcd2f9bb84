// Binary encoding of one ChangeRecord inside a frame's decompressed content.
//
// A frame's content is the concatenation of its records, each:
//
// | bytes     | field                                                        |
// |-----------|--------------------------------------------------------------|
// | varint    | body length in bytes (what follows, up to the next record)   |
// | 1         | flags: bits 0-1 operation (1 insert, 2 update, 3 delete),    |
// |           |        bit 4 before image present, bit 5 after image present |
// | varint    | LSN                                                          |
// | zigzag    | commit time, microseconds since the Unix epoch              |
// | string    | table name                                                   |
// | varint    | key field count, then that many fields                       |
// | varint    | before field count + fields (only if bit 4)                  |
// | varint    | after field count + fields (only if bit 5)                   |
//
// string := varint byte length, UTF-8 bytes
// field  := string name, value
// value  := tag byte, then by tag:
//           0 NULL · 1 integer: zigzag varint · 2 real: 8 bytes IEEE-754 bits, LE ·
//           3 text: string · 4 blob: varint length, bytes
//
// The length prefix lets a reader skip a record (table filter, seek) without
// decoding it. This table is repeated in LogFormat.md; golden segments in
// fixtures/log/v1 pin it.

enum RecordEncoding {
    static let flagBefore: UInt8 = 0x10
    static let flagAfter: UInt8 = 0x20
    static let opMask: UInt8 = 0x03

    static let tagNull: UInt8 = 0
    static let tagInteger: UInt8 = 1
    static let tagReal: UInt8 = 2
    static let tagText: UInt8 = 3
    static let tagBlob: UInt8 = 4

    /// Writes `record` into `out` at `offset` and returns the offset after it.
    ///
    /// The body is sized first, so the length prefix and the body are each
    /// written once, in place, through a pointer: appending piece by piece
    /// to an Array (a capacity and uniqueness check and a generic copy per
    /// string) was the largest cost of appending after zstd. `out` grows
    /// (zero-filled, at least doubling) only when too short; bytes past the
    /// returned offset are left as they were, so a frame buffer is reused
    /// without clearing it.
    static func encode(_ record: ChangeRecord, into out: inout [UInt8], at offset: Int) -> Int {
        precondition(offset <= out.count)
        var flags = record.operation.rawValue
        if record.before != nil { flags |= flagBefore }
        if record.after != nil { flags |= flagAfter }
        var body = 1 + varintSize(record.lsn.rawValue) + varintSize(zigzagBits(record.timestampMicros))
        body += stringSize(record.table) + fieldsSize(record.key)
        if let before = record.before { body += fieldsSize(before) }
        if let after = record.after { body += fieldsSize(after) }
        let end = offset + varintSize(UInt64(body)) + body
        if out.count < end {
            out.growZeroed(to: out.count + max(end - out.count, out.count))
        }
        out.withUnsafeMutableBytes { raw in
            var w = ByteWriter(raw.baseAddress! + offset)
            w.varint(UInt64(body))
            w.u8(flags)
            w.varint(record.lsn.rawValue)
            w.zigzag(record.timestampMicros)
            w.string(record.table)
            encodeFields(record.key, into: &w)
            if let before = record.before { encodeFields(before, into: &w) }
            if let after = record.after { encodeFields(after, into: &w) }
            precondition(w.position == raw.baseAddress! + end, "record encoding wrote a different size than it computed")
        }
        return end
    }

    @inline(__always)
    static func stringSize(_ s: String) -> Int {
        let n = s.utf8.count
        return varintSize(UInt64(n)) + n
    }

    @inline(__always)
    static func fieldsSize(_ fields: [Field]) -> Int {
        var size = varintSize(UInt64(fields.count))
        for field in fields {
            size += stringSize(field.name) + 1
            switch field.value {
            case .null: break
            case .integer(let i): size += varintSize(zigzagBits(i))
            case .real: size += 8
            case .text(let s): size += stringSize(s)
            case .blob(let b): size += varintSize(UInt64(b.count)) + b.count
            }
        }
        return size
    }

    @inline(__always)
    static func encodeFields(_ fields: [Field], into w: inout ByteWriter) {
        w.varint(UInt64(fields.count))
        for field in fields {
            w.string(field.name)
            switch field.value {
            case .null:
                w.u8(tagNull)
            case .integer(let i):
                w.u8(tagInteger)
                w.zigzag(i)
            case .real(let d):
                w.u8(tagReal)
                w.le64(d.bitPattern)
            case .text(let s):
                w.u8(tagText)
                w.string(s)
            case .blob(let b):
                w.u8(tagBlob)
                w.varint(UInt64(b.count))
                b.withUnsafeBytes { w.bytes($0) }
            }
        }
    }

    /// Header of a record, decoded without touching its images.
    struct Header {
        var lsn: LSN
        var timestampMicros: Int64
        var operation: ChangeOperation
        /// Offset of the byte after this record.
        var end: Int
    }

    /// Reads the length prefix and the fixed header of the record at
    /// `reader.offset`, leaving the reader just after the LSN and time.
    static func decodeHeader(_ reader: inout ByteReader) throws(DecodeFailure) -> (Header, flags: UInt8) {
        let length = try reader.length()
        let end = reader.offset + length
        let flags = try reader.u8()
        guard let op = ChangeOperation(rawValue: flags & opMask) else {
            throw DecodeFailure(what: "unknown operation \(flags & opMask)")
        }
        let lsn = try reader.varint()
        let ts = try reader.zigzag()
        return (Header(lsn: LSN(lsn), timestampMicros: ts, operation: op, end: end), flags)
    }

    /// Decodes the record at `reader.offset`; `names` supplies table and
    /// column names already seen (see ``NameCache``).
    static func decode(_ reader: inout ByteReader, names: inout NameCache) throws(DecodeFailure) -> ChangeRecord {
        let (header, flags) = try decodeHeader(&reader)
        return try decode(after: header, flags: flags, &reader, names: &names)
    }

    /// Decodes the rest of a record whose header ``decodeHeader(_:)`` just
    /// read, so a reader that checked the header need not decode it again.
    static func decode(after header: Header, flags: UInt8, _ reader: inout ByteReader, names: inout NameCache) throws(DecodeFailure) -> ChangeRecord {
        let table = try names.name(&reader)
        let key = try decodeFields(&reader, names: &names)
        let before = (flags & flagBefore) != 0 ? try decodeFields(&reader, names: &names) : nil
        let after = (flags & flagAfter) != 0 ? try decodeFields(&reader, names: &names) : nil
        guard reader.offset == header.end else {
            throw DecodeFailure(what: "record at LSN \(header.lsn) has \(header.end - reader.offset) stray bytes")
        }
        return ChangeRecord(
            lsn: header.lsn, timestampMicros: header.timestampMicros, table: table,
            operation: header.operation, key: key, before: before, after: after)
    }

    /// Reads only the table name after the header (for filters); leaves the
    /// reader positioned after the name.
    static func decodeTable(_ reader: inout ByteReader) throws(DecodeFailure) -> String {
        try reader.string()
    }

    @inline(__always)
    static func decodeFields(_ reader: inout ByteReader, names: inout NameCache) throws(DecodeFailure) -> [Field] {
        let count = try reader.varint()
        // Each field takes at least 2 bytes; refuse counts the data cannot hold.
        guard count <= UInt64(reader.remaining / 2) else {
            throw DecodeFailure(what: "field count \(count) exceeds the data")
        }
        var fields = [Field]()
        fields.reserveCapacity(Int(count))
        for _ in 0..<count {
            let name = try names.name(&reader)
            let value = try decodeValue(&reader)
            fields.append(Field(name, value))
        }
        return fields
    }

    @inline(__always)
    static func decodeValue(_ reader: inout ByteReader) throws(DecodeFailure) -> Value {
        switch try reader.u8() {
        case tagNull: return .null
        case tagInteger: return .integer(try reader.zigzag())
        case tagReal: return .real(Double(bitPattern: try reader.u64()))
        case tagText: return .text(try reader.string())
        case tagBlob:
            let n = try reader.length()
            return .blob(Array(try reader.bytes(n).bindMemory(to: UInt8.self)))
        case let tag: throw DecodeFailure(what: "unknown value tag \(tag)")
        }
    }
}
