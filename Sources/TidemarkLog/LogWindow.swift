/// A point in a log, as a reader's `--since`/`--until` gives it: an LSN,
/// an RFC 3339 time, or a time relative to now (`-15m`, `-2h`, `-1d`, `-30s`).
public enum LogPoint: Sendable, Equatable, CustomStringConvertible {
    case lsn(LSN)
    case time(Timestamp)

    /// Parses `text`; relative times count back from `now` (µs since the epoch).
    ///
    /// - Throws: ``LogError`` `.badInput`, one line naming the text and the
    ///   forms accepted.
    public static func parse(_ text: String, nowMicros: Int64) throws(LogError) -> LogPoint {
        let t = text.trimmingCharacters(in: " ")
        if !t.isEmpty, t.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt64(t) { return .lsn(LSN(n)) }
        if t.hasPrefix("-"), t.count >= 3, let unit = t.last, let amount = Int64(t.dropFirst().dropLast()), amount >= 0 {
            let seconds: Int64?
            switch unit {
            case "s": seconds = 1
            case "m": seconds = 60
            case "h": seconds = 3_600
            case "d": seconds = 86_400
            default: seconds = nil
            }
            if let seconds {
                let (back, overflow) = amount.multipliedReportingOverflow(by: seconds * 1_000_000)
                if !overflow { return .time(Timestamp(microsSinceEpoch: nowMicros - back)) }
            }
        }
        do {
            return .time(try Timestamp(parsing: t))
        } catch {
            throw LogError(.badInput, "cannot read \"\(text)\" as a point of the log: give an LSN (12345), an RFC 3339 time (2026-11-25T09:00:00Z) or a relative time (-15m, -2h, -1d, -30s)")
        }
    }

    public var description: String {
        switch self {
        case .lsn(let l): return "LSN \(l)"
        case .time(let t): return t.description
        }
    }
}

/// The part of a log between two points (both inclusive), resolved to LSNs
/// by reading frame metadata only.
public struct LogWindow: Sendable, Equatable {
    /// The first LSN that can be in the window.
    public var fromLSN: LSN
    /// The last LSN that can be in the window (nil: to the end).
    public var throughLSN: LSN?
    /// Commit time bounds, checked per record (frames only narrow the range).
    public var sinceMicros: Int64?
    public var untilMicros: Int64?

    public static let all = LogWindow(fromLSN: .zero, throughLSN: nil, sinceMicros: nil, untilMicros: nil)

    /// Whether record `r` falls in the window.
    public func contains(_ r: ChangeRecord) -> Bool {
        if r.lsn < fromLSN { return false }
        if let t = throughLSN, r.lsn > t { return false }
        if let s = sinceMicros, r.timestampMicros < s { return false }
        if let u = untilMicros, r.timestampMicros > u { return false }
        return true
    }

    /// Whether no later record can be in the window.
    public func isPast(_ r: ChangeRecord) -> Bool {
        if let t = throughLSN, r.lsn > t { return true }
        return false
    }

    /// ``contains(_:)`` for a record read in place.
    public func contains(_ r: RecordView) -> Bool {
        if r.lsn < fromLSN { return false }
        if let t = throughLSN, r.lsn > t { return false }
        if let s = sinceMicros, r.timestampMicros < s { return false }
        if let u = untilMicros, r.timestampMicros > u { return false }
        return true
    }

    /// ``isPast(_:)`` for a record read in place.
    public func isPast(_ r: RecordView) -> Bool {
        if let t = throughLSN, r.lsn > t { return true }
        return false
    }
}

extension LogReader {
    /// Resolves `since`/`until` to a window.
    ///
    /// LSN bounds are taken as they are. A time bound is found from each
    /// frame's metadata (earliest and latest commit time), never by
    /// decompressing records: the window starts at the first frame whose
    /// latest time reaches `since` and ends at the last frame whose earliest
    /// time is not after `until`. Commit times follow commit order unless
    /// the writers' clock stepped back; records are checked against the time
    /// bounds one by one, so a stepped clock never lets a record outside the
    /// window through (it can only make the LSN range wider than needed).
    ///
    /// - Throws: `.badInput` when `since` is after `until`.
    public func window(since: LogPoint?, until: LogPoint?) throws(LogError) -> LogWindow {
        var w = LogWindow.all
        switch since {
        case .lsn(let l)?: w.fromLSN = l
        case .time(let t)?: w.sinceMicros = t.microsSinceEpoch
        case nil: break
        }
        switch until {
        case .lsn(let l)?: w.throughLSN = l
        case .time(let t)?: w.untilMicros = t.microsSinceEpoch
        case nil: break
        }
        if case .lsn(let a)? = since, case .lsn(let b)? = until, a > b {
            throw LogError(.badInput, "--since LSN \(a) is after --until LSN \(b); give the earlier point first")
        }
        if case .time(let a)? = since, case .time(let b)? = until, a > b {
            throw LogError(.badInput, "--since \(a) is after --until \(b); give the earlier point first")
        }
        guard w.sinceMicros != nil || w.untilMicros != nil else { return w }
        var firstLSN: LSN?
        var lastLSN: LSN?
        for segment in try directory.segments() {
            guard case .ok(var scanner) = try SegmentScanner.open(segment) else { continue }
            let size = try scanner.file.size()
            while case .frame(let m) = try scanner.peek(fileSize: size) {
                if firstLSN == nil, w.sinceMicros.map({ m.lastTimestampMicros >= $0 }) ?? true { firstLSN = m.firstLSN }
                if w.untilMicros.map({ m.firstTimestampMicros <= $0 }) ?? true { lastLSN = m.lastLSN }
                scanner.advance(past: m)
            }
        }
        if w.sinceMicros != nil { w.fromLSN = max(w.fromLSN, firstLSN ?? LSN(UInt64.max)) }
        if w.untilMicros != nil { w.throughLSN = min(w.throughLSN ?? LSN(UInt64.max), lastLSN ?? .zero) }
        return w
    }
}

/// What a reader's `--table`, `--key`, `--op` and `--where` ask for.
public struct RecordFilter: Sendable {
    public var tables: Set<String>?
    /// Key fields as `--key` gives them (an unnamed field stands for a
    /// single-column key of any name; see ``ChangeRecord/matches(key:)``).
    public var key: [Field]?
    public var operations: Set<ChangeOperation>?
    /// `column=value` conditions, each true when the before or the after
    /// image has that column with that value (value compared as the key is).
    public var conditions: [Field] = []

    public init(tables: Set<String>? = nil, key: [Field]? = nil, operations: Set<ChangeOperation>? = nil, conditions: [Field] = []) {
        self.tables = tables
        self.key = key
        self.operations = operations
        self.conditions = conditions
    }

    /// Parses one `--where` argument: `column=value`.
    public static func condition(_ text: String) throws(LogError) -> Field {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw LogError(.badInput, "--where \"\(text)\" must be column=value")
        }
        return Field(String(text[..<eq]), .text(String(text[text.index(after: eq)...])))
    }

    /// ``matches(_:)`` for a record read in place: the table and operation
    /// are checked on the view; a key or `--where` condition on the record
    /// it copies out (the one definition of those matches).
    public func matches(_ r: RecordView) -> Bool {
        if let tables, !tables.contains(r.table) { return false }
        if let operations, !operations.contains(r.operation) { return false }
        if key == nil && conditions.isEmpty { return true }
        return matches(r.record())
    }

    public func matches(_ r: ChangeRecord) -> Bool {
        if let tables, !tables.contains(r.table) { return false }
        if let operations, !operations.contains(r.operation) { return false }
        if let key, !(r.matches(key: key) || (r.isKeyChange && r.beforeKeyMatches(key))) { return false }
        for c in conditions {
            let images = [r.before, r.after].compactMap { $0 }
            guard images.contains(where: { image in
                image.contains { f in f.name == c.name && ChangeRecord.sameValue(f.value, asText: c.value) }
            }) else { return false }
        }
        return true
    }
}

extension ChangeRecord {
    /// Whether the before image's key columns hold `wanted` (the old key of a key change).
    func beforeKeyMatches(_ wanted: [Field]) -> Bool {
        guard let before else { return false }
        let oldKey = key.map { k in before.first { $0.name == k.name } ?? k }
        let old = ChangeRecord(lsn: lsn, timestampMicros: timestampMicros, table: table, operation: .delete, key: oldKey, before: before, after: nil)
        return old.matches(key: wanted)
    }

    /// `have` equals `wanted`, where `wanted` may be text spelling a number.
    static func sameValue(_ have: Value, asText wanted: Value) -> Bool {
        if have == wanted { return true }
        guard case .text(let t) = wanted else { return false }
        switch have {
        case .integer(let i): return String(i) == t
        case .real(let d): return d.description == t || Double(t).map { $0.bitPattern == d.bitPattern } == true
        case .null: return t == "NULL" || t == "null"
        default: return false
        }
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

extension LogReader {
    /// The record with the highest LSN in `range` whose commit time is at or
    /// before `micros` (as-of's "the log as it was at time T"), or nil when
    /// none is.
    ///
    /// Found by frame metadata, decoding only the frames that can hold it:
    /// a frame whose earliest commit time is after `micros` holds no such
    /// record, so the answer is in the last frame (by LSN) that overlaps
    /// `range` and whose earliest time is at or before `micros` — or, when
    /// that frame's qualifying records lie outside `range`, in the one
    /// before it, and so on. Writers' clocks that stepped back are handled:
    /// each record's time is checked, frames only rule out.
    public func lastRecord(atOrBefore micros: Int64, in range: ClosedRange<LSN>) throws(LogError) -> ChangeRecord? {
        var candidates: [FrameMetadata] = []
        for segment in try directory.segments() {
            guard case .ok(var scanner) = try SegmentScanner.open(segment) else { continue }
            let size = try scanner.file.size()
            while case .frame(let m) = try scanner.peek(fileSize: size) {
                if m.lastLSN >= range.lowerBound, m.firstLSN <= range.upperBound, m.firstTimestampMicros <= micros {
                    candidates.append(m)
                }
                scanner.advance(past: m)
            }
        }
        for m in candidates.reversed() {
            let cursor = try self.cursor(from: max(m.firstLSN, range.lowerBound))
            cursor.skip = FrameSkip(throughLSN: min(m.lastLSN, range.upperBound))
            var found: ChangeRecord?
            while let r = try cursor.next(), r.lsn <= min(m.lastLSN, range.upperBound) {
                if r.timestampMicros <= micros { found = r }
            }
            if let found { return found }
        }
        return nil
    }
}
