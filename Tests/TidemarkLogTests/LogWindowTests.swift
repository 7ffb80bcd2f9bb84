import TidemarkTestSupport
import Testing
@testable import TidemarkLog

/// `--since`/`--until` points and windows, resolved from frame metadata.
@Suite struct LogWindowTests {
    static let base: Int64 = 1_764_000_000_000_000  // µs, 2025-11-24

    /// Three frames of ten records: LSN 1…30, one second apart, frame by frame;
    /// the third frame's clock stepped back an hour.
    static func writeLog(_ dir: String) throws {
        let log = try LogAppender(directory: dir, sourceID: SourceID("windowtest"))
        var lsn: UInt64 = 0
        for frame in 0..<3 {
            var batch: [ChangeRecord] = []
            for i in 0..<10 {
                lsn += 1
                let t = frame == 2 ? base - 3_600_000_000 + Int64(i) * 1_000_000 : base + Int64(frame * 10 + i) * 1_000_000
                batch.append(ChangeRecord(lsn: LSN(lsn), timestampMicros: t, table: i % 2 == 0 ? "a" : "b", operation: i % 3 == 0 ? .insert : .update,
                                          key: [Field("id", .integer(Int64(i)))], before: i % 3 == 0 ? nil : [Field("id", .integer(Int64(i))), Field("v", .text("old\(i)"))],
                                          after: [Field("id", .integer(Int64(i))), Field("v", .text("new\(i)"))]))
            }
            _ = try log.append(batch)
            try log.sync()
        }
        try log.close()
    }

    @Test func pointsParseAsLSNTimeOrRelative() throws {
        let now = Self.base
        #expect(try LogPoint.parse("42", nowMicros: now) == .lsn(LSN(42)))
        #expect(try LogPoint.parse("-15m", nowMicros: now) == .time(Timestamp(microsSinceEpoch: now - 15 * 60_000_000)))
        #expect(try LogPoint.parse("-2h", nowMicros: now) == .time(Timestamp(microsSinceEpoch: now - 7_200_000_000)))
        #expect(try LogPoint.parse("-1d", nowMicros: now) == .time(Timestamp(microsSinceEpoch: now - 86_400_000_000)))
        #expect(try LogPoint.parse("2026-11-25T09:00:00Z", nowMicros: now) == .time(try Timestamp(parsing: "2026-11-25T09:00:00Z")))
        for bad in ["", "yesterday", "-15x", "12:00", "-m", "2026-13-40T00:00:00Z"] {
            let e = try #require(throws: LogError.self, "\(bad)") { _ = try LogPoint.parse(bad, nowMicros: now) }
            #expect(e.code == .badInput)
            #expect(!e.message.contains("\n"))
        }
    }

    @Test func windowsResolveFromFrameMetadataAndFilterRecords() throws {
        try withTemporaryDirectory { dir in
            try Self.writeLog(dir + "/log")
            let reader = try LogReader(directory: dir + "/log")
            func records(_ since: LogPoint?, _ until: LogPoint?, _ filter: RecordFilter = RecordFilter()) throws -> [UInt64] {
                let w = try reader.window(since: since, until: until)
                let c = try reader.cursor(from: w.fromLSN)
                var out: [UInt64] = []
                while let r = try c.next(), !w.isPast(r) { if w.contains(r) && filter.matches(r) { out.append(r.lsn.rawValue) } }
                return out
            }
            #expect(try records(.lsn(LSN(5)), .lsn(LSN(7))) == [5, 6, 7])
            // Times: seconds 3…12 of the first two frames (both bounds inclusive).
            let t3 = Timestamp(microsSinceEpoch: Self.base + 3_000_000), t12 = Timestamp(microsSinceEpoch: Self.base + 12_000_000)
            #expect(try records(.time(t3), .time(t12)) == Array(4...13))
            // The stepped-back third frame is found by its own times, not by order.
            let early = Timestamp(microsSinceEpoch: Self.base - 3_600_000_000 + 2_000_000)
            let w = try reader.window(since: .time(early), until: .time(Timestamp(microsSinceEpoch: Self.base - 3_000_000_000)))
            #expect(w.fromLSN == LSN(1))
            #expect(try records(.time(early), .time(Timestamp(microsSinceEpoch: Self.base - 3_000_000_000))) == Array(23...30))
            // Filters: table, op, key (also the before image's key), where on either image.
            #expect(try records(nil, nil, RecordFilter(tables: ["a"], operations: [.insert])).allSatisfy { [1, 7, 11, 17, 21, 27].contains($0) })
            #expect(try records(nil, .lsn(LSN(10)), RecordFilter(key: [Field("id", .text("4"))])) == [5])
            #expect(try records(nil, .lsn(LSN(10)), RecordFilter(conditions: [try RecordFilter.condition("v=old2")])) == [3])
            #expect(try records(nil, .lsn(LSN(10)), RecordFilter(conditions: [try RecordFilter.condition("v=new2")])) == [3])
            // since after until is refused.
            let e = try #require(throws: LogError.self) { _ = try reader.window(since: .lsn(LSN(9)), until: .lsn(LSN(3))) }
            #expect(e.code == .badInput)
            let e2 = try #require(throws: LogError.self) { _ = try reader.window(since: .time(t12), until: .time(t3)) }
            #expect(e2.code == .badInput)
        }
    }
}
