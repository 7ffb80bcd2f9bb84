// What a format 3 frame's metadata says about its records, so readers can
// skip frames that cannot hold what they look for without decompressing:
// the exact set of tables, and a Bloom filter of key-column values.
//
// Bloom entries. A record adds, for its key and (when it is a key change,
// ``ChangeRecord/isKeyChange``) for the old key in its before image:
// - a one-column key: one entry (table, "", canonical value) — no column
//   name, since `--key 42` names no column;
// - a composite key: one entry (table, column, canonical value) per column.
// A `--key` field named `c` with value `v` may be in the frame only if some
// candidate canonical form of `v` is there as (table, c, ·) or (table, "", ·);
// an unnamed field only as (table, "", ·). Every wanted field must pass.
//
// Canonical values. `--key` matching (``ChangeRecord/matches(key:)``) takes a
// stored value equal to the wanted one, or, when the wanted one is text, an
// integer spelled that way or a real that text parses to (or prints as). So a
// stored value hashes as its storage class plus its exact bits (all NaNs as
// one), and a wanted text has up to three candidates: itself as text, the
// integer it parses to, the real it parses to (NaN if it names one). A
// record the full scan would return therefore always has its entries' bits
// set: the filter can only say "maybe" for it, never "no".
//
// Size. 8 bits per entry with k = 6 hashes gives about 2% false positives; the
// filter is that size rounded up to whole 64-bit words, at least one word and
// at most 8 KiB (65536 bits), where k is lowered to (bits / entries) * ln 2
// so a full 1 MiB frame of ~10k one-column keys still rules out about 19 of
// 20 lookups (at 4 KiB it was 4 of 5: history read 5x the frames it needs).
// Such a frame compresses to ~200 KiB, so the filter costs a few percent of
// the log at most, and a one-record frame pays 8 bytes.

/// A frame's tables and key filter, as stored in format 3 metadata.
struct FrameSummary: Equatable, Sendable {
    /// The frame's tables, sorted; nil when their names were too long to
    /// record (more than ``maxTableBytes``): such a frame is never skipped.
    var tables: [String]?
    /// Bloom filter bits (little-endian 64-bit words); empty when the frame
    /// has no filter (it is then never skipped by key).
    var bloom: [UInt64]
    var hashCount: UInt8
    /// Bit 0: the frame's first record is an insert; bit 1: its last record
    /// is a delete. An old log's key change (a delete and an insert at
    /// consecutive LSNs) can straddle two frames only where the first says
    /// bit 1 and the next bit 0.
    var edges: UInt8 = 0

    var startsWithInsert: Bool { edges & 1 != 0 }
    var endsWithDelete: Bool { edges & 2 != 0 }

    static let maxTableBytes = 1024
    static let maxBloomBytes = 8192
    static let bitsPerEntry = 8

    static let empty = FrameSummary(tables: nil, bloom: [], hashCount: 0)

    /// The bytes this summary takes in the metadata (after the fixed part).
    var encodedSize: Int {
        8 + (tables ?? []).reduce(0) { $0 + 2 + $1.utf8.count } + bloom.count * 8
    }

    /// Builds the summary of `records` (one frame's).
    ///
    /// The appender calls this for every frame, so it hashes each record's
    /// key straight from its fields (``EntryHasher``), with no array or
    /// string built per record; ``reference(_:)`` is the plain definition
    /// it is tested against (same bits for the same records).
    static func of<C: BidirectionalCollection>(_ records: C) -> FrameSummary where C.Element == ChangeRecord {
        var tableSet = Set<String>()
        var entries = Set<UInt64>()
        entries.reserveCapacity(records.count + records.count / 4)
        var lastTable: String?
        for r in records {
            // Consecutive records of one table are common: one set lookup per run.
            if lastTable != r.table {
                tableSet.insert(r.table)
                lastTable = r.table
            }
            let prefix = EntryHasher.tablePrefix(r.table)
            if r.key.count == 1 {
                entries.insert(EntryHasher.hash(prefix: prefix, column: nil, value: r.key[0].value))
            } else {
                for f in r.key { entries.insert(EntryHasher.hash(prefix: prefix, column: f.name, value: f.value)) }
            }
            // A key change (``ChangeRecord/isKeyChange``) adds its old key,
            // found without building ``ChangeRecord/beforeKey``.
            if r.operation == .update, let before = r.before, EntryHasher.beforeKeyDiffers(r.key, before) {
                if r.key.count == 1 {
                    if let old = before.first(where: { $0.name == r.key[0].name }) {
                        entries.insert(EntryHasher.hash(prefix: prefix, column: nil, value: old.value))
                    }
                } else {
                    for k in r.key {
                        if let old = before.first(where: { $0.name == k.name }) {
                            entries.insert(EntryHasher.hash(prefix: prefix, column: old.name, value: old.value))
                        }
                    }
                }
            }
        }
        // `last`, not `reversed().first`: that copied every record of the frame.
        return make(tableSet: tableSet, entries: entries, first: records.first?.operation, last: records.last?.operation)
    }

    /// The plain definition of ``of(_:)`` (entries built as byte arrays);
    /// tests check the two agree.
    static func reference<C: Collection>(_ records: C) -> FrameSummary where C.Element == ChangeRecord {
        var tableSet = Set<String>()
        var entries = Set<UInt64>()
        for r in records {
            tableSet.insert(r.table)
            for e in entryHashes(table: r.table, key: r.key) { entries.insert(e) }
            if r.isKeyChange, let old = r.beforeKey {
                for e in entryHashes(table: r.table, key: old) { entries.insert(e) }
            }
        }
        return make(tableSet: tableSet, entries: entries, first: records.first?.operation, last: records.reversed().first?.operation)
    }

    private static func make(tableSet: Set<String>, entries: Set<UInt64>, first: ChangeOperation?, last: ChangeOperation?) -> FrameSummary {
        let sorted = tableSet.sorted()
        let nameBytes = sorted.reduce(0) { $0 + 2 + $1.utf8.count }
        let words = min(maxBloomBytes / 8, max(1, (entries.count * bitsPerEntry + 63) / 64))
        let bits = words * 64
        let k = max(1, min(6, Int((Double(bits) / Double(max(1, entries.count)) * 0.693).rounded())))
        var bloom = [UInt64](repeating: 0, count: words)
        for h in entries { setBits(h, k: k, in: &bloom) }
        var edges: UInt8 = 0
        if first == .insert { edges |= 1 }
        if last == .delete { edges |= 2 }
        return FrameSummary(tables: nameBytes <= maxTableBytes ? sorted : nil, bloom: bloom, hashCount: UInt8(k), edges: edges)
    }

    // MARK: Hashing

    /// The entries a key adds (see the comment at the top of this file).
    static func entryHashes(table: String, key: [Field]) -> [UInt64] {
        if key.count == 1 { return [entryHash(table: table, column: "", canonical: canonical(key[0].value))] }
        return key.map { entryHash(table: table, column: $0.name, canonical: canonical($0.value)) }
    }

    static func entryHash(table: String, column: String, canonical: [UInt8]) -> UInt64 {
        var bytes = Array(table.utf8)
        bytes.append(0)
        bytes.append(contentsOf: column.utf8)
        bytes.append(0)
        bytes.append(contentsOf: canonical)
        return FNV1a64.hash(bytes)
    }

    /// A stored value's canonical bytes: storage class, then exact bits.
    static func canonical(_ v: Value) -> [UInt8] {
        var out: [UInt8] = []
        switch v {
        case .null: out.append(0)
        case .integer(let i): out.append(1); out.appendLE(UInt64(bitPattern: i))
        case .real(let d):
            out.append(2)
            if d.isNaN { out.append(0x6E) } else { out.appendLE(d.bitPattern) }
        case .text(let s): out.append(3); out.append(contentsOf: s.utf8)
        case .blob(let b): out.append(4); out.append(contentsOf: b)
        }
        return out
    }

    /// Every canonical form a stored value matching the wanted `v` can have.
    static func candidates(_ v: Value) -> [[UInt8]] {
        guard case .text(let t) = v else { return [canonical(v)] }
        var out = [canonical(v)]
        if let i = Int64(t) { out.append(canonical(.integer(i))) }
        if let d = Double(t) { out.append(canonical(.real(d))) }
        if t.lowercased().contains("nan") { out.append(canonical(.real(.nan))) }
        return out
    }

    private static func probes(_ h: UInt64, k: Int, bits: Int) -> some Sequence<Int> {
        // Double hashing: h1 + i*h2, h2 from a 64-bit finalizer, made odd.
        var z = h &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        let h2 = (z ^ (z >> 31)) | 1
        return (0..<k).lazy.map { i in Int((h &+ UInt64(i) &* h2) % UInt64(bits)) }
    }

    private static func setBits(_ h: UInt64, k: Int, in bloom: inout [UInt64]) {
        for bit in probes(h, k: k, bits: bloom.count * 64) { bloom[bit >> 6] |= 1 << UInt64(bit & 63) }
    }

    func mayContain(_ h: UInt64) -> Bool {
        guard !bloom.isEmpty else { return true }
        for bit in Self.probes(h, k: Int(hashCount), bits: bloom.count * 64) where bloom[bit >> 6] & (1 << UInt64(bit & 63)) == 0 {
            return false
        }
        return true
    }

    /// Whether a record of `table` whose key (or old key) matches `wanted`
    /// may be in the frame. False only when the frame certainly has none.
    func mayHold(table: String, key wanted: [Field]) -> Bool {
        guard !bloom.isEmpty, !wanted.isEmpty else { return true }
        for w in wanted {
            let forms = Self.candidates(w.value)
            let found = forms.contains { c in
                if mayContain(Self.entryHash(table: table, column: "", canonical: c)) { return true }
                return !w.name.isEmpty && mayContain(Self.entryHash(table: table, column: w.name, canonical: c))
            }
            if !found { return false }
        }
        return true
    }

    // MARK: Encoding

    /// Appends: u16 table count (0xFFFF: not recorded), u16 filter bytes,
    /// u8 k, u8 edge flags, 2 reserved zero bytes, the table names (u16 length + UTF-8
    /// each), the filter words.
    func encode(into out: inout [UInt8]) {
        out.appendLE(UInt16(tables.map { $0.count } ?? 0xFFFF))
        out.appendLE(UInt16(bloom.count * 8))
        out.append(hashCount)
        out.append(edges)
        out.append(contentsOf: [0, 0])
        for t in tables ?? [] {
            let b = Array(t.utf8)
            out.appendLE(UInt16(b.count))
            out.append(contentsOf: b)
        }
        for w in bloom { out.appendLE(w) }
    }

    /// Parses what ``encode(into:)`` wrote, which must fill `bytes` exactly.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<FrameSummary, DecodeFailure> {
        var r = ByteReader(bytes)
        do throws(DecodeFailure) {
            let count = UInt16(try r.u8()) | UInt16(try r.u8()) << 8
            let bloomBytes = Int(UInt16(try r.u8()) | UInt16(try r.u8()) << 8)
            let k = try r.u8()
            let edges = try r.u8()
            guard edges & ~3 == 0, try r.u8() == 0, try r.u8() == 0 else { throw DecodeFailure(what: "reserved metadata bytes are not zero") }
            guard bloomBytes % 8 == 0, bloomBytes <= maxBloomBytes, (bloomBytes == 0) == (k == 0), k <= 16 else {
                throw DecodeFailure(what: "bad key filter size")
            }
            var tables: [String]? = nil
            if count != 0xFFFF {
                var names: [String] = []
                var total = 0
                for _ in 0..<count {
                    let n = Int(UInt16(try r.u8()) | UInt16(try r.u8()) << 8)
                    total += 2 + n
                    let raw = try r.bytes(n)
                    guard let name = String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) else {
                        throw DecodeFailure(what: "table name is not UTF-8")
                    }
                    // Sorted and distinct: one encoding per set.
                    if let last = names.last, !(last < name) { throw DecodeFailure(what: "table names not sorted") }
                    names.append(name)
                }
                guard total <= maxTableBytes, count >= 1 else { throw DecodeFailure(what: "bad table list") }
                tables = names
            }
            var bloom: [UInt64] = []
            bloom.reserveCapacity(bloomBytes / 8)
            for _ in 0..<(bloomBytes / 8) { bloom.append(try r.u64()) }
            guard r.isAtEnd else { throw DecodeFailure(what: "metadata size does not match its contents") }
            return .success(FrameSummary(tables: tables, bloom: bloom, hashCount: k, edges: edges))
        } catch {
            return .failure(error)
        }
    }
}

/// Entry hashes of the key filter computed field by field: FNV-1a-64 over
/// `table, 0x00, column, 0x00, canonical value` fed piece by piece, which
/// is the same hash as ``FrameSummary/entryHash(table:column:canonical:)``
/// of the concatenated bytes (FNV-1a is a left fold over the bytes).
enum EntryHasher {
    @inline(__always)
    static func feed(_ h: inout UInt64, _ byte: UInt8) {
        h ^= UInt64(byte)
        h = h &* FNV1a64.prime
    }

    @inline(__always)
    static func feed(_ h: inout UInt64, _ s: String) {
        var s = s
        s.withUTF8 { for b in $0 { feed(&h, b) } }
    }

    @inline(__always)
    static func feedLE(_ h: inout UInt64, _ v: UInt64) {
        var v = v
        for _ in 0..<8 {
            feed(&h, UInt8(truncatingIfNeeded: v))
            v >>= 8
        }
    }

    /// The hash state after `table, 0x00`.
    @inline(__always)
    static func tablePrefix(_ table: String) -> UInt64 {
        var h = FNV1a64.offsetBasis
        feed(&h, table)
        feed(&h, 0)
        return h
    }

    /// The entry of `value` under `column` (nil: the empty name of a
    /// one-column key), continuing from ``tablePrefix(_:)``.
    @inline(__always)
    static func hash(prefix: UInt64, column: String?, value: Value) -> UInt64 {
        var h = prefix
        if let column { feed(&h, column) }
        feed(&h, 0)
        switch value {
        case .null: feed(&h, 0)
        case .integer(let i): feed(&h, 1); feedLE(&h, UInt64(bitPattern: i))
        case .real(let d):
            feed(&h, 2)
            if d.isNaN { feed(&h, 0x6E) } else { feedLE(&h, d.bitPattern) }
        case .text(let s): feed(&h, 3); feed(&h, s)
        case .blob(let b): feed(&h, 4); for x in b { feed(&h, x) }
        }
        return h
    }

    /// ``ChangeRecord/isKeyChange`` for an update with this key and before
    /// image: every key column is in the before image and some differs.
    @inline(__always)
    static func beforeKeyDiffers(_ key: [Field], _ before: [Field]) -> Bool {
        var differs = false
        for k in key {
            guard let old = before.first(where: { $0.name == k.name }) else { return false }
            if old.value != k.value { differs = true }
        }
        return differs
    }
}

/// What a reader looks for, to skip frames that cannot hold any of it (from
/// format 3 metadata; older frames are never skipped). Sound: a frame is
/// skipped only if no record in it can pass the reader's own per-record
/// checks, which the reader still applies.
public struct FrameSkip: Sendable, Equatable {
    /// Only records of these tables.
    public var tables: Set<String>?
    /// Only records whose key or old key matches one of these (as
    /// ``ChangeRecord/matches(key:)`` and ``RecordFilter`` match).
    public var keys: [[Field]]?
    /// Only records with commit time in these bounds (inclusive).
    public var sinceMicros: Int64?
    public var untilMicros: Int64?
    /// No record after this LSN is wanted: the cursor ends at the first
    /// frame past it (unless following).
    public var throughLSN: LSN?
    /// Also read the frame right before or after each frame that may match
    /// when a delete and an insert at consecutive LSNs (an old log's key
    /// change) may straddle the edge between them (``FrameSummary/edges``).
    var withNeighbors = false

    /// With ``withNeighbors``: whether `a` and the frame `b` right after it
    /// may hold a delete (the last of `a`) and an insert (the first of `b`).
    static func mayPair(_ a: FrameMetadata, _ b: FrameMetadata) -> Bool {
        guard let x = a.summary, let y = b.summary else { return true }
        return x.endsWithDelete && y.startsWithInsert
    }

    public init(tables: Set<String>? = nil, keys: [[Field]]? = nil, sinceMicros: Int64? = nil, untilMicros: Int64? = nil, throughLSN: LSN? = nil) {
        self.tables = tables
        self.keys = keys
        self.sinceMicros = sinceMicros
        self.untilMicros = untilMicros
        self.throughLSN = throughLSN
    }

    /// The skip for a reader applying `window` and `filter` to each record.
    public init(window: LogWindow, filter: RecordFilter) {
        self.init(tables: filter.tables, keys: filter.key.map { [$0] }, sinceMicros: window.sinceMicros,
                  untilMicros: window.untilMicros, throughLSN: window.throughLSN)
    }

    /// Whether the frame `m` may hold a wanted record.
    func mayMatch(_ m: FrameMetadata) -> Bool {
        if let s = sinceMicros, m.lastTimestampMicros < s { return false }
        if let u = untilMicros, m.firstTimestampMicros > u { return false }
        guard let summary = m.summary, let frameTables = summary.tables else { return true }
        let candidates = tables.map { frameTables.filter($0.contains) } ?? frameTables
        if candidates.isEmpty { return false }
        guard let keys else { return true }
        return keys.contains { key in candidates.contains { summary.mayHold(table: $0, key: key) } }
    }
}
