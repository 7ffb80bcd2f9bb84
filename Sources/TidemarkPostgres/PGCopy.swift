import CLibPQ
import TidemarkLog

/// Where COPY data goes: the connection in COPY IN state. A reference so the
/// buffer (a struct handed out `inout`) and `copyIn` see the same failure.
final class PGCopySink {
    let conn: OpaquePointer
    /// Set at the first failed PQputCopyData; later data is dropped, and
    /// `copyIn` reports this error once the body returns.
    var error: PGError?
    let redact: (String) -> String

    init(conn: OpaquePointer, redact: @escaping (String) -> String) {
        self.conn = conn
        self.redact = redact
    }

    /// Sends bytes in pieces of at most `PGCopySink.piece`.
    func put(_ bytes: [UInt8]) {
        guard error == nil, !bytes.isEmpty else { return }
        bytes.withUnsafeBufferPointer { buf in
            var offset = 0
            while offset < buf.count {
                let n = min(PGCopySink.piece, buf.count - offset)
                let rc = buf.baseAddress!.advanced(by: offset).withMemoryRebound(to: CChar.self, capacity: n) {
                    PQputCopyData(conn, $0, Int32(n))
                }
                if rc != 1 {
                    let message = redact(String(cString: PQerrorMessage(conn)))
                    error = PGError(message: "sending COPY data failed: " + (message.isEmpty ? "connection error" : message),
                                    connectionLost: true)
                    return
                }
                offset += n
            }
        }
    }

    static let piece = 1 << 20
}

/// Binary COPY stream builder (header written on init, trailer by copyIn).
///
/// Each row: `beginRow(fieldCount:)` then exactly that many field writes.
/// Data goes to the server in ~1 MiB pieces as it accumulates; if sending
/// fails, later writes are dropped and `copyIn` throws the error
/// (`failed` tells a long producer it may stop early).
public struct PGCopyBuffer {
    /// Bytes not yet sent (for a standalone builder: everything written).
    public private(set) var pending: [UInt8]
    let sink: PGCopySink?

    static let signature: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00]

    /// A standalone builder that never sends (to inspect the encoding).
    public init() { self.init(sink: nil) }

    init(sink: PGCopySink?) {
        self.sink = sink
        pending = PGCopyBuffer.signature
        pending.reserveCapacity(PGCopySink.piece + 64 * 1024)
        PGValues.append(Int32(0), to: &pending)   // flags
        PGValues.append(Int32(0), to: &pending)   // header extension length
    }

    /// True once sending to the server failed (the rest is being dropped).
    public var failed: Bool { sink?.error != nil }

    public mutating func beginRow(fieldCount: Int) {
        flushIfFull()
        PGValues.append(Int16(truncatingIfNeeded: fieldCount), to: &pending)
    }

    public mutating func null() { PGValues.append(Int32(-1), to: &pending) }

    public mutating func int8(_ v: Int64) { field(PGValues.bigEndian(v)) }
    public mutating func int4(_ v: Int32) { field(PGValues.bigEndian(v)) }
    public mutating func int2(_ v: Int16) { field(PGValues.bigEndian(v)) }
    /// Bit-exact: -0.0, NaN payloads, ±infinity are kept.
    public mutating func float8(_ v: Double) { field(PGValues.bigEndian(v.bitPattern)) }
    public mutating func text(_ s: String) { field(Array(s.utf8)) }
    public mutating func bytea(_ b: [UInt8]) { field(b) }
    public mutating func bool(_ v: Bool) { field([v ? 1 : 0]) }
    /// Exact base-10000 encoding of a decimal string (see `PGNumeric.encode`);
    /// throws, writing nothing, if the string is not a decimal number.
    public mutating func numeric(decimal: String) throws { field(try PGNumeric.encode(decimal: decimal)) }
    /// An already binary-encoded field (length prefix added here).
    public mutating func raw(_ bytes: [UInt8]) { field(bytes) }

    /// A Value in the column type matching its class: .integer → int8,
    /// .real → float8, .text → text, .blob → bytea, .null → NULL.
    public mutating func value(_ v: Value) {
        switch v {
        case .null: null()
        case .integer(let i): int8(i)
        case .real(let d): float8(d)
        case .text(let s): text(s)
        case .blob(let b): bytea(b)
        }
    }

    mutating func field(_ bytes: [UInt8]) {
        PGValues.append(Int32(truncatingIfNeeded: bytes.count), to: &pending)
        pending.append(contentsOf: bytes)
        if bytes.count >= 64 * 1024 { flushIfFull() }
    }

    mutating func flushIfFull() {
        if pending.count >= PGCopySink.piece { flush() }
    }

    mutating func flush() {
        guard let sink else { return }
        sink.put(pending)
        pending.removeAll(keepingCapacity: true)
    }

    mutating func finish() {
        PGValues.append(Int16(-1), to: &pending)
        flush()
    }
}

/// Text-format COPY stream builder, for `PGConnection.copyInText` (a COPY
/// statement in the default text format): fields separated by tabs, rows
/// ended by newlines, NULL as `\N`, and in values backslash, newline,
/// carriage return and tab escaped as `\\`, `\n`, `\r`, `\t`. The server
/// parses each field with the column type's input function, so any type
/// with a text form works (jsonb, uuid, timestamptz, arrays, …).
public struct PGCopyTextBuffer {
    public private(set) var pending: [UInt8] = []
    let sink: PGCopySink?
    var fieldsInRow = 0

    /// A standalone builder that never sends (to inspect the encoding).
    public init() { self.init(sink: nil) }

    init(sink: PGCopySink?) {
        self.sink = sink
        pending.reserveCapacity(PGCopySink.piece + 64 * 1024)
    }

    public var failed: Bool { sink?.error != nil }

    /// One field; nil is NULL.
    public mutating func field(_ s: String?) {
        if fieldsInRow > 0 { pending.append(UInt8(ascii: "\t")) }
        fieldsInRow += 1
        guard let s else {
            pending.append(UInt8(ascii: "\\")); pending.append(UInt8(ascii: "N"))
            return
        }
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\\"): pending.append(b); pending.append(b)
            case UInt8(ascii: "\n"): pending.append(UInt8(ascii: "\\")); pending.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): pending.append(UInt8(ascii: "\\")); pending.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): pending.append(UInt8(ascii: "\\")); pending.append(UInt8(ascii: "t"))
            default: pending.append(b)
            }
        }
    }

    public mutating func null() { field(nil) }

    /// Ends the current row.
    public mutating func endRow() {
        pending.append(UInt8(ascii: "\n"))
        fieldsInRow = 0
        if pending.count >= PGCopySink.piece { flush() }
    }

    /// A whole row: the fields, then `endRow()`.
    public mutating func row(_ fields: [String?]) {
        for f in fields { field(f) }
        endRow()
    }

    mutating func flush() {
        guard let sink else { return }
        sink.put(pending)
        pending.removeAll(keepingCapacity: true)
    }
}
