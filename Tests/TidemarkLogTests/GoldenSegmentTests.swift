import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

/// Golden logs written once by each format version (fixtures/log/v<N>/<case>/):
/// v1 by format 1 (72-byte frame metadata, log.meta with source_id only),
/// v2 by format 2 (frame metadata with the synced length, log.meta with
/// writer and owner), v3 by format 3 (frame metadata with the frame's tables
/// and key filter). Every later version must read them all exactly. To
/// regenerate the current version's folder (only when the format version
/// changes; older folders are never rewritten):
/// `TIDEMARK_REGENERATE_FIXTURES=1 swift test --filter GoldenSegmentTests`.
@Suite struct GoldenSegmentTests {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/log").path
    /// The folder the current format writes.
    static let root = fixtures + "/v3"
    static let versions = ["v1", "v2", "v3"]

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
        try log.claim(.capture, installation: "golden-installation")
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
        d[TornBatchTests.frames([UInt8](d))[0].dataStart + 20] ^= 0x01
        try d.write(to: URL(fileURLWithPath: first))
        // missing-segment: the second segment removed.
        let missing = Self.root + "/missing-segment"
        try fm.copyItem(atPath: ok, toPath: missing)
        try fm.removeItem(atPath: missing + "/" + segs[1].name)
        for name in ["torn-tail", "checksum-mismatch", "missing-segment"] {
            try fm.removeItem(atPath: Self.root + "/\(name)/expected.jsonl")
        }
    }

    func expectedLines(_ version: String, _ name: String) throws -> [String] {
        try String(contentsOfFile: Self.fixtures + "/\(version)/\(name)/expected.jsonl", encoding: .utf8)
            .split(separator: "\n").map(String.init)
    }

    @Test(arguments: versions) func okReadsExactly(_ version: String) throws {
        let dir = Self.fixtures + "/\(version)/ok"
        let back = try logRecords(dir)
        #expect(back.map(\.jsonLine) == (try expectedLines(version, "ok")))
        #expect(back == Self.records())
        #expect(try LogDirectory(dir).segments().count >= 3)
        let v = try LogVerifier.verify(LogDirectory(dir))
        #expect(v.isClean)
        #expect(v.records == Self.records().count)
        // Seeking into the middle works on the golden files too.
        let mid = Self.records()[150].lsn
        #expect(try logRecords(dir, from: mid).first?.lsn == mid)
    }

    @Test(arguments: versions) func tornTailIsReportedAndCutByTheNextAppender(_ version: String) throws {
        let dir = Self.fixtures + "/\(version)/torn-tail"
        let v = try LogVerifier.verify(LogDirectory(dir))
        #expect(v.problems.map(\.code) == [.tornTail])
        let readable = try logRecords(dir)
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

    @Test(arguments: versions) func checksumMismatchNamesTheFrame(_ version: String) throws {
        let dir = Self.fixtures + "/\(version)/checksum-mismatch"
        let v = try LogVerifier.verify(LogDirectory(dir))
        let first = try LogDirectory(dir).segments()[0]
        #expect(v.problems.first?.code == .corruptFrame)
        #expect(v.problems.first?.segment == first.name)
        #expect(v.problems.first?.lsnRange?.lowerBound == Self.records()[0].lsn)
        #expect(throws: LogError.self) { try logRecords(dir) }
    }

    @Test(arguments: versions) func missingSegmentIsDetected(_ version: String) throws {
        let v = try LogVerifier.verify(LogDirectory(Self.fixtures + "/\(version)/missing-segment"))
        #expect(v.problems.contains { $0.message.contains("does not follow") })
    }

    @Test func metadataOfEachVersion() throws {
        let v1 = try LogDirectory(Self.fixtures + "/v1/ok").meta()
        #expect(v1.format == 1 && v1.sourceID == SourceID("golden-source") && v1.writer == nil && v1.installationID == nil)
        let v2 = try LogDirectory(Self.fixtures + "/v2/ok").meta()
        #expect(v2.format == 2 && v2.sourceID == SourceID("golden-source"))
        #expect(v2.writer == .capture && v2.installationID == "golden-installation")
        let v3 = try LogDirectory(Self.fixtures + "/v3/ok").meta()
        #expect(v3.format == 2 && v3.writer == .capture)
        // Segment headers say their version; v2 and v3 frames carry a synced
        // length, v3 frames their tables and key filter.
        for (version, expected) in [("v1", UInt16(1)), ("v2", UInt16(2)), ("v3", UInt16(3))] {
            let segment = try LogDirectory(Self.fixtures + "/\(version)/ok").segments()[0]
            guard case .ok(var scanner) = try SegmentScanner.open(segment) else {
                Issue.record("\(version): bad header"); continue
            }
            #expect(scanner.header.version == expected)
            guard case .frame(let m) = try scanner.peek(fileSize: try scanner.file.size()) else {
                Issue.record("\(version): no first frame"); continue
            }
            #expect((m.syncedLength != nil) == (expected >= 2))
            #expect((m.summary != nil) == (expected == 3))
            if let summary = m.summary {
                #expect(summary.tables?.first == "edge")
                #expect(!summary.bloom.isEmpty)
                // The first frame holds keys 0...; its filter says so.
                #expect(summary.mayHold(table: "edge", key: [Field("", .text("0"))]))
                #expect(summary.mayHold(table: "edge", key: [Field("k", .integer(0))]))
            }
            scanner.advance(past: m)
        }
    }

    /// A v1 or v2 log is appended to by this version: the new records go
    /// into a new format 3 segment (no segment mixes formats), and the whole
    /// log reads back, old segments without skipping, the new one with it.
    @Test(arguments: ["v1", "v2"]) func anOlderLogGrowsInFormat3(_ version: String) throws {
        try withTemporaryDirectory { tmp in
            let copy = tmp + "/log"
            try FileManager.default.copyItem(atPath: Self.fixtures + "/\(version)/ok", toPath: copy)
            let before = try LogDirectory(copy).segments().count
            let log = try LogAppender(directory: copy, options: LogOptions(durability: .none))
            let next = log.lastLSN.rawValue + 1
            try log.append([sampleRecord(1, lsn: next)])
            try log.close()
            let segments = try LogDirectory(copy).segments()
            #expect(segments.count == before + 1)
            guard case .ok(let scanner) = try SegmentScanner.open(segments.last!) else { Issue.record("bad header"); return }
            #expect(scanner.header.version == 3)
            #expect(try logRecords(copy).count == Self.records().count + 1)
            #expect(try LogVerifier.verify(LogDirectory(copy)).isClean)
            // Skipping by table across the mixed log: old frames are read,
            // the new one is skipped, and the answer is the full scan's.
            let reader = try LogReader(directory: copy)
            let cursor = try reader.cursor(tables: ["orders"])
            cursor.skip = FrameSkip(tables: ["orders"])
            var got: [ChangeRecord] = []
            while let r = try cursor.next() { got.append(r) }
            #expect(got == Self.records().filter { $0.table == "orders" })
            #expect(cursor.framesSkipped == 1)
        }
    }
}
