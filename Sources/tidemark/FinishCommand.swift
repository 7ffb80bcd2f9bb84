import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct FinishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finish",
        abstract: "Keep a cutover: remove reverse capture and the migration state (a rollback is then no longer possible).",
        discussion: "The old tables keep their guards (nothing is written where nobody reads) until --drop-source drops them. The log is kept."
    )

    @OptionGroup var plan: PlanOption

    @Flag(help: "Also drop the old source tables (with their guards).")
    var dropSource = false

    @Flag(help: "Change nothing; print every object finish would remove.")
    var dryRun = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    func run() throws {
        try reportingErrors {
            let console = Console(json: json, verbosity)
            let p = try plan.load()
            console.detail("plan \(plan.plan): \(p.source) → \(p.displayTarget)\(dropSource ? ", dropping the old source tables" : "")\(dryRun ? " (dry run)" : "")")
            let r = try Finish.run(plan: p, dropSource: dropSource, dryRun: dryRun)
            console.detail("\(r.removed.count) object\(r.removed.count == 1 ? "" : "s") \(r.dryRun ? "to remove" : "removed")")
            if json {
                var j = JSONObject()
                j.set("dry_run", r.dryRun)
                j.set("removed", array: r.removed.map(JSONObject.quote))
                print(j.text)
                return
            }
            if r.removed.isEmpty {
                print("nothing to finish")
            } else {
                print(r.dryRun ? "dry run: finish would remove:" : "finished: removed")
                for o in r.removed { print("  \(o)") }
            }
        }
    }
}
