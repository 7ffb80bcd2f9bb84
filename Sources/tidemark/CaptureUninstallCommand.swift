import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct CaptureUninstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uninstall",
        abstract: "Remove capture triggers and the outbox (refused while changes are unshipped, unless --force)."
    )

    @OptionGroup var source: SourceOptions

    @Flag(help: "Discard unshipped changes.")
    var force = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        try reportingErrors {
            let db = try source.open()
            try Capture.uninstall(connection: db, force: force)
            if json {
                var o = JSONObject()
                o.set("removed", true)
                o.set("source", source.source)
                print(o.text)
            } else {
                print("capture removed from \(source.source)")
            }
        }
    }
}
