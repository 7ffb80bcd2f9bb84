import Foundation
import Testing
import TidemarkLog
import TidemarkTestSupport
@testable import TidemarkPostgres

/// A fresh database on the shared test server and a connection to it.
private func freshDatabase() throws -> (conninfo: String, connection: PGConnection) {
    let server = try PostgresServer.shared()
    let name = try server.createDatabase("cap")
    let conninfo = server.conninfo(database: name)
    return (conninfo, try PGConnection(conninfo))
}

private func withLogDirectory<T>(_ body: (String) throws -> T) throws -> T {
    try withTemporaryDirectory("tidemark-pgcapture") { try body($0 + "/log") }
}

/// Ships until the outbox is empty. Transactions in any database of the
/// server (other tests run in parallel) hold the final bound back for a
/// moment, so one call may ship only part.
@discardableResult
private func shipAll(_ shipper: PGShipper, _ appender: LogAppender, after floor: LSN = .zero) throws -> LSN {
    let deadline = Date().addingTimeInterval(60)
    var last = try shipper.ship(into: appender, after: floor)
    while try shipper.pending() > 0 && Date() < deadline {
        usleep(20_000)
        last = try shipper.ship(into: appender, after: floor)
    }
    return last
}

/// Waits until the shipper's final bound covers outbox id `id`.
private func waitForFinalBound(_ shipper: PGShipper, _ id: Int64) throws {
    let deadline = Date().addingTimeInterval(60)
    while try shipper.advanceFinalBound() < id && Date() < deadline { usleep(20_000) }
}

private func expectStrictlyIncreasing(_ records: [ChangeRecord]) {
    for (a, b) in zip(records, records.dropFirst()) {
        #expect(a.lsn < b.lsn, "LSN \(b.lsn) follows \(a.lsn)")
    }
}

/// A thread-safe box for results gathered by writer threads.
private final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func with<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

private let kvTable = PGCapturedTable(
    schema: "public", name: "kv", logTable: "kv", keyColumns: ["k"],
    columns: [PGCapturedColumn("k", "bigint"), PGCapturedColumn("v", "bigint")])

@Suite("PostgreSQL reverse capture")
struct PGCaptureTests {
    // MARK: exact images

    @Test func edgeValuesAreShippedExactly() throws {
        let (conninfo, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("""
            SET TimeZone = 'UTC';
            CREATE TABLE "Items" (id bigint PRIMARY KEY, r double precision, s text, b bytea,
                                  n numeric, flag boolean, at timestamptz, f4 real);
            """)
        let columns: [(String, String)] = [("id", "bigint"), ("r", "double precision"), ("s", "text"), ("b", "bytea"),
                                           ("n", "numeric"), ("flag", "boolean"), ("at", "timestamp with time zone"), ("f4", "real")]
        let table = PGCapturedTable(schema: "public", name: "Items", logTable: "items", keyColumns: ["id"],
                                    columns: columns.map { PGCapturedColumn($0.0, $0.1) })
        try PGCapture.install(c, tables: [table])
        try PGCapture.install(c, tables: [table])  // idempotent

        var large = [UInt8](repeating: 0, count: 200_000)
        var g = SystemRandomNumberGenerator()
        for i in large.indices { large[i] = UInt8.random(in: 0...255, using: &g) }
        let nanPayload = Double(bitPattern: 0x7ff8_0000_0000_0001)
        struct Row { var id: Int64; var r: Value; var s: Value; var b: Value; var n: String?; var flag: Bool?; var f4: Double? }
        let rows = [
            Row(id: .max, r: .real(-0.0), s: .text(""), b: .blob([]), n: "12345678901234567890.5", flag: true, f4: 0.1),
            Row(id: .min, r: .real(nanPayload), s: .text("héllo ✓ 日本 🎉"), b: .blob(large), n: "42.000", flag: false, f4: nil),
            Row(id: 3, r: .real(.infinity), s: .null, b: .null, n: "0.1", flag: nil, f4: -0.0),
            Row(id: 4, r: .real(-.infinity), s: .text("quote\" back\\slash\n\ttab 'single'"), b: .blob([0, 255, 10, 92, 34]),
                n: "-9223372036854775808", flag: true, f4: .infinity),
            Row(id: 5, r: .real(.nan), s: .text("x"), b: .blob([1]), n: "NaN", flag: nil, f4: nil),
        ]
        func numericValue(_ s: String?) -> Value {
            switch s {
            case nil: return .null
            case "12345678901234567890.5": return .text("12345678901234567890.5")
            case "42.000": return .integer(42)
            case "0.1": return .real(0.1)
            case "-9223372036854775808": return .integer(.min)
            default: return .text(s!)
            }
        }
        func image(_ r: Row) -> [Field] {
            [Field("id", .integer(r.id)), Field("r", r.r), Field("s", r.s), Field("b", r.b), Field("n", numericValue(r.n)),
             Field("flag", r.flag.map { .integer($0 ? 1 : 0) } ?? .null),
             Field("at", .text("2026-01-02 03:04:05.25+00")),
             Field("f4", r.f4.map { .real(Double(Float($0))) } ?? .null)]
        }
        for r in rows {
            _ = try c.query("""
                INSERT INTO "Items" VALUES ($1, $2, $3, $4, $5::numeric, $6::boolean, '2026-01-02 03:04:05.25+00', $7)
                """, [.value(.integer(r.id)), .value(r.r), .value(r.s), .value(r.b), .textual(r.n),
                      .textual(r.flag.map { $0 ? "true" : "false" }), r.f4.map { .value(.real($0)) } ?? .value(.null)])
        }
        var expected: [(ChangeOperation, [Field], [Field]?, [Field]?)] = rows.map { r in
            (.insert, [Field("id", .integer(r.id))], nil, image(r))
        }
        // An update, a key change, a delete.
        _ = try c.query("UPDATE \"Items\" SET r = $1 WHERE id = 3", [.value(.real(5.5))])
        var updated = rows[2]; updated.r = .real(5.5)
        expected.append((.update, [Field("id", .integer(3))], image(rows[2]), image(updated)))
        _ = try c.query("UPDATE \"Items\" SET id = 40 WHERE id = 4")
        var moved = rows[3]; moved.id = 40
        expected.append((.update, [Field("id", .integer(40))], image(rows[3]), image(moved)))
        _ = try c.query("DELETE FROM \"Items\" WHERE id = $1", [.value(.integer(.max))])
        expected.append((.delete, [Field("id", .integer(.max))], image(rows[0]), nil))

        try withLogDirectory { dir in
            let appender = try LogAppender(directory: dir)
            let shipper = try PGShipper(connection: try PGConnection(conninfo))
            defer { shipper.close(); shipper.connection.close() }
            let last = try shipAll(shipper, appender, after: LSN(100))
            try appender.close()
            #expect(last == LSN(100 + UInt64(expected.count)))
            let log = try logRecords(dir)
            #expect(log.count == expected.count)
            expectStrictlyIncreasing(log)
            #expect(log.first?.lsn == LSN(101))
            for (record, e) in zip(log, expected) {
                #expect(record.table == "items")
                #expect(record.operation == e.0)
                #expect(record.key == e.1)
                #expect(record.before == e.2)
                #expect(record.after == e.3)
                #expect(record.timestampMicros > 1_700_000_000_000_000)
            }
            // The key change is one record, split as the SQLite capture's is.
            guard log.count == expected.count else { return }
            let keyChange = log[rows.count + 1]
            #expect(keyChange.isKeyChange)
            #expect(keyChange.splitKeyChange()?.delete.key == [Field("id", .integer(4))])
            #expect(try shipper.pending() == 0)
        }
    }

    // MARK: concurrency and order

    @Test func rowsWaitForEarlierWritersAndShipInChangeOrder() throws {
        let (conninfo, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint)")
        try PGCapture.install(c, tables: [kvTable])
        let early = try PGConnection(conninfo)
        let late = try PGConnection(conninfo)
        defer { early.close(); late.close() }
        // `early` takes its xid (and an outbox id) first, then waits.
        try early.execute("BEGIN; INSERT INTO kv VALUES (1, 10)")
        // `late` changes key 5 and commits.
        try late.execute("INSERT INTO kv VALUES (5, 50)")
        try withLogDirectory { dir in
            let appender = try LogAppender(directory: dir)
            defer { try? appender.close() }
            let shipper = try PGShipper(connection: try PGConnection(conninfo))
            defer { shipper.close(); shipper.connection.close() }
            // The rule at work: key 5's row is committed, but `early` could
            // still write below it: nothing ships.
            #expect(try shipper.ship(into: appender, after: .zero) == .zero)
            #expect(try shipper.pending() == 1)
            #expect(shipper.bounds.candidate != nil)
            // `early` now changes key 5 after `late` did, with the lower xid.
            try early.execute("UPDATE kv SET v = 51 WHERE k = 5; COMMIT")
            let last = try shipAll(shipper, appender)
            #expect(last == LSN(3))
            let log = try logRecords(dir)
            #expect(log.map(\.operation) == [.insert, .insert, .update])
            #expect(log.map { $0.key } == [[Field("k", .integer(1))], [Field("k", .integer(5))], [Field("k", .integer(5))]])
            // Key 5's changes in the order they happened: (xid, id) order
            // would put the update before the insert.
            #expect(log[2].before == [Field("k", .integer(5)), Field("v", .integer(50))])
            #expect(log[2].after == [Field("k", .integer(5)), Field("v", .integer(51))])
            #expect(try shipper.pending() == 0)
        }
    }

    @Test func concurrentWritersAreShippedExactlyOnceInKeyOrder() throws {
        let seed = UInt64.random(in: 0...UInt64(UInt32.max))
        print("concurrentWritersAreShippedExactlyOnceInKeyOrder seed \(seed)")
        let (conninfo, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint)")
        try PGCapture.install(c, tables: [kvTable])
        let committedTokens = Locked<Set<Int64>>([])
        let rolledBackTokens = Locked<Set<Int64>>([])
        let errors = Locked<[String]>([])
        let writersDone = Locked(0)
        let writers = 4
        let group = DispatchGroup()
        for w in 0..<writers {
            group.enter()
            Thread.detachNewThread {
                defer { writersDone.with { $0 += 1 }; group.leave() }
                var rng = SplitMix(seed: seed &+ UInt64(w) &* 0x9E37_79B9)
                do {
                    let conn = try PGConnection(conninfo)
                    defer { conn.close() }
                    var token = Int64(w + 1) * 1_000_000
                    for t in 0..<60 {
                        // Keys in increasing order per transaction: no deadlocks.
                        let keys = (0..<Int(rng.next() % 3 + 1)).map { _ in Int64(rng.next() % 12) }
                        let sorted = Array(Set(keys)).sorted()
                        let rollback = rng.next() % 6 == 0
                        let long = t % 10 == w  // begun early, committed late
                        var mine: [Int64] = []
                        try conn.execute("BEGIN")
                        for (i, k) in sorted.enumerated() {
                            token += 1
                            if rng.next() % 4 == 0 {
                                _ = try conn.query("DELETE FROM kv WHERE k = $1", [.value(.integer(k))])
                            } else {
                                _ = try conn.query(
                                    "INSERT INTO kv VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                                    [.value(.integer(k)), .value(.integer(token))])
                                mine.append(token)
                            }
                            if long && i == 0 { usleep(150_000) }
                        }
                        if rollback {
                            try conn.execute("ROLLBACK")
                            rolledBackTokens.with { $0.formUnion(mine) }
                        } else {
                            try conn.execute("COMMIT")
                            committedTokens.with { $0.formUnion(mine) }
                        }
                    }
                } catch {
                    errors.with { $0.append("writer \(w): \(error)") }
                }
            }
        }
        try withLogDirectory { dir in
            let appender = try LogAppender(directory: dir)
            defer { try? appender.close() }
            let shipper = try PGShipper(connection: try PGConnection(conninfo), batchLimit: 7)
            defer { shipper.close(); shipper.connection.close() }
            var rounds = 0
            while writersDone.with({ $0 }) < writers {
                try shipper.ship(into: appender, after: .zero)
                rounds += 1
                usleep(5_000)
            }
            group.wait()
            try shipAll(shipper, appender)
            #expect(rounds > 1)
            #expect(errors.with { $0 } == [])
            #expect(try shipper.pending() == 0)

            let log = try logRecords(dir)
            expectStrictlyIncreasing(log)
            // Per key, each change starts from the state the previous one left.
            var state: [Int64: [Field]] = [:]
            var shippedTokens: [Int64] = []
            for r in log {
                guard case .integer(let k)? = r.key.first?.value else { Issue.record("bad key \(r.key)"); continue }
                #expect(r.before == state[k], "key \(k) at LSN \(r.lsn): before image is not the previous after image")
                state[k] = r.after
                if let after = r.after, case .integer(let v) = after[1].value { shippedTokens.append(v) }
            }
            #expect(shippedTokens.count == Set(shippedTokens).count, "a change was shipped twice")
            #expect(Set(shippedTokens) == committedTokens.with { $0 })
            #expect(Set(shippedTokens).isDisjoint(with: rolledBackTokens.with { $0 }))
            // The replayed log ends where the table ends.
            let table = try c.query("SELECT k, v FROM kv ORDER BY k")
            var final: [Int64: [Field]] = [:]
            for row in table.rows {
                if case .integer(let k) = row[0] { final[k] = [Field("k", row[0]), Field("v", row[1])] }
            }
            #expect(state == final)
        }
    }

    // MARK: crashes

    @Test(arguments: ["assigned", "appended", "synced", "deleted"])
    func aCrashAnywhereNeitherLosesNorDuplicates(point: String) throws {
        let (conninfo, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint)")
        try PGCapture.install(c, tables: [kvTable])
        for k in 1...5 { _ = try c.query("INSERT INTO kv VALUES ($1, $1)", [.value(.integer(Int64(k)))]) }
        struct Crash: Error {}
        try withLogDirectory { dir in
            do {
                let appender = try LogAppender(directory: dir)
                let shipper = try PGShipper(connection: try PGConnection(conninfo), batchLimit: 3)
                try waitForFinalBound(shipper, 5)
                shipper.testHook = { if $0 == point { throw Crash() } }
                #expect(throws: Crash.self) { try shipper.ship(into: appender, after: .zero) }
                // The process dies: its session (and the shipper lock) ends.
                shipper.connection.close()
                try appender.close()
            }
            for k in 6...8 { _ = try c.query("INSERT INTO kv VALUES ($1, $1)", [.value(.integer(Int64(k)))]) }
            _ = try c.query("UPDATE kv SET v = 0 WHERE k = 2")
            let appender = try LogAppender(directory: dir)
            let shipper = try PGShipper(connection: try PGConnection(conninfo), batchLimit: 3)
            defer { shipper.close(); shipper.connection.close() }
            let last = try shipAll(shipper, appender)
            try appender.close()
            #expect(last == LSN(9))
            let log = try logRecords(dir)
            #expect(log.map(\.lsn) == (1...9).map { LSN(UInt64($0)) })
            #expect(log.prefix(8).map { $0.key } == (1...8).map { [Field("k", .integer(Int64($0)))] })
            #expect(log.last?.after == [Field("k", .integer(2)), Field("v", .integer(0))])
            #expect(try shipper.pending() == 0)
        }
    }

    @Test func aLogNotFilledFromThisOutboxIsRefused() throws {
        let (conninfo, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint)")
        try PGCapture.install(c, tables: [kvTable])
        _ = try c.query("INSERT INTO kv VALUES (1, 1)")
        try withLogDirectory { dir in
            do {
                let appender = try LogAppender(directory: dir)
                let shipper = try PGShipper(connection: try PGConnection(conninfo))
                struct Crash: Error {}
                try waitForFinalBound(shipper, 1)
                shipper.testHook = { if $0 == "assigned" { throw Crash() } }
                #expect(throws: Crash.self) { try shipper.ship(into: appender, after: .zero) }
                shipper.connection.close()
                // Someone else's record takes LSN 1 in the log.
                try appender.append([ChangeRecord(lsn: LSN(1), timestampMicros: 1, table: "other", operation: .insert,
                                                  key: [Field("id", .integer(9))], before: nil, after: [Field("id", .integer(9))])])
                try appender.close()
            }
            let appender = try LogAppender(directory: dir)
            defer { try? appender.close() }
            let shipper = try PGShipper(connection: try PGConnection(conninfo))
            defer { shipper.close(); shipper.connection.close() }
            #expect(throws: PGCaptureError.self) { try shipper.ship(into: appender, after: .zero) }
            #expect(try shipper.pending() == 1)
        }
    }

    @Test func oneShipperAtATime() throws {
        let (conninfo, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint)")
        try PGCapture.install(c, tables: [kvTable])
        let first = try PGShipper(connection: try PGConnection(conninfo))
        #expect(throws: PGCaptureError.self) { _ = try PGShipper(connection: try PGConnection(conninfo)) }
        first.close()
        let second = try PGShipper(connection: try PGConnection(conninfo))
        second.close()
        first.connection.close(); second.connection.close()
    }

    // MARK: refusals

    @Test func truncateIsRefused() throws {
        let (_, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint); INSERT INTO kv VALUES (1, 1)")
        try PGCapture.install(c, tables: [kvTable])
        do {
            try c.execute("TRUNCATE kv")
            Issue.record("TRUNCATE was not refused")
        } catch let error as PGError {
            #expect(error.message.contains("tidemark"))
            #expect(error.message.contains("TRUNCATE"))
        }
        let count = try c.query("SELECT count(*) FROM kv")
        #expect(count.rows.first?.first == .integer(1))
    }

    @Test func guardRefusesWritesWithItsMessage() throws {
        let (_, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint); INSERT INTO kv VALUES (1, 1)")
        let message = "this table moved back to SQLite file /data/shop.db; write there"
        try PGGuard.install(c, schema: "public", tables: ["kv"], message: message)
        try PGGuard.install(c, schema: "public", tables: ["kv"], message: message)  // idempotent
        for sql in ["INSERT INTO kv VALUES (2, 2)", "UPDATE kv SET v = 3", "DELETE FROM kv", "TRUNCATE kv"] {
            do {
                try c.execute(sql)
                Issue.record("\(sql) was not refused")
            } catch let error as PGError {
                #expect(error.message == message, "\(sql)")
                #expect(error.sqlState == "25006")
            }
        }
        #expect(try c.query("SELECT v FROM kv WHERE k = 1").rows == [[.integer(1)]])
        try PGGuard.remove(c, schema: "public", tables: ["kv"])
        try c.execute("INSERT INTO kv VALUES (2, 2)")
        #expect(try c.query("SELECT count(*) FROM kv").rows == [[.integer(2)]])
    }

    @Test func uninstallKeepsAnOutboxWithRows() throws {
        let (_, c) = try freshDatabase()
        defer { c.close() }
        try c.execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint)")
        try PGCapture.install(c, tables: [kvTable])
        try PGCapture.install(c, tables: [kvTable])
        try c.execute("INSERT INTO kv VALUES (1, 1)")
        #expect(try c.query("SELECT count(*) FROM tidemark.outbox").rows == [[.integer(1)]])
        try PGCapture.uninstall(c, tables: [kvTable])
        try c.execute("INSERT INTO kv VALUES (2, 2); TRUNCATE kv")
        #expect(try PGCapture.isInstalled(c))
        #expect(try c.query("SELECT count(*) FROM tidemark.outbox").rows == [[.integer(1)]])
        try PGCapture.uninstall(c, tables: [kvTable], dropOutbox: true)
        #expect(try !PGCapture.isInstalled(c))
    }

    // MARK: decoding

    @Test func numericDecoding() {
        #expect(PGValueCodec.numeric("0") == .integer(0))
        #expect(PGValueCodec.numeric("-0.000") == .integer(0))
        #expect(PGValueCodec.numeric("9223372036854775807") == .integer(.max))
        #expect(PGValueCodec.numeric("9223372036854775808") == .text("9223372036854775808"))
        #expect(PGValueCodec.numeric("-9223372036854775809") == .text("-9223372036854775809"))
        #expect(PGValueCodec.numeric("1.5") == .real(1.5))
        #expect(PGValueCodec.numeric("0.00001") == .real(0.00001))
        #expect(PGValueCodec.numeric("123456789012345678901234567890") == .text("123456789012345678901234567890"))
        #expect(PGValueCodec.numeric("0.10000000000000000555") == .text("0.10000000000000000555"))
        #expect(PGValueCodec.numeric("NaN") == .text("NaN"))
        #expect(PGValueCodec.numeric("Infinity") == .text("Infinity"))
        #expect(PGValueCodec.decode(tag: "f", "8000000000000000") == .real(-0.0))
        #expect(PGValueCodec.decode(tag: "f", "800000000000000") == nil)
        #expect(PGValueCodec.decode(tag: "b", "00ff") == .blob([0, 255]))
        #expect(PGValueCodec.decode(tag: "i", "1.5") == nil)
    }
}
