import ArgumentParser

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Write, read and check a change log (the audit trail).",
        subcommands: [LogAppendCommand.self, LogTailCommand.self, LogHistoryCommand.self, LogBlameCommand.self, LogDiffCommand.self, LogAsOfCommand.self, LogStatsCommand.self, LogVerifyCommand.self, LogRepairCommand.self]
    )
}

/// The option every log command takes.
struct LogLocation: ParsableArguments {
    @Option(name: .customLong("log"), help: "The log directory.")
    var directory: String
}
