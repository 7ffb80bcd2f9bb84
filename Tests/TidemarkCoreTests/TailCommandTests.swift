import Foundation
import TidemarkTestSupport
import Testing
import TidemarkLog

#if canImport(Glibc)
import Glibc
#endif

/// `tidemark log tail` as tail(1): the last 10 records by default, `-n N`
/// with every other option (always the last N of what matches), `--follow`
/// from the end. Run as the built executable.
@Suite struct TailCommandTests {
    static let tables = ["a", "b", "c"]

    /// A log of `count` records in frames of `perFrame` (small segments, so
    /// the tail crosses segments): table a/b/c in turn, key i % 17, op
    /// insert/update/delete in turn, column v = "v<i % 5>".
    static func makeLog(_ dir: String, count: Int = 300, perFrame: Int = 5) throws -> [ChangeRecord] {
        let log = try LogAppender(directory: dir, sourceID: SourceID("tail-test"),
                                  options: LogOptions(durability: .none, segmentSizeLimitBytes: 4 << 10))
        var all: [ChangeRecord] = []
        var batch: [ChangeRecord] = []
        for i in 1...count {
            let key = [Field("id", .integer(Int64(i % 17)))]
            let image = key + [Field("v", .text("v\(i % 5)"))]
            let op: ChangeOperation = [.insert, .update, .delete][i % 3]
            let r = ChangeRecord(lsn: LSN(UInt64(i)), timestampMicros: 1_790_000_000_000_000 + Int64(i) * 1_000_000,
                                 table: tables[i % 3], operation: op, key: key,
                                 before: op == .insert ? nil : image, after: op == .delete ? nil : image)
            batch.append(r)
            all.append(r)
            if batch.count == perFrame { try log.append(batch); batch = [] }
        }
        if !batch.isEmpty { try log.append(batch) }
        try log.close()
        return all
    }

    static func lsns(_ stdout: String) -> [Int] {
        stdout.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["lsn"] as? Int
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func lastTenByDefaultAndLinesWithEveryOption() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            let all = try Self.makeLog(dir)
            func tail(_ args: [String]) throws -> [Int] {
                let r = try runTidemark(["log", "tail", "--log", dir] + args, in: root)
                #expect(r.status == 0, "\(args): \(r.stderr)")
                return Self.lsns(r.stdout)
            }
            func last(_ n: Int, _ keep: (ChangeRecord) -> Bool) -> [Int] { all.filter(keep).suffix(n).map { Int($0.lsn.rawValue) } }

            #expect(try tail([]) == Array(291...300), "the last 10, as tail(1)")
            #expect(try tail(["-n", "3"]) == [298, 299, 300])
            #expect(try tail(["--lines", "0"]).isEmpty)
            #expect(try tail(["-n", "1000"]) == Array(1...300), "more lines than records: all of them")
            #expect(try tail(["--table", "a", "-n", "4"]) == last(4) { $0.table == "a" })
            #expect(try tail(["--table", "b"]) == last(10) { $0.table == "b" })
            #expect(try tail(["--op", "delete", "-n", "5"]) == last(5) { $0.operation == .delete })
            #expect(try tail(["--where", "v=v3", "-n", "6"]) == last(6) { $0.after?.last?.value == .text("v3") || $0.before?.last?.value == .text("v3") })
            #expect(try tail(["--table", "c", "--key", "4", "-n", "3"]) == last(3) { $0.table == "c" && $0.key.first?.value == .integer(4) })
            #expect(try tail(["--until", "100", "-n", "3"]) == [98, 99, 100])
            #expect(try tail(["--until", "100"]) == Array(91...100))
            // --since/--from without -n: every record from there on; with -n the last N of those.
            #expect(try tail(["--since", "250"]) == Array(250...300))
            #expect(try tail(["--from", "295"]) == Array(295...300))
            #expect(try tail(["--since", "250", "-n", "2"]) == [299, 300])
            #expect(try tail(["--since", "298", "-n", "10"]) == [298, 299, 300], "never before --since")
            #expect(try tail(["--since", "10", "--until", "40", "--table", "a", "-n", "2"]) == Array(last(2) { $0.table == "a" && (10...40).contains($0.lsn.rawValue) }))
            // Times (frame metadata) work the same way.
            let t = Timestamp(microsSinceEpoch: all[199].timestampMicros).description
            #expect(try tail(["--until", t, "-n", "2"]) == [199, 200])

            let text = try runTidemark(["log", "tail", "--log", dir, "--format", "text", "-n", "2"], in: root)
            #expect(text.status == 0 && text.stdout.split(separator: "\n").count == 2, "\(text.stdout)")
            let debezium = try runTidemark(["log", "tail", "--log", dir, "--format", "debezium", "-n", "2", "--table", "a"], in: root)
            #expect(debezium.status == 0 && debezium.stdout.split(separator: "\n").count == 2, "\(debezium.stdout)")

            let bad = try runTidemark(["log", "tail", "--log", dir, "--lines=-3"], in: root)
            #expect(bad.status != 0 && bad.stderr.contains("--lines must be 0 or more"), "\(bad.stderr)")
        }
    }

    /// A seeded sweep of window and filter combinations against the same
    /// answer computed from every record.
    @Test(.timeLimit(.minutes(10)))
    func lastRecordsMatchesReadingEverything() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            let all = try Self.makeLog(dir, count: 400, perFrame: 7)
            let reader = try LogReader(directory: dir)
            let seed = UInt64(UInt32.random(in: 1...UInt32.max))
            var rng = SplitMix64(seed: seed)
            for _ in 0..<200 {
                let n = Int(rng.next() % 40)
                let from = LSN(rng.next() % 420)
                let through = LSN(from.rawValue + rng.next() % 420)
                let table: String? = rng.next() % 2 == 0 ? Self.tables[Int(rng.next() % 3)] : nil
                let key: Int64? = rng.next() % 3 == 0 ? Int64(rng.next() % 17) : nil
                var filter = RecordFilter()
                if let table { filter.tables = [table] }
                if let key { filter.key = [Field("id", .integer(key))] }
                let got = try reader.lastRecords(n, from: from, through: through, skip: FrameSkip(tables: filter.tables, keys: filter.key.map { [$0] }),
                                                 tables: filter.tables) { filter.matches($0) }
                let want = all.filter { $0.lsn >= from && $0.lsn <= through && filter.matches($0) }.suffix(n)
                #expect(got.records.map(\.lsn) == want.map(\.lsn), "seed \(seed): n \(n) from \(from) through \(through) table \(table ?? "-") key \(key.map(String.init) ?? "-")")
            }
        }
    }

    /// The last 10 of 300 records are found from the last frames alone.
    @Test func lastRecordsReadsOnlyTheEnd() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            _ = try Self.makeLog(dir, count: 300, perFrame: 5)
            let reader = try LogReader(directory: dir)
            let last = try reader.lastRecords(10, from: .zero, through: try reader.headLSN()) { _ in true }
            #expect(last.records.map(\.lsn.rawValue) == Array(291...300))
            #expect(last.framesRead <= 4, "read \(last.framesRead) of 60 frames for the last 10 records")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func followStartsAtTheEnd() throws {
        try withTemporaryDirectory { root in
            let dir = root + "/log"
            _ = try Self.makeLog(dir, count: 50, perFrame: 5)
            let follower = try Child.started(try tidemarkExecutable(), ["log", "tail", "--log", dir, "--follow", "-n", "3"], directory: root)
            defer { follower.stopAndReap() }
            func waitFor(_ count: Int) -> [Int] {
                for _ in 0..<2_000 where Self.lsns(follower.stdoutText).count < count { usleep(5_000) }
                return Self.lsns(follower.stdoutText)
            }
            #expect(waitFor(3) == [48, 49, 50], "stderr: \(follower.stderrText)")
            let log = try LogAppender(directory: dir, options: LogOptions(durability: .none, segmentSizeLimitBytes: 4 << 10))
            try log.append(assigningLSNs: (0..<4).map { i in
                ChangeRecord(lsn: .zero, timestampMicros: 1_790_000_001_000_000, table: "a", operation: .insert,
                             key: [Field("id", .integer(1000 + Int64(i)))], before: nil, after: [Field("id", .integer(1000 + Int64(i)))])
            })
            try log.close()
            #expect(waitFor(7) == [48, 49, 50, 51, 52, 53, 54], "stderr: \(follower.stderrText)")

            // Default: the last 10, then what comes.
            let byDefault = try Child.started(try tidemarkExecutable(), ["log", "tail", "--log", dir, "--follow", "--table", "a"], directory: root)
            defer { byDefault.stopAndReap() }
            for _ in 0..<2_000 where Self.lsns(byDefault.stdoutText).count < 10 { usleep(5_000) }
            let tableA = Self.lsns(byDefault.stdoutText)
            #expect(tableA.count == 10 && tableA.suffix(4) == [51, 52, 53, 54], "\(tableA)")
            // -n 0: nothing until a new record.
            let none = try Child.started(try tidemarkExecutable(), ["log", "tail", "--log", dir, "--follow", "-n", "0"], directory: root)
            defer { none.stopAndReap() }
            usleep(300_000)
            #expect(none.isRunning && none.stdoutText.isEmpty, "\(none.stdoutText) \(none.stderrText)")
        }
    }
}
