import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

/// Item 12: one damaged frame no longer hides the whole log.
@Suite struct DamagedLogTests {
    /// A durable log of several segments with one flipped byte in a middle
    /// segment's second frame. Returns the records, the damaged segment and
    /// the LSNs of the records before the damage.
    func damagedLog(_ dir: String) throws -> (all: [ChangeRecord], segment: String, before: Int, lostUpTo: UInt64) {
        let log = try LogAppender(directory: dir, sourceID: SourceID("damaged"),
                                  options: LogOptions(durability: .commit, segmentSizeLimitBytes: 4 << 10))
        let all = (1...200).map { sampleRecord($0, lsn: UInt64($0)) }
        for chunk in stride(from: 0, to: 200, by: 10) { try log.append(Array(all[chunk..<(chunk + 10)])) }
        try log.close()
        let segments = try LogDirectory(dir).segments()
        #expect(segments.count >= 3)
        let victim = segments[1]
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: victim.path)))
        let frames = TornBatchTests.frames(bytes)
        #expect(frames.count >= 2)
        bytes[frames[1].dataStart + 5] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: victim.path))
        return (all, victim.name, Int(frames[0].last), segments[2].baseLSN.rawValue - 1)
    }

    /// A reader that skips frames by their metadata (format 3) never reads
    /// a skipped frame's data: the metadata (itself checked) proves no
    /// record there can match, so damage in it cannot change the answer.
    /// A reader that needs the damaged frame stops there, as before.
    @Test(.timeLimit(.minutes(10)))
    func aSkippedDamagedFrameCannotChangeAnAnswerAndOneThatMattersStops() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let (all, segment, before, _) = try damagedLog(dir)
            let damaged = all.first { $0.lsn.rawValue == UInt64(before + 1) }!
            let key = try #require(damaged.key.first?.value)
            guard case .integer(let k) = key else { Issue.record("integer keys expected: \(key)"); return }
            let inIt = try await tidemark(["log", "history", "--log", dir, "--table", damaged.table, "--key", "\(k)", "--format", "jsonl"])
            #expect(inIt.status == 1, "history of a key in the damaged frame must stop: \(inIt.stdoutText)")
            #expect(inIt.stderr.contains(segment), "stderr: \(inIt.stderr)")
            let tail = try await tidemark(["log", "tail", "--log", dir, "--since", "1", "--table", damaged.table, "--key", "\(k)"])
            #expect(tail.status == 1 && tail.stderr.contains(segment), "stderr: \(tail.stderr)")
        }
    }

    /// Failed before the change: `log tail` printed nothing at all (its
    /// buffered output was dropped with the error); there was no
    /// --skip-damaged and no `log repair`.
    @Test(.timeLimit(.minutes(10)))
    func readersPrintWhatPrecedesDamageAndRepairQuarantinesIt() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let (all, segment, before, lostUpTo) = try damagedLog(dir)

            let tail = try await tidemark(["log", "tail", "--log", dir, "--since", "1"])
            #expect(tail.status == 1)
            #expect(tail.stdoutText.split(separator: "\n").count == before, "stdout: \(tail.stdoutText.prefix(200))")
            #expect(tail.stderrLines.count == 1 && tail.stderr.contains(segment) && tail.stderr.contains("LSN \(before + 1)"), "stderr: \(tail.stderr)")

            let skipping = try await tidemark(["log", "tail", "--log", dir, "--since", "1", "--skip-damaged"])
            #expect(skipping.status == 0, "stderr: \(skipping.stderr)")
            let lsns = skipping.stdoutText.split(separator: "\n").compactMap { CrashInput.splitLSN(Array($0.utf8)[...])?.0 }
            #expect(lsns == Array(1...UInt64(before)) + Array((lostUpTo + 1)...200))
            #expect(skipping.stderr.contains("skipped damaged") && skipping.stderr.contains(segment), "stderr: \(skipping.stderr)")

            let stats = try await tidemark(["log", "stats", "--log", dir])
            #expect(stats.status == 1)
            #expect(stats.stdoutText.contains("records       \(before)"), "stdout: \(stats.stdoutText)")
            #expect(stats.stderr.contains(segment))

            // Key 1 is not in the damaged frame, whose (checked) metadata
            // says so: the answer is whole without reading that frame's data.
            let history = try await tidemark(["log", "history", "--log", dir, "--table", "users", "--key", "1", "--format", "jsonl"])
            #expect(history.status == 0, "stderr: \(history.stderr)")
            #expect(history.stdoutText.split(separator: "\n").count == all.filter { $0.table == "users" && $0.key.first?.value == .integer(1) }.count)

            let dry = try await tidemark(["log", "repair", "--log", dir, "--dry-run"])
            #expect(dry.status == 0, "stderr: \(dry.stderr)")
            #expect(dry.stdoutText.contains("would move \(segment)"), "stdout: \(dry.stdoutText)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/quarantine"))
            #expect(try LogDirectory(dir).meta().gaps.isEmpty)

            let repair = try await tidemark(["log", "repair", "--log", dir, "--json"])
            #expect(repair.status == 0, "stderr: \(repair.stderr)")
            #expect(repair.stdoutText.contains("\"gap_first_lsn\":\(before + 1)") && repair.stdoutText.contains("\"gap_last_lsn\":\(lostUpTo)"), "stdout: \(repair.stdoutText)")
            let quarantined = try FileManager.default.contentsOfDirectory(atPath: dir + "/quarantine")
            #expect(quarantined.count == 1 && quarantined[0].hasPrefix(segment))
            #expect(try LogDirectory(dir).meta().gaps == [LSN(UInt64(before + 1))...LSN(lostUpTo)])

            // Readers go on past the recorded gap, and say so.
            let after = try await tidemark(["log", "tail", "--log", dir, "--since", "1"])
            #expect(after.status == 0, "stderr: \(after.stderr)")
            #expect(after.stderr.contains("LSN \(before + 1) to \(lostUpTo)"), "stderr: \(after.stderr)")
            #expect(after.stdoutText.split(separator: "\n").count == before + Int(200 - lostUpTo))
            let verify = try await tidemark(["log", "verify", "--log", dir])
            #expect(verify.status == 0, "verify: \(verify.stdoutText) \(verify.stderr)")
            // The gap as data: an object of LSNs, not "first-last" text.
            let statsAfter = try await tidemark(["log", "stats", "--log", dir, "--json"])
            let statsJSON = try JSONSerialization.jsonObject(with: Data(statsAfter.stdoutText.utf8)) as? [String: Any]
            let gaps = statsJSON?["gaps"] as? [[String: Any]]
            #expect(gaps?.count == 1 && gaps?.first?["first_lsn"] as? Int == before + 1 && gaps?.first?["last_lsn"] as? Int == Int(lostUpTo),
                    "stats: \(statsAfter.stdoutText)")

            // Appending continues after the log's end.
            let log = try LogAppender(directory: dir)
            #expect(log.lastLSN == LSN(200))
            try log.append([sampleRecord(201, lsn: 201)])
            try log.close()
            #expect(try logRecords(dir).last?.lsn == LSN(201))
            _ = all
        }
    }

    /// Damage in the last segment, in durable data: repair keeps the valid
    /// frames before it, records the gap up to the last LSN the damaged
    /// part held, and the appender continues after it (no LSN reused).
    @Test func repairOfTheLastSegmentContinuesAfterTheGap() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            let log = try LogAppender(directory: dir, sourceID: SourceID("damaged"), options: LogOptions(durability: .commit))
            for chunk in 0..<5 { try log.append((1...10).map { sampleRecord(chunk * 10 + $0, lsn: UInt64(chunk * 10 + $0)) }) }
            try log.close()
            let segment = try LogDirectory(dir).segments()[0]
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: segment.path)))
            let frames = TornBatchTests.frames(bytes)
            bytes[frames[2].dataStart + 3] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: segment.path))
            #expect(throws: LogError.self) { try LogAppender(directory: dir) }
            let report = try LogRepair.repair(LogDirectory(dir), dryRun: false)
            #expect(report.actions.map(\.gap) == [LSN(21)...LSN(50)])
            let reopened = try LogAppender(directory: dir)
            #expect(reopened.lastLSN == LSN(50))
            try reopened.append([sampleRecord(51, lsn: 51)])
            try reopened.close()
            #expect(try logRecords(dir).map(\.lsn.rawValue) == Array(1...20) + [51])
        }
    }
}
