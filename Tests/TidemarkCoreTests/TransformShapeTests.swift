import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The new shape `tidemark transform` derives from a table and the
/// options, on real SQLite files: the CREATE TABLE, the mappings (exact to
/// the bit against real columns), the inverse and each refusal.
@Suite struct TransformShapeTests {
    static let schema = """
        CREATE TABLE makers(id INTEGER PRIMARY KEY, name TEXT UNIQUE, region TEXT);
        CREATE TABLE items(
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          name TEXT NOT NULL COLLATE NOCASE,
          price INTEGER DEFAULT 0 CHECK (price >= 0),
          code VARCHAR(10),
          note TEXT CHECK (note <> 'x' OR maker_id IS NULL),
          maker_id INTEGER REFERENCES makers(id),
          UNIQUE (code),
          CHECK (length(name) < 100)
        );
        CREATE INDEX items_price ON items(price);
        CREATE TABLE pairs(a TEXT, b INTEGER, v ANY, PRIMARY KEY (a, b)) WITHOUT ROWID, STRICT;
        INSERT INTO makers VALUES (1, 'acme', 'eu'), (2, 'globex', 'us');
        INSERT INTO items(id, name, price, code, note, maker_id) VALUES
          (1, 'bolt', 5, 'B1', 'steel', 1), (2, 'nut', 7, '007', NULL, 2), (3, 'gear', 12, 'G3', 'x', NULL);
        INSERT INTO pairs VALUES ('x', 1, 2.5), ('y', 2, 'text');
        """

    func withDatabase<R>(_ body: (Connection) throws -> R) throws -> R {
        try withTemporaryDirectory { dir in
            let db = try Connection(path: dir + "/app.db", mode: .readWriteCreate)
            try db.execute(Self.schema)
            return try body(db)
        }
    }

    func derive(_ edit: (inout TransformOptions) -> Void, table: String = "items", in db: Connection) throws -> TransformShape {
        var o = TransformOptions()
        edit(&o)
        return try TransformShape.derive(table: table, options: o, db: db)
    }

    /// The error `body` throws, as text ("" when it throws none).
    func refusal(_ body: () throws -> Void) -> String {
        do { try body() } catch { return "\(error)" }
        return ""
    }

    /// The new table created from the derived SQL, as SQLite reads it.
    func created(_ shape: TransformShape) throws -> TableInfo {
        let scratch = try Connection(path: ":memory:", mode: .readWriteCreate)
        try scratch.execute("CREATE TABLE makers(id INTEGER PRIMARY KEY)")
        try scratch.execute(shape.createSQL)
        return try #require(try Schema.table(named: shape.table, in: scratch))
    }

    @Test func typeChangeMapsThroughTheNewAffinityAndInvertsThroughTheOld() throws {
        try withDatabase { db in
            let s = try derive({ $0.types = [.init("price", "real"), .init("code", "INTEGER")]; $0.allowLossy = ["code"] }, in: db)
            let t = try created(s)
            #expect(t.columns.first { $0.name == "price" }?.declaredType == "REAL")
            #expect(t.columns.first { $0.name == "code" }?.declaredType == "INTEGER")
            // Everything the options do not touch is kept as written.
            #expect(s.createSQL.contains("id INTEGER PRIMARY KEY AUTOINCREMENT"))
            #expect(s.createSQL.contains("COLLATE NOCASE") && s.createSQL.contains("DEFAULT 0 CHECK (price >= 0)"))
            #expect(s.createSQL.contains("UNIQUE (code)") && s.createSQL.contains("CHECK (length(name) < 100)"))
            #expect(s.createSQL.contains("REFERENCES makers(id)"))
            #expect(s.columns.map(\.name) == ["id", "name", "price", "code", "note", "maker_id"])
            #expect(s.columns.first { $0.name == "name" }?.expression == "\"name\"")
            #expect(s.columns.first { $0.name == "price" }?.expression.hasPrefix("CASE") == true)
            #expect(s.inverse.map(\.name) == ["price", "code"])
            #expect(s.converted.map(\.old) == ["price", "code"])
        }
    }

    @Test func sameAffinityTypeChangeIsAPlainCopy() throws {
        try withDatabase { db in
            // TEXT and BLOB into ANY-less… : INTEGER → INTEGER keeps values.
            let s = try derive({ $0.types = [.init("maker_id", "INTEGER"), .init("note", "BLOB")] }, in: db)
            #expect(s.columns.first { $0.name == "maker_id" }?.expression == "\"maker_id\"")
            #expect(s.columns.first { $0.name == "note" }?.expression == "\"note\"")
            #expect(s.inverse.isEmpty && s.converted.isEmpty)
        }
    }

    @Test func dropRenameAndOrder() throws {
        try withDatabase { db in
            let s = try derive({ o in
                o.drops = ["code"]
                o.renames = [.init("price", "cost"), .init("name", "title")]
                o.columnOrder = ["note", "cost"]
            }, in: db)
            let t = try created(s)
            #expect(t.columns.map(\.name) == ["note", "cost", "id", "title", "maker_id"])
            // SQLite renamed the CHECKs' references; the UNIQUE over the
            // dropped column went with it (and is reported).
            #expect(s.createSQL.contains("CHECK (\"cost\" >= 0)") && s.createSQL.contains("length(\"title\")"))
            #expect(!s.createSQL.contains("code"))
            #expect(s.notes.count == 1 && s.notes[0].contains("UNIQUE (code)"))
            #expect(s.columns.first { $0.name == "cost" }?.expression == "\"price\"")
            #expect(s.columns.first { $0.name == "title" }?.expression == "\"name\"")
            #expect(s.inverse.isEmpty)
        }
    }

    @Test func renamesMaySwapNames() throws {
        try withDatabase { db in
            let s = try derive({ $0.renames = [.init("code", "note"), .init("note", "code")] }, in: db)
            #expect(s.columns.first { $0.name == "note" }?.expression == "\"code\"")
            #expect(s.columns.first { $0.name == "code" }?.expression == "\"note\"")
            #expect(s.createSQL.contains("UNIQUE (\"note\")"))
        }
    }

    @Test func notNullDefaultsAndForeignKeys() throws {
        try withDatabase { db in
            let s = try derive({ o in
                o.notNull = ["note"]
                o.notNullFalse = ["name"]
                o.defaults = [.init("note", "none"), .init("code", "upper('x')")]
                o.defaultNone = ["price"]
                o.dropForeignKeys = ["maker_id"]
                o.addForeignKeys = [.init("note", "makers", "name")]
            }, in: db)
            let t = try created(s)
            let note = try #require(t.columns.first { $0.name == "note" })
            #expect(note.notNull && note.defaultSQL == "'none'")
            #expect(t.columns.first { $0.name == "name" }?.notNull == false)
            #expect(t.columns.first { $0.name == "name" }?.collation == "NOCASE")
            #expect(t.columns.first { $0.name == "code" }?.defaultSQL == "upper('x')" && s.createSQL.contains("DEFAULT (upper('x'))"))
            #expect(t.columns.first { $0.name == "price" }?.defaultSQL == nil)
            #expect(!s.createSQL.contains("REFERENCES makers(id)"))
            #expect(s.createSQL.contains("FOREIGN KEY (\"note\") REFERENCES \"makers\"(\"name\")"))
        }
    }

    @Test func strictAndWithoutRowidAreKeptOrChanged() throws {
        try withDatabase { db in
            let kept = try derive({ $0.renames = [.init("v", "value")] }, table: "pairs", in: db)
            #expect(kept.createSQL.hasSuffix(") WITHOUT ROWID, STRICT"))
            let loose = try derive({ $0.strict = false }, table: "pairs", in: db)
            #expect(loose.createSQL.hasSuffix(") WITHOUT ROWID"))
            // ANY had no affinity in STRICT; outside it is NUMERIC: text '2.5' would become 2.5.
            #expect(loose.converted.map(\.old) == ["v"])
            let strict = try derive({ $0.strict = true; $0.types = [.init("price", "FLOAT"), .init("code", "TEXT")] }, in: db)
            #expect(strict.createSQL.hasSuffix(") STRICT") && strict.createSQL.contains("price REAL"))
        }
    }

    @Test func createGivesTheWholeDefinition() throws {
        try withDatabase { db in
            let s = try derive({ o in
                o.create = "CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT NOT NULL, price REAL, cents INTEGER)"
                o.renames = [.init("name", "label")]
                o.sets = [.init("cents", "price * 100")]
            }, in: db)
            #expect(s.columns.map(\.name) == ["id", "label", "price", "cents"])
            #expect(s.columns[1].expression == "\"name\"")
            #expect(s.columns[3].expression.contains("(price * 100)"))
        }
    }

    /// Each refusal: (options, a part of its one-line message).
    static let refusals: [(String, String)] = [
        ("r0", "has no column --type nope"),
        ("r1", "has no columns --drop a, --drop b"),
        ("r2", "column types must be one of"),
        ("r3", "cannot change the key"),
        ("r4", "--pk-none"),
        ("r5", "part of the primary key"),
        ("r6", "--drop maker_id: it is used by note's CHECK"),
        ("r7", "--drop name: it is used by CHECK"),
        ("r8", "id is part of the primary key"),
        ("r9", "add --inverse price EXPR"),
        ("r10", "--set nope: the new table has no data column"),
        ("r11", "--strict: STRICT columns need one of the types INT, INTEGER, REAL, TEXT, BLOB, ANY; code (VARCHAR(10)) has another"),
        ("r12", "neither its primary key nor UNIQUE"),
        ("r13", "there is no table nowhere"),
        ("r14", "items.note has no foreign key"),
        ("r15", "two columns named code"),
        ("r16", "name it items"),
        ("r17", "--create gives the whole new definition"),
        ("r18", "choose one"),
    ]

    static func options(_ name: String) -> TransformOptions {
        var o = TransformOptions()
        switch name {
        case "r0": o.types = [.init("nope", "TEXT")]
        case "r1": o.drops = ["a", "b"]
        case "r2": o.types = [.init("price", "DECIMAL")]
        case "r3": o.pk = ["code"]
        case "r4": o.pkNone = true
        case "r5": o.drops = ["id"]
        case "r6": o.drops = ["maker_id"]
        case "r7": o.drops = ["name"]
        case "r8": o.types = [.init("id", "TEXT")]
        case "r9": o.sets = [.init("price", "price * 2")]
        case "r10": o.sets = [.init("nope", "1")]
        case "r11": o.strict = true
        case "r12": o.addForeignKeys = [.init("note", "makers", "region")]
        case "r13": o.addForeignKeys = [.init("note", "nowhere", "id")]
        case "r14": o.dropForeignKeys = ["note"]
        case "r15": o.renames = [.init("note", "code")]
        case "r16": o.create = "CREATE TABLE other(id INTEGER PRIMARY KEY)"
        case "r17": o.create = "CREATE TABLE items(id INTEGER PRIMARY KEY)"; o.drops = ["note"]
        case "r18": o.notNull = ["note"]; o.notNullFalse = ["note"]
        default: break
        }
        return o
    }

    @Test(arguments: TransformShapeTests.refusals)
    func refusesBeforeAnythingIsWritten(name: String, message: String) throws {
        try withDatabase { db in
            let why = refusal { _ = try TransformShape.derive(table: "items", options: Self.options(name), db: db) }
            #expect(why.contains(message), "\(why)")
            #expect(!why.contains("\n"), "one line: \(why)")
        }
    }

    @Test func unknownTableAndView() throws {
        try withDatabase { db in
            try db.execute("CREATE VIEW cheap AS SELECT * FROM items WHERE price < 10")
            #expect(refusal { _ = try derive({ _ in }, table: "nope", in: db) }.contains("table nope does not exist (tables: items, makers, pairs)"))
            #expect(refusal { _ = try derive({ _ in }, table: "cheap", in: db) }.contains("cheap is a view"))
        }
    }

    @Test func lossyTypeChangeIsRefusedWithItsKeysUnlessAllowed() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/app.db"
            let db = try Connection(path: path, mode: .readWriteCreate)
            try db.execute(Self.schema)
            // '007' → 7 does not come back as '007'; 'G3' and 'B1' stay text.
            var o = TransformOptions()
            o.types = [.init("code", "INTEGER")]
            let why = refusal { _ = try Transform.prepare(db: path, table: "items", options: o) }
            #expect(why.contains("--type code INTEGER would change 1 value for good") && why.contains("2 ('007')") && why.contains("--allow-lossy code"), "\(why)")
            // Integers into REAL round-trip (5 → 5.0 → 5): not lossy.
            o.types = [.init("price", "REAL")]
            _ = try Transform.prepare(db: path, table: "items", options: o)
            // Past 2^53 they do not.
            try db.execute("INSERT INTO items(id, name, price) VALUES (10, 'big', 9007199254740993), (11, 'big2', 9007199254740995)")
            let big = refusal { _ = try Transform.prepare(db: path, table: "items", options: o) }
            #expect(big.contains("would change 2 values") && big.contains("10 (9007199254740993), 11 (9007199254740995)"), "\(big)")
            o.allowLossy = ["price"]
            let p = try Transform.prepare(db: path, table: "items", options: o)
            #expect(p.planText.contains("swap: true") && !p.resuming)
            // Nothing was written beside the database.
            #expect(!FileSystemCheck.exists(path + ".tidemark"))
        }
    }

    /// Names with quotes, backslashes, newlines and YAML's own line breaks
    /// survive the plan file: it parses back to the same table and columns.
    @Test func planTextRoundTripsAwkwardNames() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/app.db"
            let db = try Connection(path: path, mode: .readWriteCreate)
            let table = "it\"em's \\ tab\u{2028}le"
            let column = "pr\"ice\nnow"
            try db.execute("CREATE TABLE \(quoteIdentifier(table))(id INTEGER PRIMARY KEY, \(quoteIdentifier(column)) INTEGER, note TEXT)")
            try db.execute("INSERT INTO \(quoteIdentifier(table)) VALUES (1, 5, 'x')")
            var o = TransformOptions()
            o.types = [.init(column, "REAL")]
            o.renames = [.init("note", "n\\o:te #1")]
            let p = try Transform.prepare(db: path, table: table, options: o)
            let plan = try Plan.parse(p.planText, relativeTo: dir)
            #expect(plan.tables.count == 1 && plan.tables[0].source == table, "\(plan.tables.map(\.source))")
            #expect(plan.tables[0].columns?.map(\.target) == ["id", column, "n\\o:te #1"])
            #expect(plan.tables[0].create == p.shape?.createSQL)
            #expect(Transform.recordedOptions(p.planText) == o.recorded)
        }
    }

    @Test func nothingToChange() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/app.db"
            let db = try Connection(path: path, mode: .readWriteCreate)
            try db.execute(Self.schema)
            var o = TransformOptions()
            o.types = [.init("maker_id", "INTEGER")]
            #expect(refusal { _ = try Transform.prepare(db: path, table: "items", options: o) }.contains("nothing to change"))
        }
    }

    // MARK: The affinity expressions, against real columns

    static let edgeValues: [Value] = {
        var v: [Value] = [.null, .blob([0x31, 0x32]), .blob([])]
        for i: Int64 in [0, 1, -1, 5, 1 << 53, (1 << 53) + 1, Int64.max, Int64.min, -9_007_199_254_740_993] { v.append(.integer(i)) }
        for d: Double in [0.0, -0.0, 1.5, 5.0, -5.0, 1e20, 9.223372036854775807e18, -9.223372036854775808e18, 4.5e15, 1e308, -1e308,
                          .infinity, -.infinity, 0.1 + 0.2, 2.5e-310, 9007199254740993.0, 123456789012345.67] { v.append(.real(d)) }
        for t in ["12", " 12 ", "1.5", "1e3", "abc", "12abc", "", " ", "0x10", "9223372036854775807", "9223372036854775808",
                  "-9223372036854775808", "-9223372036854775809", "9007199254740993", "-0", "-0.0", "1.0", "+5", ".5", "5.",
                  "1e400", "-1e400", "Inf", "NaN", "007", "1E5", "12\n", "\t7", "1_000", "0.1", "1e-400", "3.0e0", "00012.500"] {
            v.append(.text(t))
        }
        return v
    }()

    /// For every source affinity and every target affinity: the expression
    /// over a source column equals, storage class and bits, what the target
    /// column stores for the same value — and storing the expression's value
    /// changes nothing. Edge values, then seeded random ones.
    @Test func affinityExpressionsAreExact() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix(seed: seed)
        var values = Self.edgeValues
        for _ in 0..<400 {
            switch rng.next() % 5 {
            case 0: values.append(.integer(Int64(bitPattern: rng.next()) >> Int64(rng.next() % 64)))
            case 1:
                let d = Double(bitPattern: rng.next())
                if !d.isNaN { values.append(.real(d)) }
            case 2: values.append(.text(String(Int64(bitPattern: rng.next()) >> Int64(rng.next() % 64))))
            case 3: values.append(.text(String(Double(bitPattern: rng.next() >> 2))))
            default: values.append(.real(Double(Int64(bitPattern: rng.next()) >> Int64(rng.next() % 64))))
            }
        }
        let types = ["TEXT", "INTEGER", "REAL", "NUMERIC", "BLOB"]
        let db = try Connection(path: ":memory:", mode: .readWriteCreate)
        try db.execute("CREATE TABLE src(id INTEGER PRIMARY KEY, t TEXT, i INTEGER, r REAL, n NUMERIC, b BLOB)")
        try db.execute("CREATE TABLE dst(id INTEGER PRIMARY KEY, t TEXT, i INTEGER, r REAL, n NUMERIC, b BLOB)")
        let column = ["TEXT": "t", "INTEGER": "i", "REAL": "r", "NUMERIC": "n", "BLOB": "b"]
        let insert = try db.prepare("INSERT INTO src VALUES (?1, ?2, ?2, ?2, ?2, ?2)")
        for (k, v) in values.enumerated() {
            insert.reset()
            try insert.bind([.integer(Int64(k)), v])
            try insert.execute()
        }
        var failures: [String] = []
        for from in types {
            let x = column[from]!
            for to in types {
                let y = column[to]!
                let expr = TransformShape.affinityExpression(quoteIdentifier(x), to: columnAffinity(to, strict: false))
                try db.execute("DELETE FROM dst")
                // What the target column stores for the source value itself…
                try db.execute("INSERT INTO dst(id, \(y)) SELECT id, \(x) FROM src")
                // …and the expression's value, which storing must not change.
                let rows = try db.values("SELECT s.id, s.\(x), \(expr.replacing("\"\(x)\"", with: "s.\"\(x)\"")), d.\(y) FROM src s JOIN dst d USING (id) ORDER BY s.id")
                for r in rows where r[2] != r[3] {
                    failures.append("\(from) → \(to): \(r[1]) gives \(r[2]) but the column stores \(r[3])")
                }
                try db.execute("DELETE FROM dst")
                try db.execute("INSERT INTO dst(id, \(y)) SELECT s.id, \(expr.replacing("\"\(x)\"", with: "s.\"\(x)\"")) FROM src s")
                let again = try db.values("SELECT s.id, s.\(x), \(expr.replacing("\"\(x)\"", with: "s.\"\(x)\"")), d.\(y) FROM src s JOIN dst d USING (id) ORDER BY s.id")
                for r in again where r[2] != r[3] {
                    failures.append("\(from) → \(to): \(r[1]) gives \(r[2]), stored as \(r[3])")
                }
            }
        }
        #expect(failures.isEmpty, "seed \(seed): \(failures.prefix(20).joined(separator: "; "))")
    }
}
