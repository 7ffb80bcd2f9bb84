import TidemarkTestSupport
import Testing
import TidemarkLog
@testable import TidemarkSQLite

@Suite("Schema")
struct SchemaTests {
    @Test("quoteIdentifier doubles embedded quotes")
    func quoting() {
        #expect(quoteIdentifier("a\"b") == "\"a\"\"b\"")
        #expect(quoteIdentifier("plain") == "\"plain\"")
        #expect(quoteIdentifier("") == "\"\"")
        #expect(quoteIdentifier("select") == "\"select\"")
    }

    @Test("INTEGER PRIMARY KEY is a rowid alias")
    func integerPrimaryKey() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT 'x', email TEXT COLLATE NOCASE)")
            let table = try #require(try Schema.table(named: "USERS", in: db))
            #expect(table.name == "users")
            #expect(table.primaryKey == ["id"])
            #expect(table.hasRowidAlias)
            #expect(!table.isWithoutRowid)
            #expect(table.columns.map(\.name) == ["id", "name", "email"])
            #expect(table.columns[0].declaredType == "INTEGER")
            #expect(table.columns[0].primaryKeyIndex == 1)
            #expect(table.columns[1].notNull)
            #expect(table.columns[1].defaultSQL == "'x'")
            #expect(table.columns[1].primaryKeyIndex == 0)
            #expect(table.columns[2].collation == "NOCASE")
            #expect(table.columns[1].collation == "BINARY")
            #expect(table.dataColumns.count == 3)
        }
    }

    @Test("INTEGER PRIMARY KEY DESC and INT PRIMARY KEY are not rowid aliases")
    func notRowidAlias() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("""
                CREATE TABLE a(id INTEGER PRIMARY KEY DESC, x);
                CREATE TABLE b(id INT PRIMARY KEY, x);
                CREATE TABLE c(id INTEGER, x, PRIMARY KEY(id));
                """)
            #expect(try Schema.table(named: "a", in: db)?.hasRowidAlias == false)
            #expect(try Schema.table(named: "b", in: db)?.hasRowidAlias == false)
            #expect(try Schema.table(named: "c", in: db)?.hasRowidAlias == true)
        }
    }

    @Test("a composite key is listed in key order, not column order")
    func compositeKey() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE m(a TEXT, b INTEGER, c REAL, PRIMARY KEY (c, a))")
            let table = try #require(try Schema.table(named: "m", in: db))
            #expect(table.primaryKey == ["c", "a"])
            #expect(table.columns.map(\.primaryKeyIndex) == [2, 0, 1])
            #expect(!table.hasRowidAlias)
            #expect(!table.isWithoutRowid)
        }
    }

    @Test("a text key, and WITHOUT ROWID")
    func withoutRowid() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("""
                CREATE TABLE k(code TEXT PRIMARY KEY, v);
                CREATE TABLE w(code TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
                CREATE TABLE s(id INTEGER PRIMARY KEY, v ANY) STRICT;
                """)
            let k = try #require(try Schema.table(named: "k", in: db))
            #expect(k.primaryKey == ["code"] && !k.isWithoutRowid && !k.hasRowidAlias)
            let w = try #require(try Schema.table(named: "w", in: db))
            #expect(w.primaryKey == ["code"] && w.isWithoutRowid && !w.hasRowidAlias)
            let s = try #require(try Schema.table(named: "s", in: db))
            #expect(s.isStrict && s.hasRowidAlias)
        }
    }

    @Test("generated columns are described but are not data columns")
    func generatedColumns() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("""
                CREATE TABLE g(
                    id INTEGER PRIMARY KEY,
                    price REAL,
                    qty INTEGER,
                    total REAL GENERATED ALWAYS AS (price * qty) VIRTUAL,
                    label TEXT GENERATED ALWAYS AS ('#' || id) STORED,
                    note TEXT)
                """)
            let table = try #require(try Schema.table(named: "g", in: db))
            #expect(table.columns.map(\.name) == ["id", "price", "qty", "total", "label", "note"])
            #expect(table.columns.map(\.hidden) == [0, 0, 0, 2, 3, 0])
            #expect(table.columns.map(\.isGenerated) == [false, false, false, true, true, false])
            #expect(table.dataColumns.map(\.name) == ["id", "price", "qty", "note"])
        }
    }

    @Test("a table without a primary key has an empty key")
    func noPrimaryKey() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("CREATE TABLE logs(at INTEGER, line TEXT UNIQUE)")
            let table = try #require(try Schema.table(named: "logs", in: db))
            #expect(table.primaryKey == [])
            #expect(!table.hasRowidAlias)
        }
    }

    @Test("tables lists user tables only; views and missing names are not tables")
    func listing() throws {
        try withTemporaryDatabase { db, _ in
            try db.execute("""
                CREATE TABLE "we""ird" (id INTEGER PRIMARY KEY);
                CREATE TABLE b(id INTEGER PRIMARY KEY AUTOINCREMENT);
                CREATE TABLE _tidemark_outbox(seq INTEGER PRIMARY KEY);
                CREATE VIEW v AS SELECT * FROM b;
                CREATE VIRTUAL TABLE f USING fts5(body);
                """)
            #expect(try Schema.tables(in: db) == ["b", "we\"ird"])
            #expect(try Schema.table(named: "v", in: db) == nil)
            #expect(try Schema.objectType(named: "v", in: db) == "view")
            #expect(try Schema.objectType(named: "f", in: db) == "virtual")
            #expect(try Schema.table(named: "missing", in: db) == nil)
            #expect(try Schema.table(named: "we\"ird", in: db)?.primaryKey == ["id"])
        }
    }
}
