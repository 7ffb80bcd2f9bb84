#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TidemarkLog
import TidemarkSQLite

struct CaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Record every committed row change of a SQLite database and ship it into the log.",
        subcommands: [CaptureInstallCommand.self, CaptureRunCommand.self, CaptureStatusCommand.self, CaptureUninstallCommand.self]
    )
}

struct SourceOptions: ParsableArguments {
    @Option(help: "The source SQLite database.")
    var source: String

    func validate() throws { try checkDatabasePath(source, "--source") }

    func open(_ mode: Connection.OpenMode = .readWrite) throws -> Connection {
        guard access(source, F_OK) == 0 else {
            throw CommandFailure("database_not_found", "source database \(source) does not exist")
        }
        return try Connection(path: source, mode: mode)
    }
}

