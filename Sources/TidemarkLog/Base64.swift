/// Standard base64 (RFC 4648 §4: alphabet `A–Z a–z 0–9 + /`, `=` padding),
/// the encoding of blobs in JSON lines.
///
/// Hand-written rather than Foundation's so the JSON encoder appends straight
/// into its reused byte buffer and `TidemarkLog` needs no Foundation. The
/// decoder is strict: only the canonical encoding of some byte string is
/// accepted (length a multiple of 4, padding only at the end, unused bits
/// zero), so a blob has exactly one text form and round trips compare equal.
enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Maps an ASCII byte to its 6-bit value, or `0xFF` when it is not in the alphabet.
    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(value) }
        return table
    }()

    /// Appends the base64 text of `bytes`, with padding.
    ///
    /// Grows `buffer` once and fills the new bytes through a pointer: blobs can
    /// be large, and a per-byte `append` re-checks capacity and uniqueness.
    static func append(_ bytes: [UInt8], to buffer: inout [UInt8]) {
        let outputCount = (bytes.count + 2) / 3 * 4
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(UInt8(ascii: "="), count: outputCount))
        alphabet.withUnsafeBufferPointer { a in
            bytes.withUnsafeBufferPointer { input in
                buffer.withUnsafeMutableBufferPointer { whole in
                    let out = UnsafeMutableBufferPointer(rebasing: whole[start...])
                    var i = 0
                    var o = 0
                    let n = input.count
                    while i + 3 <= n {
                        let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                        out[o] = a[Int(v >> 18)]
                        out[o + 1] = a[Int(v >> 12 & 0x3F)]
                        out[o + 2] = a[Int(v >> 6 & 0x3F)]
                        out[o + 3] = a[Int(v & 0x3F)]
                        i += 3
                        o += 4
                    }
                    // The tail's '=' padding is already in place.
                    switch n - i {
                    case 1:
                        let v = UInt32(input[i]) << 16
                        out[o] = a[Int(v >> 18)]
                        out[o + 1] = a[Int(v >> 12 & 0x3F)]
                    case 2:
                        let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
                        out[o] = a[Int(v >> 18)]
                        out[o + 1] = a[Int(v >> 12 & 0x3F)]
                        out[o + 2] = a[Int(v >> 6 & 0x3F)]
                    default:
                        break
                    }
                }
            }
        }
    }

    /// Why a base64 text was rejected.
    struct Rejection: Error {
        var why: String
    }

    /// Decodes canonical padded base64.
    static func decode(_ text: some Collection<UInt8>) throws(Rejection) -> [UInt8] {
        let input = Array(text)
        guard input.count % 4 == 0 else {
            throw Rejection(why: "length \(input.count) is not a multiple of 4 (padding with '=' is required)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var i = 0
        while i < input.count {
            let isLast = i + 4 == input.count
            var sextets: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
            var padding = 0
            for j in 0..<4 {
                let byte = input[i + j]
                let value: UInt32
                if byte == UInt8(ascii: "=") {
                    guard isLast, j >= 2 else {
                        throw Rejection(why: "'=' at character \(i + j + 1) is not end padding")
                    }
                    padding += 1
                    value = 0
                } else {
                    guard padding == 0 else {
                        throw Rejection(why: "character after '=' padding at character \(i + j + 1)")
                    }
                    let decoded = decodeTable[Int(byte)]
                    guard decoded != 0xFF else {
                        let shown = byte >= 0x20 && byte < 0x7F
                            ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
                        throw Rejection(why: "\(shown) at character \(i + j + 1) is not in the standard base64 alphabet")
                    }
                    value = UInt32(decoded)
                }
                switch j {
                case 0: sextets.0 = value
                case 1: sextets.1 = value
                case 2: sextets.2 = value
                default: sextets.3 = value
                }
            }
            let v = sextets.0 << 18 | sextets.1 << 12 | sextets.2 << 6 | sextets.3
            out.append(UInt8(truncatingIfNeeded: v >> 16))
            switch padding {
            case 0:
                out.append(UInt8(truncatingIfNeeded: v >> 8))
                out.append(UInt8(truncatingIfNeeded: v))
            case 1:
                guard v & 0xFF == 0 else { throw Rejection(why: "non-zero bits before the '=' padding (not canonical)") }
                out.append(UInt8(truncatingIfNeeded: v >> 8))
            default:
                guard v & 0xFFFF == 0 else { throw Rejection(why: "non-zero bits before the '==' padding (not canonical)") }
            }
            i += 4
        }
        return out
    }
}
