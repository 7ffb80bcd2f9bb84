/// CRC-32C (Castagnoli), slicing-by-8, as used for frame and metadata checks.
///
/// CRC-32C detects every burst error up to 32 bits and all odd-bit errors;
/// it guards the compressed bytes (so `log verify` need not decompress) and
/// the metadata. zstd's own XXH64 content checksum guards the decompressed
/// bytes on top of it.
enum CRC32C {
    static let table: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 256 * 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            var c = t[i]
            for k in 1..<8 {
                c = t[Int(c & 0xFF)] ^ (c >> 8)
                t[k * 256 + i] = c
            }
        }
        return t
    }()

    static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var crc = ~seed
        table.withUnsafeBufferPointer { t in
            var i = 0
            let n = bytes.count
            while n - i >= 8 {
                let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let lo = UInt32(truncatingIfNeeded: word) ^ crc
                let hi = UInt32(truncatingIfNeeded: word >> 32)
                crc = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                crc = t[Int((crc ^ UInt32(bytes[i])) & 0xFF)] ^ (crc >> 8)
                i += 1
            }
        }
        return ~crc
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}

/// FNV-1a, 64 bit: the frame chain hash. Only metadata (72 bytes a frame) is
/// hashed, so speed does not matter; stability does — never change it.
package enum FNV1a64 {
    package static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    package static let prime: UInt64 = 0x0000_0100_0000_01B3

    package static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = offsetBasis) -> UInt64 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* prime
        }
        return h
    }

    package static func hash(_ bytes: [UInt8], seed: UInt64 = offsetBasis) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }
}
