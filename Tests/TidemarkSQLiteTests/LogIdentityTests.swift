import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog
@testable import TidemarkSQLite

/// A log's owner is a capture installation's random id, recorded in the
/// log; a log has one writer kind (capture or `log append`).
@Suite struct LogIdentityTests {
    /// Item 7. Failed before the change: the restarted shipper threw
    /// foreignSource ("… a change from before capture was installed again …")
    /// because the logged changes' timestamps were older than the recorded
    /// install time once the clock had stepped back.
    @Test("a wall clock stepped back does not make the shipper refuse its own log")
    func clockSteppedBack() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, dbPath, logPath in
            // The clock was an hour ahead at install and has since been set right.
            try db.execute("UPDATE _tidemark_meta SET value = CAST(value + 3600000000 AS TEXT) WHERE name = 'installed_at_micros'")
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 'a'), (2, 'b');")
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
                #expect(try Shipper(connection: db, appender: appender).drain() == 2)
                try appender.close()
            }
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (3, 'c');")
            // The shipper restarts.
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
            let shipper = try Shipper(connection: db, appender: appender)
            #expect(try shipper.drain() == 1)
            try appender.close()
            #expect(try logRecords(logPath).map(\.lsn) == [LSN(1), LSN(2), LSN(3)])
            let meta = try LogDirectory(logPath).meta()
            #expect(meta.format == 2)
            #expect(meta.writer == .capture)
            #expect(meta.installationID == (try Capture.installationID(db)))
            #expect(meta.installationID != nil)
        }
    }

    @Test("a continuation takes the log over durably; the earlier installation is then refused")
    func continuationClaims() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, dbPath, logPath in
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 'a'), (2, 'b');")
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
                #expect(try Shipper(connection: db, appender: appender).drain() == 2)
                try appender.close()
            }
            let first = try #require(try Capture.installationID(db))
            // A second database (reverse capture after a cutover: same source
            // id, new installation) continues after the log's last LSN.
            let otherPath = dbPath + "-target"
            let other = try Connection(path: otherPath, mode: .readWriteCreate)
            defer { try? other.close() }
            try other.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a)")
            try Capture.install(connection: other, sourceID: "shipper-test", continuingAfter: LSN(2))
            let second = try #require(try Capture.installationID(other))
            #expect(first != second)
            try sqlite3CLI(otherPath, "INSERT INTO t VALUES (3, 'c');")
            do {
                let appender = try LogAppender(directory: logPath)
                #expect(try Shipper(connection: other, appender: appender).drain() == 1)
                try appender.close()
            }
            #expect(try LogDirectory(logPath).meta().installationID == second)
            // The first installation's new changes would reuse LSN 3: refused.
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (4, 'd');")
            let appender = try LogAppender(directory: logPath)
            let error = try #require(throws: CaptureError.self) { try Shipper(connection: db, appender: appender) }
            #expect(error.code == .foreignSource)
            try appender.close()
            #expect(try Capture.status(connection: db)?.backlog == 1)
        }
    }

    /// Item 10. Failed before the change: the append was accepted (LSN 3,
    /// the seq capture hands out next) and the shipper then refused the log.
    @Test("a capture log refuses `log append`, and an append log refuses capture")
    func oneWriterKind() throws {
        try withShippingSetup("CREATE TABLE t(id INTEGER PRIMARY KEY, a)") { db, dbPath, logPath in
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (1, 'a'), (2, 'b');")
            do {
                let appender = try LogAppender(directory: logPath, sourceID: "shipper-test")
                #expect(try Shipper(connection: db, appender: appender).drain() == 2)
                try appender.close()
            }
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (3, 'c');")
            // What `tidemark log append` does.
            do {
                let appender = try LogAppender(directory: logPath)
                let error = try #require(throws: LogError.self) { try appender.claim(.append) }
                #expect(error.code == .wrongWriter)
                #expect(error.message.contains("capture"))
                try appender.close()
            }
            let appender = try LogAppender(directory: logPath)
            #expect(try Shipper(connection: db, appender: appender).drain() == 1)
            try appender.close()
            #expect(try logRecords(logPath).map(\.lsn) == [LSN(1), LSN(2), LSN(3)])

            // A log made by `log append` refuses capture.
            let appendLog = logPath + "-appended"
            do {
                let appender = try LogAppender(directory: appendLog, sourceID: "shipper-test")
                try appender.claim(.append)
                try appender.append([ChangeRecord(lsn: LSN(1), timestampMicros: 0, table: "t", operation: .insert,
                                                  key: [Field("id", .integer(9))], before: nil, after: [Field("id", .integer(9))])])
                try appender.close()
            }
            try sqlite3CLI(dbPath, "INSERT INTO t VALUES (5, 'e');")
            let refusing = try LogAppender(directory: appendLog)
            let error = try #require(throws: LogError.self) { try Shipper(connection: db, appender: refusing) }
            #expect(error.code == .wrongWriter)
            try refusing.close()
            #expect(try Capture.status(connection: db)?.backlog == 1)
        }
    }
}
