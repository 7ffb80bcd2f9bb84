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

    func run() throws {
        try reportingErrors {
            let db = try source.open()
            try Capture.uninstall(connection: db, force: force)
            print("capture removed from \(source.source)")
        }
    }
}
