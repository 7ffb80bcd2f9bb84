import Foundation
import Testing
import TidemarkTestSupport
@testable import TidemarkLog

/// Format 3 frame skipping (table sets and key Bloom filters in the frame
/// metadata) is sound: every reader returns exactly what a full scan of the
/// same log returns, on random logs with many tables, composite keys, key
/// changes (format 2 updates and old delete+insert pairs), deletes and
/// reinserts, clocks that step back, and many small frames and segments.
@Suite struct FrameSkipTests {
    typealias Rng = SplitMix64

    static let tables = ["t_int", "t_text", "t_real", "t_pair", "orders", "lines"]

    /// A key of `table` from a small number `n` (so keys recur).
    static func key(_ table: String, _ n: Int) -> [Field] {
        switch table {
        case "t_text": return [Field("code", .text("k\(n)"))]
        case "t_real": return [Field("x", .real(Double(n) / 2))]
        case "lines": return [Field("order_id", .integer(Int64(n / 3))), Field("line", .text("L\(n % 3)"))]
        case "orders": return [Field("id", .text(String(n)))]  // text that spells a number
        default: return [Field("id", .integer(Int64(n)))]
        }
    }

    static func image(_ key: [Field], _ v: Int) -> [Field] { key + [Field("v", .integer(Int64(v)))] }

    /// Random records with LSNs 1... and mostly rising times (some steps back).
    static func randomLog(_ rng: inout Rng, count: Int) -> [ChangeRecord] {
        var live: [String: Set<Int>] = [:]
        var out: [ChangeRecord] = []
        var time: Int64 = 1_800_000_000_000_000
        func add(_ table: String, _ op: ChangeOperation, _ key: [Field], _ before: [Field]?, _ after: [Field]?, sameTime: Bool = false) {
            if !sameTime { time += Int64.random(in: -3...40, using: &rng) }
            out.append(ChangeRecord(lsn: LSN(UInt64(out.count + 1)), timestampMicros: time, table: table, operation: op,
                                    key: key, before: before, after: after))
        }
        while out.count < count {
            let table = tables.randomElement(using: &rng)!
            let n = Int.random(in: 0..<40, using: &rng)
            let v = Int.random(in: 0..<1000, using: &rng)
            let k = key(table, n)
            let exists = live[table, default: []].contains(n)
            if !exists {
                add(table, .insert, k, nil, image(k, v))  // insert, or reinsert of a deleted key
                live[table, default: []].insert(n)
                continue
            }
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:
                add(table, .update, k, image(k, v - 1), image(k, v))
            case 4..<6:
                let m = Int.random(in: 0..<40, using: &rng)
                guard !live[table, default: []].contains(m) else { continue }
                let k2 = key(table, m)
                if table == "t_pair" {
                    // An old log's key change: delete and insert at
                    // consecutive LSNs with one commit time.
                    add(table, .delete, k, image(k, v), nil)
                    add(table, .insert, k2, nil, image(k2, v), sameTime: true)
                } else {
                    add(table, .update, k2, image(k, v), image(k2, v))
                }
                live[table]!.remove(n)
                live[table]!.insert(m)
            default:
                add(table, .delete, k, image(k, v), nil)
                live[table]!.remove(n)
            }
        }
        return out
    }

    /// Writes `records` in random batches, with small frames and segments.
    static func write(_ dir: String, _ records: [ChangeRecord], _ rng: inout Rng) throws {
        let options = LogOptions(durability: .none, segmentSizeLimitBytes: Int.random(in: 4...16, using: &rng) << 10,
                                 frameSizeLimitBytes: Int.random(in: 200...3000, using: &rng))
        let log = try LogAppender(directory: dir, sourceID: SourceID("skip-test"), options: options)
        var i = 0
        while i < records.count {
            let n = min(records.count - i, Int.random(in: 1...60, using: &rng))
            try log.append(Array(records[i..<(i + n)]))
            i += n
        }
        try log.close()
    }

    /// The ways a user can spell a key of `table` on the command line.
    static func keySpellings(_ table: String, _ k: [Field]) -> [[Field]] {
        var out = [k]
        if k.count == 1 {
            let literal: String
            switch k[0].value {
            case .integer(let i): literal = String(i)
            case .real(let d): literal = d.description
            case .text(let t): literal = t
            default: literal = "?"
            }
            out.append([Field("", .text(literal))])
            out.append([Field(k[0].name, .text(literal))])
            if case .real(let d) = k[0].value, d == d.rounded() { out.append([Field("", .text(String(Int64(d))))]) }
        } else {
            out.append(k.reversed())
            out.append([k[0]])  // a partial key: tail --key matches it on each record
        }
        return out
    }

    static func scan(_ reader: LogReader, window: LogWindow, filter: RecordFilter, skipping: Bool) throws -> (records: [ChangeRecord], skipped: Int) {
        let cursor = try reader.cursor(from: window.fromLSN, tables: filter.tables)
        if skipping { cursor.skip = FrameSkip(window: window, filter: filter) }
        var out: [ChangeRecord] = []
        while let r = try cursor.next() {
            if window.isPast(r) { break }
            if window.contains(r) && filter.matches(r) { out.append(r) }
        }
        return (out, cursor.framesSkipped)
    }

    func check(seed: UInt64, records count: Int, queries: Int) throws -> Int {
        var rng = Rng(seed: seed)
        var skippedFrames = 0
        try withTemporaryDirectory { dir in
            let records = Self.randomLog(&rng, count: count)
            try Self.write(dir + "/log", records, &rng)
            let reader = try LogReader(directory: dir + "/log")
            #expect(try LogVerifier.verify(reader.directory).isClean, "seed \(seed)")
            let times = records.map(\.timestampMicros)
            for q in 0..<queries {
                let table = Self.tables.randomElement(using: &rng)!
                let k = Self.key(table, Int.random(in: 0..<40, using: &rng))
                let spelled = Self.keySpellings(table, k).randomElement(using: &rng)!
                let context = "seed \(seed), query \(q): table \(table), key \(spelled)"

                // tail / stats: window and filters.
                var since: LogPoint? = nil, until: LogPoint? = nil
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: break
                case 1:
                    let a = UInt64.random(in: 1...UInt64(count), using: &rng)
                    since = .lsn(LSN(a)); until = .lsn(LSN(min(UInt64(count), a + UInt64.random(in: 0...300, using: &rng))))
                default:
                    let a = times.randomElement(using: &rng)!
                    since = .time(Timestamp(microsSinceEpoch: a)); until = .time(Timestamp(microsSinceEpoch: a + Int64.random(in: 0...2000, using: &rng)))
                }
                let w = try reader.window(since: since, until: until)
                let tablesFilter: Set<String>? = Bool.random(using: &rng) ? [table] : (Bool.random(using: &rng) ? nil : [table, Self.tables.randomElement(using: &rng)!])
                let filter = RecordFilter(tables: tablesFilter, key: Bool.random(using: &rng) ? spelled : nil,
                                          operations: Bool.random(using: &rng) ? nil : [ChangeOperation.allCases.randomElement(using: &rng)!])
                let full = try Self.scan(reader, window: w, filter: filter, skipping: false)
                let fast = try Self.scan(reader, window: w, filter: filter, skipping: true)
                #expect(fast.records == full.records, "tail: \(context), window \(w)")
                skippedFrames += fast.skipped

                // history (and blame, which is built on it).
                let shapeOK = (try? RowHistory.checkShape(spelled, columns: k.map(\.name), table: table)) != nil
                if shapeOK {
                    let slow = try RowHistory.read(reader: reader, table: table, key: spelled, frameSkipping: false)
                    let quick = try RowHistory.read(reader: reader, table: table, key: spelled)
                    #expect(quick.records == slow.records, "history: \(context)")
                    #expect(quick.keyChanges == slow.keyChanges, "history key changes: \(context)")
                    #expect(RowBlame(history: quick.records)?.columns == RowBlame(history: slow.records)?.columns, "blame: \(context)")
                }

                // diff.
                let a = LSN(UInt64.random(in: 1...UInt64(count), using: &rng))
                let b = LSN(min(UInt64(count), a.rawValue + UInt64.random(in: 0...500, using: &rng)))
                let diffTable: String? = Bool.random(using: &rng) ? table : nil
                #expect(try LogDiff.read(reader: reader, range: a...b, table: diffTable)
                        == LogDiff.read(reader: reader, range: a...b, table: diffTable, frameSkipping: false), "diff: \(context) \(a)...\(b)")

                // as-of time resolution: the last record at or before T.
                let t = times.randomElement(using: &rng)! + Int64.random(in: -5...5, using: &rng)
                let lo = LSN(UInt64.random(in: 1...UInt64(count), using: &rng))
                let hi = LSN(UInt64.random(in: lo.rawValue...UInt64(count), using: &rng))
                let expected = records.last { $0.lsn >= lo && $0.lsn <= hi && $0.timestampMicros <= t }
                #expect(try reader.lastRecord(atOrBefore: t, in: lo...hi) == expected, "as-of: \(context) t \(t) in \(lo)...\(hi)")
            }
        }
        return skippedFrames
    }

    @Test func skippingReadersMatchAFullScanOnRandomLogs() throws {
        let base = ProcessInfo.processInfo.environment["TIDEMARK_SKIP_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        let runs = Int(ProcessInfo.processInfo.environment["TIDEMARK_SKIP_RUNS"] ?? "") ?? 2
        var skipped = 0
        for i in 0..<UInt64(runs) {
            skipped += try check(seed: base &+ i, records: 1200, queries: 20)
        }
        // The filters do rule frames out (else the test proves nothing).
        #expect(skipped > 0, "seed \(base): no frame was ever skipped")
    }

    @Test func keySpellingsAllFindTheRecord() throws {
        // Canonical hashing: every spelling `--key` accepts finds the frame.
        let records: [ChangeRecord] = [
            ChangeRecord(lsn: LSN(1), timestampMicros: 1, table: "n", operation: .insert, key: [Field("id", .integer(42))], before: nil, after: [Field("id", .integer(42))]),
            ChangeRecord(lsn: LSN(2), timestampMicros: 2, table: "r", operation: .insert, key: [Field("x", .real(42))], before: nil, after: [Field("x", .real(42))]),
            ChangeRecord(lsn: LSN(3), timestampMicros: 3, table: "z", operation: .insert, key: [Field("x", .real(.nan))], before: nil, after: [Field("x", .real(.nan))]),
            ChangeRecord(lsn: LSN(4), timestampMicros: 4, table: "c", operation: .update, key: [Field("a", .text("p")), Field("b", .integer(2))],
                         before: [Field("a", .text("q")), Field("b", .integer(1))], after: [Field("a", .text("p")), Field("b", .integer(2))]),
        ]
        let s = FrameSummary.of(records)
        #expect(s.tables == ["c", "n", "r", "z"])
        for wanted in [[Field("", .text("42"))], [Field("id", .text("42"))], [Field("id", .integer(42))]] {
            #expect(s.mayHold(table: "n", key: wanted))
        }
        for wanted in [[Field("", .text("42"))], [Field("", .text("42.0"))], [Field("x", .real(42))], [Field("", .text("4.2e1"))]] {
            #expect(s.mayHold(table: "r", key: wanted))
        }
        #expect(s.mayHold(table: "z", key: [Field("", .text("nan"))]))
        // Both the new and the old key of a key change.
        #expect(s.mayHold(table: "c", key: [Field("a", .text("p")), Field("b", .integer(2))]))
        #expect(s.mayHold(table: "c", key: [Field("b", .text("1")), Field("a", .text("q"))]))
        // And the metadata round-trips, CRC and chain covering it.
        var m = FrameMetadata(firstLSN: LSN(1), lastLSN: LSN(4), firstTimestampMicros: 1, lastTimestampMicros: 4, recordCount: 4,
                              contentSize: 10, dataSize: 10, dataChecksum: 0, previousChain: 7, syncedLength: 0, summary: s)
        var bytes: [UInt8] = []
        m.encode(into: &bytes)
        #expect(bytes.count == m.metadataSize)
        guard case .ok(let back) = bytes.withUnsafeBytes({ FrameMetadata.parse($0, version: 3) }) else {
            Issue.record("format 3 metadata does not parse"); return
        }
        #expect(back == m)
        for i in stride(from: 0, to: bytes.count, by: 1) {
            var flipped = bytes
            flipped[i] ^= 0x04
            if case .ok = flipped.withUnsafeBytes({ FrameMetadata.parse($0, version: 3) }) { Issue.record("flip at \(i) not detected") }
        }
        // A format 3 frame is not accepted in a format 2 segment, nor the reverse.
        if case .ok = bytes.withUnsafeBytes({ FrameMetadata.parse($0, version: 2) }) { Issue.record("v3 metadata accepted as v2") }
    }
}
