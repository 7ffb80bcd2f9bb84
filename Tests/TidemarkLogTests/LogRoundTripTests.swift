import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

@Suite struct LogRoundTripTests {
    static let edgeValues: [Value] = [
        .null, .integer(0), .integer(.min), .integer(.max), .integer(-1),
        .real(0.0), .real(-0.0), .real(.infinity), .real(-.infinity), .real(0.1), .real(1e308),
        .real(.leastNonzeroMagnitude), .real(.greatestFiniteMagnitude),
        .text(""), .text("héllo wörld 🌊 e\u{301}"), .text("nul\u{0}inside"), .text(String(repeating: "x", count: 3_000_000)),
        .blob([]), .blob([0, 1, 2, 255]), .blob([UInt8](repeating: 0xAB, count: 2_000_000)),
    ]

    @Test func everyValueRoundTrips() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none))
            var records: [ChangeRecord] = []
            for (i, v) in Self.edgeValues.enumerated() {
                records.append(ChangeRecord(
                    lsn: LSN(UInt64(i + 1)), timestampMicros: Int64(i) - 5, table: "t", operation: .update,
                    key: [Field("k", v)], before: [Field("v", v), Field("", .null)], after: [Field("v", v)]))
            }
            try log.append(records)
            try log.close()
            let back = try logRecords(dir)
            #expect(back == records)
            // NaN survives bit for bit too.
            let nan = Double(bitPattern: 0x7FF8_0000_DEAD_BEEF)
            #expect(Value.real(nan) == .real(nan))
        }
    }

    @Test func threeHundredColumns() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none))
            let row = (0..<300).map { Field("c\($0)", $0 % 2 == 0 ? .integer(Int64($0)) : .text("v\($0)")) }
            let r = ChangeRecord(lsn: LSN(1), timestampMicros: 1, table: "wide", operation: .insert,
                                 key: [Field("c0", .integer(0))], before: nil, after: row)
            try log.append([r])
            try log.close()
            #expect(try logRecords(dir) == [r])
        }
    }

    @Test func seekAndRotation() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none, segmentSizeLimitBytes: 64 << 10, frameSizeLimitBytes: 8 << 10))
            var all: [ChangeRecord] = []
            for batch in 0..<40 {
                let records = (0..<250).map { sampleRecord(batch * 250 + $0) }
                try log.append(assigningLSNs: records)
                all.append(contentsOf: records)
            }
            try log.close()
            #expect(try segmentFiles(dir).count > 3)
            let back = try logRecords(dir)
            #expect(back.count == all.count)
            #expect(back.map(\.lsn.rawValue) == Array(1...UInt64(all.count)))
            for from in [1, 2, 999, 5000, 9999, 10000] as [UInt64] {
                let tail = try logRecords(dir, from: LSN(from))
                #expect(tail.first?.lsn == LSN(from))
                #expect(tail.count == all.count - Int(from) + 1)
            }
            #expect(try logRecords(dir, from: LSN(10001)).isEmpty)
            #expect(try LogReader(directory: dir).headLSN() == LSN(10000))
        }
    }
}
