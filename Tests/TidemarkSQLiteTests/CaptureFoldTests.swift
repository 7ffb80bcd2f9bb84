import Foundation
import Testing
import TidemarkLog
import TidemarkTestSupport
@testable import TidemarkSQLite

/// The randomized proof of "every committed change is captured exactly once":
/// writers mix every way an application writes a SQLite table while real
/// `tidemark capture run` processes ship and are SIGKILLed at random; folding
/// the log into rows by key must then give the source's tables exactly (all
/// five storage classes, bit for bit), and no delete may be logged for a row
/// that is not there (a duplicate or a phantom).
///
/// `TIDEMARK_FOLD_SEEDS=N` runs seeds 1…N instead of the default sample;
/// `TIDEMARK_FOLD_SEED=S` runs seed S alone (to reproduce a failure).
@Suite("Capture fold under SIGKILL")
struct CaptureFoldTests {
    static let schema = """
        CREATE TABLE a(id INTEGER PRIMARY KEY, u TEXT UNIQUE, v, w);
        CREATE TABLE b(k TEXT PRIMARY KEY, u INTEGER UNIQUE ON CONFLICT REPLACE, v, touched INT DEFAULT 0);
        CREATE TABLE c(k1 INTEGER NOT NULL, k2 TEXT NOT NULL, u, v, PRIMARY KEY (k1, k2)) WITHOUT ROWID;
        CREATE UNIQUE INDEX c_u ON c(u COLLATE NOCASE);
        CREATE UNIQUE INDEX a_vw ON a(v, w) WHERE w IS NOT NULL;
        """

    static let seeds: [Int] = {
        let environment = ProcessInfo.processInfo.environment
        if let one = environment["TIDEMARK_FOLD_SEED"].flatMap(Int.init) { return [one] }
        if let count = environment["TIDEMARK_FOLD_SEEDS"].flatMap(Int.init), count > 0 { return Array(1...count) }
        return [1, 2]
    }()

    /// The writer: `path seed statements`. Two connections, one with
    /// recursive_triggers on; autocommit statements and transactions with
    /// savepoints, some rolled back; failing statements are part of the mix;
    /// application triggers appear midway.
    static let writer = #"""
import sqlite3, sys, random, struct, math, subprocess, time
path, seed, count, tidemark, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = random.Random(seed)
conns = []
for recursive in ("OFF", "ON"):
    c = sqlite3.connect(path, isolation_level=None, timeout=60)
    c.execute("PRAGMA recursive_triggers = " + recursive)
    conns.append(c)

def value():
    k = rng.random()
    if k < 0.15: return None
    if k < 0.35: return rng.choice([0, 1, -1, 2**63 - 1, -2**63, rng.randint(-1000, 1000)])
    if k < 0.55:
        if rng.random() < 0.5: return rng.choice([0.1, -0.0, 1e308, 5e-324, 1/3, 2.5])
        while True:
            d = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if not math.isnan(d): return d
    if k < 0.85: return "".join(rng.choice("ab'c\u00e9\x00 ") for _ in range(rng.randint(0, 6)))
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 5)))

def ak(): return rng.randint(1, 25)
def bk(): return "k%d" % rng.randint(1, 25)
def ck(): return (rng.randint(1, 4), rng.choice(["x", "y", "z", "X"]))
def au(): return rng.choice(["u%d" % rng.randint(1, 15), None])
def bu(): return rng.choice([rng.randint(1, 15), None])
def cu(): return rng.choice(["m%d" % rng.randint(1, 10), "M%d" % rng.randint(1, 10), None])
def small(): return rng.choice([None, 1, 2, "p", "q"])

APP_TRIGGERS = [
    "CREATE TRIGGER app_b_touch AFTER UPDATE OF v ON b BEGIN UPDATE b SET touched = touched + 1 WHERE k = NEW.k; END",
    "CREATE TRIGGER app_a_fill AFTER INSERT ON a BEGIN UPDATE a SET w = coalesce(w, 'filled') WHERE id = NEW.id; END",
    "CREATE TRIGGER app_c_copy AFTER INSERT ON c BEGIN INSERT OR REPLACE INTO a(id, u, v) VALUES (100 + NEW.k1, NULL, NEW.v); END",
    "CREATE TRIGGER app_c_bump AFTER UPDATE ON c BEGIN UPDATE b SET v = NEW.v WHERE k = 'k' || NEW.k1; END",
]

def statement():
    t = rng.choice("abc")
    r = rng.random()
    if t == "a":
        if r < 0.12: return "INSERT INTO a(id, u, v, w) VALUES (?, ?, ?, ?)", (ak(), au(), value(), small())
        if r < 0.22: return rng.choice(["INSERT OR REPLACE", "REPLACE"]) + " INTO a(id, u, v, w) VALUES (?, ?, ?, ?)", (ak(), au(), small(), small())
        if r < 0.28: return "INSERT OR IGNORE INTO a(id, u, v, w) VALUES (?, ?, ?, ?)", (ak(), au(), value(), small())
        if r < 0.34: return "INSERT INTO a(id, u, v) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v, u = excluded.u", (ak(), au(), value())
        if r < 0.38: return "INSERT INTO a(id, u, v) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (ak(), au(), value())
        if r < 0.50: return "UPDATE a SET v = ? WHERE id = ?", (value(), ak())
        if r < 0.58: return "UPDATE OR REPLACE a SET u = ? WHERE id = ?", (au(), ak())
        if r < 0.70: return "UPDATE %sa SET %s = ? WHERE id = ?" % (rng.choice(["", "OR REPLACE ", "OR IGNORE "]), rng.choice(["rowid", "oid", "_rowid_", "id"])), (ak(), ak())
        if r < 0.76: return "UPDATE OR FAIL a SET id = id + 1 WHERE id > ?", (ak(),)
        if r < 0.84: return "DELETE FROM a WHERE id = ?", (ak(),)
        if r < 0.90: return "INSERT OR FAIL INTO a(id, u, v) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)", (ak(), au(), value(), ak(), au(), value(), ak(), au(), value())
        if r < 0.95: return "UPDATE OR REPLACE a SET v = ?, w = ? WHERE id = ?", (small(), small(), ak())
        return "REPLACE INTO a(id, u, v, w) SELECT id + ?, u, v, w FROM a WHERE id % 5 = ?", (rng.randint(-3, 3), rng.randint(0, 4))
    if t == "b":
        if r < 0.15: return "INSERT INTO b(k, u, v) VALUES (?, ?, ?)", (bk(), bu(), value())
        if r < 0.25: return "INSERT OR REPLACE INTO b(k, u, v) VALUES (?, ?, ?)", (bk(), bu(), value())
        if r < 0.30: return "INSERT OR IGNORE INTO b(k, u, v) VALUES (?, ?, ?)", (bk(), bu(), value())
        if r < 0.38: return "INSERT INTO b(k, u, v) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", (bk(), bu(), value())
        if r < 0.50: return "UPDATE b SET v = ? WHERE k = ?", (value(), bk())
        if r < 0.58: return "UPDATE b SET u = ? WHERE k = ?", (bu(), bk())
        if r < 0.66: return "UPDATE %sb SET k = ? WHERE k = ?" % rng.choice(["", "OR REPLACE "]), (bk(), bk())
        if r < 0.70: return "UPDATE OR REPLACE b SET rowid = ? WHERE k = ?", (rng.randint(1, 30), bk())
        if r < 0.74: return "INSERT OR REPLACE INTO b(rowid, k, u, v) VALUES (?, ?, ?, ?)", (rng.randint(1, 30), bk(), bu(), value())
        if r < 0.82: return "DELETE FROM b WHERE k = ?", (bk(),)
        if r < 0.88: return "UPDATE OR FAIL b SET u = u + 1 WHERE u IS NOT NULL", ()
        if r < 0.94: return "UPDATE b SET v = CASE typeof(v) WHEN 'text' THEN v || 'x' ELSE v END WHERE touched % 2 = ?", (rng.randint(0, 1),)
        return "DELETE FROM b WHERE u > ?", (rng.randint(5, 20),)
    if r < 0.15: return "INSERT INTO c(k1, k2, u, v) VALUES (?, ?, ?, ?)", ck() + (cu(), value())
    if r < 0.28: return rng.choice(["INSERT OR REPLACE", "REPLACE"]) + " INTO c(k1, k2, u, v) VALUES (?, ?, ?, ?)", ck() + (cu(), value())
    if r < 0.34: return "INSERT OR IGNORE INTO c(k1, k2, u, v) VALUES (?, ?, ?, ?)", ck() + (cu(), value())
    if r < 0.42: return "INSERT INTO c(k1, k2, u, v) VALUES (?, ?, ?, ?) ON CONFLICT(k1, k2) DO UPDATE SET u = excluded.u", ck() + (cu(), value())
    if r < 0.52: return "UPDATE c SET v = ? WHERE k1 = ?", (value(), rng.randint(1, 4))
    if r < 0.62: return "UPDATE OR REPLACE c SET u = ? WHERE k1 = ? AND k2 = ?", (cu(),) + ck()
    if r < 0.74: return "UPDATE %sc SET k1 = ?, k2 = ? WHERE k1 = ? AND k2 = ?" % rng.choice(["", "OR REPLACE ", "OR IGNORE "]), ck() + ck()
    if r < 0.80: return "UPDATE OR ROLLBACK c SET u = ? WHERE k2 = ?", (cu(), rng.choice("xyz"))
    if r < 0.90: return "DELETE FROM c WHERE k1 = ? AND k2 = ?", ck()
    return "INSERT OR ROLLBACK INTO c(k1, k2, u, v) VALUES (?, ?, ?, ?), (?, ?, ?, ?)", ck() + (cu(), value()) + ck() + (cu(), value())

def run(db, sql, args):
    try:
        db.execute(sql, args)
    except sqlite3.Error as e:
        # A statement may fail on its own terms, never because of capture.
        if "_tidemark" in str(e): raise SystemExit("capture failed a writer's statement: %s: %s" % (sql, e))

done = 0
triggers_at = count // 3
while done < count:
    db = rng.choice(conns)
    if done >= triggers_at and APP_TRIGGERS:
        db.execute(APP_TRIGGERS.pop(0))
        triggers_at += count // 10
        # As the README says: after creating a trigger on a captured table,
        # install capture again so that its triggers fire first. (It needs
        # the log's lock, which a shipper may hold for a moment.)
        for attempt in range(400):
            done_install = subprocess.run([tidemark, "capture", "install", "--source", path, "--log", log],
                                          capture_output=True, text=True)
            if done_install.returncode == 0: break
            time.sleep(0.05)
        else:
            raise SystemExit("capture install kept failing: " + done_install.stderr)
    if rng.random() < 0.6:
        run(db, *statement())
        done += 1
        continue
    db.execute("BEGIN IMMEDIATE")
    for _ in range(rng.randint(1, 6)):
        if not db.in_transaction: break
        if rng.random() < 0.2:
            db.execute("SAVEPOINT s")
            for _ in range(rng.randint(1, 3)):
                run(db, *statement())
                done += 1
            if db.in_transaction:
                db.execute("ROLLBACK TO s" if rng.random() < 0.5 else "RELEASE s")
                if db.in_transaction and rng.random() < 0.5: run(db, "RELEASE s", ())
        else:
            run(db, *statement())
            done += 1
    if db.in_transaction:
        db.execute("ROLLBACK" if rng.random() < 0.15 else "COMMIT")
    time.sleep(rng.random() * 0.002)  # an application's pace: the shipper gets its turns
"""#

    @Test("writers mixing every write form, shippers SIGKILLed at random: the log folds into the source exactly",
          .timeLimit(.minutes(10)), arguments: Self.seeds)
    func foldEqualsSource(seed: Int) throws {
        let tidemark = try tidemarkExecutable()
        try withTemporaryDirectory { directory in
            let dbPath = directory + "/source.db"
            let logPath = directory + "/log"
            let db = try Connection(path: dbPath, mode: .readWriteCreate)
            defer { try? db.close() }
            try db.execute(Self.schema)
            try Capture.install(connection: db, sourceID: "fold-test")
            try LogAppender(directory: logPath, sourceID: "fold-test").close()

            let writer = try Child.started(try python3Executable(), ["-c", Self.writer, dbPath, String(seed), "2500", tidemark, logPath])
            defer { writer.stopAndReap() }

            var generator = SplitMix64(seed: UInt64(seed) &* 0x9E37_79B9)
            var kills = 0
            let deadline = ContinuousClock.now + .seconds(240)
            while writer.isRunning && ContinuousClock.now < deadline {
                let shipper = try Child.started(tidemark, ["capture", "run", "--source", dbPath, "--log", logPath, "--interval-ms", "2"])
                usleep(useconds_t(Int.random(in: 50_000...700_000, using: &generator)))
                shipper.sendSignal(SIGKILL)
                _ = try shipper.wait(timeoutSeconds: 30)
                kills += 1
            }
            let written = try writer.wait(timeoutSeconds: 300)
            try #require(written.status == 0 && written.reason == .exit, "seed \(seed): writer failed: \(written.summary)")
            let shippedByKilled = try LogReader(directory: logPath).headLSN()

            // One last shipper, to the end.
            try runProcess(tidemark, ["capture", "run", "--source", dbPath, "--log", logPath, "--once"]).succeeded("the last shipper")
            #expect(try Capture.status(connection: db)?.backlog == 0, "seed \(seed)")

            let records = try logRecords(logPath)
            #expect(zip(records, records.dropFirst()).allSatisfy { $0.lsn < $1.lsn }, "seed \(seed): LSNs increase")
            #expect(records.count > 500, "seed \(seed): only \(records.count) changes were captured")
            #expect(records.contains { $0.isKeyChange }, "seed \(seed): no key change was exercised")
            for table in ["a", "b", "c"] {
                let source = try tableRows(db, table)
                let folded = fold(records, table: table, strict: true)
                #expect(folded == source, "seed \(seed): the log of table \(table) does not fold into the source")
                if folded != source {
                    for key in Set(source.keys).union(folded.keys) where source[key] != folded[key] {
                        print("seed \(seed) table \(table) key \(key): source \(source[key].map { "\($0)" } ?? "-") log \(folded[key].map { "\($0)" } ?? "-")")
                    }
                }
            }
            print("fold seed \(seed): \(records.count) changes, \(kills) shippers killed (they shipped up to LSN \(shippedByKilled))")
        }
    }
}
