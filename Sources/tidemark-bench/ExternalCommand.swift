#if canImport(Glibc)
import Glibc
#endif

/// A baseline program (e.g. the `zstd` CLI) run as its own process and timed
/// from spawn to exit, so process start-up (about a millisecond) counts
/// against the baseline, never for it.
struct ExternalCommand {
    /// Where the child's standard output goes. Standard error is inherited,
    /// so a failing baseline explains itself.
    enum Output {
        case discard
        case file(String)
    }

    // No peak RSS of the child: Linux carries the spawning process's
    // high-water mark into the child's `ru_maxrss` at exec (vfork shares the
    // parent's mm), so wait4's figure would be the benchmark's own peak.
    // CPU time (user + system, all of the child's threads) is exact.

    var arguments: [String]
    var output: Output

    init(_ arguments: [String], output: Output = .discard) {
        precondition(!arguments.isEmpty, "a command needs a program name")
        self.arguments = arguments
        self.output = output
    }

    /// The command as a shell line, for reports.
    var displayText: String {
        let line = arguments.joined(separator: " ")
        switch output {
        case .discard: return line + " > /dev/null"
        case .file(let path): return line + " > " + path
        }
    }

    /// Runs the command to completion (found on `PATH`).
    /// - Throws: when it cannot be started or exits non-zero.
    func run() throws -> Timing {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        switch output {
        case .discard:
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        case .file(let path):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for p in argv { free(p) } }

        var pid: pid_t = 0
        var status: Int32 = 0
        var usage = rusage()
        let start = ContinuousClock.now
        let spawned = posix_spawnp(&pid, argv[0]!, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw BenchmarkError("cannot run \(arguments[0]): \(String(cString: strerror(spawned))); is it installed (apt-get install \(arguments[0]))?")
        }
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw BenchmarkError("waiting for \(arguments[0]) failed: \(String(cString: strerror(errno)))") }
        }
        let seconds = Stopwatch.seconds(ContinuousClock.now - start)
        // WIFEXITED / WEXITSTATUS, which Swift cannot import as macros.
        let signal = status & 0x7F
        let code = (status >> 8) & 0xFF
        guard signal == 0, code == 0 else {
            let how = signal == 0 ? "exited with status \(code)" : "was killed by signal \(signal)"
            throw BenchmarkError("`\(displayText)` \(how)")
        }
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
        return Timing(wallSeconds: seconds, cpuSeconds: cpu)
    }
}
