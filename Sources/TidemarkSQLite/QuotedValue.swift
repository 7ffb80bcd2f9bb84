import TidemarkLog

/// SQL literals as SQLite's `quote()` writes them, and the text form capture
/// triggers use for row images: parsed back to ``Value`` exactly.
///
/// ## Grammar
///
/// ```
/// list    = value *( "," value )
/// value   = "NULL"
///         / integer        ; quote() of an integer: ["-"] 1*DIGIT, within Int64
///         / real           ; see below
///         / text           ; "'" *( byte / "''" ) "'"   UTF-8, ' doubled
///         / blob           ; "X'" *( 2HEXDIG ) "'"
///         / nul-text       ; "T'" *( 2HEXDIG ) "'"      Tidemark's own form
/// real    = ["-" / "+"] 1*DIGIT "." 1*DIGIT [ "e" ("-" / "+") 1*DIGIT ]
///         / ["-" / "+"] 1*DIGIT ( "e" / "E" ) ["-" / "+"] 1*DIGIT
///         / ["-" / "+"] "Inf"
/// ```
///
/// A token is a real when it holds a `.`, an exponent or `Inf`, otherwise an
/// integer — `quote()` and `printf('%!…')` always print a decimal point in a
/// real, so `1.0` never reads back as the integer 1. A real too large for a
/// double (`9.0e+999`, newer SQLite's `quote()` of infinity) is ±infinity.
///
/// ## How exact `quote()` is
///
/// Integers, blobs, NULL and text without NUL characters round-trip exactly.
/// Reals do not always: in SQLite 3.40 `quote()` of a real prints `%!.15g`
/// when *SQLite's own* text-to-double conversion reads that back to the same
/// value, else `%!.20e`. SQLite's conversion is not correctly rounded, so some
/// 15-digit outputs do not round-trip through a correctly rounded parser: 145
/// of 450,000 random doubles failed (e.g. 8.228927346002939e-297 is quoted as
/// `8.22892734600294e-297`). `quote()` of text stops at the first NUL, and no
/// text conversion shows the sign of a negative zero. This is why capture
/// triggers store the values themselves rather than `quote()` text (see
/// ``Capture``); the parser stays exact for what `quote()` does print, and
/// reads the `T'…'` form that ``literal(_:)`` writes for text holding a NUL.
public enum QuotedValue {
    /// A literal that does not follow the grammar, with the byte offset of the
    /// problem.
    public struct SyntaxError: Error, Sendable, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "invalid quoted value at byte \(offset): \(reason)" }
    }

    /// Parses one literal, e.g. `'it''s'`, `X'0A0B'`, `-9223372036854775808`.
    public static func parse(_ literal: String) throws(SyntaxError) -> Value {
        var copy = literal
        // withUTF8 rethrows untyped errors; a Result keeps the typed one.
        return try copy.withUTF8 { buffer in
            Result { () throws(SyntaxError) -> Value in
                var parser = Parser(bytes: UnsafeRawBufferPointer(buffer))
                let value = try parser.value()
                guard parser.atEnd else { throw parser.error("unexpected text after the value") }
                return value
            }
        }.get()
    }

    /// Parses a comma-separated list of literals, as written by the capture
    /// triggers. An empty string is an empty list.
    public static func parseList(_ text: String) throws(SyntaxError) -> [Value] {
        var copy = text
        return try copy.withUTF8 { buffer in
            Result { () throws(SyntaxError) -> [Value] in
                var values: [Value] = []
                try parseList(UnsafeRawBufferPointer(buffer), into: &values)
                return values
            }
        }.get()
    }

    /// Parses a comma-separated list straight from bytes (e.g. a column read in
    /// place with ``Statement/withColumnBytes(_:_:)``), appending to `values`.
    public static func parseList(_ bytes: UnsafeRawBufferPointer, into values: inout [Value]) throws(SyntaxError) {
        var parser = Parser(bytes: bytes)
        if parser.atEnd { return }
        while true {
            values.append(try parser.value())
            if parser.atEnd { return }
            guard parser.peek == UInt8(ascii: ",") else { throw parser.error("expected ',' between values") }
            parser.position += 1
        }
    }

    /// The literal for `value` in this grammar (the inverse of ``parse(_:)``).
    ///
    /// Reals use Swift's shortest round-trip form, so unlike the triggers this
    /// keeps `-0.0`; NaN, which SQLite cannot store, is written as `NULL`.
    public static func literal(_ value: Value) -> String {
        switch value {
        case .null: return "NULL"
        case .integer(let i): return String(i)
        case .real(let d):
            if d.isNaN { return "NULL" }
            if d.isInfinite { return d < 0 ? "-Inf" : "Inf" }
            return d.description
        case .text(let s):
            if s.utf8.contains(0) { return "T'" + hex(Array(s.utf8)) + "'" }
            return quoteStringLiteral(s)
        case .blob(let b):
            return "X'" + hex(b) + "'"
        }
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A cursor over the bytes of one list; `position` only moves forward, and
/// every loop ends at the end of `bytes`.
private struct Parser {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    var atEnd: Bool { position >= bytes.count }
    var peek: UInt8 { bytes[position] }

    func error(_ reason: String) -> QuotedValue.SyntaxError {
        QuotedValue.SyntaxError(offset: position, reason: reason)
    }

    mutating func value() throws(QuotedValue.SyntaxError) -> Value {
        guard !atEnd else { throw error("expected a value, found the end") }
        switch peek {
        case UInt8(ascii: "'"):
            return .text(try text())
        case UInt8(ascii: "X"), UInt8(ascii: "x"):
            position += 1
            return .blob(try hexString())
        case UInt8(ascii: "T"):
            position += 1
            let start = position
            let bytes = try hexString()
            guard let string = String(validating: bytes, as: UTF8.self) else {
                position = start
                throw error("text is not valid UTF-8")
            }
            return .text(string)
        case UInt8(ascii: "N"):
            guard matches("NULL") else { throw error("expected NULL") }
            position += 4
            return .null
        default:
            return try number()
        }
    }

    private func matches(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard position + count <= bytes.count else { return false }
        for i in 0..<count where bytes[position + i] != word.utf8Start[i] { return false }
        return true
    }

    /// `'…'` with `''` for a quote; the bytes must be UTF-8.
    private mutating func text() throws(QuotedValue.SyntaxError) -> String {
        let start = position
        position += 1
        var segmentStart = position
        var unescaped: [UInt8]? = nil
        while true {
            guard !atEnd else {
                position = start
                throw error("text literal is not closed")
            }
            if peek == UInt8(ascii: "'") {
                if position + 1 < bytes.count && bytes[position + 1] == UInt8(ascii: "'") {
                    // A doubled quote: keep one, continue after both.
                    if unescaped == nil { unescaped = [] }
                    unescaped!.append(contentsOf: bytes[segmentStart...position])
                    position += 2
                    segmentStart = position
                    continue
                }
                break
            }
            position += 1
        }
        let tail = UnsafeRawBufferPointer(rebasing: bytes[segmentStart..<position])
        position += 1
        let decoded: String?
        if var unescaped {
            unescaped.append(contentsOf: tail)
            decoded = String(validating: unescaped, as: UTF8.self)
        } else {
            decoded = String(validating: tail, as: UTF8.self)
        }
        guard let decoded else {
            position = start
            throw error("text is not valid UTF-8")
        }
        return decoded
    }

    /// `'…'` holding pairs of hex digits, after the `X` or `T`.
    private mutating func hexString() throws(QuotedValue.SyntaxError) -> [UInt8] {
        guard !atEnd, peek == UInt8(ascii: "'") else { throw error("expected ' after the blob prefix") }
        position += 1
        var out: [UInt8] = []
        while true {
            guard !atEnd else { throw error("blob literal is not closed") }
            if peek == UInt8(ascii: "'") { position += 1; return out }
            guard position + 1 < bytes.count,
                  let high = Self.hexDigit(bytes[position]), let low = Self.hexDigit(bytes[position + 1])
            else { throw error("expected two hex digits in a blob literal") }
            out.append(high << 4 | low)
            position += 2
        }
    }

    private static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    /// An integer, a real, or ±Inf.
    private mutating func number() throws(QuotedValue.SyntaxError) -> Value {
        let start = position
        var isReal = false
        var sawDigit = false
        while !atEnd {
            let c = peek
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): sawDigit = true
            case UInt8(ascii: "-"), UInt8(ascii: "+"): break
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): isReal = true
            case UInt8(ascii: "I"):
                guard matches("Inf") else { throw error("unexpected character in a number") }
                position += 3
                isReal = true
                sawDigit = true
                continue
            default:
                if c == UInt8(ascii: ",") { break }
                throw error("unexpected character in a number")
            }
            if c == UInt8(ascii: ",") { break }
            position += 1
        }
        let token = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
        guard sawDigit else {
            position = start
            throw error("expected a value")
        }
        if isReal {
            guard let d = Self.parseDouble(token) else {
                position = start
                throw error("malformed real number")
            }
            return .real(d)
        }
        guard let i = Self.parseInt64(token) else {
            position = start
            throw error("malformed or out-of-range integer")
        }
        return .integer(i)
    }

    /// Decimal digits with an optional sign, accumulated on the negative side
    /// so that -9223372036854775808 fits.
    private static func parseInt64(_ token: UnsafeRawBufferPointer) -> Int64? {
        var index = 0
        var negative = false
        if let first = token.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            index = 1
        }
        guard index < token.count else { return nil }
        var value: Int64 = 0
        while index < token.count {
            let c = token[index]
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.subtractingReportingOverflow(Int64(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = next
            index += 1
        }
        if negative { return value }
        let (positive, overflow) = Int64(0).subtractingReportingOverflow(value)
        return overflow ? nil : positive
    }

    /// A correctly rounded conversion, after checking the token's shape so that
    /// the extras of the general conversion (hex floats, "nan", "infinity")
    /// are not accepted.
    private static func parseDouble(_ token: UnsafeRawBufferPointer) -> Double? {
        var body = token[...]
        var negative = false
        if let first = body.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            body = body.dropFirst()
        }
        if body.elementsEqual("Inf".utf8) { return negative ? -.infinity : .infinity }
        // digits [. digits] [(e|E) [sign] digits]
        var i = body.startIndex
        func digits() -> Int {
            let from = i
            while i < body.endIndex, body[i] >= UInt8(ascii: "0"), body[i] <= UInt8(ascii: "9") { i += 1 }
            return i - from
        }
        guard digits() > 0 else { return nil }
        if i < body.endIndex, body[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { return nil }
        }
        if i < body.endIndex, body[i] == UInt8(ascii: "e") || body[i] == UInt8(ascii: "E") {
            i += 1
            if i < body.endIndex, body[i] == UInt8(ascii: "-") || body[i] == UInt8(ascii: "+") { i += 1 }
            guard digits() > 0 else { return nil }
        }
        guard i == body.endIndex else { return nil }
        // Swift's conversion is locale-independent (unlike C strtod) and
        // correctly rounded; a value beyond the double range reads as ±infinity.
        return Double(String(decoding: token, as: UTF8.self))
    }
}
