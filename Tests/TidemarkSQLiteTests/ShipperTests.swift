import Foundation
import Testing
import TidemarkTestSupport
import TidemarkLog
@testable import TidemarkSQLite

/// A captured database and a log for it, in a temporary directory.
func withShippingSetup<R>(
    _ schema: String, _ body: (_ db: Connection, _ dbPath: String, _ logPath: String) throws -> R
) throws -> R {
    try withTemporaryDirectory { directory in
        let dbPath = directory + "/source.db"
        let logPath = directory + "/log"
        let db = try Connection(path: dbPath, mode: .readWriteCreate)
        defer { try? db.close() }
        try db.execute(schema)
        try Capture.install(connection: db, sourceID: "shipper-test")
        return try body(db, dbPath, logPath)
    }
}

@Suite("Shipper")
struct ShipperTests {
    @Test("ships outbox rows into the log with LSN = seq, then empties the outbox")
    func ships() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a, r REAL)") { db, dbPath, logPath in
            try sqlite3CLI(dbPath, """
                INSERT INTO t VALUES (1, 'one', 0.1), (2, 'two', 1e308);
                UPDATE t SET id = 3 WHERE id = 2;
                DELETE FROM t WHERE id = 1;
                """)
            // Two inserts, the key change as one update, a delete.
            let captured = try capturedRecords(db)
            #expect(captured.count == 4)
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test", options: LogOptions(durability: .none))
            let shipper = try Shipper(connection: db, appender: appender, options: .init(batchLimit: 2))
            #expect(try shipper.drain() == 4)
            try appender.close()
            let logged = try logRecords(logPath)
            #expect(logged == captured)
            #expect(logged.map(\.lsn) == (1...4).map { LSN($0) })
            #expect(logged.contains { $0.isKeyChange })
            #expect(try Capture.status(connection: db)?.backlog == 0)
            #expect(try Capture.status(connection: db)?.lastCaptured == LSN(4))
        }
    }

    @Test("a round after a crash between append and delete deletes without appending again")
    func crashBetweenAppendAndDelete() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, dbPath, logPath in
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');")
            // What a shipper killed after its append left behind: the first two
            // changes in the log, all three still in the outbox.
            let captured = try capturedRecords(db)
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
                try appender.append(Array(captured.prefix(2)))
                try appender.close()
            }
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
            let shipper = try Shipper(connection: db, appender: appender)
            let round = try shipper.shipOnce()
            #expect(round.shipped == 1)
            #expect(round.deleted == 3)
            try appender.close()
            #expect(try logRecords(logPath) == captured)
        }
    }

    @Test("a log of another source, or one ahead of the outbox, is refused")
    func foreignLogs() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, dbPath, logPath in
            let other = try LogAppender(directory: logPath + "-other", sourceID: "someone-else")
            let error = try #require(throws: CaptureError.self) { try Shipper(connection: db, appender: other) }
            #expect(error.code == .foreignSource)
            #expect(error.description.contains("someone-else"))

            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 'a');")
            let ahead = try LogAppender(directory: logPath, sourceID: "shipper-test")
            let record = ChangeRecord(lsn: LSN(7), timestampMicros: 0, table: "t", operation: .insert,
                                      key: [Field("id", .integer(1))], before: nil, after: [Field("id", .integer(1))])
            try ahead.append([record])
            let aheadError = try #require(throws: CaptureError.self) { try Shipper(connection: db, appender: ahead) }
            #expect(aheadError.description.contains("reinstalled"))
            #expect(try Capture.status(connection: db)?.backlog == 1)
        }
    }

    @Test("a table that changed shape stops the shipper before any of its rows are logged")
    func shapeChangeStops() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, dbPath, logPath in
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test", options: LogOptions(durability: .none))
            let shipper = try Shipper(connection: db, appender: appender)
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 'a');")
            #expect(try shipper.shipOnce().shipped == 1)
            try sqlite3CLI(dbPath, "ALTER TABLE t ADD COLUMN b; INSERT INTO t VALUES (2, 'b', 'bee');")
            let error = try #require(throws: CaptureError.self) { try shipper.shipOnce() }
            #expect(error.code == .shapeChanged)
            #expect(error.description.contains("'t'"))
            #expect(error.description.contains("tidemark capture install"))
            #expect(appender.lastLSN == LSN(1))
            // After review and reinstall, shipping resumes; the row written in
            // between carries the columns its triggers captured.
            try Capture.install(connection: db, sourceID: "shipper-test")
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (3, 'c', 'sea');")
            #expect(try shipper.drain() == 2)
            try appender.close()
            #expect(try logRecords(logPath).map { $0.after?.map(\.name) } == [["id", "a"], ["id", "a"], ["id", "a", "b"]])
        }
    }

    @Test("after uninstall and install, an old log is refused unless capture continues after its last LSN")
    func reinstall() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, dbPath, logPath in
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 'a'), (2, 'b');")
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "shipper-test", options: LogOptions(durability: .none))
                #expect(try Shipper(connection: db, appender: appender).drain() == 2)
                try appender.close()
            }
            try Capture.uninstall(connection: db)
            usleep(2000)  // the install time must be a later millisecond than the logged changes

            // Installed afresh, seqs start at 1 again: once more changes than
            // the log holds are captured, only the install time tells.
            try Capture.install(connection: db, sourceID: "shipper-test")
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (3, 'c'), (4, 'd'), (5, 'e');")
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
                let error = try #require(throws: CaptureError.self) { try Shipper(connection: db, appender: appender) }
                #expect(error.code == .foreignSource)
                #expect(error.description.contains("earlier installation"), "\(error)")
                try appender.close()
            }
            #expect(try Capture.status(connection: db)?.backlog == 3)

            // Continuing after the log's last LSN, the new changes follow it.
            try Capture.uninstall(connection: db, force: true)
            try Capture.install(connection: db, sourceID: "shipper-test", continuingAfter: LSN(2))
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (6, 'f');")
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test", options: LogOptions(durability: .none))
            #expect(try Shipper(connection: db, appender: appender).drain() == 1)
            try appender.close()
            #expect(try logRecords(logPath).map(\.lsn) == [LSN(1), LSN(2), LSN(3)])
            #expect(try logRecords(logPath).last?.key == [Field("id", .integer(6))])

            // Continuing after an LSN the log does not reach leaves a gap: refused.
            try Capture.uninstall(connection: db, force: true)
            try Capture.install(connection: db, sourceID: "shipper-test", continuingAfter: LSN(10))
            let behind = try LogAppender(directory: logPath, sourceID: "shipper-test")
            let gap = try #require(throws: CaptureError.self) { try Shipper(connection: db, appender: behind) }
            #expect(gap.description.contains("not in this log"), "\(gap)")
        }
    }

    /// The child half of the crash test: when started by it (with these
    /// environment variables), ship forever until killed.
    @Test("shipper child process", .enabled(if: ProcessInfo.processInfo.environment["TIDEMARK_SHIPPER_DB"] != nil))
    func shipperChildProcess() throws {
        let environment = ProcessInfo.processInfo.environment
        let db = try Connection(path: try #require(environment["TIDEMARK_SHIPPER_DB"]))
        let appender = try LogAppender(directory: try #require(environment["TIDEMARK_SHIPPER_LOG"]))
        let shipper = try Shipper(connection: db, appender: appender, options: .init(batchLimit: 7, idlePauseMillis: 2))
        try shipper.run(until: { false })
    }

    static let crashWriter = #"""
import sqlite3, sys, random, json, struct, time, math
path, out, seed, transactions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
db = sqlite3.connect(path, isolation_level=None, timeout=30)
db.execute("PRAGMA recursive_triggers = " + ("ON" if seed % 2 else "OFF"))

def enc(v):
    if v is None: return ["n"]
    if isinstance(v, int): return ["i", str(v)]
    if isinstance(v, float): return ["r", repr(v)]
    if isinstance(v, str): return ["t", v]
    return ["b", bytes(v).hex()]

def row(id):
    r = db.execute("SELECT id, name, score, data FROM t WHERE id = ?", (id,)).fetchone()
    return None if r is None else [enc(x) for x in r]

def value():
    k = rng.random()
    if k < 0.15: return None
    if k < 0.3: return rng.randint(-2**63, 2**63 - 1)
    if k < 0.6:
        while True:
            d = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if not math.isnan(d): return d
    if k < 0.7: return rng.choice([0.1, 1e308, -0.0, 1/3, 5e-324])
    if k < 0.9: return "".join(rng.choice("ab'c,\u00e9\u2713\n\x00 ") for _ in range(rng.randint(0, 12)))
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 10)))

with open(out, "w") as f:
    for _ in range(transactions):
        db.execute("BEGIN IMMEDIATE")
        pending = []
        for _ in range(rng.randint(1, 4)):
            ids = [r[0] for r in db.execute("SELECT id FROM t")]
            op = rng.random()
            if op < 0.35 or not ids:
                id = rng.randint(1, 300)
                if id in ids: continue
                db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (id, value(), value(), value()))
                pending.append({"op": "insert", "key": [enc(id)], "after": row(id)})
            elif op < 0.6:
                id = rng.choice(ids)
                before = row(id)
                db.execute("UPDATE t SET name = ?, score = ? WHERE id = ?", (value(), value(), id))
                pending.append({"op": "update", "key": [enc(id)], "before": before, "after": row(id)})
            elif op < 0.75:
                id = rng.choice(ids)
                before = row(id)
                db.execute("DELETE FROM t WHERE id = ?", (id,))
                pending.append({"op": "delete", "key": [enc(id)], "before": before})
            elif op < 0.88:
                old = rng.choice(ids)
                new = rng.randint(301, 10**6)
                if new in ids: continue
                before = row(old)
                db.execute("UPDATE t SET id = ? WHERE id = ?", (new, old))
                pending.append({"op": "update", "key": [enc(new)], "old_key": [enc(old)], "before": before, "after": row(new)})
            else:
                id = rng.choice(ids + [rng.randint(1, 300)])
                before = row(id)
                db.execute("INSERT INTO t VALUES (?, ?, NULL, NULL) ON CONFLICT(id) DO UPDATE SET data = excluded.name",
                           (id, value()))
                if before is None:
                    pending.append({"op": "insert", "key": [enc(id)], "after": row(id)})
                else:
                    pending.append({"op": "update", "key": [enc(id)], "before": before, "after": row(id)})
        if rng.random() < 0.1:
            db.execute("ROLLBACK")
        else:
            db.execute("COMMIT")
            for change in pending: f.write(json.dumps(change) + "\n")
            f.flush()
        time.sleep(rng.random() * 0.002)
"""#

    /// Parses the writer's independent record of its committed changes.
    static func writerRecord(_ path: String) throws -> [Change] {
        func value(_ any: Any) throws -> Value {
            guard let pair = any as? [String], let tag = pair.first else { throw ProcessFailure("bad value \(any)") }
            switch tag {
            case "n": return .null
            case "i": return .integer(try #require(Int64(pair[1])))
            case "r": return .real(try #require(Double(pair[1])))
            case "t": return .text(pair[1])
            case "b":
                let hex = Array(pair[1].utf8)
                return .blob(stride(from: 0, to: hex.count, by: 2).map {
                    UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)!
                })
            default: throw ProcessFailure("bad tag \(tag)")
            }
        }
        func image(_ any: Any?) throws -> [Value]? {
            guard let list = any as? [Any] else { return nil }
            return try list.map(value)
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let name = try #require(object["op"] as? String)
            return Change(
                "t", try #require(ChangeOperation(name: name)),
                key: try #require(try image(object["key"])), oldKey: try image(object["old_key"]),
                before: try image(object["before"]), after: try image(object["after"]))
        }
    }

    @Test("SIGKILL of the shipper at random moments loses and duplicates nothing",
          .timeLimit(.minutes(10)), arguments: [1, 2])
    func sigkill(seed: Int) throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, data)") { db, dbPath, logPath in
            try LogAppender(directory: logPath, sourceID: "shipper-test").close()
            let recordPath = dbPath + ".expected.jsonl"

            let writer = try Child.started("python3", ["-c", Self.crashWriter, dbPath, recordPath, String(seed), "3000"])
            defer { writer.stopAndReap() }

            #if os(Linux)
            let testBinary = "/proc/self/exe"
            #else
            let testBinary = CommandLine.arguments[0]
            #endif
            var generator = SplitMix64(seed: UInt64(seed))
            var kills = 0
            let environment = ["TIDEMARK_SHIPPER_DB": dbPath, "TIDEMARK_SHIPPER_LOG": logPath]
            let deadline = ContinuousClock.now + .seconds(120)
            while writer.isRunning || kills < 10 {
                guard ContinuousClock.now < deadline else { break }
                let child = try Child.started(testBinary, ["--testing-library", "swift-testing", "--filter", "shipperChildProcess"],
                                              environment: environment)
                usleep(useconds_t(Int.random(in: 50_000...600_000, using: &generator)))
                child.sendSignal(SIGKILL)
                let ended = try child.wait(timeoutSeconds: 30)
                #expect(ended.reason == .uncaughtSignal, "the shipper child must still be running when killed: \(ended.summary)")
                kills += 1
            }
            let written = try writer.wait(timeoutSeconds: 300)
            try #require(written.status == 0 && written.reason == .exit, "writer failed: \(written.summary)")
            #expect(kills >= 10)

            // The children did the shipping, not only the final drain below.
            let shippedByChildren = try LogReader(directory: logPath).headLSN()
            #expect(shippedByChildren > .zero, "children shipped up to \(shippedByChildren)")
            print("sigkill seed \(seed): \(kills) kills, children shipped up to LSN \(shippedByChildren)")

            // Restart once more and let it finish.
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test", options: LogOptions(durability: .none))
            try Shipper(connection: db, appender: appender).drain()
            try appender.close()

            let logged = try logRecords(logPath)
            let expected = try Self.writerRecord(recordPath)
            #expect(expected.count > 2000)
            #expect(logged.map(\.lsn) == (1...UInt64(logged.count)).map { LSN($0) }, "LSNs are 1…n with no gap")
            let changes = logged.map(Change.init)
            #expect(changes.count == expected.count)
            if let first = changes.indices.first(where: { $0 < expected.count && changes[$0] != expected[$0] }) {
                Issue.record("first difference at LSN \(first + 1): logged \(changes[first]) expected \(expected[first])")
            }
            #expect(try Capture.status(connection: db)?.backlog == 0)
            #expect(replay(changes, table: "t") == (try tableRows(db, "t")))
        }
    }
}
