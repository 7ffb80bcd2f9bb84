import ArgumentParser
import TidemarkLog

struct LogHistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Every change of one row, oldest first, with before and after images, across key changes.",
        discussion: """
            K is the key value (e.g. 42 or alice), or a JSON object for composite keys: '{"order_id":7,"line":2}'. \
            The row is followed backwards and forwards across key changes (an update that changed the key, or in \
            logs from before capture format 2 a delete and an insert at consecutive LSNs with the same commit time); \
            a line says where the key changed. A table not in the log or a key of the wrong shape is an error.
            """
    )

    @OptionGroup var log: LogLocation

    @Option(help: "The table.")
    var table: String

    @Option(help: "The row's key: a value, or a JSON object of key columns.")
    var key: String

    @Option(help: "text (default), jsonl or debezium.")
    var format: RecordFormat = .text

    @Flag(help: "With --format debezium: the record's key JSON and a tab before each value.")
    var withKey = false

    @OptionGroup var window: LogWindowOptions

    @Flag(help: "Read on past damaged frames and segments, reporting each range skipped on stderr.")
    var skipDamaged = false

    func validate() throws {
        if withKey && format != .debezium { throw ValidationError("--with-key goes with --format debezium") }
    }

    func run() throws {
        try reportingErrors {
            let reader = try LogReader(directory: log.directory)
            let wanted = try KeyArgument.parse(key)
            let w = try window.window(reader)
            // --op/--where narrow what is printed; the row is followed through all of it.
            let filter = try window.filter(tables: nil, key: nil)
            let origins = LogOrigins.load(reader.directory)
            var reported = 0
            var out = StandardOutput()
            defer { out.flush() }
            // A window bounds what is read: the row is followed across the
            // key changes inside it, so the answer never depends on later records.
            let range = try window.historyRange(reader)
            if case .some(.none) = range {
                try RowHistory.checkTable(reader: reader, table: table, key: wanted, skipDamaged: skipDamaged)
                if format == .text { out.line("no changes of \(table) with key \(key) in the window") }
                return
            }
            let history: RowHistory
            do {
                history = try RowHistory.read(reader: reader, table: table, key: wanted, range: range ?? nil, skipDamaged: skipDamaged) {
                    reported = reportSkipped($0, from: reported)
                }
            } catch let damage as LogError where damage.segment != nil {
                // A damaged frame does not hide the log: the key's changes
                // before it are printed (without following key changes past
                // the damage), then the error.
                let cursor = try reader.cursor(tables: [table])
                do {
                    while let r = try cursor.next() {
                        guard r.matches(key: wanted), w.contains(r), filter.matches(r) else { continue }
                        switch format {
                        case .jsonl: out.line(r.jsonLine)
                        case .text: out.line(r.historyText)
                        case .debezium: r.appendDebezium(to: &out.buffer, source: DebeziumSource(name: reader.sourceID.rawValue), withKey: withKey)
                        }
                    }
                } catch {
                    out.flush()
                    throw error
                }
                throw damage
            }
            let moves = Dictionary(history.keyChanges.map { ($0.lsn, $0) }, uniquingKeysWith: { a, _ in a })
            for r in history.records {
                guard w.contains(r), filter.matches(r) else { continue }
                switch format {
                case .jsonl: out.line(r.jsonLine)
                case .text:
                    out.line(r.historyText)
                    // Across a cutover or rollback: which store wrote it.
                    if !origins.isEmpty { out.line("  written by \(LogOrigins.store(of: r.lsn, in: origins))") }
                case .debezium: r.appendDebezium(to: &out.buffer, source: DebeziumSource(name: reader.sourceID.rawValue), withKey: withKey)
                }
                if format == .text, let m = moves[r.lsn] {
                    out.line("key changed from \(m.from.keyText) to \(m.to.keyText) at LSN \(m.lsn)")
                }
            }
            if history.records.isEmpty && format == .text {
                out.line("no changes of \(table) with key \(key) in the log")
            }
        }
    }
}

/// `--key` values: a JSON object of key columns, or one bare value matched
/// against a single-column key of any name.
enum KeyArgument {
    static func parse(_ text: String) throws -> [Field] {
        let trimmed = text.drop(while: { $0 == " " })
        if trimmed.hasPrefix("{") {
            do {
                return try ChangeRecord.parseJSONKey(String(trimmed))
            } catch {
                var why = error.message
                if why.hasPrefix("line 1: ") { why.removeFirst(8) }
                throw LogError(.badInput, "--key \(text) is not a valid JSON object of key columns (\(why)); give a value (42) or an object ('{\"order_id\":7,\"line\":2}')")
            }
        }
        return [Field("", .text(text))]
    }
}
