import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

#if canImport(Glibc)
import Glibc
#endif

/// The fault-injection seam itself, and what the appender promises under it:
/// a power cut keeps everything reported durable.
@Suite struct PowerLossTests {
    static let source = SourceID("power-source")

    func records(_ range: ClosedRange<Int>) -> [ChangeRecord] {
        range.map { sampleRecord($0, lsn: UInt64($0)) }
    }

    @Test func aPowerCutDropsExactlyWhatWasNotSynced() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            try FileSystem.makeDirectory(dir)
            let faults = FileFaults(root: dir)
            defer { faults.disarm() }
            // Synced file, synced name.
            let a = try SystemFile.openForWriting(dir + "/a", create: true)
            try a.write(Array("durable".utf8), at: 0)
            try a.sync()
            try FileSystem.syncDirectory(dir)
            // Unsynced bytes after the synced ones.
            try a.write(Array(" and not".utf8), at: 7)
            // A name never made durable.
            let b = try SystemFile.openForWriting(dir + "/b", create: true)
            try b.write(Array("b".utf8), at: 0)
            try b.sync()
            // A durable name removed without a directory sync comes back.
            try FileSystem.remove(dir + "/a")
            #expect(faults.calls.map(\.operation) == [.create, .write, .sync, .syncDirectory, .write, .create, .write, .sync, .remove])
            faults.powerCut()
            #expect(try FileSystem.list(dir).sorted() == ["a"])
            #expect(try FileSystem.readSmallFile(dir + "/a") == "durable")
            // Files of the dead boot cannot write any more.
            #expect(throws: LogError.self) { try a.write([1], at: 0) }
        }
    }

    @Test func injectedErrorsStopTheAppenderAndReopenRecovers() throws {
        for fault in [FileFaults.Fault.fail(ENOSPC), .fail(EIO), .tear] {
            try withTemporaryDirectory { root in
                let dir = root + "/log"
                let log = try LogAppender(directory: dir, sourceID: Self.source)
                try log.append(records(1...10))
                try log.close()
                let faults = FileFaults(root: dir)
                defer { faults.disarm() }
                let log2 = try LogAppender(directory: dir)
                faults.resetCalls()
                faults.inject(fault, at: 0)  // the frame's write
                #expect(throws: LogError.self) { try log2.append(records(11...20)) }
                #expect(throws: LogError.self) { try log2.append(records(21...22)) }
                try? log2.close()
                let log3 = try LogAppender(directory: dir)
                #expect(log3.lastLSN == LSN(10), "\(fault)")
                try log3.append(records(11...12))
                try log3.close()
                #expect(try logRecords(dir).map(\.lsn.rawValue) == Array(1...12))
            }
        }
    }

    /// Item 5: a process crash leaves an unsynced tail in the page cache;
    /// the next open must make it durable before reporting it durable.
    /// Failed before the fix: after the power cut the log ended at LSN 10
    /// although recovery had reported LSN 20 durable.
    @Test func recoveryMakesTheRecoveredTailDurable() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            try FileSystem.makeDirectory(dir)
            let faults = FileFaults(root: dir)
            defer { faults.disarm() }
            let log = try LogAppender(directory: dir, sourceID: Self.source)
            try log.append(records(1...10))
            faults.resetCalls()
            // The process dies at the sync of the next append: its frame is
            // written (page cache) but never synced.
            faults.inject(.crash, at: 1)
            #expect(throws: LogError.self) { try log.append(records(11...20)) }
            #expect(faults.calls.map(\.operation) == [.write, .sync])
            try? log.close()
            faults.restartProcess()
            let reopened = try LogAppender(directory: dir)
            let durable = reopened.durableLSNValue
            #expect(durable == LSN(20))
            faults.crashNow()  // nothing after recovery may sync for it
            try? reopened.close()
            faults.powerCut()
            let afterCut = try LogAppender(directory: dir)
            #expect(afterCut.lastLSN >= durable, "recovery reported LSN \(durable) durable, the power cut left \(afterCut.lastLSN)")
            try afterCut.close()
        }
    }

    /// Item 5, rotation: a segment created by the crashed process whose
    /// directory entry was never synced.
    @Test func recoveryMakesARecoveredSegmentNameDurable() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            let options = LogOptions(durability: .none, segmentSizeLimitBytes: 1 << 10)
            let log = try LogAppender(directory: dir, sourceID: Self.source, options: options)
            let faults = FileFaults(root: dir)
            defer { faults.disarm() }
            for i in 0..<6 { try log.append(records((i * 10 + 1)...(i * 10 + 10))) }
            try log.close()
            #expect(try LogDirectory(dir).segments().count > 2)
            let reopened = try LogAppender(directory: dir)
            let durable = reopened.durableLSNValue
            #expect(durable == LSN(60))
            faults.crashNow()
            try? reopened.close()
            faults.powerCut()
            let afterCut = try LogAppender(directory: dir)
            #expect(afterCut.lastLSN >= durable, "recovery reported LSN \(durable) durable, the power cut left \(afterCut.lastLSN)")
            try afterCut.close()
        }
    }
}
