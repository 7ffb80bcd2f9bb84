// A row's whole life (`log history`), per-column blame (`log blame`) and the
// net change between two LSNs (`log diff`), as pure functions over a log.
//
// Key changes. Since capture format 2 a key change is one update whose before
// image has the old key (``ChangeRecord/isKeyChange``). Older logs carry it as
// a delete of the old key immediately followed (next LSN, same table, same
// commit time) by an insert of another key; that pair is read as a key change
// too. Anything else (a delete, later an unrelated insert) is two rows.
//
// Passes. ``RowHistory/read(reader:table:key:)`` reads the table's records in
// the frames that may hold the wanted key (format 3 frames carry a key filter;
// older frames are always read), keeping the records of the wanted key plus
// every key change and delete seen (LSNs and keys only). If no key change
// touches the wanted key's chain that is the answer. Otherwise the chain's
// keys and LSN intervals are worked out from the kept edges; if the chain
// reached keys whose frames were skipped, the pass is repeated with them
// (never on a log without key filters, where nothing is skipped), and a last
// pass collects the records inside the chain's intervals.

/// A key change: the row with `from` became `to` at `lsn`.
public struct KeyChange: Sendable, Hashable {
    public var lsn: LSN
    public var from: [Field]
    public var to: [Field]
    public init(lsn: LSN, from: [Field], to: [Field]) {
        self.lsn = lsn
        self.from = from
        self.to = to
    }
}

/// Every change of one row across its keys, oldest first.
public struct RowHistory: Sendable {
    public var table: String
    public var records: [ChangeRecord]
    /// Key changes inside ``records``, oldest first.
    public var keyChanges: [KeyChange]

    /// Reads the history of the row with key `key` (fields as
    /// ``ChangeRecord/matches(key:)`` takes them) in `table`.
    ///
    /// Throws `.badInput` when the table has no record in the log or when the
    /// key's shape does not match the table's key columns.
    ///
    /// - Parameter frameSkipping: false reads every frame (the reference
    ///   the skipping readers are tested against).
    /// - Parameter range: the window (`--since`/`--until`, exact LSNs): only
    ///   its records are read, and the row is followed across the key
    ///   changes inside it. What happens after the window never changes a
    ///   windowed history (records up to `--until` are immutable, so the
    ///   same command gives the same answer while the log grows).
    public static func read(reader: LogReader, table: String, key wanted: [Field], range: ClosedRange<LSN>? = nil, skipDamaged: Bool = false, frameSkipping: Bool = true, onSkipped: ([LogError]) -> Void = { _ in }) throws(LogError) -> RowHistory {
        try checkTable(reader: reader, table: table, key: wanted, skipDamaged: skipDamaged, frameSkipping: frameSkipping, onSkipped: onSkipped)

        // Passes over the frames that may hold a key of the row's chain
        // (format 3 key filters; older frames are always read), widened
        // until the chain's keys stop growing. Invariant: after a pass with
        // keys K, every record whose key or old key is in K, and every
        // record next to one (by LSN) across a frame edge, was seen; so every
        // edge and delete touching K was seen, and once the chain's keys are
        // all in K the chain is the one a full scan finds. A pass that
        // skipped nothing saw everything and ends the search too.
        var keys: [[Field]] = [wanted]
        var known: Set<[Field]> = []
        while true {
            let pass = try firstPass(reader: reader, table: table, wanted: wanted, keys: frameSkipping ? keys : nil, range: range, skipDamaged: skipDamaged, onSkipped: onSkipped)
            let chain = Chain(edges: pass.edges, deletes: pass.deletes, start: pass.matched)
            let chainKeys = Set(chain.intervals.map(\.key))
            // Keys matching `wanted` were looked for from the start.
            if pass.complete || chainKeys.allSatisfy({ known.contains($0) || $0.asKeyRecord.matches(key: wanted) }) {
                return try finish(reader: reader, table: table, pass: pass, chain: chain, chainKeys: frameSkipping ? chainKeys : nil, range: range, skipDamaged: skipDamaged, onSkipped: onSkipped)
            }
            known.formUnion(chainKeys)
            keys = [wanted] + known.sorted { $0.keyText < $1.keyText }
        }
    }

    /// Throws `.badInput` when the table has no record in the log or when
    /// the key's shape does not match the table's key columns (taken from
    /// its first record, as a full scan would see them; only frames listing
    /// the table are read).
    public static func checkTable(reader: LogReader, table: String, key wanted: [Field], skipDamaged: Bool = false, frameSkipping: Bool = true, onSkipped: ([LogError]) -> Void = { _ in }) throws(LogError) {
        let probe = try reader.cursor(tables: [table])
        probe.skipDamaged = skipDamaged
        probe.skip = frameSkipping ? FrameSkip(tables: [table]) : nil
        guard let first = try probe.next() else {
            onSkipped(probe.skipped)
            throw LogError(.badInput, "table '\(table)' is not in the log (no record of it); check --table against `tidemark log stats`")
        }
        try checkShape(wanted, columns: first.key.map(\.name), table: table)
    }

    struct FirstPass {
        var direct: [ChangeRecord] = []
        var matched: Set<[Field]> = []
        var edges: [KeyChange] = []
        var deletes: [[Field]: [LSN]] = [:]
        /// No frame was skipped: this is what a full scan sees.
        var complete = false
    }

    /// Reads the table's records in frames that may hold one of `keys`,
    /// keeping the records of `wanted` plus every key change and delete seen.
    static func firstPass(reader: LogReader, table: String, wanted: [Field], keys: [[Field]]?, range: ClosedRange<LSN>?, skipDamaged: Bool, onSkipped: ([LogError]) -> Void) throws(LogError) -> FirstPass {
        var p = FirstPass()
        var pendingDelete: ChangeRecord? = nil
        let cursor = try reader.cursor(from: range?.lowerBound ?? .zero, tables: [table])
        cursor.skipDamaged = skipDamaged
        if let keys {
            var skip = FrameSkip(tables: [table], keys: keys, throughLSN: range?.upperBound)
            skip.withNeighbors = true
            cursor.skip = skip
        }
        let probe = KeyProbe(wanted)
        while let v = try cursor.nextView() {
            if let range, v.lsn > range.upperBound { break }
            // Most records of a frame read for its key filter are of other
            // keys: an update that keeps its key, or an insert not right
            // after a delete, whose key cannot match, changes nothing below
            // but `pendingDelete` (set to nil). Only the others are copied out.
            let mayMatter = v.operation == .delete || (v.operation == .insert && pendingDelete != nil)
                || (v.operation == .update && !v.keepsKeyBytes) || probe.mayMatch(v.key)
            if !mayMatter {
                pendingDelete = nil
                continue
            }
            let r = v.record()
            var isWanted = r.matches(key: wanted)
            if isWanted { p.matched.insert(r.key) }
            if r.isKeyChange, let old = r.beforeKey {
                p.edges.append(KeyChange(lsn: r.lsn, from: old, to: r.key))
                if old.asKeyRecord.matches(key: wanted) { p.matched.insert(old); isWanted = true }
            }
            // Old logs: delete then insert of another key at the next LSN and
            // the same time (consecutive LSNs: skipped frames cannot pair).
            if r.operation == .insert, let d = pendingDelete, d.lsn.rawValue + 1 == r.lsn.rawValue,
               d.timestampMicros == r.timestampMicros, d.key != r.key {
                p.edges.append(KeyChange(lsn: r.lsn, from: d.key, to: r.key))
                if p.deletes[d.key]?.last == d.lsn { p.deletes[d.key]?.removeLast() }
            }
            if r.operation == .delete {
                p.deletes[r.key, default: []].append(r.lsn)
                pendingDelete = r
            } else {
                pendingDelete = nil
            }
            if isWanted { p.direct.append(r) }
        }
        onSkipped(cursor.skipped)
        p.complete = cursor.framesSkipped == 0
        return p
    }

    static func finish(reader: LogReader, table: String, pass: FirstPass, chain: Chain, chainKeys: Set<[Field]>?, range: ClosedRange<LSN>?, skipDamaged: Bool, onSkipped: ([LogError]) -> Void) throws(LogError) -> RowHistory {
        let touched = chain.intervals.contains { !pass.matched.contains($0.key) }
        var records = pass.direct
        if touched {
            records = []
            let second = try reader.cursor(from: range?.lowerBound ?? .zero, tables: [table])
            second.skipDamaged = skipDamaged
            // Records in the chain have a chain key (or old key): frames
            // without any are not read.
            second.skip = chainKeys.map { FrameSkip(tables: [table], keys: $0.sorted { $0.keyText < $1.keyText }, throughLSN: range?.upperBound) }
            while let r = try second.next() {
                if let range, r.lsn > range.upperBound { break }
                if chain.contains(r.key, r.lsn) || (r.isKeyChange && r.beforeKey.map { chain.contains($0, r.lsn) } == true) {
                    records.append(r)
                }
            }
            onSkipped(second.skipped)
        }
        let lsns = Set(records.map(\.lsn))
        let changes = pass.edges.filter { lsns.contains($0.lsn) && chain.contains($0.to, $0.lsn) }
        return RowHistory(table: table, records: records, keyChanges: changes)
    }

    /// Throws unless `wanted` names exactly the table's key columns (or is one
    /// unnamed value for a one-column key).
    public static func checkShape(_ wanted: [Field], columns: [String], table: String) throws(LogError) {
        let shown = columns.count == 1 ? "\(columns[0])" : "{" + columns.joined(separator: ", ") + "}"
        if wanted.count == 1 && wanted[0].name.isEmpty {
            guard columns.count == 1 else {
                throw LogError(.badInput, "table '\(table)' has a composite key (\(columns.joined(separator: ", "))); give --key as a JSON object like '{\(columns.map { "\"\($0)\":…" }.joined(separator: ","))}'")
            }
            return
        }
        let names = wanted.map(\.name)
        guard Set(names) == Set(columns), names.count == columns.count else {
            if columns.count == 1 && names.count > 1 {
                throw LogError(.badInput, "table '\(table)' has a one-column key (\(columns[0])), but --key names \(names.joined(separator: ", ")); give the value alone or '{\"\(columns[0])\":…}'")
            }
            throw LogError(.badInput, "--key names \(names.joined(separator: ", ")) but the key of table '\(table)' is \(shown); name exactly those columns")
        }
    }
}

/// A cheap, sound test of a key read in place against a `--key`: false only
/// when ``ChangeRecord/matches(key:)`` is false for that key (an integer
/// compared by value, ASCII text by its bytes); anything else says "maybe"
/// and the caller decides on the record copied out.
struct KeyProbe {
    private struct Want {
        var name: [UInt8]?
        var integer: Int64?
        var asciiText: [UInt8]?
        var isText: Bool
    }
    private let wants: [Want]
    private let nonASCIIName: Bool

    init(_ wanted: [Field]) {
        nonASCIIName = wanted.contains { !$0.name.utf8.allSatisfy { $0 < 0x80 } }
        wants = wanted.map { w in
            var want = Want(name: w.name.isEmpty ? nil : Array(w.name.utf8), integer: nil, asciiText: nil, isText: false)
            switch w.value {
            case .integer(let i): want.integer = i
            case .text(let t):
                want.isText = true
                // matches(key:) takes an integer only when it prints as `t`.
                if let i = Int64(t), String(i) == t { want.integer = i }
                let bytes = Array(t.utf8)
                if bytes.allSatisfy({ $0 < 0x80 }) { want.asciiText = bytes }
            default: break
            }
            return want
        }
    }

    func mayMatch(_ key: FieldsView) -> Bool {
        guard !wants.isEmpty else { return false }
        // Names compare as Strings (canonical equivalence): bytes decide
        // only when every name is ASCII.
        guard !nonASCIIName else { return true }
        for f in key where !JSONText.isASCII(f.name.bindMemory(to: UInt8.self)) { return true }
        for w in wants {
            let have: FieldView?
            if let name = w.name {
                have = name.withUnsafeBytes { key.first(named: $0) }
            } else {
                guard wants.count == 1, key.count == 1 else { return false }
                have = key.first { _ in true }
            }
            guard let have else { return false }
            switch have.value {
            case .integer(let i):
                if w.integer != i { return false }
            case .text(let b):
                if !w.isText { return false }
                if let a = w.asciiText, JSONText.isASCII(b.bindMemory(to: UInt8.self)), !a.elementsEqual(b) { return false }
            default:
                continue  // reals, blobs, NULL: maybe
            }
        }
        return true
    }
}

/// The keys and LSN intervals one row occupied.
struct Chain {
    struct Interval: Hashable { var key: [Field]; var low: UInt64; var high: UInt64 }
    var intervals: [Interval] = []

    init(edges: [KeyChange], deletes: [[Field]: [LSN]], start: Set<[Field]>) {
        var into: [[Field]: [KeyChange]] = [:]
        var out: [[Field]: [KeyChange]] = [:]
        for e in edges { into[e.to, default: []].append(e); out[e.from, default: []].append(e) }
        // Where a key's row ends after `lsn` (a delete or a move away), or before it.
        func exitAfter(_ key: [Field], _ lsn: UInt64) -> UInt64 {
            let d = deletes[key]?.first { $0.rawValue >= lsn }?.rawValue ?? .max
            let m = out[key]?.first { $0.lsn.rawValue > lsn }?.lsn.rawValue ?? .max
            return min(d, m)
        }
        func exitBefore(_ key: [Field], _ lsn: UInt64) -> UInt64 {
            let d = deletes[key]?.last { $0.rawValue < lsn }?.rawValue ?? 0
            let m = out[key]?.last { $0.lsn.rawValue < lsn }?.lsn.rawValue ?? 0
            return max(d, m)
        }
        var seen: Set<Interval> = []
        var work = start.map { Interval(key: $0, low: 0, high: .max) }
        while let i = work.popLast() {
            guard seen.insert(i).inserted else { continue }
            intervals.append(i)
            // Backwards: the row came into this key from another one.
            for e in into[i.key] ?? [] where e.lsn.rawValue >= i.low && e.lsn.rawValue <= i.high {
                let end = e.lsn.rawValue
                work.append(Interval(key: e.from, low: exitBefore(e.from, end) + 1, high: end))
            }
            // Forwards: the row moved on to another key.
            for e in out[i.key] ?? [] where e.lsn.rawValue >= i.low && e.lsn.rawValue <= i.high {
                let begin = e.lsn.rawValue
                work.append(Interval(key: e.to, low: begin, high: exitAfter(e.to, begin)))
            }
        }
    }

    func contains(_ key: [Field], _ lsn: LSN) -> Bool {
        intervals.contains { $0.key == key && $0.low <= lsn.rawValue && lsn.rawValue <= $0.high }
    }
}

extension Array where Element == Field {
    /// A stand-in record with this key, to reuse ``ChangeRecord/matches(key:)``.
    var asKeyRecord: ChangeRecord {
        ChangeRecord(lsn: .zero, timestampMicros: 0, table: "", operation: .insert, key: self, before: nil, after: [])
    }

    /// `{id:1}` or `{region:'eu', n:2}`.
    public var keyText: String {
        "{" + map { "\($0.name):\(RecordText.literal($0.value))" }.joined(separator: ", ") + "}"
    }

    /// A JSON object of these fields.
    public var jsonText: String {
        var buffer: [UInt8] = []
        JSONText.appendFields(self, to: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

extension Value {
    /// The value as `log` text output shows it (`'text'`, `42`, `NULL`).
    public var literalText: String { RecordText.literal(self) }

    public var jsonText: String {
        var buffer: [UInt8] = []
        appendJSON(to: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

// MARK: - Blame

/// Where one column of a row's latest image got its value.
public struct ColumnBlame: Sendable, Hashable {
    public var column: String
    public var value: Value
    /// The change that set the value; nil when it was set before the log starts.
    public var lsn: LSN?
    public var timestampMicros: Int64?
    /// The value before that change; nil when the change created the row (or
    /// the value predates the log).
    public var previous: Value?
}

public struct RowBlame: Sendable {
    /// The row's key in its latest image.
    public var key: [Field]
    public var columns: [ColumnBlame]
    /// Set when the row's last change deleted it: the columns then describe
    /// the image it had just before.
    public var deletedAt: LSN?

    /// Blames the latest image of `history` (oldest first).
    public init?(history: [ChangeRecord]) {
        guard let last = history.last else { return nil }
        var state: [String: ColumnBlame] = [:]
        var order: [String] = []
        for r in history {
            switch r.operation {
            case .insert:
                var fresh: [String: ColumnBlame] = [:]
                for f in r.after ?? [] {
                    fresh[f.name] = ColumnBlame(column: f.name, value: f.value, lsn: r.lsn, timestampMicros: r.timestampMicros, previous: nil)
                }
                state = fresh
                order = (r.after ?? []).map(\.name)
            case .update:
                let before = Dictionary((r.before ?? []).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
                var next: [String: ColumnBlame] = [:]
                for f in r.after ?? [] {
                    let old = before[f.name]
                    if let old, old == f.value {
                        next[f.name] = state[f.name] ?? ColumnBlame(column: f.name, value: f.value, lsn: nil, timestampMicros: nil, previous: nil)
                    } else {
                        next[f.name] = ColumnBlame(column: f.name, value: f.value, lsn: r.lsn, timestampMicros: r.timestampMicros, previous: old)
                    }
                }
                state = next
                order = (r.after ?? []).map(\.name)
            case .delete:
                break
            }
        }
        if last.operation == .delete {
            // Describe the image the delete removed.
            if state.isEmpty {
                for f in last.before ?? [] {
                    state[f.name] = ColumnBlame(column: f.name, value: f.value, lsn: nil, timestampMicros: nil, previous: nil)
                }
                order = (last.before ?? []).map(\.name)
            }
            deletedAt = last.lsn
        } else {
            deletedAt = nil
        }
        key = last.key
        columns = order.compactMap { state[$0] }
    }
}

// MARK: - Diff

/// The net change of one key between two LSNs.
public struct KeyDiff: Sendable, Hashable {
    public enum Kind: String, Sendable { case inserted, deleted, changed }
    public struct ColumnChange: Sendable, Hashable {
        public var column: String
        public var old: Value?
        public var new: Value?
        public init(column: String, old: Value?, new: Value?) {
            self.column = column
            self.old = old
            self.new = new
        }
    }
    public var table: String
    public var key: [Field]
    public var kind: Kind
    /// The image at the start (nil when inserted) and at the end (nil when deleted).
    public var before: [Field]?
    public var after: [Field]?
    /// For `.changed`: the columns whose value differs, in the end image's order.
    public var changes: [ColumnChange]
}

public enum LogDiff {
    /// The net change per key of the records with LSN in `range` (both ends
    /// inclusive), optionally of one table, in order of each key's first
    /// change. A key change counts as a delete of the old key and an insert
    /// of the new one; a key that ends as it started is left out.
    public static func read(reader: LogReader, range: ClosedRange<LSN>, table: String?, skipDamaged: Bool = false, frameSkipping: Bool = true, onSkipped: ([LogError]) -> Void = { _ in }) throws(LogError) -> [KeyDiff] {
        struct Fold { var table: String; var key: [Field]; var start: [Field]?; var end: [Field]? }
        struct ID: Hashable { var table: String; var key: [Field] }
        var folds: [ID: Int] = [:]
        var list: [Fold] = []
        let cursor = try reader.cursor(from: range.lowerBound, tables: table.map { [$0] })
        cursor.skipDamaged = skipDamaged
        cursor.skip = frameSkipping ? FrameSkip(tables: table.map { [$0] }, throughLSN: range.upperBound) : nil
        while let r = try cursor.next() {
            if r.lsn > range.upperBound { break }
            for c in r.keyedChanges {
                let id = ID(table: c.table, key: c.key)
                if let i = folds[id] {
                    list[i].end = c.after
                } else {
                    folds[id] = list.count
                    list.append(Fold(table: c.table, key: c.key, start: c.before, end: c.after))
                }
            }
        }
        onSkipped(cursor.skipped)
        if list.isEmpty, let table {
            // An empty window is fine; a table the log never saw is not.
            let probe = try reader.cursor(tables: [table])
            probe.skipDamaged = true
            probe.skip = FrameSkip(tables: [table])
            if try probe.next() == nil {
                throw LogError(.badInput, "table '\(table)' is not in the log (no record of it); check --table against `tidemark log stats`")
            }
        }
        var out: [KeyDiff] = []
        for f in list {
            switch (f.start, f.end) {
            case (nil, nil):
                continue
            case (nil, let a?):
                out.append(KeyDiff(table: f.table, key: f.key, kind: .inserted, before: nil, after: a, changes: []))
            case (let b?, nil):
                out.append(KeyDiff(table: f.table, key: f.key, kind: .deleted, before: b, after: nil, changes: []))
            case (let b?, let a?):
                let old = Dictionary(b.map { ($0.name, $0.value) }, uniquingKeysWith: { x, _ in x })
                var changes: [KeyDiff.ColumnChange] = []
                for field in a where old[field.name] != field.value {
                    changes.append(.init(column: field.name, old: old[field.name], new: field.value))
                }
                let newNames = Set(a.map(\.name))
                for field in b where !newNames.contains(field.name) {
                    changes.append(.init(column: field.name, old: field.value, new: nil))
                }
                if changes.isEmpty { continue }
                out.append(KeyDiff(table: f.table, key: f.key, kind: .changed, before: b, after: a, changes: changes))
            }
        }
        return out
    }
}
