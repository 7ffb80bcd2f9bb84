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

    func filter(tables: Set<String>?, key: [Field]?) throws -> RecordFilter {
        var ops: Set<ChangeOperation>?
        if !op.isEmpty {
            ops = []
            for o in op.flatMap({ $0.split(separator: ",").map(String.init) }) {
                guard let parsed = ChangeOperation.allCases.first(where: { $0.description == o.lowercased() }) else {
                    throw ValidationError("--op \(o): expected insert, update or delete")
                }
                ops?.insert(parsed)
            }
        }
        return RecordFilter(tables: tables, key: key, operations: ops, conditions: try conditions.map { try RecordFilter.condition($0) })
    }

    var isFiltered: Bool { !op.isEmpty || !conditions.isEmpty }
}
