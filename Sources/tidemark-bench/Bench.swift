import ArgumentParser

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tidemark-bench", subcommands: [CaptureBench.self])
}
