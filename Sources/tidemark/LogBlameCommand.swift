import ArgumentParser
import TidemarkLog

struct LogBlameCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blame",
        abstract: "For each column of a row's latest image: the LSN and time it last changed, and its value before.",
        discussion: "K as for `log history`; the row is followed across key changes. With --since/--until only the changes in the window count (--until alone: the row's blame as of that point); --op and --where choose which changes count."
    )

    @OptionGroup var log: LogLocation

    @Option(help: "The table.")
    var table: String

    @Option(help: "The row's key: a value, or a JSON object of key columns.")
    var key: String

    @OptionGroup var window: LogWindowOptions

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @Flag(help: "Read on past damaged frames and segments, reporting each range skipped on stderr.")
    var skipDamaged = false

    func run() throws {
        try reportingErrors {
            let reader = try LogReader(directory: log.directory)
            let wanted = try KeyArgument.parse(key)
            var reported = 0
            let range = try window.historyRange(reader)
            let filter = try window.filter(tables: nil, key: nil)
            var records: [ChangeRecord] = []
            if case .some(.none) = range {
                try RowHistory.checkTable(reader: reader, table: table, key: wanted, skipDamaged: skipDamaged)
            } else {
                records = try RowHistory.read(reader: reader, table: table, key: wanted, range: range ?? nil, skipDamaged: skipDamaged) {
                    reported = reportSkipped($0, from: reported)
                }.records.filter { filter.matches($0) }
            }
            guard let blame = RowBlame(history: records) else {
                throw CommandFailure("not_found", "no changes of \(table) with key \(key) in the \(window.isWindowed || window.isFiltered ? "window" : "log"); nothing to blame")
            }
            var out = StandardOutput()
            defer { out.flush() }
            if json {
                for c in blame.columns {
                    var o = JSONObject()
                    o.set("column", c.column)
                    o.set("value", raw: c.value.jsonText)
                    o.set("lsn", c.lsn?.rawValue)
                    o.set("ts", c.timestampMicros.map { Timestamp(microsSinceEpoch: $0).description })
                    o.set("previous", raw: c.previous?.jsonText ?? "null")
                    o.set("created", c.lsn != nil && c.previous == nil)
                    out.line(o.text)
                }
                return
            }
            var heading = "\(table) \(blame.key.keyText)"
            if let d = blame.deletedAt { heading += "  (deleted at LSN \(d); the image it deleted)" }
            out.line(heading)
            let rows = blame.columns.map { c -> [String] in
                let when = c.lsn.map { "LSN \($0)" } ?? "before the log"
                let ts = c.timestampMicros.map { Timestamp(microsSinceEpoch: $0).description } ?? ""
                let prev = c.previous.map(\.literalText) ?? (c.lsn == nil ? "" : "(row created)")
                return [c.column, c.value.literalText, when, ts, prev]
            }
            let header = ["column", "value", "changed", "time", "before"]
            var widths = header.map(\.count)
            for r in rows { for (i, s) in r.enumerated() { widths[i] = max(widths[i], s.count) } }
            func line(_ cells: [String]) -> String {
                var s = "  "
                for (i, c) in cells.enumerated() {
                    s += c + (i == cells.count - 1 ? "" : String(repeating: " ", count: widths[i] - c.count + 2))
                }
                while s.last == " " { s.removeLast() }
                return s
            }
            out.line(line(header))
            for r in rows { out.line(line(r)) }
        }
    }
}
