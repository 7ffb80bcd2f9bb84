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
        abstract: "Print the last 10 records (or every record from --since/--from on); with --follow keep printing as the log grows."
    )

    @OptionGroup var log: LogLocation

    @Option(help: "First LSN to print (an alias of --since).")
    var from: LSN?

    @OptionGroup var window: LogWindowOptions

    @Option(help: "Only records of this row: a key value, or a JSON object of key columns (the old key of a key change matches too).")
    var key: String?

    @Option(name: [.customShort("n"), .long], help: "Print the last N records that pass every other option (default 10 without --since/--from; 0: none, e.g. with --follow to print only new records).")
    var lines: Int?

    @Flag(help: "Start at the end (after the last N records) and wait for new records (across segment rotation) until interrupted.")
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
            if w.fromLSN.rawValue == UInt64.max { return }  // nothing at or after --since
            reportGaps(try reader.directory.meta().gaps, directory: log.directory)
            var out = StandardOutput()
            // Everything before damage is printed before the error.
            defer { out.flush() }
            let debeziumSource = DebeziumSource(name: reader.sourceID.rawValue)
            var buffer: [UInt8] = []
            func emit(_ r: ChangeRecord) {
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
            }
            // As tail(1): the last 10 records unless a start is given; with a
            // start, every record from it unless --lines is given too.
            var start = w.fromLSN
            if let n = lines ?? (from == nil && window.since == nil ? 10 : nil) {
                // The last n matching records up to the head as it is now;
                // a follower then goes on right after that head.
                let head = try reader.headLSN()
                let through = min(w.throughLSN ?? head, head)
                let last = try reader.lastRecords(n, from: w.fromLSN, through: through, skip: FrameSkip(window: w, filter: filter),
                                                  tables: tables, skipDamaged: skipDamaged) { w.contains($0) && filter.matches($0) }
                _ = reportSkipped(last.skipped, from: 0)
                for r in last.records { emit(r) }
                out.flush()
                guard follow, w.throughLSN.map({ $0 > through }) ?? true else { return }
                start = max(start, through.next)
            }
            let cursor = try reader.cursor(from: start, follow: follow, tables: tables)
            cursor.skipDamaged = skipDamaged
            // Frames whose metadata rules the window and filter out are not read.
            cursor.skip = FrameSkip(window: w, filter: filter)
            var reported = 0
            // Records are read in place; JSON lines are written straight
            // from the frame's bytes (the same bytes as from the record).
            let lines = JSONLineBuffer()
            func flushLines() {
                guard lines.count > 0 else { return }
                out.buffer.append(contentsOf: lines.bytes.bindMemory(to: UInt8.self))
                lines.removeAll()
                out.flush()
            }
            // On an error too: what was read before the damage is printed.
            defer { flushLines() }
            // Options read once: an option's getter is slow for a per-record loop.
            let jsonl = format == .jsonl, following = follow
            while let v = try cursor.nextView() {
                reported = reportSkipped(cursor.skipped, from: reported)
                if w.isPast(v) { break }
                guard w.contains(v), filter.matches(v) else { continue }
                if jsonl {
                    lines.append(v)
                    if lines.count >= 1 << 16 || following { flushLines() }
                } else {
                    emit(v.record())
                    if following { out.flush() }
                }
            }
            flushLines()
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
