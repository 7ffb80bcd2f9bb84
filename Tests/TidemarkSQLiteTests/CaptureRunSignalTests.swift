import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite
import TidemarkTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `capture run` ends its shipping loop on SIGINT or SIGTERM (the stop flag
/// its signal handler sets atomically): it exits 0 with its summary, having
/// shipped every change committed before the signal, and frees the shipper
/// lock. Real process, real signals.
@Suite("capture run: stops on a signal")
struct CaptureRunSignalTests {
    @Test(.timeLimit(.minutes(10)), arguments: [SIGINT, SIGTERM])
    func signalEndsTheLoopWithItsSummary(_ signal: Int32) throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)") { db, dbPath, logPath in
            try LogAppender(directory: logPath, sourceID: "shipper-test").close()  // as `capture install` does
            let running = try Child(["capture", "run", "--source", dbPath, "--log", logPath, "--interval-ms", "5", "--json"])
            try running.start()
            defer { running.stopAndReap() }
            for id in 1...5 { try db.execute("INSERT INTO t VALUES (\(id), 'v\(id)')") }
            // Shipping means the loop (and its signal handler) runs.
            try ShipperLockTests.waitFor("the shipper to ship") { try LogReader(directory: logPath).headLSN() >= LSN(5) }

            running.sendSignal(signal)
            let finished = try running.wait(timeoutSeconds: 60)
            #expect(!finished.signaled && finished.status == 0, "signal \(signal): \(finished.summary)")
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(finished.stdoutBytes)) as? [String: Any],
                                       "no JSON summary: \(finished.stdout)")
            #expect(summary["shipped"] as? Int == 5, "\(summary)")
            #expect(summary["last_lsn"] as? Int == 5, "\(summary)")
            #expect(try logRecords(logPath).map(\.lsn.rawValue) == Array(1...5))
            // The lock went with the process: another shipper may run.
            let next = try runTidemark(["capture", "run", "--source", dbPath, "--log", logPath, "--once"],
                                  in: (dbPath as NSString).deletingLastPathComponent)
            #expect(next.status == 0, "\(next.stderr)")
        }
    }
}
