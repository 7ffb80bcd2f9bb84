import TidemarkTestSupport
import CPowerLossVFS
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

/// The source side of power loss: writers running
/// `synchronous = NORMAL` may lose their last commits; the log must never
/// hold one the source lost, and a `seq` the source hands out again must
/// never be dropped as "already shipped".
///
/// The power cut is simulated by the test VFS in `CPowerLossVFS`: each sync
/// of a database or WAL file copies it to `<file>.durable`; a cut keeps those
/// copies and nothing else.
@Suite("Shipper: source durability")
struct SourceDurabilityTests {
    static let vfs: String = {
        let name = "tidemark-power-loss"
        precondition(tidemark_power_loss_vfs_register(name) == 0, "cannot register the test VFS")
        return name
    }()

    /// What a power cut now would leave of the source at `path`, written as a
    /// database at `restoredPath`: the durable images, nothing else.
    static func powerCut(_ path: String, into restoredPath: String) throws {
        let fm = FileManager.default
        try fm.copyItem(atPath: path + ".durable", toPath: restoredPath)
        if fm.fileExists(atPath: path + "-wal.durable") {
            try fm.copyItem(atPath: path + "-wal.durable", toPath: restoredPath + "-wal")
        }
    }

    /// The table `t(id, v)` as the log's changes leave it.
    static func fold(_ logPath: String) throws -> [Int64: String] {
        var rows: [Int64: String] = [:]
        for record in try logRecords(logPath) where record.table == "t" {
            guard case .integer(let id) = record.key[0].value else { continue }
            if record.operation == .delete {
                rows[id] = nil
            } else if case .text(let v) = record.after?.first(where: { $0.name == "v" })?.value {
                rows[id] = v
            }
        }
        return rows
    }

    static func rows(_ db: Connection) throws -> [Int64: String] {
        var rows: [Int64: String] = [:]
        for row in try db.values("SELECT id, v FROM t") {
            if case .integer(let id) = row[0], case .text(let v) = row[1] { rows[id] = v }
        }
        return rows
    }

    /// A captured source made outside the test VFS, checkpointed and closed:
    /// everything in it is durable.
    static func makeSource(_ directory: String) throws -> (db: String, log: String) {
        let dbPath = directory + "/source.db"
        let logPath = directory + "/log"
        let setup = try Connection(path: dbPath, mode: .readWriteCreate)
        try setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        try Capture.install(connection: setup, sourceID: "durability-test")
        try setup.close()
        return (dbPath, logPath)
    }

    // Time limits: Swift Testing counts from when a test is scheduled and
    // synchronous tests share a pool two threads wide here, so a limit must
    // cover the whole target's run; nothing in these tests waits unbounded.
    enum DeleteStep: String, CaseIterable, CustomTestStringConvertible {
        /// A same-file migration step or a cutover: the caller holds the
        /// source's write lock, so the round only appends.
        case skipped
        /// `capture run` while an application transaction holds the write
        /// lock: the round's delete gives up after `deleteWaitMillis`.
        case blockedByWriter
        var testDescription: String { rawValue }
    }

    @Test("a power cut after a round shipped NORMAL commits leaves the source holding every change the log holds",
          .timeLimit(.minutes(15)), arguments: DeleteStep.allCases)
    func powerCutAfterRound(deleteStep: DeleteStep) throws {
        try withTemporaryDirectory { directory in
            let (dbPath, logPath) = try Self.makeSource(directory)
            let restoredPath = directory + "/restored.db"
            do {
                let writer = try Connection(path: dbPath, vfs: Self.vfs)
                try writer.execute("PRAGMA synchronous = NORMAL")
                let shipping = try Connection(path: dbPath, vfs: Self.vfs)
                let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
                let shipper = try Shipper(connection: shipping, appender: appender)
                for id in 1...5 { try writer.execute("INSERT INTO t VALUES (\(id), 'before the cut \(id)')") }
                let blocker = try Connection(path: dbPath)
                if deleteStep == .blockedByWriter { try blocker.execute("BEGIN IMMEDIATE") }
                let round = try shipper.shipOnce(deleteShipped: deleteStep != .skipped)
                #expect(round.shipped == 5 && round.deleted == 0)
                // The power goes now: the log holds LSN 1…5 durably (the
                // appender synced); the source keeps what it synced.
                try Self.powerCut(dbPath, into: restoredPath)
                if deleteStep == .blockedByWriter { try blocker.execute("ROLLBACK") }
                try appender.close()
            }
            // Power is back. The source must still hold what the log holds.
            let restored = try Connection(path: restoredPath)
            defer { try? restored.close() }
            #expect(try Self.rows(restored).count == 5, "the source lost commits the log holds")
            // The application goes on; then the shipper ships everything.
            for id in 6...12 { try restored.execute("INSERT INTO t VALUES (\(id), 'after the cut \(id)')") }
            let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
            defer { try? appender.close() }
            let shipping = try Connection(path: restoredPath)
            try Shipper(connection: shipping, appender: appender).drain()
            #expect(try Self.fold(logPath) == Self.rows(restored), "the log must fold into the source")
            #expect(try restored.values("SELECT count(*) FROM _tidemark_outbox") == [[.integer(0)]])
        }
    }

    @Test("a round syncs the source once, however many rows it ships, delete included")
    func oneSyncPerRound() throws {
        try withTemporaryDirectory { directory in
            let (dbPath, logPath) = try Self.makeSource(directory)
            let writer = try Connection(path: dbPath, vfs: Self.vfs)
            try writer.execute("PRAGMA synchronous = NORMAL")
            let shipping = try Connection(path: dbPath, vfs: Self.vfs)
            let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
            defer { try? appender.close() }
            let shipper = try Shipper(connection: shipping, appender: appender)
            try writer.execute("BEGIN")
            for id in 1...300 { try writer.execute("INSERT INTO t VALUES (\(id), 'v')") }
            try writer.execute("COMMIT")
            for id in 301...400 { try writer.execute("INSERT INTO t VALUES (\(id), 'v')") }
            // Syncs of the source's files (SQLite names them by the full path).
            let full = ShipperLock.canonical(dbPath)
            func syncs() -> Int { tidemark_power_loss_vfs_syncs_of(full) + tidemark_power_loss_vfs_syncs_of(full + "-wal") }
            let before = syncs()
            let round = try shipper.shipOnce(deleteShipped: false)
            #expect(round.shipped == 400)
            #expect(syncs() - before == 1)
            let idle = syncs()
            #expect(try shipper.shipOnce(deleteShipped: false).shipped == 0)
            #expect(syncs() == idle, "an idle round syncs nothing")
            // With its delete: still one (the delete commits without a sync).
            for id in 401...450 { try writer.execute("INSERT INTO t VALUES (\(id), 'v')") }
            let withDelete = syncs()
            let deleting = try shipper.shipOnce()
            #expect(deleting.shipped == 50 && deleting.deleted == 450)
            #expect(syncs() - withDelete == 1)
        }
    }

    @Test("an unclaimed log whose LSNs name other changes is refused before it is claimed")
    func unclaimedLogOfOtherChanges() throws {
        try withTemporaryDirectory { directory in
            let (dbPath, logPath) = try Self.makeSource(directory)
            let db = try Connection(path: dbPath)
            defer { try? db.close() }
            // A log filled through the appender API (no owner recorded) with
            // changes that are not this source's seqs 1…3.
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
                try appender.append((1...3).map { i in
                    ChangeRecord(lsn: LSN(UInt64(i)), timestampMicros: 1, table: "t", operation: .insert,
                                 key: [Field("id", .integer(Int64(900 + i)))],
                                 before: nil, after: [Field("id", .integer(Int64(900 + i))), Field("v", .text("elsewhere"))])
                })
                try appender.close()
            }
            for id in 1...5 { try db.execute("INSERT INTO t VALUES (\(id), 'here \(id)')") }
            let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
            defer { try? appender.close() }
            let error = try #require(throws: CaptureError.self) { try Shipper(connection: db, appender: appender) }
            #expect(error.code == .sourceBehindLog && error.message.contains("seq 1 "), "\(error.message)")
            #expect(appender.meta.installationID == nil, "the log must not be claimed")
            #expect(try db.values("SELECT count(*) FROM _tidemark_outbox") == [[.integer(5)]])
        }
    }

    @Test("a source behind the log, or one that reused a shipped seq, stops the shipper with a clear error")
    func reusedSeq() throws {
        try withTemporaryDirectory { directory in
            let (dbPath, logPath) = try Self.makeSource(directory)
            // The source as it will be after losing the commits below (a power
            // cut under NORMAL before anything synced them, or a backup).
            let lostPath = directory + "/lost.db"
            try FileManager.default.copyItem(atPath: dbPath, toPath: lostPath)
            do {
                let db = try Connection(path: dbPath)
                for id in 1...5 { try db.execute("INSERT INTO t VALUES (\(id), 'lost \(id)')") }
                let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
                #expect(try Shipper(connection: db, appender: appender).drain() == 5)
                try appender.close()
                try db.close()
            }
            let db = try Connection(path: lostPath)
            defer { try? db.close() }
            // Lost commits, seqs not yet reused: the outbox sequence is behind
            // the log.
            for id in 101...103 { try db.execute("INSERT INTO t VALUES (\(id), 'new \(id)')") }
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
                defer { try? appender.close() }
                let behind = try #require(throws: CaptureError.self) { try Shipper(connection: db, appender: appender) }
                #expect(behind.code == .sourceBehindLog)
                #expect(behind.message.contains("seq 3") && behind.message.contains("LSN 5"), "\(behind.message)")
            }
            // Reused: seqs 1…5 are now other changes than the log's 1…5.
            for id in 104...107 { try db.execute("INSERT INTO t VALUES (\(id), 'new \(id)')") }
            let appender = try LogAppender(directory: logPath, sourceID: "durability-test")
            defer { try? appender.close() }
            let reused = try #require(throws: CaptureError.self) {
                try Shipper(connection: db, appender: appender).drain()
            }
            #expect(reused.code == .sourceBehindLog)
            #expect(reused.message.contains("seq 1 "), "\(reused.message)")
            // Nothing was deleted or shipped.
            #expect(try db.values("SELECT count(*) FROM _tidemark_outbox") == [[.integer(7)]])
            #expect(appender.lastLSN == LSN(5))
        }
    }
}
