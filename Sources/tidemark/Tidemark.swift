import ArgumentParser

@main
struct Tidemark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark",
        abstract: "Move live data with zero downtime and keep an audit trail of every change.",
        subcommands: [CaptureCommand.self, MigrateCommand.self, TransformCommand.self, StatusCommand.self, VerifyCommand.self, CutoverCommand.self, PauseCommand.self, ResumeCommand.self, RouteCommand.self, RollbackCommand.self, FinishCommand.self, DemoCommand.self, LogCommand.self]
    )
}
