import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog
@testable import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// Item 9: a real SQLite source with capture and a shipper in this process,
/// the log's files under the fault-injection seam (FileFaults). Every
/// mutating call the log makes while shipping — writes, syncs, renames,
/// segment creation, recovery's truncate and syncs — is failed in turn, by
/// index: a crash followed by a power cut (unsynced data and names dropped,
/// or a random part of the unsynced pages kept), a crash without power
/// loss, ENOSPC, EIO, a torn write. After each, the process "restarts",
/// ships on to the end, and the log must hold every committed change
/// exactly once (LSNs 1...N, in commit order, nothing left in the outbox).
///
/// `TIDEMARK_FULL_SWEEP=1` runs every (call, fault) pair; by default a seeded
/// sample (`TIDEMARK_SWEEP_SEED` to repeat one) keeps the test short.
@Suite struct PowerLossShippingTests {
    enum Kind: CaseIterable, CustomStringConvertible {
        case crashThenPowerCut, crashThenPartialPowerCut, crashOnly, noSpace, ioError, tornWriteThenPowerCut
        /// Crash; the restarted process recovers the log and ships a round;
        /// then the power goes (item 5: recovery must have synced what it kept).
        case crashRestartThenPowerCut

        var fault: FileFaults.Fault {
            switch self {
            case .crashThenPowerCut, .crashThenPartialPowerCut, .crashOnly, .crashRestartThenPowerCut: .crash
            case .noSpace: .fail(ENOSPC)
            case .ioError: .fail(EIO)
            case .tornWriteThenPowerCut: .tear
            }
        }

        var description: String {
            switch self {
            case .crashThenPowerCut: "crash + power cut"
            case .crashThenPartialPowerCut: "crash + power cut keeping random pages"
            case .crashOnly: "crash"
            case .crashRestartThenPowerCut: "crash + restart + power cut"
            case .noSpace: "ENOSPC"
            case .ioError: "EIO"
            case .tornWriteThenPowerCut: "torn write + power cut"
            }
        }
    }

    static let rounds = 8
    static let rowsPerRound = 9

    /// Runs the shipping scenario with at most one fault; returns the calls
    /// the log made, or records an issue naming the case.
    @discardableResult
    func scenario(fault: (index: Int, kind: Kind)?, seed: UInt64) throws -> [FileFaults.Call] {
        try withTemporaryDirectory { directory in
            let dbPath = directory + "/source.db"
            let logPath = directory + "/log"
            let db = try Connection(path: dbPath, mode: .readWriteCreate)
            defer { try? db.close() }
            try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            try Capture.install(connection: db, sourceID: "power-source")
            try FileManager.default.createDirectory(atPath: logPath, withIntermediateDirectories: true)
            let faults = FileFaults(root: logPath)
            defer { faults.disarm() }
            if let fault { faults.inject(fault.kind.fault, at: fault.index) }

            let options = LogOptions(durability: .commit, segmentSizeLimitBytes: 1200, frameSizeLimitBytes: 300)
            var appender: LogAppender?
            var shipper: Shipper?
            var nextID = 1
            let label = fault.map { "fault \($0.kind) at call \($0.index)" } ?? "no fault"
            func stop() {
                shipper = nil
                try? appender?.close()
                appender = nil
            }
            var powerCutAfterNextRound = false
            /// The process failed (crashed, or an I/O error stopped its
            /// appender); what the machine does next depends on the case.
            func failed() {
                stop()
                switch fault?.kind {
                case .crashThenPowerCut?, .tornWriteThenPowerCut?: faults.powerCut()
                case .crashThenPartialPowerCut?: faults.powerCut(keepingRandomPagesSeed: seed &+ UInt64(fault!.index))
                case .crashRestartThenPowerCut?:
                    faults.restartProcess()
                    powerCutAfterNextRound = true
                default: faults.restartProcess()
                }
            }
            for round in 0..<Self.rounds {
                for _ in 0..<Self.rowsPerRound {
                    try db.prepare("INSERT INTO t(id, v) VALUES (?1, ?2)")
                        .execute([.integer(Int64(nextID)), .text(String(repeating: "row \(nextID) ", count: 6))])
                    nextID += 1
                }
                if round == Self.rounds / 2 { stop() }  // a clean restart: recovery runs too
                do {
                    if shipper == nil {
                        appender = try LogAppender(directory: logPath, sourceID: "power-source", options: options)
                        shipper = try Shipper(connection: db, appender: appender!, options: .init(batchLimit: 13))
                    }
                    _ = try shipper!.shipOnce()
                    if powerCutAfterNextRound {
                        powerCutAfterNextRound = false
                        faults.crashNow()
                        stop()
                        faults.powerCut()
                    }
                } catch {
                    failed()
                }
            }
            // Ship the rest (the fault may still fire here, once).
            stop()
            var lastError: Error?
            for _ in 0..<2 {
                do {
                    let log = try LogAppender(directory: logPath, sourceID: "power-source", options: options)
                    let s = try Shipper(connection: db, appender: log)
                    try s.drain()
                    try log.close()
                    lastError = nil
                    break
                } catch {
                    lastError = error
                    failed()
                }
            }
            if let lastError {
                Issue.record("\(label): the log could not be opened or shipped after the fault: \(lastError)")
                return faults.calls
            }
            let captured = nextID - 1
            let lsns = try logRecords(logPath).map(\.lsn.rawValue)
            let keys = try logRecords(logPath).map { $0.key.first?.value }
            #expect(lsns == (1...UInt64(captured)).map { $0 }, "\(label): log LSNs \(lsns.first ?? 0)...\(lsns.last ?? 0), \(lsns.count) of \(captured)")
            #expect(keys == (1...captured).map { Value.integer(Int64($0)) }, "\(label)")
            #expect(try Capture.status(connection: db)?.backlog == 0, "\(label)")
            return faults.calls
        }
    }

    /// Runs on a thread of its own: a long synchronous test on one of the
    /// (two) cooperative threads starves the time limits of tests beside it.
    @Test(.timeLimit(.minutes(10)))
    func everyLogCallFailedInTurnLosesAndDuplicatesNothing() async throws {
        try await onOwnThread { try self.sweep() }
    }

    func sweep() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["TIDEMARK_SWEEP_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let calls = try scenario(fault: nil, seed: seed)
        let operations = Set(calls.map(\.operation))
        // The scenario exercises appends, multi-frame batches, rotations,
        // claims and recovery.
        #expect(operations.isSuperset(of: [.create, .write, .sync, .rename, .syncDirectory]), "\(operations)")
        var cases: [(Int, Kind)] = []
        for index in calls.indices {
            for kind in Kind.allCases where kind != .tornWriteThenPowerCut || calls[index].operation == .write {
                cases.append((index, kind))
            }
        }
        let full = environment["TIDEMARK_FULL_SWEEP"] == "1"
        if !full {
            var random = FaultRandom(seed)
            cases.shuffle(using: &random)
            cases = Array(cases.prefix(48))
        }
        print("power-loss sweep: \(calls.count) log calls, \(cases.count) cases\(full ? " (full sweep)" : ", seed \(seed); TIDEMARK_SWEEP_SEED=\(seed) repeats it, TIDEMARK_FULL_SWEEP=1 runs all")")
        for (index, kind) in cases {
            try scenario(fault: (index, kind), seed: seed)
        }
    }
}

/// Runs `body` on a thread of its own and awaits it.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
