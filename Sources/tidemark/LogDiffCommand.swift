import ArgumentParser
import TidemarkLog

struct LogDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "The net change per key between two LSNs: inserted, deleted, or changed columns old → new.",
        discussion: """
            --since and --until are LSNs, both inclusive (time forms are not taken yet). Many changes of one key \
            fold into one line; a key that ends as it started prints nothing. A key change shows as a delete of \
            the old key and an insert of the new one.
            """
    )

    @OptionGroup var log: LogLocation

    @Option(help: "First LSN of the window (inclusive).")
    var since: LSN

    @Option(help: "Last LSN of the window (inclusive; default: the log's head).")
    var until: LSN?

    @Option(help: "Only this table.")
    var table: String?

    @Flag(help: "One JSON object per key.")
    var json = false

    @Flag(help: "Read on past damaged frames and segments, reporting each range skipped on stderr.")
    var skipDamaged = false

    func run() throws {
        try reportingErrors {
            let reader = try LogReader(directory: log.directory)
            let end = try until ?? reader.headLSN()
            guard since <= end else {
                printError("--since \(since) is after --until \(end); give the earlier LSN first")
                throw ExitCode(1)
            }
            var reported = 0
            let diffs = try LogDiff.read(reader: reader, range: since...end, table: table, skipDamaged: skipDamaged) {
                reported = reportSkipped($0, from: reported)
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
