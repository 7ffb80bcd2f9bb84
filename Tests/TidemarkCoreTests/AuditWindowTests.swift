import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// `--since`/`--until` and the record filters on the log readers, through
/// the command line, on a log written by real capture under writes.
@Suite struct AuditWindowTests {
    /// A captured source with inserts, updates, a key change and deletes,
    /// shipped into `changelog`; returns the directory.
    static func capturedLog(_ dir: String) throws {
        let c = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
        _ = try c.setJournalMode(.wal)
        try c.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT, balance REAL); CREATE TABLE line(o INTEGER, n INTEGER, qty INTEGER, PRIMARY KEY (o, n)) WITHOUT ROWID;")
        try Capture.install(connection: c, tables: ["acct", "line"], sourceID: SourceID("audit-window"))
        try c.execute("""
            INSERT INTO acct VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'cy', 30);
            INSERT INTO line VALUES (7, 1, 5), (7, 2, 6);
            UPDATE acct SET balance = 11 WHERE id = 1;
            UPDATE acct SET id = 9 WHERE id = 2;
            DELETE FROM acct WHERE id = 3;
            UPDATE line SET qty = 8 WHERE o = 7 AND n = 2;
            """)
        let log = try LogAppender(directory: dir + "/changelog", sourceID: try Capture.storedSourceID(c))
        _ = try Shipper(connection: c, appender: log).drain()
        try log.close()
        try c.close()
    }

    @Test func asOfTakesRelativeTimes() throws {
        guard case .time(let t) = try AsOf.Point(parsing: "-15m") else { Issue.record("-15m is not a time"); return }
        let expected = Clock.wallMicros() - 15 * 60_000_000
        #expect(abs(t.microsSinceEpoch - expected) < 60_000_000)
        #expect(try AsOf.Point(parsing: "42") == .lsn(LSN(42)))
        #expect(throws: AsOfError.self) { _ = try AsOf.Point(parsing: "-15x") }
    }

    @Test func tailAndStatsTakeWindowsAndFilters() throws {
        try withTemporaryDirectory { dir in
            try Self.capturedLog(dir)
            func tail(_ args: [String]) throws -> [[String: Any]] {
                let r = try runTidemark(["log", "tail", "--log", dir + "/changelog"] + args, in: dir)
                #expect(r.status == 0, "\(args): \(r.stderr)")
                return r.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            }
            #expect(try tail([]).count == 9)
            #expect(try tail(["--since", "3", "--until", "4"]).map { $0["lsn"] as? Int } == [3, 4])
            #expect(try tail(["--from", "8"]).map { $0["lsn"] as? Int } == [8, 9])
            // A relative time that starts with '-' is a value, not an option.
            #expect(try tail(["--since", "-15m"]).count == 9)
            #expect(try tail(["--since", "-1d", "--until", "-1h"]).isEmpty)
            #expect(try tail(["--table", "acct", "--op", "delete"]).map { $0["table"] as? String } == ["acct"])
            #expect(try tail(["--table", "line", "--key", "{\"o\":7,\"n\":2}"]).count == 2)
            #expect(try tail(["--where", "owner=bob"]).count == 2)  // the insert and the key change
            #expect(try tail(["--key", "2", "--table", "acct"]).count == 2, "the old key of a key change matches too")
            let stats = try runTidemark(["log", "stats", "--log", dir + "/changelog", "--table", "acct", "--json"], in: dir)
            let j = try #require(try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any])
            #expect(j["records"] as? Int == 6)
            // Bad input: one line, non-zero exit.
            for bad in [["--since", "9", "--until", "3"], ["--since", "yesterday"], ["--op", "upsert"], ["--where", "nocolumn"]] {
                let r = try runTidemark(["log", "tail", "--log", dir + "/changelog"] + bad, in: dir)
                #expect(r.status != 0, "\(bad)")
                #expect(r.stderr.split(separator: "\n").count == 1, "\(bad): \(r.stderr)")
            }
        }
    }
}
