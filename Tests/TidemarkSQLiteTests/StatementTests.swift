import TidemarkTestSupport
import Foundation
import Testing
import TidemarkLog
@testable import TidemarkSQLite

@Suite("Statement")
struct StatementTests {
    static let roundTripValues: [Value] = [
        .null,
        .integer(0), .integer(1), .integer(-1), .integer(.min), .integer(.max),
        .real(0.0), .real(-0.0), .real(0.1), .real(1e308), .real(-1e308), .real(.leastNonzeroMagnitude),
        .real(.infinity), .real(-.infinity), .real(1.0 / 3),
        .text(""), .text("hello"), .text("it's"), .text("a\u{0}b"), .text("\u{0}"),
        .text("héllo wörld ✓ 🌊"), .text("line\nbreak"),
        .blob([]), .blob([0]), .blob([0, 1, 2, 0, 255]), .blob(Array(0...255)),
    ]

    @Test("every storage class round-trips through bind and read", arguments: roundTripValues)
    func roundTrip(value: Value) throws {
        try withTemporaryDatabase { db, _ in
            // No declared type: no affinity, so SQLite keeps what it is given
            // (a REAL column would store -0.0 as the integer 0).
            try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
            let insert = try db.prepare("INSERT INTO t(id, v) VALUES (?1, ?2)")
            try insert.bind(1, at: 1)
            try insert.bind(value, at: 2)
            try insert.execute()
            // The no-copy path (SQLITE_STATIC inside scoped access).
            try insert.execute([.integer(2), value])

            let select = try db.prepare("SELECT v, typeof(v) FROM t ORDER BY id")
            var rows = 0
            while try select.step() {
                rows += 1
                #expect(select.columnValue(0) == value)
                let expectedType: StorageClass = switch value {
                case .null: .null
                case .integer: .integer
                case .real: .real
                case .text: .text
                case .blob: .blob
                }
                #expect(select.columnType(0) == expectedType)
                #expect(select.columnText(1) == expectedType.description)
            }
            #expect(rows == 2)
        }
    }

    @Test("typed fast paths read and write exactly")
    func typedAccessors() throws {
        try withTemporaryDatabase { db, _ in
            let statement = try db.prepare("SELECT ?1, ?2, ?3, ?4, length(CAST(?3 AS BLOB)), ?5")
            try statement.bind(Int64.min, at: 1)
            try statement.bind(-0.0, at: 2)
            try statement.bind("x\u{0}y", at: 3)
            try statement.bind(bytes: [], at: 4)
            try statement.bindNull(at: 5)
            #expect(try statement.step())
            #expect(statement.columnCount == 6)
            #expect(statement.columnInt64(0) == .min)
            #expect(statement.columnDouble(1).bitPattern == (-0.0).bitPattern)
            #expect(statement.columnText(2) == "x\u{0}y")
            #expect(statement.columnInt64(4) == 3)
            #expect(statement.columnType(3) == .blob)
            #expect(statement.columnBlob(3) == [])
            #expect(statement.columnType(5) == .null)
            #expect(statement.columnIsNull(5))
            #expect(try !statement.step())
        }
    }

    @Test("an empty blob is not NULL, and empty text is not NULL")
    func emptyIsNotNull() throws {
        try withTemporaryDatabase { db, _ in
            let rows = try db.values(
                "SELECT typeof(?1), typeof(?2), ?1 IS NULL, length(?1), typeof(?3)",
                [.blob([]), .text(""), .null])
            #expect(rows == [[.text("blob"), .text("text"), .integer(0), .integer(0), .text("null")]])
        }
    }

    @Test("column names, parameter count, reset and re-run")
    func metadataAndReset() throws {
        try withTemporaryDatabase { db, _ in
            let statement = try db.prepare("SELECT ?1 + 1 AS next, 'x' AS \"odd \"\" name\"")
            #expect(statement.parameterCount == 1)
            #expect(statement.columnName(0) == "next")
            #expect(statement.columnName(1) == "odd \" name")
            try statement.bind(41, at: 1)
            #expect(try statement.step())
            #expect(statement.columnInt64(0) == 42)
            statement.reset()
            #expect(try statement.step())
            #expect(statement.columnInt64(0) == 42)
            statement.reset()
            statement.clearBindings()
            #expect(try statement.step())
            #expect(statement.columnType(0) == .null)
        }
    }

    @Test("more values than the static-binding limit are copied, still exact")
    func manyBindings() throws {
        try withTemporaryDatabase { db, _ in
            let count = Statement.staticBindingLimit + 8
            let placeholders = (1...count).map { "?\($0)" }.joined(separator: ", ")
            let statement = try db.prepare("SELECT \(placeholders)")
            let values: [Value] = (0..<count).map { i in
                i % 2 == 0 ? .text("t\(i)\u{0}") : .blob([UInt8(i), 0])
            }
            let read = try statement.withBindings(values) { () throws -> [Value] in
                #expect(try statement.step())
                return (0..<Int32(count)).map { statement.columnValue($0) }
            }
            #expect(read == values)
        }
    }

    @Test("a step error carries SQLite's code, message and SQL")
    func stepError() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
            let insert = try db.prepare("INSERT INTO t(id) VALUES (?1)")
            try insert.execute([.integer(1)])
            let error = try #require(throws: SQLiteError.self) { try insert.execute([.integer(1)]) }
            #expect(error.primaryCode == .constraint)
            #expect(error.code.rawValue == 1555)  // SQLITE_CONSTRAINT_PRIMARYKEY
            #expect(error.message.contains("UNIQUE constraint failed: t.id"))
            #expect(error.sql == "INSERT INTO t(id) VALUES (?1)")
            #expect(error.description.contains("INSERT INTO t(id)"))
            // The statement is usable again after the failure.
            try insert.execute([.integer(2)])
            #expect(try db.values("SELECT count(*) FROM t") == [[.integer(2)]])
        }
    }

    @Test("binding out of range is an error, not a crash")
    func bindRange() throws {
        try withTemporaryDatabase { db, _ in
            let statement = try db.prepare("SELECT ?1")
            let error = try #require(throws: SQLiteError.self) { try statement.bind(1, at: 2) }
            #expect(error.primaryCode == .range)
        }
    }
}
