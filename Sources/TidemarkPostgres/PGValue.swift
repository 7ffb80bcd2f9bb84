import CLibPQ
import TidemarkLog

/// Type OIDs of the built-in PostgreSQL types this client knows by name.
public enum PGType: UInt32, Sendable {
    case bool = 16, bytea = 17, char = 18, name = 19, int8 = 20, int2 = 21, int4 = 23, text = 25, oid = 26, xid = 28
    case json = 114, xml = 142, float4 = 700, float8 = 701, unknown = 705
    case bpchar = 1042, varchar = 1043, date = 1082, time = 1083, timestamp = 1114, timestamptz = 1184
    case interval = 1186, numeric = 1700, uuid = 2950, jsonb = 3802, xid8 = 5069
}

/// One parameter: Value (TidemarkLog) sent in binary for int8/float8/text/bytea;
/// `.textual(String)` sends text format with the given type (PG parses it).
///
/// `query` and `PGPipeline.send` send `.value` with its own type: .integer as
/// int8 (OID 20), .real as float8 (701, bit-exact), .text as text (25),
/// .blob as bytea (17), .null untyped. `.textual` is sent in text format with
/// OID 0, so the server infers the type from the statement (jsonb, uuid, …).
/// `execPrepared`/`sendPrepared` send against the statement's parameter types
/// (learnt at `prepare`): binary when the value's class is that type's binary
/// form (integer→int8/int4/int2/oid, real→float8, blob→anything, text→bytea
/// as UTF-8 bytes), otherwise the value's text form (integer digits, shortest
/// round-trip double, NaN/Infinity/-Infinity) in text format, parsed by the
/// server exactly as a literal would be.
public enum PGParam: Sendable {
    case value(Value)
    case textual(String?)
}

/// A fully read result.
///
/// Columns are always requested in binary and decoded by type OID:
/// int2/int4/int8/oid/xid/xid8 → .integer; float4/float8 → .real (bit-exact);
/// text/varchar/bpchar/name/"char"/json/jsonb/xml → .text; bytea → .blob;
/// bool → .integer(0/1); numeric → .text (exact decimal string, "NaN",
/// "Infinity", "-Infinity"); uuid → .text (canonical lowercase form);
/// timestamp/timestamptz/time → .integer microseconds (since 2000-01-01 00:00
/// UTC for the timestamps, since midnight for time); date → .integer days
/// since 2000-01-01; NULL → .null. Any other type: its binary form as .text
/// when that is valid UTF-8 (enums, citext, …), else .blob (arrays, ranges,
/// geometric types: cast to text in SQL to read those).
public struct PGRows: Sendable {
    public var columnNames: [String]
    public var columnTypes: [UInt32]
    public var rows: [[Value]]
    /// From PQcmdTuples; 0 if the command reports none.
    public var affectedRows: Int

    public init(columnNames: [String] = [], columnTypes: [UInt32] = [], rows: [[Value]] = [], affectedRows: Int = 0) {
        self.columnNames = columnNames
        self.columnTypes = columnTypes
        self.rows = rows
        self.affectedRows = affectedRows
    }
}

/// Encoding and decoding of values in PostgreSQL's binary formats.
enum PGValues {
    // MARK: text forms

    /// A double's text form that float8in and numeric_in parse back exactly.
    static func float8Text(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return d.description
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        var s = ""
        s.reserveCapacity(bytes.count * 2)
        for b in bytes { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
        return s
    }

    // MARK: binary writers

    static func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
    }

    static func bigEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        var out: [UInt8] = []
        append(v, to: &out)
        return out
    }

    // MARK: parameters

    struct Encoded {
        var types: [UInt32] = []
        var values: [[UInt8]?] = []   // text-format values are NUL-terminated
        var formats: [Int32] = []

        mutating func add(type: UInt32, value: [UInt8]?, binary: Bool) {
            types.append(type)
            values.append(value)
            formats.append(binary ? 1 : 0)
        }

        mutating func addText(_ s: String, type: UInt32 = 0) throws {
            var bytes = Array(s.utf8)
            if bytes.contains(0) {
                throw PGError(message: "a text parameter contains a NUL character, which PostgreSQL text cannot hold")
            }
            bytes.append(0)
            add(type: type, value: bytes, binary: false)
        }

        /// Calls body with the C arrays PQexecParams & co. expect.
        func withCArrays<R>(_ body: (UnsafePointer<Oid>?, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R) -> R {
            // One contiguous storage; every value gets at least one byte so an
            // empty non-NULL value still has a non-NULL pointer.
            var storage: [UInt8] = []
            var offsets: [Int?] = []
            var lengths: [Int32] = []
            for v in values {
                if let v {
                    offsets.append(storage.count)
                    storage.append(contentsOf: v)
                    storage.append(0)
                    lengths.append(Int32(v.count))
                } else {
                    offsets.append(nil)
                    lengths.append(0)
                }
            }
            if storage.isEmpty { storage.append(0) }
            return storage.withUnsafeBufferPointer { buf in
                let base = UnsafeRawPointer(buf.baseAddress!)
                let pointers: [UnsafePointer<CChar>?] = offsets.map { off in
                    off.map { base.advanced(by: $0).assumingMemoryBound(to: CChar.self) }
                }
                return types.withUnsafeBufferPointer { t in
                    pointers.withUnsafeBufferPointer { p in
                        lengths.withUnsafeBufferPointer { l in
                            formats.withUnsafeBufferPointer { f in
                                body(t.baseAddress, p.baseAddress, l.baseAddress, f.baseAddress)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Parameters with their own types (query, pipeline send).
    static func encode(_ params: [PGParam]) throws -> Encoded {
        try checkCount(params.count)
        var e = Encoded()
        for p in params {
            switch p {
            case .textual(nil), .value(.null): e.add(type: 0, value: nil, binary: false)
            case .textual(let s?): try e.addText(s)
            case .value(.integer(let i)): e.add(type: PGType.int8.rawValue, value: bigEndian(i), binary: true)
            case .value(.real(let d)): e.add(type: PGType.float8.rawValue, value: bigEndian(d.bitPattern), binary: true)
            case .value(.text(let s)): e.add(type: PGType.text.rawValue, value: Array(s.utf8), binary: true)
            case .value(.blob(let b)): e.add(type: PGType.bytea.rawValue, value: b, binary: true)
            }
        }
        return e
    }

    /// Parameters against a prepared statement's parameter types.
    static func encode(_ params: [PGParam], against types: [UInt32]) throws -> Encoded {
        try checkCount(params.count)
        var e = Encoded()
        for (index, p) in params.enumerated() {
            let type = index < types.count ? types[index] : 0
            switch p {
            case .textual(nil), .value(.null): e.add(type: type, value: nil, binary: false)
            case .textual(let s?): try e.addText(s, type: type)
            case .value(.integer(let i)):
                switch PGType(rawValue: type) {
                case .int8?: e.add(type: type, value: bigEndian(i), binary: true)
                case .int4? where Int64(Int32.min)...Int64(Int32.max) ~= i:
                    e.add(type: type, value: bigEndian(Int32(i)), binary: true)
                case .int2? where Int64(Int16.min)...Int64(Int16.max) ~= i:
                    e.add(type: type, value: bigEndian(Int16(i)), binary: true)
                case .oid? where 0...Int64(UInt32.max) ~= i:
                    e.add(type: type, value: bigEndian(UInt32(i)), binary: true)
                default: try e.addText(String(i), type: type)
                }
            case .value(.real(let d)):
                if type == PGType.float8.rawValue {
                    e.add(type: type, value: bigEndian(d.bitPattern), binary: true)
                } else {
                    try e.addText(float8Text(d), type: type)
                }
            case .value(.text(let s)):
                if type == PGType.bytea.rawValue {
                    e.add(type: type, value: Array(s.utf8), binary: true)
                } else {
                    try e.addText(s, type: type)
                }
            case .value(.blob(let b)): e.add(type: type, value: b, binary: true)
            }
        }
        return e
    }

    static func checkCount(_ n: Int) throws {
        if n > 65535 {
            throw PGError(message: "\(n) parameters in one statement; PostgreSQL accepts at most 65535")
        }
    }

    // MARK: results

    /// Reads a whole result (binary format) into PGRows.
    static func rows(_ res: OpaquePointer) -> PGRows {
        let nFields = Int(PQnfields(res))
        let nRows = Int(PQntuples(res))
        var names: [String] = []
        var types: [UInt32] = []
        for f in 0..<nFields {
            names.append(PQfname(res, Int32(f)).map { String(cString: $0) } ?? "")
            types.append(PQftype(res, Int32(f)))
        }
        let binary = (0..<nFields).map { PQfformat(res, Int32($0)) == 1 }
        var rows: [[Value]] = []
        rows.reserveCapacity(nRows)
        for r in 0..<nRows {
            var row: [Value] = []
            row.reserveCapacity(nFields)
            for f in 0..<nFields {
                if PQgetisnull(res, Int32(r), Int32(f)) == 1 { row.append(.null); continue }
                let length = Int(PQgetlength(res, Int32(r), Int32(f)))
                var bytes: [UInt8] = []
                if length > 0, let p = PQgetvalue(res, Int32(r), Int32(f)) {
                    bytes = Array(UnsafeRawBufferPointer(start: p, count: length))
                }
                row.append(binary[f] ? decode(type: types[f], bytes) : textOrBlob(bytes))
            }
            rows.append(row)
        }
        let tuples = PQcmdTuples(res).map { String(cString: $0) } ?? ""
        return PGRows(columnNames: names, columnTypes: types, rows: rows, affectedRows: Int(tuples) ?? 0)
    }

    static func textOrBlob(_ bytes: [UInt8]) -> Value {
        if let s = String(validating: bytes, as: UTF8.self) { return .text(s) }
        return .blob(bytes)
    }

    static func readInt<T: FixedWidthInteger>(_ bytes: [UInt8], as: T.Type) -> T? {
        guard bytes.count == MemoryLayout<T>.size else { return nil }
        var v: T = 0
        for b in bytes { v = v << 8 | T(truncatingIfNeeded: b) }
        return v
    }

    /// One binary-format field. A field whose length does not fit its type
    /// (never from a real server) falls back to text/blob.
    static func decode(type: UInt32, _ bytes: [UInt8]) -> Value {
        switch PGType(rawValue: type) {
        case .bool?: return bytes.count == 1 ? .integer(bytes[0] == 0 ? 0 : 1) : .blob(bytes)
        case .int2?: return readInt(bytes, as: Int16.self).map { .integer(Int64($0)) } ?? .blob(bytes)
        case .int4?, .date?: return readInt(bytes, as: Int32.self).map { .integer(Int64($0)) } ?? .blob(bytes)
        case .int8?, .time?, .timestamp?, .timestamptz?:
            return readInt(bytes, as: Int64.self).map { .integer($0) } ?? .blob(bytes)
        case .xid8?: return readInt(bytes, as: UInt64.self).map { .integer(Int64(bitPattern: $0)) } ?? .blob(bytes)
        case .oid?, .xid?: return readInt(bytes, as: UInt32.self).map { .integer(Int64($0)) } ?? .blob(bytes)
        case .float4?: return readInt(bytes, as: UInt32.self).map { .real(Double(Float(bitPattern: $0))) } ?? .blob(bytes)
        case .float8?: return readInt(bytes, as: UInt64.self).map { .real(Double(bitPattern: $0)) } ?? .blob(bytes)
        case .bytea?: return .blob(bytes)
        case .text?, .varchar?, .bpchar?, .name?, .char?, .json?, .xml?: return textOrBlob(bytes)
        case .jsonb?:
            // Version byte 1, then the JSON text.
            if bytes.first == 1 { return textOrBlob(Array(bytes.dropFirst())) }
            return .blob(bytes)
        case .numeric?: return PGNumeric.decode(bytes).map { .text($0) } ?? .blob(bytes)
        case .uuid?:
            guard bytes.count == 16 else { return .blob(bytes) }
            let h = hex(bytes)
            let c = Array(h)
            return .text(String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32]))
        default: return textOrBlob(bytes)
        }
    }
}

/// PostgreSQL's binary numeric format: int16 ndigits, int16 weight, uint16
/// sign (0x0000 +, 0x4000 −, 0xC000 NaN, 0xD000 +Infinity, 0xF000 −Infinity),
/// uint16 dscale, then ndigits base-10000 digits, most significant first;
/// value = Σ digit[i] × 10000^(weight − i).
public enum PGNumeric {
    static let positive: UInt16 = 0x0000, negative: UInt16 = 0x4000, nan: UInt16 = 0xC000
    static let plusInfinity: UInt16 = 0xD000, minusInfinity: UInt16 = 0xF000

    /// The binary form of a decimal string: optional sign, digits with an
    /// optional point, optional exponent (`1e-5`, `-123.4500`, `+.5E3`);
    /// also NaN, Infinity, -Infinity (any case; `inf` too). The display
    /// scale is kept (`1.50` stays `1.50`). Anything else throws.
    public static func encode(decimal: String) throws -> [UInt8] {
        func bad(_ why: String) -> PGError {
            PGError(message: "'\(decimal.prefix(60))' is not a decimal number for a numeric column (\(why))")
        }
        var chars = Substring(decimal)
        var sign = positive
        if chars.first == "+" { chars.removeFirst() } else if chars.first == "-" { sign = negative; chars.removeFirst() }
        let lower = chars.lowercased()
        if lower == "nan" && chars.count == decimal.count { return header(ndigits: 0, weight: 0, sign: nan, dscale: 0) }
        if lower == "infinity" || lower == "inf" {
            return header(ndigits: 0, weight: 0, sign: sign == negative ? minusInfinity : plusInfinity, dscale: 0)
        }
        var digits: [UInt8] = []   // all mantissa digits, values 0...9
        var fractionDigits = 0
        var sawPoint = false
        var exponent = 0
        var index = chars.startIndex
        while index < chars.endIndex {
            let c = chars[index]
            if let d = c.wholeNumberValue, c.isASCII {
                digits.append(UInt8(d))
                if sawPoint { fractionDigits += 1 }
            } else if c == "." && !sawPoint {
                sawPoint = true
            } else if c == "e" || c == "E" {
                break
            } else {
                throw bad("unexpected '\(c)'")
            }
            index = chars.index(after: index)
        }
        if digits.isEmpty { throw bad("no digits") }
        if index < chars.endIndex {
            var exp = chars[chars.index(after: index)...]
            var negativeExp = false
            if exp.first == "+" { exp.removeFirst() } else if exp.first == "-" { negativeExp = true; exp.removeFirst() }
            guard !exp.isEmpty, exp.allSatisfy({ $0.isASCII && $0.isNumber }), exp.count <= 7, let e = Int(exp) else {
                throw bad("malformed exponent")
            }
            exponent = negativeExp ? -e : e
        }
        // value = D × 10^scaleExp, D the digits as one integer.
        let scaleExp = exponent - fractionDigits
        let dscale = max(0, -scaleExp)
        guard dscale <= 0x3FFF else { throw bad("more than 16383 digits after the decimal point") }
        while digits.first == 0 { digits.removeFirst() }
        if digits.isEmpty { return header(ndigits: 0, weight: 0, sign: positive, dscale: UInt16(dscale)) }
        guard digits.count + scaleExp <= 131072 else { throw bad("more than 131072 digits before the decimal point") }
        var intPart: [UInt8], fracPart: [UInt8]
        if scaleExp >= 0 {
            intPart = digits + [UInt8](repeating: 0, count: scaleExp)
            fracPart = []
        } else if digits.count > -scaleExp {
            intPart = Array(digits[0..<(digits.count + scaleExp)])
            fracPart = Array(digits[(digits.count + scaleExp)...])
        } else {
            intPart = []
            fracPart = [UInt8](repeating: 0, count: -scaleExp - digits.count) + digits
        }
        while fracPart.last == 0 { fracPart.removeLast() }
        // Align to base-10000 groups around the decimal point.
        intPart = [UInt8](repeating: 0, count: (4 - intPart.count % 4) % 4) + intPart
        fracPart += [UInt8](repeating: 0, count: (4 - fracPart.count % 4) % 4)
        let all = intPart + fracPart
        var groups: [Int16] = []
        var i = 0
        while i < all.count {
            var g: Int16 = 0
            for k in 0..<4 { g = g * 10 + Int16(all[i + k]) }
            groups.append(g)
            i += 4
        }
        var weight = intPart.count / 4 - 1
        while groups.first == 0 { groups.removeFirst(); weight -= 1 }
        while groups.last == 0 { groups.removeLast() }
        var out = header(ndigits: UInt16(groups.count), weight: Int16(weight), sign: sign, dscale: UInt16(dscale))
        for g in groups { PGValues.append(g, to: &out) }
        return out
    }

    static func header(ndigits: UInt16, weight: Int16, sign: UInt16, dscale: UInt16) -> [UInt8] {
        var out: [UInt8] = []
        PGValues.append(ndigits, to: &out)
        PGValues.append(weight, to: &out)
        PGValues.append(sign, to: &out)
        PGValues.append(dscale, to: &out)
        return out
    }

    /// The exact decimal string of a binary numeric (dscale digits after the
    /// point, as PostgreSQL prints it), or nil if the bytes are malformed.
    public static func decode(_ bytes: [UInt8]) -> String? {
        guard bytes.count >= 8 else { return nil }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        let ndigits = Int(u16(0))
        let weight = Int(Int16(bitPattern: u16(2)))
        let sign = u16(4)
        let dscale = Int(u16(6))
        guard bytes.count == 8 + 2 * ndigits else { return nil }
        switch sign {
        case nan: return "NaN"
        case plusInfinity: return "Infinity"
        case minusInfinity: return "-Infinity"
        case positive, negative: break
        default: return nil
        }
        var digits: [Int] = []
        for i in 0..<ndigits {
            let d = Int(u16(8 + 2 * i))
            guard d < 10000 else { return nil }
            digits.append(d)
        }
        func digit(_ index: Int) -> Int { index >= 0 && index < digits.count ? digits[index] : 0 }
        func padded(_ d: Int) -> String {
            let s = String(d)
            return String(repeating: "0", count: 4 - s.count) + s
        }
        var out = sign == negative ? "-" : ""
        if weight < 0 {
            out += "0"
        } else {
            out += String(digit(0))
            if weight >= 1 { for i in 1...weight { out += padded(digit(i)) } }
        }
        if dscale > 0 {
            out += "."
            var frac = ""
            var group = weight + 1
            while frac.count < dscale {
                frac += padded(digit(group))
                group += 1
            }
            out += frac.prefix(dscale)
        }
        return out
    }
}
