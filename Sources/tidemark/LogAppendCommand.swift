import ArgumentParser
import TidemarkLog

struct LogAppendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append",
        abstract: "Append JSON-lines change records to a log and print the last LSN.",
        discussion: """
        Each input line is one record: {"lsn":7,"ts":"2026-11-25T11:00:00.123456Z","table":"users","op":"update","key":{"id":1},"before":{...},"after":{...}}. \
        "lsn" and "ts" may be left out; they are then assigned (next LSN, current time). \
        The whole input is checked first: a malformed line is refused with its line number and nothing is appended.
        """
    )

    @OptionGroup var log: LogLocation

    @Option(help: ArgumentHelp("Read records from FILE instead of standard input (- is standard input).", valueName: "file"))
    var input: String?

    @Option(help: "Source id for a new log (default: a random id). An existing log must match.")
    var sourceID: String?

    @Option(help: "commit (fsync before returning), none, or interval:MS.")
    var durability: String = "commit"

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func validate() throws {
        guard Durability(parsing: durability) != nil else {
            throw ValidationError("--durability must be commit, none or interval:MS, not '\(durability)'")
        }
    }

    func run() throws {
        try reportingErrors {
            let drafts = try JSONLinesInput.read(path: input)
            let appender = try LogAppender(
                directory: log.directory, sourceID: sourceID.map(SourceID.init(_:)),
                options: LogOptions(durability: Durability(parsing: durability)!))
            if let recovery = appender.recovery { printError(recovery.description) }
            // A capture log's LSNs belong to its source's outbox: refuse it
            // before reading any LSN from it (a log belongs to one capture installation: see LogDirectory.swift).
            try appender.claim(.append)
            let now = Clock.wallMicros()
            var records: [ChangeRecord] = []
            records.reserveCapacity(drafts.count)
            // The previous LSN rather than the next: after the largest LSN
            // there is no next one to compute.
            var previous = appender.lastLSN
            for d in drafts {
                guard d.draft.lsn != nil || previous.rawValue < UInt64.max else {
                    throw LogError(.lsnOrder, "line \(d.line): no LSN is left to assign after \(previous), the largest LSN")
                }
                let r = try d.draft.record(lsnIfAbsent: d.draft.lsn ?? previous.next, timestampMicrosIfAbsent: now)
                guard r.lsn > previous else {
                    throw LogError(.lsnOrder, "line \(d.line): lsn \(r.lsn) is not above the previous LSN \(previous); LSNs must strictly increase (leave \"lsn\" out to have it assigned)")
                }
                records.append(r)
                previous = r.lsn
            }
            var last = appender.lastLSN
            var i = 0
            while i < records.count {
                let end = min(records.count, i + 10_000)
                last = try appender.append(Array(records[i..<end]))
                i = end
            }
            try appender.close()
            if json {
                var o = JSONObject()
                o.set("records", records.count)
                o.set("first_lsn", records.first?.lsn.rawValue)
                o.set("last_lsn", last.rawValue)
                print(o.text)
            } else {
                print(last.rawValue)
            }
        }
    }
}

/// Reads JSON lines from a file or stdin, parsing every line before anything
/// is appended.
enum JSONLinesInput {
    struct Line {
        var line: Int
        var draft: DraftRecord
    }

    static func read(path: String?) throws -> [Line] {
        let bytes = try readAll(path)
        var out: [Line] = []
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            lineNumber += 1
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            var slice = bytes[start..<end]
            if slice.last == 0x0D { slice = slice.dropLast() }
            if !slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                out.append(Line(line: lineNumber, draft: try ChangeRecord.parseJSONLine(slice, lineNumber: lineNumber)))
            }
            start = end + 1
        }
        return out
    }

    /// The file, or standard input for `-` or no `--input`.
    static func readAll(_ path: String?) throws -> [UInt8] {
        try InputFile.read(path)
    }
}

#if canImport(Glibc)
import Glibc
#endif
