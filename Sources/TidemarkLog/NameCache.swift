/// Column and table names of decoded records, each decoded once.
///
/// Every record repeats its table's column names, so building a fresh
/// `String` for each (UTF-8 validation, packing or a heap allocation) was a
/// large share of reading. This small open-addressed cache keys a name of up to 16
/// bytes by its zero-padded bytes and length and returns the `String`
/// decoded the first time; when its few probed slots are all taken by other
/// names, it replaces the first (the cache stays correct, only slower). Longer
/// names, and names within 16 bytes of the end of the data, are decoded
/// every time.
///
/// Invariant: a hit returns exactly what `String(decoding:as:)` returns for
/// the same bytes, because equal keys mean equal bytes.
struct NameCache {
    private struct Slot {
        var low: UInt64 = 0
        var high: UInt64 = 0
        var length = -1
        var name = ""
    }

    private static let slotBits = 8
    private static let probes = 4
    private var slots = [Slot](repeating: Slot(), count: 1 << slotBits)

    /// Reads a length-prefixed name (a `string` of the record encoding).
    @inline(__always)
    mutating func name(_ reader: inout ByteReader) throws(DecodeFailure) -> String {
        let start = reader.offsetAfterLength(try reader.length())
        let n = reader.offset - start
        let base = reader.base
        guard n <= 16, start + 16 <= base.count else {
            return String(decoding: UnsafeRawBufferPointer(rebasing: base[start..<reader.offset]), as: UTF8.self)
        }
        // Two unaligned little-endian loads, bytes past the name masked off.
        var low = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: start, as: UInt64.self))
        var high = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: start + 8, as: UInt64.self))
        if n < 8 {
            low &= (1 &<< UInt64(8 * n)) &- 1
            high = 0
        } else if n < 16 {
            high &= (1 &<< UInt64(8 * (n - 8))) &- 1
        }
        let mixed = (low ^ (high &* 0xC2B2_AE3D_27D4_EB4F) ^ UInt64(n)) &* 0x9E37_79B9_7F4A_7C15
        let home = Int(truncatingIfNeeded: mixed >> UInt64(64 - Self.slotBits))
        return slots.withUnsafeMutableBufferPointer { slots in
            // Up to `probes` neighbouring slots, so a few colliding names
            // (birthday odds are high even in 256 slots) do not evict each
            // other on every record.
            var free = home
            for i in 0..<Self.probes {
                let index = (home &+ i) & (slots.count - 1)
                let slot = slots[index]
                if slot.low == low && slot.high == high && slot.length == n { return slot.name }
                if slot.length < 0 { free = index; break }
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: base[start..<(start + n)]), as: UTF8.self)
            slots[free] = Slot(low: low, high: high, length: n, name: name)
            return name
        }
    }
}
