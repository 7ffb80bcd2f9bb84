import Foundation
import Testing
import TidemarkTestSupport
@testable import TidemarkCore
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// Command-line conventions, each checked on the built executable (output
/// and exit code): `--version`, the plan from `TIDEMARK_PLAN`, `verify`'s
/// exit codes (0 equal, 1 different, 2 could not compare — as `diff` and
/// `cmp`), the shared option groups, `--json` errors, `-` as standard
/// input, `--quiet`/`--verbose` and progress when stderr is not a terminal.
@Suite struct CommandLineTests {
    /// The environment every run starts from: no plan from the caller's
    /// environment, a fixed width.
    static var baseEnvironment: [String: String] {
        ["TIDEMARK_PLAN": "", "TIDEMARK_PROGRESS_INTERVAL": "", "COLUMNS": "100"]
    }

    /// `tidemark ARGS` started with `dir` as its current directory.
    func start(_ args: [String], in dir: String, environment extra: [String: String] = [:]) throws -> Child {
        let child = try Child(args, environment: Self.baseEnvironment.merging(extra) { $1 }, directory: dir)
        try child.start()
        return child
    }

    func run(_ args: [String], in dir: String, environment extra: [String: String] = [:], seconds: Double = 120) throws -> Finished {
        try runTidemark(args, in: dir, environment: Self.baseEnvironment.merging(extra) { $1 }, timeoutSeconds: seconds)
    }

    /// `script` run by /bin/sh in `dir`, with `$TIDEMARK` the executable:
    /// for standard input from a file or a pipe.
    func shell(_ script: String, in dir: String, environment extra: [String: String] = [:]) throws -> Finished {
        var env = Self.baseEnvironment.merging(extra) { $1 }
        env["TIDEMARK"] = try tidemarkExecutable()
        return try runProcess("/bin/sh", ["-c", script], environment: env, directory: dir)
    }

    /// A source of `rows` rows in `t` and a plan `plan.yml` (paths relative).
    func makeMigration(_ dir: String, rows: Int = 20, chunkRows: Int = 1_000) throws {
        let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
        try c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        try c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(rows)) INSERT INTO t SELECT i, 'v' || i FROM n")
        try c.close()
        try writeText(dir + "/plan.yml", "source: src.db\ntarget: dst.db\nlog: changelog\nchunk_rows: \(chunkRows)\ntables:\n  t: {}\n")
    }

    static func jsonObject(_ line: Substring) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    // MARK: version, TIDEMARK_PLAN, verify's exit codes

    @Test(.timeLimit(.minutes(10)))
    func versionNamesTidemarkAndTheLibrariesItLinks() throws {
        try withTemporaryDirectory { dir in
            let r = try run(["--version"], in: dir)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.hasPrefix("tidemark "), "\(r.stdout)")
            #expect(r.stdout.contains("SQLite \(Connection.libraryVersion)"), "\(r.stdout)")
            #expect(r.stdout.contains("zstd 1."), "\(r.stdout)")
            #expect(r.stdout.split(separator: "\n").count == 1, "\(r.stdout)")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func thePlanComesFromTidemarkPlanAndVerifyExitsZeroOneOrTwo() throws {
        try withTemporaryDirectory { dir in
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")
            try c.close()
            try "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  t: {}\n".write(toFile: dir + "/elsewhere.yml", atomically: true, encoding: .utf8)
            let env = ["TIDEMARK_PLAN": dir + "/elsewhere.yml"]
            // No --plan, no tidemark.yml here: the variable names the plan.
            let migrate = try run(["migrate"], in: dir, environment: env)
            #expect(migrate.status == 0, "\(migrate.stderr)")
            #expect(try run(["verify"], in: dir, environment: env).status == 0)
            let t = try Connection(path: dir + "/dst.db", mode: .readWrite)
            try t.execute("UPDATE t SET v = 'changed' WHERE id = 2")
            try t.close()
            let different = try run(["verify"], in: dir, environment: env)
            #expect(different.status == 1, "\(different.stdout) \(different.stderr)")
            // Could not compare: no such plan.
            let missing = try run(["verify", "--plan", dir + "/nope.yml"], in: dir)
            #expect(missing.status == 2, "\(missing.stderr)")
            #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
        }
    }

    // MARK: 1. Shared options

    /// Each shared option reads the same in every command that takes it
    /// (one declaration), and every long command takes --quiet/--verbose.
    @Test(.timeLimit(.minutes(10)))
    func sharedOptionsAreDeclaredOnceAndUsedEverywhere() throws {
        try withTemporaryDirectory { dir in
            let commands = try HelpReference.commands(in: dir)
            #expect(commands.count >= 25, "\(commands)")
            var texts: [String: Set<String>] = [:]
            var takes: [String: Set<String>] = [:]
            for command in commands {
                let help = try HelpReference.help(command, in: dir)
                for option in ["--json", "--plan <file>", "--log <dir>", "-q, --quiet", "-v, --verbose"] {
                    guard let block = HelpReference.optionBlock(option, in: help) else { continue }
                    texts[option, default: []].insert(block)
                    takes[option, default: []].insert(command.joined(separator: " "))
                }
                // No command spells them its own way.
                for stray in ["--json <", "--plan <path>", "--log <log>", "--log <directory>"] {
                    #expect(!help.contains(stray), "\(command): \(stray)")
                }
            }
            for (option, set) in texts {
                #expect(set.count == 1, "\(option) is described \(set.count) ways: \(set.sorted())")
            }
            let long = ["migrate", "transform", "cutover", "verify", "rollback", "finish", "capture run", "demo", "log as-of"]
            for c in long {
                #expect(takes["-q, --quiet"]?.contains(c) == true, "\(c) lacks --quiet")
                #expect(takes["-v, --verbose"]?.contains(c) == true, "\(c) lacks --verbose")
            }
            for c in ["migrate", "status", "verify", "cutover", "route", "rollback", "finish"] {
                #expect(takes["--plan <file>"]?.contains(c) == true, "\(c) lacks --plan")
                #expect(takes["--json"]?.contains(c) == true, "\(c) lacks --json")
            }
            for c in ["capture install", "capture run", "capture status", "log append", "log tail", "log stats", "log verify", "log repair", "log as-of"] {
                #expect(takes["--log <dir>"]?.contains(c) == true, "\(c) lacks --log")
            }
        }
    }

    // MARK: 2. Errors under --json

    /// Every kind of failure — usage, validation, the plan, the log, the
    /// source, a command's own — is with --json one JSON line on stderr,
    /// nothing on stdout, and the exit code of the text error.
    @Test(.timeLimit(.minutes(10)))
    func failuresAreOneJSONLineWithTheTextErrorsExitCode() throws {
        try withTemporaryDirectory { dir in
            try makeMigration(dir)
            let cases: [(args: [String], status: Int32, code: String)] = [
                (["migrate", "--bogus"], 64, "usage"),
                (["verify", "--chunk-rows", "0"], 64, "usage"),
                (["migrate", "--quiet", "--verbose"], 64, "usage"),
                (["capture", "status", "--source", "-"], 64, "usage"),
                (["migrate", "--plan", "missing.yml"], 1, "invalid_plan"),
                (["status", "--plan", "missing.yml"], 1, "invalid_plan"),
                // verify: 2, could not compare.
                (["verify", "--plan", "missing.yml"], 2, "invalid_plan"),
                (["log", "stats", "--log", "no-such-log"], 1, "not_a_log"),
                (["capture", "status", "--source", "no-such.db"], 1, "database_not_found"),
                (["capture", "run", "--source", "src.db", "--log", "shipped", "--once"], 1, "capture_not_installed"),
                (["log", "append", "--log", "appended", "--input", "no-such.jsonl"], 1, "io_error"),
            ]
            for c in cases {
                let text = try run(c.args, in: dir)
                let json = try run(c.args + ["--json"], in: dir)
                #expect(text.status == c.status, "\(c.args): \(text.stderr)")
                #expect(json.status == c.status, "\(c.args) --json: \(json.stderr)")
                #expect(json.stdout.isEmpty, "\(c.args) --json printed on stdout: \(json.stdout)")
                #expect(text.stdout.isEmpty, "\(c.args) printed on stdout: \(text.stdout)")
                let textLines = text.stderr.split(separator: "\n")
                #expect(textLines.count == 1 && !textLines[0].hasPrefix("{"), "\(c.args): \(text.stderr)")
                let lines = json.stderr.split(separator: "\n")
                #expect(lines.count == 1, "\(c.args) --json: \(json.stderr)")
                let error = lines.first.flatMap(Self.jsonObject)?["error"] as? [String: Any]
                #expect(error?["code"] as? String == c.code, "\(c.args) --json: \(json.stderr)")
                let message = error?["message"] as? String ?? ""
                #expect(!message.isEmpty && !message.contains("\n"), "\(c.args) --json: \(json.stderr)")
                // The same words as the text error (without its prefix).
                if let t = textLines.first {
                    #expect(t.hasSuffix(message), "\(c.args): text '\(t)' vs JSON '\(message)'")
                }
            }
            // Nothing was created by any of them.
            for name in ["appended", "shipped", "dst.db", "changelog"] {
                #expect(!FileManager.default.fileExists(atPath: dir + "/" + name), "\(name)")
            }
        }
    }

    /// A failure from the library carries its data: the preflight's
    /// violations, as the text error lists them.
    @Test(.timeLimit(.minutes(10)))
    func aPreflightFailureCarriesItsViolations() throws {
        try withTemporaryDirectory { dir in
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, NULL), (2, 'b');")
            try c.close()
            try writeText(dir + "/plan.yml", "source: src.db\ntarget: dst.db\nlog: changelog\ntables:\n  t:\n    create: \"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)\"\n")
            let r = try run(["migrate", "--plan", "plan.yml", "--json"], in: dir)
            #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout.isEmpty, "\(r.stdout)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(r.stderr)")
            let error = lines.first.flatMap(Self.jsonObject)?["error"] as? [String: Any]
            #expect(error?["code"] as? String == "preflight_violations", "\(r.stderr)")
            let violations = error?["violations"] as? [[String: Any]] ?? []
            #expect(violations.first?["table"] as? String == "t", "\(r.stderr)")
            #expect((violations.first?["keys"] as? [[String: Any]])?.first?["id"] as? Int == 1, "\(r.stderr)")
        }
    }

    /// SIGTERM under --json: exit 143 and an `interrupted` error line.
    @Test(.timeLimit(.minutes(10)))
    func anInterruptionUnderJSONIsJSON() throws {
        try withTemporaryDirectory { dir in
            try makeMigration(dir)
            let child = try start(["migrate", "--plan", "plan.yml", "--follow", "--json"], in: dir)
            // Following once the copy is done: the state says so.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                let status = try run(["status", "--plan", "plan.yml", "--json"], in: dir)
                if let o = status.stdout.split(separator: "\n").first.flatMap(Self.jsonObject), o["caught_up"] as? Bool == true { break }
                usleep(50_000)
            }
            child.sendSignal(SIGTERM)
            let finished = try child.wait(timeoutSeconds: 60)
            #expect(finished.status == 143 && !finished.signaled, "\(finished.summary)")
            let lines = finished.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(finished.stderr)")
            let error = lines.first.flatMap(Self.jsonObject)?["error"] as? [String: Any]
            #expect(error?["code"] as? String == "interrupted", "\(finished.stderr)")
            #expect(error?["signal"] as? String == "SIGTERM", "\(finished.stderr)")
        }
    }

    // MARK: 3. `-` is standard input

    @Test(.timeLimit(.minutes(10)))
    func thePlanReadsFromStandardInput() throws {
        try withTemporaryDirectory { dir in
            try makeMigration(dir)
            // From a redirected file and from a pipe; its paths are relative
            // to the current directory.
            let migrate = try shell("\"$TIDEMARK\" migrate --plan - < plan.yml", in: dir)
            #expect(migrate.status == 0, "\(migrate.stderr)")
            #expect(migrate.stdout.hasPrefix("caught up: 20 rows copied"), "\(migrate.stdout)")
            #expect(FileManager.default.fileExists(atPath: dir + "/dst.db"))
            let verify = try shell("cat plan.yml | \"$TIDEMARK\" verify --plan -", in: dir)
            #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
            #expect(verify.stdout.contains("equal: 20 rows"), "\(verify.stdout)")
            let status = try shell("\"$TIDEMARK\" status --plan - --json < plan.yml", in: dir)
            #expect(status.status == 0, "\(status.stderr)")
            #expect(Self.jsonObject(status.stdout.split(separator: "\n").first ?? "")?["phase"] as? String == "verified", "\(status.stdout)")
            // An empty standard input is a bad plan, not a default one.
            let empty = try shell("\"$TIDEMARK\" status --plan - --json < /dev/null", in: dir)
            #expect(empty.status == 1, "\(empty.stdout)")
            #expect(empty.stderr.contains("\"invalid_plan\"") && empty.stderr.contains("standard input"), "\(empty.stderr)")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func logAppendReadsStandardInputThreeWays() throws {
        try withTemporaryDirectory { dir in
            let records = (1...3).map { #"{"table":"users","op":"insert","key":{"id":\#($0)},"after":{"id":\#($0),"name":"u\#($0)"}}"# }
            try writeText(dir + "/changes.jsonl", records.joined(separator: "\n") + "\n")
            // `< file`, `--input -` from a pipe, `--input FILE`: the same records.
            let redirected = try shell("\"$TIDEMARK\" log append --log a < changes.jsonl", in: dir)
            let piped = try shell("cat changes.jsonl | \"$TIDEMARK\" log append --log b --input -", in: dir)
            let named = try run(["log", "append", "--log", "c", "--input", "changes.jsonl"], in: dir)
            for (name, r) in [("< file", redirected), ("--input -", piped), ("--input FILE", named)] {
                #expect(r.status == 0, "\(name): \(r.stderr)")
                #expect(r.stdout == "3\n", "\(name): \(r.stdout)")
            }
            for log in ["a", "b", "c"] {
                let tail = try run(["log", "tail", "--log", log, "--from", "1", "--format", "jsonl"], in: dir)
                #expect(tail.status == 0, "\(tail.stderr)")
                #expect(tail.stdout.split(separator: "\n").count == 3, "\(log): \(tail.stdout)")
                #expect(tail.stdout.contains(#""name":"u3""#), "\(log): \(tail.stdout)")
            }
            // A database is not a stream: `-` is refused in one line, nothing made.
            for args in [["capture", "install", "--source", "-", "--log", "d"], ["log", "as-of", "--db", "-", "--log", "a", "--at", "1", "--table", "users"],
                         ["transform", "-", "users", "--drop", "name"]] {
                let r = try run(args, in: dir)
                #expect(r.status == 64, "\(args): \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("standard input"), "\(args): \(r.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/d"))
        }
    }

    // MARK: 4. --quiet and --verbose

    @Test(.timeLimit(.minutes(10)))
    func quietPrintsOnlyTheResultAndVerbosePrintsEachStep() throws {
        try withTemporaryDirectory { dir in
            try makeMigration(dir)
            let quiet = try run(["migrate", "--plan", "plan.yml", "--quiet"], in: dir, environment: ["TIDEMARK_PROGRESS_INTERVAL": "0"])
            #expect(quiet.status == 0, "\(quiet.stderr)")
            #expect(quiet.stderr.isEmpty, "quiet: no progress, no notes: \(quiet.stderr)")
            #expect(quiet.stdout.split(separator: "\n").count == 1 && quiet.stdout.hasPrefix("caught up: 20 rows copied"), "\(quiet.stdout)")

            let verbose = try run(["verify", "--plan", "plan.yml", "--verbose"], in: dir)
            #expect(verbose.status == 0, "\(verbose.stderr)")
            let details = verbose.stderr.split(separator: "\n")
            #expect(details.count >= 2, "\(verbose.stderr)")
            #expect(details.allSatisfy { $0.hasPrefix("tidemark: [") && $0.contains(" s] ") }, "\(verbose.stderr)")
            #expect(verbose.stderr.contains("verifying t"), "\(verbose.stderr)")
            // The result is the same as without --verbose.
            let plain = try run(["verify", "--plan", "plan.yml"], in: dir)
            #expect(plain.stderr.isEmpty, "\(plain.stderr)")
            #expect(plain.stdout.split(separator: "\n").count == 2, "\(plain.stdout)")
            // (The verdict's seconds may differ between the two runs.)
            func untimed(_ s: String) -> [String] { s.split(separator: "\n").map { String($0.replacing(#/\sin [0-9.]+ s$/#, with: "")) } }
            #expect(untimed(verbose.stdout) == untimed(plain.stdout), "\(verbose.stdout) vs \(plain.stdout)")
            // Quiet verify: the per-table lines go, the verdict stays.
            let quietVerify = try run(["verify", "--plan", "plan.yml", "-q"], in: dir)
            #expect(quietVerify.status == 0 && quietVerify.stdout.hasPrefix("equal: 20 rows") && quietVerify.stdout.split(separator: "\n").count == 1, "\(quietVerify.stdout)")
            // --json wins over both: one object on stdout.
            let json = try run(["verify", "--plan", "plan.yml", "--json", "--quiet"], in: dir)
            #expect(json.stdout.split(separator: "\n").count == 1 && Self.jsonObject(json.stdout.split(separator: "\n")[0])?["equal"] as? Bool == true, "\(json.stdout)")

            // Verbose rollback and quiet cutover, through the long commands' paths.
            let cut = try run(["cutover", "--plan", "plan.yml", "-q"], in: dir)
            #expect(cut.status == 0 && cut.stderr.isEmpty && cut.stdout.hasPrefix("cut over at LSN"), "\(cut.stdout) \(cut.stderr)")
            let back = try run(["rollback", "--plan", "plan.yml", "-v"], in: dir)
            #expect(back.status == 0, "\(back.stderr)")
            #expect(back.stdout.hasPrefix("rolled back:"), "\(back.stdout)")
            #expect(back.stderr.contains("] plan plan.yml") && back.stderr.contains("] reversed:"), "\(back.stderr)")

            // Both at once is a usage error, changing nothing.
            let both = try run(["finish", "--plan", "plan.yml", "--quiet", "--verbose"], in: dir)
            #expect(both.status == 64 && both.stderr.contains("--quiet and --verbose"), "\(both.stderr)")
        }
    }

    /// capture run, log as-of --output and transform: quiet leaves the
    /// result alone; verbose adds timed steps on stderr.
    @Test(.timeLimit(.minutes(10)))
    func theOtherLongCommandsAreQuietOrVerboseToo() throws {
        try withTemporaryDirectory { dir in
            try makeMigration(dir)
            let install = try run(["capture", "install", "--source", "src.db", "--log", "log"], in: dir)
            #expect(install.status == 0, "\(install.stderr)")
            let c = try Connection(path: dir + "/src.db", mode: .readWrite)
            try c.execute("UPDATE t SET v = 'changed' WHERE id <= 5")
            try c.close()
            let verbose = try run(["capture", "run", "--source", "src.db", "--log", "log", "--once", "-v"], in: dir)
            #expect(verbose.status == 0 && verbose.stdout == "shipped 5 changes; log at LSN 5\n", "\(verbose.stdout) \(verbose.stderr)")
            #expect(verbose.stderr.contains("] source ") && verbose.stderr.contains("shipping into log from LSN 0, once"), "\(verbose.stderr)")
            let quiet = try run(["capture", "run", "--source", "src.db", "--log", "log", "--once", "-q"], in: dir)
            #expect(quiet.status == 0 && quiet.stderr.isEmpty && quiet.stdout == "shipped 0 changes; log at LSN 5\n", "\(quiet.stdout) \(quiet.stderr)")

            let asOfQuiet = try run(["log", "as-of", "--db", "src.db", "--log", "log", "--at", "2", "--output", "then.db", "--quiet"], in: dir)
            #expect(asOfQuiet.status == 0 && asOfQuiet.stderr.isEmpty, "\(asOfQuiet.stderr)")
            #expect(asOfQuiet.stdout.split(separator: "\n").count == 1 && asOfQuiet.stdout.hasPrefix("wrote then.db: 1 table as of LSN 2"), "\(asOfQuiet.stdout)")
            let asOfVerbose = try run(["log", "as-of", "--db", "src.db", "--log", "log", "--at", "3", "--output", "then3.db", "--verbose"], in: dir)
            #expect(asOfVerbose.status == 0, "\(asOfVerbose.stderr)")
            #expect(asOfVerbose.stderr.contains("backup API") && asOfVerbose.stderr.contains("undid 2 changes"), "\(asOfVerbose.stderr)")

            let items = try Connection(path: dir + "/shop.db", mode: .readWriteCreate)
            try items.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, price TEXT); INSERT INTO items VALUES (1, '1.5'), (2, '2.25');")
            try items.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, legacy TEXT); INSERT INTO notes VALUES (1, 'a', 'x');")
            try items.close()
            let transform = try run(["transform", "shop.db", "items", "--type", "price", "REAL", "--quiet"], in: dir)
            #expect(transform.status == 0, "\(transform.stderr)")
            #expect(!transform.stdout.contains("transforming items; plan:"), "quiet: no preamble: \(transform.stdout)")
            #expect(transform.stdout.hasPrefix("transformed items: 2 rows copied"), "\(transform.stdout)")
            let again = try run(["transform", "shop.db", "items", "--type", "price", "REAL", "--verbose"], in: dir)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stdout.contains("already transformed"), "\(again.stdout)")
            // One migration per file: keep the first (quietly) before the next.
            let finish = try run(["finish", "--plan", "shop.db.tidemark/items/plan.yml", "--drop-source", "-q"], in: dir)
            #expect(finish.status == 0 && finish.stderr.isEmpty && finish.stdout.hasPrefix("finished: removed"), "\(finish.stdout) \(finish.stderr)")
            let steps = try run(["transform", "shop.db", "notes", "--drop", "legacy", "--verbose"], in: dir)
            #expect(steps.status == 0, "\(steps.stderr)")
            #expect(steps.stdout.hasPrefix("transforming notes; plan:"), "\(steps.stdout)")
            for step in ["copying", "verifying", "swapping"] {
                #expect(steps.stderr.contains(" s] \(step)\n"), "\(step): \(steps.stderr)")
            }
        }
    }

    // MARK: 5. Progress when stderr is not a terminal

    @Test(.timeLimit(.minutes(10)))
    func progressIsPlainLinesWhenNotATerminal() throws {
        try withTemporaryDirectory { dir in
            // 200 chunks: more than a whole-table step takes, so the copy goes chunk by chunk.
            try makeMigration(dir, rows: 2_000, chunkRows: 10)
            // Every update (interval 0): plain lines, no escape codes.
            let r = try run(["migrate", "--plan", "plan.yml"], in: dir, environment: ["TIDEMARK_PROGRESS_INTERVAL": "0"])
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count >= 5, "\(r.stderr)")
            #expect(lines.allSatisfy { $0.hasPrefix("tidemark: progress: ") }, "\(r.stderr)")
            #expect(!r.stderr.contains("\u{1B}") && !r.stderr.contains("\r"), "escape codes on a file: \(r.stderr.debugDescription)")
            #expect(r.stderr.contains("copying t → t 10/2000 rows ("), "\(r.stderr)")
            #expect(r.stderr.contains("1 of 1 table copied"), "\(r.stderr)")
            #expect(r.stdout.hasPrefix("caught up: 2000 rows copied"), "\(r.stdout)")
            // By default at most one line every 5 s: a short run prints none.
            let verify = try run(["verify", "--plan", "plan.yml"], in: dir)
            #expect(verify.status == 0 && verify.stderr.isEmpty, "\(verify.stderr)")
            let everyTime = try run(["verify", "--plan", "plan.yml", "--chunk-rows", "500"], in: dir, environment: ["TIDEMARK_PROGRESS_INTERVAL": "0"])
            #expect(everyTime.stderr.contains("tidemark: progress: verifying t: "), "\(everyTime.stderr)")
            #expect(!everyTime.stderr.contains("\u{1B}"), "\(everyTime.stderr.debugDescription)")
        }
    }
}
