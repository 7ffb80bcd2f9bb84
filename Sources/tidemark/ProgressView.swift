#if canImport(Glibc)
import Glibc
#endif
import TidemarkCore
import TidemarkLog

/// Progress on a terminal (stderr): one line per table plus a lag line,
/// redrawn at most 10 times a second. Quiet when stderr is not a terminal.
final class ProgressView {
    let enabled: Bool
    private var lastDraw: UInt64 = 0
    private var linesDrawn = 0
    private var firstSeen: [String: (UInt64, Int)] = [:]

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ p: MigrationProgress) {
        guard enabled else { return }
        let now = Clock.monotonicNanos()
        guard now - lastDraw > 100_000_000 else { return }
        lastDraw = now
        var lines: [String] = []
        for t in p.tables {
            if firstSeen[t.source] == nil && t.phase == .copying { firstSeen[t.source] = (now, t.rowsCopied) }
            var line = "  \(t.source) → \(t.target)  \(t.phase.rawValue)"
            if t.phase != .pending {
                let total = max(t.rowsEstimate, t.rowsCopied)
                let pct = total == 0 ? 100 : t.rowsCopied * 100 / total
                line += "  \(t.rowsCopied)/\(total) rows (\(pct)%)"
                if t.phase == .copying, let (t0, r0) = firstSeen[t.source], now > t0 {
                    let rate = Double(t.rowsCopied - r0) / (Double(now - t0) / 1e9)
                    if rate > 0 {
                        line += "  \(Int(rate)) rows/s"
                        line += "  ETA \(Int(Double(max(0, total - t.rowsCopied)) / rate)) s"
                    }
                }
            }
            lines.append(line)
        }
        if let b = p.buildingIndex {
            lines.append("  building index \(b.name) on \(b.table) (\(p.indexesPending) to build)")
        } else if p.indexesPending > 0 {
            lines.append("  \(p.indexesPending) index\(p.indexesPending == 1 ? "" : "es") to build after the copy")
        }
        lines.append("  applied LSN \(p.appliedLSN)  lag \(p.lagChanges) changes, \(p.lagMillis) ms  replayed \(p.changesReplayed)\(p.caughtUp ? "  caught up" : "")")
        var out = ""
        if linesDrawn > 0 { out += "\u{1B}[\(linesDrawn)A" }
        for l in lines { out += "\u{1B}[2K" + l + "\n" }
        linesDrawn = lines.count
        fputs(out, stderrStream())
    }

    func finish() {
        lastDraw = 0
    }
}

func stderrStream() -> UnsafeMutablePointer<FILE> {
    fdopenStderr
}

nonisolated(unsafe) let fdopenStderr: UnsafeMutablePointer<FILE> = fdopen(2, "w")
