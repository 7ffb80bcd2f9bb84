import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

extension Tidemark {
    /// This build's version.
    static let version = "0.15.0"

    /// The entry point: ArgumentParser's, except that a usage error is one
    /// line on stderr (what is wrong, and where the help is), exit 64.
    ///
    /// Invariant: every error a command reports is exactly one line
    /// (the command-line contract); help and `--version` print in full.
    static func main() {
        // A parent may start us with SIGINT/SIGTERM blocked (a thread
        // pool's mask is inherited through fork/exec); then `log tail
        // --follow` would never stop. Every command starts with them
        // deliverable: default action, or the handlers long commands install.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == ["--version"] || arguments == ["-V"] {
            print("tidemark \(version) (SQLite \(Connection.libraryVersion), zstd \(ZstdLibrary.version))")
            return
        }
        // Decided before parsing, so that a usage error follows --json too.
        ErrorOutput.json = ErrorOutput.wantsJSON(arguments)
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            // Help and --version print in full; ExitCode carries a status
            // whose message (if any) the command already wrote.
            let code = exitCode(for: error)
            if code == .success || error is CleanExit || error is ExitCode { exit(withError: error) }
            if let e = error as? InterruptedError {
                reportError(e)
                Glibc.exit(e.exitStatus)
            }
            guard code == .validationFailure else {
                // A library error no `reportingErrors` caught: still one line.
                reportError(error)
                Glibc.exit(code == .success ? 1 : code.rawValue)
            }
            // ArgumentParser's usage errors come with a Help:/Usage: block;
            // keep the first line and point at --help instead.
            let message = self.message(for: error)
            let first = message.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? "bad usage"
            let name = commandPath(arguments)
            let what = lowercasingFirst(first.hasPrefix("Error: ") ? String(first.dropFirst(7)) : first)
            if ErrorOutput.json {
                writeStandardError(errorJSON(CommandFailure("usage", what), message: "\(name): \(what) (see '\(name) --help')") + "\n")
            } else {
                writeStandardError("\(name): \(what) (see '\(name) --help')\n")
            }
            Glibc.exit(code.rawValue)
        }
    }

    /// "tidemark log history": the subcommand words the arguments name.
    private static func commandPath(_ arguments: [String]) -> String {
        var path = ["tidemark"]
        var type: ParsableCommand.Type = Tidemark.self
        for a in arguments {
            guard let sub = type.configuration.subcommands.first(where: { $0._commandName == a }) else { break }
            path.append(a)
            type = sub
        }
        return path.joined(separator: " ")
    }

    private static func lowercasingFirst(_ s: String) -> String {
        guard let f = s.first, f.isUppercase, !(s.dropFirst().first?.isUppercase ?? false) else { return s }
        return f.lowercased() + s.dropFirst()
    }
}
