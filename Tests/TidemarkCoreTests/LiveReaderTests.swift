import Foundation
import Synchronization
import Testing
import TidemarkTestSupport
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The audit readers (`tidemark log tail|history|diff|stats`, as processes)
/// beside a live writer and shipper that append frames and rotate segments
/// under them: every reader exits 0 and prints a consistent prefix of the
/// log as it ends up — never a torn frame, a gap, or an error about a
/// segment that grew or appeared while it read.
@Suite(.serialized) struct LiveReaderTests {
    @Test(.timeLimit(.minutes(10)))
    func readersBesideALiveWriterSeePrefixesOfTheFinalLog() throws {
        let seed = UInt64(Date().timeIntervalSince1970 * 1000) % 1_000_000
        print("LiveReaderTests seed \(seed)")
        try withTemporaryDirectory { dir in
            let db = dir + "/live.db"
            let logDir = dir + "/changelog"
            let sourceID = SourceID.random()
            do {
                let c = try Connection(path: db, mode: .readWriteCreate)
                try c.execute(AsOfTests.schema)
                try c.execute("INSERT INTO a(id, v, n) VALUES (1, 'first', 0.5)")
                try Capture.install(connection: c, sourceID: sourceID)
                try c.close()
            }
            let control = AsOfTests.Control()
            let writer = Thread {
                do {
                    let c = try Connection(path: db)
                    var rng = SplitMix(seed: seed)
                    // Paced, and slower after 6,000 writes, so the log stays a
                    // few thousand records however slowly the readers run
                    // (on a loaded machine), yet keeps growing until stopped.
                    var written = 0
                    while !control.stopWriter.load(ordering: .acquiring) {
                        written += 1
                        try AsOfTests.write(c, &rng)
                        usleep(written < 6_000 ? 2_000 : 50_000)
                        if rng.chance(4) { try c.execute("UPDATE a SET v = 'touch' WHERE id = 1") }
                    }
                    try c.close()
                } catch {
                    control.fail("writer: \(error)")
                }
                control.paused.store(true, ordering: .releasing)
            }
            let shipperThread = Thread {
                do {
                    // Small frames and segments: readers meet frames being
                    // appended and segments being created while they read.
                    let log = try LogAppender(directory: logDir, sourceID: sourceID,
                                              options: LogOptions(durability: .none, segmentSizeLimitBytes: 16 << 10))
                    let shipper = try Shipper(connection: try Connection(path: db), appender: log,
                                              options: Shipper.Options(batchLimit: 20, idlePauseMillis: 2))
                    try shipper.run(until: { control.stopShipper.load(ordering: .acquiring) })
                    try log.close()
                } catch {
                    control.fail("shipper: \(error)")
                }
                control.shipperDone.store(true, ordering: .releasing)
            }
            writer.start()
            shipperThread.start()
            // The first frame, so every reader below finds a log.
            for _ in 0..<5_000 where !FileManager.default.fileExists(atPath: logDir) || ((try? LogReader(directory: logDir).headLSN()) ?? .zero) == .zero {
                usleep(1_000)
            }
            let follower = try Child.started(try tidemarkExecutable(), ["log", "tail", "--log", logDir, "--since", "1", "--follow"])

            // Each round: a tail from the start (a prefix of the final log),
            // then readers bounded by the last LSN that tail printed (records
            // up to it never change, so their output must equal the same
            // command's on the final log).
            var tails: [String] = [], bounded: [(args: [String], stdout: String)] = []
            for round in 0..<4 {
                // The log has grown since the last round's tail (the writer
                // never stops on its own), so each round reads a new prefix.
                let previous = tails.last.flatMap { $0.split(separator: "\n").last }.flatMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["lsn"] as? Int
                } ?? 0
                for _ in 0..<3_000 where ((try? LogReader(directory: logDir).headLSN().rawValue) ?? 0) <= UInt64(previous) { usleep(10_000) }
                let tail = try runTidemark(["log", "tail", "--since", "1", "--log", logDir], in: dir, timeoutSeconds: 60)
                #expect(tail.status == 0 && tail.stderr.isEmpty, "seed \(seed): tail beside the writer: \(tail.stderr)")
                tails.append(tail.stdout)
                guard let last = tail.stdout.split(separator: "\n").last,
                      let lsn = (try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])?["lsn"] as? Int else {
                    Issue.record("seed \(seed): round \(round): no record in \(tail.stdout.prefix(200))")
                    break
                }
                for args in [["history", "--table", "a", "--key", "1", "--format", "jsonl", "--until", "\(lsn)"],
                             ["history", "--table", "b", "--key", #"{"k1":"x","k2":1}"#, "--until", "\(lsn)"],
                             ["diff", "--since", "1", "--until", "\(lsn)", "--json"],
                             ["tail", "--since", "\(max(1, lsn - 50))", "--until", "\(lsn)", "--where", "v=touch"],
                             ["stats", "--until", "\(lsn)", "--json"]] {
                    let r = try runTidemark(["log"] + args + ["--log", logDir], in: dir, timeoutSeconds: 60)
                    #expect(r.status == 0 && r.stderr.isEmpty, "seed \(seed): \(args) beside the writer: \(r.stderr)")
                    bounded.append((args, r.stdout))
                }
            }
            control.stopWriter.store(true, ordering: .releasing)
            control.waitUntil(control.paused, is: true)
            // Let the shipper drain the outbox, then stop it.
            for _ in 0..<5_000 {
                let c = try Connection(path: db, mode: .readOnly)
                let left = try c.integer("SELECT count(*) FROM _tidemark_outbox")
                try c.close()
                if left == 0 { break }
                usleep(1_000)
            }
            control.stopShipper.store(true, ordering: .releasing)
            control.waitUntil(control.shipperDone, is: true)
            if let failure = control.failure.withLock({ $0 }) { Issue.record("\(failure)"); follower.sendSignal(SIGKILL); return }

            let final = try runTidemark(["log", "tail", "--since", "1", "--log", logDir], in: dir)
            try #require(final.status == 0, "\(final.stderr)")
            let all = final.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            let segments = try FileManager.default.contentsOfDirectory(atPath: logDir).filter { $0.hasSuffix(".tmlog") || $0.contains("seg") }
            print("LiveReaderTests: \(all.count - 1) records, \(segments.count) segment files, \(tails.count) tails read while writing")
            #expect(all.count > 200, "seed \(seed): the writer should have written more")
            // Each tail read while writing is a prefix of the final log.
            for (i, t) in tails.enumerated() {
                #expect(final.stdout.hasPrefix(t), "seed \(seed): tail \(i) (\(t.utf8.count) bytes) is not a prefix of the final log")
            }
            #expect(Set(tails).count > 1, "the reads should have seen the log grow")
            for (args, stdout) in bounded {
                let again = try runTidemark(["log"] + args + ["--log", logDir], in: dir)
                #expect(again.status == 0, "\(again.stderr)")
                #expect(again.stdout == stdout, "seed \(seed): \(args) read beside the writer differs from the same read of the final log")
            }
            // The follower printed every record exactly once, in order.
            let size = final.stdout.utf8.count
            for _ in 0..<200 where follower.stdoutText.utf8.count < size { usleep(50_000) }
            follower.sendSignal(SIGTERM)
            _ = try follower.wait(timeoutSeconds: 10)
            #expect(follower.stdoutText == final.stdout, "seed \(seed): tail --follow printed \(follower.stdoutText.utf8.count) bytes, the log holds \(size): \(follower.stderrText)")
        }
    }
}
