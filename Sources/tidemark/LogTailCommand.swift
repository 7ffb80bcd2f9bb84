import ArgumentParser
import TidemarkLog

enum RecordFormat: String, ExpressibleByArgument, CaseIterable {
    case jsonl
    case text
    /// Debezium's change-event envelope, payload only (see `RecordDebezium.swift`).
    case debezium
}

struct LogTailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print records from an LSN on; with --follow keep printing as the log grows."
    )

    @OptionGroup var log: LogLocation

    @Option(help: "First LSN to print (an alias of --since).")
    var from: LSN?

    @OptionGroup var window: LogWindowOptions

    @Option(help: "Only records of this row: a key value, or a JSON object of key columns (the old key of a key change matches too).")
    var key: String?

    @Option(name: .shortAndLong, help: "Print only the last N records (ignored with --from).")
    var lines: Int?

    @Flag(help: "Wait for new records (across segment rotation) until interrupted.")
    var follow = false

    @Option(help: "Only records of this table (repeat or comma-separate for several).")
    var table: [String] = []

    @Option(help: "jsonl (one JSON object per line), text, or debezium (Debezium change events, payload only, one per line).")
    var format: RecordFormat = .jsonl

    @Flag(help: "With --format debezium: print each event's key JSON and a TAB before it (as `kcat -K'\\t'` reads), and a tombstone (key, TAB, null) after each delete.")
    var withKey = false

    @Flag(help: "Read on past damaged frames and segments, reporting each range skipped on stderr (default: stop at the first with an error).")
    var skipDamaged = false

    func validate() throws {
        if let lines, lines < 0 { throw ValidationError("--lines must be 0 or more, not \(lines)") }
        if withKey && format != .debezium { throw ValidationError("--with-key needs --format debezium (it prefixes Debezium events with their key)") }
    }

    func run() throws {
        try reportingErrors {
            if from != nil && window.since != nil {
                throw LogError(.badInput, "--from is an alias of --since; give one of them")
            }
            let reader = try LogReader(directory: log.directory)
            let tables = table.isEmpty ? nil : Set(table.flatMap { $0.split(separator: ",").map(String.init) })
            let filter = try window.filter(tables: tables, key: try key.map { try KeyArgument.parse($0) })
            let w = try window.window(reader, defaultSince: from)
            var start = w.fromLSN
            if from == nil && window.since == nil, let n = lines {
                let head = try reader.headLSN()
                start = head.rawValue > UInt64(n) ? LSN(head.rawValue - UInt64(max(n, 0)) + 1) : .zero
            }
            if start.rawValue == UInt64.max { return }  // nothing at or after --since
            let cursor = try reader.cursor(from: start, follow: follow, tables: tables)
            cursor.skipDamaged = skipDamaged
            // Frames whose metadata rules the window and filter out are not read.
            cursor.skip = FrameSkip(window: w, filter: filter)
            reportGaps(cursor.recordedGaps, directory: log.directory)
            var out = StandardOutput()
            var buffer: [UInt8] = []
            // Everything before damage is printed before the error.
            defer { out.flush() }
            var reported = 0
            let debeziumSource = DebeziumSource(name: reader.sourceID.rawValue)
            while let r = try cursor.next() {
                reported = reportSkipped(cursor.skipped, from: reported)
                if w.isPast(r) { break }
                guard w.contains(r), filter.matches(r) else { continue }
                switch format {
                case .jsonl:
                    buffer.removeAll(keepingCapacity: true)
                    r.appendJSON(to: &buffer)
                    buffer.append(0x0A)
                    out.buffer.append(contentsOf: buffer)
                    if out.buffer.count >= 1 << 16 { out.flush() }
                case .text:
                    out.line(r.textLine)
                case .debezium:
                    r.appendDebezium(to: &out.buffer, source: debeziumSource, withKey: withKey)
                    if out.buffer.count >= 1 << 16 { out.flush() }
                }
                if follow { out.flush() }
            }
            out.flush()
            _ = reportSkipped(cursor.skipped, from: reported)
        }
    }
}

/// Prints the log's recorded gaps (from `log repair`) on stderr.
func reportGaps(_ gaps: [ClosedRange<LSN>], directory: String) {
    for g in gaps {
        printError("note: LSN \(g.lowerBound) to \(g.upperBound) of \(directory) were lost to damage and quarantined by `tidemark log repair`")
    }
}

/// Prints damage skipped since `from` on stderr; returns the new count.
func reportSkipped(_ skipped: [LogError], from: Int) -> Int {
    for e in skipped.dropFirst(from) {
        let range = e.lsnRange.map { r in r.upperBound.rawValue == UInt64.max ? "LSN \(r.lowerBound) to the end of the segment" : "LSN \(r.lowerBound) to \(r.upperBound)" } ?? "an unknown range"
        printError("skipped damaged \(range) in segment \(e.segment ?? "?"): \(e.message)")
    }
    return skipped.count
}
