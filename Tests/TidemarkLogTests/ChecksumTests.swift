import Testing
@testable import TidemarkLog

/// The checksums the log format pins (LogFormat.md): a change to either
/// makes every existing segment unreadable, so their values are fixed here.
@Suite("Checksums") struct ChecksumTests {
    /// The CRC-32C (Castagnoli) check value: the checksum of the ASCII
    /// digits "123456789" is 0xE3069283 in every conforming implementation
    /// (the catalogue value for CRC-32/ISCSI).
    @Test func crc32cCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    /// The slicing-by-8 path (8 bytes at a time) and the byte-at-a-time
    /// tail agree with a bitwise reference at every length and alignment
    /// around the 8-byte step, so no length hides a table mistake.
    @Test func slicingAgreesWithBitwise() {
        var random = SystemRandomNumberGenerator()
        let data = (0..<100).map { _ in UInt8.random(in: 0...255, using: &random) }
        for start in 0..<8 {
            for end in start...data.count {
                let slice = Array(data[start..<end])
                #expect(CRC32C.checksum(slice) == Self.bitwise(slice), "bytes \(start)..<\(end) of \(data)")
            }
        }
    }

    /// Known values: empty input, and 32 zero bytes (0x8A9136AA, as listed
    /// with the iSCSI CRC's test vectors).
    @Test func knownVectors() {
        #expect(CRC32C.checksum([]) == 0)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    }

    /// The FNV-1a 64-bit offset basis and a known value ("a").
    @Test func fnv1a64KnownValues() {
        #expect(FNV1a64.hash([]) == 0xCBF2_9CE4_8422_2325)
        #expect(FNV1a64.hash(Array("a".utf8)) == 0xAF63_DC4C_8601_EC8C)
    }

    /// CRC-32C one bit at a time, reflected polynomial 0x82F63B78.
    static func bitwise(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}
