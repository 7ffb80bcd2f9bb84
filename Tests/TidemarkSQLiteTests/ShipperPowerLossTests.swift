#if DEBUG
import CPowerLossVFS
import Foundation
import Testing
import TidemarkTestSupport
import TidemarkLog
@testable import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// Power loss at the shipper's level: power is cut (log and
/// source together) at every file call a shipping round makes in the log,
/// through the log's fault-injection seam (``FileFaults``) and the source's
/// power-loss VFS; the restarted shipper must leave the log holding every
/// committed change of the surviving source exactly once, in `seq` order, and
/// the outbox empty. Also ENOSPC, EIO and torn writes at every call, without
/// power loss.
@Suite("Shipper: power loss at every log call of a round", .serialized)
struct ShipperPowerLossTests {
    static let source = SourceID("durability-test")
    /// Small segments, so that a round rotates (create, rename, directory sync).
    static let options = LogOptions(durability: .commit, segmentSizeLimitBytes: 1 << 10)

    /// The writer's changes for round `round`: inserts, updates and deletes.
    static func write(_ writer: Connection, round: Int) throws {
        let base = round * 100
        for i in 1...12 {
            // Incompressible text, so that rounds fill and rotate segments.
            var generator = SplitMix64(seed: UInt64(base + i))
            let noise = (0..<6).map { _ in String(generator.next(), radix: 36) }.joined()
            try writer.execute("INSERT INTO t VALUES (\(base + i), 'r\(round) i\(i) \(noise)')")
        }
        try writer.execute("UPDATE t SET v = v || ' u' WHERE id % 3 = 0")
        try writer.execute("DELETE FROM t WHERE id % 7 = 0 AND id > \(base)")
    }

    enum Ending: Equatable {
        /// Power is cut at the faulted call (or after the round).
        case powerCut
        /// Power is cut just after the round's append returned, before its
        /// delete: the log holds the round durably, the source has not
        /// committed anything since.
        case powerCutAfterAppend
        /// The faulted call fails; the process lives on.
        case fault(FileFaults.Fault)
    }
    struct CutNow: Error {}

    /// One run: ship round 1, then make round 2's `faultIndex`-th log call
    /// (nil: none) end as `ending`; restart and drain; check the result.
    /// Returns the number of log calls round 2 made.
    @discardableResult
    static func run(faultIndex: Int?, ending: Ending) throws -> Int {
        try withTemporaryDirectory { directory in
            let (dbPath, logPath) = try SourceDurabilityTests.makeSource(directory)
            let restoredPath = directory + "/restored.db"
            let vfs = SourceDurabilityTests.vfs
            var survivor = dbPath
            var calls = 0
            do {
                let writer = try Connection(path: dbPath, vfs: vfs)
                try writer.execute("PRAGMA synchronous = NORMAL")
                // Armed before the log is opened: the seam sees the files
                // opened under it.
                try FileManager.default.createDirectory(atPath: logPath, withIntermediateDirectories: true)
                let faults = FileFaults(root: logPath)
                defer { faults.disarm() }
                var appender: LogAppender? = try LogAppender(directory: logPath, sourceID: source, options: options)
                let shipping = try Connection(path: dbPath, vfs: vfs)
                var shipper: Shipper? = try Shipper(connection: shipping, appender: appender!)
                try write(writer, round: 1)
                try shipper!.shipOnce()
                try write(writer, round: 2)
                faults.resetCalls()
                if ending == .powerCutAfterAppend {
                    shipper!.testHook = { if $0 == "appended" { throw CutNow() } }
                }
                if let faultIndex {
                    if case .fault(let fault) = ending {
                        faults.inject(fault, at: faultIndex)
                    } else {
                        faults.inject(.crash, at: faultIndex)
                    }
                }
                let failed: Bool
                do { try shipper!.shipOnce(); failed = false } catch { failed = true }
                calls = faults.callCount
                #expect(failed == (faultIndex.map { $0 < calls } ?? (ending == .powerCutAfterAppend)),
                        "round 2 with a fault at call \(faultIndex ?? -1) of \(calls)")
                switch ending {
                case .powerCut, .powerCutAfterAppend:
                    // Log and source lose, at the same instant, what they had not synced.
                    try SourceDurabilityTests.powerCut(dbPath, into: restoredPath)
                    survivor = restoredPath
                    faults.powerCut()
                    faults.disarm()
                    shipper = nil
                    try? appender?.close()
                    appender = nil
                case .fault:
                    // The process lives on: a new appender and shipper retry.
                    faults.disarm()
                    shipper = nil
                    try? appender?.close()
                    appender = nil
                }
                try? writer.close()
                try? shipping.close()
            }
            let db = try Connection(path: survivor)
            defer { try? db.close() }
            // The application goes on, then everything is shipped.
            try write(db, round: 3)
            let appender = try LogAppender(directory: logPath, sourceID: source, options: options)
            defer { try? appender.close() }
            try Shipper(connection: db, appender: appender).drain()
            let label = "fault at call \(faultIndex ?? -1) (\(ending))"
            let records = try logRecords(logPath)
            let counter = try Capture.lastCapturedSeq(db)
            #expect(records.map(\.lsn.rawValue) == Array(1...UInt64(counter)), "every committed seq exactly once, \(label)")
            #expect(try SourceDurabilityTests.fold(logPath) == SourceDurabilityTests.rows(db), "the log folds into the source, \(label)")
            #expect(try db.values("SELECT count(*) FROM _tidemark_outbox") == [[.integer(0)]], "\(label)")
            return calls
        }
    }

    @Test("a power cut at every log call of a round loses and duplicates nothing", .timeLimit(.minutes(15)))
    func powerCutAtEveryCall() throws {
        let calls = try Self.run(faultIndex: nil, ending: .powerCut)
        #expect(calls >= 2, "round 2 must write and sync the log")
        print("power loss: round 2 made \(calls) log calls")
        for index in 0...calls {
            try Self.run(faultIndex: index, ending: .powerCut)
        }
        // And between the last log call and the round's delete.
        try Self.run(faultIndex: nil, ending: .powerCutAfterAppend)
    }

    @Test("ENOSPC, EIO or a torn write at every log call of a round loses and duplicates nothing", .timeLimit(.minutes(15)))
    func errorsAtEveryCall() throws {
        let calls = try Self.run(faultIndex: nil, ending: .fault(.fail(EIO)))
        for fault in [FileFaults.Fault.fail(ENOSPC), .fail(EIO), .tear] {
            for index in 0..<calls {
                try Self.run(faultIndex: index, ending: .fault(fault))
            }
        }
    }
}
#endif
