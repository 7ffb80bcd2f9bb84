import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

/// Records read ahead on another thread (`RecordPrefetch`, what replay
/// reads) are the cursor's records, in its order, with its errors at the
/// same record, and stay valid while their frame is held.
@Suite struct FramePrefetchTests {
    func cursorRecords(_ dir: String, from: LSN = .zero) throws -> [ChangeRecord] {
        let cursor = try LogReader(directory: dir).cursor(from: from)
        var out: [ChangeRecord] = []
        while let r = try cursor.next() { out.append(r) }
        return out
    }

    /// Every record read ahead, copied out only after all were read (each
    /// view must outlive the cursor's later frames while it is held).
    /// With `toggle`, the thread is stopped and started every 97 records.
    func prefetched(_ dir: String, from: LSN = .zero, threaded: Bool, toggle: Bool = false) throws -> [ChangeRecord] {
        let p = RecordPrefetch(try LogReader(directory: dir).cursor(from: from), threaded: threaded)
        defer { p.suspend() }
        var held: [HeldRecord] = []
        while let h = try p.next() {
            held.append(h)
            if toggle && held.count % 97 == 0 { p.threaded.toggle() }
        }
        return held.map { $0.view.record() }
    }

    func manyFrames(_ dir: String) throws {
        let log = try LogAppender(directory: dir, options: LogOptions(durability: .none, segmentSizeLimitBytes: 64 << 10, frameSizeLimitBytes: 8 << 10))
        for batch in 0..<20 {
            _ = try log.append(assigningLSNs: (0..<250).map { sampleRecord(batch * 250 + $0, table: $0 % 3 == 0 ? "orders" : "users") })
        }
        try log.close()
    }

    @Test func sameRecordsInOrderFromAnyLSN() throws {
        try withTemporaryDirectory { dir in
            try manyFrames(dir)
            #expect(try segmentFiles(dir).count > 1)
            for from in [0, 1, 777, 2500, 4999, 5000, 5001] as [UInt64] {
                let expected = try cursorRecords(dir, from: LSN(from))
                #expect(try prefetched(dir, from: LSN(from), threaded: true) == expected, "from \(from)")
                #expect(try prefetched(dir, from: LSN(from), threaded: false) == expected, "from \(from), no thread")
                #expect(try prefetched(dir, from: LSN(from), threaded: true, toggle: true) == expected, "from \(from), thread on and off")
            }
        }
    }

    /// A damaged frame: the records before it, then the cursor's error
    /// (segment, LSN range), and that error again on the next call.
    @Test func damageStopsAtTheSameRecord() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            _ = try DamagedLogTests().damagedLog(dir)
            let cursor = try LogReader(directory: dir).cursor()
            var expected: [ChangeRecord] = []
            var cursorError: LogError?
            do { while let v = try cursor.nextView() { expected.append(v.record()) } } catch { cursorError = error as? LogError }
            let e = try #require(cursorError)
            for threaded in [true, false] {
                let p = RecordPrefetch(try LogReader(directory: dir).cursor(), threaded: threaded)
                var got: [ChangeRecord] = []
                var error: LogError?
                do { while let h = try p.next() { got.append(h.view.record()) } } catch let thrown { error = thrown as? LogError }
                #expect(got == expected, "threaded \(threaded)")
                let g = try #require(error)
                #expect(g.code == e.code && g.message == e.message && g.lsnRange == e.lsnRange)
                var again: LogError?
                do { _ = try p.next() } catch let thrown { again = thrown as? LogError }
                #expect(again?.message == e.message)
                p.suspend()
                #expect(!p.isRunning)
            }
        }
    }

    /// At the end of the log, nil; records appended since are read by the
    /// next call (an end read before it is never returned), and suspending
    /// leaves no thread, which the next call starts again where it stopped.
    @Test func endIsNeverStaleAndSuspendStopsTheThread() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none, frameSizeLimitBytes: 4 << 10))
            _ = try log.append(assigningLSNs: (0..<300).map { sampleRecord($0) })
            let p = RecordPrefetch(try LogReader(directory: dir).cursor(), threaded: true)
            var lsns: [UInt64] = []
            while let h = try p.next() { lsns.append(h.view.lsn.rawValue) }
            #expect(lsns == Array(1...300))
            #expect(p.isRunning)
            for round in 1...5 {
                // The producer may already sit on an end read before this append.
                _ = try log.append(assigningLSNs: (0..<round * 40).map { sampleRecord($0) })
                let first = try #require(try p.next(), "round \(round): records appended after the end were not read")
                #expect(first.view.lsn.rawValue == UInt64(lsns.count + 1))
                lsns.append(first.view.lsn.rawValue)
                while let h = try p.next() { lsns.append(h.view.lsn.rawValue) }
                #expect(lsns == Array(1...UInt64(lsns.count)))
                if round == 3 {
                    p.suspend()
                    #expect(!p.isRunning)
                }
            }
            #expect(lsns.count == 300 + 40 * 15)
            try log.close()
            p.suspend()
            #expect(!p.isRunning)
        }
    }
}
