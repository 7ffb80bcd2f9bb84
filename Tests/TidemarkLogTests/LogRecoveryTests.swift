import TidemarkTestSupport
import Foundation
import Synchronization
import Testing
@testable import TidemarkLog

/// Torn tails, flipped bytes, missing and foreign segments.
@Suite struct LogRecoveryTests {
    /// Writes `frames` frames of 10 records each, each synced (durable) before
    /// the next is written, and returns the records.
    func writeLog(_ dir: String, frames: Int, segmentLimit: Int = 64 << 20) throws -> [ChangeRecord] {
        let log = try LogAppender(directory: dir, sourceID: SourceID("test-source"),
                                  options: LogOptions(durability: .commit, segmentSizeLimitBytes: segmentLimit))
        var all: [ChangeRecord] = []
        for f in 0..<frames {
            let batch = (0..<10).map { sampleRecord(f * 10 + $0) }
            let range = try log.append(assigningLSNs: batch)
            all.append(contentsOf: zip(batch, range.lowerBound.rawValue...range.upperBound.rawValue).map { r, l in
                var r = r; r.lsn = LSN(l); return r
            })
        }
        try log.close()
        return all
    }

    @Test func truncatingTheLastFrameAtEveryOffsetKeepsTheCompleteFrames() throws {
        try withTemporaryDirectory { root in
            let golden = root + "/golden"
            let all = try writeLog(golden, frames: 3)
            let seg = try segmentFiles(golden)[0]
            let full = try Data(contentsOf: URL(fileURLWithPath: seg))
            // Find where the last frame starts: reopen a 2-frame log for its size.
            let twoDir = root + "/two"
            _ = try writeLog(twoDir, frames: 2)
            let lastFrameStart = try Data(contentsOf: URL(fileURLWithPath: try segmentFiles(twoDir)[0])).count
            #expect(full.count > lastFrameStart)
            for cut in lastFrameStart..<full.count {
                let dir = root + "/cut-\(cut)"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: golden + "/log.meta", toPath: dir + "/log.meta")
                try full.prefix(cut).write(to: URL(fileURLWithPath: dir + "/" + URL(fileURLWithPath: seg).lastPathComponent))
                // Readers see the complete frames; an incomplete tail is "not yet written".
                #expect(try logRecords(dir) == Array(all.prefix(20)), "cut at \(cut)")
                let log = try LogAppender(directory: dir, options: LogOptions(durability: .none))
                #expect(log.lastLSN == LSN(20), "cut at \(cut)")
                if cut > lastFrameStart {
                    #expect(log.recovery?.bytesCut == cut - lastFrameStart, "cut at \(cut)")
                } else {
                    #expect(log.recovery == nil)
                }
                // The log goes on after recovery.
                try log.append(assigningLSNs: [sampleRecord(99)])
                try log.close()
                let back = try logRecords(dir)
                #expect(back.count == 21 && back.last?.lsn == LSN(21), "cut at \(cut)")
                try FileManager.default.removeItem(atPath: dir)
            }
        }
    }

    @Test func aFlippedByteAnywhereIsReportedWithItsLSNRange() throws {
        try withTemporaryDirectory { root in
            let golden = root + "/golden"
            let all = try writeLog(golden, frames: 4)
            let seg = try segmentFiles(golden)[0]
            let name = URL(fileURLWithPath: seg).lastPathComponent
            let full = try Data(contentsOf: URL(fileURLWithPath: seg))
            // Frame boundaries from the metadata.
            let bounds = TornBatchTests.frames([UInt8](full)).map { (start: $0.start, end: $0.end, first: $0.first, last: $0.last, dataStart: $0.dataStart) }
            #expect(bounds.count == 4)
            // Every 7th byte, plus every byte of the header and first metadata.
            let positions = Array(0..<bounds[0].dataStart) + Array(stride(from: 0, to: full.count, by: 7))
            for pos in Set(positions).sorted() {
                var damaged = full
                damaged[pos] ^= 0x5A
                let dir = root + "/flip"
                try? FileManager.default.removeItem(atPath: dir)
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: golden + "/log.meta", toPath: dir + "/log.meta")
                try damaged.write(to: URL(fileURLWithPath: dir + "/" + name))
                let v = try LogVerifier.verify(LogDirectory(dir))
                #expect(!v.isClean, "flip at \(pos) not detected")
                guard let problem = v.problems.first else { continue }
                #expect(problem.segment == name)
                if let frame = bounds.firstIndex(where: { pos >= $0.start && pos < $0.end }) {
                    // The damage lies in `frame`: records before it are intact.
                    #expect(v.records == frame * 10, "flip at \(pos)")
                    if frame < bounds.count - 1 || pos < bounds[frame].dataStart {
                        #expect(problem.lsnRange?.contains(LSN(bounds[frame].first)) == true, "flip at \(pos): \(problem.message)")
                    }
                } else {
                    #expect(v.records == 0, "header flip at \(pos)")
                }
                // A reader fails with the same kind of error, never crashes or skips.
                do {
                    let back = try logRecords(dir)
                    Issue.record("flip at \(pos): reader returned \(back.count) records without an error")
                } catch let e as LogError {
                    #expect(e.code == .corruptFrame || e.code == .tornTail, "flip at \(pos): \(e)")
                }
                // Damage before the last frame must not be "repaired" by an appender.
                if let frame = bounds.firstIndex(where: { pos >= $0.start && pos < $0.end }), frame < bounds.count - 1 {
                    #expect(throws: LogError.self, "flip at \(pos)") { try LogAppender(directory: dir) }
                }
            }
            _ = all
        }
    }

    @Test func missingOrForeignSegmentIsDetected() throws {
        try withTemporaryDirectory { root in
            let a = root + "/a"
            _ = try writeLog(a, frames: 30, segmentLimit: 4096)
            let segs = try segmentFiles(a)
            #expect(segs.count >= 4)
            #expect(try LogVerifier.verify(LogDirectory(a)).isClean)
            // Remove a middle segment.
            try FileManager.default.removeItem(atPath: segs[1])
            let v = try LogVerifier.verify(LogDirectory(a))
            #expect(!v.isClean)
            #expect(v.problems.first?.message.contains("does not follow") == true)
            // A segment from another log with the same source id and LSNs.
            let b = root + "/b"
            let log = try LogAppender(directory: b, sourceID: SourceID("test-source"), options: LogOptions(durability: .none, segmentSizeLimitBytes: 4096))
            for f in 0..<30 { try log.append(assigningLSNs: (0..<10).map { sampleRecord(1000 + f * 10 + $0) }) }
            try log.close()
            let bsegs = try segmentFiles(b)
            try FileManager.default.removeItem(atPath: segs[2])
            try FileManager.default.copyItem(atPath: bsegs[2], toPath: segs[2])
            let v2 = try LogVerifier.verify(LogDirectory(a))
            #expect(v2.problems.contains { $0.segment == URL(fileURLWithPath: segs[2]).lastPathComponent && $0.message.contains("does not follow") })
        }
    }

    @Test func secondAppenderIsRefused() throws {
        try withTemporaryDirectory { dir in
            let first = try LogAppender(directory: dir, options: LogOptions(durability: .none))
            #expect {
                try LogAppender(directory: dir)
            } throws: { ($0 as? LogError)?.code == .locked }
            try first.close()
        }
    }

    @Test func foreignSourceIsRefused() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, sourceID: SourceID("source-a"), options: LogOptions(durability: .none))
            try log.append(assigningLSNs: [sampleRecord(1)])
            try log.close()
            #expect {
                try LogAppender(directory: dir, sourceID: SourceID("source-b"))
            } throws: { ($0 as? LogError)?.code == .foreignSource }
            // The same source reopens fine.
            let again = try LogAppender(directory: dir, sourceID: SourceID("source-a"), options: LogOptions(durability: .none))
            #expect(again.lastLSN == LSN(1))
        }
    }

    @Test func lsnsMustIncrease() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none))
            try log.append([sampleRecord(1, lsn: 5)])
            #expect { try log.append([sampleRecord(2, lsn: 5)]) } throws: { ($0 as? LogError)?.code == .lsnOrder }
            #expect { try log.append([sampleRecord(2, lsn: 7), sampleRecord(3, lsn: 6)]) } throws: { ($0 as? LogError)?.code == .lsnOrder }
            try log.append([sampleRecord(2, lsn: 9)])
            try log.close()
            #expect(try logRecords(dir).map(\.lsn) == [LSN(5), LSN(9)])
        }
    }

    @Test func retentionRespectsConsumers() throws {
        try withTemporaryDirectory { dir in
            _ = try writeLog(dir, frames: 40, segmentLimit: 4096)
            let segs = try LogDirectory(dir).segments()
            #expect(segs.count >= 5)
            let consumers = Consumers(LogDirectory(dir))
            try consumers.register("migration", at: LSN(0))
            try consumers.acknowledge("migration", through: LSN(segs[2].baseLSN.rawValue - 1))
            // Asked to delete everything below the head, retention stops at the consumer.
            let deleted = try Retention.deleteSegments(in: LogDirectory(dir), below: LSN(400))
            #expect(deleted.map(\.baseLSN) == [segs[0].baseLSN, segs[1].baseLSN])
            #expect(try logRecords(dir).first?.lsn == segs[2].baseLSN)
            // The consumer reads from where it left off.
            #expect(try logRecords(dir, from: segs[2].baseLSN).first?.lsn == segs[2].baseLSN)
            // Asking for a deleted LSN is an error, not a silent skip.
            #expect { try logRecords(dir, from: LSN(3)) } throws: { ($0 as? LogError)?.code == .truncated }
            // The last segment is never deleted.
            try consumers.unregister("migration")
            try Retention.deleteSegments(in: LogDirectory(dir), below: LSN(10_000))
            #expect(try LogDirectory(dir).segments().count == 1)
            #expect(try logRecords(dir, from: try LogDirectory(dir).segments()[0].baseLSN).last?.lsn == LSN(400))
        }
    }

    @Test func logFilesAreCreatedPrivate() throws {
        try withTemporaryDirectory { dir in
            let log = try LogAppender(directory: dir + "/log", options: LogOptions(durability: .none))
            try log.append(assigningLSNs: [sampleRecord(1)])
            try log.close()
            for path in try segmentFiles(dir + "/log") + [dir + "/log/log.meta", dir + "/log/LOCK"] {
                let attrs = try FileManager.default.attributesOfItem(atPath: path)
                #expect((attrs[.posixPermissions] as? Int) == 0o600, "\(path)")
            }
        }
    }
}

@Suite struct GroupCommitTests {
    @Test(.timeLimit(.minutes(10))) func concurrentAppendersShareSyncs() throws {
        try withTemporaryDirectory(onDisk: true) { dir in  // group commit needs an fsync that takes time
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .commit))
            let threads = 8, perThread = 100
            // Real OS threads released together (not concurrentPerform, which
            // may run iterations serially when the pool is busy), so appends
            // truly overlap.
            let ready = Atomic<Int>(0)
            let done = Atomic<Int>(0)
            let failures = Atomic<Int>(0)
            for t in 0..<threads {
                spawnThread {
                    ready.add(1, ordering: .relaxed)
                    while ready.load(ordering: .relaxed) < threads { sched_yield() }
                    for i in 0..<perThread {
                        do {
                            try log.append(assigningLSNs: [sampleRecord(t * 1000 + i)])
                        } catch {
                            failures.add(1, ordering: .relaxed)
                        }
                    }
                    done.add(1, ordering: .relaxed)
                }
            }
            while done.load(ordering: .relaxed) < threads { usleep(1000) }
            #expect(failures.load(ordering: .relaxed) == 0)
            let stats = log.statistics
            try log.close()
            let back = try logRecords(dir)
            #expect(back.count == threads * perThread)
            #expect(back.map(\.lsn.rawValue) == Array(1...UInt64(threads * perThread)))
            // Every record from every thread is there exactly once.
            #expect(Set(back.map { $0.key[0].value }).count == threads * perThread)
            // Group commit: far fewer syncs than appends.
            #expect(stats.syncs < threads * perThread / 2)
            print("group commit: \(threads * perThread) appends, \(stats.syncs) fsyncs, \(stats.frames) frames")
        }
    }
}
