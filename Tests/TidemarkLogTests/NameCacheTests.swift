import TidemarkTestSupport
import Testing
@testable import TidemarkLog

/// The name cache must return exactly what decoding the bytes returns, for
/// every length around its 8- and 16-byte keys, at the end of the data,
/// for invalid UTF-8, and when more names compete for slots than it holds.
@Suite("Name cache") struct NameCacheTests {
    /// Encodes `names` as record-encoding strings, each followed by `tail`
    /// bytes of padding (0 puts the last name right at the end).
    static func encoded(_ names: [[UInt8]], tail: Int) -> [UInt8] {
        var out: [UInt8] = []
        for n in names {
            out.appendVarint(UInt64(n.count))
            out.append(contentsOf: n)
        }
        out.append(contentsOf: repeatElement(0xEE, count: tail))
        return out
    }

    static func decodeAll(_ bytes: [UInt8], count: Int, cache: inout NameCache) throws -> [String] {
        try bytes.withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            var out: [String] = []
            for _ in 0..<count { out.append(try cache.name(&reader)) }
            return out
        }
    }

    @Test(arguments: [0, 1, 15, 16, 40])
    func everyLengthDecodesLikeString(tail: Int) throws {
        var names: [[UInt8]] = (0...20).map { n in (0..<n).map { UInt8(97 + $0 % 26) } }
        names += [Array("héllo".utf8), Array("🌊🌊🌊🌊".utf8), [0xFF, 0xFE, 0x41], [0x61, 0x00, 0x62]]
        let bytes = Self.encoded(names + names, tail: tail)  // twice: misses, then hits
        var cache = NameCache()
        let decoded = try Self.decodeAll(bytes, count: names.count * 2, cache: &cache)
        let expected = names.map { String(decoding: $0, as: UTF8.self) }
        #expect(decoded == expected + expected)
    }

    @Test func moreNamesThanSlotsStayCorrect() throws {
        // Names that differ only past byte 8, and far more than 256 of them.
        let names = (0..<2_000).map { Array("column_\($0)_x".utf8) }
        let bytes = Self.encoded(names + names.reversed(), tail: 16)
        var cache = NameCache()
        let decoded = try Self.decodeAll(bytes, count: names.count * 2, cache: &cache)
        let expected = names.map { String(decoding: $0, as: UTF8.self) }
        #expect(decoded == expected + expected.reversed())
    }

    @Test func aShortLengthIsAnError() {
        var cache = NameCache()
        let bytes: [UInt8] = [5, 0x61, 0x62]
        #expect(throws: DecodeFailure.self) {
            _ = try Self.decodeAll(bytes, count: 1, cache: &cache)
        }
    }
}
