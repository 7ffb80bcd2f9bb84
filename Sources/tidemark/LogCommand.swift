import ArgumentParser

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Write, read and check a change log (the audit trail).",
        subcommands: [LogAppendCommand.self, LogTailCommand.self, LogHistoryCommand.self, LogBlameCommand.self, LogDiffCommand.self, LogAsOfCommand.self, LogStatsCommand.self, LogVerifyCommand.self, LogRepairCommand.self]
    )
}
