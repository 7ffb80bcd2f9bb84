#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TidemarkLog
import TidemarkSQLite

/// Sizes of the audit rows of `tidemark-bench log` (the defaults are the goals' sizes).
struct AuditOptions: ParsableArguments {
    @Option(help: "Records in the audit log that history and the window are asked of (10,000,000 for the goals).")
    var auditRecords = 10_000_000

    @Option(help: "Length of the time window, in seconds (300: the 5 minutes the goal is judged on).")
    var auditWindowSeconds = 300

    @Option(help: "Rows of the table as-of rewinds (1,000,000 for the goal).")
    var asOfRows = 1_000_000

    @Option(help: "Changes after the as-of point that are undone (100,000 for the goal).")
    var asOfChanges = 100_000

    func validate() throws {
        guard auditRecords >= 1_000 else { throw ValidationError("--audit-records must be at least 1,000") }
        guard auditWindowSeconds >= 1 else { throw ValidationError("--audit-window-seconds must be at least 1") }
        guard asOfRows >= 1 else { throw ValidationError("--as-of-rows must be at least 1") }
        guard asOfChanges >= 1 else { throw ValidationError("--as-of-changes must be at least 1") }
    }

    /// The audit goals are judged on these sizes.
    var meetsIssueWorkload: Bool {
        auditRecords >= 10_000_000 && auditWindowSeconds == 300 && asOfRows >= 1_000_000 && asOfChanges >= 100_000
    }
}

/// The audit rows of `tidemark-bench log`: Tidemark's readers run as a user
/// runs them (the release `tidemark` binary, one process per query) beside
/// what a user without them would run on the same log.
///
/// - History of one key, and a time window, out of one log: `tidemark log
///   history` and `tidemark log tail --since --until` vs `zstd -dc` of every
///   segment piped to `grep -c -F` of bytes those records contain. The
///   record encoding is binary, so grep is given the exact bytes (the key's
///   encoding; the commit time's upper bytes) and only counts lines: it
///   prints nothing a person can read, and the window's pattern is a
///   superset. It is the least a script pays, so the ratio favours grep.
/// - `tidemark log as-of --output` of a captured table, rewinding the
///   changes after the point, vs restoring the same point from nothing:
///   create the table and apply every logged change up to the point with
///   prepared statements in one transaction, journal and sync off, in this
///   process (no process start, no JSON). Both results, and a copy saved at
///   the point while the database was written, are compared by row count and
///   a hash of every row.
struct AuditBenchmark {
    var options: AuditOptions
    var runs: Int
    var seed: UInt64
    var dir: ScratchDirectory

    func measure() throws -> LogBenchmark.Outcome {
        let tidemark = try Self.tidemarkBinary()
        var memory = PeakMemory()

        // The log. Not timed: it is the data the queries are asked of.
        let logDir = dir.subdirectory("audit-log")
        let n = options.auditRecords
        var workload = AuditWorkload(seed: seed, historyFrom: n / 2, windowFrom: n * 2 / 3,
                                     windowMicros: Int64(options.auditWindowSeconds) * 1_000_000)
        let statistics: AppenderStatistics = try memory.phase("audit log") {
            progress("audit: writing a log of \(formatNumber(Double(n))) records")
            let appender = try LogAppender(directory: logDir, options: LogOptions(durability: .none))
            var left = n
            while left > 0 {
                let batch = workload.next(min(left, 10_000))
                try appender.append(assigningLSNs: batch)
                left -= batch.count
            }
            try appender.close()
            return appender.statistics
        }
        releaseFreedMemory()
        let segments = try LogDirectory(logDir).segments().map(\.path)
        let onDisk = try segments.reduce(0) { $0 + (try fileSize($1)) }
        guard let history = workload.history, let windowStart = workload.windowStart, let windowEnd = workload.windowEnd,
              let firstMicros = workload.firstMicros else {
            throw BenchmarkError("the audit log of \(n) records has no order inserted after its middle; give more --audit-records")
        }
        let lastMicros = try lastCommitMicros(logDir)
        let (key, historyRecords) = history

        // History of one key.
        let keyPatterns = [AuditWorkload.keyPattern(key)]
        let historyCommand = ExternalCommand([tidemark, "log", "history", "--log", logDir, "--table", "orders", "--key", String(key)])
        let historyCheck = ExternalCommand([tidemark, "log", "history", "--log", logDir, "--table", "orders", "--key", String(key), "--format", "jsonl"],
                                           output: .file(dir.file("history.jsonl")))
        // A window.
        let since = Timestamp(microsSinceEpoch: windowStart).description
        let until = Timestamp(microsSinceEpoch: windowEnd).description
        let windowPatterns = try AuditWorkload.windowPatterns(start: windowStart, end: windowEnd).map { p -> [UInt8] in
            // grep -f splits patterns at newlines: keep the upper bytes only
            // (still a superset of the window).
            guard let cut = p.lastIndex(of: 0x0A) else { return p }
            guard cut + 1 < p.count else { throw BenchmarkError("the window's time bytes end in a newline; try another --seed") }
            return Array(p[(cut + 1)...])
        }
        let tailCommand = ExternalCommand([tidemark, "log", "tail", "--log", logDir, "--since", since, "--until", until])
        let tailCheck = ExternalCommand([tidemark, "log", "tail", "--log", logDir, "--since", since, "--until", until],
                                        output: .file(dir.file("window.jsonl")))

        let grepKey = try GrepPipeline(segments: segments, patterns: keyPatterns, patternFile: dir.file("key.pat"), countFile: dir.file("key.count"))
        let grepWindow = try GrepPipeline(segments: segments, patterns: windowPatterns, patternFile: dir.file("window.pat"), countFile: dir.file("window.count"))

        // Check once (untimed) that the readers print what was written, and
        // measure their peak memory on the way.
        let probe = PeakRSSProbe(reportFile: dir.file("rss.txt"))
        let historyRSS = try probe.run(historyCheck)
        let historyPrinted = try countLines(dir.file("history.jsonl"))
        let tailRSS = try probe.run(tailCheck)
        let windowPrinted = try countLines(dir.file("window.jsonl"))
        try removeTree(dir.file("window.jsonl"))
        guard historyPrinted == historyRecords else {
            throw BenchmarkError("tidemark log history printed \(historyPrinted) records of orders \(key); the log has \(historyRecords)")
        }
        guard windowPrinted == workload.windowRecords else {
            throw BenchmarkError("tidemark log tail printed \(windowPrinted) records in \(since) … \(until); the log has \(workload.windowRecords)")
        }

        var historyRuns = Runs(), grepHistory = Runs(), window = Runs(), grepWindowRuns = Runs()
        var keyLines = 0, windowLines = 0
        try memory.phase("audit queries") {
            for i in 0..<runs {
                let h = try historyCommand.run()
                let g = try grepKey.run()
                keyLines = try grepKey.count()
                historyRuns.add(h)
                grepHistory.add(g)
                let w = try tailCommand.run()
                let gw = try grepWindow.run()
                windowLines = try grepWindow.count()
                window.add(w)
                grepWindowRuns.add(gw)
                progress("audit run \(i + 1)/\(runs): history \(describe(h)), grep \(describe(g)); window \(describe(w)), grep \(describe(gw))")
            }
        }
        // Every record of the key is on its own grep line unless two share
        // one; fewer lines than records would mean grep was given the wrong
        // bytes, and the baseline would not be doing the same job.
        guard keyLines >= 1, keyLines <= historyRecords else {
            throw BenchmarkError("grep counted \(keyLines) lines with orders \(key)'s key bytes; the log has \(historyRecords) records of it")
        }

        // As of.
        let asOf = try memory.phase("as-of") { try AsOfBenchmark(options: options, runs: runs, seed: seed, dir: dir, tidemark: tidemark).measure() }
        // This process's peak while the audit rows ran (the phases' peaks,
        // not anything earlier in the same process).
        let peakRSS = memory.phases.map(\.bytes).max() ?? 0

        // The table: queries per second at the median wall time; the ratio is the speed-up.
        func details(_ ours: Runs, _ theirs: Runs, _ ourCommand: String, _ theirCommand: String) -> [(String, JSON)] {
            [("tidemark_seconds", JSON.seconds(ours.wall)), ("tidemark_cpu_seconds", JSON.seconds(ours.cpu)),
             ("baseline_seconds", JSON.seconds(theirs.wall)), ("baseline_cpu_seconds", JSON.seconds(theirs.cpu)),
             ("cpu_ratio", .number(theirs.cpu.median / ours.cpu.median)),
             ("tidemark_command", .string(ourCommand)), ("baseline_command", .string(theirCommand))]
        }
        let records = formatCount(n)
        var table = ComparisonTable()
        table.rows.append(Comparison(
            path: "history of one key, \(records) records", unit: "queries/s",
            tidemark: 1 / historyRuns.wall.median, baseline: 1 / grepHistory.wall.median, goal: .atLeastTimesBaseline(10),
            details: [("records_of_key", .int(historyRecords)), ("grep_lines", .int(keyLines))]
                + details(historyRuns, grepHistory, historyCommand.displayText, grepKey.displayText)))
        table.rows.append(Comparison(
            path: "\(windowText) window, \(records) records", unit: "queries/s",
            tidemark: 1 / window.wall.median, baseline: 1 / grepWindowRuns.wall.median, goal: .atLeastTimesBaseline(10),
            details: [("records_in_window", .int(workload.windowRecords)), ("grep_lines", .int(windowLines))]
                + details(window, grepWindowRuns, tailCommand.displayText, grepWindow.displayText)))
        table.rows.append(Comparison(
            path: "as-of --output, \(formatCount(options.asOfRows)) rows, \(formatCount(options.asOfChanges)) changes undone", unit: "rows/s",
            tidemark: Double(asOf.rowsAtPoint) / asOf.rewind.wall.median, baseline: Double(asOf.rowsAtPoint) / asOf.replay.wall.median,
            goal: .atLeastTimesBaseline(1),
            details: [("rows", .int(asOf.rowsAtPoint)), ("changes_replayed", .int(asOf.replayedChanges)),
                      ("changes_undone", .int(asOf.undone)), ("equal", .bool(true)), ("row_hash", .string(asOf.hashText))]
                + details(asOf.rewind, asOf.replay, asOf.command, "replay of the log up to the point into a new database (in process)")))
        // The goal: RSS ≤ 64 MB at any log or table size.
        for (name, rss) in [("log history", historyRSS), ("log tail, the window", tailRSS), ("log as-of --output", asOf.rss)] {
            guard let rss else { continue }
            table.rows.append(Comparison(path: "peak RSS, tidemark \(name)", unit: "MB", tidemark: megabytes(rss), baseline: nil, goal: .below(64)))
        }
        table.rows.append(Comparison(
            path: "peak RSS, this benchmark process (audit part)", unit: "MB",
            tidemark: megabytes(peakRSS), baseline: nil, goal: .none,
            details: [("phases", .object(memory.phases.map { ($0.name, JSON.number(megabytes($0.bytes))) }))]))

        let spanHours = Double(lastMicros - firstMicros) / 3.6e9
        let uncompressedMB = Double(statistics.uncompressedBytes) / 1e6
        var lines: [String] = []
        lines.append("tidemark-bench log, audit: \(records) records in \(workload.tablesSeen.count) tables over \(formatFixed(spanHours, decimals: 2)) h of commit time (\(formatNumber(uncompressedMB)) MB uncompressed, \(formatNumber(Double(onDisk) / 1e6)) MB in \(segments.count) segments, \(statistics.frames) frames), median of \(runs) run\(runs == 1 ? "" : "s"), seed \(seed)")
        if !options.meetsIssueWorkload || runs < 5 {
            lines.append("note: the goals are judged on 10,000,000 records, a 5-minute window, 1,000,000 rows and 100,000 changes, ≥ 5 runs; this run is smaller")
        }
        lines.append("tidemark = the release binary as a process (\(tidemark)); the ratio is the speed-up")
        if lastMicros < windowEnd { lines.append("note: the log ends inside the window; give more --audit-records") }
        if !PeakRSSProbe.available { lines.append("note: no /usr/bin/time (apt-get install time), so tidemark's own peak RSS is not measured") }
        lines.append("")
        lines.append(table.render())
        lines.append("")
        lines.append("wall seconds, min … median … max (CPU seconds, median):")
        lines.append(spreadLine("tidemark log history", historyRuns))
        lines.append(spreadLine("zstd -dc | grep -c (key bytes)", grepHistory))
        lines.append(spreadLine("tidemark log tail --since --until", window))
        lines.append(spreadLine("zstd -dc | grep -c (time bytes)", grepWindowRuns))
        lines.append(spreadLine("tidemark log as-of --output", asOf.rewind))
        lines.append(spreadLine("replay from an empty database", asOf.replay))
        lines.append("by CPU time (less disturbed by other load on the machine): history \(formatFixed(grepHistory.cpu.median / historyRuns.cpu.median, decimals: 2))×, window \(formatFixed(grepWindowRuns.cpu.median / window.cpu.median, decimals: 2))×, as-of \(formatFixed(asOf.replay.cpu.median / asOf.rewind.cpu.median, decimals: 2))× the baseline")
        lines.append("checked: history of orders \(key): tidemark printed \(historyPrinted) records = the \(historyRecords) written; grep counted \(keyLines) line\(keyLines == 1 ? "" : "s")")
        lines.append("checked: window \(since) … \(until): tidemark printed \(windowPrinted) records = the \(workload.windowRecords) written; grep counted \(windowLines) lines (a superset: its bytes match up to 2¼ min either side, and time columns)")
        lines.append("checked: as-of at LSN \(asOf.point) = replay = copy saved at that LSN: \(formatNumber(Double(asOf.rowsAtPoint))) rows, hash \(asOf.hashText); as-of undid \(asOf.undone) changes, replay applied \(asOf.replayedChanges)")
        lines.append("fair? grep is given the exact bytes (the log is binary: no text to grep) and only counts lines, printing nothing; tidemark")
        lines.append("      decodes and prints every matching record. The replay runs in this process with prepared statements, journal and")
        lines.append("      sync off, and replays only the \(formatNumber(Double(asOf.rowsAtPoint))) inserts before the point (a log with more history costs it more).")
        lines.append("commands: \(historyCommand.displayText)")
        lines.append("          \(grepKey.displayText)")
        lines.append("          \(tailCommand.displayText)")
        lines.append("          \(grepWindow.displayText)")
        lines.append("          \(asOf.command)")

        let json = JSON.object([
            ("benchmark", .string("log-audit")),
            ("records", .int(n)), ("runs", .int(runs)), ("seed", .string(String(seed))),
            ("tables", .int(workload.tablesSeen.count)), ("span_hours", .number(spanHours)),
            ("uncompressed_bytes", .int(statistics.uncompressedBytes)), ("bytes_on_disk", .int(onDisk)),
            ("frames", .int(statistics.frames)), ("segments", .int(segments.count)),
            ("history_key", .string("orders \(key)")), ("window", .array([.string(since), .string(until)])),
            ("as_of_lsn", .int(Int(asOf.point.rawValue))),
            ("peak_rss_bytes", .int(peakRSS)),
            ("all_goals_met", .bool(table.allPassed)),
            ("meets_issue_workload", .bool(options.meetsIssueWorkload && runs >= 5)),
            ("rows", .array(table.rows.map(\.json))),
        ])
        return LogBenchmark.Outcome(table: table, text: lines.joined(separator: "\n"), json: json,
                                    meetsWorkload: options.meetsIssueWorkload && runs >= 5)
    }

    private var windowText: String {
        options.auditWindowSeconds % 60 == 0 ? "\(options.auditWindowSeconds / 60)-minute" : "\(options.auditWindowSeconds)-second"
    }

    /// The commit time of the log's last record (for the time span printed).
    private func lastCommitMicros(_ log: String) throws -> Int64 {
        let reader = try LogReader(directory: log)
        let cursor = try reader.cursor(from: try reader.headLSN())
        var last: Int64 = 0
        while let r = try cursor.next() { last = r.timestampMicros }
        return last
    }

    /// The `tidemark` executable built beside this one (same build
    /// configuration, same directory).
    static func tidemarkBinary() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw BenchmarkError("cannot find this program's path (/proc/self/exe): \(String(cString: strerror(errno)))") }
        let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let path = directory + "/tidemark"
        guard access(path, X_OK) == 0 else {
            throw BenchmarkError("no tidemark executable beside \(exe); build it: swift build -c release --product tidemark")
        }
        return path
    }
}

/// `zstd -dc` of every segment piped to `grep -a -c -F -f PATTERNS`, run as
/// one `sh` process (its timing includes both children), the count written
/// to a file.
struct GrepPipeline {
    let command: ExternalCommand
    let countFile: String
    let displayText: String

    init(segments: [String], patterns: [[UInt8]], patternFile: String, countFile: String) throws {
        // One pattern a line; grep -F in the C locale matches raw bytes.
        var bytes: [UInt8] = []
        for p in patterns {
            precondition(!p.isEmpty && !p.contains(0x0A), "grep -f patterns are non-empty and have no newline")
            bytes += p + [0x0A]
        }
        let fd = open(patternFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchmarkError("cannot create \(patternFile): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw BenchmarkError("cannot write \(patternFile)") }
        // grep exits 1 when nothing matched: a count of 0, not a failure.
        let script = "zstd -dc -q -- \"$@\" | LC_ALL=C grep -a -c -F -f '\(patternFile)' || [ $? -eq 1 ]"
        command = ExternalCommand(["sh", "-c", script, "sh"] + segments, output: .file(countFile))
        self.countFile = countFile
        let hex = patterns.map { $0.map { String($0, radix: 16).count == 1 ? "\\x0" + String($0, radix: 16) : "\\x" + String($0, radix: 16) }.joined() }
        displayText = "zstd -dc -q <\(segments.count) segments> | LC_ALL=C grep -a -c -F -f \(patternFile) (patterns: \(hex.joined(separator: " ")))"
    }

    func run() throws -> Timing { try command.run() }

    /// The count grep printed last.
    func count() throws -> Int {
        guard let text = readSmallFile(countFile), let n = Int(text.filter { !$0.isWhitespace }) else {
            throw BenchmarkError("grep wrote no count to \(countFile)")
        }
        return n
    }
}

/// Peak resident memory of a program, measured by running it under GNU
/// `time` (`%M`, KiB): `time` forks a small child that execs the program, so
/// the figure is the program's own (unlike ``ExternalCommand``'s children,
/// which would inherit this process's high-water mark). Nil without
/// /usr/bin/time.
struct PeakRSSProbe {
    let reportFile: String

    static var available: Bool { access("/usr/bin/time", X_OK) == 0 }

    /// Runs `command` once (untimed) and returns its peak RSS in bytes.
    func run(_ command: ExternalCommand) throws -> Int? {
        guard Self.available else { return nil }
        let wrapped = ExternalCommand(["/usr/bin/time", "-f", "%M", "-o", reportFile] + command.arguments, output: command.output)
        _ = try wrapped.run()
        guard let text = readSmallFile(reportFile), let kib = Int(text.filter { $0.isNumber }) else {
            throw BenchmarkError("GNU time wrote no peak RSS to \(reportFile)")
        }
        return kib * 1024
    }
}

/// A count as text: 1,234,567 or 42 (never "42.0").
func formatCount(_ n: Int) -> String { n >= 1000 ? formatNumber(Double(n)) : String(n) }

/// Lines (newline bytes) in a file of any size.
func countLines(_ path: String) throws -> Int {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw BenchmarkError("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var lines = 0
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw BenchmarkError("cannot read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        for i in 0..<n where buffer[i] == 0x0A { lines += 1 }
    }
    return lines
}
