import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

/// A partial UNIQUE index admits a row when its WHERE clause becomes true, so
/// an `UPDATE OR REPLACE` that changes only a column of that clause can
/// displace another row; the staging trigger must fire for it.
@Suite("REPLACE displacement through a partial unique index")
struct PartialIndexDisplacementTests {
    @Test("UPDATE OR REPLACE of a partial index's WHERE column logs the displaced row as deleted")
    func whereColumnUpdateDisplaces() throws {
        try withShippingSetup("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, live INT);
            CREATE UNIQUE INDEX ia ON t(a) WHERE live = 1;
            """) { db, dbPath, logPath in
            try sqlite3CLI(dbPath, """
                INSERT INTO t VALUES (1, 'a', 0), (2, 'a', 1);
                UPDATE OR REPLACE t SET live = 1 WHERE id = 1;
                """)
            let appender = try LogAppender(directory: logPath, sourceID: "shipper-test", options: LogOptions(durability: .none))
            try Shipper(connection: db, appender: appender).drain()
            try appender.close()
            // Fold the log by key.
            var rows: [Value: [Field]] = [:]
            for r in try logRecords(logPath) {
                if let before = r.beforeKey, r.isKeyChange || r.operation == .delete { rows[before[0].value] = nil }
                if r.operation == .delete { rows[r.key[0].value] = nil } else { rows[r.key[0].value] = r.after }
            }
            let source = try db.prepare("SELECT id FROM t ORDER BY id").rows { Value.integer($0.columnInt64(0)) }
            #expect(rows.keys.sorted { "\($0)" < "\($1)" } == source, "fold has keys \(rows.keys), source \(source)")
        }
    }
}
