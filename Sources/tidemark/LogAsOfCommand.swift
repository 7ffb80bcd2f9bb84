import ArgumentParser
import TidemarkCore
import TidemarkLog

struct LogAsOfCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "as-of",
        abstract: "A table's rows (or one row) as they were at an LSN or time, or the whole database then (--output).",
        discussion: """
            The live database (--db: the source before cutover, the target after) is copied with \
            SQLite's backup API, and every change after the point is undone on the copy from the \
            before images in the log (changes not yet shipped are read from the copy's outbox). \
            --at takes an LSN (a whole number), an RFC 3339 time in UTC (2026-11-25T11:00:00Z) or a time relative to now (-15m, -2h, -1d), \
            which means the last LSN committed at or before it. A point before what the log reaches \
            back to (retention, or capture installed later) or after the database's own LSN is refused.
            With --output, writes a new SQLite database of the captured tables as of that point, \
            without Tidemark's tables and triggers. Otherwise prints the rows of --table (only the \
            one with --key; K as in `log history`: a value, or a JSON object of the key columns).
            """
    )

    @Option(help: "The live database capture ships from into --log.")
    var db: String

    @OptionGroup var log: LogLocation

    @Option(parsing: .unconditional, help: "An LSN, an RFC 3339 time in UTC, or a relative time (-15m, -2h, -1d).")
    var at: String

    @Option(help: "The table whose rows to print.")
    var table: String?

    @Option(help: "Only the row with this key: a value, or a JSON object of key columns.")
    var key: String?

    @Option(help: "Write the whole database as of the point to this new file instead of printing rows.")
    var output: String?

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    func validate() throws {
        try checkDatabasePath(db, "--db")
        if output == nil && table == nil {
            throw ValidationError("give --table T to print its rows, or --output FILE to write the whole database as of --at")
        }
        if output != nil && (table != nil || key != nil) {
            throw ValidationError("--output writes every captured table; leave out --table and --key")
        }
        if key != nil && table == nil {
            throw ValidationError("--key needs --table")
        }
    }

    func run() throws {
        try reportingErrors {
            let console = Console(json: json, verbosity)
            let point = try AsOf.Point(parsing: at)
            var out = StandardOutput()
            defer { out.flush() }
            if let output {
                console.detail("copying \(db) with SQLite's backup API, then undoing from \(log.directory) every change after \(at)")
                let report = try AsOf.rewind(db: db, log: log.directory, at: point, output: output)
                console.detail("copied at LSN \(report.copyLSN); undid \(report.undone) change\(report.undone == 1 ? "" : "s") (\(report.undoneFromOutbox) from the outbox); tables: \(report.tables.joined(separator: ", "))")
                notes(report, console)
                if json {
                    var o = JSONObject()
                    o.set("output", output)
                    o.set("lsn", report.lsn.rawValue)
                    o.set("ts", report.micros.map { Timestamp(microsSinceEpoch: $0).description })
                    o.set("copy_lsn", report.copyLSN.rawValue)
                    o.set("undone", report.undone)
                    o.set("undone_from_outbox", report.undoneFromOutbox)
                    o.set("tables", array: report.tables.map(JSONObject.quote))
                    o.set("left_out", array: report.leftOut.map(JSONObject.quote))
                    out.line(o.text)
                } else {
                    out.line("wrote \(output): \(report.tables.count) table\(report.tables.count == 1 ? "" : "s") as of \(pointText(report)); undid \(report.undone) change\(report.undone == 1 ? "" : "s") after it (the database was at LSN \(report.copyLSN))")
                }
                return
            }
            guard let table else { return }
            let wanted = try key.map(KeyArgument.parse)
            let result = try AsOf.rows(db: db, log: log.directory, at: point, table: table, key: wanted)
            notes(result.report, console)
            if json {
                for row in result.rows { out.line(jsonObject(row)) }
            } else {
                out.line("\(result.table) as of \(pointText(result.report)): \(result.rows.count) row\(result.rows.count == 1 ? "" : "s")")
                for row in result.rows { out.line(row.map { "\($0.name)=\(literal($0.value))" }.joined(separator: "  ")) }
            }
            if result.rows.isEmpty, let key {
                printError("no row of \(result.table) with key \(key) at \(pointText(result.report))")
            }
        }
    }

    private func pointText(_ r: AsOfReport) -> String {
        "LSN \(r.lsn)" + (r.micros.map { " (\(Timestamp(microsSinceEpoch: $0)))" } ?? "")
    }

    private func notes(_ r: AsOfReport, _ console: Console) {
        if !r.leftOut.isEmpty {
            console.noteOnStderr("note: not captured, so left out: \(r.leftOut.joined(separator: ", "))")
        }
        if !r.partialUpdateCapture.isEmpty {
            console.noteOnStderr("note: \(r.partialUpdateCapture.joined(separator: ", ")) capture updates of some columns only; updates of the other columns are not in the log and were not undone")
        }
    }

    private func jsonObject(_ fields: [Field]) -> String {
        var buffer: [UInt8] = [UInt8(ascii: "{")]
        for (i, f) in fields.enumerated() {
            if i > 0 { buffer.append(UInt8(ascii: ",")) }
            buffer.append(contentsOf: JSONObject.quote(f.name).utf8)
            buffer.append(UInt8(ascii: ":"))
            f.value.appendJSON(to: &buffer)
        }
        buffer.append(UInt8(ascii: "}"))
        return String(decoding: buffer, as: UTF8.self)
    }

    /// SQL literal form kept on one line.
    private func literal(_ value: Value) -> String {
        var out = ""
        for scalar in value.description.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value):
                out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
