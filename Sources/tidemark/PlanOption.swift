import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

/// `--plan FILE`, shared by every migration command.
struct PlanOption: ParsableArguments {
    // No default in the declaration: it depends on the environment, and
    // help must read the same everywhere.
    @Option(name: .customLong("plan"), help: ArgumentHelp("The migration plan (YAML or JSON; - reads it from standard input, its paths relative to the current directory); default: $TIDEMARK_PLAN, else tidemark.yml.", valueName: "file"))
    var argument: String?

    /// The plan's path as given: `--plan`, else $TIDEMARK_PLAN, else tidemark.yml.
    var plan: String {
        argument ?? getenv("TIDEMARK_PLAN").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "tidemark.yml"
    }

    /// The plan, from the file or (`-`) standard input.
    func load() throws -> Plan {
        guard plan == "-" else { return try Plan.load(path: plan) }
        let bytes: [UInt8]
        do {
            bytes = try InputFile.read("-")
        } catch {
            throw MigrationError(.badPlan, "cannot read the plan from standard input: \(error)")
        }
        return try Plan.parse(String(decoding: bytes, as: UTF8.self), relativeTo: ".", name: "the plan on standard input")
    }
}
