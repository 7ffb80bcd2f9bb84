// JSON lines: the text form of change records for `tidemark log tail
// --format json` (out) and `tidemark log append` (in).
//
// One record is one JSON object on one line, members in this order:
//
//     {"lsn":7,"ts":"2026-11-25T11:00:00.123456Z","table":"users","op":"update",
//      "key":{"id":1},"before":{"id":1,"email":"a@x"},"after":{"id":1,"email":"b@x"}}
//
// | member   | JSON                                   | notes                                 |
// |----------|----------------------------------------|---------------------------------------|
// | `lsn`    | integer 1…2^64-1                       | optional on input (append assigns it) |
// | `ts`     | string, see ``Timestamp``              | optional on input (append assigns it) |
// | `table`  | string, not empty                      |                                       |
// | `op`     | `"insert"`, `"update"` or `"delete"`   |                                       |
// | `key`    | object column → value, not empty       |                                       |
// | `before` | object column → value                  | omitted for inserts (`null` is read as omitted) |
// | `after`  | object column → value                  | omitted for deletes (`null` is read as omitted) |
//
// Members may come in any order on input; whitespace around tokens is
// allowed, so a trailing `\n` or `\r\n` does no harm.
//
// Column values keep SQLite's five storage classes apart, which plain JSON
// cannot do on its own (JSON has one number type, no bytes, no infinity):
//
// | Value          | JSON                                  | example                    |
// |----------------|---------------------------------------|----------------------------|
// | `.null`        | `null`                                | `null`                     |
// | `.integer`     | number without fraction or exponent   | `-9223372036854775808`     |
// | `.real` finite | number that always has `.` or `e`     | `1.0`, `-0.0`, `1e+308`    |
// | `.real` other  | `{"$real":"inf"}`, `"-inf"`, `"nan"`  | `{"$real":"-inf"}`         |
// | `.text`        | string; `"` `\` and U+0000–U+001F escaped (`\u00XX`), other characters as UTF-8 | `"caf\u00e9"` is read, `"café"` is written |
// | `.blob`        | `{"$blob":"<standard base64, padded>"}` | `{"$blob":"AAE="}`       |
//
// Reals are written with Swift's shortest round-trip `description` and read
// with `Double(String)`, which is correctly rounded, so every finite double
// comes back bit for bit. A NaN is read back as the canonical quiet NaN:
// a NaN payload is not kept (SQLite itself stores NaN as NULL).
//
// The reader is strict, because `log append` writes into an audit trail: it
// rejects unknown or duplicate members, `true`/`false` (SQLite has no boolean),
// arrays and objects other than `$blob`/`$real`, integers outside Int64, reals
// that overflow to infinity, invalid UTF-8, lone surrogates, and text after
// the closing brace. Every error is `LogError(.badInput, "line N: …")`.

// MARK: - Encoding

extension ChangeRecord {
    /// Appends this record as one JSON line (no trailing newline) to `buffer`.
    ///
    /// Reuse one buffer (`removeAll(keepingCapacity: true)` between records)
    /// when writing many: encoding then does no allocation except for the
    /// text form of finite reals.
    public func appendJSON(to buffer: inout [UInt8]) {
        JSONText.appendHead(lsn: lsn, timestampMicros: timestampMicros, to: &buffer)
        JSONText.appendString(table, to: &buffer)
        JSONText.appendOperation(operation, to: &buffer)
        JSONText.appendFields(key, to: &buffer)
        if let before {
            buffer.append(contentsOf: #","before":"#.utf8)
            JSONText.appendFields(before, to: &buffer)
        }
        if let after {
            buffer.append(contentsOf: #","after":"#.utf8)
            JSONText.appendFields(after, to: &buffer)
        }
        buffer.append(UInt8(ascii: "}"))
    }

    /// This record as one JSON line, without a trailing newline.
    public var jsonLine: String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(256)
        appendJSON(to: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

extension RecordView {
    /// Appends this record as one JSON line (no trailing newline), exactly
    /// the bytes ``ChangeRecord/appendJSON(to:)`` writes for ``record()``,
    /// straight from the frame's bytes: no record, array or string is built
    /// (`log tail` prints whole windows this way).
    ///
    /// Invariant (the same bytes): names and text are written from their
    /// encoded bytes when those are ASCII, which `String(decoding:as:)`
    /// keeps byte for byte; other bytes go through that decoding, as the
    /// record path does (it repairs invalid UTF-8).
    public func appendJSON(to buffer: inout [UInt8]) {
        JSONText.appendHead(lsn: lsn, timestampMicros: timestampMicros, to: &buffer)
        JSONText.appendString(table, to: &buffer)
        JSONText.appendOperation(operation, to: &buffer)
        JSONText.appendFields(key, to: &buffer)
        if let before {
            buffer.append(contentsOf: #","before":"#.utf8)
            JSONText.appendFields(before, to: &buffer)
        }
        if let after {
            buffer.append(contentsOf: #","after":"#.utf8)
            JSONText.appendFields(after, to: &buffer)
        }
        buffer.append(UInt8(ascii: "}"))
    }
}

extension JSONText {
    /// ``appendFields(_:to:)`` for fields read in place.
    static func appendFields(_ fields: FieldsView, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "{"))
        var first = true
        for field in fields {
            if !first { buffer.append(UInt8(ascii: ",")) }
            first = false
            appendString(bytes: field.name, to: &buffer)
            buffer.append(UInt8(ascii: ":"))
            switch field.value {
            case .null: buffer.append(contentsOf: "null".utf8)
            case .integer(let i): buffer.appendDecimal(i)
            case .real(let d): Value.real(d).appendJSON(to: &buffer)
            case .text(let b): appendString(bytes: b, to: &buffer)
            case .blob: field.value.value.appendJSON(to: &buffer)
            }
        }
        buffer.append(UInt8(ascii: "}"))
    }

    /// ``appendString(_:to:)`` of `String(decoding: bytes, as: UTF8.self)`.
    static func appendString(bytes: UnsafeRawBufferPointer, to buffer: inout [UInt8]) {
        let utf8 = bytes.bindMemory(to: UInt8.self)
        if isASCII(utf8) {
            buffer.append(UInt8(ascii: "\""))
            appendEscaped(utf8, to: &buffer)
            buffer.append(UInt8(ascii: "\""))
        } else {
            appendString(String(decoding: utf8, as: UTF8.self), to: &buffer)
        }
    }

    @inline(__always)
    static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        let n = bytes.count
        guard let p = bytes.baseAddress else { return true }
        let raw = UnsafeRawPointer(p)
        while n - i >= 8 {
            if raw.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { return false }
            i += 8
        }
        while i < n {
            if bytes[i] >= 0x80 { return false }
            i += 1
        }
        return true
    }
}

extension Value {
    /// Appends this value's JSON form (see the table at the top of
    /// `RecordJSON.swift`) to `buffer`.
    public func appendJSON(to buffer: inout [UInt8]) {
        switch self {
        case .null:
            buffer.append(contentsOf: "null".utf8)
        case .integer(let i):
            buffer.appendDecimal(i)
        case .real(let d):
            if d.isNaN {
                buffer.append(contentsOf: #"{"$real":"nan"}"#.utf8)
            } else if d.isInfinite {
                buffer.append(contentsOf: d < 0 ? #"{"$real":"-inf"}"#.utf8 : #"{"$real":"inf"}"#.utf8)
            } else {
                Value.appendFiniteRealJSON(d, to: &buffer)
            }
        case .text(let s):
            JSONText.appendString(s, to: &buffer)
        case .blob(let bytes):
            buffer.append(contentsOf: #"{"$blob":""#.utf8)
            Base64.append(bytes, to: &buffer)
            buffer.append(contentsOf: #""}"#.utf8)
        }
    }
}

/// Low-level JSON writing shared by the record and value encoders.
public enum JSONText {
    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A record line's start, through the `"table":` label; the record and
    /// view encoders share it so their bytes cannot drift apart.
    static func appendHead(lsn: LSN, timestampMicros: Int64, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: #"{"lsn":"#.utf8)
        buffer.appendDecimal(lsn.rawValue)
        buffer.append(contentsOf: #","ts":""#.utf8)
        Timestamp(microsSinceEpoch: timestampMicros).appendRFC3339(to: &buffer)
        buffer.append(contentsOf: #"","table":"#.utf8)
    }

    /// The `,"op":"…","key":` labels after the table.
    static func appendOperation(_ operation: ChangeOperation, to buffer: inout [UInt8]) {
        switch operation {
        case .insert: buffer.append(contentsOf: #","op":"insert","key":"#.utf8)
        case .update: buffer.append(contentsOf: #","op":"update","key":"#.utf8)
        case .delete: buffer.append(contentsOf: #","op":"delete","key":"#.utf8)
        }
    }

    /// Appends `{"name":value,...}` in field order.
    static func appendFields(_ fields: [Field], to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "{"))
        var first = true
        for field in fields {
            if !first { buffer.append(UInt8(ascii: ",")) }
            first = false
            appendString(field.name, to: &buffer)
            buffer.append(UInt8(ascii: ":"))
            field.value.appendJSON(to: &buffer)
        }
        buffer.append(UInt8(ascii: "}"))
    }

    /// Appends `s` as a quoted JSON string: `"` and `\` escaped with a
    /// backslash, U+0000–U+001F as `\u00XX`, everything else as UTF-8.
    static func appendString(_ s: String, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "\""))
        let done: Void? = s.utf8.withContiguousStorageIfAvailable { utf8 in
            appendEscaped(utf8, to: &buffer)
        }
        if done == nil {  // a bridged or otherwise non-contiguous string
            let copy = Array(s.utf8)
            copy.withUnsafeBufferPointer { appendEscaped($0, to: &buffer) }
        }
        buffer.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    /// Copies runs of bytes that need no escape in one go, so ordinary text
    /// costs one bounds check and one copy per run.
    static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to buffer: inout [UInt8]) {
        var runStart = 0
        var i = 0
        while i < utf8.count {
            let byte = utf8[i]
            if needsEscape(byte) {
                if runStart < i { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i])) }
                buffer.append(UInt8(ascii: "\\"))
                if byte < 0x20 {
                    buffer.append(contentsOf: "u00".utf8)
                    buffer.append(hexDigits[Int(byte >> 4)])
                    buffer.append(hexDigits[Int(byte & 0xF)])
                } else {
                    buffer.append(byte)
                }
                runStart = i + 1
            }
            i += 1
        }
        if runStart < utf8.count { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...])) }
    }
}

// MARK: - Decoding

/// A change record read from a JSON line, before `tidemark log append` has
/// given it a position: `lsn` and `timestampMicros` are `nil` when the line
/// did not carry them.
///
/// A draft returned by ``ChangeRecord/parseJSONLine(_:lineNumber:)``
/// has already passed ``ChangeRecord/validate()``.
public struct DraftRecord: Sendable, Hashable {
    public var lsn: LSN?
    public var timestampMicros: Int64?
    public var table: String
    public var operation: ChangeOperation
    public var key: [Field]
    public var before: [Field]?
    public var after: [Field]?

    public init(
        lsn: LSN? = nil, timestampMicros: Int64? = nil, table: String, operation: ChangeOperation,
        key: [Field], before: [Field]? = nil, after: [Field]? = nil
    ) {
        self.lsn = lsn
        self.timestampMicros = timestampMicros
        self.table = table
        self.operation = operation
        self.key = key
        self.before = before
        self.after = after
    }

    /// The complete record: the draft's own LSN and time where the line gave
    /// them, else the ones the appender assigns.
    ///
    /// - Throws: ``LogError`` `.invalidRecord` when the draft (which is
    ///   mutable) no longer passes ``ChangeRecord/validate()``.
    public func record(lsnIfAbsent: LSN, timestampMicrosIfAbsent: Int64) throws(LogError) -> ChangeRecord {
        let record = ChangeRecord(
            lsn: lsn ?? lsnIfAbsent, timestampMicros: timestampMicros ?? timestampMicrosIfAbsent,
            table: table, operation: operation, key: key, before: before, after: after)
        try record.validate()
        return record
    }
}

extension ChangeRecord {
    /// Reads one JSON line (format at the top of `RecordJSON.swift`).
    ///
    /// - Parameters:
    ///   - line: the line's text; surrounding JSON whitespace, a trailing
    ///     newline included, is allowed.
    ///   - lineNumber: put in every error message, so a user can find the line.
    /// - Throws: ``LogError`` `.badInput`, message `line N: <what is wrong>`.
    public static func parseJSONLine(_ line: some StringProtocol, lineNumber: Int) throws(LogError) -> DraftRecord {
        var parser = JSONLineParser(bytes: Array(line.utf8), lineNumber: lineNumber)
        return try parser.parseRecord()
    }

    /// Reads one JSON line given as UTF-8 bytes (e.g. a slice of a read buffer).
    ///
    /// - Throws: ``LogError`` `.badInput`, message `line N: <what is wrong>`.
    public static func parseJSONLine(_ line: some Collection<UInt8>, lineNumber: Int) throws(LogError) -> DraftRecord {
        var parser = JSONLineParser(bytes: Array(line), lineNumber: lineNumber)
        return try parser.parseRecord()
    }
}

/// A strict, schema-driven reader of one record line. It is a cursor over
/// the line's bytes; every method leaves `index` after what it consumed.
///
/// Written by hand because `JSONSerialization`/`JSONDecoder` turn every number
/// into one type (losing integer vs real) and round through `Double` or
/// `Decimal`, and because line-numbered messages need our own errors.
struct JSONLineParser {
    let bytes: [UInt8]
    let lineNumber: Int
    var index = 0

    init(bytes: [UInt8], lineNumber: Int) {
        self.bytes = bytes
        self.lineNumber = lineNumber
    }

    // MARK: Errors

    func fail(_ what: String) -> LogError {
        LogError(.badInput, "line \(lineNumber): \(what)")
    }

    /// An error about the byte at the cursor, with its 1-based position.
    func failHere(_ what: String) -> LogError {
        if index >= bytes.count { return fail("\(what), but the line ended") }
        return fail("\(what) at byte \(index + 1), found \(describeByte(bytes[index]))")
    }

    private func describeByte(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(byte < 16 ? "0" : "")\(String(byte, radix: 16))"
    }

    // MARK: Cursor

    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
            default: return
            }
        }
    }

    /// `what` is an autoclosure: the message is built only on failure, and
    /// this runs for every member of every line.
    private mutating func expect(_ ascii: Unicode.Scalar, _ what: @autoclosure () -> String) throws(LogError) {
        guard current == UInt8(ascii: ascii) else { throw failHere("expected \(what())") }
        index += 1
    }

    /// Steps into the next member of an object whose `{` was consumed and
    /// returns its name with the cursor on the value, or consumes `}` and
    /// returns `nil`.
    private mutating func nextMember(first: inout Bool) throws(LogError) -> String? {
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
            return nil
        }
        if first {
            first = false
        } else {
            try expect(",", "',' or '}'")
            skipWhitespace()
        }
        guard current == UInt8(ascii: "\"") else { throw failHere("expected a quoted member name") }
        let name = try parseString()
        skipWhitespace()
        try expect(":", "':' after member name \"\(name)\"")
        skipWhitespace()
        return name
    }

    // MARK: Record

    private static let memberNames = #""lsn", "ts", "table", "op", "key", "before", "after""#

    mutating func parseRecord() throws(LogError) -> DraftRecord {
        skipWhitespace()
        if index == bytes.count { throw fail("empty line; expected a JSON object {...}") }
        try expect("{", "'{' (a record is one JSON object)")

        var lsn: LSN?
        var timestampMicros: Int64?
        var table: String?
        var operation: ChangeOperation?
        var key: [Field]?
        var before: [Field]?
        var after: [Field]?
        var seen: UInt8 = 0  // one bit per member, in the order of the cases below

        var first = true
        while let name = try nextMember(first: &first) {
            let bit: UInt8 = switch name {
            case "lsn": 1
            case "ts": 2
            case "table": 4
            case "op": 8
            case "key": 16
            case "before": 32
            case "after": 64
            default: 0
            }
            if seen & bit != 0 { throw fail("duplicate member \"\(name)\"") }
            seen |= bit
            switch name {
            case "lsn":
                lsn = try parseLSN()
            case "ts":
                guard current == UInt8(ascii: "\"") else { throw failHere("\"ts\" must be a string like \"2026-11-25T11:00:00.123456Z\"") }
                let text = try parseString()
                do {
                    timestampMicros = try Timestamp(parsing: text).microsSinceEpoch
                } catch {
                    throw fail("\"ts\": \(error.message)")
                }
            case "table":
                guard current == UInt8(ascii: "\"") else { throw failHere("\"table\" must be a string") }
                let text = try parseString()
                if text.isEmpty { throw fail("\"table\" is empty") }
                table = text
            case "op":
                guard current == UInt8(ascii: "\"") else { throw failHere("\"op\" must be a string") }
                let text = try parseString()
                guard let op = ChangeOperation(name: text) else {
                    throw fail("\"op\" is \"\(text)\"; expected \"insert\", \"update\" or \"delete\"")
                }
                operation = op
            case "key":
                key = try parseImage("key")
            case "before":
                before = try parseOptionalImage("before")
            case "after":
                after = try parseOptionalImage("after")
            default:
                throw fail("unknown member \"\(name)\"; a record has \(Self.memberNames)")
            }
        }
        skipWhitespace()
        guard index == bytes.count else { throw failHere("unexpected text after the record's closing '}'") }

        guard let table else { throw fail("missing \"table\"") }
        guard let operation else { throw fail("missing \"op\"") }
        guard let key else { throw fail("missing \"key\"") }

        let draft = DraftRecord(
            lsn: lsn, timestampMicros: timestampMicros, table: table, operation: operation,
            key: key, before: before, after: after)
        do {
            _ = try draft.record(lsnIfAbsent: .zero, timestampMicrosIfAbsent: 0)
        } catch {
            // validate() names the LSN; without one in the line, the placeholder
            // would only confuse ("record at LSN 0").
            var message = error.message
            let placeholder = "record at LSN 0 "
            if lsn == nil, message.hasPrefix(placeholder) {
                message = "record " + message.dropFirst(placeholder.count)
            }
            throw fail(message)
        }
        return draft
    }

    private mutating func parseLSN() throws(LogError) -> LSN {
        let start = index
        guard let c = current, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else {
            throw failHere("\"lsn\" must be a positive integer")
        }
        let number = try scanNumber()
        guard number.isInteger else { throw fail("\"lsn\" must be an integer, not \(text(start..<index))") }
        var value: UInt64 = 0
        for byte in bytes[start..<index] {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if o1 || o2 { throw fail("\"lsn\" \(text(start..<index)) is larger than 2^64-1") }
            value = sum
        }
        if value == 0 { throw fail("\"lsn\" must be at least 1 (LSN 0 is the position before the first record)") }
        return LSN(value)
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    // MARK: Images and values

    private mutating func parseOptionalImage(_ name: String) throws(LogError) -> [Field]? {
        if current == UInt8(ascii: "n") {  // "before": null is the same as no "before"
            try parseLiteral("null")
            return nil
        }
        return try parseImage(name)
    }

    /// Reads `{"column": value, ...}` keeping the line's column order.
    mutating func parseImage(_ image: String) throws(LogError) -> [Field] {
        guard current == UInt8(ascii: "{") else {
            throw failHere("\"\(image)\" must be an object of column values {\"column\": value, ...}")
        }
        index += 1
        var fields: [Field] = []
        // Rows are usually narrow: compare names directly, and hash them only
        // for wide rows, where a linear scan per column would be quadratic.
        let linearScanMax = 16
        var names: Set<String> = []
        var first = true
        while let column = try nextMember(first: &first) {
            let isDuplicate: Bool
            if fields.count < linearScanMax {
                isDuplicate = fields.contains { $0.name == column }
            } else {
                if names.isEmpty { names = Set(fields.map(\.name)) }
                isDuplicate = !names.insert(column).inserted
            }
            if isDuplicate { throw fail("\"\(image)\" has column \"\(column)\" twice") }
            fields.append(Field(column, try parseValue(image: image, column: column)))
        }
        return fields
    }

    private mutating func parseValue(image: String, column: String) throws(LogError) -> Value {
        // Built only when a value is bad; most values are fine.
        var place: String { "\"\(image)\" column \"\(column)\"" }
        guard let c = current else { throw failHere("\(place): expected a value") }
        switch c {
        case UInt8(ascii: "\""):
            return .text(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber(place: { place })
        case UInt8(ascii: "n"):
            try parseLiteral("null")
            return .null
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            throw fail("\(place): true/false is not a column value (SQLite has no boolean type; write 1 or 0)")
        case UInt8(ascii: "["):
            throw fail("\(place): arrays are not column values")
        case UInt8(ascii: "{"):
            return try parseTaggedValue(place: { place })
        default:
            throw failHere("\(place): expected a value")
        }
    }

    private static let taggedForms = #"only {"$blob":"<base64>"} and {"$real":"inf"|"-inf"|"nan"} are allowed"#

    /// Reads `{"$blob":"<base64>"}` or `{"$real":"inf"|"-inf"|"nan"}`.
    private mutating func parseTaggedValue(place describePlace: () -> String) throws(LogError) -> Value {
        var place: String { describePlace() }
        index += 1  // '{'
        var first = true
        guard let tag = try nextMember(first: &first) else {
            throw fail("\(place): {} is not a column value; \(Self.taggedForms)")
        }
        guard tag == "$blob" || tag == "$real" else {
            throw fail("\(place): objects are not column values (found member \"\(tag)\"); \(Self.taggedForms)")
        }
        guard current == UInt8(ascii: "\"") else { throw failHere("\(place): \"\(tag)\" must be a string") }
        let payloadStart = index + 1
        let payload = try parseString()
        skipWhitespace()
        guard current == UInt8(ascii: "}") else {
            throw failHere("\(place): expected '}' closing the \"\(tag)\" object (it has exactly one member)")
        }
        index += 1

        if tag == "$real" {
            switch payload {
            case "inf": return .real(.infinity)
            case "-inf": return .real(-.infinity)
            case "nan": return .real(.nan)
            default:
                throw fail("\(place): \"$real\" is \"\(payload)\"; expected \"inf\", \"-inf\" or \"nan\" (finite reals are plain numbers)")
            }
        }
        do {
            return .blob(try Base64.decode(payload.utf8))
        } catch {
            throw fail("\(place): \"$blob\" (starting at byte \(payloadStart + 1)) is not padded standard base64: \(error.why)")
        }
    }

    private mutating func parseLiteral(_ literal: StaticString) throws(LogError) {
        let start = index
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in expected {
            guard current == byte else {
                index = start
                throw failHere("expected \(literal)")
            }
            index += 1
        }
    }

    // MARK: Numbers

    /// Scans a JSON number (RFC 8259 §6) and says whether it had a fraction
    /// or exponent.
    private mutating func scanNumber() throws(LogError) -> (start: Int, isInteger: Bool) {
        let start = index
        var isInteger = true
        if current == UInt8(ascii: "-") { index += 1 }
        func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } ?? false }
        guard isDigit(current) else { throw failHere("expected a digit in number") }
        if current == UInt8(ascii: "0") {
            index += 1
            if isDigit(current) { throw failHere("numbers must not have leading zeros") }
        } else {
            while isDigit(current) { index += 1 }
        }
        if current == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard isDigit(current) else { throw failHere("expected a digit after '.'") }
            while isDigit(current) { index += 1 }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard isDigit(current) else { throw failHere("expected a digit in exponent") }
            while isDigit(current) { index += 1 }
        }
        return (start, isInteger)
    }

    private mutating func parseNumber(place describePlace: () -> String) throws(LogError) -> Value {
        var place: String { describePlace() }
        let (start, isInteger) = try scanNumber()
        if isInteger {
            let negative = bytes[start] == UInt8(ascii: "-")
            var magnitude: UInt64 = 0
            var overflow = false
            for byte in bytes[(negative ? start + 1 : start)..<index] {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
                if o1 || o2 { overflow = true; break }
                magnitude = sum
            }
            let limit = negative ? Int64.min.magnitude : Int64.max.magnitude
            if overflow || magnitude > limit {
                throw fail("\(place): integer \(text(start..<index)) is outside the 64-bit range (write a fraction, e.g. \(text(start..<index)).0, if it is a real)")
            }
            return .integer(negative ? Int64(truncatingIfNeeded: 0 &- magnitude) : Int64(magnitude))
        }
        // Double(String) is correctly rounded (strtod), so the shortest
        // digits the encoder wrote come back to the same bits.
        guard let d = Double(text(start..<index)) else {
            throw fail("\(place): cannot read \(text(start..<index)) as a real")
        }
        guard d.isFinite else {
            throw fail("\(place): real \(text(start..<index)) is beyond the double range (write {\"$real\":\"\(d < 0 ? "-inf" : "inf")\"} for infinity)")
        }
        return .real(d)
    }

    // MARK: Strings

    /// Reads a quoted string at the cursor: every RFC 8259 escape, surrogate
    /// pairs joined, lone surrogates, raw control characters and invalid
    /// UTF-8 rejected.
    mutating func parseString() throws(LogError) -> String {
        let quote = index
        index += 1  // '"'
        let start = index
        // Fast path: no escapes, the content is a slice of the line.
        while let c = current, c != UInt8(ascii: "\""), c != UInt8(ascii: "\\"), c >= 0x20 {
            index += 1
        }
        if current == UInt8(ascii: "\"") {
            let slice = bytes[start..<index]
            index += 1
            return try validated(slice, quote: quote)
        }
        var scratch = Array(bytes[start..<index])
        while true {
            guard let c = current else {
                throw fail("unterminated string (it starts at byte \(quote + 1))")
            }
            switch c {
            case UInt8(ascii: "\""):
                index += 1
                return try validated(scratch[...], quote: quote)
            case UInt8(ascii: "\\"):
                index += 1
                try appendEscape(to: &scratch)
            case 0..<0x20:
                throw failHere("raw control character in a string (write it as \\u00\(c < 16 ? "0" : "")\(String(c, radix: 16)))")
            default:
                scratch.append(c)
                index += 1
            }
        }
    }

    /// The string of `utf8`, which must be valid UTF-8: strings are never
    /// repaired, since a replacement character would change the data.
    private func validated(_ utf8: ArraySlice<UInt8>, quote: Int) throws(LogError) -> String {
        // `String(decoding:)` is the stdlib's fast path but repairs; valid
        // input comes out byte for byte, so a comparison detects repair.
        // (`String(validating:)` is generic and costs more than the parse.)
        let s = String(decoding: utf8, as: UTF8.self)
        if utf8.allSatisfy({ $0 < 0x80 }) || s.utf8.elementsEqual(utf8) { return s }
        throw fail("string starting at byte \(quote + 1) is not valid UTF-8")
    }

    /// Reads the escape after a backslash and appends its UTF-8.
    private mutating func appendEscape(to scratch: inout [UInt8]) throws(LogError) {
        guard let c = current else { throw fail("unterminated string (the line ends in a backslash)") }
        index += 1
        switch c {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(c)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let escapeStart = index - 2
            var code = try hex4()
            if (0xDC00...0xDFFF).contains(code) {
                index = escapeStart
                throw failHere("lone low surrogate \\u\(hex4Text(code)) (not a character)")
            }
            if (0xD800...0xDBFF).contains(code) {
                guard current == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else {
                    index = escapeStart
                    throw failHere("high surrogate \\u\(hex4Text(code)) is not followed by a \\u low surrogate")
                }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else {
                    index = escapeStart
                    throw failHere("high surrogate \\u\(hex4Text(code)) is followed by \\u\(hex4Text(low)), not a low surrogate")
                }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            }
            // Not a surrogate, so a valid scalar.
            scratch.append(contentsOf: UTF8.encode(Unicode.Scalar(code)!)!)
        default:
            index -= 2
            throw fail("unknown escape \\\(Character(Unicode.Scalar(c))) at byte \(index + 1); JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX")
        }
    }

    /// `code` as 4 uppercase hex digits, as in an escape.
    private func hex4Text(_ code: UInt32) -> String {
        let digits = String(code, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private mutating func hex4() throws(LogError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let c = current else { throw failHere("expected 4 hex digits after \\u") }
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw failHere("expected 4 hex digits after \\u")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}

extension JSONText {
    /// `s` as a quoted JSON string, escaped as in the log's JSON lines; for
    /// the command line's and benchmarks' `--json` outputs.
    public static func quoted(_ s: String) -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(s.utf8.count + 2)
        appendString(s, to: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

extension Value {
    /// A finite real as a JSON number: the shortest digits that read back to
    /// the same bits, always with a fraction or an exponent, so it never
    /// reads back as an integer.
    static func appendFiniteRealJSON(_ d: Double, to buffer: inout [UInt8]) {
        let start = buffer.count
        buffer.append(contentsOf: d.description.utf8)
        if !buffer[start...].contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") }) {
            buffer.append(contentsOf: ".0".utf8)
        }
    }
}

// MARK: - JSON lines written from views

/// JSON lines of records read in place, written through a pointer into one
/// growing buffer (`log tail` prints whole windows this way): the same
/// bytes as ``ChangeRecord/appendJSON(to:)`` plus a newline per record,
/// without an array append (capacity and uniqueness checks) per piece.
///
/// Invariant: `count <= capacity`; every write first reserves the most
/// bytes it can write (``reserve(_:)``), so no write passes the end.
public final class JSONLineBuffer {
    private var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    public private(set) var count = 0
    /// Scratch for the rare pieces written by the array-based encoders
    /// (timestamps' date part, reals, blobs, non-ASCII text).
    private var scratch: [UInt8] = []
    /// The last timestamp's text up to and including the ".", and its second.
    private var secondPrefix: [UInt8] = []
    private var second = Int64.min

    public init(capacity: Int = 1 << 17) {
        self.capacity = max(capacity, 64)
        storage = UnsafeMutablePointer<UInt8>.allocate(capacity: self.capacity)
    }

    deinit { storage.deallocate() }

    /// The bytes written so far (valid until the next write or ``removeAll()``).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: count) }

    public func removeAll() { count = 0 }

    @inline(__always)
    private func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private func grow(_ needed: Int) {
        let newCapacity = max(needed, capacity * 2)
        let new = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        new.update(from: storage, count: count)
        storage.deallocate()
        storage = new
        capacity = newCapacity
    }

    @inline(__always)
    private func put(_ b: UInt8) {
        storage[count] = b
        count += 1
    }

    @inline(__always)
    private func put(_ s: StaticString) {
        s.withUTF8Buffer { put($0) }
    }

    @inline(__always)
    private func put(_ b: UnsafeBufferPointer<UInt8>) {
        reserve(b.count)
        if let base = b.baseAddress { (storage + count).update(from: base, count: b.count) }
        count += b.count
    }

    @inline(__always)
    private func putDecimal(_ value: UInt64, minimumDigits: Int = 1) {
        reserve(20)
        var digits = 1
        var v = value / 10
        while v != 0 { digits += 1; v /= 10 }
        digits = max(digits, minimumDigits)
        var i = count + digits
        v = value
        while i > count {
            i -= 1
            storage[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
        }
        count += digits
    }

    @inline(__always)
    private func putDecimal(_ value: Int64) {
        reserve(1)
        if value < 0 { put(UInt8(ascii: "-")) }
        putDecimal(value.magnitude)
    }

    /// A JSON string of UTF-8 bytes, as ``JSONText/appendString(bytes:to:)``.
    @inline(__always)
    private func putString(_ bytes: UnsafeRawBufferPointer) {
        let utf8 = bytes.bindMemory(to: UInt8.self)
        if JSONText.isASCII(utf8) {
            putEscaped(utf8)
        } else {
            var s = String(decoding: utf8, as: UTF8.self)
            s.withUTF8 { putEscaped($0) }
        }
    }

    private func putEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        // Each byte takes at most 6 (\u00XX), plus the quotes.
        reserve(6 * utf8.count + 2)
        put(UInt8(ascii: "\""))
        var runStart = 0
        for i in 0..<utf8.count {
            let byte = utf8[i]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if runStart < i { put(UnsafeBufferPointer(rebasing: utf8[runStart..<i])) }
            put(UInt8(ascii: "\\"))
            if byte < 0x20 {
                put(UInt8(ascii: "u")); put(UInt8(ascii: "0")); put(UInt8(ascii: "0"))
                put(JSONText.hexDigits[Int(byte >> 4)])
                put(JSONText.hexDigits[Int(byte & 0xF)])
            } else {
                put(byte)
            }
            runStart = i + 1
        }
        if runStart < utf8.count { put(UnsafeBufferPointer(rebasing: utf8[runStart...])) }
        put(UInt8(ascii: "\""))
    }

    /// ``Timestamp/appendRFC3339(to:)``: the text up to the second is
    /// computed once per second (records of one second share it), then
    /// the six digits of the microsecond and "Z".
    private func putTimestamp(_ micros: Int64) {
        var sec = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {  // floor, as the calendar arithmetic does
            sec -= 1
            fraction += 1_000_000
        }
        if sec != second {
            scratch.removeAll(keepingCapacity: true)
            Timestamp(microsSinceEpoch: micros).appendRFC3339(to: &scratch)
            // The full text ends with six fraction digits and "Z".
            secondPrefix = Array(scratch.dropLast(7))
            second = sec
        }
        secondPrefix.withUnsafeBufferPointer { put($0) }
        putDecimal(UInt64(fraction), minimumDigits: 6)
        put("Z")
    }

    private func putFields(_ fields: FieldsView) {
        put("{")
        var first = true
        for field in fields {
            if !first { put(",") }
            first = false
            putString(field.name)
            put(":")
            switch field.value {
            case .null: put("null")
            case .integer(let i): putDecimal(i)
            case .text(let b): putString(b)
            case .real, .blob:
                scratch.removeAll(keepingCapacity: true)
                field.value.value.appendJSON(to: &scratch)
                scratch.withUnsafeBufferPointer { put($0) }
            }
        }
        put("}")
    }

    /// Appends `r` as one JSON line and a newline.
    public func append(_ r: RecordView) {
        put("{\"lsn\":")
        putDecimal(r.lsn.rawValue)
        put(",\"ts\":\"")
        putTimestamp(r.timestampMicros)
        put("\",\"table\":")
        var table = r.table
        table.withUTF8 { putEscaped($0) }
        switch r.operation {
        case .insert: put(",\"op\":\"insert\",\"key\":")
        case .update: put(",\"op\":\"update\",\"key\":")
        case .delete: put(",\"op\":\"delete\",\"key\":")
        }
        putFields(r.key)
        if let before = r.before {
            put(",\"before\":")
            putFields(before)
        }
        if let after = r.after {
            put(",\"after\":")
            putFields(after)
        }
        put("}\n")
    }
}
