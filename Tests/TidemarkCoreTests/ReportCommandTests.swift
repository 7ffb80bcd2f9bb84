import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// What commands print, run as the built executable: `verify --show-values`,
/// `status` wording through the lifecycle, and every command's `--json` as
/// plain JSON data (keys as objects, no Swift descriptions).
@Suite struct ReportCommandTests {
    /// A source with a single-key and a compound-key table, and a plan
    /// copying both to another file.
    struct Fixture {
        let dir: String
        var planPath: String { dir + "/tidemark.yml" }

        init(_ dir: String) throws {
            self.dir = dir
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            _ = try c.setJournalMode(.wal)
            try c.execute("""
                CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, price REAL);
                CREATE TABLE lines(o INTEGER NOT NULL, n INTEGER NOT NULL, qty INTEGER, PRIMARY KEY (o, n));
                INSERT INTO users VALUES (10, 'x@x', 9.5), (11, 'y@y', 1.25), (12, 'z@z', 2.0), (13, 'w@w', NULL);
                INSERT INTO lines VALUES (1, 1, 5), (1, 2, 6), (2, 1, 7);
                """)
            try c.close()
            try writeText(planPath, "source: src.db\ntarget: dst.db\nlog: changelog\nchunk_rows: 2\ntables:\n  users:\n    columns:\n      id: id\n      email: email\n      price: price\n  lines:\n    columns:\n      o: o\n      n: n\n      qty: qty\n")
        }

        /// `tidemark ARGS` in the fixture's directory (the plan is `tidemark.yml` there).
        func run(_ args: [String], seconds: Double = 120) throws -> (status: Int32, stdout: String, stderr: String) {
            let r = try runTidemark(args, in: dir, timeoutSeconds: seconds)
            return (r.status, r.stdout, r.stderr)
        }

        func sql(_ db: String, _ s: String) throws {
            let c = try Connection(path: dir + "/" + db, mode: .readWrite)
            try c.execute(s)
            try c.close()
        }
    }

    // MARK: verify --show-values

    @Test(.timeLimit(.minutes(10)))
    func verifyShowsDifferingValues() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            let migrated = try f.run(["migrate"])
            try #require(migrated.status == 0, "\(migrated.stderr)")
            // Differences a trigger cannot see: written into the target directly.
            try f.sql("dst.db", """
                UPDATE users SET price = 9.25 WHERE id = 10;
                UPDATE users SET email = 'q@q', price = 3.0 WHERE id = 12;
                DELETE FROM users WHERE id = 11;
                INSERT INTO users VALUES (99, 'extra@x', 1.0);
                UPDATE lines SET qty = 60 WHERE o = 1 AND n = 2;
                """)
            let r = try f.run(["verify", "--show-values"])
            #expect(r.status == 1, "differences exit 1: \(r.stdout) \(r.stderr)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains(#"  key {"id":10}: price: source 9.5, target 9.25"#), "\(r.stdout)")
            #expect(lines.contains(#"  key {"id":12}: email: source "z@z", target "q@q""#), "\(r.stdout)")
            #expect(lines.contains(#"  key {"id":12}: price: source 2.0, target 3.0"#), "\(r.stdout)")
            #expect(lines.contains(#"  key {"id":11}: missing from the target; source row {"id":11,"email":"y@y","price":1.25}"#), "\(r.stdout)")
            #expect(lines.contains(#"  key {"id":99}: extra in the target, not in the source; target row {"id":99,"email":"extra@x","price":1.0}"#), "\(r.stdout)")
            #expect(lines.contains(#"  key {"o":1,"n":2}: qty: source 6, target 60"#), "\(r.stdout)")
            #expect(lines.last == "NOT equal")

            // --max-keys: the rest are counted, and said so.
            let limited = try f.run(["verify", "--show-values", "--max-keys", "1"])
            #expect(limited.status == 1)
            #expect(limited.stdout.contains("… and 1 more different"), "\(limited.stdout)")
            #expect(!limited.stdout.contains(#"key {"id":12}"#), "\(limited.stdout)")

            // The same as data.
            let json = try f.run(["verify", "--show-values", "--json"])
            #expect(json.status == 1)
            let o = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
            let users = try #require((o["tables"] as? [[String: Any]])?.first { $0["source"] as? String == "users" })
            #expect((users["missing"] as? [[String: Any]])?.first?["id"] as? Int == 11)
            #expect((users["extra"] as? [[String: Any]])?.first?["id"] as? Int == 99)
            let values = try #require(users["values"] as? [[String: Any]])
            let ten = try #require(values.first { ($0["key"] as? [String: Any])?["id"] as? Int == 10 })
            #expect(ten["state"] as? String == "different")
            let column = try #require((ten["columns"] as? [[String: Any]])?.first)
            #expect(column["column"] as? String == "price" && column["source"] as? Double == 9.5 && column["target"] as? Double == 9.25)
            let eleven = try #require(values.first { ($0["key"] as? [String: Any])?["id"] as? Int == 11 })
            #expect(eleven["state"] as? String == "missing" && eleven["target"] is NSNull)
            #expect((eleven["source"] as? [String: Any])?["email"] as? String == "y@y")

            // Could not compare: exit 2, nothing else.
            try FileManager.default.removeItem(atPath: dir + "/dst.db")
            let none = try f.run(["verify", "--show-values"])
            #expect(none.status == 2, "\(none.stderr)")
        }
    }

    /// Text is compared by its bytes: "é" precomposed and decomposed are
    /// the same to Swift's `==` but not the same value in SQLite.
    @Test(.timeLimit(.minutes(10)))
    func verifyTellsCanonicallyEquivalentTextApart() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            try f.sql("src.db", "UPDATE users SET email = 'caf' || char(233) WHERE id = 10")
            try #require(try f.run(["migrate"]).status == 0)
            try f.sql("dst.db", "UPDATE users SET email = 'cafe' || char(769) WHERE id = 10")
            let r = try f.run(["verify", "--show-values"])
            #expect(r.status == 1, "a decomposed é is a difference: \(r.stdout)")
            #expect(r.stdout.contains(#"  key {"id":10}: email: source "café", target "café""#), "\(r.stdout)")
        }
    }

    // MARK: status wording

    @Test(.timeLimit(.minutes(10)))
    func statusNamesThePhaseAndEndsWithTheNextCommand() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            func status() throws -> [String] {
                let r = try f.run(["status", "--plan", "tidemark.yml"])
                #expect(r.status == 0, "\(r.stderr)")
                return r.stdout.split(separator: "\n").map(String.init)
            }
            #expect(try status().last == "next: tidemark migrate --plan tidemark.yml")
            try #require(try f.run(["migrate"]).status == 0)
            #expect(try status().last == "next: tidemark verify --plan tidemark.yml")
            try #require(try f.run(["verify"]).status == 0)
            #expect(try status().last == "next: tidemark cutover --plan tidemark.yml")
            let cut = try f.run(["cutover"])
            try #require(cut.status == 0, "\(cut.stderr)")
            let after = try status()
            #expect(after.first?.hasPrefix("phase: cut over — cut over to dst.db at LSN") == true, "\(after)")
            #expect(!after.contains { $0.contains("following") }, "\(after)")
            #expect(after.contains { $0.hasPrefix("  users → users  cut over to dst.db") }, "\(after)")
            #expect(after.last == "next: tidemark finish --plan tidemark.yml")
            let json = try f.run(["status", "--json"])
            let o = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(o["phase"] as? String == "cut over")
            #expect((o["tables"] as? [[String: Any]])?.allSatisfy { $0["phase"] as? String == "cut over to dst.db" } == true, "\(json.stdout)")

            try #require(try f.run(["rollback"]).status == 0)
            let back = try status()
            #expect(back.first?.hasPrefix("phase: rolled back") == true, "\(back)")
            #expect(back.contains { $0.hasPrefix("  users → users  rolled back") }, "\(back)")
            #expect(back.last == "next: tidemark migrate --plan tidemark.yml")
        }
    }

    /// Paths in messages are as the user gave them (relative to where the
    /// command runs) or absolute; never relative to the plan's directory.
    @Test(.timeLimit(.minutes(10)))
    func pathsInMessagesAreUsable() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
            _ = try Fixture(dir + "/sub")
            let r = try runTidemark(["status", "--plan", "sub/tidemark.yml"], in: dir)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.split(separator: "\n").last == "next: tidemark migrate --plan sub/tidemark.yml")
            try FileManager.default.removeItem(atPath: dir + "/sub/src.db")
            let missing = try runTidemark(["status", "--plan", "sub/tidemark.yml"], in: dir)
            #expect(missing.status != 0)
            // The path named opens from where the user is.
            let named = missing.stderr.split(separator: " ").first { $0.hasSuffix("src.db") }.map(String.init)
            let path = try #require(named, "\(missing.stderr)")
            #expect(path.hasPrefix("/") || path == "sub/src.db", "\(missing.stderr)")
        }
    }

    // MARK: --json everywhere

    /// Strings in JSON output that are Swift descriptions rather than data.
    static func swiftDescriptions(in value: Any, path: String = "$") -> [String] {
        switch value {
        case let s as String:
            let looksLikeTuple = s.hasPrefix("(") && s.hasSuffix(")") && s.contains(", ")
            let markers = ["Optional(", "TidemarkCore.", "TidemarkLog.", "TidemarkSQLite.", "rawValue:", "LSN(", ".integer(", ".text(", ".real(", "Swift."]
            return looksLikeTuple || markers.contains(where: s.contains) ? ["\(path): \(s)"] : []
        case let a as [Any]:
            return a.enumerated().flatMap { swiftDescriptions(in: $0.element, path: "\(path)[\($0.offset)]") }
        case let o as [String: Any]:
            return o.flatMap { swiftDescriptions(in: $0.value, path: "\(path).\($0.key)") }
        default:
            return []
        }
    }

    /// Parses one JSON document (or JSON lines) and checks it holds data only.
    @discardableResult
    static func parse(_ r: (status: Int32, stdout: String, stderr: String), _ what: String, lines: Bool = false,
                      sourceLocation: SourceLocation = #_sourceLocation) -> [Any] {
        #expect(r.status == 0 || what.hasPrefix("verify"), "\(what): exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        let texts = lines ? r.stdout.split(separator: "\n").map(String.init) : [r.stdout]
        #expect(!texts.isEmpty && !r.stdout.isEmpty, "\(what): no output", sourceLocation: sourceLocation)
        var out: [Any] = []
        for t in texts {
            guard let v = try? JSONSerialization.jsonObject(with: Data(t.utf8)) else {
                Issue.record("\(what): not JSON: \(t.prefix(300))", sourceLocation: sourceLocation)
                continue
            }
            let bad = swiftDescriptions(in: v)
            #expect(bad.isEmpty, "\(what): Swift descriptions in JSON: \(bad)", sourceLocation: sourceLocation)
            out.append(v)
        }
        return out
    }

    @Test(.timeLimit(.minutes(10)))
    func everyJSONOutputIsData() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            Self.parse(try f.run(["migrate", "--dry-run", "--json"]), "migrate --dry-run")
            // A copy stopped half-way leaves a tidemark per table.
            let migrated = Self.parse(try f.run(["migrate", "--json"]), "migrate").first as? [String: Any]
            #expect(migrated?["applied_lsn"] is Int && migrated?["caught_up"] as? Bool == true, "\(migrated ?? [:])")
            try f.sql("src.db", "INSERT INTO users VALUES (20, 'n@n', 4.5); UPDATE lines SET qty = 8 WHERE o = 2; DELETE FROM users WHERE id = 13;")
            Self.parse(try f.run(["migrate", "--json"]), "migrate again")

            let status = Self.parse(try f.run(["status", "--json"]), "status").first as? [String: Any]
            let tables = status?["tables"] as? [[String: Any]] ?? []
            let users = tables.first { $0["source"] as? String == "users" }
            let lines = tables.first { $0["source"] as? String == "lines" }
            #expect((users?["tidemark"] as? [String: Any])?["id"] as? Int == 13, "the tidemark is a key object: \(tables)")
            #expect((users?["ceiling"] as? [String: Any])?["id"] as? Int == 13, "\(tables)")
            let linesMark = lines?["tidemark"] as? [String: Any]
            #expect(linesMark?["o"] as? Int == 2 && linesMark?["n"] as? Int == 1 && linesMark?.count == 2, "\(tables)")
            #expect(status?["applied_lsn"] is Int && status?["journal"] is NSNull, "\(status ?? [:])")

            let verify = Self.parse(try f.run(["verify", "--json"]), "verify").first as? [String: Any]
            #expect(verify?["equal"] as? Bool == true, "\(verify ?? [:])")
            let verifyAt = (Self.parse(try f.run(["status", "--json"]), "status verified").first as? [String: Any])?["verify"] as? [String: Any]
            #expect((verifyAt?["at"] as? String).map { (try? Timestamp(parsing: $0)) != nil } == true, "RFC 3339: \(verifyAt ?? [:])")

            Self.parse(try f.run(["capture", "status", "--source", "src.db", "--log", "changelog", "--json"]), "capture status")
            Self.parse(try f.run(["route", "--json"]), "route")
            let tail = Self.parse(try f.run(["log", "tail", "--log", "changelog", "--since", "1"]), "log tail", lines: true)
            #expect(tail.count >= 3 && tail.allSatisfy { ($0 as? [String: Any])?["key"] is [String: Any] }, "\(tail)")
            Self.parse(try f.run(["log", "stats", "--log", "changelog", "--json"]), "log stats")
            Self.parse(try f.run(["log", "stats", "--log", "changelog", "--json", "--table", "users"]), "log stats --table")
            Self.parse(try f.run(["log", "verify", "--log", "changelog", "--json"]), "log verify")
            Self.parse(try f.run(["log", "history", "--log", "changelog", "--table", "users", "--key", "20", "--format", "jsonl"]), "log history", lines: true)
            Self.parse(try f.run(["log", "blame", "--log", "changelog", "--table", "users", "--key", "20", "--json"]), "log blame", lines: true)
            let diff = Self.parse(try f.run(["log", "diff", "--log", "changelog", "--since", "1", "--json"]), "log diff", lines: true)
            #expect(diff.allSatisfy { ($0 as? [String: Any])?["key"] is [String: Any] }, "\(diff)")
            Self.parse(try f.run(["log", "as-of", "--db", "src.db", "--log", "changelog", "--at", "1", "--table", "users", "--json"]), "log as-of", lines: true)
            Self.parse(try f.run(["log", "as-of", "--db", "src.db", "--log", "changelog", "--at", "1", "--output", "asof.db", "--json"]), "log as-of --output")
            Self.parse(try f.run(["log", "repair", "--log", "changelog", "--dry-run", "--json"]), "log repair")

            let cut = Self.parse(try f.run(["cutover", "--json"]), "cutover").first as? [String: Any]
            #expect(cut?["lsn"] is Int && (cut?["at"] as? String).map { (try? Timestamp(parsing: $0)) != nil } == true, "\(cut ?? [:])")
            Self.parse(try f.run(["status", "--json"]), "status after cutover")
            Self.parse(try f.run(["route", "--json"]), "route after cutover")
            Self.parse(try f.run(["finish", "--dry-run", "--json"]), "finish --dry-run")
            Self.parse(try f.run(["rollback", "--dry-run", "--json"]), "rollback --dry-run")
            Self.parse(try f.run(["rollback", "--json"]), "rollback")
            Self.parse(try f.run(["status", "--json"]), "status after rollback")

            // Commands of their own files.
            let other = dir + "/other"
            try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
            try writeText(other + "/records.jsonl", #"{"table":"t","op":"insert","key":{"id":1},"after":{"id":1,"v":"a"}}"# + "\n")
            Self.parse(try f.run(["log", "append", "--log", "other/log", "--input", "other/records.jsonl", "--json"]), "log append")
            let c = try Connection(path: other + "/app.db", mode: .readWriteCreate)
            try c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');")
            try c.close()
            Self.parse(try f.run(["capture", "install", "--source", "other/app.db", "--log", "other/applog", "--json"]), "capture install")
            try f.sql("other/app.db", "INSERT INTO t VALUES (2, 'b')")
            Self.parse(try f.run(["capture", "run", "--source", "other/app.db", "--log", "other/applog", "--once", "--json"]), "capture run")
            let tx = try Connection(path: other + "/tx.db", mode: .readWriteCreate)
            try tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")
            try tx.close()
            Self.parse(try f.run(["transform", "other/tx.db", "t", "--rename", "v", "w", "--sql", "--json"]), "transform --sql")
            Self.parse(try f.run(["transform", "other/tx.db", "t", "--rename", "v", "w", "--json"]), "transform")
            Self.parse(try f.run(["demo", "--dir", "demo", "--rows", "200", "--seconds", "0.5", "--writes-per-second", "100", "--json"]), "demo")
        }
    }
}

