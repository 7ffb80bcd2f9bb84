#if canImport(Glibc)
import Glibc
#endif
import TidemarkCore
import TidemarkLog

/// Progress of a long command on stderr.
///
/// On a terminal: a bar per table (percent, rows/s, ETA) and a lag line,
/// redrawn in place at most 10 times a second. Otherwise (a file, a pipe,
/// a log collector): one plain line at most every few seconds
/// (`TIDEMARK_PROGRESS_INTERVAL` seconds, default 5), never escape codes.
/// With `--verbose`, each table's phase change is a step detail as well.
final class ProgressView {
    enum Mode: Equatable {
        case off
        case bar(width: Int)
        case lines(intervalNanos: UInt64)

        /// A bar when stderr is a terminal, plain lines when it is not.
        static func forStandardError() -> Mode {
            // One column spare: a line that fills the last column wraps on
            // some terminals, and the redraw would climb one line short.
            if isTerminal(2) { return .bar(width: max(20, terminalWidth() - 1)) }
            var seconds = 5.0
            if let v = getenv("TIDEMARK_PROGRESS_INTERVAL").map({ String(cString: $0) }), let s = Double(v), s >= 0, s.isFinite {
                seconds = s
            }
            return .lines(intervalNanos: UInt64(seconds * 1e9))
        }
    }

    let mode: Mode
    private let console: Console?
    private let start = Clock.monotonicNanos()
    private var lastDraw: UInt64 = 0
    private var linesDrawn = 0
    private var firstSeen: [String: (UInt64, Int)] = [:]
    private var phases: [String: CopyPhase] = [:]
    private var caughtUp = false
    private var index: String?
    /// The last progress shown, drawn once more at the end (the throttle
    /// may have skipped the final state).
    private var last: MigrationProgress?

    init(mode: Mode, console: Console? = nil) {
        self.mode = mode
        self.console = console
        if case .lines = mode { lastDraw = start }
    }

    /// Compatibility with callers that only know on or off: on means the
    /// mode stderr calls for.
    convenience init(enabled: Bool) {
        self.init(mode: enabled ? .forStandardError() : .off)
    }

    var enabled: Bool { mode != .off }

    /// Whether a redraw (bar) or a line (plain) is due now.
    private func due(_ now: UInt64) -> Bool {
        switch mode {
        case .off: return false
        case .bar: return now - lastDraw > 100_000_000
        case .lines(let interval): return now - lastDraw >= interval
        }
    }

    func show(_ p: MigrationProgress) {
        let now = Clock.monotonicNanos()
        details(p)
        last = p
        for t in p.tables where firstSeen[t.source] == nil && t.phase == .copying {
            firstSeen[t.source] = (now, t.rowsCopied)
        }
        guard due(now) else { return }
        lastDraw = now
        switch mode {
        case .off: return
        case .bar(let width): draw(barLines(p, now, width: width))
        case .lines: printError("progress: " + plainLine(p, now))
        }
    }

    /// `verify`'s progress: rows compared so far in `table` (no total).
    func verifying(_ table: String, rows: Int) {
        let now = Clock.monotonicNanos()
        guard due(now) else { return }
        lastDraw = now
        switch mode {
        case .off: return
        case .bar(let width): draw([ProgressBar.line(label: "verifying \(table)", done: rows, total: nil, rowsPerSecond: nil, width: width)])
        case .lines: printError("progress: verifying \(table): \(rows) rows compared")
        }
    }

    /// Ends the display: the bar's last drawing stays (or is erased), and
    /// the next drawing starts below it.
    func finish(clearing: Bool = false) {
        if !clearing, case .bar(let width) = mode, linesDrawn > 0, let p = last {
            draw(barLines(p, Clock.monotonicNanos(), width: width))
        }
        last = nil
        if clearing, linesDrawn > 0 {
            // Up over the drawing, erasing it; the next output starts there.
            writeStandardError("\u{1B}[\(linesDrawn)A" + String(repeating: "\u{1B}[2K\n", count: linesDrawn) + "\u{1B}[\(linesDrawn)A")
        }
        linesDrawn = 0
        if case .lines = mode { lastDraw = Clock.monotonicNanos() } else { lastDraw = 0 }
    }

    /// With `--verbose`: a detail line for each table's phase change, each
    /// index build and the catch-up.
    private func details(_ p: MigrationProgress) {
        guard let console, console.verbose else { return }
        for t in p.tables where phases[t.source] != t.phase {
            let was = phases[t.source]
            phases[t.source] = t.phase
            guard was != nil || t.phase != .pending else { continue }
            console.detail("\(t.source) → \(t.target): \(t.phase.rawValue)\(t.phase == .pending ? "" : " (\(t.rowsCopied) rows copied)")")
        }
        let building = p.buildingIndex.map { "\($0.name) on \($0.table)" }
        if building != index {
            if let b = building { console.detail("building index \(b)") }
            index = building
        }
        if p.caughtUp != caughtUp {
            caughtUp = p.caughtUp
            if caughtUp { console.detail("caught up at applied LSN \(p.appliedLSN) (\(p.changesReplayed) changes replayed)") }
        }
    }

    private func rate(_ t: MigrationProgress.Table, _ now: UInt64) -> Double? {
        guard t.phase == .copying, let (t0, r0) = firstSeen[t.source], now > t0 + 200_000_000 else { return nil }
        let r = Double(t.rowsCopied - r0) / (Double(now - t0) / 1e9)
        return r > 0 ? r : nil
    }

    private func barLines(_ p: MigrationProgress, _ now: UInt64, width: Int) -> [String] {
        var lines: [String] = []
        for t in p.tables {
            let label = "\(t.source) → \(t.target)  \(t.phase.rawValue)"
            if t.phase == .pending {
                lines.append(ProgressBar.fit("  " + label, width))
            } else {
                let total = t.rowsEstimate > 0 || t.phase != .copying ? max(t.rowsEstimate, t.rowsCopied) : nil
                lines.append(ProgressBar.line(label: "  " + label, done: t.rowsCopied, total: total, rowsPerSecond: rate(t, now), width: width))
            }
        }
        if let b = p.buildingIndex {
            lines.append(ProgressBar.fit("  building index \(b.name) on \(b.table) (\(p.indexesPending) to build)", width))
        } else if p.indexesPending > 0 {
            lines.append(ProgressBar.fit("  \(p.indexesPending) index\(p.indexesPending == 1 ? "" : "es") to build after the copy", width))
        }
        lines.append(ProgressBar.fit("  applied LSN \(p.appliedLSN)  lag \(p.lagChanges) changes, \(p.lagMillis) ms  replayed \(p.changesReplayed)\(p.caughtUp ? "  caught up" : "")", width))
        return lines
    }

    private func plainLine(_ p: MigrationProgress, _ now: UInt64) -> String {
        var parts: [String] = []
        if let t = p.tables.first(where: { $0.phase == .copying }) {
            var s = "copying \(t.source) → \(t.target) \(t.rowsCopied)"
            if t.rowsEstimate > 0 {
                let total = max(t.rowsEstimate, t.rowsCopied)
                s += "/\(total) rows (\(t.rowsCopied * 100 / total)%)"
                if let r = rate(t, now) { s += ", \(Int(r)) rows/s, ETA \(ProgressBar.duration(Double(total - t.rowsCopied) / r))" }
            } else {
                s += " rows"
                if let r = rate(t, now) { s += ", \(Int(r)) rows/s" }
            }
            parts.append(s)
        }
        let copied = p.tables.filter { $0.phase != .pending && $0.phase != .copying }.count
        parts.append("\(copied) of \(p.tables.count) table\(p.tables.count == 1 ? "" : "s") copied")
        if let b = p.buildingIndex { parts.append("building index \(b.name) on \(b.table)") }
        parts.append("applied LSN \(p.appliedLSN), lag \(p.lagChanges) changes (\(p.lagMillis) ms)\(p.caughtUp ? ", caught up" : "")")
        return parts.joined(separator: "; ")
    }

    /// Redraws `lines` over the previous drawing.
    private func draw(_ lines: [String]) {
        var out = ""
        if linesDrawn > 0 { out += "\u{1B}[\(linesDrawn)A" }
        for l in lines { out += "\u{1B}[2K" + l + "\n" }
        linesDrawn = lines.count
        writeStandardError(out)
    }
}

/// One progress bar line, fitted to a width (pure: unit-tested).
enum ProgressBar {
    /// `label  [#####.....]  45%  4500/10000 rows  1200 rows/s  ETA 5 s`, at
    /// most `width` characters. Without a total (unknown): no bar, percent
    /// or ETA. The bar shrinks first, then goes; the label is cut last.
    static func line(label: String, done: Int, total: Int?, rowsPerSecond: Double?, width: Int) -> String {
        var tail = ""
        let rate = rowsPerSecond.flatMap { $0.isFinite && $0 > 0 ? $0 : nil }
        guard let total else {
            tail = "  \(done) rows"
            if let rate { tail += "  \(Int(rate)) rows/s" }
            return fit(label + tail, width)
        }
        let fraction = total <= 0 ? 1.0 : min(1.0, Double(max(0, done)) / Double(total))
        let percent = Int(fraction * 100)
        tail = "  \(String(percent).leftPadding(3))%  \(done)/\(total) rows"
        if let rate {
            tail += "  \(Int(rate)) rows/s"
            if fraction < 1 { tail += "  ETA \(duration(Double(max(0, total - done)) / rate))" }
        }
        let barWidth = min(40, width - label.count - tail.count - 4)
        guard barWidth >= 10 else { return fit(label + tail, width) }
        let filled = Int((fraction * Double(barWidth)).rounded(.down))
        let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled) + "]"
        return label + "  " + bar + tail
    }

    /// `s` cut to `width` characters (the last one an ellipsis when cut).
    static func fit(_ s: String, _ width: Int) -> String {
        guard width > 0 else { return "" }
        return s.count <= width ? s : String(s.prefix(width - 1)) + "…"
    }

    /// 42 s, 3 min 5 s, 2 h 10 min.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded(.up))
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \(s % 3600 / 60) min"
    }
}

/// The width of the terminal on stderr: its window size, else $COLUMNS,
/// else 80.
func terminalWidth() -> Int {
    var size = winsize()
    if ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
    if let c = getenv("COLUMNS").map({ String(cString: $0) }), let n = Int(c), n > 0 { return n }
    return 80
}

func stderrStream() -> UnsafeMutablePointer<FILE> {
    fdopenStderr
}

nonisolated(unsafe) let fdopenStderr: UnsafeMutablePointer<FILE> = fdopen(2, "w")
