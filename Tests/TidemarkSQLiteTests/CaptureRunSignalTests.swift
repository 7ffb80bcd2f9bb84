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
    @Test(.timeLimit(.minutes(2)), arguments: [SIGINT, SIGTERM])
    func signalEndsTheLoopWithItsSummary(_ signal: Int32) throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)") { db, dbPath, logPath in
            try LogAppender(directory: logPath, sourceID: "shipper-test").close()  // as `capture install` does
            let running = Process()
            running.executableURL = URL(fileURLWithPath: try tidemarkExecutable())
            running.arguments = ["capture", "run", "--source", dbPath, "--log", logPath, "--interval-ms", "5", "--json"]
            let output = Pipe(), errors = Pipe()
            running.standardOutput = output
            running.standardError = errors
            try running.run()
            defer { if running.isRunning { kill(running.processIdentifier, SIGKILL); running.waitUntilExit() } }
            for id in 1...5 { try db.execute("INSERT INTO t VALUES (\(id), 'v\(id)')") }
            // Shipping means the loop (and its signal handler) runs.
            try ShipperLockTests.waitFor("the shipper to ship") { try LogReader(directory: logPath).headLSN() >= LSN(5) }

            kill(running.processIdentifier, signal)
            let stdout = output.fileHandleForReading.readDataToEndOfFile()
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            running.waitUntilExit()
            #expect(running.terminationReason == .exit && running.terminationStatus == 0,
                    "signal \(signal): exit \(running.terminationStatus) (\(running.terminationReason == .exit ? "status" : "signal")); stderr: \(stderr)")
            let summary = try #require(try JSONSerialization.jsonObject(with: stdout) as? [String: Any],
                                       "no JSON summary: \(String(decoding: stdout, as: UTF8.self))")
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
