import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The one process runner of the tests: `Child` starts a program with
// posix_spawn, drains its output on threads of its own and reaps it with
// waitpid; `runProcess`, `runTidemark` and `tidemark` run one to completion.
//
// posix_spawn rather than Foundation's Process:
// - the child gets an empty signal mask and default signal actions from the
//   spawn attributes, whatever thread starts it (Swift Testing's threads
//   block nearly every signal, and Process hands the spawning thread's mask
//   on, so a child started there would ignore SIGTERM);
// - the child inherits no descriptor but its three standard ones (a stray
//   pipe end held by one child would keep another child's output open);
// - its end is seen by waitpid, not through a descriptor that a daemon it
//   leaves running (`pg_ctl start`) would hold open.

/// How a finished child ended and what it wrote.
public struct Finished: Sendable, CustomStringConvertible {
    /// The exit status, or the signal number when ``reason`` is `.uncaughtSignal`.
    public var status: Int32
    public var reason: Process.TerminationReason
    public var stdoutBytes: [UInt8]
    public var stderr: String

    public init(status: Int32, reason: Process.TerminationReason, stdoutBytes: [UInt8], stderr: String) {
        self.status = status
        self.reason = reason
        self.stdoutBytes = stdoutBytes
        self.stderr = stderr
    }

    public var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    /// ``stdout`` (the name the process-level tests use).
    public var stdoutText: String { stdout }
    public var stderrLines: [Substring] { stderr.split(separator: "\n") }
    /// Ended by a signal.
    public var signaled: Bool { reason == .uncaughtSignal }
    /// Ended by SIGKILL.
    public var killed: Bool { reason == .uncaughtSignal && status == SIGKILL }
    public var summary: String { "exit \(reason == .exit ? "status" : "signal") \(status); stdout: \(stdout) stderr: \(stderr)" }
    public var description: String { summary }

    /// stdout parsed as one JSON object.
    public func json() throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(stdoutBytes)) as? [String: Any] else {
            throw ProcessFailure("not a JSON object on stdout: \(summary)")
        }
        return object
    }

    /// stdout, or an error with stderr when the child did not exit 0.
    @discardableResult
    public func succeeded(_ what: String = "the child") throws -> String {
        guard reason == .exit && status == 0 else { throw ProcessFailure("\(what) failed: \(summary)") }
        return stdout
    }
}

/// A child that did not finish in time (it was SIGKILLed), with its output so far.
public struct ChildTimedOut: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A child could not be started, or did not do what the test needed.
public struct ProcessFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs `program` (a path, or a name looked up in PATH) to completion and
/// returns how it ended. After `timeoutSeconds` it is SIGKILLed and
/// ``ChildTimedOut`` is thrown with its output. Blocks the calling thread;
/// from async code, prefer ``tidemark(_:environment:directory:stdin:stdout:timeoutSeconds:)``
/// or ``blocking(_:)``.
public func runProcess(_ program: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil,
                       stdin: [UInt8]? = nil, timeoutSeconds: Double = 120) throws -> Finished {
    let child = Child(executable: program, arguments, environment: environment, directory: directory, stdin: stdin)
    try child.start()
    return try child.wait(timeoutSeconds: timeoutSeconds)
}

/// ``runProcess(_:_:environment:directory:stdin:timeoutSeconds:)`` for the
/// built `tidemark` executable, in `directory` (its working directory) when given.
public func runTidemark(_ arguments: [String], in directory: String? = nil, environment: [String: String] = [:],
                        stdin: [UInt8]? = nil, timeoutSeconds: Double = 120) throws -> Finished {
    try runProcess(try tidemarkExecutable(), arguments, environment: environment, directory: directory, stdin: stdin,
                   timeoutSeconds: timeoutSeconds)
}

/// Runs `tidemark ARGS` to completion from async code, waiting off the
/// cooperative pool; SIGKILLs it and throws after `timeoutSeconds`.
public func tidemark(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil, stdin: [UInt8]? = nil,
                     stdout: FileHandle? = nil, timeoutSeconds: Double = 60) async throws -> Finished {
    let child = try Child(arguments, environment: environment, directory: directory, stdin: stdin, stdout: stdout)
    try child.start()
    return try await child.waitForExit(timeoutSeconds: timeoutSeconds)
}

/// Runs `body` on a thread of its own and awaits it. Every blocking wait of
/// an async test goes through here: blocking one of the two cooperative
/// threads of a 2-core machine starves the tests running beside it.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Sleeps without holding a cooperative thread.
public func pause(milliseconds: Int) async throws {
    try await Task.sleep(for: .milliseconds(milliseconds))
}

extension Duration {
    public var millis: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}

/// One child process. stdout (unless redirected) and stderr are drained by
/// two threads, so a full pipe never blocks it; stdout can also be split
/// into lines, each stamped with its arrival.
public final class Child: @unchecked Sendable {
    // @unchecked: everything mutable (`pid`, `ended`, `out`, `err`,
    // `received`, `partial`, `openStreams`) is guarded by `condition`; the
    // rest is set in init.
    public struct Line: Sendable {
        public var bytes: [UInt8]
        public var arrival: ContinuousClock.Instant
    }

    public let executable: String
    public let arguments: [String]
    private let environment: [String: String]
    private let inheritEnvironment: Bool
    private let directory: String?
    private let stdinBytes: [UInt8]?
    private let stdoutFile: FileHandle?
    private let stderrFile: FileHandle?
    private let splitLines: Bool
    private let condition = NSCondition()
    private var pid: pid_t = 0
    /// Set once, when waitpid has reaped the child: after that `pid` may
    /// name another process, so no signal is sent to it (kept under `condition`).
    private var ended: (status: Int32, reason: Process.TerminationReason)?
    private var out: [UInt8] = []
    private var err: [UInt8] = []
    private var received: [Line] = []
    private var partial: [UInt8] = []
    private var openStreams = 0

    /// - Parameters:
    ///   - executable: a path, or a name looked up in PATH.
    ///   - environment: variables set over this process's environment (or,
    ///     with `inheritEnvironment: false`, the child's whole environment).
    ///   - directory: the child's working directory; nil for this process's.
    ///   - stdin: bytes piped to the child then closed; nil for /dev/null.
    ///   - stdout, stderr: where the output goes instead of a pipe the test
    ///     reads (the same handle twice for `2>&1`).
    ///   - splitLines: collect stdout as stamped ``lines`` too (followers).
    public init(executable: String, _ arguments: [String], environment: [String: String] = [:], inheritEnvironment: Bool = true,
                directory: String? = nil, stdin: [UInt8]? = nil, stdout: FileHandle? = nil, stderr: FileHandle? = nil,
                splitLines: Bool = false) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.inheritEnvironment = inheritEnvironment
        self.directory = directory
        self.stdinBytes = stdin
        self.stdoutFile = stdout
        self.stderrFile = stderr
        self.splitLines = splitLines
    }

    /// A `tidemark` child (the built executable).
    public convenience init(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil, stdin: [UInt8]? = nil,
                            stdout: FileHandle? = nil, splitLines: Bool = false) throws {
        self.init(executable: try tidemarkExecutable(), arguments, environment: environment, directory: directory, stdin: stdin,
                  stdout: stdout, splitLines: splitLines)
    }

    /// A `tidemark` child (the built executable).
    public static func tidemark(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil) throws -> Child {
        try Child(arguments, environment: environment, directory: directory)
    }

    /// A child already started.
    public static func started(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                               directory: String? = nil) throws -> Child {
        let child = Child(executable: executable, arguments, environment: environment, directory: directory)
        try child.start()
        return child
    }

    public var name: String { (executable as NSString).lastPathComponent + " " + arguments.prefix(3).joined(separator: " ") }

    /// Starts the child. Safe from any thread.
    public func start() throws {
        condition.lock()
        let alreadyStarted = pid != 0
        condition.unlock()
        guard !alreadyStarted else { throw ProcessFailure("\(name) was started twice") }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // The parent's ends are close-on-exec; each child end is closed here
        // once spawned (dup2 into 0/1/2 gives the child its own copy).
        var childEnds: [Int32] = []
        var parentEnds: [Int32] = []
        defer { for fd in childEnds { close(fd) } }
        func makePipe() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw ProcessFailure("pipe failed: \(String(cString: strerror(errno)))") }
            // Close-on-exec for programs this process starts otherwise; our
            // own children close every descriptor above 2 anyway.
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            return (fds[0], fds[1])
        }
        do {
            var stdinWriter: Int32 = -1
            if stdinBytes != nil {
                let p = try makePipe()
                childEnds.append(p.read); parentEnds.append(p.write); stdinWriter = p.write
                posix_spawn_file_actions_adddup2(&actions, p.read, 0)
            } else {
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            }
            var stdoutReader: Int32 = -1
            if let stdoutFile {
                posix_spawn_file_actions_adddup2(&actions, stdoutFile.fileDescriptor, 1)
            } else {
                let p = try makePipe()
                childEnds.append(p.write); parentEnds.append(p.read); stdoutReader = p.read
                posix_spawn_file_actions_adddup2(&actions, p.write, 1)
            }
            var stderrReader: Int32 = -1
            if let stderrFile {
                posix_spawn_file_actions_adddup2(&actions, stderrFile.fileDescriptor, 2)
            } else {
                let p = try makePipe()
                childEnds.append(p.write); parentEnds.append(p.read); stderrReader = p.read
                posix_spawn_file_actions_adddup2(&actions, p.write, 2)
            }
            if let directory {
                guard let addchdir = SpawnExtensions.addchdir, addchdir(&actions, directory) == 0 else {
                    throw ProcessFailure("cannot start \(executable) in \(directory): posix_spawn_file_actions_addchdir_np is missing or failed")
                }
            }
            #if canImport(Glibc)
            if let addclosefrom = SpawnExtensions.addclosefrom { _ = addclosefrom(&actions, 3) }
            let flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
            #else
            let flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_CLOEXEC_DEFAULT)
            #endif
            // The child starts as from a shell: no signal blocked, every
            // signal at its default action.
            var none = sigset_t()
            sigemptyset(&none)
            var all = sigset_t()
            sigfillset(&all)
            posix_spawnattr_setsigmask(&attributes, &none)
            posix_spawnattr_setsigdefault(&attributes, &all)
            posix_spawnattr_setflags(&attributes, Int16(truncatingIfNeeded: flags))

            var env = inheritEnvironment ? ProcessInfo.processInfo.environment : [:]
            for (k, v) in environment { env[k] = v }
            let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
            let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { for p in argv { free(p) }; for p in envp { free(p) } }
            var newPID: pid_t = 0
            let rc = posix_spawnp(&newPID, executable, &actions, &attributes, argv, envp)
            guard rc == 0 else {
                throw ProcessFailure("could not start \(executable): \(String(cString: strerror(rc)))")
            }
            condition.lock()
            pid = newPID
            openStreams = (stdoutReader >= 0 ? 1 : 0) + (stderrReader >= 0 ? 1 : 0)
            condition.unlock()
            if stdoutReader >= 0 { drain(stdoutReader, isStdout: true) }
            if stderrReader >= 0 { drain(stderrReader, isStdout: false) }
            if stdinWriter >= 0, let bytes = stdinBytes { feed(stdinWriter, bytes) }
        } catch {
            for fd in parentEnds { close(fd) }
            throw error
        }
    }

    private func feed(_ fd: Int32, _ bytes: [UInt8]) {
        Thread.detachNewThread {
            // A child that exits before reading its stdin must not kill the
            // test runner: SIGPIPE is blocked on this thread only (a
            // process-wide SIG_IGN would change this process), so the write
            // fails with EPIPE and the pending signal is dropped when the
            // thread ends.
            var pipeSignal = sigset_t()
            sigemptyset(&pipeSignal)
            sigaddset(&pipeSignal, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
            bytes.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { return }
                var done = 0
                while done < raw.count {
                    let n = write(fd, base + done, raw.count - done)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    done += n
                }
            }
            close(fd)
        }
    }

    private func drain(_ fd: Int32, isStdout: Bool) {
        Thread.detachNewThread { [self] in
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                let now = ContinuousClock.now
                condition.lock()
                if n <= 0 {
                    openStreams -= 1
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                if isStdout {
                    out.append(contentsOf: buffer[0..<n])
                    if splitLines {
                        var start = 0
                        while let end = buffer[start..<n].firstIndex(of: 0x0A) {
                            received.append(Line(bytes: partial + buffer[start..<end], arrival: now))
                            partial.removeAll(keepingCapacity: true)
                            start = end + 1
                        }
                        partial.append(contentsOf: buffer[start..<n])
                    }
                } else {
                    err.append(contentsOf: buffer[0..<n])
                }
                condition.broadcast()
                condition.unlock()
            }
        }
    }

    /// Reaps the child if it has ended. Call with `condition` held.
    private func reapLocked() {
        guard pid != 0, ended == nil else { return }
        var status: Int32 = 0
        var rc: pid_t
        repeat { rc = waitpid(pid, &status, WNOHANG) } while rc < 0 && errno == EINTR
        guard rc == pid else { return }
        // WIFEXITED / WEXITSTATUS / WTERMSIG by hand (the macros are not imported).
        if status & 0x7f == 0 {
            ended = ((status >> 8) & 0xff, .exit)
        } else {
            ended = (status & 0x7f, .uncaughtSignal)
        }
    }

    /// The process id, 0 before ``start()``.
    public var processIdentifier: pid_t { condition.lock(); defer { condition.unlock() }; return pid }

    public var isRunning: Bool {
        condition.lock()
        defer { condition.unlock() }
        reapLocked()
        return pid != 0 && ended == nil
    }

    /// Whether the child has ended by a signal (false while it runs).
    public var signaled: Bool {
        condition.lock()
        defer { condition.unlock() }
        reapLocked()
        return ended?.reason == .uncaughtSignal
    }

    /// Sends `signal` if the child is still running (never to a reaped pid).
    public func sendSignal(_ signal: Int32) {
        condition.lock()
        defer { condition.unlock() }
        reapLocked()
        if pid != 0 && ended == nil { kill(pid, signal) }
    }

    public var lineCount: Int { condition.lock(); defer { condition.unlock() }; return received.count }
    public var lines: [Line] { condition.lock(); defer { condition.unlock() }; return received }
    public var stdoutText: String { condition.lock(); defer { condition.unlock() }; return String(decoding: out, as: UTF8.self) }
    public var stderrText: String { condition.lock(); defer { condition.unlock() }; return String(decoding: err, as: UTF8.self) }

    /// Waits until stdout has at least `count` complete lines. Bounded.
    public func waitForLines(_ count: Int, timeoutSeconds: Double) async -> Bool {
        (try? await blocking { self.waitForLinesBlocking(count, timeoutSeconds: timeoutSeconds) }) ?? false
    }

    private func waitForLinesBlocking(_ count: Int, timeoutSeconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeoutSeconds)
        condition.lock()
        defer { condition.unlock() }
        while received.count < count {
            if openStreams == 0 || !condition.wait(until: deadline) { return received.count >= count }
        }
        return true
    }

    /// Waits for the child to exit and its output to drain, blocking the
    /// calling thread. SIGKILLs it and throws ``ChildTimedOut`` with its
    /// output after `timeoutSeconds`.
    public func wait(timeoutSeconds: Double) throws -> Finished {
        let deadline = Date(timeIntervalSinceNow: timeoutSeconds)
        while isRunning {
            if Date() > deadline {
                stopAndReap()
                let drained = drainedOutput(within: 2)
                throw ChildTimedOut(description: "\(executable) \(arguments.joined(separator: " ")) did not finish in \(timeoutSeconds) s and was killed; stdout: \(drained.stdout) stderr: \(drained.stderr)")
            }
            usleep(1000)
        }
        condition.lock()
        defer { condition.unlock() }
        guard let ended else { throw ProcessFailure("\(name) was never started") }
        let drained = Date(timeIntervalSinceNow: 10)
        while openStreams > 0 {
            if !condition.wait(until: drained) {
                throw ChildTimedOut(description: "the output of \(name) did not close (a process it started holds it?); stderr: \(String(decoding: err, as: UTF8.self))")
            }
        }
        return Finished(status: ended.status, reason: ended.reason, stdoutBytes: out, stderr: String(decoding: err, as: UTF8.self))
    }

    /// What the child wrote, after waiting up to `seconds` for its output to close.
    private func drainedOutput(within seconds: Double) -> (stdout: String, stderr: String) {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: seconds)
        while openStreams > 0 && condition.wait(until: deadline) {}
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    /// ``wait(timeoutSeconds:)`` from async code, off the cooperative pool.
    public func waitForExit(timeoutSeconds: Double) async throws -> Finished {
        try await blocking { try self.wait(timeoutSeconds: timeoutSeconds) }
    }

    /// Waits until the child exits on its own, or returns nil after `timeoutSeconds` (leaving it running).
    public func waitForOwnExit(timeoutSeconds: Double) async throws -> Finished? {
        try await blocking {
            let deadline = Date(timeIntervalSinceNow: timeoutSeconds)
            while self.isRunning {
                if Date() > deadline { return nil }
                usleep(2000)
            }
            return try self.wait(timeoutSeconds: 10)
        }
    }

    /// SIGTERM, then the result.
    public func terminate(timeoutSeconds: Double = 20) async throws -> Finished {
        sendSignal(SIGTERM)
        return try await waitForExit(timeoutSeconds: timeoutSeconds)
    }

    /// For `defer`: makes sure the child is gone, whatever happened.
    public func stopAndReap() {
        condition.lock()
        defer { condition.unlock() }
        reapLocked()
        guard pid != 0, ended == nil else { return }
        kill(pid, SIGKILL)
        while ended == nil {
            var status: Int32 = 0
            let rc = waitpid(pid, &status, 0)
            if rc == pid {
                ended = (status & 0x7f == 0 ? (status >> 8) & 0xff : status & 0x7f, status & 0x7f == 0 ? .exit : .uncaughtSignal)
            } else if errno != EINTR {
                return
            }
        }
    }

    deinit {
        // A child nobody waited for is killed and reaped, not left as a zombie.
        stopAndReap()
    }
}

/// posix_spawn file actions that the C library has but the Swift overlay
/// does not declare (they sit behind _GNU_SOURCE), looked up by name.
private enum SpawnExtensions {
    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    typealias AddClosefrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    static let addchdir: AddChdir? = symbol("posix_spawn_file_actions_addchdir_np")
    static let addclosefrom: AddClosefrom? = symbol("posix_spawn_file_actions_addclosefrom_np")

    private static func symbol<F>(_ name: String) -> F? {
        #if canImport(Glibc)
        let handle = dlopen(nil, RTLD_NOW)
        #else
        let handle = UnsafeMutableRawPointer(bitPattern: -2)  // RTLD_DEFAULT
        #endif
        guard let pointer = dlsym(handle, name) else { return nil }
        return unsafeBitCast(pointer, to: F.self)
    }
}

/// Children to SIGKILL when a test leaves early (a failed `#require`).
public final class Reaper: @unchecked Sendable {
    // @unchecked: `children` is guarded by `lock`.
    private let lock = NSLock()
    private var children: [Child] = []

    public init() {}

    @discardableResult
    public func add(_ c: Child) -> Child {
        lock.lock(); children.append(c); lock.unlock()
        return c
    }

    public func reapAll() {
        lock.lock(); let all = children; lock.unlock()
        for c in all { c.stopAndReap() }
    }
}
