import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

/// `--plan FILE`, shared by every migration command.
struct PlanOption: ParsableArguments {
    @Option(help: "The migration plan (YAML or JSON); default: $TIDEMARK_PLAN, else tidemark.yml.")
    var plan: String = getenv("TIDEMARK_PLAN").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "tidemark.yml"

    func load() throws -> Plan { try Plan.load(path: plan) }
}

