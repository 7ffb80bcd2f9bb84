import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The plan keys of the target's schema: the long column form, `create:`,
/// `foreign_keys:`; and their place in the plan fingerprint.
@Suite struct PlanKeysTests {
    static func plan(_ tables: String, top: String = "", dir: String = "/tmp") throws(MigrationError) -> Plan {
        try Plan.parse("source: s.db\ntarget: t.db\nlog: log\n\(top)tables:\n\(tables)", relativeTo: dir)
    }

    @Test("long column form: expr, type, not_null; the short form still works")
    func longForm() throws {
        let p = try Self.plan("""
              users:
                columns:
                  id: id
                  email: {expr: lower(email), type: TEXT, not_null: true}
                  n:
                    expr: length(email)
                    not_null: false
            """)
        #expect(p.tables[0].columns == [
            ColumnMapping(target: "id", expression: "id"),
            ColumnMapping(target: "email", expression: "lower(email)", type: "TEXT", notNull: true),
            ColumnMapping(target: "n", expression: "length(email)", notNull: false),
        ])
    }

    @Test("long column form refusals", arguments: [
        ("{expr: a, typ: TEXT}", "unknown key 'typ' (expected: expr, type, not_null)"),
        ("{type: TEXT}", "needs expr:"),
        ("{expr: a, not_null: maybe}", "not_null must be true or false"),
        ("{expr: a, type: 'TEXT; DROP'}", "type must be a column type"),
        ("[a]", "must be a SQL expression or {expr"),
    ])
    func longFormRefusals(value: String, message: String) throws {
        let error = #expect(throws: MigrationError.self) { _ = try Self.plan("  users:\n    columns:\n      id: id\n      c: \(value)\n") }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("tables.users.columns.c") == true)
    }

    @Test("create: inline SQL, or a file relative to the plan read at parse time; a missing file is named")
    func create() throws {
        try withTemporaryDirectory { dir in
            let inline = try Self.plan("  users:\n    create: \"  create table accounts(id INTEGER PRIMARY KEY)\"\n", dir: dir)
            #expect(inline.tables[0].create == "  create table accounts(id INTEGER PRIMARY KEY)")
            try FileManager.default.createDirectory(atPath: dir + "/sql", withIntermediateDirectories: true)
            try writeText(dir + "/sql/accounts.sql", "-- the new table\nCREATE TABLE accounts(id INTEGER PRIMARY KEY);\n")
            try writeText(dir + "/plan.yml", "source: s.db\ntarget: t.db\nlog: log\ntables:\n  users:\n    create: sql/accounts.sql\n")
            let fromFile = try Plan.load(path: dir + "/plan.yml")
            #expect(fromFile.tables[0].create == "-- the new table\nCREATE TABLE accounts(id INTEGER PRIMARY KEY);\n")
            let missing = #expect(throws: MigrationError.self) { _ = try Self.plan("  users:\n    create: nope.sql\n", dir: dir) }
            #expect(missing?.message.contains(dir + "/nope.sql") == true, "\(missing?.message ?? "")")
            #expect(missing?.message.contains("tables.users.create") == true)
            try writeText(dir + "/create.sql", "CREATE TABLE a(id INTEGER PRIMARY KEY)")
            #expect(try Self.plan("  users:\n    create: create.sql\n", dir: dir).tables[0].create == "CREATE TABLE a(id INTEGER PRIMARY KEY)")
            try writeText(dir + "/bad.sql", "SELECT 1")
            let bad = #expect(throws: MigrationError.self) { _ = try Self.plan("  users:\n    create: bad.sql\n", dir: dir) }
            #expect(bad?.message.contains("does not hold a CREATE TABLE") == true)
        }
    }

    @Test("foreign_keys: per table, with a top-level default for tables that say nothing")
    func foreignKeys() throws {
        let p = try Self.plan("  a: {}\n  b:\n    foreign_keys: keep\n  c:\n    foreign_keys: drop\n", top: "foreign_keys: drop\n")
        #expect(p.tables.map(\.foreignKeys) == [.drop, .keep, .drop])
        let q = try Self.plan("  a: {}\n")
        #expect(q.tables[0].foreignKeys == .keep)
        let error = #expect(throws: MigrationError.self) { _ = try Self.plan("  a:\n    foreign_keys: sometimes\n") }
        #expect(error?.message.contains("tables.a.foreign_keys must be keep or drop") == true)
    }

    /// Resolves `tables` over a small source and makes its record.
    static func record(_ tables: String, top: String = "", in dir: String) throws -> PlanRecord {
        let c = try Connection(path: dir + "/s.db", mode: .readWriteCreate)
        defer { try? c.close() }
        try c.execute("CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, email TEXT)")
        let p = try plan(tables, top: top, dir: dir)
        return PlanRecord.make(plan: p, mappings: try PlanResolver.resolve(p, source: c, target: c))
    }

    @Test("a plan without the new keys fingerprints as before; each new key changes it and is named")
    func fingerprint() throws {
        try withTemporaryDirectory { dir in
            let base = try Self.record("  users:\n    to: accounts\n    columns:\n      id: id\n      mail: lower(email)\n", in: dir)
            // The shape text of the fingerprint before these keys existed.
            #expect(base.fingerprint == PlanRecord.fnv1a("table users -> accounts copy key id\n  id = id\n  mail = lower(email)\n"))
            let variants = [
                ("  users:\n    to: accounts\n    columns:\n      id: id\n      mail: {expr: lower(email), type: TEXT}\n", "", "now has type TEXT"),
                ("  users:\n    to: accounts\n    columns:\n      id: id\n      mail: {expr: lower(email), not_null: true}\n", "", "now has not_null true"),
                ("  users:\n    to: accounts\n    create: CREATE TABLE accounts(id INTEGER PRIMARY KEY, mail TEXT)\n    columns:\n      id: id\n      mail: lower(email)\n", "", "now has create:"),
                ("  users:\n    to: accounts\n    columns:\n      id: id\n      mail: lower(email)\n", "foreign_keys: drop\n", "foreign_keys: drop"),
            ]
            for (tables, top, phrase) in variants {
                let changed = try Self.record(tables, top: top, in: dir)
                #expect(changed.fingerprint != base.fingerprint, "\(phrase)")
                let what = PlanRecord.differences(stored: base, current: changed)
                #expect(what.contains { $0.contains(phrase) }, "\(what)")
                // The stored record reads back with the same keys (so the
                // fingerprint of the stored plan is the same).
                let again = try changed.plan()
                let c = try Connection(path: dir + "/s.db", mode: .readWrite)
                let re = PlanRecord.make(plan: again, mappings: try PlanResolver.resolve(again, source: c, target: c))
                #expect(re.fingerprint == changed.fingerprint)
                #expect(PlanRecord.differences(stored: changed, current: base).isEmpty == false)
            }
        }
    }
}
