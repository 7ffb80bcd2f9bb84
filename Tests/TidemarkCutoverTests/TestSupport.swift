import Foundation
import TidemarkTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Process plumbing for the cutover tests, adapted from TidemarkLogTests'
// LogProcessTests (copied, not shared: one test target per module): the real
// `tidemark` executable and `python3` run as children started from a thread
// of our own with an empty signal mask, and every wait on them happens off
// the cooperative pool.

/// Runs `body` with a fresh temporary directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("tidemark-cutover-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Runs `body` on a thread of its own and awaits it. Every blocking wait goes
/// through here: blocking one of the two cooperative threads of a 2-core
/// machine starves the tests running beside it.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Sleeps without holding a cooperative thread.
func pause(milliseconds: Int) async throws {
    try await Task.sleep(for: .milliseconds(milliseconds))
}

extension Duration {
    var millis: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}

// MARK: - Finding the tidemark executable

// MARK: - Children

/// How a finished child ended and what it wrote.
struct Finished: Sendable {
    var status: Int32
    var reason: Process.TerminationReason
    var stdout: [UInt8]
    var stderr: String
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrLines: [Substring] { stderr.split(separator: "\n") }
    var killed: Bool { reason == .uncaughtSignal && status == SIGKILL }
    var summary: String { "exit \(reason == .exit ? "status" : "signal") \(status); stdout: \(stdoutText) stderr: \(stderr)" }

    /// stdout parsed as one JSON object.
    func json() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(stdout)) as? [String: Any], "not a JSON object: \(stdoutText)")
    }
}

struct ChildTimedOut: Error, CustomStringConvertible {
    var description: String
}

/// Runs `tidemark ARGS` to completion; SIGKILLs it and throws after `timeoutSeconds`.
func tidemark(_ arguments: [String], environment: [String: String] = [:], timeoutSeconds: Double = 60) async throws -> Finished {
    let child = try Child.tidemark(arguments, environment: environment)
    return try await blocking {
        try child.startOnOwnThread()
        return try child.waitForExitOnOwnThread(timeoutSeconds: timeoutSeconds)
    }
}

/// One child process with its stdout and stderr drained by two threads.
final class Child: @unchecked Sendable {
    // @unchecked: `out`, `err` and `openStreams` are guarded by `condition`;
    // the rest is set before any thread starts.
    let arguments: [String]
    let process = Process()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let condition = NSCondition()
    private var out: [UInt8] = []
    private var err: [UInt8] = []
    private var openStreams = 2

    init(executable: String, _ arguments: [String], environment: [String: String] = [:]) {
        self.arguments = arguments
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.standardInput = FileHandle.nullDevice
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
    }

    static func tidemark(_ arguments: [String], environment: [String: String] = [:]) throws -> Child {
        Child(executable: try tidemarkExecutable(), arguments, environment: environment)
    }

    var name: String { (process.executableURL?.lastPathComponent ?? "?") + " " + arguments.prefix(3).joined(separator: " ") }

    /// Starts the child. See ``startOnOwnThread()``.
    func start() async throws {
        try await blocking { try self.startOnOwnThread() }
    }

    /// Starts the child from the calling thread, which must be one of the
    /// test's own (``blocking(_:)``), never a cooperative one: Foundation's
    /// `Process` gives the child the spawning thread's signal mask, and
    /// Swift Testing's threads block nearly every signal, so a child spawned
    /// there would ignore SIGTERM. This thread's mask is emptied first.
    func startOnOwnThread() throws {
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        try process.run()
        drain(stdoutPipe.fileHandleForReading.fileDescriptor, isStdout: true)
        drain(stderrPipe.fileHandleForReading.fileDescriptor, isStdout: false)
    }

    private func drain(_ fd: Int32, isStdout: Bool) {
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                condition.lock()
                if n <= 0 {
                    openStreams -= 1
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                if isStdout { out.append(contentsOf: buffer[0..<n]) } else { err.append(contentsOf: buffer[0..<n]) }
                condition.broadcast()
                condition.unlock()
            }
        }
    }

    var isRunning: Bool { process.isRunning }

    func sendSignal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    var stdoutText: String { condition.lock(); defer { condition.unlock() }; return String(decoding: out, as: UTF8.self) }
    var stderrText: String { condition.lock(); defer { condition.unlock() }; return String(decoding: err, as: UTF8.self) }

    /// Waits for the child to exit and its output to drain. SIGKILLs it and
    /// throws after `timeoutSeconds`.
    func waitForExit(timeoutSeconds: Double) async throws -> Finished {
        try await blocking { try self.waitForExitOnOwnThread(timeoutSeconds: timeoutSeconds) }
    }

    func waitForExitOnOwnThread(timeoutSeconds: Double) throws -> Finished {
        let deadline = Date(timeIntervalSinceNow: timeoutSeconds)
        while process.isRunning {
            if Date() > deadline {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw ChildTimedOut(description: "\(name) did not finish in \(timeoutSeconds) s; stderr: \(stderrText)")
            }
            usleep(1000)
        }
        process.waitUntilExit()
        condition.lock()
        defer { condition.unlock() }
        let drained = Date(timeIntervalSinceNow: 10)
        while openStreams > 0 {
            if !condition.wait(until: drained) {
                throw ChildTimedOut(description: "the output of \(name) did not close")
            }
        }
        return Finished(status: process.terminationStatus, reason: process.terminationReason,
                        stdout: out, stderr: String(decoding: err, as: UTF8.self))
    }

    /// Waits until the child exits on its own, or returns nil after `timeoutSeconds` (leaving it running).
    func waitForOwnExit(timeoutSeconds: Double) async throws -> Finished? {
        try await blocking {
            let deadline = Date(timeIntervalSinceNow: timeoutSeconds)
            while self.process.isRunning {
                if Date() > deadline { return nil }
                usleep(2000)
            }
            return try self.waitForExitOnOwnThread(timeoutSeconds: 10)
        }
    }

    /// SIGTERM, then the result.
    func terminate() async throws -> Finished {
        sendSignal(SIGTERM)
        return try await waitForExit(timeoutSeconds: 20)
    }

    /// For `defer`: makes sure the child is gone, whatever happened.
    func stopAndReap() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// Children to SIGKILL when a test leaves early (a failed `#require`).
final class Reaper: @unchecked Sendable {
    // @unchecked: `children` is guarded by `lock`.
    private let lock = NSLock()
    private var children: [Child] = []

    func add(_ c: Child) -> Child {
        lock.lock(); children.append(c); lock.unlock()
        return c
    }

    func reapAll() {
        lock.lock(); let all = children; lock.unlock()
        for c in all { c.stopAndReap() }
    }
}
