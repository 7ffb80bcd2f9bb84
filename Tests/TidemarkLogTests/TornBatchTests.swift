import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

/// Item 8: a batch torn across several frames recovers to the last whole
/// frame; damage to durable data is still reported.
@Suite struct TornBatchTests {
    static let source = SourceID("torn-source")

    struct Frame {
        var start: Int; var end: Int; var first: UInt64; var last: UInt64
        /// Where the data frame starts (metadata size varies in format 3).
        var dataStart: Int
    }

    /// Frame boundaries of a segment file, from its metadata (in the format
    /// its header names).
    static func frames(_ bytes: [UInt8]) -> [Frame] {
        var out: [Frame] = []
        guard case .success(let header) = bytes.withUnsafeBytes({ SegmentHeader.parse($0) }) else { return out }
        var offset = SegmentHeader.encodedSize
        while offset < bytes.count {
            let end = min(bytes.count, offset + FrameMetadata.maxEncodedSize)
            guard case .ok(let m) = bytes.withUnsafeBytes({ FrameMetadata.parse(UnsafeRawBufferPointer(rebasing: $0[offset..<end]), version: header.version) }) else { break }
            out.append(Frame(start: offset, end: offset + m.totalSize, first: m.firstLSN.rawValue, last: m.lastLSN.rawValue,
                             dataStart: offset + m.metadataSize))
            offset += m.totalSize
        }
        return out
    }

    /// A durable batch of 10 records (LSN 1...10), then one multi-frame
    /// batch of 120 (LSN 11...130) that was written but whose sync never
    /// completed. Returns the segment's bytes and the first frame of the batch.
    func writeLog(_ dir: String) throws -> (bytes: [UInt8], segment: String, batchStart: Int, records: [ChangeRecord]) {
        let all = (1...130).map { sampleRecord($0, lsn: UInt64($0)) }
        let log = try LogAppender(directory: dir, sourceID: Self.source,
                                  options: LogOptions(durability: .commit, frameSizeLimitBytes: 1 << 10))
        try log.append(Array(all[0..<10]))
        try log.close()
        // The batch is written, never synced (the process dies before its sync).
        let unsynced = try LogAppender(directory: dir, options: LogOptions(durability: .none, frameSizeLimitBytes: 1 << 10))
        try unsynced.append(Array(all[10...]))
        try unsynced.close()
        let segment = try LogDirectory(dir).segments()[0].path
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: segment)))
        let frames = Self.frames(bytes)
        let batchStart: Int = frames.first(where: { $0.first == 11 })?.start ?? 0
        return (bytes, segment, batchStart, all)
    }

    func open(_ dir: String, bytes: [UInt8], segment: String, label: String) throws -> LogAppender? {
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + URL(fileURLWithPath: segment).lastPathComponent))
        return try LogAppender(directory: dir)
    }

    /// Failed before the change: every hole in the batch (a frame whose
    /// pages were lost while a later frame's survived) refused to open with
    /// "corrupt frame … with valid frames after it; the log needs manual repair".
    @Test func aHoleAnywhereInAnUnsyncedMultiFrameBatchRecoversToTheLastWholeFrame() async throws {
        try await blocking { try self.aHoleAnywhereInAnUnsyncedMultiFrameBatchRecoversToTheLastWholeFrameBody() }
    }

    func aHoleAnywhereInAnUnsyncedMultiFrameBatchRecoversToTheLastWholeFrameBody() throws {
        try withTemporaryDirectory { root in
            let (bytes, segment, batchStart, all) = try writeLog(root + "/golden")
            let frames = Self.frames(bytes)
            let batch = frames.filter { $0.start >= batchStart }
            #expect(batch.count >= 8, "the batch must span many frames: \(batch.count)")
            let meta = try String(contentsOfFile: root + "/golden/log.meta", encoding: .utf8)
            for (k, frame) in batch.enumerated() {
                // The frame's bytes lost (zeros, as a page never written back), later frames kept.
                for hole in [frame.start..<frame.end, (frame.start + 9)..<(frame.start + 10), (frame.end - 4)..<frame.end] {
                    var damaged = bytes
                    for i in hole { damaged[i] = 0 }
                    let dir = root + "/hole"
                    try? FileManager.default.removeItem(atPath: dir)
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    try meta.write(toFile: dir + "/log.meta", atomically: true, encoding: .utf8)
                    try Data(damaged).write(to: URL(fileURLWithPath: dir + "/" + URL(fileURLWithPath: segment).lastPathComponent))
                    let label = "frame \(k) of the batch, bytes \(hole)"
                    let log: LogAppender
                    do {
                        log = try LogAppender(directory: dir)
                    } catch {
                        Issue.record("\(label): refused to open: \(error)")
                        continue
                    }
                    let kept = Int(frame.first) - 1
                    #expect(log.lastLSN == LSN(UInt64(kept)), "\(label)")
                    #expect(log.recovery?.reason.contains("unsynced write burst") == (k < batch.count - 1), "\(label): \(String(describing: log.recovery))")
                    try log.append([sampleRecord(500, lsn: 500)])
                    try log.close()
                    #expect(try logRecords(dir).map(\.lsn.rawValue) == (1...kept).map { UInt64($0) } + [500], "\(label)")
                    _ = all
                }
            }
        }
    }

    @Test func truncationAtEveryFrameBoundaryAndInsideFramesOfTheBatch() async throws {
        try await blocking { try self.truncationAtEveryFrameBoundaryAndInsideFramesOfTheBatchBody() }
    }

    func truncationAtEveryFrameBoundaryAndInsideFramesOfTheBatchBody() throws {
        try withTemporaryDirectory { root in
            let (bytes, segment, batchStart, _) = try writeLog(root + "/golden")
            let frames = Self.frames(bytes).filter { $0.start >= batchStart }
            let meta = try String(contentsOfFile: root + "/golden/log.meta", encoding: .utf8)
            var cuts = Set<Int>()
            for f in frames {
                cuts.formUnion([f.start, f.start + 1, f.start + 8, f.dataStart - 1,
                                f.dataStart, (f.start + f.end) / 2, f.end - 1, f.end])
            }
            for cut in cuts.sorted() where cut <= bytes.count {
                let dir = root + "/cut"
                try? FileManager.default.removeItem(atPath: dir)
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try meta.write(toFile: dir + "/log.meta", atomically: true, encoding: .utf8)
                try Data(bytes.prefix(cut)).write(to: URL(fileURLWithPath: dir + "/" + URL(fileURLWithPath: segment).lastPathComponent))
                let whole = frames.filter { $0.end <= cut }.last.map { Int($0.last) } ?? 10
                let log = try LogAppender(directory: dir)
                #expect(log.lastLSN == LSN(UInt64(whole)), "cut at \(cut)")
                try log.close()
                #expect(try logRecords(dir).count == whole, "cut at \(cut)")
            }
        }
    }

    /// Damage to a frame that was synced (a later frame records a synced
    /// length past it) is corruption of durable data: reported, not cut.
    @Test func damageToDurableFramesIsStillReported() async throws {
        try await blocking { try self.damageToDurableFramesIsStillReportedBody() }
    }

    func damageToDurableFramesIsStillReportedBody() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            let log = try LogAppender(directory: dir, sourceID: Self.source,
                                      options: LogOptions(durability: .commit, frameSizeLimitBytes: 1 << 10))
            for b in 0..<4 { try log.append((1...30).map { sampleRecord(b * 30 + $0, lsn: UInt64(b * 30 + $0)) }) }
            try log.close()
            let segment = try LogDirectory(dir).segments()[0].path
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: segment)))
            let frames = Self.frames(bytes)
            // Every frame of the first three (synced) batches.
            for (k, frame) in frames.enumerated() where frame.last <= 90 {
                var damaged = bytes
                damaged[frame.start + 30] ^= 0x40
                try Data(damaged).write(to: URL(fileURLWithPath: segment))
                let error = try #require(throws: LogError.self, "frame \(k)") { try LogAppender(directory: dir) }
                #expect(error.code == .corruptFrame, "frame \(k): \(error)")
                #expect(error.message.contains("log repair"), "frame \(k): \(error)")
                try Data(bytes).write(to: URL(fileURLWithPath: segment))
            }
        }
    }

    /// A power cut that keeps a random subset of the unsynced pages of a
    /// large multi-frame batch: the log always opens, keeps a prefix of the
    /// batch, and what it keeps reads back exactly.
    @Test func aPowerCutKeepingRandomPagesOfABatchAlwaysOpens() async throws {
        try await blocking { try self.aPowerCutKeepingRandomPagesOfABatchAlwaysOpensBody() }
    }

    func aPowerCutKeepingRandomPagesOfABatchAlwaysOpensBody() throws {
        for seed in UInt64(1)...40 {
            try withTemporaryDirectory { root in
                let dir = root + "/log"
                try FileSystem.makeDirectory(dir)
                let faults = FileFaults(root: dir)
                defer { faults.disarm() }
                let all = (1...400).map { sampleRecord($0, lsn: UInt64($0)) }
                let log = try LogAppender(directory: dir, sourceID: Self.source,
                                          options: LogOptions(durability: .commit, frameSizeLimitBytes: 2 << 10))
                try log.append(Array(all[0..<50]))
                try log.close()
                // Written, never synced: the power goes before the sync.
                let unsynced = try LogAppender(directory: dir, options: LogOptions(durability: .none, frameSizeLimitBytes: 2 << 10))
                try unsynced.append(Array(all[50...]))
                faults.crashNow()
                try? unsynced.close()
                #expect(try LogDirectory(dir).segments().count == 1)
                faults.powerCut(keepingRandomPagesSeed: seed)
                do {
                    let reopened = try LogAppender(directory: dir)
                    #expect(reopened.lastLSN >= LSN(50), "seed \(seed)")
                    try reopened.close()
                    let back = try logRecords(dir)
                    #expect(back == Array(all.prefix(back.count)), "seed \(seed)")
                } catch {
                    Issue.record("seed \(seed): \(error)")
                }
            }
        }
    }

    /// A real SIGKILL of `tidemark log append` while it writes a batch of
    /// several frames: the next open recovers to the last whole frame, and
    /// the log verifies clean.
    @Test(.timeLimit(.minutes(10)))
    func sigkillDuringALargeMultiFrameBatch() async throws {
        try await withTemporaryDirectory { root in
            let log = root + "/log"
            let input = root + "/input.jsonl"
            let segment = log + "/" + SegmentFile.name(for: LSN(1))
            var previousEnd: UInt64 = 0
            for run in 0..<3 {
                // ~1.3 KB a line: 2,000 lines are one append of three 1 MiB frames.
                try CrashInput.write(run: run, count: 2_000, to: input)
                let child = try Child(["log", "append", "--log", log, "--durability", "commit", "--input", input])
                let plan: KillPlan = run == 0 ? .never : .afterFirstWrite(millis: .random(in: 0...40))
                let outcome = try await blocking { try CrashRun.run(child, plan: plan, watching: segment) }
                let reopen = try await tidemark(["log", "append", "--log", log], stdin: [])
                #expect(reopen.status == 0, "run \(run) (\(plan)): reopen refused: \(reopen.stderr)")
                let verify = try await tidemark(["log", "verify", "--log", log])
                #expect(verify.status == 0, "run \(run): \(verify.stdoutText) \(verify.stderr)")
                let head = try LogReader(directory: log).headLSN().rawValue
                #expect(head >= previousEnd, "run \(run)")
                if outcome.finished.reason == .exit, let printed = outcome.finished.stdoutText.split(separator: "\n").last.flatMap({ UInt64($0) }) {
                    #expect(head == printed, "run \(run): acknowledged \(printed), log ends at \(head)")
                }
                previousEnd = head
            }
        }
    }
}
