import ArgumentParser
import TidemarkLog

struct LogStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Records, LSN and time range, per-table counts, size and compression of a log."
    )

    @OptionGroup var log: LogLocation

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @Flag(help: "Read on past damaged frames and segments (reported) instead of stopping at the first.")
    var skipDamaged = false

    @OptionGroup var window: LogWindowOptions

    @Option(help: "Only records of this table (repeat or comma-separate for several).")
    var table: [String] = []

    @Option(help: "Only records of this row: a key value, or a JSON object of key columns.")
    var key: String?

    func run() throws {
        try reportingErrors {
            if window.isWindowed || window.isFiltered || !table.isEmpty || key != nil {
                try windowed()
                return
            }
            let s = try LogStatistics.compute(LogDirectory(log.directory), skipDamaged: skipDamaged)
            // The figures cover what was read; damage ends the command with
            // an error (exit 1) after them.
            for e in s.skipped { printError("skipped damaged LSN range in segment \(e.segment ?? "?"): \(e.message)") }
            for g in s.gaps { printError("note: LSN \(g.lowerBound) to \(g.upperBound) were lost to damage and quarantined by `tidemark log repair`") }
            let first = s.firstTimestampMicros.map { Timestamp(microsSinceEpoch: $0).description }
            let last = s.lastTimestampMicros.map { Timestamp(microsSinceEpoch: $0).description }
            if json {
                var o = JSONObject()
                o.set("records", s.records)
                o.set("first_lsn", s.firstLSN?.rawValue)
                o.set("last_lsn", s.lastLSN?.rawValue)
                o.set("first_ts", first)
                o.set("last_ts", last)
                var tables = JSONObject()
                for (table, ops) in s.counts.sorted(by: { $0.key < $1.key }) {
                    var t = JSONObject()
                    for op in ChangeOperation.allCases { t.set(op.description, ops[op] ?? 0) }
                    tables.set(table, t)
                }
                o.set("tables", tables)
                o.set("segments", s.segments)
                o.set("frames", s.frames)
                o.set("bytes_on_disk", s.bytesOnDisk)
                o.set("uncompressed_bytes", s.uncompressedBytes)
                o.set("compressed_bytes", s.compressedBytes)
                o.set("compression_ratio", (s.compressionRatio * 100).rounded() / 100)
                var consumers = JSONObject()
                for (name, lsn) in s.consumers.sorted(by: { $0.key < $1.key }) { consumers.set(name, lsn.rawValue) }
                o.set("consumers", consumers)
                o.set("gaps", array: s.gaps.map { jsonLSNRange($0) })
                o.set("skipped", array: s.skipped.map { e in
                    var j = JSONObject()
                    j.set("segment", e.segment)
                    j.set("first_lsn", e.lsnRange?.lowerBound.rawValue)
                    // The end of a damaged segment is not known: null.
                    j.set("last_lsn", e.lsnRange.flatMap { $0.upperBound.rawValue == UInt64.max ? nil : $0.upperBound.rawValue })
                    return j.text
                })
                if let damage = s.damage { o.set("damage", damage.message) }
                print(o.text)
                if let damage = s.damage { throw damage }
                return
            }
            print("records       \(s.records)")
            print("LSN range     \(s.firstLSN.map { "\($0)" } ?? "-") … \(s.lastLSN.map { "\($0)" } ?? "-")")
            print("time range    \(first ?? "-") … \(last ?? "-")")
            print("segments      \(s.segments) (\(s.frames) frames)")
            print("on disk       \(formatBytes(s.bytesOnDisk))")
            print("uncompressed  \(formatBytes(s.uncompressedBytes)) (ratio \(String(format2: s.compressionRatio))×)")
            if !s.counts.isEmpty {
                print("")
                let width = max(5, s.counts.keys.map(\.count).max() ?? 5)
                print("table".padding(width) + "    insert    update    delete")
                for (table, ops) in s.counts.sorted(by: { $0.key < $1.key }) {
                    let cols = ChangeOperation.allCases.map { String(ops[$0] ?? 0).leftPadding(10) }.joined()
                    print(table.padding(width) + cols)
                }
            }
            if !s.consumers.isEmpty {
                print("")
                for (name, lsn) in s.consumers.sorted(by: { $0.key < $1.key }) { print("consumer \(name) at LSN \(lsn)") }
            }
            if let damage = s.damage { throw damage }
        }
    }
}

extension LogStatsCommand {
    /// Counts of the records in a window that pass the filters (only the
    /// window's frames are read).
    func windowed() throws {
        let reader = try LogReader(directory: log.directory)
        let w = try window.window(reader)
        let tables = table.isEmpty ? nil : Set(table.flatMap { $0.split(separator: ",").map(String.init) })
        let filter = try window.filter(tables: tables, key: try key.map { try KeyArgument.parse($0) })
        var records = 0
        var first: ChangeRecord?, last: ChangeRecord?
        var counts: [String: [ChangeOperation: Int]] = [:]
        if w.fromLSN.rawValue != UInt64.max {
            let cursor = try reader.cursor(from: w.fromLSN, tables: tables)
            cursor.skipDamaged = skipDamaged
            cursor.skip = FrameSkip(window: w, filter: filter)
            while let r = try cursor.next(), !w.isPast(r) {
                guard w.contains(r), filter.matches(r) else { continue }
                records += 1
                if first == nil { first = r }
                last = r
                counts[r.table, default: [:]][r.operation, default: 0] += 1
            }
        }
        let firstTS = first.map { Timestamp(microsSinceEpoch: $0.timestampMicros).description }
        let lastTS = last.map { Timestamp(microsSinceEpoch: $0.timestampMicros).description }
        if json {
            var o = JSONObject()
            o.set("records", records)
            o.set("first_lsn", first?.lsn.rawValue)
            o.set("last_lsn", last?.lsn.rawValue)
            o.set("first_ts", firstTS)
            o.set("last_ts", lastTS)
            var t = JSONObject()
            for (name, ops) in counts.sorted(by: { $0.key < $1.key }) {
                var j = JSONObject()
                for op in ChangeOperation.allCases { j.set(op.description, ops[op] ?? 0) }
                t.set(name, j)
            }
            o.set("tables", t)
            print(o.text)
            return
        }
        print("records       \(records)")
        print("LSN range     \(first.map { "\($0.lsn)" } ?? "-") … \(last.map { "\($0.lsn)" } ?? "-")")
        print("time range    \(firstTS ?? "-") … \(lastTS ?? "-")")
        if !counts.isEmpty {
            print("")
            let width = max(5, counts.keys.map(\.count).max() ?? 5)
            print("table".padding(width) + "    insert    update    delete")
            for (name, ops) in counts.sorted(by: { $0.key < $1.key }) {
                print(name.padding(width) + ChangeOperation.allCases.map { String(ops[$0] ?? 0).leftPadding(10) }.joined())
            }
        }
    }
}

