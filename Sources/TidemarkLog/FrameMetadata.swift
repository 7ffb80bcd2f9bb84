// Frame metadata: a zstd skippable frame written immediately before each data
// frame, so a reader can seek by LSN and time, skip frames that cannot hold
// what it looks for, and validate the chain, without decompressing anything.
//
// Skippable frame (zstd format §3.1.2): u32 LE magic 0x184D2A51, u32 LE size
// (72 in format 1, 80 in format 2, 88 + tables + filter in format 3), then
// the payload, all little endian. The segment header's version says which
// format its frames have; a segment never mixes formats.
// Format 3 (written since log format 3, in segments whose header says 3):
//
// | offset | size | field                                                   |
// |--------|------|---------------------------------------------------------|
// | 0      | 4    | "TMKF"                                                  |
// | 4      | 8    | first LSN                                               |
// | 12     | 8    | last LSN                                                |
// | 20     | 8    | earliest commit time in the frame (µs, signed)          |
// | 28     | 8    | latest commit time in the frame (µs, signed)            |
// | 36     | 4    | record count                                            |
// | 40     | 4    | decompressed content size (bytes)                       |
// | 44     | 4    | size of the zstd data frame that follows (bytes)        |
// | 48     | 4    | CRC-32C of that data frame's bytes                      |
// | 52     | 8    | chain value of the previous frame                       |
// | 60     | 8    | synced length: bytes of this segment known durable      |
// |        |      | (fsynced) when this frame was written                   |
// | 68     | 2    | table count T (0xFFFF: names too long, not recorded)    |
// | 70     | 2    | key filter size B in bytes (multiple of 8, <= 8192)     |
// | 72     | 1    | key filter hash count k (0 exactly when B is 0)         |
// | 73     | 1    | edge flags: bit 0 first record is an insert, bit 1 last |
// |        |      | record is a delete; other bits 0                        |
// | 74     | 2    | reserved, 0                                             |
// | 76     | N    | T table names, sorted, distinct: u16 length + UTF-8;    |
// |        |      | N <= 1024                                               |
// | 76+N   | B    | key filter: Bloom bits, 64-bit LE words (FrameSummary)  |
// | 76+N+B | 8    | chain value = FNV-1a-64 of bytes 0..<76+N+B             |
// | 84+N+B | 4    | CRC-32C of bytes 0..<84+N+B                             |
//
// Format 2 (80 bytes) is bytes 0..<68 above, then the chain (FNV-1a-64 of
// bytes 0..<68) and the CRC-32C of bytes 0..<76. Format 1 (72 bytes) has no
// synced length: bytes 60..<68 are the chain (FNV-1a-64 of bytes 0..<60) and
// 68..<72 the CRC-32C of bytes 0..<68. Readers accept all three, each only in
// a segment of its version. The chain and the CRC cover every byte before
// them, tables and filter included.
//
// A frame is valid if and only if: the skippable magic matches and the size
// is the one its segment's format allows (72, 80, or 88 + N + B within the
// bounds above); the payload magic is "TMKF"; the metadata CRC matches; the
// chain equals FNV-1a-64 of the bytes before it; (format 3) the table list
// and filter fill the size exactly, names are UTF-8, sorted and distinct,
// reserved bytes are zero; first LSN <= last LSN; record count >= 1;
// previous-chain equals the previous frame's chain (or the segment header's
// previous-chain for the first frame of a segment); first LSN is greater
// than the previous frame's last LSN; the data frame is complete and its CRC
// matches; it decompresses (zstd verifies its XXH64 content checksum) to
// exactly the stated size; and it decodes to exactly `record count` records
// whose LSNs are strictly increasing from first LSN to last LSN (and, format
// 3, whose tables are the listed ones and whose keys are in the filter —
// `log verify` checks this; readers rely on it only to skip).

struct FrameMetadata: Equatable {
    static let skippableMagic: UInt32 = 0x184D_2A51
    static let payloadMagic: UInt32 = 0x464B_4D54  // "TMKF" little endian
    static let payloadSize = 80
    static let v1PayloadSize = 72
    /// Format 3 payload without tables and filter.
    static let v3FixedPayloadSize = 88
    /// Bytes of a format 2 metadata.
    static let encodedSize = 8 + payloadSize
    /// The largest metadata any format writes.
    static let maxEncodedSize = 8 + v3FixedPayloadSize + FrameSummary.maxTableBytes + FrameSummary.maxBloomBytes

    var firstLSN: LSN
    var lastLSN: LSN
    var firstTimestampMicros: Int64
    var lastTimestampMicros: Int64
    var recordCount: UInt32
    var contentSize: UInt32
    var dataSize: UInt32
    var dataChecksum: UInt32
    var previousChain: UInt64
    /// Format 2: bytes of the segment durable when the frame was written;
    /// nil for a format 1 frame, which does not say.
    var syncedLength: UInt64? = nil
    /// Format 3: the frame's tables and key filter; nil in older formats.
    var summary: FrameSummary? = nil
    var chain: UInt64 = 0

    /// Encodes the metadata in format 3 when `summary` is set, else format 2
    /// (computing `chain`); `syncedLength` must be set.
    mutating func encode(into out: inout [UInt8]) {
        var payload = [UInt8]()
        payload.reserveCapacity(Self.payloadSize)
        payload.appendLE(Self.payloadMagic)
        payload.appendLE(firstLSN.rawValue)
        payload.appendLE(lastLSN.rawValue)
        payload.appendLE(UInt64(bitPattern: firstTimestampMicros))
        payload.appendLE(UInt64(bitPattern: lastTimestampMicros))
        payload.appendLE(recordCount)
        payload.appendLE(contentSize)
        payload.appendLE(dataSize)
        payload.appendLE(dataChecksum)
        payload.appendLE(previousChain)
        if let syncedLength { payload.appendLE(syncedLength) }
        summary?.encode(into: &payload)
        chain = FNV1a64.hash(payload)
        payload.appendLE(chain)
        payload.appendLE(CRC32C.checksum(payload))
        out.appendLE(Self.skippableMagic)
        out.appendLE(UInt32(payload.count))
        out.append(contentsOf: payload)
    }

    enum ParseResult {
        case ok(FrameMetadata)
        /// Fewer bytes than the metadata needs were available.
        case short
        case invalid(String)
    }

    /// Parses metadata (skippable header included) of the format of a
    /// segment of `version` from the start of `bytes`, which may extend past it.
    static func parse(_ bytes: UnsafeRawBufferPointer, version: UInt16) -> ParseResult {
        guard bytes.count >= 8 else { return .short }
        var r = ByteReader(bytes)
        do {
            guard try r.u32() == skippableMagic else { return .invalid("bad frame magic") }
            let size = Int(try r.u32())
            switch version {
            case 1: guard size == v1PayloadSize else { return .invalid("bad metadata size") }
            case 2: guard size == payloadSize else { return .invalid("bad metadata size") }
            default:
                guard size >= v3FixedPayloadSize, size <= maxEncodedSize - 8 else { return .invalid("bad metadata size") }
            }
            guard bytes.count >= 8 + size else { return .short }
            let hashed = size - 12
            let payload = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + size)])
            let storedCRC = UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: hashed + 8, as: UInt32.self))
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: payload[0..<(hashed + 8)])) == storedCRC else {
                return .invalid("metadata checksum mismatch")
            }
            guard try r.u32() == payloadMagic else { return .invalid("bad metadata magic") }
            var m = FrameMetadata(
                firstLSN: LSN(try r.u64()), lastLSN: LSN(try r.u64()),
                firstTimestampMicros: Int64(bitPattern: try r.u64()),
                lastTimestampMicros: Int64(bitPattern: try r.u64()),
                recordCount: try r.u32(), contentSize: try r.u32(), dataSize: try r.u32(),
                dataChecksum: try r.u32(), previousChain: try r.u64())
            if version >= 2 { m.syncedLength = try r.u64() }
            if version >= 3 {
                switch FrameSummary.parse(UnsafeRawBufferPointer(rebasing: payload[68..<hashed])) {
                case .success(let summary): m.summary = summary
                case .failure(let f): return .invalid(f.what)
                }
                r.offset = 8 + hashed
            }
            m.chain = try r.u64()
            guard FNV1a64.hash(UnsafeRawBufferPointer(rebasing: payload[0..<hashed])) == m.chain else {
                return .invalid("chain value does not match metadata")
            }
            guard m.firstLSN <= m.lastLSN, m.recordCount >= 1 else { return .invalid("empty or inverted LSN range") }
            guard UInt64(m.recordCount) <= m.lastLSN.rawValue - m.firstLSN.rawValue + 1 else {
                return .invalid("more records than LSNs in range")
            }
            return .ok(m)
        } catch {
            return .short
        }
    }

    /// Bytes of this frame's metadata (skippable header included).
    var metadataSize: Int {
        if let summary { return 8 + Self.v3FixedPayloadSize + summary.encodedSize - 8 }
        return 8 + (syncedLength == nil ? Self.v1PayloadSize : Self.payloadSize)
    }
    var lsnRange: ClosedRange<LSN> { firstLSN...lastLSN }
    /// Bytes this frame takes in the segment: metadata plus data frame.
    var totalSize: Int { metadataSize + Int(dataSize) }
}

// Segment header: a skippable frame at offset 0 of every segment file.
//
// Skippable magic 0x184D2A50, u32 size (always 96), then:
//
// | offset | size | field                                                   |
// |--------|------|---------------------------------------------------------|
// | 0      | 4    | "TMKS"                                                  |
// | 4      | 2    | format version (3; 2 or 1 in segments written by older  |
// |        |      | versions, whose frames have that format)                |
// | 6      | 2    | reserved, 0                                             |
// | 8      | 8    | base LSN: the first LSN of this segment (its file name) |
// | 16     | 8    | chain value of the last frame of the previous segment,  |
// |        |      | or the source seed for the first segment of a log       |
// | 24     | 2    | source id length n (<= 64)                              |
// | 26     | 64   | source id, UTF-8, n bytes then zero padding             |
// | 90     | 2    | reserved, 0                                             |
// | 92     | 4    | CRC-32C of bytes 0..<92                                 |

struct SegmentHeader: Equatable {
    static let skippableMagic: UInt32 = 0x184D_2A50
    static let payloadMagic: UInt32 = 0x534B_4D54  // "TMKS"
    static let payloadSize = 96
    static let encodedSize = 8 + payloadSize
    /// Written now; format 1 and 2 segments still read (without skipping).
    static let formatVersion: UInt16 = 3
    static let readableVersions: ClosedRange<UInt16> = 1...3

    var baseLSN: LSN
    var previousChain: UInt64
    var sourceID: SourceID
    var version: UInt16 = SegmentHeader.formatVersion

    func encode(into out: inout [UInt8]) {
        var p = [UInt8]()
        p.appendLE(Self.payloadMagic)
        p.appendLE(version)
        p.appendLE(UInt16(0))
        p.appendLE(baseLSN.rawValue)
        p.appendLE(previousChain)
        let id = Array(sourceID.rawValue.utf8.prefix(64))
        p.appendLE(UInt16(id.count))
        p.append(contentsOf: id)
        p.append(contentsOf: [UInt8](repeating: 0, count: 64 - id.count))
        p.appendLE(UInt16(0))
        p.appendLE(CRC32C.checksum(p))
        out.appendLE(Self.skippableMagic)
        out.appendLE(UInt32(Self.payloadSize))
        out.append(contentsOf: p)
    }

    static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<SegmentHeader, DecodeFailure> {
        guard bytes.count >= encodedSize else { return .failure(DecodeFailure(what: "segment header is incomplete")) }
        var r = ByteReader(bytes)
        do {
            guard try r.u32() == skippableMagic, try r.u32() == UInt32(payloadSize) else {
                return .failure(DecodeFailure(what: "not a Tidemark segment (bad header magic)"))
            }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[8..<encodedSize])
            let storedCRC = UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 92, as: UInt32.self))
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: payload[0..<92])) == storedCRC else {
                return .failure(DecodeFailure(what: "segment header checksum mismatch"))
            }
            guard try r.u32() == payloadMagic else { return .failure(DecodeFailure(what: "bad segment header magic")) }
            let version = UInt16(try r.u8()) | UInt16(try r.u8()) << 8
            guard readableVersions.contains(version) else {
                return .failure(DecodeFailure(what: "segment format version \(version) is not supported (this build reads versions 1 to 3)"))
            }
            _ = try r.u8(); _ = try r.u8()
            let base = LSN(try r.u64())
            let prev = try r.u64()
            let n = Int(UInt16(try r.u8()) | UInt16(try r.u8()) << 8)
            guard n <= 64 else { return .failure(DecodeFailure(what: "bad source id length")) }
            let idBytes = try r.bytes(64)
            let id = String(decoding: UnsafeRawBufferPointer(rebasing: idBytes[0..<n]).bindMemory(to: UInt8.self), as: UTF8.self)
            return .success(SegmentHeader(baseLSN: base, previousChain: prev, sourceID: SourceID(id), version: version))
        } catch {
            return .failure(error)
        }
    }

    /// The chain value that precedes the very first frame of a log.
    static func seedChain(for source: SourceID) -> UInt64 {
        FNV1a64.hash(Array(("tidemark-log-v1:" + source.rawValue).utf8))
    }
}

/// The identity of the source a log belongs to (a UUID string for SQLite
/// sources). A log refuses records from any other source.
public struct SourceID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// A new random identity (UUID v4 form).
    public static func random() -> SourceID {
        var g = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { b -> String in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
        let c = Array(hex)
        return SourceID(String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32]))
    }
}
