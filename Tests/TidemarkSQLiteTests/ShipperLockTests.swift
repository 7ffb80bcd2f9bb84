import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite
import TidemarkTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// One shipper per source, held by an OS file lock beside
/// the source, freed by the kernel when its holder is killed. Real
/// processes, real SIGKILL.
@Suite("Shipper: one shipper per source")
struct ShipperLockTests {
    static func waitFor(_ what: String, seconds: Double = 30, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try !condition() {
            guard Date() < deadline else { throw CaptureError(.io, "timed out waiting for \(what)") }
            usleep(20_000)
        }
    }

    @Test("a second shipper with another log is refused, naming the running one; the lock frees when it is killed",
          .timeLimit(.minutes(15)))
    func secondShipperRefused() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)") { db, dbPath, logPath in
            let directory = (dbPath as NSString).deletingLastPathComponent
            let otherLog = directory + "/other-log"
            for id in 1...3 { try db.execute("INSERT INTO t VALUES (\(id), 'v\(id)')") }
            try LogAppender(directory: logPath, sourceID: "shipper-test").close()  // as `capture install` does

            let running = try Child.started(try tidemarkExecutable(), ["capture", "run", "--source", dbPath, "--log", logPath, "--interval-ms", "5"])
            defer { running.stopAndReap() }
            try Self.waitFor("the running shipper to ship") {
                try LogReader(directory: logPath).headLSN() >= LSN(3)
            }

            let status = try runTidemark(["capture", "status", "--source", dbPath], in: directory)
            #expect(status.stdout.contains("shipper: pid \(running.processIdentifier), shipping into \(ShipperLock.canonical(logPath))"), "\(status.stdout)")

            // Another log: refused, naming the running shipper; nothing created.
            let refused = try runTidemark(["capture", "run", "--source", dbPath, "--log", otherLog, "--once"], in: directory)
            #expect(refused.status != 0, "a second shipper with another log must be refused")
            #expect(refused.stderr.contains("pid \(running.processIdentifier)"), "\(refused.stderr)")
            #expect(refused.stderr.contains(ShipperLock.canonical(logPath)), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: otherLog), "a refused shipper creates no log")

            // `migrate` with another log: refused the same way, before it creates a target.
            let plan = directory + "/plan.yml"
            try "source: \(dbPath)\ntarget: \(directory)/target.db\nlog: \(otherLog)\ntables:\n  t: {}\n"
                .write(toFile: plan, atomically: true, encoding: .utf8)
            let migrate = try runTidemark(["migrate", "--plan", plan], in: directory)
            #expect(migrate.status != 0, "migrate with another log must be refused")
            #expect(migrate.stderr.contains("pid \(running.processIdentifier)"), "\(migrate.stderr)")
            #expect(!FileManager.default.fileExists(atPath: directory + "/target.db"))

            // The running shipper still ships everything, exactly once.
            for id in 4...6 { try db.execute("INSERT INTO t VALUES (\(id), 'v\(id)')") }
            try Self.waitFor("the running shipper to ship the rest") { (try LogReader(directory: logPath).headLSN()) >= LSN(6) }
            #expect(try logRecords(logPath).map(\.lsn.rawValue) == Array(1...6))

            // SIGKILL: the kernel frees the lock; a new shipper takes over.
            running.sendSignal(SIGKILL)
            _ = try running.wait(timeoutSeconds: 30)
            for id in 7...8 { try db.execute("INSERT INTO t VALUES (\(id), 'v\(id)')") }
            let next = try runTidemark(["capture", "run", "--source", dbPath, "--log", logPath, "--once"], in: directory)
            #expect(next.status == 0, "\(next.stderr)")
            #expect(try runTidemark(["capture", "status", "--source", dbPath], in: directory).stdout.contains("shipper: none running"))
            #expect(try logRecords(logPath).map(\.lsn.rawValue) == Array(1...8))
        }
    }

    @Test("in one process: a second shipper is refused, a shipper on the same log is told to let it ship, release frees it")
    func lockInProcess() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)") { db, dbPath, logPath in
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
            let shipper = try Shipper(connection: db, appender: appender)
            let other = dbPath + "-other-log"
            let error = try #require(throws: CaptureError.self) { try ShipperLock(sourcePath: dbPath, logPath: other) }
            #expect(error.code == .shipperRunning)
            #expect(error.message.contains("pid \(getpid())") && error.message.contains(ShipperLock.canonical(logPath)))
            #expect(throws: CaptureError.self) { try ShipperLock.acquire(sourcePath: dbPath, logPath: other) }
            // The same log, spelled another way: a reader, not an error.
            #expect(try ShipperLock.acquire(sourcePath: dbPath, logPath: logPath + "/.") == nil)
            shipper.releaseLock()
            #expect(try ShipperLock.acquire(sourcePath: dbPath, logPath: other) != nil)
            try appender.close()
        }
    }
}
