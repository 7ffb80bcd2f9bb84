import Foundation
import TidemarkTestSupport
import Synchronization
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

// Application writers: Python processes (the `sqlite3` module, with a busy
// timeout, as any application would) and threads of this process using
// TidemarkSQLite connections. Each owns a disjoint set of keys (initial rows
// with key % writers == index, and new keys from (index + 1) × 10⁶), writes
// absolute values, and records every write in order: acknowledged (with what
// was written and where), refused by a guard trigger (with the message), or
// failed otherwise.

enum Store: String, Sendable { case source, target }

enum WriterEvent: Sendable {
    case ok(Write, Store)
    /// A guard trigger refused it; the message, and the table and store written.
    case refused(String, table: String, store: Store)
    case failed(String)
}

struct WriterReport: Sendable {
    var name: String
    /// Whether this writer routes to the target after a refusal (else it keeps writing the old tables).
    var routing: Bool
    var events: [WriterEvent]
    var exitSummary: String?

    var acknowledged: Int { events.reduce(0) { if case .ok = $1 { $0 + 1 } else { $0 } } }
    var refusals: [(String, String)] { events.compactMap { if case .refused(let m, let t, _) = $0 { (m, t) } else { nil } } }
    var failures: [String] { events.compactMap { if case .failed(let m) = $0 { m } else { nil } } }
}

/// The rows a writer owns, as it last wrote them (what it may update or delete).
struct WriterState {
    let index: Int
    var items: [Int64: ItemRow] = [:]
    var itemKeys: [Int64] = []
    var lines: [LineKey: LineRow] = [:]
    var lineKeys: [LineKey] = []
    var nextID: Int64
    var nextBatch: Int64

    init(index: Int, writers: Int, scenario: Scenario) {
        self.index = index
        let initial = scenario.initialModel()
        for (k, r) in initial.items where k % Int64(writers) == Int64(index) { items[k] = r }
        for (k, r) in initial.lines where k.batch % Int64(writers) == Int64(index) { lines[k] = r }
        itemKeys = items.keys.sorted()
        lineKeys = lines.keys.sorted()
        nextID = Int64(index + 1) * 1_000_000
        nextBatch = Int64(index + 1) * 1_000_000
    }

    mutating func record(_ w: Write) {
        switch w {
        case .putItem(let id, let r): if items.updateValue(r, forKey: id) == nil { itemKeys.append(id) }
        case .deleteItem(let id): items[id] = nil; itemKeys.removeAll { $0 == id }
        case .putLine(let k, let r): if lines.updateValue(r, forKey: k) == nil { lineKeys.append(k) }
        case .deleteLine(let k): lines[k] = nil; lineKeys.removeAll { $0 == k }
        }
    }
}

/// SQL for writing `items`/`lines` where they live now (source or target, per the mapping).
struct WriterStatements {
    let insertItem: Statement, updateItem: Statement, deleteItem: Statement
    let insertLine: Statement, updateLine: Statement, deleteLine: Statement
    let itemsTable: String, linesTable: String

    init(_ c: Connection, items m: ItemsMapping, lines: String) throws {
        let q = quoteIdentifier
        let t = q(m.table), l = q(lines)
        itemsTable = m.table
        linesTable = lines
        insertItem = try c.prepare("INSERT INTO \(t)(\(q(m.id)), \(q(m.owner)), \(q(m.n)), \(q(m.note))) VALUES (?1, ?2, ?3 * \(m.factor), ?4)")
        updateItem = try c.prepare("UPDATE \(t) SET \(q(m.n)) = ?1 * \(m.factor), \(q(m.note)) = ?2 WHERE \(q(m.id)) = ?3")
        deleteItem = try c.prepare("DELETE FROM \(t) WHERE \(q(m.id)) = ?1")
        insertLine = try c.prepare("INSERT INTO \(l)(batch, line, qty, sku) VALUES (?1, ?2, ?3, ?4)")
        updateLine = try c.prepare("UPDATE \(l) SET qty = ?1 WHERE batch = ?2 AND line = ?3")
        deleteLine = try c.prepare("DELETE FROM \(l) WHERE batch = ?1 AND line = ?2")
    }
}

/// Writer threads in this process.
final class SwiftWriters: @unchecked Sendable {
    // @unchecked: `reports` is guarded by `lock`; `stop` is atomic; the rest is immutable.
    private let lock = NSCondition()
    private var reports: [WriterReport] = []
    private var running = 0
    let stop = Atomic<Bool>(false)

    /// Starts one writer thread per entry of `routing` (whether it follows
    /// the Router after a refusal), with indexes `firstIndex…`, making
    /// `ratePerSecond` writes each.
    init(scenario: Scenario, firstIndex: Int, routing: [Bool], writers: Int, ratePerSecond: Int) {
        running = routing.count
        for (i, routing) in routing.enumerated() {
            let index = firstIndex + i
            Thread.detachNewThread { [self] in
                let report = Self.run(scenario: scenario, index: index, writers: writers, rate: ratePerSecond, routing: routing, stop: stop)
                lock.lock()
                reports.append(report)
                running -= 1
                lock.broadcast()
                lock.unlock()
            }
        }
    }

    /// Stops the writers and returns their reports.
    func finish() async throws -> [WriterReport] {
        stop.store(true, ordering: .relaxed)
        return try await blocking {
            self.lock.lock()
            defer { self.lock.unlock() }
            let deadline = Date(timeIntervalSinceNow: 60)
            while self.running > 0 {
                if !self.lock.wait(until: deadline) { throw ChildTimedOut(description: "Swift writers did not stop") }
            }
            return self.reports.sorted { $0.name < $1.name }
        }
    }

    private static func run(scenario: Scenario, index: Int, writers: Int, rate: Int, routing: Bool, stop: borrowing Atomic<Bool>) -> WriterReport {
        var report = WriterReport(name: "swift-\(index)\(routing ? "-routing" : "")", routing: routing, events: [])
        var state = WriterState(index: index, writers: writers, scenario: scenario)
        var rng = SplitMix(seed: UInt64(7_000 + index))
        do {
            var connection = try Connection(path: scenario.source, mode: .readWrite, busyTimeoutMillis: 20_000)
            var statements = try WriterStatements(connection, items: ItemsMapping(table: "items"), lines: "lines")
            var store = Store.source
            let interval = 1.0 / Double(rate)
            var due = Date()
            while !stop.load(ordering: .relaxed) {
                let now = Date()
                if now < due { Thread.sleep(forTimeInterval: due.timeIntervalSince(now)); continue }
                due = due.addingTimeInterval(interval)
                if now.timeIntervalSince(due) > 1 { due = now }
                let pick = rng.next() % 100
                let a = rng.next(), b = rng.next()
                var retried = false
                // Choose the write (on keys this writer owns, so it must change exactly one row).
                let write: Write
                var isUpdate = false
                if pick < 25 || state.itemKeys.isEmpty && pick < 55 {
                    state.nextID += 1
                    write = .putItem(state.nextID, ItemRow(owner: "sw\(index)", n: Int64(a % 1000), note: b % 5 == 0 ? nil : "sw \(b % 10_000)"))
                } else if pick < 45 {
                    let id = state.itemKeys[Int(a % UInt64(state.itemKeys.count))]
                    write = .putItem(id, ItemRow(owner: state.items[id]!.owner, n: Int64(b % 1000), note: "upd \(a % 10_000)"))
                    isUpdate = true
                } else if pick < 55 {
                    write = .deleteItem(state.itemKeys[Int(a % UInt64(state.itemKeys.count))])
                } else if pick < 75 || state.lineKeys.isEmpty {
                    state.nextBatch += 1
                    write = .putLine(LineKey(batch: state.nextBatch, line: 1), LineRow(qty: Int64(1 + a % 9), sku: "sw-\(b % 5000)"))
                } else if pick < 92 {
                    let k = state.lineKeys[Int(a % UInt64(state.lineKeys.count))]
                    write = .putLine(k, LineRow(qty: Int64(10 + b % 90), sku: state.lines[k]!.sku))
                    isUpdate = true
                } else {
                    write = .deleteLine(state.lineKeys[Int(a % UInt64(state.lineKeys.count))])
                }
                while true {
                    do {
                        let changed = try perform(write, isUpdate: isUpdate, statements, connection)
                        guard changed == 1 else {
                            report.events.append(.failed("\(write) changed \(changed) rows on \(store.rawValue)"))
                            break
                        }
                        report.events.append(.ok(write, store))
                        state.record(write)
                    } catch let e as SQLiteError where e.message.hasPrefix("tidemark:") {
                        let table = if case .putItem = write { statements.itemsTable } else if case .deleteItem = write { statements.itemsTable } else { statements.linesTable }
                        report.events.append(.refused(e.message, table: table, store: store))
                        if routing && !retried {
                            // Cut over (or rolled back): route again and write where the data lives now.
                            let route = try Router(plan: try scenario.loadPlan()).route()
                            let now: Store = route.authority == .target ? .target : .source
                            guard now != store else {
                                report.events.append(.failed("refused by a guard but the router still says \(route.authority)"))
                                break
                            }
                            connection = try Connection(path: route.database, mode: .readWrite, busyTimeoutMillis: 20_000)
                            var items = now == .target ? scenario.layout.items : ItemsMapping(table: "items")
                            items.table = route.table(for: "items")
                            statements = try WriterStatements(connection, items: items, lines: route.table(for: "lines"))
                            store = now
                            retried = true
                            continue
                        }
                    } catch {
                        report.events.append(.failed("\(error)"))
                    }
                    break
                }
            }
        } catch {
            report.events.append(.failed("writer setup: \(error)"))
        }
        return report
    }

    private static func perform(_ w: Write, isUpdate: Bool, _ s: WriterStatements, _ c: Connection) throws -> Int {
        switch w {
        case .putItem(let id, let r):
            if isUpdate { try s.updateItem.execute([.integer(r.n), r.note.map { .text($0) } ?? .null, .integer(id)]) }
            else { try s.insertItem.execute([.integer(id), .text(r.owner), .integer(r.n), r.note.map { .text($0) } ?? .null]) }
        case .deleteItem(let id):
            try s.deleteItem.execute([.integer(id)])
        case .putLine(let k, let r):
            if isUpdate { try s.updateLine.execute([.integer(r.qty), .integer(k.batch), .integer(k.line)]) }
            else { try s.insertLine.execute([.integer(k.batch), .integer(k.line), .integer(r.qty), .text(r.sku)]) }
        case .deleteLine(let k):
            try s.deleteLine.execute([.integer(k.batch), .integer(k.line)])
        }
        return c.changes
    }
}

// MARK: - Python writers

/// The same writer in Python: `sqlite3` with a 20 s busy timeout, autocommit.
/// Prints one JSON line per write when it stops (the stop file appears).
let pythonWriterScript = #"""
import sqlite3, sys, json, random, time, os
path, w, W, n_items, n_batches, stop, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], float(sys.argv[7])
rng = random.Random(9000 + w)
con = sqlite3.connect(path, timeout=20.0, isolation_level=None)
items = {i: ("init", i, None if i % 5 == 0 else "note %d" % i) for i in range(1, n_items + 1) if i % W == w}
lines = {(b, l): (b % 7 + l, "sku-%d-%d" % (b, l)) for b in range(1, n_batches + 1) if b % W == w for l in (1, 2)}
next_id = (w + 1) * 1000000
next_batch = (w + 1) * 1000000
events = []
interval = 1.0 / rate
due = time.monotonic()
while not os.path.exists(stop):
    now = time.monotonic()
    if now < due:
        time.sleep(due - now)
        continue
    due += interval
    if now - due > 1:
        due = now
    p = rng.randrange(100)
    table = "items"
    try:
        if p < 25 or (not items and p < 55):
            next_id += 1
            row = ("py%d" % w, rng.randrange(1000), None if rng.randrange(5) == 0 else "py %d" % rng.randrange(10000))
            op = {"put": "items", "k": [next_id], "v": list(row)}
            cur = con.execute("INSERT INTO items(id, owner, n, note) VALUES (?, ?, ?, ?)", (next_id,) + row)
            key, val, store = next_id, row, items
        elif p < 45:
            k = rng.choice(sorted(items))
            row = (items[k][0], rng.randrange(1000), "upd %d" % rng.randrange(10000))
            op = {"put": "items", "k": [k], "v": list(row)}
            cur = con.execute("UPDATE items SET n = ?, note = ? WHERE id = ?", (row[1], row[2], k))
            key, val, store = k, row, items
        elif p < 55:
            k = rng.choice(sorted(items))
            op = {"del": "items", "k": [k]}
            cur = con.execute("DELETE FROM items WHERE id = ?", (k,))
            key, val, store = k, None, items
        elif p < 75 or not lines:
            table = "lines"
            next_batch += 1
            k = (next_batch, 1)
            row = (1 + rng.randrange(9), "py-%d" % rng.randrange(5000))
            op = {"put": "lines", "k": list(k), "v": list(row)}
            cur = con.execute("INSERT INTO lines(batch, line, qty, sku) VALUES (?, ?, ?, ?)", k + row)
            key, val, store = k, row, lines
        elif p < 92:
            table = "lines"
            k = rng.choice(sorted(lines))
            row = (10 + rng.randrange(90), lines[k][1])
            op = {"put": "lines", "k": list(k), "v": list(row)}
            cur = con.execute("UPDATE lines SET qty = ? WHERE batch = ? AND line = ?", (row[0],) + k)
            key, val, store = k, row, lines
        else:
            table = "lines"
            k = rng.choice(sorted(lines))
            op = {"del": "lines", "k": list(k)}
            cur = con.execute("DELETE FROM lines WHERE batch = ? AND line = ?", k)
            key, val, store = k, None, lines
        if cur.rowcount != 1:
            events.append({"failed": "%r changed %d rows" % (op, cur.rowcount)})
            continue
        if val is None:
            del store[key]
        else:
            store[key] = val
        events.append({"ok": op})
    except sqlite3.Error as e:
        if str(e).startswith("tidemark:"):
            events.append({"refused": str(e), "table": table})
        else:
            events.append({"failed": "%s: %s" % (type(e).__name__, e)})
for e in events:
    sys.stdout.write(json.dumps(e) + "\n")
sys.stdout.write(json.dumps({"done": len(events)}) + "\n")
"""#

/// Python writer processes.
final class PythonWriters: @unchecked Sendable {
    // @unchecked: immutable after init; the children synchronize themselves.
    let scenario: Scenario
    let children: [(Int, Child)]

    init(scenario: Scenario, firstIndex: Int, count: Int, writers: Int, ratePerSecond: Int) throws {
        self.scenario = scenario
        let python = try python3Executable()
        children = (0..<count).map { i in
            let index = firstIndex + i
            return (index, Child(executable: python, ["-c", pythonWriterScript, scenario.source, "\(index)", "\(writers)",
                                                       "\(scenario.initialItems)", "\(scenario.initialBatches)", scenario.stopFile, "\(ratePerSecond)"]))
        }
        _ = try? FileManager.default.removeItem(atPath: scenario.stopFile)
    }

    func start() async throws {
        for (_, c) in children { try c.start() }
    }

    /// Asks the writers to stop (the stop file) and parses what they did.
    func finish() async throws -> [WriterReport] {
        FileManager.default.createFile(atPath: scenario.stopFile, contents: Data())
        var reports: [WriterReport] = []
        for (index, c) in children {
            let f = try await c.waitForExit(timeoutSeconds: 60)
            var report = WriterReport(name: "python-\(index)", routing: false, events: [], exitSummary: nil)
            if f.status != 0 || f.reason != .exit {
                report.exitSummary = f.summary
            }
            var done = false
            for line in f.stdoutText.split(separator: "\n") {
                guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
                if let op = o["ok"] as? [String: Any] {
                    report.events.append(.ok(try Self.write(op), .source))
                } else if let m = o["refused"] as? String {
                    report.events.append(.refused(m, table: o["table"] as? String ?? "?", store: .source))
                } else if let m = o["failed"] as? String {
                    report.events.append(.failed(m))
                } else if o["done"] != nil {
                    done = true
                }
            }
            if !done && report.exitSummary == nil { report.exitSummary = "no final line: " + f.summary }
            reports.append(report)
        }
        return reports
    }

    func stopAndReap() { for (_, c) in children { c.stopAndReap() } }

    private static func write(_ op: [String: Any]) throws -> Write {
        let k = (op["k"] as? [NSNumber] ?? []).map(\.int64Value)
        let v = op["v"] as? [Any] ?? []
        switch (op["put"] as? String, op["del"] as? String) {
        case ("items", _):
            return .putItem(k[0], ItemRow(owner: v[0] as! String, n: (v[1] as! NSNumber).int64Value, note: v[2] as? String))
        case ("lines", _):
            return .putLine(LineKey(batch: k[0], line: k[1]), LineRow(qty: (v[0] as! NSNumber).int64Value, sku: v[1] as! String))
        case (_, "items"):
            return .deleteItem(k[0])
        case (_, "lines"):
            return .deleteLine(LineKey(batch: k[0], line: k[1]))
        default:
            throw ChildTimedOut(description: "unreadable writer event \(op)")
        }
    }
}

// MARK: - A mixed crowd

/// Python and Swift writers together, on disjoint keys.
struct Crowd: Sendable {
    let python: PythonWriters
    let swift: SwiftWriters

    /// `python` Python processes, `plain` Swift threads that keep writing the
    /// old tables, and `routing` Swift threads that follow the Router.
    static func start(_ scenario: Scenario, python: Int = 2, plain: Int = 1, routing: Int = 1, ratePerSecond: Int = 60) async throws -> Crowd {
        let writers = python + plain + routing
        let p = try PythonWriters(scenario: scenario, firstIndex: 0, count: python, writers: writers, ratePerSecond: ratePerSecond)
        try await p.start()
        let s = SwiftWriters(scenario: scenario, firstIndex: python, routing: Array(repeating: false, count: plain) + Array(repeating: true, count: routing),
                             writers: writers, ratePerSecond: ratePerSecond)
        return Crowd(python: p, swift: s)
    }

    func finish() async throws -> [WriterReport] {
        async let p = python.finish()
        let s = try await swift.finish()
        return try await p + s
    }
}
