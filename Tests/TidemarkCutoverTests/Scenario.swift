import TidemarkTestSupport
import Foundation
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

// The scenario every cutover test runs: a small shop-like source with a
// rowid table (`items`) and a composite-key WITHOUT ROWID table (`lines`),
// a plan that reshapes them in one of a few ways, and an in-memory model of
// what the source must hold, built from the initial rows and every write the
// writers had acknowledged.

/// An `items` row in source terms.
struct ItemRow: Equatable, Sendable {
    var owner: String
    var n: Int64
    var note: String?
}

/// A `lines` key.
struct LineKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    var batch: Int64
    var line: Int64
    static func < (a: LineKey, b: LineKey) -> Bool { (a.batch, a.line) < (b.batch, b.line) }
    var description: String { "(\(batch), \(line))" }
}

/// A `lines` row in source terms.
struct LineRow: Equatable, Sendable {
    var qty: Int64
    var sku: String
}

/// One acknowledged write, in source terms.
enum Write: Sendable {
    case putItem(Int64, ItemRow)
    case deleteItem(Int64)
    case putLine(LineKey, LineRow)
    case deleteLine(LineKey)
}

/// What the source (in source terms) must hold.
struct Model: Equatable, Sendable {
    var items: [Int64: ItemRow]
    var lines: [LineKey: LineRow]

    mutating func apply(_ w: Write) {
        switch w {
        case .putItem(let k, let r): items[k] = r
        case .deleteItem(let k): items[k] = nil
        case .putLine(let k, let r): lines[k] = r
        case .deleteLine(let k): lines[k] = nil
        }
    }
}

/// Where and how the plan puts `items` (`lines` only changes table name).
struct ItemsMapping: Sendable {
    var table: String
    var id = "id"
    var owner = "owner"
    var n = "n"
    var note = "note"
    /// Target `n` column = source `n` × factor.
    var factor: Int64 = 1
}

/// A plan shape the tests run with.
struct Layout: Sendable, CustomStringConvertible {
    var name: String
    var sameFile: Bool
    var items: ItemsMapping
    var linesTable: String
    /// The `tables:` section of the plan.
    var tablesYAML: String
    var description: String { name }

    /// Everything copied as is, into another file.
    static let identity = Layout(name: "identity", sameFile: false, items: ItemsMapping(table: "items"), linesTable: "lines", tablesYAML: """
          items: {}
          lines: {}
        """)

    /// Renamed table and columns, into another file.
    static let renamed = Layout(
        name: "renamed columns", sameFile: false,
        items: ItemsMapping(table: "things", owner: "who", n: "count", note: "remark"), linesTable: "lines", tablesYAML: """
          items:
            to: things
            columns:
              id: id
              who: owner
              count: n
              remark: note
          lines: {}
        """)

    /// A computed column with a declared inverse.
    static let computedWithInverse = Layout(
        name: "computed with inverse", sameFile: false,
        items: ItemsMapping(table: "items2", n: "n2", factor: 2), linesTable: "lines", tablesYAML: """
          items:
            to: items2
            columns:
              id: id
              owner: owner
              n2: n * 2
              note: note
            inverse:
              id: id
              owner: owner
              n: n2 / 2
              note: note
          lines: {}
        """)

    /// A computed column and no inverse: rollback after cutover must refuse.
    static let computedWithoutInverse = Layout(
        name: "computed without inverse", sameFile: false,
        items: ItemsMapping(table: "items2", n: "n2", factor: 2), linesTable: "lines", tablesYAML: """
          items:
            to: items2
            columns:
              id: id
              owner: owner
              n2: n * 2
              note: note
          lines: {}
        """)

    /// Reshaped into another file: renamed tables, a renamed and a computed column.
    static let reshaped = Layout(
        name: "reshaped", sameFile: false,
        items: ItemsMapping(table: "accounts", owner: "holder", n: "n2", factor: 2), linesTable: "line_items", tablesYAML: """
          items:
            to: accounts
            columns:
              id: id
              holder: owner
              n2: n * 2
              note: note
          lines:
            to: line_items
        """)

    /// New tables in the same file, one with a computed column.
    static let sameFile = Layout(
        name: "same file", sameFile: true,
        items: ItemsMapping(table: "items_v2", n: "n2", factor: 2), linesTable: "lines_v2", tablesYAML: """
          items:
            to: items_v2
            columns:
              id: id
              owner: owner
              n2: n * 2
              note: note
          lines:
            to: lines_v2
        """)

    /// New tables in the same file, plain copies (rollback needs no inverse).
    static let sameFileIdentity = Layout(
        name: "same file, plain copies", sameFile: true,
        items: ItemsMapping(table: "items_new"), linesTable: "lines_new", tablesYAML: """
          items:
            to: items_new
          lines:
            to: lines_new
        """)
}

/// A source database, its plan, and the paths around it.
struct Scenario: Sendable {
    let root: String
    let layout: Layout
    let initialItems: Int
    let initialBatches: Int

    var source: String { root + "/source.db" }
    var target: String { layout.sameFile ? source : root + "/target.db" }
    var plan: String { root + "/plan.yml" }
    var log: String { root + "/changelog" }
    var stopFile: String { root + "/stop-writers" }
    var planArguments: [String] { ["--plan", plan] }

    /// Creates the source (WAL, initial rows) and the plan.
    static func create(root: String, layout: Layout, items: Int = 1_500, batches: Int = 500) throws -> Scenario {
        let s = Scenario(root: root, layout: layout, initialItems: items, initialBatches: batches)
        let c = try Connection(path: s.source, mode: .readWriteCreate)
        _ = try c.setJournalMode(.wal)
        try c.execute("""
            CREATE TABLE items(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, n INTEGER NOT NULL, note TEXT);
            CREATE TABLE lines(batch INTEGER NOT NULL, line INTEGER NOT NULL, qty INTEGER NOT NULL, sku TEXT NOT NULL,
                               PRIMARY KEY (batch, line)) WITHOUT ROWID;
            """)
        let model = s.initialModel()
        try c.transaction(.immediate) {
            let item = try c.prepare("INSERT INTO items(id, owner, n, note) VALUES (?, ?, ?, ?)")
            for (id, r) in model.items { try item.execute([.integer(id), .text(r.owner), .integer(r.n), r.note.map { .text($0) } ?? .null]) }
            let line = try c.prepare("INSERT INTO lines(batch, line, qty, sku) VALUES (?, ?, ?, ?)")
            for (k, r) in model.lines { try line.execute([.integer(k.batch), .integer(k.line), .integer(r.qty), .text(r.sku)]) }
        }
        try c.close()
        let yaml = """
            source: source.db
            target: \(layout.sameFile ? "source.db" : "target.db")
            log: changelog
            chunk_rows: 400
            tables:
            \(layout.tablesYAML)

            """
        try yaml.write(toFile: s.plan, atomically: true, encoding: .utf8)
        return s
    }

    func initialModel() -> Model {
        var m = Model(items: [:], lines: [:])
        for id in 1...Int64(initialItems) {
            m.items[id] = ItemRow(owner: "init", n: id, note: id % 5 == 0 ? nil : "note \(id)")
        }
        for b in 1...Int64(initialBatches) {
            for l in Int64(1)...2 { m.lines[LineKey(batch: b, line: l)] = LineRow(qty: b % 7 + l, sku: "sku-\(b)-\(l)") }
        }
        return m
    }

    func loadPlan() throws -> Plan { try Plan.load(path: plan) }

    // MARK: Reading tables

    static func itemValues(_ id: Int64, _ r: ItemRow, factor: Int64) -> [Value] {
        [.integer(id), .text(r.owner), .integer(r.n * factor), r.note.map { .text($0) } ?? .null]
    }

    static func lineValues(_ k: LineKey, _ r: LineRow) -> [Value] {
        [.integer(k.batch), .integer(k.line), .integer(r.qty), .text(r.sku)]
    }

    /// `items` rows as the source holds them, in key order.
    func sourceItems() throws -> [[Value]] {
        try rows(source, "SELECT id, owner, n, note FROM items ORDER BY id")
    }

    func sourceLines() throws -> [[Value]] {
        try rows(source, "SELECT batch, line, qty, sku FROM lines ORDER BY batch, line")
    }

    /// Target `items` rows, columns in source order (`n` as stored: × factor).
    func targetItems() throws -> [[Value]] {
        let m = layout.items
        let q = quoteIdentifier
        return try rows(target, "SELECT \(q(m.id)), \(q(m.owner)), \(q(m.n)), \(q(m.note)) FROM \(q(m.table)) ORDER BY \(q(m.id))")
    }

    func targetLines() throws -> [[Value]] {
        try rows(target, "SELECT batch, line, qty, sku FROM \(quoteIdentifier(layout.linesTable)) ORDER BY batch, line")
    }

    /// Checks that the source holds exactly `model`, value for value and type for type.
    func expectSource(equals model: Model, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let items = model.items.sorted { $0.key < $1.key }.map { Self.itemValues($0.key, $0.value, factor: 1) }
        let lines = model.lines.sorted { $0.key < $1.key }.map { Self.lineValues($0.key, $0.value) }
        expectRows(try sourceItems(), items, "\(what): source items", sourceLocation: sourceLocation)
        expectRows(try sourceLines(), lines, "\(what): source lines", sourceLocation: sourceLocation)
    }

    /// Checks that the target holds exactly `model` transformed by the plan.
    func expectTarget(equals model: Model, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let items = model.items.sorted { $0.key < $1.key }.map { Self.itemValues($0.key, $0.value, factor: layout.items.factor) }
        let lines = model.lines.sorted { $0.key < $1.key }.map { Self.lineValues($0.key, $0.value) }
        expectRows(try targetItems(), items, "\(what): target \(layout.items.table)", sourceLocation: sourceLocation)
        expectRows(try targetLines(), lines, "\(what): target \(layout.linesTable)", sourceLocation: sourceLocation)
    }

    // MARK: State as stored

    /// The target's cutover journal (`_tidemark_migration.cutover_state`), or nil.
    func journal() throws -> String? {
        let c = try Connection(path: target, mode: .readOnly)
        guard try exists(c, table: "_tidemark_migration") else { return nil }
        let s = try c.prepare("SELECT cutover_state FROM _tidemark_migration")
        return try s.step() && !s.columnIsNull(0) ? s.columnText(0) : nil
    }

    /// The source's switch record LSN, or nil when there is none.
    func switchRecordLSN() throws -> Int64? {
        let c = try Connection(path: source, mode: .readOnly)
        guard try exists(c, table: "_tidemark_cutover") else { return nil }
        let s = try c.prepare("SELECT lsn FROM _tidemark_cutover WHERE id = 1")
        return try s.step() ? s.columnInt64(0) : nil
    }

    /// Names of guard triggers in `path`.
    func guards(in path: String) throws -> [String] {
        try rows(path, "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '\\_tidemark\\_guard\\_%' ESCAPE '\\' ORDER BY name")
            .map { if case .text(let s) = $0[0] { s } else { "?" } }
    }

    /// Every schema object whose name starts with `_tidemark`, plus a
    /// `sqlite_sequence` row for the outbox if one is left.
    func tidemarkObjects(in path: String) throws -> [String] {
        var names = try rows(path, "SELECT type || ' ' || name FROM sqlite_schema WHERE name LIKE '\\_tidemark%' ESCAPE '\\' ORDER BY name")
            .map { if case .text(let s) = $0[0] { s } else { "?" } }
        let c = try Connection(path: path, mode: .readOnly)
        if try exists(c, table: "sqlite_sequence") {
            names += try rows(path, "SELECT 'sqlite_sequence row ' || name FROM sqlite_sequence WHERE name LIKE '\\_tidemark%' ESCAPE '\\'")
                .map { if case .text(let s) = $0[0] { s } else { "?" } }
        }
        return names
    }

    func tableExists(_ table: String, in path: String) throws -> Bool {
        try exists(try Connection(path: path, mode: .readOnly), table: table)
    }

    private func exists(_ c: Connection, table: String) throws -> Bool {
        let s = try c.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?")
        try s.bind([.text(table)])
        _ = try s.step()
        return s.columnInt64(0) > 0
    }

    /// Polls until the migration has caught up once.
    func waitUntilCaughtUp(timeoutSeconds: Double = 60, child: Child? = nil) async throws {
        try await waitUntilMigrationCaughtUp(target: target, timeoutSeconds: timeoutSeconds, child: child)
    }
}

/// Whether the migration into `target` has caught up once (`caught_up_at` is set).
func migrationCaughtUp(target: String) -> Bool {
    guard FileManager.default.fileExists(atPath: target),
          let c = try? Connection(path: target, mode: .readOnly),
          let s = try? c.prepare("SELECT caught_up_at IS NOT NULL FROM _tidemark_migration"),
          (try? s.step()) == true
    else { return false }
    return s.columnInt64(0) == 1
}

/// Polls until the migration into `target` has caught up once.
func waitUntilMigrationCaughtUp(target: String, timeoutSeconds: Double = 60, child: Child? = nil) async throws {
    let start = ContinuousClock.now
    while !migrationCaughtUp(target: target) {
        if let child, !child.isRunning {
            Issue.record("the migrator exited before catching up: \(child.stderrText)")
            throw ChildTimedOut(description: "migrator exited")
        }
        if (ContinuousClock.now - start).millis > timeoutSeconds * 1000 {
            throw ChildTimedOut(description: "the migration did not catch up in \(timeoutSeconds) s")
        }
        try await pause(milliseconds: 50)
    }
}

func rows(_ path: String, _ sql: String) throws -> [[Value]] {
    let c = try Connection(path: path, mode: .readOnly, busyTimeoutMillis: 10_000)
    return try c.prepare(sql).rows { s in (0..<s.columnCount).map { s.columnValue($0) } }
}

/// Compares two row lists and reports the first few differing keys (not a
/// wall of values).
func expectRows(_ got: [[Value]], _ want: [[Value]], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    if got == want { return }
    var gi = 0, wi = 0, shown = 0
    var notes: [String] = []
    func key(_ r: [Value]) -> String { r.count == 4 && what.contains("line") ? "(\(r[0]), \(r[1]))" : "\(r[0])" }
    while (gi < got.count || wi < want.count) && shown < 8 {
        if gi < got.count, wi < want.count, got[gi] == want[wi] { gi += 1; wi += 1; continue }
        if gi < got.count, wi < want.count, key(got[gi]) == key(want[wi]) {
            notes.append("key \(key(got[gi])): has \(got[gi]) want \(want[wi])"); gi += 1; wi += 1
        } else if wi < want.count, !got[gi...].contains(where: { key($0) == key(want[wi]) }) {
            notes.append("key \(key(want[wi])) missing (want \(want[wi]))"); wi += 1
        } else if gi < got.count {
            notes.append("key \(key(got[gi])) unexpected (\(got[gi]))"); gi += 1
        } else {
            break
        }
        shown += 1
    }
    Issue.record("\(what): \(got.count) rows, expected \(want.count); first differences: \(notes.joined(separator: "; "))", sourceLocation: sourceLocation)
}

extension Dictionary where Key == String, Value == Any {
    func int(_ key: String) -> Int64? { (self[key] as? NSNumber)?.int64Value }
    func double(_ key: String) -> Double? { (self[key] as? NSNumber)?.doubleValue }
    func string(_ key: String) -> String? { self[key] as? String }
    func bool(_ key: String) -> Bool? { (self[key] as? NSNumber)?.boolValue }
}
