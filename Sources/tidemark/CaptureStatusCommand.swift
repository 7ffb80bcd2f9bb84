import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct CaptureStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Captured tables, outbox backlog, last shipped LSN and shipping lag."
    )

    @OptionGroup var source: SourceOptions

    @OptionGroup var logLocation: OptionalLogLocation
    var log: String? { logLocation.directory }

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors {
            let db = try source.open(.readOnly)
            guard let s = try Capture.status(connection: db) else {
                if json { print("{\"installed\":false}") } else { print("capture is not installed in \(source.source)") }
                return
            }
            let shipped = try log.map { try LogReader(directory: $0).headLSN() }
            let lag = s.lagMillis(nowMicros: Clock.wallMicros())
            let shipper = ShipperLock.holder(ofSource: source.source)
            if json {
                var o = JSONObject()
                o.set("installed", true)
                o.set("source_id", s.sourceID.rawValue)
                o.set("tables", array: s.tables.map { t in
                    var j = JSONObject()
                    j.set("table", t.name)
                    j.set("columns", array: t.columns.map(JSONObject.quote))
                    j.set("key", array: t.keyColumns.map(JSONObject.quote))
                    if let u = t.updateColumns { j.set("update_columns", array: u.map(JSONObject.quote)) }
                    return j.text
                })
                o.set("backlog", s.backlog)
                o.set("captured_lsn", s.lastCaptured.rawValue)
                o.set("shipped_lsn", shipped?.rawValue)
                o.set("lag_changes", s.backlog)
                o.set("lag_ms", Int(lag))
                o.set("shipper_pid", shipper?.pid)
                o.set("shipper_log", shipper?.log)
                print(o.text)
                return
            }
            print("source \(s.sourceID): capturing \(s.tables.map(\.name).joined(separator: ", "))")
            print("captured up to LSN \(s.lastCaptured); shipped up to \(shipped.map { "\($0)" } ?? "? (pass --log)")")
            print("backlog \(s.backlog) changes, lag \(lag) ms")
            print(shipper.map { "shipper: pid \($0.pid), shipping into \($0.log)" } ?? "shipper: none running")
        }
    }
}

