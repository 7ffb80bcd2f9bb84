import ArgumentParser

/// Side-by-side benchmarks of Tidemark against the baselines each
/// subcommand names in its help (its goals are stated there too). Build and
/// run in release mode:
/// `swift build -c release --product tidemark-bench && .build/release/tidemark-bench log`.
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark-bench",
        abstract: "Measure Tidemark beside its baselines (median of several runs; table or --json).",
        subcommands: [AllBenchmark.self, LogBenchmark.self, CaptureBench.self, MigrateBenchmark.self, CutoverBenchmark.self, PostgresBenchmark.self, TransformBenchmark.self]
    )
}
