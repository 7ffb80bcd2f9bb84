import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct RollbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Abandon the migration (before cutover) or switch back to the source (after).",
        discussion: "Before cutover it removes everything the migration installed (capture, state, what it created in the target); the log is kept and a new `migrate` continues its LSNs. After cutover it carries the target's writes back; a rollback a crash interrupted is finished by running it again."
    )

    @OptionGroup var plan: PlanOption

    @Flag(help: "Change nothing; print every object a rollback would remove.")
    var dryRun = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    func run() throws {
        try reportingErrors {
            let console = Console(json: json, verbosity)
            let p = try plan.load()
            console.detail("plan \(plan.plan): \(p.source) → \(p.displayTarget)\(dryRun ? " (dry run)" : "")")
            let r = try Rollback.run(plan: p, dryRun: dryRun)
            console.detail("\(r.kind.rawValue): \(r.droppedTables.count) table\(r.droppedTables.count == 1 ? "" : "s") dropped, \(r.removed.count) object\(r.removed.count == 1 ? "" : "s") removed, \(r.changesReplayedBack) changes carried back")
            if !r.dryRun { for o in r.removed { console.detail("removed \(o)") } }
            if json {
                var j = JSONObject()
                j.set("kind", r.kind.rawValue)
                j.set("dry_run", r.dryRun)
                j.set("dropped", array: r.droppedTables.map(JSONObject.quote))
                j.set("removed", array: r.removed.map(JSONObject.quote))
                j.set("changes_replayed_back", r.changesReplayedBack)
                print(j.text)
                return
            }
            if r.dryRun {
                if r.kind == .reversed {
                    print("dry run: the migration is cut over; a rollback would carry the target's writes back and make the source authoritative")
                } else if r.removed.isEmpty {
                    print("dry run: nothing to roll back")
                } else {
                    print("dry run: a rollback would remove:")
                    for o in r.removed { print("  \(o)") }
                }
                return
            }
            switch r.kind {
            case .abandoned: print("migration abandoned: dropped \(r.droppedTables.isEmpty ? "nothing" : r.droppedTables.joined(separator: ", ")); capture removed; the source is untouched; the log is kept")
            case .reversed: print("rolled back: \(r.changesReplayedBack) target changes replayed into the source; the source is authoritative again")
            case .nothingToDo: print("nothing to roll back")
            }
        }
    }
}

