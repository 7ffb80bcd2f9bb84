import ArgumentParser

@main
struct Tidemark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark",
        abstract: "Move live data with zero downtime and keep an audit trail of every change.",
        subcommands: [MigrateCommand.self, StatusCommand.self, DemoCommand.self, LogCommand.self]
    )
}
