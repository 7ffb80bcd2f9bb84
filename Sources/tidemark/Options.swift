import ArgumentParser
import TidemarkCore
import TidemarkLog

#if canImport(Glibc)
import Glibc
#endif

// The options more than one command takes, each declared once. A command
// includes the group (`@OptionGroup`); none declares `--json`, `--log`,
// `--plan`, `--quiet` or `--verbose` itself.

/// `--json`: machine-readable output, and failures as one JSON object on
/// stderr (see ``ErrorOutput``).
struct JSONOption: ParsableArguments {
    @Flag(help: "Print JSON instead of text (one object, or one per line for a stream); a failure is one JSON object on stderr.")
    var json = false
}

/// `--log DIR`, the change log directory, for the commands that need one.
struct LogLocation: ParsableArguments {
    @Option(name: .customLong("log"), help: ArgumentHelp("The log directory.", valueName: "dir"))
    var directory: String
}

/// `--log DIR` where the log is optional (`capture status`: the shipped LSN
/// is shown only with it).
struct OptionalLogLocation: ParsableArguments {
    @Option(name: .customLong("log"), help: ArgumentHelp("The log directory.", valueName: "dir"))
    var directory: String?
}

/// `--quiet` / `--verbose` of the long commands.
///
/// Quiet: only errors, warnings and the final result (or the `--json`
/// output); no progress, no notes. Verbose: besides the usual output, a
/// line on stderr for each step, with the seconds since the command began.
struct VerbosityOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Print only errors, warnings and the final result (no progress, no notes).")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Also print each step's details on stderr.")
    var verbose = false

    func validate() throws {
        guard !(quiet && verbose) else { throw ValidationError("--quiet and --verbose exclude each other; give one of them") }
    }
}

/// What a long command prints besides its result, decided once from
/// `--json`, `--quiet`, `--verbose` and whether stderr is a terminal.
///
/// Invariant: stdout carries only what the command is for (its result, and
/// notes unless quiet or JSON); progress and step details go to stderr.
final class Console {
    let json: Bool
    let quiet: Bool
    let verbose: Bool
    private let start = Clock.monotonicNanos()

    init(json: Bool, _ verbosity: VerbosityOptions) {
        self.json = json
        quiet = verbosity.quiet
        verbose = verbosity.verbose
    }

    /// An informative line on stdout that is not the result (left out when
    /// quiet, and with `--json`).
    func note(_ line: String) {
        guard !quiet && !json else { return }
        print(line)
    }

    /// A note on stderr (`tidemark: note: …`), left out when quiet.
    func noteOnStderr(_ line: String) {
        guard !quiet else { return }
        printError(line)
    }

    /// A step's detail on stderr with the seconds since the start, only
    /// with `--verbose`.
    func detail(_ line: @autoclosure () -> String) {
        guard verbose else { return }
        let seconds = Double(Clock.monotonicNanos() - start) / 1e9
        printError("[" + String(format2: seconds).leftPadding(7) + " s] " + line())
    }

    /// Progress for this command: a bar on a terminal, plain lines every few
    /// seconds otherwise, nothing when quiet or with `--json`.
    func progress() -> ProgressView {
        ProgressView(mode: json || quiet ? .off : ProgressView.Mode.forStandardError(), console: self)
    }
}

/// Reads a whole file, or standard input for `-` (or no path), as every
/// Unix tool does. Standard input is read once; a second read returns the
/// same bytes.
enum InputFile {
    nonisolated(unsafe) private static var standardInput: [UInt8]?

    static func read(_ path: String?) throws -> [UInt8] {
        guard let path, path != "-" else {
            if let cached = standardInput { return cached }
            let bytes = try readAll(fd: 0, name: "standard input")
            standardInput = bytes
            return bytes
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try readAll(fd: fd, name: path)
    }

    private static func readAll(fd: Int32, name: String) throws -> [UInt8] {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw LogError(.io, "cannot read \(name): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        return data
    }
}

/// A SQLite database argument: a file SQLite opens itself, so `-` (standard
/// input) cannot stand for one.
func checkDatabasePath(_ path: String, _ option: String) throws {
    if path == "-" {
        throw ValidationError("\(option) - : a SQLite database cannot be read from standard input; give its path")
    }
}
