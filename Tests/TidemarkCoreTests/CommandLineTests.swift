import Foundation
import Testing
import TidemarkTestSupport
@testable import TidemarkCore
import TidemarkSQLite

/// Command-line conventions: `--version`, the plan from `TIDEMARK_PLAN`,
/// and `verify`'s exit codes (0 equal, 1 different, 2 could not compare —
/// as `diff` and `cmp`).
@Suite struct CommandLineTests {
    func run(_ args: [String], in dir: String, environment extra: [String: String] = [:]) throws -> Finished {
        try runTidemark(args, in: dir, environment: extra)
    }

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
}
