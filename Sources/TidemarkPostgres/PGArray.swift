/// A one-dimensional array in PostgreSQL's binary format, built element by
/// element: what `unnest($1::bigint[], …)` takes to upsert or delete many
/// rows with one statement.
///
/// Layout: ndim (1), has-nulls flag, element type OID, length, lower bound
/// (1), then each element as its length (-1 for NULL) and its binary form.
public struct PGArrayBuilder: Sendable {
    public let elementType: PGType
    private var body: [UInt8] = []
    public private(set) var count = 0
    private var hasNull = false

    public init(elementType: PGType) { self.elementType = elementType }

    /// Appends one element's binary form (nil: NULL).
    public mutating func append(_ element: [UInt8]?) {
        count += 1
        guard let element else {
            hasNull = true
            Self.put(Int32(-1), &body)
            return
        }
        Self.put(Int32(element.count), &body)
        body.append(contentsOf: element)
    }

    /// Appends one element already in its array form — its length as a
    /// big-endian Int32 (-1: NULL), then that many bytes — read from `row`
    /// at `offset`. Returns the offset after it, or nil (nothing appended)
    /// when `row` ends before the element does.
    public mutating func appendEncoded(_ row: UnsafeBufferPointer<UInt8>, at offset: Int) -> Int? {
        guard offset >= 0, offset + 4 <= row.count else { return nil }
        let length = Int32(bitPattern: UInt32(row[offset]) << 24 | UInt32(row[offset + 1]) << 16
                                       | UInt32(row[offset + 2]) << 8 | UInt32(row[offset + 3]))
        let end = offset + 4 + max(0, Int(length))
        guard length >= -1, end <= row.count else { return nil }
        count += 1
        if length < 0 { hasNull = true }
        body.append(contentsOf: UnsafeBufferPointer(rebasing: row[offset..<end]))
        return end
    }

    /// Appends a value's element form (length, then bytes) to `row`.
    public static func appendInt8(_ v: Int64, to row: inout [UInt8]) {
        put(Int32(8), &row)
        let u = UInt64(bitPattern: v)
        for shift in stride(from: 56, through: 0, by: -8) { row.append(UInt8(truncatingIfNeeded: u >> UInt64(shift))) }
    }
    public static func appendFloat8(_ d: Double, to row: inout [UInt8]) { appendInt8(Int64(bitPattern: d.bitPattern), to: &row) }
    public static func appendBytes(_ bytes: some Collection<UInt8>, to row: inout [UInt8]) {
        put(Int32(truncatingIfNeeded: bytes.count), &row)
        row.append(contentsOf: bytes)
    }
    public static func appendNull(to row: inout [UInt8]) { put(Int32(-1), &row) }

    /// The array's bytes (send as a binary parameter of type `elementType[]`).
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(20 + body.count)
        Self.put(Int32(1), &out)
        Self.put(Int32(hasNull ? 1 : 0), &out)
        Self.put(Int32(bitPattern: elementType.rawValue), &out)
        Self.put(Int32(count), &out)
        Self.put(Int32(1), &out)
        out.append(contentsOf: body)
        return out
    }

    static func put(_ v: Int32, _ out: inout [UInt8]) {
        let u = UInt32(bitPattern: v)
        out.append(UInt8(u >> 24)); out.append(UInt8(truncatingIfNeeded: u >> 16))
        out.append(UInt8(truncatingIfNeeded: u >> 8)); out.append(UInt8(truncatingIfNeeded: u))
    }

    // Binary forms of single values.
    public static func int8(_ v: Int64) -> [UInt8] {
        let u = UInt64(bitPattern: v)
        return (0..<8).map { UInt8(truncatingIfNeeded: u >> (56 - 8 * $0)) }
    }
    public static func float8(_ d: Double) -> [UInt8] { int8(Int64(bitPattern: d.bitPattern)) }
    public static func bool(_ b: Bool) -> [UInt8] { [b ? 1 : 0] }
    public static func numeric(decimal: String) throws -> [UInt8] { try PGNumeric.encode(decimal: decimal) }
}
