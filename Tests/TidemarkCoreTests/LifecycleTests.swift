import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// The migration lifecycle (and `status`):
/// the applied position only moves forward, NULL key parts never reach the
/// target, cutover needs a clean verify, a changed plan stops every command
/// that would write, signals stop long commands at a safe point, and
/// `status` names the phase and the next command.
@Suite struct LifecycleTests {
    /// A source with one table keyed by an integer and a UNIQUE email, and a
    /// plan copying it to another file.
    struct Fixture {
        let dir: String
        var source: String { dir + "/src.db" }
        var target: String { dir + "/dst.db" }
        var planPath: String { dir + "/tidemark.yml" }
        var plan: Plan { get throws { try Plan.load(path: planPath) } }

        init(_ dir: String, schema: String = "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);",
             rows: String = "INSERT INTO users VALUES (10, 'x@x', 'X'), (11, 'y@y', 'Y'), (12, 'z@z', 'Z');",
             tables: String = "  users:\n    columns:\n      id: id\n      email: email\n      name: upper(name)") throws {
            self.dir = dir
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            _ = try c.setJournalMode(.wal)
            try c.execute(schema)
            try c.execute(rows)
            try c.close()
            try writePlan(tables)
        }

        func writePlan(_ tables: String) throws {
            try writeText(planPath, "source: src.db\ntarget: dst.db\nlog: changelog\nchunk_rows: 2\ntables:\n" + tables + "\n")
        }

        func sql(_ s: String) throws {
            let c = try Connection(path: source, mode: .readWrite)
            try c.execute(s)
            try c.close()
        }

        func storedApplied() throws -> LSN {
            let c = try Connection(path: target, mode: .readOnly)
            defer { try? c.close() }
            return try #require(try StateTables.position(c)).applied
        }

        /// `tidemark ARGS --plan PLAN`.
        func tidemark(_ args: [String], seconds: Double = 120) throws -> Finished {
            try runTidemark(args + ["--plan", planPath], in: dir, timeoutSeconds: seconds)
        }

        func migrateToCaughtUp() throws {
            let m = try Migrator.open(plan: try plan)
            defer { try? m.close() }
            let s = try m.run(seconds: 60)
            #expect(s.caughtUp)
        }
    }

    // MARK: 1. The applied position only moves forward

    #if DEBUG  // the seam between followStep and the caught-up save exists in debug builds only
    @Test("the caught-up save never stores an applied LSN older than the target's")
    func caughtUpSaveKeepsNewerPosition() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            let a = try Migrator.open(plan: try f.plan)
            var fired = false
            var bApplied = LSN.zero
            // Right after A's first catch-up check and before A records it,
            // another migrator (as a second process would) replays newer
            // changes whose re-application would collide on UNIQUE(email).
            a.afterFollowStepForTesting = {
                guard !fired else { return }
                fired = true
                try f.sql("""
                    INSERT INTO users VALUES (1, 'a@a', 'first');
                    UPDATE users SET email = 'b@b' WHERE id = 1;
                    INSERT INTO users VALUES (2, 'a@a', 'second');
                    """)
                _ = try a.feed.ship(sourceWritable: true)
                let b = try Migrator.open(plan: try f.plan)
                defer { try? b.close() }
                while try !b.followStep().1 {}
                bApplied = b.currentState.appliedLSN
            }
            _ = try a.run(seconds: 60)
            try a.close()
            #expect(fired)
            #expect(bApplied > .zero)
            #expect(try f.storedApplied() >= bApplied, "the stored applied LSN moved back from \(bApplied)")
            // The next run resumes from the stored position and must not
            // apply those changes again (it would wedge on UNIQUE(email)).
            try f.migrateToCaughtUp()
            try expectEqualTables(try f.plan, "after resuming")
        }
    }

    #endif

    @Test("saving an older applied LSN than the stored one is refused and writes nothing")
    func saveRefusesOlderPosition() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            try f.migrateToCaughtUp()
            try f.sql("INSERT INTO users VALUES (1, 'a@a', 'A'); INSERT INTO users VALUES (2, 'b@b', 'B');")
            try f.migrateToCaughtUp()
            let c = try Connection(path: f.target, mode: .readWrite)
            defer { try? c.close() }
            var state = try #require(try StateTables.load(c))
            let newer = state.appliedLSN
            state.appliedLSN = LSN(newer.rawValue - 1)
            #expect(throws: MigrationError.self) {
                try c.transaction(.immediate) { try StateTables.save(state, table: nil, in: c) }
            }
            #expect(try f.storedApplied() == newer)
        }
    }

    // MARK: 7. NULL in a key part

    static let nullableKeySchema = "CREATE TABLE t(a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b));"

    @Test("a table with NULL key parts is refused before copying, naming the rowids and what to do")
    func nullKeyRefusedUpFront() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, schema: Self.nullableKeySchema,
                                rows: "INSERT INTO t VALUES ('x', 1, 'one'), ('x', NULL, 'two'), ('y', 2, 'three'), (NULL, 3, 'four');",
                                tables: "  t: {}")
            let error = try #require(throws: MigrationError.self) { _ = try Migrator.open(plan: try f.plan) }
            #expect(error.message.contains("'t'"), "\(error)")
            #expect(error.message.contains("rowid 2, 4"), "\(error)")
            #expect(error.message.contains("NOT NULL"), "\(error)")
            #expect(!FileManager.default.fileExists(atPath: f.target))
        }
    }

    @Test("a key part set to NULL mid-migration stops replay with table and rowid, never duplicates; fixed, the run gets past it")
    func nullKeyMidMigration() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, schema: Self.nullableKeySchema,
                                rows: "INSERT INTO t VALUES ('x', 1, 'one'), ('x', 2, 'two'), ('y', 1, 'three');",
                                tables: "  t: {}")
            try f.migrateToCaughtUp()
            // A migrator already running (as `migrate --follow` would be)
            // meets the NULL key in replay.
            let m = try Migrator.open(plan: try f.plan)
            // Rekey to NULL, then update the NULL-keyed row twice: with `=`
            // key matching every change would add another target row.
            try f.sql("""
                UPDATE t SET b = NULL WHERE a = 'x' AND b = 1;
                UPDATE t SET v = 'changed' WHERE a = 'x' AND b IS NULL;
                UPDATE t SET v = 'again' WHERE a = 'x' AND b IS NULL;
                """)
            let error = try #require(throws: MigrationError.self) { _ = try m.run(seconds: 60) }
            try m.close()
            #expect(error.code == .nullKey, "\(error)")
            #expect(error.message.contains("'t'") && error.message.contains("rowid 1"), "\(error)")
            let target = try Connection(path: f.target, mode: .readOnly)
            #expect(try target.integer("SELECT count(*) FROM t WHERE a IS NULL OR b IS NULL") == 0, "a NULL-keyed row reached the target")
            #expect(try target.integer("SELECT count(*) FROM t") == 3)
            try target.close()
            // The user gives the row a key: the rerun gets past the old
            // change and ends equal.
            try f.sql("UPDATE t SET b = 7 WHERE a = 'x' AND b IS NULL;")
            try f.migrateToCaughtUp()
            try expectEqualTables(try f.plan, "after fixing the key")
        }
    }

    // MARK: 8. No unproven cutover

    @Test("cutover refuses without a clean verify after the copy; verify unlocks it; --skip-verify overrides loudly", .timeLimit(.minutes(10)))
    func cutoverNeedsVerify() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            // Never migrated: refused, and nothing is created.
            let never = try f.tidemark(["cutover"])
            #expect(never.status == 1, "stdout: \(never.stdout) stderr: \(never.stderr)")
            #expect(never.stderr.contains("verify"), "\(never.stderr)")
            #expect(!FileManager.default.fileExists(atPath: f.target))

            #expect(try f.tidemark(["migrate"]).status == 0)
            let unverified = try f.tidemark(["cutover"])
            #expect(unverified.status == 1, "\(unverified.stderr)")
            #expect(unverified.stderr.contains("no verify has run since the copy finished"), "\(unverified.stderr)")

            // A verify that finds a difference does not unlock it.
            let t = try Connection(path: f.target, mode: .readWrite)
            try t.execute("UPDATE users SET name = 'tampered' WHERE id = 11")
            #expect(try f.tidemark(["verify"]).status == 1)
            let dirty = try f.tidemark(["cutover"])
            #expect(dirty.status == 1, "\(dirty.stderr)")
            #expect(dirty.stderr.contains("found 1 differences"), "\(dirty.stderr)")
            try t.execute("UPDATE users SET name = 'Y' WHERE id = 11")
            try t.close()

            #expect(try f.tidemark(["verify"]).status == 0)
            let status = try f.tidemark(["status", "--json"])
            #expect(status.stdout.contains("\"phase\":\"verified\""), "\(status.stdout)")
            let cut = try f.tidemark(["cutover"])
            #expect(cut.status == 0, "\(cut.stderr)")
            #expect(cut.stdout.contains("cut over at LSN"), "\(cut.stdout)")
        }
    }

    /// A finished migration's switch record stays in the source (it routes
    /// the moved tables). A second migration from that source must not take
    /// it for its own cutover: before, `migrate` of the second went ahead,
    /// and its cutover settles on any switch record it finds as its own
    /// ("already cut over") without guarding the new table.
    @Test("a new migration from a source an earlier, finished migration switched is refused in one line, creating nothing", .timeLimit(.minutes(10)))
    func aSecondMigrationNeverTakesTheEarlierSwitchForItsOwn() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, schema: "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT); CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);",
                                rows: "INSERT INTO users VALUES (10, 'x@x', 'X'); INSERT INTO notes VALUES (1, 'a'), (2, 'b');")
            for step in [["migrate"], ["verify"], ["cutover"], ["finish"]] {
                let r = try f.tidemark(step)
                #expect(r.status == 0, "\(step): \(r.stderr)")
            }
            let second = dir + "/notes.yml"
            try writeText(second, "source: src.db\ntarget: notes.db\nlog: notes-log\ntables:\n  notes: {}\n")
            let migrate = try runTidemark(["migrate", "--plan", second], in: dir)
            #expect(migrate.status != 0, "\(migrate.stdout)")
            #expect(migrate.stderr.split(separator: "\n").count == 1 && migrate.stderr.contains("switched by an earlier migration (users"), "\(migrate.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/notes.db"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/notes-log"))
            // The source still takes writes to notes (nothing was guarded).
            try f.sql("INSERT INTO notes VALUES (3, 'c')")
        }
    }

    @Test("--skip-verify switches unproven with a warning, recorded in the state", .timeLimit(.minutes(10)))
    func skipVerify() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            #expect(try f.tidemark(["migrate"]).status == 0)
            let cut = try f.tidemark(["cutover", "--skip-verify"])
            #expect(cut.status == 0, "\(cut.stderr)")
            #expect(cut.stderr.contains("warning: --skip-verify"), "\(cut.stderr)")
            let c = try Connection(path: f.target, mode: .readOnly)
            #expect(try StateTables.load(c)?.skipVerifyAtMicros != nil)
            try c.close()
            let status = try f.tidemark(["status"])
            #expect(status.stdout.contains("--skip-verify"), "\(status.stdout)")
        }
    }

    // MARK: 9. Plan changed mid-migration

    @Test("an edited plan stops migrate, verify and cutover, naming the change; status and rollback use the stored plan", .timeLimit(.minutes(10)))
    func planChanged() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, schema: """
                CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);
                CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
                """, rows: "INSERT INTO users VALUES (10, 'x@x', 'X'); INSERT INTO notes VALUES (1, 'n');")
            try f.migrateToCaughtUp()
            let original = try f.plan
            // A column expression edited, and a table added.
            try f.writePlan("  users:\n    columns:\n      id: id\n      email: email\n      name: lower(name)\n  notes: {}")
            let error = try #require(throws: MigrationError.self) { _ = try Migrator.open(plan: try f.plan) }
            #expect(error.code == .planChanged, "\(error)")
            #expect(error.message.contains("column users.name is now `lower(name)` instead of `upper(name)`"), "\(error)")
            #expect(error.message.contains("table notes was added"), "\(error)")
            #expect(error.message.contains("rollback"), "\(error)")
            #expect(throws: MigrationError.self) { _ = try Verifier(plan: try f.plan).run() }

            let cut = try f.tidemark(["cutover", "--skip-verify"])
            #expect(cut.status == 1)
            #expect(cut.stderr.contains("the plan changed"), "\(cut.stderr)")
            let status = try f.tidemark(["status", "--json"])
            #expect(status.stdout.contains("\"blocked\":\"the plan changed"), "\(status.stdout)")
            #expect(status.stdout.contains("tidemark rollback"), "\(status.stdout)")

            // The way back works from the stored plan.
            let stored = try #require(try StoredPlan.load(for: try f.plan))
            #expect(stored.tables.map(\.source) == ["users"])
            #expect(stored.tables[0].columns?.map(\.expression) == ["id", "email", "upper(name)"])
            #expect(Plan.canonical(stored.source) == Plan.canonical(original.source))

            // Restoring the plan lets the migration go on.
            try f.writePlan("  users:\n    columns:\n      id: id\n      email: email\n      name: upper(name)")
            try f.migrateToCaughtUp()
        }
    }

    // MARK: 10. Interrupts

    /// Starts `tidemark migrate --follow`, waits until it follows, sends
    /// `signal`, and returns its exit status and stderr.
    func interruptFollow(_ f: Fixture, signal: Int32, marker: Int) throws -> (Int32, String) {
        let child = try Child.started(try tidemarkExecutable(), ["migrate", "--follow", "--plan", f.planPath])
        // Following for sure (handlers installed): a fresh row reached the target.
        try f.sql("INSERT INTO users VALUES (\(marker), 'm\(marker)@x', 'late')")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let c = try? Connection(path: f.target, mode: .readOnly),
               let n = try? c.integer("SELECT count(*) FROM users WHERE id = ?", [.integer(Int64(marker))]), n == 1 { break }
            usleep(20_000)
        }
        child.sendSignal(signal)
        let status = try child.wait(timeoutSeconds: 30).status
        #expect(!child.signaled, "the process died of the signal instead of stopping at a safe point")
        return (status, child.stderrText)
    }

    @Test("SIGINT and SIGTERM stop migrate --follow at a safe point with 130 and 143", .timeLimit(.minutes(10)))
    func interruptMigrate() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            let (intStatus, intErr) = try interruptFollow(f, signal: SIGINT, marker: 100)
            #expect(intStatus == 130, "stderr: \(intErr)")
            #expect(intErr.contains("interrupted (SIGINT)") && intErr.contains("applied LSN"), "\(intErr)")
            let (termStatus, termErr) = try interruptFollow(f, signal: SIGTERM, marker: 101)
            #expect(termStatus == 143, "stderr: \(termErr)")
            #expect(termErr.contains("interrupted (SIGTERM)"), "\(termErr)")
            try f.migrateToCaughtUp()
            try expectEqualTables(try f.plan, "after the interrupted runs")
        }
    }

    @Test("SIGINT mid-copy stops after a whole chunk with 130, naming the table and key; a rerun resumes", .timeLimit(.minutes(10)))
    func interruptCopy() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, rows: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) INSERT INTO users SELECT i, 'u' || i || '@x', 'n' FROM n;")
            let child = try Child.started(try tidemarkExecutable(), ["migrate", "--plan", f.planPath])
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let c = try? Connection(path: f.target, mode: .readOnly), let s = try? StateTables.load(c),
                   let t = s.tables.first, t.rowsCopied > 100 { break }
                usleep(10_000)
            }
            child.sendSignal(SIGINT)
            #expect(try child.wait(timeoutSeconds: 30).status == 130, "stderr: \(child.stderrText)")
            #expect(!child.signaled)
            #expect(child.stderrText.contains("interrupted (SIGINT): stopped copying users up to key"), "\(child.stderrText)")
            let c = try Connection(path: f.target, mode: .readOnly)
            let state = try #require(try StateTables.load(c))
            #expect(state.tables[0].phase == .copying, "the copy should have been stopped mid-way")
            #expect(try c.integer("SELECT count(*) FROM users") == Int64(state.tables[0].rowsCopied), "a chunk was half written")
            try c.close()
            try f.migrateToCaughtUp()
            try expectEqualTables(try f.plan, "after resuming the interrupted copy")
        }
    }

    /// Whether a write lock on `path` is held by someone else now.
    static func isWriteLocked(_ path: String) -> Bool {
        guard let c = try? Connection(path: path, mode: .readWrite, busyTimeoutMillis: 0) else { return false }
        defer { try? c.close() }
        do {
            try c.execute("BEGIN IMMEDIATE")
            try c.execute("ROLLBACK")
            return false
        } catch {
            return true
        }
    }

    @Test("SIGINT in cutover: before the commit point it is undone, after it it finishes; exit 130", .timeLimit(.minutes(10)))
    func interruptCutover() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir)
            #expect(try f.tidemark(["migrate"]).status == 0)
            #expect(try f.tidemark(["verify"]).status == 0)
            let env = ProcessInfo.processInfo.environment.merging(["TIDEMARK_CUTOVER_STEP_DELAY_MS": "700"]) { $1 }
            let args = ["cutover", "--max-pause-ms", "60000", "--plan", f.planPath]

            // Before the commit point: signalled while it holds the source's lock.
            let early = try Child.started(try tidemarkExecutable(), args, environment: env)
            var deadline = Date().addingTimeInterval(30)
            // Held across two looks 150 ms apart: the cutover's pause (each
            // step sleeps 700 ms), not a shipping round's short write.
            while Date() < deadline {
                if Self.isWriteLocked(f.source) {
                    usleep(150_000)
                    if Self.isWriteLocked(f.source) { break }
                }
                usleep(10_000)
            }
            early.sendSignal(SIGINT)
            #expect(try early.wait(timeoutSeconds: 30).status == 130, "stderr: \(early.stderrText)")
            #expect(early.stderrText.contains("before the commit point"), "\(early.stderrText)")
            let source = try Connection(path: f.source, mode: .readWrite)
            #expect(try SwitchRecord.read(source) == nil, "the interrupted cutover switched")
            try source.execute("INSERT INTO users VALUES (200, 'still@writable', 'w')")  // no guard
            let t = try Connection(path: f.target, mode: .readOnly)
            #expect(try StateTables.load(t)?.cutover == nil)

            // After the commit point: it finishes.
            #expect(try f.tidemark(["migrate"]).status == 0)
            #expect(try f.tidemark(["verify"]).status == 0)
            let late = try Child.started(try tidemarkExecutable(), args, environment: env)
            deadline = Date().addingTimeInterval(30)
            while Date() < deadline, (try? SwitchRecord.read(Connection(path: f.source, mode: .readOnly))) ?? nil == nil { usleep(10_000) }
            late.sendSignal(SIGINT)
            #expect(try late.wait(timeoutSeconds: 30).status == 130, "stderr: \(late.stderrText)")
            #expect(late.stderrText.contains("the cutover finished"), "\(late.stderrText)")
            #expect(try StateTables.load(t)?.cutover?.kind == .done)
        }
    }

    // MARK: status

    @Test("status names every phase and the one command to run next, in text and JSON", .timeLimit(.minutes(10)))
    func statusPhases() throws {
        try withTemporaryDirectory { dir in
            let f = try Fixture(dir, rows: (1...9).map { "INSERT INTO users VALUES (\($0), 'u\($0)@x', 'u');" }.joined(), tables: "  users: {}")
            func phase() throws -> (String, String) {
                let s = try f.tidemark(["status", "--json"])
                #expect(s.status == 0, "\(s.stderr)")
                let text = try f.tidemark(["status"])
                #expect(text.stdout.hasPrefix("phase: "), "\(text.stdout)")
                #expect(text.stdout.contains("next: "), "\(text.stdout)")
                return (s.stdout, text.stdout)
            }
            let p = "--plan \(f.planPath)"
            var (json, text) = try phase()
            #expect(json.contains("\"phase\":\"planned\"") && json.contains("\"next\":\"tidemark migrate \(p)\""), "\(json)")
            #expect(text.contains("next: tidemark migrate"), "\(text)")

            // In chunks, so that one step leaves the copy under way (nine
            // rows would otherwise go in one whole-table step).
            var chunked = MigratorOptions()
            chunked.wholeTableChunks = 0
            let m = try Migrator.open(plan: try f.plan, options: chunked)
            try m.copyStep(0)
            try m.close()
            (json, _) = try phase()
            #expect(json.contains("\"phase\":\"copying\"") && json.contains("\"next\":\"tidemark migrate \(p)\""), "\(json)")

            #expect(try f.tidemark(["migrate"]).status == 0)
            (json, _) = try phase()
            #expect(json.contains("\"phase\":\"caught up\"") && json.contains("\"next\":\"tidemark verify \(p)\""), "\(json)")

            #expect(try f.tidemark(["verify"]).status == 0)
            (json, _) = try phase()
            #expect(json.contains("\"phase\":\"verified\"") && json.contains("\"next\":\"tidemark cutover \(p)\""), "\(json)")

            #expect(try f.tidemark(["cutover"]).status == 0)
            (json, text) = try phase()
            #expect(json.contains("\"phase\":\"cut over\"") && json.contains("\"next\":\"tidemark finish \(p)\""), "\(json)")

            #expect(try f.tidemark(["rollback"]).status == 0)
            (json, _) = try phase()
            #expect(json.contains("\"phase\":\"rolled back\""), "\(json)")
        }
    }

    @Test("the lifecycle: derived phases, journals and the state machine's moves")
    func lifecycleModel() throws {
        var s = MigrationState(sourceID: "s", sourcePath: "/s", appliedLSN: LSN(10), appliedTimestampMicros: 0, startedAtMicros: 0,
                               caughtUpAtMicros: nil,
                               tables: [TableState(sourceTable: "t", targetTable: "t", position: 0, phase: .copying, tidemark: nil, ceiling: nil, rowsCopied: 0, rowsEstimate: 0)])
        #expect(Lifecycle.phase(of: nil, switched: false) == .planned)
        #expect(Lifecycle.phase(of: nil, switched: true) == .finished)
        #expect(Lifecycle.phase(of: s, switched: false) == .copying)
        s.tables[0].phase = .following
        s.copiedAtMicros = 100
        s.copiedLSN = LSN(10)
        #expect(Lifecycle.phase(of: s, switched: false) == .caughtUp)
        s.verification = VerifyRecord(atMicros: 50, fromLSN: LSN(5), throughLSN: LSN(9), differences: 0)
        #expect(Lifecycle.phase(of: s, switched: false) == .caughtUp, "a verify from before the copy finished proves nothing")
        #expect(throws: MigrationError.self) { try Lifecycle.requireProven(s, skipVerify: false) }
        s.verification = VerifyRecord(atMicros: 150, fromLSN: LSN(10), throughLSN: LSN(12), differences: 0)
        #expect(Lifecycle.phase(of: s, switched: false) == .verified)
        try Lifecycle.requireProven(s, skipVerify: false)
        var rolledBack = s
        rolledBack.cutover = .rolledBack(lsn: LSN(10), atMicros: 200, pauseMicros: 5)
        #expect(throws: MigrationError.self, "a verify from before a cutover and rollback proves nothing") { try Lifecycle.requireProven(rolledBack, skipVerify: false) }
        s.cutover = .prepared(lsn: LSN(10), atMicros: 200)
        let journal = try Lifecycle.pendingJournal(s)
        #expect(journal == PendingJournal(kind: .cutover, step: "prepared"))
        let l = Lifecycle.assess(s, switched: false, journal: journal, planArgument: "--plan p.yml")
        #expect(l.phase == .cutoverInterrupted && l.next == "tidemark cutover --plan p.yml")
        #expect(Lifecycle.assess(s, switched: false, journal: PendingJournal(kind: .rollback, step: "prepared"), planArgument: "").phase == .rollbackInterrupted)
        // The moves the README's diagram draws.
        #expect(LifecyclePhase.planned.after(.migrate) == .copying)
        #expect(LifecyclePhase.caughtUp.after(.verifyClean) == .verified)
        #expect(LifecyclePhase.caughtUp.after(.cutover) == nil, "no unproven cutover")
        #expect(LifecyclePhase.verified.after(.cutover) == .cutOver)
        #expect(LifecyclePhase.cutOver.after(.rollback) == .rolledBack)
        #expect(LifecyclePhase.cutOver.after(.finish) == .finished)
        #expect(LifecyclePhase.copying.after(.rollback) == .planned)
    }
}
