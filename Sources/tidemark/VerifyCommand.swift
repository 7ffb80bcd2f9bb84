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

    func validate() throws {
        guard chunkRows >= 1 else { throw ValidationError("--chunk-rows must be at least 1") }
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
                var o = JSONObject()
                o.set("equal", report.isEqual)
                o.set("rows", report.rows)
                o.set("seconds", report.seconds)
                o.set("tables", array: report.tables.map { t in
                    var j = JSONObject()
                    j.set("source", t.source)
                    j.set("target", t.target)
                    j.set("rows", t.rows)
                    j.set("missing_count", t.missingCount)
                    j.set("extra_count", t.extraCount)
                    j.set("different_count", t.differentCount)
                    j.set("missing", array: t.missing.map(jsonKey))
                    j.set("extra", array: t.extra.map(jsonKey))
                    j.set("different", array: t.different.map(jsonKey))
                    j.set("unsettled", array: t.unsettled.map(jsonKey))
                    j.set("foreign_key_count", t.foreignKeyCount)
                    j.set("foreign_keys", array: t.foreignKeys.map { v in
                        var f = JSONObject()
                        f.set("key", raw: jsonKey(v.key))
                        f.set("rowid", v.rowid.map { Int($0) })
                        f.set("parent", v.parent)
                        return f.text
                    })
                    return j.text
                })
                print(o.text)
                return
            }
            for t in report.tables {
                if t.isEqual {
                    // The differences are the result; equal tables a note.
                    console.note("\(t.source) → \(t.target): \(t.rows) rows equal")
                } else {
                    print("\(t.source) → \(t.target): \(t.missingCount) missing, \(t.extraCount) extra, \(t.differentCount) different"
                          + (t.foreignKeyCount > 0 ? ", \(t.foreignKeyCount) foreign key" : ""))
                    for k in t.missing { print("  missing   \(keyText(k))") }
                    for k in t.extra { print("  extra     \(keyText(k))") }
                    for k in t.different { print("  different \(keyText(k))") }
                    for v in t.foreignKeys {
                        print("  foreign key \(v.key.isEmpty ? "?" : keyText(v.key))\(v.rowid.map { " (rowid \($0))" } ?? ""): no parent in \(v.parent)")
                    }
                    for k in t.unsettled { print("  unsettled \(keyText(k)) (kept changing during verification; verify again)") }
                }
            }
            print(report.isEqual ? "equal: \(report.rows) rows in \(String(format2: report.seconds)) s" : "NOT equal")
        }
    }
}

/// A key as a JSON array of values (exact, like the log's JSON form).
func jsonKey(_ values: [Value]) -> String {
    var buffer: [UInt8] = [UInt8(ascii: "[")]
    for (i, v) in values.enumerated() {
        if i > 0 { buffer.append(UInt8(ascii: ",")) }
        v.appendJSON(to: &buffer)
    }
    buffer.append(UInt8(ascii: "]"))
    return String(decoding: buffer, as: UTF8.self)
}

func printProgressLine(_ s: String) {
    fputs("\u{1B}[2K\r" + s, fdopenStderr)
    fflush(fdopenStderr)
}

#if canImport(Glibc)
import Glibc
#endif
