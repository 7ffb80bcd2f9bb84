import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct RouteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route",
        abstract: "Which store is authoritative: the source before cutover, the target after."
    )

    @OptionGroup var plan: PlanOption

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors {
            let r = try Router(plan: try plan.load()).route()
            if json {
                var j = JSONObject()
                j.set("authority", r.authority.rawValue)
                j.set("database", r.database)
                var t = JSONObject()
                for (k, v) in r.tables.sorted(by: { $0.key < $1.key }) { t.set(k, v) }
                j.set("tables", t)
                j.set("lsn", r.lsn?.rawValue)
                j.set("at", r.atMicros.map { Timestamp(microsSinceEpoch: $0).description })
                print(j.text)
            } else {
                print("\(r.authority.rawValue): \(r.database)" + (r.lsn.map { " (since LSN \($0))" } ?? ""))
                for (k, v) in r.tables.sorted(by: { $0.key < $1.key }) { print("  \(k) → \(v)") }
            }
        }
    }
}

