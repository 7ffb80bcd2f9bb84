import Foundation
import TidemarkTestSupport
import Testing
import TidemarkLog
import TidemarkSQLite

/// `tidemark log history|blame|diff` on a log written by real capture
/// (`Capture.install`, SQL writes, `Shipper`), through the real executable.
@Suite struct AuditCommandTests {
    /// Builds the log; returns the records shipped, oldest first.
    func captureLog(_ dir: String) throws -> [ChangeRecord] {
        let db = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
        try db.execute("""
            CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, name TEXT);
            CREATE TABLE lines(order_id INTEGER, line INTEGER, qty INTEGER, PRIMARY KEY(order_id, line));
            """)
        try Capture.install(connection: db, sourceID: SourceID("audit-test"))
        let log = try LogAppender(directory: dir + "/log", sourceID: SourceID("audit-test"))
        let shipper = try Shipper(connection: db, appender: log)
        for sql in [
            "INSERT INTO users VALUES (1, 'a@x', 'Ann'), (2, 'b@x', 'Bo')",
            "UPDATE users SET email = 'a2@x' WHERE id = 1",
            "UPDATE users SET id = 7 WHERE id = 1",
            "UPDATE users SET name = 'Anne' WHERE id = 7",
            "DELETE FROM users WHERE id = 2",
            "INSERT INTO users VALUES (2, 'b2@x', 'Bob')",
            "INSERT INTO lines VALUES (7, 1, 3)",
            "UPDATE lines SET line = 2, qty = 4 WHERE order_id = 7",
        ] {
            try db.execute(sql)
            _ = try shipper.drain()
        }
        try log.close()
        try db.close()
        return try LogReader(directory: dir + "/log").cursor().allRecords()
    }

    func tidemark(_ dir: String, _ args: [String]) throws -> Finished {
        try runTidemark(["log"] + args + ["--log", dir + "/log"], in: dir)
    }

    @Test(.timeLimit(.minutes(10)))
    func historyFollowsTheRowAcrossItsKeyChange() throws {
        try withTemporaryDirectory { dir in
            let records = try captureLog(dir)
            let move = try #require(records.first { $0.isKeyChange && $0.table == "users" })
            for key in ["1", "7", #"{"id":7}"#] {
                let r = try tidemark(dir, ["history", "--table", "users", "--key", key])
                #expect(r.status == 0, "\(r.stderr)")
                #expect(r.stdout.contains("key changed from {id:1} to {id:7} at LSN \(move.lsn)"), "\(key): \(r.stdout)")
                #expect(r.stdout.contains("'a@x'") && r.stdout.contains("'Anne'"), "\(key): \(r.stdout)")
                #expect(!r.stdout.contains("'Bo'"), "\(key): \(r.stdout)")
                let headings = r.stdout.split(separator: "\n").filter { $0.hasPrefix("LSN ") }
                #expect(headings.count == 4, "\(key): \(r.stdout)")
            }
            // The deleted and reinserted key: both lives.
            let two = try tidemark(dir, ["history", "--table", "users", "--key", "2", "--format", "jsonl"])
            #expect(two.status == 0)
            #expect(two.stdout.split(separator: "\n").map { $0.contains(#""op":"delete""#) } == [false, true, false], "\(two.stdout)")
            // A composite key that changed.
            let line = try tidemark(dir, ["history", "--table", "lines", "--key", #"{"order_id":7,"line":2}"#])
            #expect(line.status == 0, "\(line.stderr)")
            #expect(line.stdout.contains("key changed from {order_id:7, line:1} to {order_id:7, line:2}"), "\(line.stdout)")
        }
    }

    @Test(.timeLimit(.minutes(10)), arguments: [
        (["history", "--table", "nope", "--key", "1"], "table 'nope' is not in the log"),
        (["blame", "--table", "nope", "--key", "1"], "table 'nope' is not in the log"),
        (["diff", "--since", "1", "--table", "nope"], "table 'nope' is not in the log"),
        (["history", "--table", "users", "--key", #"{"uid":1}"#], "--key names uid but the key of table 'users' is id"),
        (["history", "--table", "lines", "--key", "7"], "table 'lines' has a composite key (order_id, line)"),
        (["history", "--table", "lines", "--key", #"{"order_id":7}"#], "--key names order_id but the key of table 'lines' is {order_id, line}"),
        (["history", "--table", "users", "--key", #"{"id":1,"line":2}"#], "table 'users' has a one-column key (id)"),
        (["history", "--table", "users", "--key", "{oops"], "--key {oops is not a valid JSON object of key columns"),
        (["diff", "--since", "5", "--until", "2"], "--since LSN 5 is after --until LSN 2"),
        (["diff", "--since", "1", "--op", "upsert"], "--op upsert: expected insert, update or delete"),
        (["tail", "--since", "yesterday"], "cannot read \"yesterday\" as a point of the log"),
        // ArgumentParser's own usage errors are one line too.
        (["history", "--table", "users"], "tidemark log history: missing expected argument '--key <key>'"),
        (["tail", "--lines", "many"], "tidemark log tail: the value 'many' is invalid for '--lines <lines>'"),
    ])
    func badInputIsOneLineAndAFailure(args: [String], message: String) throws {
        try withTemporaryDirectory { dir in
            _ = try captureLog(dir)
            let r = try tidemark(dir, args)
            #expect(r.status != 0, "\(args): \(r.stdout)")
            #expect(r.stdout.isEmpty, "\(args): \(r.stdout)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func blameNamesEachColumnsLastChange() throws {
        try withTemporaryDirectory { dir in
            let records = try captureLog(dir)
            let users = records.filter { $0.table == "users" }
            let emailChange = users[2].lsn, move = users[3].lsn, rename = users[4].lsn
            let r = try tidemark(dir, ["blame", "--table", "users", "--key", "1", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let rows = try r.stdout.split(separator: "\n").map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            let byColumn = Dictionary(uniqueKeysWithValues: rows.map { ($0["column"] as? String ?? "", $0) })
            #expect(byColumn["id"]?["lsn"] as? Int == Int(move.rawValue) && byColumn["id"]?["previous"] as? Int == 1, "\(r.stdout)")
            #expect(byColumn["email"]?["lsn"] as? Int == Int(emailChange.rawValue) && byColumn["email"]?["previous"] as? String == "a@x", "\(r.stdout)")
            #expect(byColumn["name"]?["lsn"] as? Int == Int(rename.rawValue) && byColumn["name"]?["value"] as? String == "Anne", "\(r.stdout)")
            let text = try tidemark(dir, ["blame", "--table", "users", "--key", "7"])
            #expect(text.stdout.contains("'a2@x'  LSN \(emailChange) "), "\(text.stdout)")
            // --until: the row's blame as of that point (before the move and the rename).
            let then = try tidemark(dir, ["blame", "--table", "users", "--key", "1", "--until", "\(emailChange)", "--json"])
            #expect(then.status == 0, "\(then.stderr)")
            let thenRows = try then.stdout.split(separator: "\n").map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            let thenBy = Dictionary(uniqueKeysWithValues: thenRows.map { ($0["column"] as? String ?? "", $0) })
            #expect(thenBy["email"]?["lsn"] as? Int == Int(emailChange.rawValue) && thenBy["name"]?["value"] as? String == "Ann", "\(then.stdout)")
            #expect(thenBy["id"]?["value"] as? Int == 1 && thenBy["id"]?["lsn"] as? Int == Int(users[0].lsn.rawValue), "\(then.stdout)")
            // An empty window: one line, non-zero, nothing on stdout.
            let none = try tidemark(dir, ["blame", "--table", "users", "--key", "1", "--since", "2999-01-01T00:00:00Z"])
            #expect(none.status != 0 && none.stdout.isEmpty && none.stderr.contains("in the window"), "\(none.stderr)")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func diffFoldsEachKeysChanges() throws {
        try withTemporaryDirectory { dir in
            let records = try captureLog(dir)
            let users = records.filter { $0.table == "users" }
            // From the email change to the reinsert: 1 moved to 7 (renamed on the way), 2 deleted and reinserted.
            let r = try tidemark(dir, ["diff", "--since", "\(users[2].lsn)", "--until", "\(users[6].lsn)", "--table", "users", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let rows = try r.stdout.split(separator: "\n").map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            let summary = rows.map { "\($0["change"] ?? "")\(($0["key"] as? [String: Any])?["id"] ?? "")" }
            #expect(summary == ["deleted1", "inserted7", "changed2"], "\(r.stdout)")
            let two = try #require(rows.last?["columns"] as? [String: [String: Any]])
            #expect(two["email"]?["old"] as? String == "b@x" && two["email"]?["new"] as? String == "b2@x", "\(r.stdout)")
            #expect(two["name"]?["new"] as? String == "Bob" && two["id"] == nil, "\(r.stdout)")
            // Only the email change and back would be nothing; the whole log as text.
            let all = try tidemark(dir, ["diff", "--since", "1"])
            #expect(all.status == 0)
            #expect(all.stdout.split(separator: "\n").map { $0.split(separator: " ").first.map(String.init) ?? "" } == ["inserted", "inserted", "inserted"], "\(all.stdout)")
        }
    }

    /// `--op` and `--where` apply to the net change of each key (a key
    /// inserted and then updated is one `insert`; `--where` holds on its
    /// first or last image), as on the other readers.
    @Test(.timeLimit(.minutes(10)))
    func diffFiltersTheNetChangeByOperationAndImage() throws {
        try withTemporaryDirectory { dir in
            let records = try captureLog(dir)
            let users = records.filter { $0.table == "users" }
            func keys(_ args: [String]) throws -> [String] {
                let r = try tidemark(dir, ["diff", "--json"] + args)
                #expect(r.status == 0, "\(args): \(r.stderr)")
                return try r.stdout.split(separator: "\n").map {
                    let o = try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
                    return "\(o["change"] ?? "")\(((o["key"] as? [String: Any])?["id"]).map { "\($0)" } ?? "")"
                }
            }
            let window = ["--since", "\(users[2].lsn)", "--until", "\(users[6].lsn)", "--table", "users"]
            #expect(try keys(window + ["--op", "delete"]) == ["deleted1"])
            #expect(try keys(window + ["--op", "insert,update"]) == ["inserted7", "changed2"])
            #expect(try keys(window + ["--where", "name=Bob"]) == ["changed2"])
            #expect(try keys(window + ["--where", "email=a2@x"]) == ["inserted7"])
            #expect(try keys(window + ["--where", "email=a@x"]) == ["deleted1"])
            #expect(try keys(["--since", "1", "--where", "name=Bob"]) == ["inserted2"])
            #expect(try keys(["--since", "1", "--op", "delete"]) == [])
        }
    }
}
