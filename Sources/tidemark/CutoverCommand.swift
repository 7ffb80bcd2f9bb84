import ArgumentParser
import TidemarkCore
import TidemarkLog

struct CutoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "Switch to the target: pause writers for milliseconds, drain, fence the old tables.",
        discussion: "Works with or without `tidemark migrate --follow` running. If any step fails or the pause would exceed --max-pause-ms, everything is rolled back and the source stays authoritative; a retry is safe."
    )

    @OptionGroup var plan: PlanOption

    @Option(help: "Wait until the oldest unapplied change is younger than this.")
    var maxLagMs: Int = 500

    @Option(help: "Give up if writers would be paused longer than this.")
    var maxPauseMs: Int = 2_000

    @Option(help: "Give up (changing nothing) after this many seconds of waiting for the lag.")
    var timeout: Double = 60

    @Flag(help: "Check and report, but do not switch.")
    var dryRun = false

    @Flag(help: "Switch although no verify found the target equal since the copy finished (recorded in the migration state).")
    var skipVerify = false

    @Flag(help: "Switch although some of the source's triggers or views could not be carried to the target (`migrate` lists them); they are named in a warning.")
    var dropTriggers = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var verbosity: VerbosityOptions

    @Option(help: ArgumentHelp("Postpone the switch while FILE exists: keep the target caught up (copying and replaying) and cut over as soon as FILE is removed; `status` shows the wait, Ctrl-C while waiting changes nothing.", valueName: "FILE"))
    var postponeFlag: String?

    func run() throws {
        try reportingErrors {
            var o = CutoverOptions()
            o.dropTriggers = dropTriggers
            o.maxLagMillis = maxLagMs
            o.maxPauseMillis = maxPauseMs
            o.timeoutSeconds = timeout
            o.dryRun = dryRun
            o.skipVerify = skipVerify
            let console = Console(json: json, verbosity)
            let p = try plan.load()
            console.detail("plan \(plan.plan): \(p.source) → \(p.displayTarget)")
            // A rollback a crash interrupted is undone first (or, if it
            // committed, the cutover is refused: `migrate` starts anew).
            if !dryRun { try Rollback.resolveBeforeCutover(plan: p) }
            // Refused before anything is opened for writing (lifecycle).
            try Lifecycle.checkCutover(plan: p, skipVerify: skipVerify)
            console.detail("the migration may cut over\(skipVerify ? " (--skip-verify)" : ""); waiting for a lag under \(maxLagMs) ms (at most \(String(format2: timeout)) s), pausing writers at most \(maxPauseMs) ms\(dryRun ? " (dry run)" : "")")
            // SIGINT/SIGTERM: before the commit point the cutover is rolled
            // back, after it it finishes; either way exit 130/143.
            Interruption.install()
            let migrator = try Migrator.open(plan: p, options: MigratorOptions(follow: true))
            defer { try? migrator.close() }
            let r = try migrator.cutover(o, postponeFlag: postponeFlag, waiting: { flag in
                printPostponed(flag: flag, json: json)
            })
            console.detail("waited \(String(format2: r.waitedSeconds)) s for the lag; writers paused \(String(format2: r.pauseMillis)) ms; \(r.drained) changes drained at LSN \(r.lsn)")
            if skipVerify && !r.alreadyDone {
                // After the fact, so that a refusal stays one error line.
                printError("warning: --skip-verify: \(r.dryRun ? "would switch" : "switched") without a clean verify since the copy finished; nothing proved the target equal, and writes no trigger sees (incremental BLOB I/O) were not carried. Recorded in the migration state.")
            }
            if !r.droppedObjects.isEmpty && !r.alreadyDone {
                printError("warning: --drop-triggers: \(p.displayTarget) \(r.dryRun ? "would not get" : "does not get") \(r.droppedObjects.joined(separator: "; "))")
            }
            defer {
                if let sig = Interruption.receivedSignal, !r.dryRun {
                    reportError(InterruptedError(signal: sig, place: "after the commit point: the cutover finished (\(p.displayTarget) is authoritative)"))
                }
            }
            if json {
                var j = JSONObject()
                j.set("cut_over", !r.dryRun)
                j.set("dry_run", r.dryRun)
                j.set("already_done", r.alreadyDone)
                j.set("lsn", r.lsn.rawValue)
                j.set("at", Timestamp(microsSinceEpoch: r.atMicros).description)
                j.set("pause_ms", r.pauseMillis)
                j.set("drained", r.drained)
                j.set("waited_seconds", r.waitedSeconds)
                j.set("verify_skipped", skipVerify && !r.alreadyDone)
                j.set("dropped", array: r.droppedObjects.map(JSONObject.quote))
                print(j.text)
            } else if r.dryRun {
                print("dry run: caught up to LSN \(r.lsn) after \(String(format2: r.waitedSeconds)) s; a cutover would proceed now")
            } else if r.alreadyDone {
                print("already cut over at LSN \(r.lsn) (\(Timestamp(microsSinceEpoch: r.atMicros))); \(p.displayTarget) is authoritative")
            } else {
                print("cut over at LSN \(r.lsn): \(p.displayTarget) is authoritative; writers paused \(String(format2: r.pauseMillis)) ms; \(r.drained) changes drained")
            }
        }
        if let sig = Interruption.receivedSignal { throw ExitCode(128 + sig) }
    }
}

