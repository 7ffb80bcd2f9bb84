import Foundation
import Testing
@testable import TidemarkLog

/// Golden logs written once by format version 1 (fixtures/log/v1/<case>/).
/// Every later version must read them exactly. To regenerate (only when the
/// format version changes, into a new v<N> folder):
/// `TIDEMARK_REGENERATE_FIXTURES=1 swift test --filter GoldenSegmentTests`.
@Suite struct GoldenSegmentTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/log/v1").path

    /// The records of the `ok` case: every value kind and edge, three tables,
    /// all operations, spread over several segments.
    static func records() -> [ChangeRecord] {
        var out: [ChangeRecord] = []
        var lsn: UInt64 = 0
        func add(_ r: ChangeRecord) {
            lsn += 1
            var r = r
            r.lsn = LSN(lsn * 3)  // gaps, as a source's sequence may have
            r.timestampMicros = 1_795_000_000_000_000 + Int64(lsn) * 1_234
            out.append(r)
        }
        for (i, v) in LogRoundTripTests.edgeValues.enumerated() where i < 16 {
            add(ChangeRecord(lsn: .zero, timestampMicros: 0, table: "edge", operation: .insert,
                             key: [Field("k", .integer(Int64(i)))], before: nil, after: [Field("k", .integer(Int64(i))), Field("v", v)]))
        }
        add(ChangeRecord(lsn: .zero, timestampMicros: 0, table: "edge", operation: .insert,
                         key: [Field("k", .integer(99))], before: nil, after: [Field("k", .integer(99)), Field("v", .real(-.infinity))]))
        for i in 0..<300 { add(sampleRecord(i, table: i % 3 == 0 ? "orders" : "users")) }
        add(ChangeRecord(lsn: .zero, timestampMicros: 0, table: "order_lines", operation: .delete,
                         key: [Field("order_id", .integer(7)), Field("line", .text("b"))],
                         before: [Field("order_id", .integer(7)), Field("line", .text("b")), Field("qty", .real(0.1))], after: nil))
        return out
    }

    static let options = LogOptions(durability: .none, segmentSizeLimitBytes: 8 << 10, frameSizeLimitBytes: 2 << 10)

    @Test func regenerateIfAsked() throws {
        guard ProcessInfo.processInfo.environment["TIDEMARK_REGENERATE_FIXTURES"] == "1" else { return }
        let fm = FileManager.default
        try? fm.removeItem(atPath: Self.root)
        try fm.createDirectory(atPath: Self.root, withIntermediateDirectories: true)
        // ok: a clean multi-segment log.
        let ok = Self.root + "/ok"
        let log = try LogAppender(directory: ok, sourceID: SourceID("golden-source"), options: Self.options)
        let records = Self.records()
        for chunk in stride(from: 0, to: records.count, by: 25) {
            try log.append(Array(records[chunk..<min(records.count, chunk + 25)]))
        }
        try log.close()
        try? fm.removeItem(atPath: ok + "/LOCK")
        try records.map(\.jsonLine).joined(separator: "\n").appending("\n")
            .write(toFile: ok + "/expected.jsonl", atomically: true, encoding: .utf8)
        let segs = try LogDirectory(ok).segments()
        // torn-tail: the last segment cut in the middle of its last frame.
        let torn = Self.root + "/torn-tail"
        try fm.copyItem(atPath: ok, toPath: torn)
        let last = torn + "/" + segs.last!.name
        var data = try Data(contentsOf: URL(fileURLWithPath: last))
        data = data.prefix(data.count - 40)
        try data.write(to: URL(fileURLWithPath: last))
        // checksum-mismatch: one byte of a data frame in the first segment flipped.
        let bad = Self.root + "/checksum-mismatch"
        try fm.copyItem(atPath: ok, toPath: bad)
        let first = bad + "/" + segs[0].name
        var d = try Data(contentsOf: URL(fileURLWithPath: first))
        d[SegmentHeader.encodedSize + FrameMetadata.encodedSize + 20] ^= 0x01
        try d.write(to: URL(fileURLWithPath: first))
        // missing-segment: the second segment removed.
        let missing = Self.root + "/missing-segment"
        try fm.copyItem(atPath: ok, toPath: missing)
        try fm.removeItem(atPath: missing + "/" + segs[1].name)
        for name in ["torn-tail", "checksum-mismatch", "missing-segment"] {
            try fm.removeItem(atPath: Self.root + "/\(name)/expected.jsonl")
        }
    }

    func expectedLines(_ name: String) throws -> [String] {
        try String(contentsOfFile: Self.root + "/\(name)/expected.jsonl", encoding: .utf8)
            .split(separator: "\n").map(String.init)
    }

    @Test func okReadsExactly() throws {
        let dir = Self.root + "/ok"
        let back = try readAll(dir)
        #expect(back.map(\.jsonLine) == (try expectedLines("ok")))
        #expect(back == Self.records())
        #expect(try LogDirectory(dir).segments().count >= 3)
        let v = try LogVerifier.verify(LogDirectory(dir))
        #expect(v.isClean)
        #expect(v.records == Self.records().count)
        // Seeking into the middle works on the golden files too.
        let mid = Self.records()[150].lsn
        #expect(try readAll(dir, from: mid).first?.lsn == mid)
    }

    @Test func tornTailIsReportedAndCutByTheNextAppender() throws {
        let dir = Self.root + "/torn-tail"
        let v = try LogVerifier.verify(LogDirectory(dir))
        #expect(v.problems.map(\.code) == [.tornTail])
        let readable = try readAll(dir)
        let expected = Self.records()
        #expect(readable.count < expected.count)
        #expect(readable == Array(expected.prefix(readable.count)))
        try withTemporaryDirectory { tmp in
            let copy = tmp + "/log"
            try FileManager.default.copyItem(atPath: dir, toPath: copy)
            let log = try LogAppender(directory: copy, options: LogOptions(durability: .none))
            #expect(log.recovery != nil)
            #expect(log.lastLSN == readable.last?.lsn)
            try log.close()
            #expect(try LogVerifier.verify(LogDirectory(copy)).isClean)
        }
    }

    @Test func checksumMismatchNamesTheFrame() throws {
        let dir = Self.root + "/checksum-mismatch"
        let v = try LogVerifier.verify(LogDirectory(dir))
        let first = try LogDirectory(dir).segments()[0]
        #expect(v.problems.first?.code == .corruptFrame)
        #expect(v.problems.first?.segment == first.name)
        #expect(v.problems.first?.lsnRange?.lowerBound == Self.records()[0].lsn)
        #expect(throws: LogError.self) { try readAll(dir) }
    }

    @Test func missingSegmentIsDetected() throws {
        let v = try LogVerifier.verify(LogDirectory(Self.root + "/missing-segment"))
        #expect(v.problems.contains { $0.message.contains("does not follow") })
    }
}
