import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT/SIGTERM as a flag that long work polls at its safe points.
///
/// Why a flag and not a handler that exits: a signal may land inside a
/// target transaction, a cutover's pause or a half-written chunk. The
/// handler only records the signal (an atomic store is async-signal-safe);
/// the work calls ``check(_:)`` where stopping leaves everything consistent —
/// between committed steps, before a cutover's commit point (the cutover is
/// then rolled back), never after it (it finishes). ``check(_:)`` throws
/// ``InterruptedError`` naming the signal and where the work stopped; the
/// command prints that and exits 128 + signal (130 SIGINT, 143 SIGTERM).
///
/// A second signal before the first reached a safe point exits at once with
/// the same status: stopping the process mid-way is as safe as a kill -9
/// (every step is one transaction, cutover and rollback are journaled), and
/// an operator who asks twice means it.
public enum Interruption {
    private static let received = Atomic<Int32>(0)

    /// Installs the SIGINT and SIGTERM handlers (the command line does, at
    /// the start of a long command). Library users who handle signals
    /// themselves call ``request(signal:)`` instead.
    public static func install() {
        // A parent may hand the process these signals blocked (a thread
        // pool's mask is inherited through fork/exec): unblock them on this
        // thread, or they would stay pending and never stop anything.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        for sig in [SIGINT, SIGTERM] {
            installHandler(sig) { s in
                let (exchanged, _) = Interruption.received.compareExchange(expected: 0, desired: s, ordering: .relaxed)
                if !exchanged { _exit(128 + Interruption.received.load(ordering: .relaxed)) }
            }
        }
    }

    /// Records an interrupt as a signal handler would.
    public static func request(signal: Int32) {
        _ = received.compareExchange(expected: 0, desired: signal, ordering: .relaxed)
    }

    /// The signal received, if any.
    public static var receivedSignal: Int32? {
        let s = received.load(ordering: .relaxed)
        return s == 0 ? nil : s
    }

    /// Forgets a received signal (tests run several commands in one process).
    public static func reset() { received.store(0, ordering: .relaxed) }

    /// Throws ``InterruptedError`` if a signal arrived; a safe point.
    /// - Parameter place: where the work stands if it stops here, e.g.
    ///   "after copying users up to key 120 (applied LSN 5034)".
    @inline(__always)
    public static func check(_ place: @autoclosure () -> String) throws(InterruptedError) {
        let s = received.load(ordering: .relaxed)
        if s != 0 { throw InterruptedError(signal: s, place: place()) }
    }
}

/// `signal(2)` from whichever C library this platform has.
private func installHandler(_ sig: Int32, _ handler: @convention(c) (Int32) -> Void) {
    #if canImport(Glibc)
    _ = Glibc.signal(sig, handler)
    #elseif canImport(Darwin)
    _ = Darwin.signal(sig, handler)
    #endif
}

/// A long command stopped at a safe point because of SIGINT or SIGTERM.
public struct InterruptedError: Error, Sendable, CustomStringConvertible {
    public var signal: Int32
    /// Where it stopped, and what state that left.
    public var place: String

    public init(signal: Int32, place: String) {
        self.signal = signal
        self.place = place
    }

    /// 130 for SIGINT, 143 for SIGTERM.
    public var exitStatus: Int32 { 128 + signal }

    public var signalName: String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(signal)"
        }
    }

    public var description: String { "interrupted (\(signalName)): stopped \(place)" }
}
