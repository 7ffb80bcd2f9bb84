import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The seeds the model test runs: 1...40, or 1...N with `TIDEMARK_MODEL_SEEDS=N`
/// (a longer local run), or exactly one with `TIDEMARK_MODEL_SEED=S`.
let modelSeeds: [UInt64] = {
    let env = ProcessInfo.processInfo.environment
    if let s = env["TIDEMARK_MODEL_SEED"].flatMap(UInt64.init) { return [s] }
    if let n = env["TIDEMARK_MODEL_SEEDS"].flatMap(Int.init), n > 0 { return (1...n).map(UInt64.init) }
    return Array(1...40)
}()

/// A randomized model test of the tidemark loop (the tidemark invariant of
/// ARCHITECTURE.md, kept by `Migrator`).
///
/// Each seed builds random tables (integer, text, NOCASE text, composite and
/// WITHOUT ROWID keys), a plan with transforms and a tiny `chunk_rows`, then
/// interleaves application writes (through their own connection), single
/// migrator steps and crash-and-resume points (the migrator and all it owns
/// are dropped mid-migration, then reopened with `Migrator.open`). Writes are
/// also made *inside* steps, between the shipping calls of a copy step, so the
/// chunk's snapshot and the log race with writers as they do in production.
///
/// Whenever the target has applied everything captured so far, the invariant
/// is checked: every target row whose key is at or below the tidemark, or
/// above the ceiling, equals the transformed source row. After catch-up every
/// table must compare equal (`TableComparison`).
@Suite struct ModelTests {
    @Test("random schemas, writes, chunks and crashes", .timeLimit(.minutes(10)), arguments: modelSeeds)
    func randomInterleaving(seed: UInt64) throws {
        try withTemporaryDirectory { dir in
            let model = try ModelRun(seed: seed, directory: dir)
            do {
                try model.run()
                if ProcessInfo.processInfo.environment["TIDEMARK_MODEL_VERBOSE"] != nil {
                    print("seed \(seed): \(model.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
                }
            } catch {
                Issue.record("seed \(seed) (rerun with TIDEMARK_MODEL_SEED=\(seed)): \(error)\n\(model.describe())")
            }
        }
    }
}

// MARK: The model

enum KeyKind: CaseIterable {
    case integer, text, nocase, composite, withoutRowid
}

/// One source table of a model run and how the plan maps it.
struct ModelTable {
    var name: String
    var kind: KeyKind
    /// Source key columns, in key order.
    var key: [String]
    var createSQL: String
    var inPlace: Bool
    var target: String
    /// Plan columns (target, expression); nil for the default (every column as is).
    var planColumns: [(String, String)]?
    /// Target key columns, in source key order.
    var targetKey: [String]
    /// Non-key target columns checked, with their source expressions.
    var checked: [(String, String)]

    static let dataColumns = ["name", "qty", "price", "v"]
}

/// Interposes on the migrator's shipping: makes application writes before
/// and after a ship call while the source is writable, i.e. between the
/// copy step's first ship and its snapshot, and inside its target
/// transaction after the snapshot was taken.
final class InterleavingFeed: ChangeFeed {
    let inner: ChangeFeed
    weak var model: ModelRun?

    init(_ inner: ChangeFeed, model: ModelRun) {
        self.inner = inner
        self.model = model
    }

    func ship(sourceWritable: Bool) throws -> LSN {
        if sourceWritable, let model, model.injecting, model.rng.chance(25) { try model.randomWrites(1...3, injected: true) }
        let lsn = try inner.ship(sourceWritable: sourceWritable)
        if sourceWritable, let model, model.injecting, model.rng.chance(25) { try model.randomWrites(1...3, injected: true) }
        return lsn
    }
}

final class ModelRun {
    let seed: UInt64
    let directory: String
    var rng: SplitMix
    let sameFile: Bool
    var tables: [ModelTable] = []
    var plan: Plan!
    let app: Connection
    var migrator: Migrator?
    /// Whether application writes are made inside migrator steps.
    var injecting = true
    var checkSource: Connection?
    var checkTarget: Connection?
    var log: [String] = []
    var counts: [String: Int] = [:]

    init(seed: UInt64, directory: String) throws {
        self.seed = seed
        self.directory = directory
        rng = SplitMix(seed: seed &* 0x9E37_79B9 &+ 17)
        // Shapes in turn: another file twice, then the same file (new
        // tables), then the same file with an in-place table.
        sameFile = seed % 4 >= 2
        let sourcePath = directory + "/src.db"
        let c = try Connection(path: sourcePath, mode: .readWriteCreate)
        _ = try c.setJournalMode(.wal)
        app = c
        try buildTables(inPlaceFirst: seed % 4 == 3)
        try writePlan()
    }

    func note(_ s: String) {
        log.append(s)
        if log.count > 40 { log.removeFirst() }
    }

    func describe() -> String {
        let t = tables.map { "\($0.name) [\($0.kind)\($0.inPlace ? ", in place" : "")] → \($0.target): \($0.createSQL); columns \($0.planColumns.map { "\($0)" } ?? "default")" }
        return "shape: \(sameFile ? "same file" : "another file"), chunk_rows \(plan?.chunkRows ?? 0)\n" + t.joined(separator: "\n")
            + "\ncounts: \(counts.sorted { $0.key < $1.key })\nlast events:\n" + log.joined(separator: "\n")
    }

    // MARK: Schema and plan

    func buildTables(inPlaceFirst: Bool) throws {
        let count = rng.int(1...3)
        var kinds: [KeyKind] = [KeyKind.allCases[Int(seed % UInt64(KeyKind.allCases.count))]]
        while kinds.count < count { kinds.append(rng.pick(KeyKind.allCases)) }
        for (i, kind) in kinds.enumerated() {
            // Some names need quoting everywhere they go.
            let name = rng.chance(25) ? "T \(i)\"q" : "t\(i)"
            let key: [String]
            let keyDefs: String
            switch kind {
            case .integer:
                key = ["id"]; keyDefs = "id INTEGER PRIMARY KEY"
            case .text:
                key = ["code"]; keyDefs = "code TEXT NOT NULL PRIMARY KEY"
            case .nocase:
                key = ["email"]; keyDefs = "email TEXT NOT NULL COLLATE NOCASE PRIMARY KEY"
            case .composite:
                key = ["g", "n"]; keyDefs = "g TEXT NOT NULL, n INTEGER NOT NULL"
            case .withoutRowid:
                key = ["k", "n"]; keyDefs = "n INTEGER NOT NULL, k TEXT NOT NULL"
            }
            var sql = "CREATE TABLE \(quoteIdentifier(name)) (\(keyDefs), name TEXT, qty INTEGER, price REAL, v"
            switch kind {
            case .composite: sql += ", PRIMARY KEY (g, n))"
            case .withoutRowid: sql += ", PRIMARY KEY (k, n DESC)) WITHOUT ROWID"
            default: sql += ")"
            }
            try app.execute(sql)

            let inPlace = sameFile && (i == 0 ? inPlaceFirst : rng.chance(30))
            var table = ModelTable(name: name, kind: kind, key: key, createSQL: sql, inPlace: inPlace,
                                   target: name, planColumns: nil, targetKey: key, checked: [])
            if inPlace {
                // New columns only; the key is implied.
                table.planColumns = randomTransforms(table, inPlace: true)
                table.checked = table.planColumns!
            } else {
                table.target = sameFile || rng.chance(60) ? name + "_v2" : name
                if rng.chance(20) {
                    table.planColumns = nil
                    table.checked = ModelTable.dataColumns.map { ($0, quoteIdentifier($0)) }
                } else {
                    var columns: [(String, String)] = []
                    var targetKey: [String] = []
                    for k in key {
                        let t = rng.chance(30) ? "src_" + k : k
                        targetKey.append(t)
                        columns.append((t, rng.chance(20) ? quoteIdentifier(k) : k))
                    }
                    let transforms = randomTransforms(table, inPlace: false)
                    columns += transforms
                    // Key columns in the middle of the column list, sometimes.
                    if rng.chance(30) { columns.append(columns.removeFirst()) }
                    table.planColumns = columns
                    table.targetKey = targetKey
                    table.checked = transforms
                }
            }
            tables.append(table)
            try populate(table, rows: i == 0 ? rng.pick([200, 600, 1200, 2500]) : rng.pick([0, 1, 3, 40, 200, 600, 1200, 2500]))
        }
    }

    /// Target columns with identity copies and expressions over the source row.
    func randomTransforms(_ table: ModelTable, inPlace: Bool) -> [(String, String)] {
        let options: [String: [String]] = [
            "name": ["name", "lower(name)", "upper(name) || '!'", "name || '/' || qty", "coalesce(name, 'none')", "length(name)"],
            // Comparisons depend on the column's affinity (qty > '5' is numeric).
            "qty": ["qty", "qty * 2 + 1", "qty - 7", "qty % 100", "qty > '5'"],
            "price": ["price", "round(price * 100)", "price / 3", "qty * price", "price >= '100'"],
            // `v || ''` makes text of a blob's bytes, which need not be UTF-8:
            // in place, that text sits in the captured table, and capture
            // (which only ships UTF-8 text) would stop on it.
            "v": inPlace ? ["v", "typeof(v)", "quote(v)"] : ["v", "typeof(v)", "v || ''", "quote(v)"],
        ]
        var out: [(String, String)] = []
        for column in ModelTable.dataColumns {
            if !inPlace && rng.chance(15) { continue }  // not every column needs to move
            let expression = rng.pick(options[column]!)
            let target = inPlace || expression != column || rng.chance(30) ? column + "_x" : column
            out.append((target, expression))
        }
        let firstKey = table.key[0]
        // Under NOCASE, `email >= 'B'` ignores case, in the copy and in replay alike.
        let keyExpression = table.kind == .integer ? "\(firstKey) * 10"
            : table.kind == .nocase && rng.chance(50) ? "\(firstKey) >= 'B'" : "upper(\(firstKey)) || '#'"
        if rng.chance(50) || out.isEmpty { out.append(("label", keyExpression)) }
        return out
    }

    func writePlan() throws {
        func j(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        }
        // Size chunks so that the copy spans a good part of the run (about
        // 50 to 400 chunks in all), where the interleavings matter most.
        let rows = try tables.map { try app.integer("SELECT count(*) FROM \(quoteIdentifier($0.name))") }.reduce(0, +)
        let chunk = max(1, Int(rows) / rng.int(50...400))
        var text = "{\"source\": \"src.db\", \"target\": \(j(sameFile ? "src.db" : "dst.db")), \"log\": \"log\", \"chunk_rows\": \(chunk), \"tables\": {"
        text += tables.map { t in
            var entry: [String] = []
            if !t.inPlace && (t.target != t.name || rng.chance(50)) { entry.append("\"to\": \(j(t.target))") }
            if let columns = t.planColumns {
                entry.append("\"columns\": {" + columns.map { "\(j($0.0)): \(j($0.1))" }.joined(separator: ", ") + "}")
            }
            return "\(j(t.name)): {\(entry.joined(separator: ", "))}"
        }.joined(separator: ", ")
        text += "}}"
        try writeText(directory + "/plan.json", text)
        plan = try Plan.load(path: directory + "/plan.json")
    }

    // MARK: Values

    func randomName() -> Value {
        switch rng.int(0...9) {
        case 0: return .null
        case 1: return .text("")
        case 2: return .text("Ünïcødé \(rng.int(0...99))")
        default: return .text(rng.pick(["Ada", "grace", "LINUS", "Barbara", "edsger", "Ken O'Neil"]) + " \(rng.int(0...999))")
        }
    }

    func randomQty() -> Value {
        switch rng.int(0...99) {
        case 0..<8: return .null
        case 8..<12: return .real(Double(rng.int(-400...400)) / 4)  // 2.5 stays real in an INTEGER column, 2.0 does not
        case 12..<14: return .text("n/a")
        case 14..<16: return .integer(Int64(rng.int(0...1)) == 0 ? (1 << 62) + Int64(rng.int(0...9)) : -(1 << 62))
        default: return .integer(Int64(rng.int(-1000...1000)))
        }
    }

    func randomPrice() -> Value {
        switch rng.int(0...99) {
        case 0..<8: return .null
        case 8..<12: return .integer(Int64(rng.int(0...50)))
        case 12..<14: return .text("free")
        default: return .real(Double(rng.int(0...99_999)) / 100)
        }
    }

    func randomV() -> Value {
        switch rng.int(0...5) {
        case 0: return .null
        case 1: return .integer(Int64(rng.int(-5...5)) * 1_000_003)
        case 2: return .real(rng.chance(30) ? Double(rng.int(1...9)) : Double(bitPattern: 0x3FF0_0000_0000_0000 | (rng.next() >> 12)) * 3)
        case 3: return .text(rng.pick(["x", "42", "4.5", "", "caf\u{e9}"]))
        default: return .blob((0..<rng.int(0...5)).map { _ in UInt8(rng.int(0...255)) })
        }
    }

    func randomText(_ alphabet: String, length: ClosedRange<Int>) -> String {
        let chars = Array(alphabet)
        return String((0..<rng.int(length)).map { _ in rng.pick(chars) })
    }

    /// A random key (values in key order); sometimes below or above every key.
    func randomKey(_ t: ModelTable) -> [Value] {
        let edge = rng.int(0...9)
        switch t.kind {
        case .integer:
            if edge == 0 { return [.integer(Int64(rng.int(-200 ... -1)))] }
            if edge == 1 { return [.integer(Int64(rng.int(5000...6000)))] }
            return [.integer(Int64(rng.int(0...3000)))]
        case .text:
            if edge == 0 { return [.text("")] }
            if edge == 1 { return [.text("~" + randomText("xyz", length: 1...3))] }
            return [.text(randomText("abcdeABC01_-é", length: 1...4))]
        case .nocase:
            if edge == 1 { return [.text("ZZ" + randomText("aZ", length: 1...3))] }
            return [.text(randomText("abcABC", length: 1...3) + "@Ex")]
        case .composite:
            return [.text(edge == 1 ? "zz" : rng.pick(["a", "b", "B", "c", "ä"])), .integer(Int64(rng.int(-5...300)))]
        case .withoutRowid:
            return [.text(edge == 1 ? "~~" : randomText("xyXY", length: 1...2)), .integer(Int64(rng.int(0...60)))]
        }
    }

    /// Same key under NOCASE, other letter case.
    func recased(_ s: String) -> String {
        String(s.map { c in rng.chance(50) ? Character(c.uppercased()) : Character(c.lowercased()) })
    }

    func allColumns(_ t: ModelTable) -> [String] { t.key + ModelTable.dataColumns }
    func randomRow(_ t: ModelTable) -> [Value] { randomKey(t) + [randomName(), randomQty(), randomPrice(), randomV()] }

    func populate(_ t: ModelTable, rows: Int) throws {
        guard rows > 0 else { return }
        let cols = allColumns(t)
        let insert = try app.prepare("INSERT OR IGNORE INTO \(quoteIdentifier(t.name))(\(cols.map(quoteIdentifier).joined(separator: ", "))) VALUES (\(cols.map { _ in "?" }.joined(separator: ", ")))")
        try app.transaction(.immediate) {
            for _ in 0..<rows * 3 / 2 { try insert.execute(randomRow(t)) }
        }
    }

    // MARK: Application writes

    /// An existing key of `t` (nil when the table is empty), chosen without
    /// SQLite's random() so that a seed repeats.
    func existingKey(_ t: ModelTable, offset: Int? = nil) throws -> [Value]? {
        let q = quoteIdentifier(t.name)
        let n = try app.integer("SELECT count(*) FROM \(q)")
        guard n > 0 else { return nil }
        let at = offset.map { min(Int(n) - 1, $0) } ?? rng.int(0...Int(n) - 1)
        let keys = t.key.map(quoteIdentifier).joined(separator: ", ")
        return try app.values("SELECT \(keys) FROM \(q) ORDER BY \(keys) LIMIT 1 OFFSET ?", [.integer(Int64(at))]).first
    }

    func keyWhere(_ t: ModelTable, _ op: String = "=", from: Int = 1) -> String {
        let cols = t.key.map(quoteIdentifier)
        let params = (0..<t.key.count).map { "?\(from + $0)" }
        return t.key.count == 1 ? "\(cols[0]) \(op) \(params[0])" : "(\(cols.joined(separator: ", "))) \(op) (\(params.joined(separator: ", ")))"
    }

    /// Runs one statement; a constraint violation is the application's own
    /// failed write (SQLite undoes the statement, triggers' rows included).
    func exec(_ sql: String, _ values: [Value], _ what: String) throws {
        do {
            try app.prepare(sql).execute(values)
            counts[what, default: 0] += 1
            note("  \(what): \(sql) \(values)")
        } catch let e as SQLiteError where e.code.primary == .constraint {
            counts["failed " + what, default: 0] += 1
        }
    }

    func randomWrites(_ count: ClosedRange<Int>, injected: Bool = false) throws {
        if injected { counts["injected", default: 0] += 1 }
        for _ in 0..<rng.int(count) { try randomWrite() }
    }

    func randomWrite() throws {
        let t = rng.pick(tables)
        let q = quoteIdentifier(t.name)
        let cols = allColumns(t)
        let colList = cols.map(quoteIdentifier).joined(separator: ", ")
        let placeholders = "(" + cols.map { _ in "?" }.joined(separator: ", ") + ")"
        let keyList = t.key.map(quoteIdentifier).joined(separator: ", ")
        switch rng.int(0...99) {
        case 0..<16:
            try exec("INSERT INTO \(q)(\(colList)) VALUES \(placeholders)", randomRow(t), "insert")
        case 16..<21:
            let n = rng.int(2...6)
            try exec("INSERT INTO \(q)(\(colList)) VALUES " + Array(repeating: placeholders, count: n).joined(separator: ", "),
                     (0..<n).flatMap { _ in randomRow(t) }, "insert many")
        case 21..<25:
            // Above (or below) every key: beyond the ceiling of a copy in progress.
            let top = try app.values("SELECT \(keyList) FROM \(q) ORDER BY \(t.key.map { quoteIdentifier($0) + " DESC" }.joined(separator: ", ")) LIMIT 1").first
            var row = randomRow(t)
            if let top {
                switch t.kind {
                case .integer: if case .integer(let i) = top[0] { row[0] = .integer(i + Int64(rng.int(1...5))) }
                default: if case .text(let s) = top[0] { row[0] = .text(s + randomText("ab", length: 1...2)) }
                }
            }
            try exec("INSERT INTO \(q)(\(colList)) VALUES \(placeholders)", row, "insert above")
        case 25..<40:
            guard let key = try existingKey(t) else { return }
            try exec("UPDATE \(q) SET name = ?\(t.key.count + 1), qty = ?\(t.key.count + 2), price = ?\(t.key.count + 3), v = ?\(t.key.count + 4) WHERE \(keyWhere(t))",
                     key + [randomName(), randomQty(), randomPrice(), randomV()], "update")
        case 40..<45:
            guard let key = try existingKey(t) else { return }
            try exec("UPDATE \(q) SET qty = ?\(t.key.count + 1) WHERE \(keyWhere(t))", key + [randomQty()], "update one column")
        case 45..<52:
            guard let lo = try existingKey(t) else { return }
            let n = try app.integer("SELECT count(*) FROM \(q) WHERE \(keyWhere(t, "<"))", lo)
            guard let hi = try existingKey(t, offset: Int(n) + rng.int(0...25)) else { return }
            try exec("UPDATE \(q) SET qty = qty + 1, name = coalesce(name, '') || '+' WHERE \(keyWhere(t, ">=")) AND \(keyWhere(t, "<=", from: t.key.count + 1))",
                     lo + hi, "update range")
        case 52..<62:
            // Primary-key change of one row.
            guard let key = try existingKey(t) else { return }
            var newKey = randomKey(t)
            if t.kind == .nocase, rng.chance(60), case .text(let s) = key[0] { newKey = [.text(recased(s))] }
            if t.key.count == 2 && rng.chance(50) { newKey[0] = key[0] }
            var sets = t.key.enumerated().map { "\(quoteIdentifier($0.element)) = ?\(t.key.count + 1 + $0.offset)" }.joined(separator: ", ")
            // An INTEGER PRIMARY KEY moves through its rowid aliases too.
            if t.kind == .integer && rng.chance(50) { sets = "\(rng.pick(["rowid", "oid", "_rowid_"])) = ?2" }
            try exec("UPDATE \(q) SET \(sets) WHERE \(keyWhere(t))", key + newKey, "rekey")
        case 62..<67:
            // Primary-key change of many rows in one statement.
            guard let lo = try existingKey(t) else { return }
            let n = try app.integer("SELECT count(*) FROM \(q) WHERE \(keyWhere(t, "<"))", lo)
            guard let hi = try existingKey(t, offset: Int(n) + rng.int(0...15)) else { return }
            let change: String
            switch t.kind {
            case .integer: change = rng.chance(50) ? "id = id + 10007" : "id = -id - 1"
            case .text: change = "code = code || 'x'"
            case .nocase: change = rng.chance(70) ? "email = upper(email)" : "email = lower(email) || '.'"
            case .composite, .withoutRowid: change = "n = n + 1000"
            }
            try exec("UPDATE \(q) SET \(change) WHERE \(keyWhere(t, ">=")) AND \(keyWhere(t, "<=", from: t.key.count + 1))", lo + hi, "rekey range")
        case 67..<77:
            guard let key = try existingKey(t) else { return }
            try exec("DELETE FROM \(q) WHERE \(keyWhere(t))", key, "delete")
        case 77..<81:
            guard let lo = try existingKey(t) else { return }
            let n = try app.integer("SELECT count(*) FROM \(q) WHERE \(keyWhere(t, "<"))", lo)
            guard let hi = try existingKey(t, offset: Int(n) + rng.int(0...20)) else { return }
            try exec("DELETE FROM \(q) WHERE \(keyWhere(t, ">=")) AND \(keyWhere(t, "<=", from: t.key.count + 1))", lo + hi, "delete range")
        case 81..<88:
            // Upsert, on an existing key (other letter case under NOCASE) or a new one.
            var row = randomRow(t)
            if rng.chance(60), let key = try existingKey(t) {
                row.replaceSubrange(0..<t.key.count, with: key)
                if t.kind == .nocase, case .text(let s) = key[0] { row[0] = .text(recased(s)) }
            }
            try exec("INSERT INTO \(q)(\(colList)) VALUES \(placeholders) ON CONFLICT(\(keyList)) DO UPDATE SET qty = excluded.qty, name = excluded.name, v = excluded.v",
                     row, "upsert")
        case 88..<92:
            // REPLACE of an existing key (with recursive triggers off only the insert is captured).
            guard let key = try existingKey(t) else { return }
            var row = randomRow(t)
            row.replaceSubrange(0..<t.key.count, with: key)
            if t.kind == .nocase, case .text(let s) = key[0] { row[0] = .text(recased(s)) }
            try exec("INSERT OR REPLACE INTO \(q)(\(colList)) VALUES \(placeholders)", row, "replace")
        default:
            // Several statements in one transaction, sometimes rolled back.
            guard !app.isInTransaction else { return }
            try app.execute("BEGIN IMMEDIATE")
            note("  BEGIN")
            for _ in 0..<rng.int(2...5) { try randomWrite() }
            if rng.chance(20) {
                try app.execute("ROLLBACK")
                note("  ROLLBACK")
            } else {
                try app.execute("COMMIT")
                note("  COMMIT")
            }
        }
    }

    // MARK: Migrator

    func open() throws {
        // Half the seeds of another file let a table copied as it is go in
        // one whole-table step (SQLite's record transfer), half copy every
        // table in chunks.
        var options = MigratorOptions()
        options.wholeTableChunks = seed % 8 < 4 ? 1_000 : 0
        // Odd seeds fold each replay batch per key (with its savepoint
        // fallback); seeds 2 and 3 mod 4 decode the log's next frames ahead
        // on another thread. Every path is crashed and compared the same way.
        options.foldReplay = seed % 2 == 1
        options.decodeAhead = seed % 4 >= 2
        migrator = try Migrator.open(plan: plan, options: options, wrappingFeed: { [unowned self] in InterleavingFeed($0, model: self) })
    }

    /// Drops the migrator and everything it owns — connections (an open
    /// transaction would roll back), the log appender — without any of the
    /// bookkeeping a graceful stop does.
    func crash() {
        migrator = nil
    }

    /// One step of `Migrator.run`: a chunk of the first table still copying, else one replay batch.
    func step() throws {
        let m = migrator!
        if let i = m.state.tables.firstIndex(where: { $0.phase != .following }) {
            note("copy step \(m.state.tables[i].sourceTable) after \(m.state.tables[i].tidemark.map { "\($0)" } ?? "start")")
            let before = m.state.tables[i]
            try m.copyStep(i)
            counts["copy steps", default: 0] += 1
            let after = m.state.tables[i]
            if before.phase == .pending, after.phase == .following, after.rowsCopied > plan.chunkRows { counts["whole-table steps", default: 0] += 1 }
        } else {
            note("follow step from \(m.state.appliedLSN)")
            _ = try m.followStep()
            counts["follow steps", default: 0] += 1
        }
    }

    func run() throws {
        let ops = rng.int(200...400)
        if rng.chance(30) { try randomWrites(1...10) }  // before capture: the copy reads these
        try open()
        for op in 0..<ops {
            switch rng.int(0...99) {
            case 0..<40:
                try randomWrite()
            case 40..<88:
                for _ in 0..<rng.int(1...4) { try step() }
                if rng.chance(40) { try checkInvariant("after op \(op)") }
            case 88..<95:
                note("crash")
                counts["crash", default: 0] += 1
                if migrator!.state.tables.contains(where: { $0.phase == .copying }) { counts["crash mid-copy", default: 0] += 1 }
                crash()
                if rng.chance(50) { try randomWrites(1...5) }
                try open()
            default:
                // A few steps without writes in between, then the invariant.
                for _ in 0..<rng.int(1...6) { try step() }
                try checkInvariant("after op \(op)")
            }
        }
        // Catch up with the writers stopped, as `tidemark migrate` does.
        injecting = false
        if rng.chance(50) {
            crash()
            try open()
        }
        let summary = try migrator!.run(seconds: 60)
        guard summary.caughtUp else { throw TestFailure("no catch-up within 60 s with the writers stopped") }
        try checkInvariant("after catch-up")
        try expectEqualTables(plan, "seed \(seed) (TIDEMARK_MODEL_SEED=\(seed))")

        // Resuming a caught-up migration copies and replays nothing.
        crash()
        try open()
        let again = try migrator!.run(seconds: 60)
        #expect(again.rowsCopied == 0 && again.changesReplayed == 0,
                "seed \(seed): a second run copied \(again.rowsCopied) rows and replayed \(again.changesReplayed) changes")
        crash()
        try expectEqualTables(plan, "seed \(seed) after a second run")
    }

    // MARK: The invariant

    /// When the target has applied every captured change: each target row
    /// whose key is at or below the tidemark or above the ceiling equals the
    /// transformed source row; tables not started are untouched.
    func checkInvariant(_ when: String) throws {
        let m = migrator!
        guard !app.isInTransaction, m.state.appliedLSN.rawValue == UInt64(try Capture.lastCapturedSeq(app)) else { return }
        counts["invariant checks", default: 0] += 1
        if checkSource == nil {
            checkSource = try Connection(path: plan.source, mode: .readOnly)
            checkTarget = sameFile ? checkSource : try Connection(path: plan.target, mode: .readOnly)
        }
        let source = checkSource!, target = checkTarget!
        for t in tables {
            guard let ts = m.state.table(t.name) else { throw TestFailure("no state for \(t.name)") }
            let sq = quoteIdentifier(t.name), tq = quoteIdentifier(t.target)
            if ts.phase == .pending {
                let touched = t.inPlace
                    ? try target.integer("SELECT count(*) FROM \(tq) WHERE " + t.checked.map { "\(quoteIdentifier($0.0)) IS NOT NULL" }.joined(separator: " OR "))
                    : try target.integer("SELECT count(*) FROM \(tq)")
                if touched != 0 { throw TestFailure("\(when): \(t.name) is pending but its target holds \(touched) rows") }
                continue
            }
            func condition(_ keys: [String]) -> (String, [Value]) {
                guard ts.phase == .copying else { return ("1", []) }
                let cols = keys.map(quoteIdentifier)
                let lhs = cols.count == 1 ? cols[0] : "(\(cols.joined(separator: ", ")))"
                let params = { (from: Int) in cols.count == 1 ? "?\(from)" : "(" + (0..<cols.count).map { "?\(from + $0)" }.joined(separator: ", ") + ")" }
                let below = ts.tidemark.map { _ in "\(lhs) <= \(params(1))" } ?? "0"
                return ("(\(below) OR \(lhs) > \(params(keys.count + 1)))", (ts.tidemark ?? t.key.map { _ in .null }) + ts.ceiling!)
            }
            let (sc, sv) = condition(t.key)
            let keyList = t.key.map(quoteIdentifier).joined(separator: ", ")
            let expected = try source.values(
                "SELECT \(keyList), \(t.checked.map { "(\($0.1))" }.joined(separator: ", ")) FROM \(sq) WHERE \(sc) ORDER BY \(keyList)", sv)
            let (tc, tv) = condition(t.inPlace ? t.key : t.targetKey)
            let targetKeys = (t.inPlace ? t.key : t.targetKey).map(quoteIdentifier).joined(separator: ", ")
            let actual = try target.values(
                "SELECT \(targetKeys), \(t.checked.map { quoteIdentifier($0.0) }.joined(separator: ", ")) FROM \(tq) WHERE \(tc) ORDER BY \(targetKeys)", tv)
            if expected != actual {
                let firstDifference = zip(expected, actual).first { $0 != $1 }.map { "source \($0.0) / target \($0.1)" }
                    ?? "source has \(expected.count) rows, target \(actual.count)"
                throw TestFailure("\(when): invariant broken for \(t.name) (\(ts.phase), tidemark \(ts.tidemark.map { "\($0)" } ?? "-"), ceiling \(ts.ceiling.map { "\($0)" } ?? "-"), applied LSN \(m.state.appliedLSN)): \(firstDifference)")
            }
        }
    }
}
