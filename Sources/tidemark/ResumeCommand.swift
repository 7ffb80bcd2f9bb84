import ArgumentParser
import TidemarkCore
import TidemarkLog

struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Resume a migration paused by `tidemark pause`.",
        discussion: "A running `migrate` goes on within a fraction of a second; one that is not running goes on when started. Resuming a migration that is not paused changes nothing and says so."
    )

    @OptionGroup var plan: PlanOption

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors(json: json) {
            let r = try LiveControl.resume(plan: try plan.load())
            if json {
                var o = JSONObject()
                o.set("resumed", r.pausedAtMicros != nil)
                o.set("paused_at", r.pausedAtMicros.map { Timestamp(microsSinceEpoch: $0).description })
                o.set("paused_seconds", r.pausedAtMicros.map { Double(r.resumedAtMicros - $0) / 1e6 } ?? 0)
                print(o.text)
            } else if let at = r.pausedAtMicros {
                print("resumed after \(durationText(micros: r.resumedAtMicros - at)) paused (since \(Timestamp(microsSinceEpoch: at)))")
            } else {
                print("not paused: nothing changed")
            }
        }
    }
}
