import ArgumentParser
import TidemarkLog

#if canImport(Glibc)
import Glibc
#endif

/// `--since`/`--until` and the record filters every log reader takes.
struct LogWindowOptions: ParsableArguments {
    // `.unconditional`: a relative time starts with '-' (`--since -15m`).
    @Option(parsing: .unconditional, help: "First point, inclusive: an LSN, an RFC 3339 time (2026-11-25T09:00:00Z) or a relative time (-15m, -2h, -1d).")
    var since: String?

    @Option(parsing: .unconditional, help: "Last point, inclusive: an LSN, an RFC 3339 time or a relative time.")
    var until: String?

    @Option(help: "Only records of this operation: insert, update or delete (repeat for several).")
    var op: [String] = []

    @Option(name: .customLong("where"), help: "Only records whose before or after image has column=value (repeat: all must hold).")
    var conditions: [String] = []

    /// The window, resolved from frame metadata; `defaultSince` stands for
    /// `--since` when it is not given (`tail --from`).
    func window(_ reader: LogReader, defaultSince: LSN? = nil) throws -> LogWindow {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nowMicros = Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000
        let s = try since.map { try LogPoint.parse($0, nowMicros: nowMicros) } ?? defaultSince.map { .lsn($0) }
        let u = try until.map { try LogPoint.parse($0, nowMicros: nowMicros) }
        // A time after every record gives an empty window, not an error.
        return try reader.window(since: s, until: u)
    }

    var isWindowed: Bool { since != nil || until != nil }

    /// The exact first and last LSN of the window (records in the window's
    /// frames read once to place time bounds on records), or nil when no
    /// record is in it. `defaultUntil` ends an open window (the log's head).
    func lsnRange(_ reader: LogReader, defaultUntil: LSN) throws -> ClosedRange<LSN>? {
        let w = try window(reader)
        guard w.fromLSN.rawValue != UInt64.max else { return nil }
        var from = w.fromLSN
        var through = min(w.throughLSN ?? defaultUntil, defaultUntil)
        if w.sinceMicros != nil || w.untilMicros != nil {
            var first: LSN?, last: LSN?
            let cursor = try reader.cursor(from: w.fromLSN)
            cursor.skip = FrameSkip(window: w, filter: RecordFilter())
            while let r = try cursor.next(), !w.isPast(r) {
                guard w.contains(r) else { continue }
                if first == nil { first = r.lsn }
                last = r.lsn
            }
            guard let first, let last else { return nil }
            from = first
            through = last
        }
        return from <= through ? from...through : nil
    }

    /// The LSN range a row's history reads: nil for the whole log, `.some(nil)`
    /// for a window with no record in it.
    func historyRange(_ reader: LogReader) throws -> ClosedRange<LSN>?? {
        guard isWindowed else { return .none }
        return .some(try lsnRange(reader, defaultUntil: try reader.headLSN()))
    }

    func filter(tables: Set<String>?, key: [Field]?) throws -> RecordFilter {
        var ops: Set<ChangeOperation>?
        if !op.isEmpty {
            ops = []
            for o in op.flatMap({ $0.split(separator: ",").map(String.init) }) {
                guard let parsed = ChangeOperation.allCases.first(where: { $0.description == o.lowercased() }) else {
                    throw LogError(.badInput, "--op \(o): expected insert, update or delete")
                }
                ops?.insert(parsed)
            }
        }
        return RecordFilter(tables: tables, key: key, operations: ops, conditions: try conditions.map { try RecordFilter.condition($0) })
    }

    var isFiltered: Bool { !op.isEmpty || !conditions.isEmpty }
}
