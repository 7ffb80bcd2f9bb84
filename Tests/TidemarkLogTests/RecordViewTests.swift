import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

/// Records read in place (`LogCursor.nextView()`, what replay reads) are
/// the records `next()` decodes, with the same checks and errors.
@Suite struct RecordViewTests {
    /// Every view copied out, with a fresh cursor per call.
    func viewRecords(_ dir: String, from: LSN = .zero, tables: Set<String>? = nil, skipDamaged: Bool = false) throws -> [ChangeRecord] {
        let cursor = try LogReader(directory: dir).cursor(from: from, tables: tables)
        cursor.skipDamaged = skipDamaged
        var out: [ChangeRecord] = []
        while let v = try cursor.nextView() { out.append(v.record()) }
        return out
    }

    func decodedRecords(_ dir: String, from: LSN = .zero, tables: Set<String>? = nil, skipDamaged: Bool = false) throws -> [ChangeRecord] {
        let cursor = try LogReader(directory: dir).cursor(from: from, tables: tables)
        cursor.skipDamaged = skipDamaged
        var out: [ChangeRecord] = []
        while let r = try cursor.next() { out.append(r) }
        return out
    }

    @Test func everyValueReadsInPlaceAsDecoded() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none))
            var records: [ChangeRecord] = []
            for (i, v) in LogRoundTripTests.edgeValues.enumerated() {
                records.append(ChangeRecord(
                    lsn: LSN(UInt64(i + 1)), timestampMicros: Int64(i) - 5, table: "t", operation: .update,
                    key: [Field("k", v)], before: [Field("v", v), Field("", .null)], after: [Field("v", v)]))
            }
            records.append(ChangeRecord(lsn: LSN(UInt64(records.count + 1)), timestampMicros: 9, table: "t", operation: .insert,
                                        key: [Field("k", .integer(1))], before: nil, after: [Field("k", .integer(1)), Field("b", .blob([]))]))
            records.append(ChangeRecord(lsn: LSN(UInt64(records.count + 1)), timestampMicros: 9, table: "u", operation: .delete,
                                        key: [Field("k", .text("é"))], before: [Field("k", .text("é"))], after: nil))
            try log.append(records)
            try log.close()
            #expect(try viewRecords(dir) == records)
            #expect(try viewRecords(dir, tables: ["u"]) == records.filter { $0.table == "u" })
        }
    }

    @Test func manyFramesAndSegmentsFromAnyLSN() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none, segmentSizeLimitBytes: 64 << 10, frameSizeLimitBytes: 8 << 10))
            for batch in 0..<20 {
                try log.append(assigningLSNs: (0..<250).map { sampleRecord(batch * 250 + $0, table: $0 % 3 == 0 ? "orders" : "users") })
            }
            try log.close()
            #expect(try segmentFiles(dir).count > 1)
            for from in [0, 1, 777, 2500, 4999, 5000, 5001] as [UInt64] {
                let expected = try decodedRecords(dir, from: LSN(from))
                #expect(try viewRecords(dir, from: LSN(from)) == expected, "from \(from)")
                #expect(expected.count == max(0, 5000 - Int(max(from, 1)) + 1))
            }
            #expect(try viewRecords(dir, tables: ["orders"]) == decodedRecords(dir, tables: ["orders"]))
        }
    }

    /// A damaged frame: the same error (segment, LSN range) as `next()`,
    /// and with skipDamaged the same records past it.
    @Test func damageIsTheSameErrorInPlace() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            _ = try DamagedLogTests().damagedLog(dir)
            var decodedError: LogError?
            var viewError: LogError?
            do { _ = try decodedRecords(dir) } catch { decodedError = error as? LogError }
            do { _ = try viewRecords(dir) } catch { viewError = error as? LogError }
            let d = try #require(decodedError)
            let v = try #require(viewError)
            #expect(v.code == .corruptFrame && v.code == d.code && v.message == d.message && v.lsnRange == d.lsnRange)
            #expect(try viewRecords(dir, skipDamaged: true) == decodedRecords(dir, skipDamaged: true))
        }
    }

    /// `keepsKeyBytes` says "not a key change" only when the before image
    /// holds the key's exact bytes; a key change, or a key column missing
    /// from the before image, is left to the decoded record.
    @Test func keepsKeyBytesOnlyForTheSameKey() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none))
            let same = ChangeRecord(lsn: LSN(1), timestampMicros: 1, table: "t", operation: .update, key: [Field("a", .integer(1)), Field("b", .text("x"))],
                                    before: [Field("b", .text("x")), Field("a", .integer(1)), Field("v", .null)], after: [Field("a", .integer(1)), Field("b", .text("x"))])
            let moved = ChangeRecord(lsn: LSN(2), timestampMicros: 1, table: "t", operation: .update, key: [Field("a", .integer(2))],
                                     before: [Field("a", .integer(1))], after: [Field("a", .integer(2))])
            let realVsInt = ChangeRecord(lsn: LSN(3), timestampMicros: 1, table: "t", operation: .update, key: [Field("a", .real(1))],
                                         before: [Field("a", .integer(1))], after: [Field("a", .real(1))])
            let lacking = ChangeRecord(lsn: LSN(4), timestampMicros: 1, table: "t", operation: .update, key: [Field("a", .integer(1))],
                                       before: [Field("v", .integer(1))], after: [Field("a", .integer(1))])
            let insert = ChangeRecord(lsn: LSN(5), timestampMicros: 1, table: "t", operation: .insert, key: [Field("a", .integer(1))],
                                      before: nil, after: [Field("a", .integer(1))])
            try log.append([same, moved, realVsInt, lacking, insert])
            try log.close()
            let cursor = try LogReader(directory: dir).cursor()
            var got: [Bool] = []
            while let v = try cursor.nextView() {
                got.append(v.keepsKeyBytes)
                // Never "keeps" where the decoded record is a key change.
                if v.keepsKeyBytes { #expect(!v.record().isKeyChange) }
            }
            #expect(got == [true, false, false, false, false])
        }
    }
}
