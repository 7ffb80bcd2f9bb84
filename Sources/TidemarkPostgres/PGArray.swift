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
