import ArgumentParser
import TidemarkCore
import TidemarkLog

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Prove the target equals the transformed source, while writers keep writing.",
        discussion: "Exit 0 when equal, 1 when not (missing, extra and different rows are listed by key), 2 when it could not compare (as diff and cmp)."
    )

    @OptionGroup var plan: PlanOption

    @Option(help: "Rows per compared chunk.")
    var chunkRows: Int = 10_000

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    @Flag(help: "For each differing key, print the differing columns with the source and target values (missing and extra rows: the side that has the row).")
    var showValues = false

    @Option(help: "Keys listed per table and kind of difference (default 10 with --show-values, else 100); the rest are counted.")
    var maxKeys: Int?

    func validate() throws {
        guard chunkRows >= 1 else { throw ValidationError("--chunk-rows must be at least 1") }
        if let maxKeys, maxKeys < 1 { throw ValidationError("--max-keys must be at least 1, not \(maxKeys)") }
    }

    func run() throws {
        var equal = false
        // Could not compare (a bad plan, a missing file, a database error):
        // exit 2, so 1 always means "found differences".
        do { try reportingErrors(json: false) { try compare(&equal) } } catch let e as ExitCode where e == ExitCode(1) { throw ExitCode(2) }
        if !equal { throw ExitCode(1) }
    }

    private func compare(_ equal: inout Bool) throws {
        do {
            Interruption.install()
            var options = Verifier.Options()
            options.chunkRows = chunkRows
            let console = Console(json: json, verbosity)
            let view = console.progress()
            var current: String?
            let p = try plan.load()
            console.detail("plan \(plan.plan): comparing \(p.tables.count) table\(p.tables.count == 1 ? "" : "s") of \(p.displayTarget) with \(p.source)")
            options.showValues = showValues
            options.keysMax = maxKeys ?? (showValues ? 10 : options.keysMax)
            let report = try Verifier(plan: p, options: options).run { table, rows in
                if current != table {
                    current = table
                    console.detail("verifying \(table)")
                }
                view.verifying(table, rows: rows)
            }
            view.finish(clearing: true)
            equal = report.isEqual
            if json {
                print(Self.json(report))
                return
            }
            var out = StandardOutput()
            defer { out.flush() }
            for t in report.tables {
                if t.isEqual {
                    // The differences are the result; equal tables a note.
                    console.note("\(t.source) → \(t.target): \(t.rows) rows equal")
                    continue
                }
                for line in Self.lines(t, showValues: showValues) { out.line(line) }
            }
            out.line(report.isEqual ? "equal: \(report.rows) rows in \(String(format2: report.seconds)) s" : "NOT equal")
        }
    }

    /// The text report of one table: a summary line, then the listed keys
    /// (with --show-values, each differing column with both values), and
    /// how many more were counted than listed.
    static func lines(_ t: Verifier.TableReport, showValues: Bool) -> [String] {
        if t.isEqual { return ["\(t.source) → \(t.target): \(t.rows) rows equal"] }
        var out = ["\(t.source) → \(t.target): \(t.missingCount) missing, \(t.extraCount) extra, \(t.differentCount) different"
                   + (t.foreignKeyCount > 0 ? ", \(t.foreignKeyCount) foreign key" : "")]
        func key(_ k: [Value]) -> String { "key " + jsonKey(k, columns: t.keyColumns) }
        func more(_ listed: Int, _ counted: Int, _ what: String) {
            if counted > listed { out.append("  … and \(counted - listed) more \(what) (--max-keys N lists more)") }
        }
        if showValues {
            for row in t.values {
                switch row.state {
                case .onlyInSource:
                    out.append("  \(key(row.key)): missing from the target; source row \(jsonRow(row.source))")
                case .onlyInTarget:
                    out.append("  \(key(row.key)): extra in the target, not in the source; target row \(jsonRow(row.target))")
                case .different:
                    for c in row.columns {
                        out.append("  \(key(row.key)): \(c.column): source \(jsonValue(c.source)), target \(jsonValue(c.target))")
                    }
                case .settled:
                    out.append("  \(key(row.key)): equal when read again (it changed during the verify)")
                }
            }
        } else {
            for k in t.missing { out.append("  missing   \(keyText(k))") }
            for k in t.extra { out.append("  extra     \(keyText(k))") }
            for k in t.different { out.append("  different \(keyText(k))") }
        }
        more(t.missing.count, t.missingCount, "missing")
        more(t.extra.count, t.extraCount, "extra")
        more(t.different.count, t.differentCount, "different")
        for v in t.foreignKeys {
            out.append("  foreign key \(v.key.isEmpty ? "?" : keyText(v.key))\(v.rowid.map { " (rowid \($0))" } ?? ""): no parent in \(v.parent)")
        }
        more(t.foreignKeys.count, t.foreignKeyCount, "foreign key")
        for k in t.unsettled { out.append("  unsettled \(keyText(k)) (kept changing during verification; verify again)") }
        return out
    }

    /// `verify --json`: keys as objects of the source key's columns.
    static func json(_ report: Verifier.Report) -> String {
        var o = JSONObject()
        o.set("equal", report.isEqual)
        o.set("rows", report.rows)
        o.set("seconds", report.seconds)
        o.set("tables", array: report.tables.map { t in
            let key = { (k: [Value]) in jsonKey(k, columns: t.keyColumns) }
            var j = JSONObject()
            j.set("source", t.source)
            j.set("target", t.target)
            j.set("rows", t.rows)
            j.set("equal", t.isEqual)
            j.set("missing_count", t.missingCount)
            j.set("extra_count", t.extraCount)
            j.set("different_count", t.differentCount)
            j.set("missing", array: t.missing.map(key))
            j.set("extra", array: t.extra.map(key))
            j.set("different", array: t.different.map(key))
            j.set("unsettled", array: t.unsettled.map(key))
            j.set("foreign_key_count", t.foreignKeyCount)
            j.set("foreign_keys", array: t.foreignKeys.map { v in
                var f = JSONObject()
                f.set("key", raw: v.key.isEmpty ? "null" : key(v.key))
                f.set("rowid", v.rowid.map { Int($0) })
                f.set("parent", v.parent)
                return f.text
            })
            j.set("values", array: t.values.map { row in
                var r = JSONObject()
                r.set("key", raw: key(row.key))
                r.set("state", row.state.jsonName)
                r.set("columns", array: row.columns.map { c in
                    var d = JSONObject()
                    d.set("column", c.column)
                    d.set("source", raw: jsonValue(c.source))
                    d.set("target", raw: jsonValue(c.target))
                    return d.text
                })
                r.set("source", raw: jsonRow(row.source))
                r.set("target", raw: jsonRow(row.target))
                return r.text
            })
            return j.text
        })
        return o.text
    }
}

/// A row as a JSON object of its columns (`null` when there is none).
func jsonRow(_ fields: [Field]?) -> String {
    guard let fields else { return "null" }
    return "{" + fields.map { JSONObject.quote($0.name) + ":" + jsonValue($0.value) }.joined(separator: ",") + "}"
}

extension Verifier.DifferingRow.State {
    /// The state's name in JSON output.
    var jsonName: String {
        switch self {
        case .onlyInSource: "missing"
        case .onlyInTarget: "extra"
        case .different: "different"
        case .settled: "settled"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
