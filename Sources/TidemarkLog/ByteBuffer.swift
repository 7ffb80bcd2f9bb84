// Little-endian, varint and zigzag helpers for the log's binary formats.
// Small fixed structures (metadata, headers) append to a `[UInt8]`; records,
// the hot path, are sized first and written through a ``ByteWriter``. Readers
// walk an `UnsafeRawBufferPointer` and throw instead of trapping when input
// runs short, because every byte they see came from disk.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Array where Element == UInt8 {
    /// Appends zero bytes up to `count` elements in all (nothing if already
    /// that long). One memset: growing buffers element by element was most
    /// of a debug build's reading time.
    mutating func growZeroed(to count: Int) {
        let extra = count - self.count
        guard extra > 0 else { return }
        let zeros = [UInt8](unsafeUninitializedCapacity: extra) { buffer, initialized in
            memset(buffer.baseAddress!, 0, extra)
            initialized = extra
        }
        append(contentsOf: zeros)
    }
}


extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendLE(_ v: UInt16) {
        append(UInt8(truncatingIfNeeded: v)); append(UInt8(truncatingIfNeeded: v >> 8))
    }
    @inline(__always)
    mutating func appendLE(_ v: UInt32) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
    @inline(__always)
    mutating func appendLE(_ v: UInt64) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
    @inline(__always)
    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        append(UInt8(truncatingIfNeeded: v))
    }
}

/// Bytes a varint of `v` takes.
@inline(__always)
func varintSize(_ v: UInt64) -> Int {
    v == 0 ? 1 : (64 - v.leadingZeroBitCount + 6) / 7
}

/// Zigzag mapping of a signed value (0, -1, 1, -2 … → 0, 1, 2, 3 …).
@inline(__always)
func zigzagBits(_ v: Int64) -> UInt64 {
    UInt64(bitPattern: (v << 1) ^ (v >> 63))
}

/// Writes into memory sized beforehand. No bounds checks: the caller
/// computes the exact size first and checks ``position`` at the end (see
/// `RecordEncoding.encode`).
struct ByteWriter {
    private(set) var position: UnsafeMutableRawPointer

    init(_ start: UnsafeMutableRawPointer) { position = start }

    @inline(__always)
    mutating func u8(_ v: UInt8) {
        position.storeBytes(of: v, as: UInt8.self)
        position += 1
    }

    @inline(__always)
    mutating func le64(_ v: UInt64) {
        position.storeBytes(of: v.littleEndian, as: UInt64.self)
        position += 8
    }

    @inline(__always)
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            u8(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        u8(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always)
    mutating func zigzag(_ v: Int64) { varint(zigzagBits(v)) }

    @inline(__always)
    mutating func bytes(_ b: UnsafeRawBufferPointer) {
        guard let base = b.baseAddress, b.count > 0 else { return }
        position.copyMemory(from: base, byteCount: b.count)
        position += b.count
    }

    /// A `string` of the record encoding: varint length, UTF-8 bytes.
    @inline(__always)
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes(UnsafeRawBufferPointer(utf8))
        }
    }
}

/// Raised by ``ByteReader`` when input is short or malformed; callers convert
/// it into a ``LogError`` that names the segment and LSN range.
struct DecodeFailure: Error {
    var what: String
}

/// A bounds-checked cursor over bytes read from disk.
struct ByteReader {
    let base: UnsafeRawBufferPointer
    var offset: Int

    init(_ base: UnsafeRawBufferPointer, offset: Int = 0) {
        self.base = base
        self.offset = offset
    }

    var remaining: Int { base.count - offset }
    var isAtEnd: Bool { offset >= base.count }

    @inline(__always)
    mutating func u8() throws(DecodeFailure) -> UInt8 {
        guard offset < base.count else { throw DecodeFailure(what: "unexpected end of data") }
        let b = base[offset]
        offset += 1
        return b
    }

    @inline(__always)
    mutating func u32() throws(DecodeFailure) -> UInt32 {
        guard remaining >= 4 else { throw DecodeFailure(what: "unexpected end of data") }
        let v = base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        offset += 4
        return UInt32(littleEndian: v)
    }

    @inline(__always)
    mutating func u64() throws(DecodeFailure) -> UInt64 {
        guard remaining >= 8 else { throw DecodeFailure(what: "unexpected end of data") }
        let v = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        offset += 8
        return UInt64(littleEndian: v)
    }

    @inline(__always)
    mutating func varint() throws(DecodeFailure) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < base.count else { throw DecodeFailure(what: "unexpected end of data in varint") }
            let b = base[offset]
            offset += 1
            if shift == 63 && b > 1 { throw DecodeFailure(what: "varint overflows 64 bits") }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { throw DecodeFailure(what: "varint too long") }
        }
    }

    @inline(__always)
    mutating func zigzag() throws(DecodeFailure) -> Int64 {
        let u = try varint()
        return Int64(bitPattern: u >> 1) ^ -Int64(bitPattern: u & 1)
    }

    @inline(__always)
    mutating func length() throws(DecodeFailure) -> Int {
        let n = try varint()
        guard n <= UInt64(remaining) else { throw DecodeFailure(what: "length \(n) exceeds the \(remaining) bytes left") }
        return Int(n)
    }

    @inline(__always)
    mutating func bytes(_ n: Int) throws(DecodeFailure) -> UnsafeRawBufferPointer {
        guard n <= remaining else { throw DecodeFailure(what: "unexpected end of data") }
        let slice = UnsafeRawBufferPointer(rebasing: base[offset..<(offset + n)])
        offset += n
        return slice
    }

    /// Skips `n` bytes (a length just read) and returns where they start.
    @inline(__always)
    mutating func offsetAfterLength(_ n: Int) -> Int {
        // `length()` already checked that n bytes remain.
        let start = offset
        offset += n
        return start
    }

    @inline(__always)
    mutating func string() throws(DecodeFailure) -> String {
        let n = try length()
        let raw = try bytes(n)
        return String(decoding: raw.bindMemory(to: UInt8.self), as: UTF8.self)
    }
}
