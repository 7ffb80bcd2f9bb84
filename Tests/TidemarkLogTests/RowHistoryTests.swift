import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog

/// `RowHistory`, `RowBlame` and `LogDiff` on logs written through `LogAppender`.
@Suite("Row history, blame and diff")
struct RowHistoryTests {
    static let t0: Int64 = 1_790_000_000_000_000

    func row(_ id: Int64, _ v: String, n: Int64 = 0) -> [Field] {
        [Field("id", .integer(id)), Field("v", .text(v)), Field("n", .integer(n))]
    }
    func key(_ id: Int64) -> [Field] { [Field("id", .integer(id))] }
    func ins(_ id: Int64, _ v: String, n: Int64 = 0, table: String = "t") -> ChangeRecord {
        ChangeRecord(lsn: .zero, timestampMicros: 0, table: table, operation: .insert, key: key(id), before: nil, after: row(id, v, n: n))
    }
    func upd(_ id: Int64, _ v0: String, _ v: String, n0: Int64 = 0, n: Int64 = 0, newID: Int64? = nil) -> ChangeRecord {
        ChangeRecord(lsn: .zero, timestampMicros: 0, table: "t", operation: .update, key: key(newID ?? id), before: row(id, v0, n: n0), after: row(newID ?? id, v, n: n))
    }
    func del(_ id: Int64, _ v: String, n: Int64 = 0) -> ChangeRecord {
        ChangeRecord(lsn: .zero, timestampMicros: 0, table: "t", operation: .delete, key: key(id), before: row(id, v, n: n), after: nil)
    }

    /// Appends `records` one batch each at LSN 1, 2, … and times t0 + LSN
    /// (records in one inner array share a commit time).
    func write(_ dir: String, _ batches: [[ChangeRecord]]) throws {
        let log = try LogAppender(directory: dir)
        var lsn: UInt64 = 0
        for (i, batch) in batches.enumerated() {
            var stamped: [ChangeRecord] = []
            for var r in batch {
                lsn += 1
                r.lsn = LSN(lsn)
                r.timestampMicros = Self.t0 + Int64(i)
                stamped.append(r)
            }
            _ = try log.append(stamped)
        }
        try log.close()
    }

    func history(_ dir: String, _ k: [Field], table: String = "t") throws -> RowHistory {
        try RowHistory.read(reader: LogReader(directory: dir), table: table, key: k)
    }

    @Test("history follows key changes backwards and forwards, and leaves other rows alone")
    func chain() throws {
        try withTemporaryDirectory { dir in
            try write(dir, [
                [ins(1, "a")],            // 1
                [ins(2, "other")],        // 2
                [upd(1, "a", "b")],       // 3
                [upd(1, "b", "b", newID: 7)],  // 4: 1 → 7
                [ins(1, "reused")],       // 5: a new row with key 1
                [upd(7, "b", "c")],       // 6
                [upd(7, "c", "c", newID: 9)],  // 7: 7 → 9
                [upd(9, "c", "d")],       // 8
                [upd(2, "other", "x")],   // 9
            ])
            // From the middle key: backwards to 1 (only up to the move), forwards to 9.
            let h7 = try history(dir, [Field("", .text("7"))])
            #expect(h7.records.map(\.lsn.rawValue) == [1, 3, 4, 6, 7, 8])
            #expect(h7.keyChanges.map(\.lsn.rawValue) == [4, 7])
            #expect(h7.keyChanges.first?.from == key(1) && h7.keyChanges.first?.to == key(7))
            // From the last key: all the way back.
            let h9 = try history(dir, [Field("id", .integer(9))])
            #expect(h9.records.map(\.lsn.rawValue) == [1, 3, 4, 6, 7, 8])
            // From the first key: forwards, plus the reused key's own records.
            let h1 = try history(dir, [Field("", .text("1"))])
            #expect(h1.records.map(\.lsn.rawValue) == [1, 3, 4, 5, 6, 7, 8])
            // A row with no key changes: one pass, its own records.
            let h2 = try history(dir, [Field("", .text("2"))])
            #expect(h2.records.map(\.lsn.rawValue) == [2, 9])
            #expect(h2.keyChanges.isEmpty)
        }
    }

    @Test("old logs: a delete and an insert at consecutive LSNs with one commit time are a key change")
    func oldPair() throws {
        try withTemporaryDirectory { dir in
            try write(dir, [
                [ins(1, "a")],            // 1
                [del(1, "a"), ins(5, "a")],  // 2, 3: old capture's key change 1 → 5
                [upd(5, "a", "b")],       // 4
                [del(5, "b")],            // 5
                [ins(5, "again")],        // 6: delete and reinsert, a later commit: not a move
            ])
            let h = try history(dir, [Field("", .text("1"))])
            #expect(h.records.map(\.lsn.rawValue) == [1, 2, 3, 4, 5])
            #expect(h.keyChanges == [KeyChange(lsn: LSN(3), from: key(1), to: key(5))])
            let h5 = try history(dir, [Field("", .text("5"))])
            #expect(h5.records.map(\.lsn.rawValue) == [1, 2, 3, 4, 5, 6])
        }
    }

    @Test("composite keys and key shape errors")
    func composite() throws {
        try withTemporaryDirectory { dir in
            func k(_ o: Int64, _ l: Int64) -> [Field] { [Field("order_id", .integer(o)), Field("line", .integer(l))] }
            func img(_ o: Int64, _ l: Int64, _ q: Int64) -> [Field] { k(o, l) + [Field("qty", .integer(q))] }
            try write(dir, [
                [ChangeRecord(lsn: .zero, timestampMicros: 0, table: "lines", operation: .insert, key: k(7, 1), before: nil, after: img(7, 1, 1))],
                [ChangeRecord(lsn: .zero, timestampMicros: 0, table: "lines", operation: .update, key: k(7, 2), before: img(7, 1, 1), after: img(7, 2, 3))],
                [ins(1, "a")],
            ])
            let h = try history(dir, try ChangeRecord.parseJSONKey(#"{"line":1,"order_id":7}"#), table: "lines")
            #expect(h.records.map(\.lsn.rawValue) == [1, 2])
            #expect(h.keyChanges.map(\.to) == [k(7, 2)])
            let scalar = #expect(throws: LogError.self) { try history(dir, [Field("", .text("7"))], table: "lines") }
            #expect(scalar?.message.contains("composite key") == true, "\(String(describing: scalar))")
            let wrong = #expect(throws: LogError.self) { try history(dir, try ChangeRecord.parseJSONKey(#"{"order_id":7}"#), table: "lines") }
            #expect(wrong?.message.contains("order_id, line") == true, "\(String(describing: wrong))")
            let names = #expect(throws: LogError.self) { try history(dir, try ChangeRecord.parseJSONKey(#"{"uid":1}"#)) }
            #expect(names?.message.contains("uid") == true)
            let missing = #expect(throws: LogError.self) { try history(dir, [Field("", .text("1"))], table: "nope") }
            #expect(missing?.message.contains("'nope' is not in the log") == true)
        }
    }

    @Test("blame: each column's last change and value before it, across a key change")
    func blame() throws {
        try withTemporaryDirectory { dir in
            try write(dir, [
                [ins(1, "a", n: 1)],                     // 1
                [upd(1, "a", "b", n0: 1, n: 1)],         // 2: v
                [upd(1, "b", "b", n0: 1, n: 2, newID: 4)],  // 3: id and n
                [upd(4, "b", "c", n0: 2, n: 2)],         // 4: v
            ])
            let b = try #require(RowBlame(history: try history(dir, [Field("", .text("1"))]).records))
            #expect(b.key == key(4))
            #expect(b.deletedAt == nil)
            let byName = Dictionary(uniqueKeysWithValues: b.columns.map { ($0.column, $0) })
            #expect(byName["id"]?.lsn == LSN(3) && byName["id"]?.previous == .integer(1))
            #expect(byName["v"]?.lsn == LSN(4) && byName["v"]?.previous == .text("b") && byName["v"]?.value == .text("c"))
            #expect(byName["n"]?.lsn == LSN(3) && byName["n"]?.previous == .integer(1))
            #expect(byName["v"]?.timestampMicros == Self.t0 + 3)
        }
    }

    @Test("diff folds each key's changes; changed and changed back prints nothing")
    func diff() throws {
        try withTemporaryDirectory { dir in
            try write(dir, [
                [ins(1, "a"), ins(2, "b"), ins(3, "c")],  // 1-3
                [upd(1, "a", "x")],                       // 4
                [upd(1, "x", "y", n0: 0, n: 5)],          // 5
                [upd(2, "b", "z")],                       // 6
                [upd(2, "z", "b")],                       // 7: back
                [del(3, "c")],                            // 8
                [ins(10, "new")],                         // 9
                [upd(10, "new", "newer")],                // 10
                [ins(11, "gone")], [del(11, "gone")],     // 11, 12: nothing net
                [upd(1, "y", "y", n0: 5, n: 5, newID: 20)],  // 13
            ])
            let reader = try LogReader(directory: dir)
            let d = try LogDiff.read(reader: reader, range: LSN(4)...LSN(12), table: nil)
            #expect(d.map(\.kind) == [.changed, .deleted, .inserted])
            #expect(d[0].key == key(1))
            #expect(d[0].changes == [.init(column: "v", old: .text("a"), new: .text("y")), .init(column: "n", old: .integer(0), new: .integer(5))])
            #expect(d[1].key == key(3) && d[1].before == row(3, "c"))
            #expect(d[2].key == key(10) && d[2].after == row(10, "newer"))
            // The key change: old key deleted, new key inserted.
            let moved = try LogDiff.read(reader: reader, range: LSN(13)...LSN(13), table: "t")
            #expect(moved.map(\.kind) == [.deleted, .inserted])
            #expect(moved.map(\.key) == [key(1), key(20)])
            #expect(try LogDiff.read(reader: reader, range: LSN(6)...LSN(7), table: "t").isEmpty)
            #expect(throws: LogError.self) { try LogDiff.read(reader: reader, range: LSN(1)...LSN(13), table: "nope") }
        }
    }

    @Test("seeded random: history is every change of every row that ever had the key; diff matches the model", arguments: [1, 2, 3, 4])
    func randomModel(round: UInt64) throws {
        let seed = UInt64(Date().timeIntervalSince1970 * 1000) &+ round
        print("RowHistoryTests.randomModel seed \(seed)")
        var rng = seed
        func next(_ n: Int) -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Int((rng >> 33) % UInt64(n))
        }
        var live: [Int64: (id: Int, v: String)] = [:]
        var identity = 0
        var batches: [[ChangeRecord]] = []
        var owner: [Int] = []          // identity of each record, by LSN - 1
        var keysOf: [Int: Set<Int64>] = [:]
        var states: [[Int64: String]] = [[:]]  // state after each LSN (index = LSN)
        // The table after each record, by replaying it on the previous state.
        func push(_ rs: [ChangeRecord], _ who: Int) {
            batches.append(rs)
            for r in rs {
                owner.append(who)
                var s = states[states.count - 1]
                guard case .integer(let k)? = r.key.first?.value else { continue }
                switch r.operation {
                case .delete: s[k] = nil
                case .insert: s[k] = r.after.flatMap { $0.first { $0.name == "v" } }.map { "\($0.value)" }
                case .update:
                    if case .integer(let old)? = r.beforeKey?.first?.value { s[old] = nil }
                    s[k] = r.after.flatMap { $0.first { $0.name == "v" } }.map { "\($0.value)" }
                }
                states.append(s)
            }
        }
        for step in 0..<200 {
            let k = Int64(1 + next(8))
            let free = (1...8).map(Int64.init).filter { live[$0] == nil }
            if let e = live[k] {
                switch next(3) {
                case 0:
                    let v = "v\(step)"
                    live[k] = (e.id, v)
                    push([upd(k, e.v, v)], e.id)
                case 1 where !free.isEmpty:
                    let to = free[next(free.count)]
                    live[k] = nil
                    live[to] = e
                    keysOf[e.id, default: []].insert(to)
                    if next(2) == 0 {
                        push([upd(k, e.v, e.v, newID: to)], e.id)
                    } else {
                        push([del(k, e.v), ins(to, e.v)], e.id)   // an old log's key change
                    }
                default:
                    live[k] = nil
                    push([del(k, e.v)], e.id)
                }
            } else {
                identity += 1
                live[k] = (identity, "v\(step)")
                keysOf[identity, default: []].insert(k)
                push([ins(k, "v\(step)")], identity)
            }
        }
        try withTemporaryDirectory { dir in
            try write(dir, batches)
            for k in Int64(1)...8 {
                let ids = Set(keysOf.filter { $0.value.contains(k) }.map(\.key))
                let expected = owner.enumerated().filter { ids.contains($0.element) }.map { UInt64($0.offset + 1) }
                if expected.isEmpty { continue }
                let h = try history(dir, key(k))
                #expect(h.records.map(\.lsn.rawValue) == expected, "seed \(seed) key \(k)")
            }
            let reader = try LogReader(directory: dir)
            let n = owner.count
            for _ in 0..<10 {
                let a = 1 + next(n), b = a + next(n - a + 1)
                let d = try LogDiff.read(reader: reader, range: LSN(UInt64(a))...LSN(UInt64(b)), table: "t")
                let s0 = states[a - 1], s1 = states[b]
                var want: [String] = []
                for k in Int64(1)...8 {
                    switch (s0[k], s1[k]) {
                    case (nil, _?): want.append("inserted \(k)")
                    case (_?, nil): want.append("deleted \(k)")
                    case (let x?, let y?) where x != y: want.append("changed \(k)")
                    default: break
                    }
                }
                let got = d.map { "\($0.kind.rawValue) \($0.key.first.map { "\($0.value)" } ?? "")" }.sorted()
                #expect(got == want.sorted(), "seed \(seed) window \(a)...\(b)")
            }
        }
    }
}
