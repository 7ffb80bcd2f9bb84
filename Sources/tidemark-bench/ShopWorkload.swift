import TidemarkLog
import TidemarkTestSupport

/// A deterministic stream of change records of a small web shop: customers,
/// products, orders and order items being inserted, updated and deleted.
///
/// The same seed always yields the same records, so a benchmark regenerates
/// its workload batch by batch for every run instead of holding a million
/// records in memory. Rows have 7–9 columns: integer ids, emails and names,
/// prices as doubles, microsecond timestamps, status words, nullable columns
/// and now and then a small blob; updates carry full before and after images
/// the way capture triggers log them. Records encode to about 200 bytes.
struct ShopWorkload {
    private var random: SplitMix64
    private var clockMicros: Int64 = 1_793_491_200_000_000  // 2026-11-01T00:00:00Z
    private var lastCustomer: Int64 = 0
    private var lastProduct: Int64 = 0
    private var lastOrder: Int64 = 0
    private var lastItem: Int64 = 0

    init(seed: UInt64) {
        random = SplitMix64(seed: seed)
        // A shop that already exists: updates and deletes have rows to touch.
        lastCustomer = 20_000
        lastProduct = 2_000
        lastOrder = 50_000
        lastItem = 120_000
    }

    /// The next `count` records (LSN 0: the appender assigns LSNs).
    mutating func next(_ count: Int) -> [ChangeRecord] {
        var out: [ChangeRecord] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(next()) }
        return out
    }

    /// The operation mix, in percent: most traffic is orders moving through
    /// their states and items being added.
    mutating func next() -> ChangeRecord {
        clockMicros += Int64(random.below(2_000))
        let dice = random.below(100)
        switch dice {
        case 0..<5: return insertCustomer()
        case 5..<8: return updateCustomer()
        case 8..<10: return insertProduct()
        case 10..<18: return updateProduct()
        case 18..<38: return insertOrder()
        case 38..<60: return updateOrder()
        case 60..<62: return deleteOrder()
        case 62..<92: return insertItem()
        default: return deleteItem()
        }
    }

    // MARK: customers (8 columns)

    private mutating func customerRow(_ id: Int64, createdAt: Int64) -> [Field] {
        let first = random.pick(Words.firstNames), last = random.pick(Words.lastNames)
        return [
            Field("id", .integer(id)),
            Field("email", .text("\(first.lowercased()).\(last.lowercased())\(random.below(100))@\(random.pick(Words.mailDomains))")),
            Field("name", .text("\(first) \(last)")),
            Field("country", .text(random.pick(Words.countries))),
            Field("phone", random.chance(40) ? .null : .text("+\(random.below(90) + 10) \(random.below(900) + 100) \(random.below(9_000_000) + 1_000_000)")),
            Field("created_at", .integer(createdAt)),
            Field("status", .text(random.pick(["active", "active", "active", "pending", "blocked"]))),
            Field("credit_limit", .real(Double(random.below(500)) * 10)),
        ]
    }

    private mutating func insertCustomer() -> ChangeRecord {
        lastCustomer += 1
        return record("customers", .insert, id: lastCustomer, before: nil, after: customerRow(lastCustomer, createdAt: clockMicros))
    }

    private mutating func updateCustomer() -> ChangeRecord {
        let id = random.between(1, lastCustomer)
        let before = customerRow(id, createdAt: clockMicros - Int64(random.below(1 << 40)))
        var after = before
        after[6] = Field("status", .text(random.pick(["active", "blocked", "closed"])))
        if random.chance(50) { after[7] = Field("credit_limit", .real(Double(random.below(500)) * 10)) }
        return record("customers", .update, id: id, before: before, after: after)
    }

    // MARK: products (7 columns)

    private mutating func productRow(_ id: Int64) -> [Field] {
        [
            Field("id", .integer(id)),
            Field("sku", .text("SKU-\(random.pick(["A", "B", "C", "K", "X"]))\(random.below(90_000) + 10_000)")),
            Field("title", .text("\(random.pick(Words.adjectives)) \(random.pick(Words.products))")),
            Field("price", .real(Double(random.below(50_000) + 99) / 100)),
            Field("stock", .integer(Int64(random.below(1_000)))),
            Field("updated_at", .integer(clockMicros - Int64(random.below(1 << 36)))),
            Field("image_sha1", random.chance(30) ? .blob(random.bytes(20)) : .null),
        ]
    }

    private mutating func insertProduct() -> ChangeRecord {
        lastProduct += 1
        return record("products", .insert, id: lastProduct, before: nil, after: productRow(lastProduct))
    }

    private mutating func updateProduct() -> ChangeRecord {
        let id = random.between(1, lastProduct)
        let before = productRow(id)
        var after = before
        after[4] = Field("stock", .integer(Int64(random.below(1_000))))
        if random.chance(20) { after[3] = Field("price", .real(Double(random.below(50_000) + 99) / 100)) }
        after[5] = Field("updated_at", .integer(clockMicros))
        return record("products", .update, id: id, before: before, after: after)
    }

    // MARK: orders (9 columns)

    private mutating func orderRow(_ id: Int64, status: String, createdAt: Int64) -> [Field] {
        [
            Field("id", .integer(id)),
            Field("customer_id", .integer(random.between(1, lastCustomer))),
            Field("status", .text(status)),
            Field("total", .real(Double(random.below(80_000) + 500) / 100)),
            Field("currency", .text(random.pick(["EUR", "EUR", "USD", "GBP"]))),
            Field("created_at", .integer(createdAt)),
            Field("updated_at", .integer(clockMicros)),
            Field("coupon", random.chance(15) ? .text("SAVE\(random.below(50))") : .null),
            Field("note", random.chance(10) ? .text(random.pick(Words.notes)) : .null),
        ]
    }

    private mutating func insertOrder() -> ChangeRecord {
        lastOrder += 1
        return record("orders", .insert, id: lastOrder, before: nil,
                      after: orderRow(lastOrder, status: "pending", createdAt: clockMicros))
    }

    private mutating func updateOrder() -> ChangeRecord {
        let id = random.between(max(1, lastOrder - 5_000), lastOrder)
        let steps = ["pending", "paid", "packed", "shipped", "delivered"]
        let step = random.below(steps.count - 1)
        let before = orderRow(id, status: steps[step], createdAt: clockMicros - Int64(random.below(1 << 32)))
        var after = before
        after[2] = Field("status", .text(steps[step + 1]))
        after[6] = Field("updated_at", .integer(clockMicros))
        return record("orders", .update, id: id, before: before, after: after)
    }

    private mutating func deleteOrder() -> ChangeRecord {
        let id = random.between(1, lastOrder)
        let before = orderRow(id, status: "cancelled", createdAt: clockMicros - Int64(random.below(1 << 36)))
        return record("orders", .delete, id: id, before: before, after: nil)
    }

    // MARK: order_items (8 columns)

    private mutating func itemRow(_ id: Int64) -> [Field] {
        [
            Field("id", .integer(id)),
            Field("order_id", .integer(random.between(max(1, lastOrder - 100), lastOrder))),
            Field("product_id", .integer(random.between(1, lastProduct))),
            Field("sku", .text("SKU-\(random.pick(["A", "B", "C", "K", "X"]))\(random.below(90_000) + 10_000)")),
            Field("quantity", .integer(Int64(random.below(5) + 1))),
            Field("unit_price", .real(Double(random.below(50_000) + 99) / 100)),
            Field("discount", random.chance(20) ? .real(Double(random.below(30) + 1) / 100) : .null),
            Field("gift_message", random.chance(3) ? .text(random.pick(Words.notes)) : .null),
        ]
    }

    private mutating func insertItem() -> ChangeRecord {
        lastItem += 1
        return record("order_items", .insert, id: lastItem, before: nil, after: itemRow(lastItem))
    }

    private mutating func deleteItem() -> ChangeRecord {
        let id = random.between(1, lastItem)
        return record("order_items", .delete, id: id, before: itemRow(id), after: nil)
    }

    private func record(_ table: String, _ op: ChangeOperation, id: Int64, before: [Field]?, after: [Field]?) -> ChangeRecord {
        ChangeRecord(lsn: .zero, timestampMicros: clockMicros, table: table, operation: op,
                     key: [Field("id", .integer(id))], before: before, after: after)
    }
}

/// The workload's draws over the shared seeded generator.
extension SplitMix64 {
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// Uniform in lo...hi.
    mutating func between(_ lo: Int64, _ hi: Int64) -> Int64 { lo + Int64(next() % UInt64(hi - lo + 1)) }
    /// True with `percent`% probability.
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick(_ items: [String]) -> String { items[below(items.count)] }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// Vocabulary for plausible text columns.
private enum Words {
    static let firstNames = ["Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
                             "Kira", "Liam", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sami", "Tara",
                             "Ugo", "Vera", "Wim", "Xenia", "Yusuf", "Zoë"]
    static let lastNames = ["Adams", "Berger", "Costa", "Dubois", "Evans", "Fischer", "García", "Hansen", "Ivanova",
                            "Jensen", "Kowalski", "Lambert", "Müller", "Nakamura", "O'Brien", "Peeters", "Rossi",
                            "Schmidt", "Tanaka", "Urban", "Vogel", "Weber", "Yilmaz", "Zimmermann"]
    static let mailDomains = ["example.com", "mail.example.org", "shop-customers.example", "example.net", "post.example.de"]
    static let countries = ["DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES", "PL", "SE", "GB", "US"]
    static let adjectives = ["Classic", "Organic", "Compact", "Deluxe", "Vintage", "Wireless", "Handmade", "Recycled"]
    static let products = ["Coffee Mug", "Linen Shirt", "Desk Lamp", "Water Bottle", "Notebook", "Backpack",
                           "Headphones", "Tea Sampler", "Yoga Mat", "Wool Scarf", "Cutting Board", "Phone Case"]
    static let notes = ["Please leave the parcel at the back door.", "Gift — no invoice in the box, please.",
                        "Ring twice.", "Deliver after 5 pm.", "Happy birthday, Sam!", "Call before delivery."]
}
