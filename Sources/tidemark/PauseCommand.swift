import ArgumentParser
import TidemarkCore
import TidemarkLog

struct PauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause",
        abstract: "Pause a migration: a running `migrate` stops copying and replaying until `tidemark resume`.",
        discussion: "Works from another shell, through the migration state (no signals): a running `migrate` (or a cutover postponed with --postpone-flag) notices within a fraction of a second and waits, holding no lock; the source keeps capturing changes. A migration that is not running stays paused: the next `migrate` starts paused and says so. Waits up to 2 s for a running migration to confirm. Refused when the migration was cut over or rolled back; a cutover refuses to start while paused."
    )

    @OptionGroup var plan: PlanOption

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors(json: json) {
            let r = try LiveControl.pause(plan: try plan.load())
            let since = Timestamp(microsSinceEpoch: r.pausedAtMicros).description
            if json {
                var o = JSONObject()
                o.set("paused", true)
                o.set("paused_at", since)
                o.set("already_paused", r.alreadyPaused)
                o.set("acknowledged", r.acknowledged)
                o.set("applied_lsn", r.appliedLSN.rawValue)
                print(o.text)
            } else {
                print("\(r.alreadyPaused ? "already paused" : "paused") since \(since), at applied LSN \(r.appliedLSN); "
                      + (r.acknowledged ? "the running migration has stopped copying and replaying"
                                        : "no running migration confirmed it within 2 s — the next `tidemark migrate` starts paused")
                      + "; `tidemark resume --plan \(plan.plan)` goes on")
            }
        }
    }
}
