import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

/// SQLite advances an AUTOINCREMENT counter (`sqlite_sequence`) when a
/// statement *ends*; a statement that stops under `OR FAIL` keeps the rows it
/// inserted before the failure — including the outbox rows its triggers
/// wrote — but never writes the counter back. Once the shipper deletes those
/// rows, SQLite would hand their `seq`s out again, and a change would reuse
/// an LSN the log already holds.
@Suite("Outbox sequence after OR FAIL")
struct SequenceReuseTests {
    @Test("rows kept by a failed OR FAIL statement never have their seq reused after shipping")
    func orFailDoesNotReuseSeq() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, u UNIQUE)") { db, dbPath, logPath in
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 1);")
            // Row 2 is inserted (and captured), row 3 fails on UNIQUE(u): OR FAIL keeps row 2.
            _ = try? sqlite3CLI(dbPath, "INSERT OR FAIL INTO t SELECT 2, 2 UNION ALL SELECT 3, 1;")
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test", options: LogOptions(durability: .none))
            do {
                let shipper = try Shipper(connection: db, appender: appender)
                try shipper.drain()
                #expect(try Capture.status(connection: db)?.backlog == 0)
                // The capture high-water mark counts the kept row.
                #expect(try Capture.lastCapturedSeq(db) >= 2)
            }
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (4, 4);")
            let shipper = try Shipper(connection: db, appender: appender)
            try shipper.drain()
            try appender.close()
            let logged = try logRecords(logPath)
            #expect(logged.map(\.lsn) == [LSN(1), LSN(2), LSN(3)], "LSNs: \(logged.map(\.lsn))")
            #expect(logged.last?.after?.first?.value == .integer(4), "the last change is lost or misplaced: \(String(describing: logged.last))")
        }
    }
}
