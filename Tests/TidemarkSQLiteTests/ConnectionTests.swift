import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

@Suite("Connection")
struct ConnectionTests {
    struct Boom: Error {}

    @Test("a file that is not a database is named as such")
    func notADatabase() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/notes.txt"
            try Data(String(repeating: "this is plain text, not SQLite\n", count: 200).utf8)
                .write(to: URL(fileURLWithPath: path))
            let error = try #require(throws: SQLiteError.self) { try Connection(path: path) }
            #expect(error.primaryCode == .notADatabase)
            #expect(error.message.hasPrefix("\(path) is not a SQLite database"))
            #expect(error.description.contains("is not a SQLite database"))
        }
    }

    @Test("a missing file is reported as missing, and not created")
    func missingFile() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/missing.db"
            for mode in [Connection.OpenMode.readWrite, .readOnly] {
                let error = try #require(throws: SQLiteError.self) { try Connection(path: path, mode: mode) }
                #expect(error.primaryCode == .cannotOpen)
                #expect(error.message == "\(path) does not exist")
            }
            #expect(!FileManager.default.fileExists(atPath: path))
            _ = try Connection(path: path, mode: .readWriteCreate)
            #expect(FileManager.default.fileExists(atPath: path))
        }
    }

    @Test("a directory is not a database")
    func directory() throws {
        try withTemporaryDirectory { directory in
            let error = try #require(throws: SQLiteError.self) { try Connection(path: directory) }
            #expect(error.primaryCode == .cannotOpen)
            #expect(error.message.contains("is a directory"))
        }
    }

    @Test("execute runs scripts; prepare refuses more than one statement")
    func executeAndPrepare() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);")
            #expect(try db.values("SELECT sum(x) FROM t") == [[.integer(3)]])
            let error = try #require(throws: SQLiteError.self) { try db.prepare("SELECT 1; SELECT 2") }
            #expect(error.primaryCode == .misuse)
            // Trailing semicolons and comments are not a second statement.
            _ = try db.prepare("SELECT 1; ")
            _ = try db.prepare("SELECT 1; -- done\n ; /* nothing */")
            let syntax = try #require(throws: SQLiteError.self) { try db.execute("SELEC 1") }
            #expect(syntax.primaryCode == .error)
            #expect(syntax.description.contains("syntax error"))
            #expect(syntax.sql == "SELEC 1")
        }
    }

    @Test("cached statements are compiled once and come back reset")
    func statementCache() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(x)")
            let sql = "INSERT INTO t(x) VALUES (?1)"
            let first = try db.cachedStatement(sql)
            try first.bind(1, at: 1)
            try first.execute()
            let second = try db.cachedStatement(sql)
            #expect(first === second)
            #expect(db.cachedStatementCount == 1)
            // Bindings were cleared on checkout.
            try second.execute()
            #expect(try db.values("SELECT x FROM t ORDER BY rowid") == [[.integer(1)], [.null]])
            // A half-read SELECT is rewound when checked out again.
            let select = try db.cachedStatement("SELECT x FROM t ORDER BY rowid")
            #expect(try select.step())
            let again = try db.cachedStatement("SELECT x FROM t ORDER BY rowid")
            #expect(try again.step())
            #expect(again.columnValue(0) == .integer(1))
            #expect(db.cachedStatementCount == 2)
        }
    }

    @Test("a transaction commits when its body returns", arguments: [
        Connection.TransactionKind.deferred, .immediate, .exclusive,
    ])
    func transactionCommits(kind: Connection.TransactionKind) throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(x)")
            let n = try db.transaction(kind) { () throws -> Int in
                #expect(db.isInTransaction)
                try db.execute("INSERT INTO t VALUES (1), (2)")
                return db.changes
            }
            #expect(n == 2)
            #expect(!db.isInTransaction)
            #expect(try db.values("SELECT count(*) FROM t") == [[.integer(2)]])
        }
    }

    @Test("a transaction rolls back when its body throws, and rethrows")
    func transactionRollsBack() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(x)")
            #expect(throws: Boom.self) {
                try db.transaction(.immediate) {
                    try db.execute("INSERT INTO t VALUES (1)")
                    throw Boom()
                }
            }
            #expect(!db.isInTransaction)
            #expect(try db.values("SELECT count(*) FROM t") == [[.integer(0)]])
            // A failing statement inside rolls back everything before it.
            try db.execute("CREATE TABLE u(id INTEGER PRIMARY KEY)")
            #expect(throws: SQLiteError.self) {
                try db.transaction {
                    try db.execute("INSERT INTO t VALUES (1); INSERT INTO u VALUES (1)")
                    try db.execute("INSERT INTO u VALUES (1)")
                }
            }
            #expect(try db.values("SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM u)") == [[.integer(0), .integer(0)]])
            // Nesting is refused rather than silently merged.
            let nested = try #require(throws: SQLiteError.self) {
                try db.transaction { try db.transaction {} }
            }
            #expect(nested.primaryCode == .misuse)
        }
    }

    @Test("changes, lastInsertRowID and totalChanges")
    func counters() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
            try db.execute("INSERT INTO t(x) VALUES (1), (2), (3)")
            #expect(db.changes == 3)
            #expect(db.lastInsertRowID == 3)
            try db.execute("UPDATE t SET x = x + 1 WHERE id > 1")
            #expect(db.changes == 2)
            #expect(db.totalChanges == 5)
        }
    }

    @Test("journal mode switches to WAL and stays after reopening")
    func journalMode() throws {
        try withTemporaryDatabase { db, path in
            #expect(try db.journalMode() == .delete)
            #expect(try db.setJournalMode(.wal) == .wal)
            let other = try Connection(path: path)
            #expect(try other.journalMode() == .wal)
            let memory = try Connection(path: ":memory:")
            #expect(try memory.setJournalMode(.wal) == .memory)
        }
    }

    @Test("busy timeout: a second writer waits, then fails with an actionable SQLITE_BUSY")
    func busy() throws {
        try withTemporaryDatabase { db, path in
            try db.execute("CREATE TABLE t(x)")
            let other = try Connection(path: path, busyTimeoutMillis: 50)
            #expect(other.busyTimeoutMillis == 50)
            try db.execute("BEGIN IMMEDIATE")
            let start = ContinuousClock.now
            let error = try #require(throws: SQLiteError.self) { try other.execute("BEGIN IMMEDIATE") }
            #expect(ContinuousClock.now - start >= .milliseconds(40))
            #expect(error.primaryCode == .busy)
            #expect(error.description.contains("busy timeout"))
            try db.execute("ROLLBACK")
        }
    }

    @Test("a closed connection refuses work; statements outlive it safely")
    func close() throws {
        try withTemporaryDatabase { _, path in
            let db = try Connection(path: path)
            let statement = try db.prepare("SELECT 1")
            try db.close()
            try db.close()
            let error = try #require(throws: SQLiteError.self) { try db.execute("SELECT 1") }
            #expect(error.primaryCode == .misuse)
            #expect(error.message.contains("closed"))
            _ = statement  // finalized after the close, on release
        }
    }
}
