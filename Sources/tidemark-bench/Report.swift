import TidemarkLog
// What a benchmark prints: a comparison table for people and one JSON
// object (`--json`) for scripts, built from the same `Comparison` rows so the
// two can never disagree.

/// What a measured path must reach.
enum Goal {
    /// tidemark ≥ factor × baseline (throughputs: higher is better).
    case atLeastTimesBaseline(Double)
    /// tidemark ≥ floor, in the row's unit (a throughput with no baseline).
    case atLeast(Double)
    /// tidemark < limit, in the row's unit (memory, latency).
    case below(Double)
    /// tidemark ≤ limit, in the row's unit.
    case atMost(Double)
    /// tidemark ≤ factor × baseline (durations: lower is better).
    case atMostTimesBaseline(Double)
    /// Printed for information; nothing to pass.
    case none

    func text(unit: String) -> String {
        switch self {
        case .atLeastTimesBaseline(let f): "≥ \(String(f))× baseline"
        case .atLeast(let floor): "≥ \(formatNumber(floor)) \(unit)"
        case .below(let limit): "< \(formatNumber(limit)) \(unit)"
        case .atMost(let limit): "≤ \(formatNumber(limit)) \(unit)"
        case .atMostTimesBaseline(let f): "≤ \(String(f))× baseline"
        case .none: "info"
        }
    }

    var jsonText: String? {
        switch self {
        case .atLeastTimesBaseline(let f): ">= \(String(f))x baseline"
        case .atLeast(let floor): ">= \(formatNumber(floor))"
        case .below(let limit): "< \(formatNumber(limit))"
        case .atMost(let limit): "<= \(formatNumber(limit))"
        case .atMostTimesBaseline(let f): "<= \(String(f))x baseline"
        case .none: nil
        }
    }
}

/// One row: a measured path of Tidemark beside its baseline and goal.
struct Comparison {
    var path: String
    var unit: String
    var tidemark: Double
    var baseline: Double?
    var goal: Goal
    /// Extra JSON fields for this row (per-run seconds, commands, …).
    var details: [(String, JSON)] = []

    /// tidemark / baseline.
    var ratio: Double? { baseline.map { tidemark / $0 } }

    /// Whether the goal is met; nil when the row has no goal.
    var passed: Bool? {
        switch goal {
        case .atLeastTimesBaseline(let f): ratio.map { $0 >= f }
        case .atLeast(let floor): tidemark >= floor
        case .below(let limit): tidemark < limit
        case .atMost(let limit): tidemark <= limit
        case .atMostTimesBaseline(let f): ratio.map { $0 <= f }
        case .none: nil
        }
    }

    var json: JSON {
        var fields: [(String, JSON)] = [
            ("path", .string(path)), ("unit", .string(unit)),
            ("tidemark", .number(tidemark)),
            ("baseline", baseline.map(JSON.number) ?? .null),
            ("ratio", ratio.map(JSON.number) ?? .null),
            ("goal", goal.jsonText.map(JSON.string) ?? .null),
            ("ok", passed.map(JSON.bool) ?? .null),
        ]
        fields.append(contentsOf: details)
        return .object(fields)
    }
}

/// The rows of one benchmark, rendered as an aligned table.
struct ComparisonTable {
    var rows: [Comparison] = []

    var allPassed: Bool { rows.allSatisfy { $0.passed != false } }

    func render() -> String {
        let header = ["path", "tidemark", "baseline", "ratio", "goal", "ok"]
        let cells = rows.map { r -> [String] in
            // A bare factor reads "4.51×"; anything else "412 MB/s".
            let unit = r.unit == "×" ? r.unit : " " + r.unit
            return [
                r.unit == "×" ? r.path : r.path + " (" + r.unit + ")",
                formatNumber(r.tidemark) + unit,
                r.baseline.map { formatNumber($0) + unit } ?? "—",
                r.ratio.map { formatFixed($0, decimals: 2) + "×" } ?? "—",
                r.goal.text(unit: r.unit),
                r.passed.map { $0 ? "yes" : "NO" } ?? "—",
            ]
        }
        return renderTable(header: header, rows: cells, rightAligned: [1, 2, 3])
    }
}

/// A Markdown-style table with padded columns.
func renderTable(header: [String], rows: [[String]], rightAligned: Set<Int> = []) -> String {
    var widths = header.map(\.count)
    for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        let padded = cells.enumerated().map { i, c in
            let pad = String(repeating: " ", count: widths[i] - c.count)
            return rightAligned.contains(i) ? pad + c : c + pad
        }
        return "| " + padded.joined(separator: " | ") + " |"
    }
    let rule = "|" + widths.enumerated().map { i, w in
        rightAligned.contains(i) ? String(repeating: "-", count: w + 1) + ":" : String(repeating: "-", count: w + 2)
    }.joined(separator: "|") + "|"
    return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
}

/// A JSON value, written with keys in insertion order.
indirect enum JSON {
    case null
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .number(let d):
            guard d.isFinite else { return "null" }
            // Six significant digits are far more than run-to-run noise.
            return formatSignificant(d, digits: 6)
        case .string(let s): return Self.quote(s)
        case .array(let a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.map { Self.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String { JSONText.quoted(s) }

    static func seconds(_ s: Samples) -> JSON { .array(s.seconds.map(JSON.number)) }
}

// MARK: Number formatting (no Foundation in this package)

/// `x` with exactly `decimals` digits after the point.
func formatFixed(_ x: Double, decimals: Int) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x < 0 ? "-inf" : "inf") }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(x) * scale).rounded()
    guard scaled < 9e18 else { return String(x) }
    let n = UInt64(scaled)
    let whole = n / UInt64(scale)
    var text = (x < 0 && n != 0 ? "-" : "") + String(whole)
    if decimals > 0 {
        let frac = String(n % UInt64(scale))
        text += "." + String(repeating: "0", count: decimals - frac.count) + frac
    }
    return text
}

/// A human-sized number: 3 significant digits below 1000, thousands
/// separated above (1234567 → "1,234,567"; 412.345 → "412"; 2.4567 → "2.46").
func formatNumber(_ x: Double) -> String {
    guard x.isFinite else { return formatFixed(x, decimals: 0) }
    let a = abs(x)
    if a >= 1000 {
        let digits = String(UInt64(a.rounded()))
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (x < 0 ? "-" : "") + out
    }
    if a >= 100 { return formatFixed(x, decimals: 0) }
    if a >= 10 { return formatFixed(x, decimals: 1) }
    return formatFixed(x, decimals: 2)
}

/// `x` rounded to `digits` significant digits, as a JSON number.
func formatSignificant(_ x: Double, digits: Int) -> String {
    if x == 0 { return "0" }
    var magnitude = 0
    var a = abs(x)
    while a >= 10 { a /= 10; magnitude += 1 }
    while a < 1 { a *= 10; magnitude -= 1 }
    let decimals = max(0, digits - 1 - magnitude)
    if magnitude >= digits - 1, abs(x) < 9e18 { return String(Int64(x.rounded())) }
    return formatFixed(x, decimals: min(decimals, 15))
}

/// Bytes as MB (10^6), the unit the goals are written in.
func megabytes(_ bytes: Int) -> Double { Double(bytes) / 1_000_000 }
