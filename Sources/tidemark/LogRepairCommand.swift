import ArgumentParser
import TidemarkLog

struct LogRepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Move damaged segments and frames aside (into DIR/quarantine) and record the LSNs lost as a gap.",
        discussion: """
            Nothing is deleted: a damaged segment is moved into the log's quarantine folder, and the valid \
            frames before the damage take its place. The lost LSN range is recorded in log.meta: readers \
            report it, shipping continues after it, and `tidemark migrate` refuses to replay across it \
            unless given --accept-gap. Run it with --dry-run first. Stop the log's appender first.
            """
    )

    @OptionGroup var log: LogLocation

    @Flag(help: "Show what would be moved, change nothing.")
    var dryRun = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors {
            let report = try LogRepair.repair(LogDirectory(log.directory), dryRun: dryRun)
            if json {
                var o = JSONObject()
                o.set("dry_run", report.dryRun)
                o.set("moved", array: report.actions.map { a in
                    var m = JSONObject()
                    m.set("segment", a.segment)
                    m.set("quarantined_as", a.quarantinedAs)
                    m.set("kept_bytes", a.keptBytes)
                    m.set("gap_first_lsn", a.gap.lowerBound.rawValue)
                    m.set("gap_last_lsn", a.gap.upperBound.rawValue)
                    m.set("reason", a.reason)
                    return m.text
                })
                o.set("gaps", array: report.gaps.map { jsonLSNRange($0) })
                print(o.text)
                return
            }
            if report.actions.isEmpty {
                print("no damage found in \(log.directory)")
                return
            }
            let verb = dryRun ? "would move" : "moved"
            for a in report.actions {
                let kept = a.keptBytes > 0 ? ", kept its valid first \(a.keptBytes) bytes in place" : ""
                print("\(verb) \(a.segment) to \(a.quarantinedAs)\(kept); LSN \(a.gap.lowerBound) to \(a.gap.upperBound) lost (\(a.reason))")
            }
            if dryRun { print("dry run: nothing changed; run again without --dry-run to repair") }
        }
    }
}
