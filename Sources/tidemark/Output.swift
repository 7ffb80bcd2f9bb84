#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TidemarkCore
import TidemarkLog

/// Buffered writes to stdout; the CLI prints millions of lines when tailing.
struct StandardOutput {
    var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }

    mutating func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func line(_ s: String) {
        write(s)
        buffer.append(0x0A)
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(1, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    let e = errno
                    if e == EINTR { continue }
                    // A full disk or a reader that went away (EPIPE when
                    // SIGPIPE is ignored): output is lost, so stop and say
                    // so rather than exit 0 (or follow forever) without it.
                    printError("cannot write to standard output: \(String(cString: strerror(e)))")
                    exit(1)
                }
                done += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Whether stdout/stderr is a terminal (progress is shown only then).
func isTerminal(_ fd: Int32) -> Bool { isatty(fd) != 0 }

/// Prints `message` to stderr as one line prefixed with `tidemark: `.
func printError(_ message: String) {
    let line = Array(("tidemark: " + message + "\n").utf8)
    line.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}

/// Runs a command body, turning library errors into one stderr line and a
/// non-zero exit. Validation errors keep ArgumentParser's usage output.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch let e as InterruptedError {
        // A long command stopped at a safe point on SIGINT/SIGTERM (see Interruption).
        printError(e.description)
        throw ExitCode(e.exitStatus)
    } catch {
        printError("\(error)")
        throw ExitCode(1)
    }
}

/// Minimal JSON object writer for `--json` outputs (keys in insertion order).
struct JSONObject {
    private var parts: [String] = []

    init() {}

    static func quote(_ s: String) -> String { JSONText.quoted(s) }

    mutating func set(_ key: String, _ value: String?) { parts.append(Self.quote(key) + ":" + (value.map(Self.quote) ?? "null")) }
    mutating func set(_ key: String, _ value: Int?) { parts.append(Self.quote(key) + ":" + (value.map { String($0) } ?? "null")) }
    mutating func set(_ key: String, _ value: UInt64?) { parts.append(Self.quote(key) + ":" + (value.map { String($0) } ?? "null")) }
    mutating func set(_ key: String, _ value: Double) {
        parts.append(Self.quote(key) + ":" + (value.isFinite ? String(value) : "null"))
    }
    mutating func set(_ key: String, _ value: Bool) { parts.append(Self.quote(key) + ":" + (value ? "true" : "false")) }
    mutating func set(_ key: String, raw: String) { parts.append(Self.quote(key) + ":" + raw) }
    mutating func set(_ key: String, _ value: JSONObject) { parts.append(Self.quote(key) + ":" + value.text) }
    mutating func set(_ key: String, array: [String]) { parts.append(Self.quote(key) + ":[" + array.joined(separator: ",") + "]") }

    var text: String { "{" + parts.joined(separator: ",") + "}" }
}

extension LSN: ExpressibleByArgument {
    public init?(argument: String) {
        guard let v = UInt64(argument) else { return nil }
        self.init(v)
    }
}
