import ArgumentParser
import TidemarkLog

struct LogDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "The net change per key between two LSNs: inserted, deleted, or changed columns old → new.",
        discussion: """
            --since and --until are points of the log, both inclusive: an LSN, an RFC 3339 time or a relative time \
            (-15m, -2h, -1d); --until defaults to the log's head. Many changes of one key \
            fold into one line; a key that ends as it started prints nothing. A key change shows as a delete of \
            the old key and an insert of the new one. --op and --where select by the net change: --op insert \
            keeps inserted keys, update changed ones, delete deleted ones; --where holds on the key's image at \
            the start or at the end.
            """
    )

    @OptionGroup var log: LogLocation

    @OptionGroup var window: LogWindowOptions

    @Option(help: "Only this table.")
    var table: String?

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @Flag(help: "Read on past damaged frames and segments, reporting each range skipped on stderr.")
    var skipDamaged = false

    func run() throws {
        try reportingErrors {
            let reader = try LogReader(directory: log.directory)
            guard window.since != nil else { throw LogError(.badInput, "diff needs --since (an LSN, an RFC 3339 time or a relative time such as -15m)") }
            guard let range = try window.lsnRange(reader, defaultUntil: try reader.headLSN()) else { return }  // nothing in the window
            var reported = 0
            let filter = try window.filter(tables: nil, key: nil)
            let diffs = try LogDiff.read(reader: reader, range: range, table: table, skipDamaged: skipDamaged) {
                reported = reportSkipped($0, from: reported)
            }.filter { d in
                // The net change as one record (its operation and its first
                // and last images), so --op and --where mean what they mean
                // on every other reader.
                let op: ChangeOperation = switch d.kind { case .inserted: .insert; case .deleted: .delete; case .changed: .update }
                return filter.matches(ChangeRecord(lsn: range.lowerBound, timestampMicros: 0, table: d.table, operation: op,
                                                   key: d.key, before: d.before, after: d.after))
            }
            var out = StandardOutput()
            defer { out.flush() }
            for d in diffs {
                if json {
                    var o = JSONObject()
                    o.set("table", d.table)
                    o.set("key", raw: d.key.jsonText)
                    o.set("change", d.kind.rawValue)
                    o.set("before", raw: d.before?.jsonText ?? "null")
                    o.set("after", raw: d.after?.jsonText ?? "null")
                    if d.kind == .changed {
                        var cols = JSONObject()
                        for c in d.changes {
                            cols.set(c.column, raw: "{\"old\":\(c.old?.jsonText ?? "null"),\"new\":\(c.new?.jsonText ?? "null")}")
                        }
                        o.set("columns", cols)
                    }
                    out.line(o.text)
                    continue
                }
                let head = "\(d.kind.rawValue)  \(d.table)  \(d.key.keyText)"
                switch d.kind {
                case .inserted:
                    out.line(head + "  " + (d.after ?? []).map { "\($0.name)=\($0.value.literalText)" }.joined(separator: ", "))
                case .deleted:
                    out.line(head + "  " + (d.before ?? []).map { "\($0.name)=\($0.value.literalText)" }.joined(separator: ", "))
                case .changed:
                    out.line(head + "  " + d.changes.map { "\($0.column): \($0.old?.literalText ?? "(absent)") → \($0.new?.literalText ?? "(absent)")" }.joined(separator: ", "))
                }
            }
        }
    }
}
