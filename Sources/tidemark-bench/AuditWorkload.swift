import TidemarkTestSupport
import TidemarkLog

/// The audit benchmark's change log: the shop of ``ShopWorkload`` (customers,
/// products, orders, order items) plus the other tables a real shop writes
/// (payments, shipments, carts, sessions, reviews, …), so frames hold many
/// tables and keys, and the records spread over hours of commit time.
///
/// While it generates, it remembers the facts the benchmark checks the
/// readers against: every record of one chosen key, and every record whose
/// commit time falls in the chosen window.
struct AuditWorkload {
    static let extraTables = [
        "payments", "shipments", "refunds", "carts", "cart_items", "sessions", "reviews", "wishlists",
        "inventory_moves", "price_changes", "coupons", "addresses", "invoices", "support_tickets",
        "newsletter_signups", "login_events",
    ]

    private var shop: ShopWorkload
    private var random: SplitMix64
    private var nextID: [Int64]
    private var clockMicros: Int64 = 0
    private var shopStart: Int64?
    private(set) var generated = 0

    /// The key whose history is asked for: of the first 1,000 `orders`
    /// inserted at or after record `historyFrom` (whose grep pattern has no
    /// newline byte), the one with the most records by the end of the log.
    let historyFrom: Int
    private var candidates: [Int64: Int] = [:]
    private static let candidateCount = 1_000

    /// The chosen key and its number of records (a delete and a reinsert
    /// of it count too: the log has no key changes of orders).
    var history: (key: Int64, records: Int)? {
        candidates.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }.map { ($0.key, $0.value) }
    }

    /// The window: from the first whole minute at or after the commit time
    /// of record `windowFrom`, `windowMicros` long (both ends inclusive).
    let windowFrom: Int
    let windowMicros: Int64
    private(set) var windowStart: Int64?
    private(set) var windowRecords = 0

    private(set) var firstMicros: Int64?
    private(set) var tablesSeen: Set<String> = []

    init(seed: UInt64, historyFrom: Int, windowFrom: Int, windowMicros: Int64) {
        shop = ShopWorkload(seed: seed)
        random = SplitMix64(seed: seed ^ 0xA0D1_7B3E_5C4F_0001)
        nextID = Array(repeating: 10_000, count: Self.extraTables.count)
        self.historyFrom = historyFrom
        self.windowFrom = windowFrom
        self.windowMicros = windowMicros
    }

    var windowEnd: Int64? { windowStart.map { $0 + windowMicros - 1 } }

    mutating func next(_ count: Int) -> [ChangeRecord] {
        var out: [ChangeRecord] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(next()) }
        return out
    }

    /// The shop's clock advances ~1 ms a record; commit times are spread
    /// this many times wider, so 10M records span ~7 hours (~400 a second)
    /// and a 5-minute window is a small slice of the log.
    static let timeScale: Int64 = 4

    mutating func next() -> ChangeRecord {
        // About a third of the traffic is the other tables, committed at the
        // shop's current time.
        var r: ChangeRecord
        if generated > 0 && random.below(100) < 35 {
            r = extraRecord()
        } else {
            r = shop.next()
            if shopStart == nil { shopStart = r.timestampMicros }
            clockMicros = shopStart! + (r.timestampMicros - shopStart!) * Self.timeScale
            r.timestampMicros = clockMicros
        }
        note(r)
        generated += 1
        return r
    }

    private mutating func note(_ r: ChangeRecord) {
        if firstMicros == nil { firstMicros = r.timestampMicros }
        if tablesSeen.count < Self.extraTables.count + 4 { tablesSeen.insert(r.table) }
        if r.table == "orders", r.key.count == 1, case .integer(let id) = r.key[0].value {
            if let n = candidates[id] {
                candidates[id] = n + 1
            } else if generated >= historyFrom, r.operation == .insert, candidates.count < Self.candidateCount,
                      !Self.keyPattern(id).contains(0x0A) {
                candidates[id] = 1
            }
        }
        if windowStart == nil, generated >= windowFrom {
            let minute: Int64 = 60_000_000
            windowStart = (r.timestampMicros + minute - 1) / minute * minute
        }
        if let s = windowStart, r.timestampMicros >= s, r.timestampMicros <= s + windowMicros - 1 {
            windowRecords += 1
        }
    }

    private mutating func extraRecord() -> ChangeRecord {
        let t = random.below(Self.extraTables.count)
        let table = Self.extraTables[t]
        func row(_ id: Int64, status: String) -> [Field] {
            [
                Field("id", .integer(id)),
                Field("ref_id", .integer(Int64(random.below(2_000_000) + 1))),
                Field("status", .text(status)),
                Field("amount", .real(Double(random.below(100_000)) / 100)),
                Field("at", .integer(clockMicros)),
                Field("detail", random.chance(30) ? .null : .text("\(table) \(random.pick(["web", "app", "pos", "api"])) #\(random.below(1_000_000))")),
            ]
        }
        let statuses = ["new", "open", "done", "failed", "closed"]
        if random.chance(60) || nextID[t] <= 10_001 {
            nextID[t] += 1
            let id = nextID[t]
            return ChangeRecord(lsn: .zero, timestampMicros: clockMicros, table: table, operation: .insert,
                                key: [Field("id", .integer(id))], before: nil, after: row(id, status: "new"))
        }
        let id = random.between(max(1, nextID[t] - 20_000), nextID[t])
        let before = row(id, status: random.pick(statuses))
        var after = before
        after[2] = Field("status", .text(random.pick(statuses)))
        after[4] = Field("at", .integer(clockMicros))
        return ChangeRecord(lsn: .zero, timestampMicros: clockMicros, table: table, operation: .update,
                            key: [Field("id", .integer(id))], before: before, after: after)
    }

    // MARK: What grep is given

    /// The bytes an `orders` record with key `id` has in the log's record
    /// encoding (see RecordEncoding.swift): the table name as a string, the
    /// key's field count 1, the field name `id`, the integer tag and the
    /// zigzag varint. Only records of that key contain them (an image's
    /// field count is never 1), so `grep -c -F` of them finds the key's
    /// records exactly, as long as no two share a line.
    static func keyPattern(_ id: Int64) -> [UInt8] {
        [6] + Array("orders".utf8) + [1, 2] + Array("id".utf8) + [1] + varint(zigzag(id))
    }

    /// Byte strings found in every record committed in `start...end`: the
    /// upper four bytes of the commit time's zigzag varint (bits 28–55;
    /// 2^28 µs of zigzag value is 134 s), which the encoding writes right
    /// after the LSN. It is a superset: records up to ~2 minutes either side
    /// match, and so do integer columns holding times in that range.
    static func windowPatterns(start: Int64, end: Int64) -> [[UInt8]] {
        var patterns: [[UInt8]] = []
        var t = start
        while true {
            let bytes = varint(zigzag(t))
            let suffix = bytes.count > 4 ? Array(bytes[4...]) : bytes
            if !patterns.contains(suffix) { patterns.append(suffix) }
            if t == end { break }
            t = min(end, t + (1 << 25))
        }
        return patterns
    }

    static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

    static func varint(_ v: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        var v = v
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }
}
