import Testing
import TidemarkTestSupport
@testable import TidemarkLog

/// The faster read and write paths give the same bytes and the same answers
/// as the plain definitions they replace.
@Suite struct ReadPathTests {
    /// Values of every storage class, with edge cases (NaN, -0.0, empty,
    /// non-ASCII text in two canonically equivalent spellings, blobs).
    static func value(_ rng: inout SplitMix64) -> Value {
        switch Int.random(in: 0..<9, using: &rng) {
        case 0: return .null
        case 1: return .integer(Int64.random(in: -50...50, using: &rng))
        case 2: return .integer([Int64.min, Int64.max, 0, -1][Int.random(in: 0..<4, using: &rng)])
        case 3: return .real([0.0, -0.0, .nan, .infinity, 1.5, 42.0, -1e300][Int.random(in: 0..<7, using: &rng)])
        case 4: return .text(["", "a", "caf\u{E9}", "cafe\u{301}", "42", "line\nbreak", "q\"uote", "K", "\u{212A}", "3"][Int.random(in: 0..<10, using: &rng)])
        case 5: return .blob([UInt8](repeating: UInt8.random(in: 0...255, using: &rng), count: Int.random(in: 0..<5, using: &rng)))
        default: return .integer(Int64.random(in: 0..<8, using: &rng))
        }
    }

    static func record(_ rng: inout SplitMix64, lsn: UInt64) -> ChangeRecord {
        let table = ["a", "bb", "t\u{E9}", "orders"][Int.random(in: 0..<4, using: &rng)]
        let composite = Bool.random(using: &rng)
        let key = composite ? [Field("k1", value(&rng)), Field("k2", value(&rng))] : [Field("id", value(&rng))]
        func image(_ key: [Field]) -> [Field] {
            var f = key
            for i in 0..<Int.random(in: 0..<4, using: &rng) { f.append(Field("c\(i)", value(&rng))) }
            if Int.random(in: 0..<8, using: &rng) == 0 { f.removeFirst() }  // a key column missing from an image
            return f
        }
        let op = ChangeOperation(rawValue: UInt8.random(in: 1...3, using: &rng))!
        var oldKey = key
        if Bool.random(using: &rng) { oldKey = oldKey.map { Field($0.name, value(&rng)) } }
        return ChangeRecord(lsn: LSN(lsn), timestampMicros: Int64.random(in: -5...1_000_000, using: &rng), table: table, operation: op,
                            key: key, before: op == .insert ? nil : image(oldKey), after: op == .delete ? nil : image(key))
    }

    @Test func frameSummaryMatchesItsDefinition() {
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix64(seed: seed)
        for round in 0..<300 {
            let records = (0..<Int.random(in: 1..<60, using: &rng)).map { Self.record(&rng, lsn: UInt64($0 + 1)) }
            let fast = FrameSummary.of(records)
            let plain = FrameSummary.reference(records)
            #expect(fast == plain, "seed \(seed), round \(round): summaries differ")
            if fast != plain { return }
        }
    }

    /// Random records (``record(_:lsn:)``) plus every edge value, appended
    /// to a log in `dir` in small frames.
    static func writeLog(_ dir: String, seed: UInt64, count: Int) throws -> [ChangeRecord] {
        var rng = SplitMix64(seed: seed)
        var records = (0..<count).map { record(&rng, lsn: UInt64($0 + 1)) }
        for (i, v) in LogRoundTripTests.edgeValues.enumerated() where i % 2 == 0 || !(v.isLarge) {
            let lsn = UInt64(records.count + 1)
            records.append(ChangeRecord(lsn: LSN(lsn), timestampMicros: Int64(i) - 5, table: "edge", operation: .update,
                                        key: [Field("k", v)], before: [Field("v", v), Field("", .null)], after: [Field("v", v)]))
        }
        let log = try LogAppender(directory: dir, options: LogOptions(durability: .none, frameSizeLimitBytes: 4 << 10))
        try log.append(records)
        try log.close()
        return records
    }

    @Test func jsonWrittenFromViewsIsTheRecordsJSON() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        try withTemporaryDirectory { dir in
            let records = try Self.writeLog(dir, seed: seed, count: 600)
            let views = try LogReader(directory: dir).cursor()
            var n = 0
            var a: [UInt8] = [], b: [UInt8] = []
            // A small buffer, so it grows while records are written.
            let lines = JSONLineBuffer(capacity: 16)
            var expectedLines: [UInt8] = []
            while let v = try views.nextView() {
                a.removeAll(keepingCapacity: true)
                b.removeAll(keepingCapacity: true)
                v.appendJSON(to: &a)
                records[n].appendJSON(to: &b)
                lines.append(v)
                expectedLines += b + [0x0A]
                #expect(a == b, "seed \(seed): LSN \(v.lsn): \(String(decoding: a.prefix(300), as: UTF8.self)) vs \(String(decoding: b.prefix(300), as: UTF8.self))")
                if a != b { return }
                n += 1
            }
            #expect(n == records.count)
            #expect(Array(lines.bytes) == expectedLines, "seed \(seed): JSON lines from the line buffer differ")
            lines.removeAll()
            #expect(lines.count == 0)
        }
    }

    /// `log history`'s cheap key test never says no to a record whose key
    /// matches (`ChangeRecord.matches(key:)`), and does say no to others.
    @Test func keyProbeNeverMissesAMatch() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix64(seed: seed &+ 1)
        try withTemporaryDirectory { dir in
            _ = try Self.writeLog(dir, seed: seed, count: 400)
            var wanted: [[Field]] = [
                [Field("", .text("42"))], [Field("", .text("1.5"))], [Field("", .text("-0.0"))], [Field("", .text("caf\u{E9}"))],
                [Field("", .text("cafe\u{301}"))], [Field("", .text("3"))], [Field("id", .text("3"))], [Field("k1", .text("a"))],
                [Field("k2", .integer(3)), Field("k1", .text("42"))], [Field("k\u{E9}", .integer(1))], [Field("", .text("\u{212A}"))], [Field("", .text("K"))],
            ]
            for _ in 0..<40 {
                wanted.append(Bool.random(using: &rng) ? [Field("", Self.value(&rng))]
                                                       : [Field("k1", Self.value(&rng)), Field("k2", Self.value(&rng))])
            }
            var ruledOut = 0
            for w in wanted {
                let probe = KeyProbe(w)
                let cursor = try LogReader(directory: dir).cursor()
                while let v = try cursor.nextView() {
                    let r = v.record()
                    let may = probe.mayMatch(v.key)
                    if r.matches(key: w) {
                        #expect(may, "seed \(seed): key \(w) matches LSN \(r.lsn) but the probe ruled it out")
                    } else if !may {
                        ruledOut += 1
                    }
                }
            }
            #expect(ruledOut > 0, "seed \(seed): the probe never ruled anything out")
        }
    }
}

private extension Value {
    /// The multi-megabyte edge values (kept out of most logs here).
    var isLarge: Bool {
        switch self {
        case .text(let s): s.utf8.count > 10_000
        case .blob(let b): b.count > 10_000
        default: false
        }
    }
}
