#if canImport(Glibc)
import TidemarkTestSupport
import Glibc
#endif
import TidemarkLog
import TidemarkSQLite

/// The as-of row of the audit benchmark: a captured table of `asOfRows`
/// rows, then `asOfChanges` changes after the point (updates, deletes,
/// inserts and a few key changes, in small transactions, shipped as they
/// go); `tidemark log as-of --at POINT --output F` beside replaying the log
/// up to the point into an empty database.
struct AsOfBenchmark {
    var options: AuditOptions
    var runs: Int
    var seed: UInt64
    var dir: ScratchDirectory
    var tidemark: String

    struct Result {
        var rewind = Runs()
        var replay = Runs()
        var point = LSN.zero
        var rowsAtPoint = 0
        var undone = 0
        var replayedChanges = 0
        var hashText = ""
        var command = ""
        /// Peak RSS of one untimed as-of run (nil without GNU time).
        var rss: Int?
    }

    static let table = "accounts"
    static let schema = """
        CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, email TEXT, balance REAL NOT NULL,
                              status TEXT NOT NULL, updated_at INTEGER NOT NULL, note TEXT)
        """

    func measure() throws -> Result {
        let db = dir.file("as-of-live.db")
        let log = dir.subdirectory("as-of-log")
        let saved = dir.file("as-of-saved.db")
        let sourceID = SourceID.random()
        var random = SplitMix64(seed: seed ^ 0x5EED_A50F)
        var result = Result()

        // The live database: rows inserted under capture and shipped, then the point, then the changes.
        progress("as-of: \(formatNumber(Double(options.asOfRows))) rows, then \(formatNumber(Double(options.asOfChanges))) changes, captured and shipped")
        do {
            let c = try Connection(path: db, mode: .readWriteCreate)
            try c.setJournalMode(.wal)
            try c.execute(Self.schema)
            try Capture.install(connection: c, sourceID: sourceID)
            let appender = try LogAppender(directory: log, sourceID: sourceID, options: LogOptions(durability: .none))
            let shipper = try Shipper(connection: c, appender: appender)
            let insert = try c.prepare("INSERT INTO accounts(id, owner, email, balance, status, updated_at, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            var live: [Int64] = []
            live.reserveCapacity(options.asOfRows + options.asOfChanges)
            var nextID: Int64 = 1
            func row(_ id: Int64) -> [Value] {
                [.integer(id), .text("owner \(random.below(1_000_000))"),
                 random.chance(20) ? .null : .text("user\(id)@example.com"),
                 .real(Double(random.below(10_000_000)) / 100), .text(random.pick(["active", "active", "frozen", "closed"])),
                 .integer(Int64(random.below(1 << 40))), random.chance(90) ? .null : .text("note \(random.below(1000))")]
            }
            var left = options.asOfRows
            while left > 0 {
                let count = min(left, 50_000)
                try c.transaction(.immediate) {
                    for _ in 0..<count {
                        try insert.execute(row(nextID))
                        live.append(nextID)
                        nextID += 1
                    }
                }
                _ = try shipper.drain()
                left -= count
            }
            result.point = appender.lastLSN
            try c.backup(to: saved).close()

            let update = try c.prepare("UPDATE accounts SET balance = ?2, status = ?3, updated_at = ?4 WHERE id = ?1")
            let delete = try c.prepare("DELETE FROM accounts WHERE id = ?1")
            let move = try c.prepare("UPDATE accounts SET id = ?2 WHERE id = ?1")
            left = options.asOfChanges
            while left > 0 {
                let count = min(left, 100)
                try c.transaction(.immediate) {
                    for _ in 0..<count {
                        let dice = random.below(100)
                        if dice < 9 || live.isEmpty {
                            try insert.execute(row(nextID))
                            live.append(nextID)
                            nextID += 1
                            continue
                        }
                        let i = random.below(live.count)
                        if dice < 19 {
                            try delete.execute([.integer(live[i])])
                            live.swapAt(i, live.count - 1)
                            live.removeLast()
                        } else if dice < 20 {
                            try move.execute([.integer(live[i]), .integer(nextID)])
                            live[i] = nextID
                            nextID += 1
                        } else {
                            try update.execute([.integer(live[i]), .real(Double(random.below(10_000_000)) / 100),
                                                .text(random.pick(["active", "frozen", "closed"])), .integer(Int64(random.below(1 << 40)))])
                        }
                    }
                }
                left -= count
                if left % 10_000 == 0 || left == 0 { _ = try shipper.drain() }
            }
            _ = try shipper.drain()
            try appender.close()
            try c.close()
        }
        let createSQL: String = try {
            let c = try Connection(path: saved, mode: .readOnly)
            defer { try? c.close() }
            let s = try c.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1")
            try s.bind(Self.table, at: 1)
            guard try s.step() else { throw BenchmarkError("\(saved) has no table \(Self.table)") }
            let sql = s.columnText(0)
            s.reset()
            return sql
        }()
        let expected = try tableDigest(saved, Self.table)
        result.rowsAtPoint = expected.rows
        result.hashText = expected.hashText

        let output = dir.file("as-of-output.db")
        let restored = dir.file("as-of-replayed.db")
        let command = ExternalCommand([tidemark, "log", "as-of", "--db", db, "--log", log, "--at", String(result.point.rawValue), "--output", output, "--json"],
                                      output: .file(dir.file("as-of.json")))
        result.command = command.displayText
        // One untimed run under GNU time for as-of's peak memory (and a warm-up).
        try removeDatabase(output)
        result.rss = try PeakRSSProbe(reportFile: dir.file("as-of-rss.txt")).run(command)
        for i in 0..<runs {
            try removeDatabase(output)
            let t = try command.run()
            let (replayed, r) = try replay(log: log, through: result.point, createSQL: createSQL, into: restored)
            result.rewind.add(t)
            result.replay.add(r)
            result.replayedChanges = replayed
            // The same point, three ways: every run is checked, not only the first.
            let got = try tableDigest(output, Self.table)
            let again = try tableDigest(restored, Self.table)
            guard got == expected, again == expected else {
                throw BenchmarkError("as-of at LSN \(result.point) gave \(got.rows) rows (hash \(got.hashText)), replay \(again.rows) (hash \(again.hashText)); the copy saved at that LSN has \(expected.rows) (hash \(expected.hashText))")
            }
            result.undone = try undoneCount(dir.file("as-of.json"))
            progress("as-of run \(i + 1)/\(runs): tidemark \(describe(t)), replay \(describe(r))")
        }
        return result
    }

    /// Builds the point from nothing: the table created empty, then every
    /// logged change of it up to `point` applied in one transaction with
    /// prepared statements (journal and sync off: a restore that fails is
    /// simply run again). Timed from opening the log to closing the file.
    private func replay(log: String, through point: LSN, createSQL: String, into path: String) throws -> (Int, Timing) {
        try removeDatabase(path)
        let (count, timing) = try Stopwatch.measure { () throws -> Int in
            let c = try Connection(path: path, mode: .readWriteCreate)
            try c.execute("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
            try c.execute(createSQL)
            var applied = 0
            // Statements are reused while a record has the same columns as the one before.
            var insert: (names: [String], statement: Statement)?
            var update: (names: [String], key: [String], statement: Statement)?
            var delete: (key: [String], statement: Statement)?
            let table = quoted(Self.table)
            try c.transaction(.immediate) {
                let cursor = try LogReader(directory: log).cursor(tables: [Self.table])
                while let r = try cursor.next(), r.lsn <= point {
                    switch r.operation {
                    case .insert:
                        guard let after = r.after else { throw BenchmarkError("insert at LSN \(r.lsn) has no after image") }
                        let names = after.map(\.name)
                        if insert?.names != names {
                            let sql = "INSERT INTO \(table)(\(names.map(quoted).joined(separator: ", "))) VALUES (\((1...names.count).map { "?\($0)" }.joined(separator: ", ")))"
                            insert = (names, try c.prepare(sql))
                        }
                        try insert!.statement.execute(after.map(\.value))
                    case .update:
                        guard let after = r.after else { throw BenchmarkError("update at LSN \(r.lsn) has no after image") }
                        let oldKey = r.beforeKey ?? r.key
                        let names = after.map(\.name), key = oldKey.map(\.name)
                        if update?.names != names || update?.key != key {
                            let set = names.enumerated().map { "\(quoted($1)) = ?\($0 + 1)" }.joined(separator: ", ")
                            let match = key.enumerated().map { "\(quoted($1)) = ?\(names.count + $0 + 1)" }.joined(separator: " AND ")
                            update = (names, key, try c.prepare("UPDATE \(table) SET \(set) WHERE \(match)"))
                        }
                        try update!.statement.execute(after.map(\.value) + oldKey.map(\.value))
                    case .delete:
                        let key = r.key.map(\.name)
                        if delete?.key != key {
                            let match = key.enumerated().map { "\(quoted($1)) = ?\($0 + 1)" }.joined(separator: " AND ")
                            delete = (key, try c.prepare("DELETE FROM \(table) WHERE \(match)"))
                        }
                        try delete!.statement.execute(r.key.map(\.value))
                    }
                    applied += 1
                }
            }
            insert = nil
            update = nil
            delete = nil
            try c.close()
            return applied
        }
        return (count, timing)
    }

    /// `undone` from as-of's --json summary.
    private func undoneCount(_ path: String) throws -> Int {
        guard let text = readSmallFile(path), let range = text.firstRange(of: "\"undone\":") else {
            throw BenchmarkError("tidemark log as-of --json wrote no \"undone\" to \(path)")
        }
        let digits = text[range.upperBound...].prefix { $0.isNumber }
        guard let n = Int(digits) else { throw BenchmarkError("cannot read \"undone\" in \(path)") }
        return n
    }
}

/// A table's row count and a 64-bit FNV-1a hash of every row in key order
/// (each value's storage class and bytes), for comparing databases.
struct TableDigest: Equatable {
    var rows: Int
    var hash: UInt64
    var hashText: String {
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

func tableDigest(_ path: String, _ table: String) throws -> TableDigest {
    let c = try Connection(path: path, mode: .readOnly)
    defer { try? c.close() }
    let s = try c.prepare("SELECT * FROM \(quoted(table)) ORDER BY 1")
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    var rows = 0
    @inline(__always) func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
    func mix64(_ v: UInt64) { for i in 0..<8 { mix(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    try s.forEachRow { s in
        rows += 1
        for i in 0..<s.columnCount {
            switch s.columnValue(i) {
            case .null: mix(0)
            case .integer(let v): mix(1); mix64(UInt64(bitPattern: v))
            case .real(let v): mix(2); mix64(v.bitPattern)
            case .text(let v): mix(3); mix64(UInt64(v.utf8.count)); for b in v.utf8 { mix(b) }
            case .blob(let v): mix(4); mix64(UInt64(v.count)); for b in v { mix(b) }
            }
        }
    }
    return TableDigest(rows: rows, hash: hash)
}

/// An SQL identifier in double quotes (a quote inside doubled).
func quoted(_ name: String) -> String {
    var out = "\""
    for ch in name {
        if ch == "\"" { out += "\"\"" } else { out.append(ch) }
    }
    return out + "\""
}
