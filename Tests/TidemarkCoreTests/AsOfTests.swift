import Foundation
import Synchronization
import Testing
import TidemarkTestSupport
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// `tidemark log as-of`: a database rewound from its live copy with the
/// log's before images must equal, row for row, a copy saved at that LSN
/// while it was being written.
@Suite(.serialized) struct AsOfTests {
    static let schema = """
        CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT, n REAL);
        CREATE TABLE b(k1 TEXT NOT NULL, k2 INTEGER NOT NULL, val BLOB, note TEXT, PRIMARY KEY (k1, k2)) WITHOUT ROWID;
        CREATE TABLE audit(seq INTEGER PRIMARY KEY AUTOINCREMENT, a_id INTEGER, what TEXT);
        CREATE TRIGGER a_audit AFTER INSERT ON a BEGIN INSERT INTO audit(a_id, what) VALUES (NEW.id, 'insert'); END;
        """
    static let tables = ["a": "id", "b": "k1, k2", "audit": "seq"]

    /// Every captured table's rows, ordered by key.
    static func image(_ path: String) throws -> [String: [[Value]]] {
        let c = try Connection(path: path, mode: .readOnly)
        defer { try? c.close() }
        var out: [String: [[Value]]] = [:]
        for (table, key) in tables {
            out[table] = try c.values("SELECT * FROM \(table) ORDER BY \(key)")
        }
        return out
    }

    /// One writer transaction: inserts, updates, deletes and key changes on
    /// `a` (rowid key) and `b` (composite key).
    static func write(_ c: Connection, _ rng: inout SplitMix) throws {
        try c.transaction(.immediate) {
            for _ in 0..<rng.int(1...3) {
                if rng.chance(50) {
                    let id = Int64(rng.int(1...40))
                    let exists = try c.integer("SELECT count(*) FROM a WHERE id = ?1", [.integer(id)]) > 0
                    if !exists {
                        let n: Value = rng.chance(20) ? .null : .real(Double(rng.int(-1000...1000)) / 8)
                        try c.prepare("INSERT INTO a(id, v, n) VALUES (?1, ?2, ?3)").execute([.integer(id), .text("v\(rng.int(0...999)) é"), n])
                    } else {
                        switch rng.int(0...2) {
                        case 0: try c.prepare("UPDATE a SET v = ?2, n = n + 1 WHERE id = ?1").execute([.integer(id), .text("u\(rng.int(0...999))")])
                        case 1: try c.prepare("DELETE FROM a WHERE id = ?1").execute([.integer(id)])
                        default:
                            let to = Int64(rng.int(1...40))
                            if try c.integer("SELECT count(*) FROM a WHERE id = ?1", [.integer(to)]) == 0 {
                                try c.prepare("UPDATE a SET id = ?2 WHERE id = ?1").execute([.integer(id), .integer(to)])
                            }
                        }
                    }
                } else {
                    let k1 = rng.pick(["x", "y", "z"])
                    let k2 = Int64(rng.int(1...8))
                    let key: [Value] = [.text(k1), .integer(k2)]
                    let exists = try c.integer("SELECT count(*) FROM b WHERE k1 = ?1 AND k2 = ?2", key) > 0
                    if !exists {
                        let blob: Value = rng.chance(20) ? .null : .blob((0..<rng.int(0...6)).map { _ in UInt8(rng.int(0...255)) })
                        try c.prepare("INSERT INTO b(k1, k2, val, note) VALUES (?1, ?2, ?3, ?4)").execute(key + [blob, .text("n\(rng.int(0...99))")])
                    } else {
                        switch rng.int(0...2) {
                        case 0: try c.prepare("UPDATE b SET note = ?3 WHERE k1 = ?1 AND k2 = ?2").execute(key + [.text("m\(rng.int(0...99))")])
                        case 1: try c.prepare("DELETE FROM b WHERE k1 = ?1 AND k2 = ?2").execute(key)
                        default:
                            let to: [Value] = [.text(rng.pick(["x", "y", "z"])), .integer(Int64(rng.int(1...8)))]
                            if try c.integer("SELECT count(*) FROM b WHERE k1 = ?1 AND k2 = ?2", to) == 0 {
                                try c.prepare("UPDATE b SET k1 = ?3, k2 = ?4 WHERE k1 = ?1 AND k2 = ?2").execute(key + to)
                            }
                        }
                    }
                }
            }
        }
    }

    final class Control: Sendable {
        let pause = Atomic<Bool>(false)
        let paused = Atomic<Bool>(false)
        let stopWriter = Atomic<Bool>(false)
        let stopShipper = Atomic<Bool>(false)
        let shipperDone = Atomic<Bool>(false)
        let failure = Mutex<String?>(nil)

        func fail(_ what: String) { failure.withLock { if $0 == nil { $0 = what } } }

        func waitUntil(_ flag: borrowing Atomic<Bool>, is value: Bool) {
            for _ in 0..<2_000 where flag.load(ordering: .acquiring) != value { usleep(1_000) }
        }
    }

    struct Saved {
        var path: String
        var lsn: LSN
        var time: Timestamp
    }

    @Test(.timeLimit(.minutes(10)))
    func rewoundCopiesEqualCopiesSavedAtTheirLSNUnderLiveWrites() throws {
        let seed = UInt64(Date().timeIntervalSince1970 * 1000) % 1_000_000
        print("AsOfTests seed \(seed)")
        try withTemporaryDirectory { dir in
            let db = dir + "/live.db"
            let logDir = dir + "/changelog"
            let sourceID = SourceID.random()
            do {
                let c = try Connection(path: db, mode: .readWriteCreate)
                try c.execute(Self.schema)
                try c.execute("INSERT INTO a(id, v, n) VALUES (1, 'first', 0.5); INSERT INTO b VALUES ('x', 1, X'00FF', 'first');")
                try Capture.install(connection: c, sourceID: sourceID)
                try c.close()
            }
            let installed = dir + "/saved-0.db"
            try Connection(path: db, mode: .readOnly).backup(to: installed).close()

            let control = Control()
            let writer = Thread {
                do {
                    let c = try Connection(path: db)
                    var rng = SplitMix(seed: seed)
                    while !control.stopWriter.load(ordering: .acquiring) {
                        if control.pause.load(ordering: .acquiring) {
                            control.paused.store(true, ordering: .releasing)
                            while control.pause.load(ordering: .acquiring) { usleep(500) }
                            control.paused.store(false, ordering: .releasing)
                            continue
                        }
                        try Self.write(c, &rng)
                    }
                    try c.close()
                } catch {
                    control.fail("writer: \(error)")
                }
                control.paused.store(true, ordering: .releasing)
            }
            let shipperThread = Thread {
                do {
                    let log = try LogAppender(directory: logDir, sourceID: sourceID, options: LogOptions(durability: .none))
                    let shipper = try Shipper(connection: try Connection(path: db), appender: log,
                                              options: Shipper.Options(batchLimit: 50, idlePauseMillis: 5))
                    try shipper.run(until: { control.stopShipper.load(ordering: .acquiring) })
                    try log.close()
                } catch {
                    control.fail("shipper: \(error)")
                }
                control.shipperDone.store(true, ordering: .releasing)
            }
            writer.start()
            shipperThread.start()

            var saved = [Saved(path: installed, lsn: .zero, time: Timestamp(microsSinceEpoch: 0))]
            /// Saves a copy and the LSN it is at; `pause`d, also a time
            /// between that LSN's commit and the next. Unpaused, the copy is
            /// taken while the writer writes (the backup is one snapshot).
            func save(_ index: Int, pause: Bool = true) throws {
                if pause {
                    control.pause.store(true, ordering: .releasing)
                    control.waitUntil(control.paused, is: true)
                    // Commit times are whole milliseconds: keep clear of them.
                    usleep(30_000)
                }
                let time = Timestamp(microsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1_000_000))
                let path = dir + "/saved-\(index).db"
                let copy = try Connection(path: db, mode: .readOnly).backup(to: path)
                let lsn = try SQLiteStore.captureHighWater(on: copy, schema: "main")
                try copy.close()
                saved.append(Saved(path: path, lsn: lsn, time: time))
                if pause {
                    usleep(30_000)
                    control.pause.store(false, ordering: .releasing)
                }
            }
            for i in 1...4 {
                usleep(150_000)
                try save(i, pause: i != 2)
            }
            // The rest stays in the outbox: the rewind must read it there.
            control.stopShipper.store(true, ordering: .releasing)
            control.waitUntil(control.shipperDone, is: true)
            usleep(100_000)
            try save(5)
            usleep(100_000)
            control.stopWriter.store(true, ordering: .releasing)
            control.waitUntil(control.paused, is: true)
            control.waitUntil(control.shipperDone, is: true)
            if let failure = control.failure.withLock({ $0 }) { Issue.record("\(failure)"); return }

            let live = try Connection(path: db, mode: .readOnly)
            let liveLSN = try SQLiteStore.captureHighWater(on: live, schema: "main")
            let unshipped = try live.integer("SELECT count(*) FROM _tidemark_outbox")
            try live.close()
            print("AsOfTests saved at LSN \(saved.map(\.lsn.rawValue)); live at \(liveLSN) with \(unshipped) unshipped")
            #expect(unshipped > 0, "the test must leave changes in the outbox")
            #expect(saved[4].lsn > saved[1].lsn)
            let records = try LogReader(directory: logDir).cursor().allRecords()
            #expect(records.contains { $0.isKeyChange && $0.table == "a" })
            #expect(records.contains { $0.isKeyChange && $0.table == "b" })
            #expect(records.contains { $0.operation == .delete })

            for (i, s) in saved.enumerated() {
                let out = dir + "/asof-\(i).db"
                let run = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", String(s.lsn.rawValue), "--output", out], in: dir)
                #expect(run.status == 0, "as-of LSN \(s.lsn): \(run.stderr)")
                guard run.status == 0 else { continue }
                #expect(run.stdout.contains("as of LSN \(s.lsn)"), "\(run.stdout)")
                #expect(try Self.image(out) == Self.image(s.path), "as-of LSN \(s.lsn) (seed \(seed)) differs from the copy saved then")
                let objects = try captureObjects(out)
                #expect(objects == ["'a_audit'"], "Tidemark's objects must be gone, the application's trigger kept: \(objects)")
                let mode = try DatabaseImage(path: out)?.journalMode
                #expect(mode == "'delete'", "one self-contained file: \(String(describing: mode))")
            }
            // The application trigger works in the output.
            do {
                let out = try Connection(path: dir + "/asof-1.db")
                let before = try out.integer("SELECT count(*) FROM audit")
                try out.execute("INSERT INTO a(id, v) VALUES (1000, 'new')")
                #expect(try out.integer("SELECT count(*) FROM audit") == before + 1)
                try out.close()
            }

            // By time: the last LSN committed at or before it.
            for (i, s) in saved.enumerated().dropFirst() where i % 2 == 1 || i == 5 {
                let out = dir + "/asof-time-\(i).db"
                let run = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", s.time.description, "--output", out, "--json"], in: dir)
                #expect(run.status == 0, "as-of \(s.time): \(run.stderr)")
                guard run.status == 0 else { continue }
                #expect(run.stdout.contains("\"lsn\":\(s.lsn.rawValue),"), "as-of \(s.time) should be LSN \(s.lsn): \(run.stdout)")
                #expect(try Self.image(out) == Self.image(s.path), "as-of \(s.time) (seed \(seed)) differs from the copy saved then")
            }

            // Rows of one table, and one row by composite key.
            let point = saved[2]
            let expected = try Self.image(point.path)
            let rowsRun = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", String(point.lsn.rawValue), "--table", "b", "--json"], in: dir)
            #expect(rowsRun.status == 0, "\(rowsRun.stderr)")
            let lines = rowsRun.stdout.split(separator: "\n")
            #expect(lines.count == expected["b"]?.count)
            if let row = expected["b"]?.first, case .text(let k1) = row[0], case .integer(let k2) = row[1] {
                let one = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", String(point.lsn.rawValue),
                                           "--table", "b", "--key", "{\"k1\":\"\(k1)\",\"k2\":\(k2)}", "--json"], in: dir)
                #expect(one.status == 0, "\(one.stderr)")
                #expect(one.stdout.split(separator: "\n").count == 1)
                #expect(one.stdout.hasPrefix("{\"k1\":\"\(k1)\",\"k2\":\(k2),"), "\(one.stdout)")
                #expect(one.stdout == String(lines[0]) + "\n")
            }
            let library = try AsOf.rows(db: db, log: logDir, at: .lsn(point.lsn), table: "a")
            #expect(library.rows.map { $0.map(\.value) } == expected["a"])

            // Refusals: one line, non-zero exit.
            func refused(_ arguments: [String], _ needle: String) throws {
                let run = try runTidemark(["log", "as-of", "--db", db, "--log", logDir] + arguments, in: dir)
                #expect(run.status != 0, "\(arguments) should be refused")
                let errorLines = run.stderr.split(separator: "\n")
                #expect(errorLines.count == 1, "\(arguments): \(run.stderr)")
                #expect(run.stderr.contains(needle), "\(arguments): \(run.stderr)")
                #expect(run.stdout.isEmpty)
            }
            try refused(["--at", String(liveLSN.rawValue + 1_000), "--table", "a"], "in the future")
            try refused(["--at", "2999-01-01T00:00:00Z", "--table", "a"], "in the future")
            try refused(["--at", "2000-01-01T00:00:00Z", "--table", "a"], "before the earliest reachable point, LSN 0")
            try refused(["--at", "yesterday", "--table", "a"], "--at yesterday")
            try refused(["--at", "-5", "--table", "a"], "not an LSN")
            try refused(["--at", "1", "--table", "nope"], "table 'nope' is not captured")
            try refused(["--at", "1", "--table", "b", "--key", "3"], "composite key (k1, k2)")
            try refused(["--at", "1", "--table", "b", "--key", "{\"k1\":\"x\",\"kk\":1}"], "kk, not a key column")
            let existing = dir + "/asof-1.db"
            try refused(["--at", "1", "--output", existing], "already exists")
        }
    }

    /// Capture installed again later (continuing the same log): points before
    /// the new installation are refused, naming where it began.
    @Test(.timeLimit(.minutes(10)))
    func refusesAPointBeforeCaptureWasInstalled() throws {
        try withTemporaryDirectory { dir in
            let db = dir + "/live.db"
            let logDir = dir + "/changelog"
            let sourceID = SourceID.random()
            let c = try Connection(path: db, mode: .readWriteCreate)
            try c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            try Capture.install(connection: c, sourceID: sourceID)
            try c.execute("INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (2, 'b'); UPDATE t SET v = 'c' WHERE id = 1;")
            var log = try LogAppender(directory: logDir, sourceID: sourceID)
            try Shipper(connection: c, appender: log).drain()
            let head = log.lastLSN
            try log.close()
            try Capture.uninstall(connection: c)
            try c.execute("INSERT INTO t VALUES (3, 'not captured')")
            try Capture.install(connection: c, sourceID: sourceID, continuingAfter: head)
            try c.execute("DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (4, 'd');")
            log = try LogAppender(directory: logDir, sourceID: sourceID)
            try Shipper(connection: c, appender: log).drain()
            try log.close()
            try c.execute("UPDATE t SET v = 'e' WHERE id = 4")  // left in the outbox
            try c.close()

            let run = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", String(head.rawValue - 1), "--table", "t"], in: dir)
            #expect(run.status != 0)
            #expect(run.stderr.split(separator: "\n").count == 1, "\(run.stderr)")
            #expect(run.stderr.contains("earliest reachable point, LSN \(head)"), "\(run.stderr)")
            #expect(run.stderr.contains("capture was installed"), "\(run.stderr)")

            let rows = try AsOf.rows(db: db, log: logDir, at: .lsn(head), table: "t")
            #expect(rows.rows.map { $0.map(\.value) } == [[.integer(1), .text("c")], [.integer(2), .text("b")], [.integer(3), .text("not captured")]])
            #expect(rows.report.undone == 3 && rows.report.undoneFromOutbox == 1, "\(rows.report)")
            let text = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", String(head.rawValue + 2), "--table", "t", "--key", "4"], in: dir)
            #expect(text.status == 0, "\(text.stderr)")
            #expect(text.stdout.hasSuffix(": 1 row\nid=4  v='d'\n"), "\(text.stdout)")

            // Changes lost to damage (quarantined by `log repair`) cannot be undone.
            let meta = logDir + "/log.meta"
            try (String(contentsOfFile: meta, encoding: .utf8) + "gap=\(head.rawValue + 1)-\(head.rawValue + 1)\n").write(toFile: meta, atomically: true, encoding: .utf8)
            let lost = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", String(head.rawValue), "--table", "t"], in: dir)
            #expect(lost.status != 0)
            #expect(lost.stderr.split(separator: "\n").count == 1 && lost.stderr.contains("lost to damage"), "\(lost.stderr)")
            let after = try AsOf.rows(db: db, log: logDir, at: .lsn(head.next), table: "t")
            #expect(after.rows.map { $0.map(\.value) } == [[.integer(1), .text("c")], [.integer(3), .text("not captured")]])
        }
    }

    /// Far more changes to undo than fit the in-memory part of the undo
    /// spool: the rest go through a temporary table and come back exact
    /// (reals bit for bit, blobs, text, NULLs, key changes), newest first.
    @Test(.timeLimit(.minutes(10)))
    func rewindsPastTheInMemorySpoolExactly() throws {
        let seed = UInt64(Date().timeIntervalSince1970 * 1000) % 1_000_000
        print("AsOfTests spool seed \(seed)")
        try withTemporaryDirectory { dir in
            let db = dir + "/live.db"
            let logDir = dir + "/changelog"
            let sourceID = SourceID.random()
            let c = try Connection(path: db, mode: .readWriteCreate)
            try c.execute(Self.schema)
            try Capture.install(connection: c, sourceID: sourceID)
            var rng = SplitMix(seed: seed)
            let log = try LogAppender(directory: logDir, sourceID: sourceID, options: LogOptions(durability: .none))
            let shipper = try Shipper(connection: c, appender: log)
            for _ in 0..<200 { try Self.write(c, &rng) }
            try shipper.drain()
            let saved = dir + "/saved.db"
            try c.backup(to: saved).close()
            let point = log.lastLSN
            var undone = 0
            while undone <= UndoSpoolLimit.inMemory + 1_000 {
                try Self.write(c, &rng)
                try c.prepare("UPDATE a SET n = ?1 WHERE id = (SELECT min(id) FROM a)").execute([.real(Double(bitPattern: rng.next() & 0x7FEF_FFFF_FFFF_FFFF))])
                undone = try shipper.drain() + undone
            }
            try log.close()
            try c.close()
            let out = dir + "/asof.db"
            let run = try runTidemark(["log", "as-of", "--db", db, "--log", logDir, "--at", String(point.rawValue), "--output", out], in: dir)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(try Self.image(out) == Self.image(saved), "seed \(seed): as-of LSN \(point) past the spool differs from the copy saved then")
        }
    }
}

/// The undo spool's in-memory part, as the test above needs it.
enum UndoSpoolLimit { static let inMemory = AsOf.UndoSpool.inMemory }
