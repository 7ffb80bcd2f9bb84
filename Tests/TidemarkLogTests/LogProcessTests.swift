import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkLog
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The log as other processes see it: the real `tidemark` executable, killed
/// with SIGKILL mid-append, following across rotation while this process
/// appends, refused as a second appender, and its error and output contracts.
///
/// Serialized: the crash test is CPU-bound and the follow test measures a
/// latency, both of which a parallel neighbour on a 2-core machine distorts.
@Suite(.serialized) struct LogProcessTests {

    // MARK: 1. SIGKILL during commit-durability appends

    /// Runs `tidemark log append --durability commit` again and again, each
    /// time SIGKILLing it at a random moment, then checks the promise of
    /// `commit`: every invocation that printed its last LSN has all its
    /// records in the log at exactly the LSNs it reported; the rest left a
    /// prefix of theirs (or nothing); the log reopens, verifies clean, has
    /// dense strictly increasing LSNs, and every record reads back byte for
    /// byte as it was sent.
    // The bound is generous: Swift Testing counts from when the test is
    // scheduled, and in a full parallel run its neighbours share 2 cores.
    @Test(.timeLimit(.minutes(10)))
    func sigkillDuringCommitAppendsLosesNothingAcknowledged() async throws {
        try await withTemporaryDirectory { root in
            let log = root + "/log"
            let input = root + "/input.jsonl"
            let runs = 30
            let recordsPerRun = 1000

            // Runs 0 and 1 are never killed: run 0 creates the log and
            // measures a whole run, run 1 how long a run goes on after its
            // first write reaches the segment (the write phase). A debug build
            // spends most of a run parsing, so a fixed 0–30 ms delay would
            // only ever hit the parser. The other runs take turns:
            //   run % 3 == 0: killed at a random moment up to twice the last
            //                 finished run (runs slow down as the log grows,
            //                 since opening scans it), so some finish;
            //   run % 3 == 1: at a random moment of the write phase;
            //   run % 3 == 2: as soon as the segment grows, to land inside a
            //                 write (a torn frame).
            let segment = log + "/" + SegmentFile.name(for: LSN(1))
            var acknowledged: [Int: UInt64] = [:]
            var killedAfterGrowth: Set<Int> = []
            var recoveries = 0
            var runMillis = 0.0
            var writeMillis = 0.0
            var generateMillis = 0.0
            let loopStart = ContinuousClock.now
            for run in 0..<runs {
                let generateStart = ContinuousClock.now
                try CrashInput.write(run: run, count: recordsPerRun, to: input)
                generateMillis += (ContinuousClock.now - generateStart).millis
                let plan: KillPlan = switch run {
                case 0, 1: .never
                case _ where run % 3 == 0: .afterStart(millis: .random(in: 0...(2 * runMillis)))
                case _ where run % 3 == 1: .afterFirstWrite(millis: .random(in: 0...writeMillis))
                default: .onFirstWrite
                }
                let child = try Child(["log", "append", "--log", log, "--durability", "commit", "--input", input])
                let outcome = try await blocking { try CrashRun.run(child, plan: plan, watching: segment) }
                let finished = outcome.finished
                switch run {
                case 0: runMillis = outcome.millis
                case 1: writeMillis = outcome.writeMillis ?? outcome.millis
                default: if outcome.killedMidWrite { killedAfterGrowth.insert(run) }
                }
                if run < 2 {
                    try #require(finished.status == 0 && finished.reason == .exit, "calibration run \(run) failed: \(finished.stderr)")
                }
                if finished.stderr.contains("recovered log") { recoveries += 1 }
                if let printed = finished.stdoutText.split(separator: "\n").last.flatMap({ UInt64($0) }) {
                    acknowledged[run] = printed
                    if finished.reason == .exit && run > 1 { runMillis = outcome.millis }
                } else {
                    // Killed before acknowledging; anything else is a failure of the CLI.
                    #expect(finished.reason == .uncaughtSignal && finished.status == SIGKILL,
                            "run \(run) (\(plan)) ended with \(finished.reason) \(finished.status) without printing an LSN: \(finished.stderr)")
                }
            }
            let loopMillis = (ContinuousClock.now - loopStart).millis
            let checkStart = ContinuousClock.now
            #expect(try LogDirectory(log).segments().count == 1, "the test watches one segment; it must not rotate")

            // Reopening for append (empty input) cuts a torn tail, then the log must verify clean.
            let reopen = try await tidemark(["log", "append", "--log", log], stdin: [])
            #expect(reopen.status == 0, "reopen: \(reopen.stderr)")
            if reopen.stderr.contains("recovered log") { recoveries += 1 }
            let verify = try await tidemark(["log", "verify", "--log", log])
            #expect(verify.status == 0 && verify.stdoutText.hasPrefix("ok:"), "verify: \(verify.stdoutText) \(verify.stderr)")

            let tail = try await tidemark(["log", "tail", "--log", log, "--since", "1"], timeoutSeconds: 90)
            try #require(tail.status == 0, "tail: \(tail.stderr)")

            // Walk the log: LSNs are dense from 1 (every append assigned
            // them after the recovered end), runs appear in order, and each
            // run's records are a prefix of what it sent.
            var expectedLSN: UInt64 = 1
            var present: [Int: (count: Int, lastLSN: UInt64)] = [:]
            var previousRun = -1
            var mismatches = 0
            try forEachLine(tail.stdoutBytes) { line in
                let (lsn, rest) = try #require(CrashInput.splitLSN(line), "unparsable line at LSN \(expectedLSN)")
                #expect(lsn == expectedLSN, "LSN \(lsn) where \(expectedLSN) was expected")
                expectedLSN = lsn + 1
                let (run, seq) = try #require(CrashInput.runAndSeq(rest), "no key in line at LSN \(lsn)")
                #expect(run >= previousRun, "run \(run) after run \(previousRun) at LSN \(lsn)")
                if run != previousRun { #expect(present[run] == nil, "run \(run) appears twice") }
                previousRun = run
                let before = present[run]?.count ?? 0
                #expect(seq == before, "run \(run): record \(seq) where \(before) was expected (not a prefix or a duplicate)")
                present[run] = (before + 1, lsn)
                if mismatches < 5 && !rest.elementsEqual(CrashInput.line(run: run, seq: seq)) {
                    mismatches += 1
                    Issue.record("record \(seq) of run \(run) at LSN \(lsn) differs from what was sent:\n\(String(decoding: rest, as: UTF8.self))")
                }
            }
            for (run, lsn) in acknowledged.sorted(by: { $0.key < $1.key }) {
                #expect(present[run]?.count == recordsPerRun, "acknowledged run \(run) has \(present[run]?.count ?? 0) of \(recordsPerRun) records")
                #expect(present[run]?.lastLSN == lsn, "run \(run) acknowledged LSN \(lsn) but its last record is at \(present[run]?.lastLSN ?? 0)")
            }
            let unacked = (0..<runs).filter { acknowledged[$0] == nil }
            let partial = unacked.filter { (1..<recordsPerRun).contains(present[$0]?.count ?? 0) }.count
            let completeUnacked = unacked.filter { present[$0]?.count == recordsPerRun }.count
            let midWrite = killedAfterGrowth.filter { acknowledged[$0] == nil }.count
            print("""
                crash test: a run takes \(Int(runMillis)) ms, its writes \(Int(writeMillis)) ms; \
                \(acknowledged.count)/\(runs) runs acknowledged; of the rest \(partial) left a partial prefix, \
                \(completeUnacked) all records, \(unacked.count - partial - completeUnacked) nothing; \
                \(midWrite) killed mid-write; \(recoveries) torn tails cut on reopen; \(expectedLSN - 1) records in the log; \
                runs \(Int(loopMillis)) ms (generating input \(Int(generateMillis)) ms), checks \(Int((ContinuousClock.now - checkStart).millis)) ms
                """)
            // Without kills inside the write phase the test would prove little.
            #expect(midWrite > 0, "no kill landed between the first write and the acknowledgement")
        }
    }

    // MARK: 2. Following across processes and rotation

    /// A `tidemark log tail --follow` child sees every record this process
    /// appends, in order, across many segment rotations (4 KiB segments), and a record
    /// appended while it idles shows up promptly.
    @Test(.timeLimit(.minutes(10)))
    func followerInAnotherProcessSeesEveryRecordAcrossRotation() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let appender = try LogAppender(directory: dir, options: LogOptions(durability: .none, segmentSizeLimitBytes: 4096))
            let follower = try Child(["log", "tail", "--log", dir, "--since", "1", "--follow"], splitLines: true)
            try follower.start()
            defer { follower.stopAndReap() }

            var expected: [[UInt8]] = []
            var rng = SplitMix64(seed: 0x71de)
            var i = 0
            for batch in 0..<60 {
                let count = Int(rng.next() % 30) + 1
                let records = (0..<count).map { k in sampleRecord(i + k) }
                let range = try appender.append(assigningLSNs: records)
                for (k, lsn) in (range.lowerBound.rawValue...range.upperBound.rawValue).enumerated() {
                    var r = records[k]
                    r.lsn = LSN(lsn)
                    expected.append(Array(r.jsonLine.utf8))
                }
                i += count
                try await Task.sleep(for: .milliseconds(batch % 7 == 0 ? 20 : 2))
            }
            let segments = try segmentFiles(dir).count
            #expect(segments >= 5, "expected many rotations, got \(segments) segments")

            let delivered = await follower.waitForLines(expected.count, timeoutSeconds: 20)
            #expect(delivered, "follower printed \(follower.lineCount) of \(expected.count) lines; stderr: \(follower.stderrText)")
            let lines = follower.lines
            #expect(lines.count == expected.count)
            for (n, (got, want)) in zip(lines, expected).enumerated() where got.bytes != want {
                Issue.record("line \(n + 1) of the follower differs:\n got \(String(decoding: got.bytes, as: UTF8.self))\nwant \(String(decoding: want, as: UTF8.self))")
                break
            }

            // Latency: let the follower go idle (polling), append one record, time its arrival.
            var latencies: [Double] = []
            for round in 0..<5 {
                try await Task.sleep(for: .milliseconds(100))
                let before = follower.lineCount
                let appended = ContinuousClock.now
                try appender.append(assigningLSNs: [sampleRecord(100_000 + round)])
                let arrived = await follower.waitForLines(before + 1, timeoutSeconds: 5)
                try #require(arrived, "record appended after an idle period never reached the follower")
                latencies.append((follower.lines[before].arrival - appended).millis)
            }
            print("follow latency after idle (ms): \(latencies.map { String(format: "%.1f", $0) }.joined(separator: ", ")) over \(segments) segments")
            for ms in latencies { #expect(ms < 500, "follower took \(ms) ms to show a new record") }

            try appender.close()
            let exit = try await follower.terminate()
            #expect(exit.reason == .uncaughtSignal && exit.status == SIGTERM, "follower ended with \(exit.reason) \(exit.status): \(exit.stderr)")
            #expect(exit.stderr.isEmpty, "follower wrote to stderr: \(exit.stderr)")
        }
    }

    // MARK: 3. One appender across processes

    @Test(.timeLimit(.minutes(10)))
    func aSecondAppenderInAnotherProcessIsRefused() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let appender = try LogAppender(directory: dir, options: LogOptions(durability: .none))
            try appender.append(assigningLSNs: [sampleRecord(1)])
            let line = Array((sampleRecord(2).jsonLineWithoutLSN + "\n").utf8)

            let refused = try await tidemark(["log", "append", "--log", dir], stdin: line)
            #expect(refused.status != 0)
            #expect(refused.stdout.isEmpty)
            #expect(refused.stderrLines.count == 1, "stderr: \(refused.stderr)")
            #expect(refused.stderr.contains("another appender"), "stderr: \(refused.stderr)")
            #expect(refused.stderr.contains("pid \(getpid())"), "the message should name the holder: \(refused.stderr)")
            #expect(appender.lastLSN == LSN(1))

            // Closing releases the lock for the next process.
            try appender.close()
            let accepted = try await tidemark(["log", "append", "--log", dir], stdin: line)
            #expect(accepted.status == 0, "stderr: \(accepted.stderr)")
            #expect(accepted.stdoutText == "2\n")
        }
    }

    /// Item 10. Failed before the change: `log append` exited 0 and wrote
    /// LSN 8, the seq the capture outbox hands out next.
    @Test(.timeLimit(.minutes(10)))
    func logAppendIntoACaptureLogIsRefused() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let capture = try LogAppender(directory: dir, sourceID: SourceID("captured"), options: LogOptions(durability: .none))
            try capture.claim(.capture, installation: "installation-1")
            try capture.append([sampleRecord(1, lsn: 7)])
            try capture.close()
            let line = Array((sampleRecord(2).jsonLineWithoutLSN + "\n").utf8)
            let refused = try await tidemark(["log", "append", "--log", dir], stdin: line)
            #expect(refused.status == 1)
            #expect(refused.stderrLines.count == 1, "stderr: \(refused.stderr)")
            #expect(refused.stderr.contains("written by capture"), "stderr: \(refused.stderr)")
            #expect(try logRecords(dir).map(\.lsn) == [LSN(7)])
            #expect(try LogDirectory(dir).meta().writer == .capture)

            // A log made by `log append` records its kind.
            let own = root + "/own"
            let made = try await tidemark(["log", "append", "--log", own], stdin: line)
            #expect(made.status == 0, "stderr: \(made.stderr)")
            #expect(try LogDirectory(own).meta().writer == .append)
        }
    }

    // MARK: 4. The CLI's error and output contract

    @Test(.timeLimit(.minutes(10)))
    func verifyOfAMissingLogIsOneClearLine() async throws {
        try await withTemporaryDirectory { root in
            let missing = root + "/nonexistent"
            let r = try await tidemark(["log", "verify", "--log", missing])
            #expect(r.status != 0)
            #expect(r.stderrLines.count == 1, "stderr: \(r.stderr)")
            #expect(r.stderr.contains(missing) && r.stderr.contains("does not exist"), "stderr: \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: missing), "verify must not create the log")
        }
    }

    /// `--input -` is standard input, the Unix way (it tried to open a file
    /// named "-"); `--input FILE` and plain stdin read the same records.
    @Test(.timeLimit(.minutes(10)))
    func inputDashIsStandardInput() async throws {
        try await withTemporaryDirectory { root in
            let lines = (1...3).map { sampleRecord($0).jsonLineWithoutLSN }.joined(separator: "\n") + "\n"
            let dash = try await tidemark(["log", "append", "--log", root + "/a", "--input", "-"], stdin: Array(lines.utf8))
            #expect(dash.status == 0, "stderr: \(dash.stderr)")
            try lines.write(toFile: root + "/in.jsonl", atomically: true, encoding: .utf8)
            let file = try await tidemark(["log", "append", "--log", root + "/b", "--input", root + "/in.jsonl"], stdin: [])
            #expect(file.status == 0, "stderr: \(file.stderr)")
            let plain = try await tidemark(["log", "append", "--log", root + "/c"], stdin: Array(lines.utf8))
            #expect(plain.status == 0, "stderr: \(plain.stderr)")
            let images = try [root + "/a", root + "/b", root + "/c"].map { try logRecords($0).map { "\($0.table) \($0.operation) \($0.key) \(String(describing: $0.after))" } }
            #expect(images[0].count == 3 && images[0] == images[1] && images[1] == images[2])
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func aMalformedThirdLineAppendsNothing() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let seed = (1...5).map { sampleRecord($0).jsonLineWithoutLSN }.joined(separator: "\n") + "\n"
            let created = try await tidemark(["log", "append", "--log", dir], stdin: Array(seed.utf8))
            try #require(created.status == 0, "stderr: \(created.stderr)")
            let headBefore = try LogReader(directory: dir).headLSN()
            let recordsBefore = try logRecords(dir)
            #expect(headBefore == LSN(5))

            let bad = [
                sampleRecord(6).jsonLineWithoutLSN,
                sampleRecord(7).jsonLineWithoutLSN,
                #"{"table":"users","op":"insert","key":{"id":8},"after":{"id":8,"ok":true}}"#,
                sampleRecord(9).jsonLineWithoutLSN,
            ].joined(separator: "\n") + "\n"
            let r = try await tidemark(["log", "append", "--log", dir], stdin: Array(bad.utf8))
            #expect(r.status != 0)
            #expect(r.stdout.isEmpty)
            #expect(r.stderrLines.count == 1, "stderr: \(r.stderr)")
            #expect(r.stderr.contains("line 3"), "stderr: \(r.stderr)")
            #expect(try LogReader(directory: dir).headLSN() == headBefore)
            #expect(try logRecords(dir) == recordsBefore)
        }
    }

    /// A flipped byte in the first (mid-log) or last frame: exit 1, naming
    /// the segment, on stderr.
    @Test(.timeLimit(.minutes(10)), arguments: ["first frame", "last frame"])
    func verifyOfAFlippedByteExitsOneNamingTheSegment(_ where_: String) async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            // Three invocations, three frames in one segment.
            for run in 0..<3 {
                let lines = (0..<20).map { sampleRecord(run * 20 + $0).jsonLineWithoutLSN }.joined(separator: "\n")
                let r = try await tidemark(["log", "append", "--log", dir, "--durability", "none"], stdin: Array(lines.utf8))
                try #require(r.status == 0, "stderr: \(r.stderr)")
            }
            let segments = try LogDirectory(dir).segments()
            try #require(segments.count == 1)
            let name = segments[0].name
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: segments[0].path)))
            // Inside the compressed data of the chosen frame.
            let offset = where_ == "first frame"
                ? TornBatchTests.frames(bytes)[0].dataStart + 4
                : bytes.count - 6
            bytes[offset] ^= 0x40
            try Data(bytes).write(to: URL(fileURLWithPath: segments[0].path))

            let r = try await tidemark(["log", "verify", "--log", dir])
            #expect(r.status == 1 && r.reason == .exit, "exit \(r.status), stderr: \(r.stderr)")
            #expect(r.stderrLines.count == 1, "stderr: \(r.stderr)")
            #expect(r.stderr.contains(name), "stderr does not name \(name): \(r.stderr)")
            #expect(r.stdoutText.hasPrefix("damaged:"), "stdout: \(r.stdoutText)")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func historyFindsARowByJSONKeyAndByBareValue() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            // Row 1 changes three times among other rows.
            let records = [
                ChangeRecord(lsn: .zero, timestampMicros: 1_790_000_000_000_000, table: "users", operation: .insert,
                             key: [Field("id", .integer(1))], before: nil, after: [Field("id", .integer(1)), Field("email", .text("a@x"))]),
                sampleRecord(2), sampleRecord(11),
                ChangeRecord(lsn: .zero, timestampMicros: 1_790_000_000_000_001, table: "users", operation: .update,
                             key: [Field("id", .integer(1))], before: [Field("id", .integer(1)), Field("email", .text("a@x"))],
                             after: [Field("id", .integer(1)), Field("email", .text("b@x"))]),
                sampleRecord(1, table: "orders"),
                ChangeRecord(lsn: .zero, timestampMicros: 1_790_000_000_000_002, table: "users", operation: .delete,
                             key: [Field("id", .integer(1))], before: [Field("id", .integer(1)), Field("email", .text("b@x"))], after: nil),
            ]
            let input = records.map(\.jsonLineWithoutLSN).joined(separator: "\n")
            let created = try await tidemark(["log", "append", "--log", dir], stdin: Array(input.utf8))
            try #require(created.status == 0, "stderr: \(created.stderr)")
            let expected = [1, 4, 6].map { lsn in
                var r = records[lsn - 1]
                r.lsn = LSN(UInt64(lsn))
                return r.jsonLine + "\n"
            }.joined()

            for key in [#"{"id":1}"#, "1"] {
                let r = try await tidemark(["log", "history", "--log", dir, "--table", "users", "--key", key, "--format", "jsonl"])
                #expect(r.status == 0, "--key \(key): \(r.stderr)")
                #expect(r.stdoutText == expected, "--key \(key)")
                let text = try await tidemark(["log", "history", "--log", dir, "--table", "users", "--key", key])
                #expect(text.status == 0 && !text.stdoutText.contains("no changes"), "--key \(key): \(text.stdoutText)")
            }
            let none = try await tidemark(["log", "history", "--log", dir, "--table", "users", "--key", "999"])
            #expect(none.status == 0 && none.stdoutText.contains("no changes"), "\(none.stdoutText)")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func statsJSONParsesAndCountsRecords() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let input = (0..<50).map { sampleRecord($0, table: $0 < 30 ? "users" : "orders").jsonLineWithoutLSN }.joined(separator: "\n")
            let created = try await tidemark(["log", "append", "--log", dir], stdin: Array(input.utf8))
            try #require(created.status == 0, "stderr: \(created.stderr)")

            let r = try await tidemark(["log", "stats", "--log", dir, "--json"])
            try #require(r.status == 0, "stderr: \(r.stderr)")
            #expect(r.stdoutText.hasSuffix("}\n") && r.stdoutText.split(separator: "\n").count == 1)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdoutBytes)) as? [String: Any])
            #expect((object["records"] as? NSNumber)?.intValue == 50)
            #expect((object["first_lsn"] as? NSNumber)?.intValue == 1)
            #expect((object["last_lsn"] as? NSNumber)?.intValue == 50)
            #expect((object["segments"] as? NSNumber)?.intValue == 1)
            let tables = try #require(object["tables"] as? [String: Any])
            let users = try #require(tables["users"] as? [String: Any])
            let orders = try #require(tables["orders"] as? [String: Any])
            let total = [users, orders].flatMap { $0.values }.compactMap { ($0 as? NSNumber)?.intValue }.reduce(0, +)
            #expect(total == 50)
            // sampleRecord cycles insert, update, update, delete.
            #expect((users["insert"] as? NSNumber)?.intValue == 8 && (users["update"] as? NSNumber)?.intValue == 15)
        }
    }

    /// Output that cannot be written is an error, not a silent exit 0.
    @Test(.timeLimit(.minutes(10)))
    func outputToAFullDeviceFailsLoudly() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let input = (0..<20).map { sampleRecord($0).jsonLineWithoutLSN }.joined(separator: "\n")
            try #require(try await tidemark(["log", "append", "--log", dir], stdin: Array(input.utf8)).status == 0)
            let full = try #require(FileHandle(forWritingAtPath: "/dev/full"), "this test needs Linux's /dev/full")
            defer { try? full.close() }
            for command in [["log", "tail", "--log", dir], ["log", "history", "--log", dir, "--table", "users", "--key", "1"]] {
                let r = try await tidemark(command, stdout: full)
                #expect(r.reason == .exit && r.status == 1, "\(command.joined(separator: " ")): exit \(r.status)")
                #expect(r.stderrLines.count == 1 && r.stderr.contains("cannot write to standard output"), "\(r.stderr)")
            }
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func tailRefusesANegativeLineCount() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            try #require(try await tidemark(["log", "append", "--log", dir], stdin: Array(sampleRecord(1).jsonLineWithoutLSN.utf8)).status == 0)
            let r = try await tidemark(["log", "tail", "--log", dir, "--lines=-1"])
            #expect(r.reason == .exit && r.status != 0, "crashed: \(r.reason) \(r.status)")
            #expect(r.stderr.contains("--lines must be 0 or more"), "\(r.stderr)")
            let none = try await tidemark(["log", "tail", "--log", dir, "--lines", "0"])
            #expect(none.status == 0 && none.stdout.isEmpty)
        }
    }

    // MARK: 5. Round trip through the CLI

    /// Lines in the canonical form `tail` writes, with every value edge,
    /// go in through `append` and come out of `tail` byte for byte.
    @Test(.timeLimit(.minutes(10)))
    func everyValueEdgeRoundTripsByteForByteThroughTheCLI() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let earliest = Timestamp(microsSinceEpoch: .min).description
            let latest = Timestamp(microsSinceEpoch: .max).description
            let lines = [
                #"{"lsn":1,"ts":"2026-11-25T11:00:00.123456Z","table":"edge","op":"insert","key":{"id":-9223372036854775808},"after":{"id":-9223372036854775808,"max":9223372036854775807,"zero":0,"minus_one":-1,"negzero":-0.0,"one":1.0,"huge":1e+308,"dmax":1.7976931348623157e+308,"tiny":5e-324,"tenth":0.1,"neg":-2.5e-10,"inf":{"$real":"inf"},"ninf":{"$real":"-inf"},"nan":{"$real":"nan"},"null":null}}"#,
                #"{"lsn":2,"ts":"1969-12-31T23:59:59.999999Z","table":"édition ☃","op":"update","key":{"name":"","k2":"𝄞"},"before":{"name":"","empty_blob":{"$blob":""},"b1":{"$blob":"AA=="},"b2":{"$blob":"AAE="},"b3":{"$blob":"/+8A"}},"after":{"name":"café 日本語 🎉 \#u{7F}\#u{2028}","ctl":"tab\u0009nl\u000acr\u000dnul\u0000esc\u001b","q":"say \"hi\" \\ back / slash","bin":{"$blob":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}}"#,
                #"{"lsn":10,"ts":"0001-01-01T00:00:00.000000Z","table":"t","op":"delete","key":{"a":1,"b":"x","c":null},"before":{"a":1,"b":"x","c":null,"":"empty column name"}}"#,
                #"{"lsn":11,"ts":"\#(earliest)","table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#,
                #"{"lsn":9223372036854775808,"ts":"\#(latest)","table":"t","op":"insert","key":{"id":2},"after":{"id":2}}"#,
                #"{"lsn":18446744073709551614,"ts":"9999-12-31T23:59:59.999999Z","table":"t","op":"update","key":{"id":2},"before":{"id":2},"after":{"id":3}}"#,
            ]
            let text = lines.map { $0 + "\n" }.joined()
            let appended = try await tidemark(["log", "append", "--log", dir], stdin: Array(text.utf8))
            try #require(appended.status == 0, "stderr: \(appended.stderr)")
            #expect(appended.stdoutText == "18446744073709551614\n")

            let tail = try await tidemark(["log", "tail", "--log", dir, "--since", "1"])
            #expect(tail.status == 0, "stderr: \(tail.stderr)")
            let got = tail.stdoutText.split(separator: "\n", omittingEmptySubsequences: false)
            for (n, want) in lines.enumerated() where n >= got.count || got[n] != want {
                Issue.record("line \(n + 1) changed:\nsent \(want)\n got \(n < got.count ? String(got[n]) : "(missing)")")
            }
            #expect(tail.stdoutText == text)
        }
    }

    /// The largest LSN is a valid LSN: it can be appended, and the log
    /// then refuses further appends with a message instead of crashing.
    @Test(.timeLimit(.minutes(10)))
    func theLargestLSNIsTheEndOfTheLog() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let last = #"{"lsn":18446744073709551615,"ts":"2026-11-25T11:00:00.000000Z","table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#
            let appended = try await tidemark(["log", "append", "--log", dir], stdin: Array((last + "\n").utf8))
            #expect(appended.reason == .exit && appended.status == 0, "stderr: \(appended.stderr)")
            #expect(appended.stdoutText == "18446744073709551615\n")
            let tail = try await tidemark(["log", "tail", "--log", dir])
            #expect(tail.stdoutText == last + "\n")

            let more = #"{"table":"t","op":"insert","key":{"id":2},"after":{"id":2}}"#
            let refused = try await tidemark(["log", "append", "--log", dir], stdin: Array((more + "\n").utf8))
            #expect(refused.reason == .exit && refused.status != 0, "crashed instead of refusing: \(refused.stderr)")
            #expect(refused.stderrLines.count == 1, "stderr: \(refused.stderr)")
            #expect(refused.stderr.contains("line 1") && refused.stderr.contains("no LSN is left"), "stderr: \(refused.stderr)")
            let empty = try await tidemark(["log", "append", "--log", dir], stdin: [])
            #expect(empty.reason == .exit && empty.status == 0, "an empty append must not crash: \(empty.stderr)")
            #expect(empty.stdoutText == "18446744073709551615\n")

            // The library refuses too, rather than trapping.
            let appender = try LogAppender(directory: dir)
            #expect(throws: LogError.self) { try appender.append(assigningLSNs: [sampleRecord(2)]) }
            try appender.close()
            #expect(try await tidemark(["log", "verify", "--log", dir]).status == 0)
        }
    }
}

// MARK: - Crash test input

/// The records of the crash test: run `r`'s record `s` has key
/// `r * 1_000_000 + s`, a fixed timestamp, a small blob and ~1.1 KB of
/// random text, so a thousand records make two frames (a frame holds about
/// 1 MiB of encoded records) and a kill can land between or inside their
/// writes. Text rather than a large blob because the debug CLI decodes
/// base64 slowly. Lines are in `tail`'s canonical form minus `lsn`.
enum CrashInput {
    static func line(run: Int, seq: Int) -> [UInt8] {
        let id = run * 1_000_000 + seq
        var rng = SplitMix64(seed: UInt64(id))
        let words = (0..<104).map { _ in rng.next() }
        let random = words.withUnsafeBytes { Data($0) }
        let ts = Timestamp(microsSinceEpoch: 1_790_000_000_000_000 + Int64(id)).description
        let text = #"{"ts":"\#(ts)","table":"crash","op":"insert","key":{"id":\#(id)},"after":{"id":\#(id),"run":\#(run),"seq":\#(seq),"note":"\#(random.base64EncodedString())","payload":{"$blob":"\#(random.prefix(16).base64EncodedString())"}}}"#
        return Array(text.utf8)
    }

    static func write(run: Int, count: Int, to path: String) throws {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 1300)
        for seq in 0..<count {
            bytes.append(contentsOf: line(run: run, seq: seq))
            bytes.append(0x0A)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// `{"lsn":N,REST` → (N, `{REST`).
    static func splitLSN(_ line: ArraySlice<UInt8>) -> (UInt64, [UInt8])? {
        let prefix = Array(#"{"lsn":"#.utf8)
        guard line.starts(with: prefix) else { return nil }
        var i = line.startIndex + prefix.count
        var lsn: UInt64 = 0
        while i < line.endIndex, line[i] >= 0x30, line[i] <= 0x39 {
            lsn = lsn * 10 + UInt64(line[i] - 0x30)
            i += 1
        }
        guard i < line.endIndex, line[i] == UInt8(ascii: ",") else { return nil }
        return (lsn, [UInt8(ascii: "{")] + line[(i + 1)...])
    }

    static func runAndSeq(_ rest: [UInt8]) -> (Int, Int)? {
        let marker = Array(#""key":{"id":"#.utf8)
        guard let start = rest.firstRange(of: marker)?.upperBound else { return nil }
        var id = 0
        var i = start
        while i < rest.count, rest[i] >= 0x30, rest[i] <= 0x39 {
            id = id * 10 + Int(rest[i] - 0x30)
            i += 1
        }
        return (id / 1_000_000, id % 1_000_000)
    }
}

/// When a crash-test run is killed.
enum KillPlan: Sendable, CustomStringConvertible {
    case never
    case afterStart(millis: Double)
    case afterFirstWrite(millis: Double)
    case onFirstWrite

    var description: String {
        switch self {
        case .never: "not killed"
        case .afterStart(let ms): "killed \(Int(ms)) ms after start"
        case .afterFirstWrite(let ms): "killed \(Int(ms)) ms after its first write"
        case .onFirstWrite: "killed on its first write"
        }
    }
}

enum CrashRun {
    struct Outcome: Sendable {
        var finished: Finished
        /// Start to exit.
        var millis: Double
        /// First write seen in the segment to exit.
        var writeMillis: Double?
        /// Whether the kill was sent after the first write, while the child ran.
        var killedMidWrite: Bool
    }

    /// Starts `child`, kills it as `plan` says while watching `segment` grow,
    /// and waits for it. Blocks: call through ``blocking(_:)``.
    static func run(_ child: Child, plan: KillPlan, watching segment: String) throws -> Outcome {
        let sizeBefore = fileSize(segment)
        let started = ContinuousClock.now
        try child.start()
        /// Polls often without starving the child of a core.
        func firstWrite(pollMicros: UInt32) -> ContinuousClock.Instant? {
            while child.isRunning {
                if fileSize(segment) != sizeBefore { return .now }
                usleep(pollMicros)
            }
            return nil
        }
        /// Sleeps until `ms` after `start`, or until the child ends (so
        /// `millis` below is the child's run time, not the sleep's).
        func sleep(_ ms: Double, after start: ContinuousClock.Instant) {
            while child.isRunning && (ContinuousClock.now - start).millis < ms { usleep(100) }
        }
        var grew: ContinuousClock.Instant?
        var killedMidWrite = false
        switch plan {
        case .never:
            grew = firstWrite(pollMicros: 100)
        case .afterStart(let ms):
            sleep(ms, after: started)
            child.sendSignal(SIGKILL)
        case .afterFirstWrite(let ms):
            grew = firstWrite(pollMicros: 100)
            sleep(ms, after: grew ?? .now)
            killedMidWrite = grew != nil && child.isRunning
            child.sendSignal(SIGKILL)
        case .onFirstWrite:
            grew = firstWrite(pollMicros: 20)
            killedMidWrite = grew != nil && child.isRunning
            child.sendSignal(SIGKILL)
        }
        let finished = try child.wait(timeoutSeconds: 60)
        let ended = ContinuousClock.now
        return Outcome(finished: finished, millis: (ended - started).millis,
                       writeMillis: grew.map { (ended - $0).millis }, killedMidWrite: killedMidWrite)
    }
}

/// The size of the file at `path`, or -1 if it does not exist.
func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : -1
}

/// Calls `body` with each line of `bytes` (without its newline).
func forEachLine(_ bytes: [UInt8], _ body: (ArraySlice<UInt8>) throws -> Void) rethrows {
    var start = 0
    while start < bytes.count {
        let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
        try body(bytes[start..<end])
        start = end + 1
    }
}

extension ChangeRecord {
    /// The JSON line without `"lsn"`, so `tidemark log append` assigns it.
    var jsonLineWithoutLSN: String {
        let line = jsonLine
        guard let comma = line.firstIndex(of: ",") else { return line }
        return "{" + line[line.index(after: comma)...]
    }
}
