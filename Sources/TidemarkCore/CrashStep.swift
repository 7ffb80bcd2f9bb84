#if TIDEMARK_CRASH_HOOKS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TidemarkLog
#endif

/// The journaled steps of a cutover and of a rollback at which crash tests
/// stop the process, instead of racing a window of milliseconds. The raw
/// values are what `TIDEMARK_CRASH_AT` names.
///
/// Cutover (``Migrator/cutover(_:progress:)``):
/// - `reverse-capture`: target capture installed, nothing locked.
/// - `locked`: the source write lock held, nothing drained.
/// - `prepared`: the target journaled "prepared" (two stores only).
/// - `guarded`: guards and switch record written, not committed.
/// - `switched`: the source committed, the target journal not yet "done"
///   (two stores only).
/// - `swapped`: one file with `swap:` tables: tables renamed and capture
///   moved, not committed.
///
/// Rollback (``Rollback``):
/// - `rollback-fenced`: the target fenced and journaled "prepared".
/// - `rollback-shipped`: reverse changes shipped, source capture removed
///   (two stores only).
/// - `rollback-applied`: changes applied to the source, not committed.
/// - `rollback-switched`: the source committed, the target journal not yet
///   "committed".
enum CrashStep: String, CaseIterable, Sendable {
    case reverseCapture = "reverse-capture"
    case locked
    case prepared
    case guarded
    case switched
    case swapped
    case rollbackFenced = "rollback-fenced"
    case rollbackShipped = "rollback-shipped"
    case rollbackApplied = "rollback-applied"
    case rollbackSwitched = "rollback-switched"

    /// The step a `TIDEMARK_CRASH_AT` value names: nil for no value; throws
    /// for a name that is no step (a typo in a crash test must not turn it
    /// into a test that never crashes).
    static func named(_ value: String?) throws(MigrationError) -> CrashStep? {
        guard let value, !value.isEmpty else { return nil }
        guard let step = CrashStep(rawValue: value) else {
            throw MigrationError(.unsupported, "TIDEMARK_CRASH_AT=\(value) names no crash step; use one of \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return step
    }
}

/// Test-only hooks at each ``CrashStep``.
///
/// - `TIDEMARK_CRASH_AT=<step>`: the process SIGKILLs itself on reaching
///   that step (no cleanup, no `atexit`, as a real crash). A name that is
///   no step stops the process with exit status 70 and one line on stderr.
/// - `TIDEMARK_CUTOVER_STEP_DELAY_MS=<n>`: sleeps n ms at every step (counts
///   toward the measured pause), which widens the window a random-time kill
///   can land in.
///
/// Invariant: the environment is read only inside `#if TIDEMARK_CRASH_HOOKS`,
/// a condition Package.swift sets for debug builds alone. A release build
/// compiles ``reached(_:)`` to nothing and holds no code that reads either
/// variable. Read once; unset, each check is one comparison against nil.
enum CrashHook {
    #if TIDEMARK_CRASH_HOOKS
    private static let crashAt: CrashStep? = {
        do {
            return try CrashStep.named(getenv("TIDEMARK_CRASH_AT").map { String(cString: $0) })
        } catch {
            let line = Array("tidemark: \(error)\n".utf8)
            _ = write(2, line, line.count)
            exit(70)
        }
    }()
    private static let stepDelayMillis: Int = getenv("TIDEMARK_CUTOVER_STEP_DELAY_MS").flatMap { Int(String(cString: $0)) } ?? 0

    static func reached(_ step: CrashStep) {
        if stepDelayMillis > 0 { Clock.sleep(milliseconds: stepDelayMillis) }
        if crashAt == step { kill(getpid(), SIGKILL) }
    }
    #else
    @inline(__always) static func reached(_ step: CrashStep) {}
    #endif
}
