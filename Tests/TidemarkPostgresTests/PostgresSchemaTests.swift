import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import TidemarkTestSupport

/// Fixtures of the PostgreSQL schema and preflight tests: a real SQLite
/// source file, a parsed plan, the resolver's mappings and carried schema.
enum PGSchemaFixture {
    static func withDirectory<R>(_ body: (String) throws -> R) throws -> R {
        try withTemporaryDirectory("tidemark-pgschema-tests", body)
    }

    struct Source {
        var connection: Connection
        var plan: Plan
        var mappings: [TableMapping]
        var schema: TargetSchema
    }

    /// Source `sql` in `dir`/src.db, plan `tables:` part `tablesYAML`.
    static func source(_ sql: String, _ tablesYAML: String, in dir: String) throws -> Source {
        let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
        try c.execute(sql)
        let plan = try Plan.parse("""
            source: src.db
            target: dst.db
            log: log
            tables:
            \(tablesYAML)
            """, relativeTo: dir)
        let mappings = try PlanResolver.resolve(plan, source: c, target: c)
        let schema = try TargetSchema.resolve(plan: plan, mappings: mappings, source: c, sameFile: false)
        return Source(connection: c, plan: plan, mappings: mappings, schema: schema)
    }

    /// The PostgreSQL schema for `sql`/`tablesYAML` (observed classes given).
    static func translate(_ sql: String, _ tablesYAML: String, observed: [String: [String: String]] = [:],
                          pgSchema: String = "app") throws -> PostgresSchemaPlan {
        try withDirectory { dir in
            let s = try source(sql, tablesYAML, in: dir)
            defer { try? s.connection.close() }
            return try PostgresSchema.translate(plan: s.plan, mappings: s.mappings, schema: s.schema, pgSchema: pgSchema, observedClasses: observed)
        }
    }

    /// With the observed classes the preflight finds.
    static func translateObserved(_ sql: String, _ tablesYAML: String) throws -> (PostgresSchemaPlan, PreflightReport) {
        try withDirectory { dir in
            let s = try source(sql, tablesYAML, in: dir)
            defer { try? s.connection.close() }
            let (report, observed) = try PostgresPreflight.run(plan: s.plan, mappings: s.mappings, schema: s.schema, source: s.connection, parseCheck: nil)
            return (try PostgresSchema.translate(plan: s.plan, mappings: s.mappings, schema: s.schema, pgSchema: "app", observedClasses: observed), report)
        }
    }
}

extension PostgresSchemaPlan {
    func table(_ target: String) -> PostgresTable? { tables.first { $0.target == target } }
    func omission(_ kind: String, containing text: String) -> TargetSchema.Omission? {
        omissions.first { $0.kind == kind && ($0.name.contains(text) || $0.reason.contains(text)) }
    }
}

/// SQLite schemas translated to PostgreSQL DDL (pure: no server); the DDL
/// is run against a real server in ``PostgresSchemaServerTests``.
@Suite struct PostgresSchemaTests {
    @Test func typesFollowAffinityAndObservedClasses() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b REAL, c TEXT, d NUMERIC, e BLOB, f, g VARCHAR(10) NOT NULL, h DOUBLE, i BLOB, j, k DECIMAL(10,2), l DATETIME);
            """, "  t: {}", observed: ["t": ["e": "blob", "f": "integer", "i": "null", "j": "null"]])
        let t = try #require(p.table("t"))
        #expect(t.columns.map(\.name) == ["id", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"])
        #expect(t.columns.map(\.type) == ["bigint", "bigint", "double precision", "text", "numeric", "bytea", "bigint", "text",
                                          "double precision", "bytea", "text", "numeric", "numeric"])
        #expect(t.columns.map(\.encoding) == [.int8, .int8, .float8, .text, .numeric, .bytea, .int8, .text, .float8, .bytea, .text, .numeric, .numeric])
        #expect(t.columns.map(\.notNull) == [true, false, false, false, false, false, false, true, false, false, false, false, false])
        #expect(t.primaryKey == ["id"])
        #expect(t.createSQL == """
            CREATE TABLE "app"."t" ("id" bigint NOT NULL, "a" bigint, "b" double precision, "c" text, "d" numeric, "e" bytea, "f" bigint, "g" text NOT NULL, "h" double precision, "i" bytea, "j" text, "k" numeric, "l" numeric, PRIMARY KEY ("id"))
            """)
        let identity = try #require(t.identity)
        #expect(identity.column == "id")
        #expect(identity.sequence == "\"app\".\"t_id_seq\"")
        #expect(identity.sequenceSQL == """
            CREATE SEQUENCE "app"."t_id_seq" OWNED BY "app"."t"."id"; ALTER TABLE "app"."t" ALTER COLUMN "id" SET DEFAULT nextval('"app"."t_id_seq"'::regclass)
            """)
        #expect(p.omissions.isEmpty)
    }

    @Test func textKeysGetCollationCAndNoSequence() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE k(code TEXT, region TEXT, n INTEGER, PRIMARY KEY (region, code)) WITHOUT ROWID;
            CREATE TABLE d(id INTEGER PRIMARY KEY DESC, v TEXT);
            CREATE TABLE b(id BIGINT PRIMARY KEY, v TEXT);
            """, "  k: {to: kinds}\n  d: {}\n  b: {}")
        let k = try #require(p.table("kinds"))
        #expect(k.createSQL == """
            CREATE TABLE "app"."kinds" ("code" text COLLATE "C" NOT NULL, "region" text COLLATE "C" NOT NULL, "n" bigint, PRIMARY KEY ("region", "code"))
            """)
        #expect(k.identity == nil)
        // `INTEGER PRIMARY KEY DESC` is not a rowid alias, BIGINT is not either.
        #expect(p.table("d")?.identity == nil)
        #expect(p.table("b")?.identity == nil)
    }

    @Test func autoincrementKeyGetsSequenceAndSetval() throws {
        let p = try PGSchemaFixture.translate("CREATE TABLE \"Order Items\"(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);", "  Order Items: {to: items}")
        let t = try #require(p.table("items"))
        let identity = try #require(t.identity)
        #expect(identity.setvalSQL.contains("GREATEST(coalesce(max(\"id\"), 0), $1::bigint)"))
        #expect(identity.setvalSQL.contains("FROM \"app\".\"items\""))
        #expect(t.createSQL == "CREATE TABLE \"app\".\"items\" (\"id\" bigint NOT NULL, \"v\" text, PRIMARY KEY (\"id\"))")
    }

    @Test func planTypesAreUsedAsGiven() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE e(id INTEGER PRIMARY KEY, created TEXT, active INTEGER, x, amount TEXT);
            """, """
              e:
                columns:
                  id: id
                  created_at: {expr: "trim(created)", type: timestamptz, not_null: true}
                  active: {expr: "active + 0", type: boolean}
                  n: {expr: "x + 0", type: INTEGER}
                  r: {expr: "x * 1.0", type: REAL}
                  anyv: {expr: "coalesce(x, x)", type: ANY}
                  price: {expr: "trim(amount)", type: numeric(10)}
                  doc: {expr: "trim(amount)", type: jsonb}
            """, observed: ["e": ["anyv": "real"]])
        let t = try #require(p.table("e"))
        #expect(t.columns.map(\.type) == ["bigint", "timestamptz", "boolean", "bigint", "double precision", "double precision", "numeric(10)", "jsonb"])
        #expect(t.columns.map(\.encoding) == [.int8, .textual, .bool, .int8, .float8, .float8, .textual, .textual])
        #expect(t.columns[1].notNull)
        #expect(t.createSQL.contains("\"created_at\" timestamptz NOT NULL, \"active\" boolean, \"n\" bigint, \"r\" double precision, \"anyv\" double precision, \"price\" numeric(10), \"doc\" jsonb"))
    }

    @Test func defaultsTranslateLiteralsAndOmitTheRest() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE d(id INTEGER PRIMARY KEY,
              n INTEGER DEFAULT 0, neg INTEGER DEFAULT -7, r REAL DEFAULT (-1.5), s TEXT DEFAULT 'it''s', ts TEXT DEFAULT CURRENT_TIMESTAMP,
              b BLOB DEFAULT x'00ff', z INTEGER DEFAULT (1 + 2), q INTEGER DEFAULT 1.5, nul TEXT DEFAULT NULL, t5 TEXT DEFAULT 5,
              flag INTEGER DEFAULT TRUE, num NUMERIC DEFAULT 2.5, dt NUMERIC DEFAULT CURRENT_DATE);
            """, "  d: {}", observed: ["d": ["b": "blob"]])
        let t = try #require(p.table("d"))
        let create = t.createSQL
        #expect(create.contains("\"n\" bigint DEFAULT 0,"))
        #expect(create.contains("\"neg\" bigint DEFAULT -7,"))
        #expect(create.contains("\"r\" double precision DEFAULT -1.5,"))
        #expect(create.contains("\"s\" text DEFAULT 'it''s',"))
        #expect(create.contains("\"ts\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"))
        #expect(create.contains("\"b\" bytea DEFAULT E'\\\\x00ff'::bytea,"))
        #expect(create.contains("\"z\" bigint,"))
        #expect(create.contains("\"q\" bigint,"))
        #expect(create.contains("\"nul\" text,"))
        #expect(create.contains("\"t5\" text DEFAULT '5',"))
        #expect(create.contains("\"flag\" bigint DEFAULT 1,"))
        #expect(create.contains("\"num\" numeric DEFAULT 2.5,"))
        #expect(create.contains("\"dt\" numeric,"))
        #expect(p.omissions.map(\.kind) == ["default", "default", "default"])
        #expect(p.omission("default", containing: "(1 + 2)")?.reason.contains("expression") == true)
        #expect(p.omission("default", containing: "1.5")?.reason.contains("not an integer") == true)
        #expect(p.omission("default", containing: "CURRENT_DATE") != nil)
        #expect(p.omissions.allSatisfy { $0.table == "d" && !$0.blocksCutover })
    }

    @Test func checksTranslateSimpleExpressions() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER CHECK (n >= 0 AND n <= 10), s TEXT,
              "odd name" TEXT,
              CONSTRAINT s_in CHECK (s IN ('a', 'b') OR s IS NULL),
              CHECK (length(s) < 5), CHECK (s NOTNULL OR n BETWEEN 1 AND 2), CHECK (lower(s) != upper(s)),
              CHECK (s LIKE 'a%'), CHECK (typeof(n) = 'integer'), CHECK (n), CHECK (length(n) > 0), CHECK (n == 1 OR s = "odd name"),
              CHECK (coalesce(n, 0) + abs(n) % 2 = 0), CHECK (s IS 'a'));
            """, """
              c:
                columns:
                  id: id
                  count: n
                  s: s
                  odd name: '"odd name"'
            """)
        let t = try #require(p.table("c"))
        #expect(t.createSQL == """
            CREATE TABLE "app"."c" ("id" bigint NOT NULL, "count" bigint, "s" text, "odd name" text, PRIMARY KEY ("id"), CHECK ("count" >= 0 AND "count" <= 10), CONSTRAINT "s_in" CHECK ("s" IN ('a', 'b') OR "s" IS NULL), CHECK (length("s") < 5), CHECK ("s" IS NOT NULL OR "count" BETWEEN 1 AND 2), CHECK (lower(("s") COLLATE "C") <> upper(("s") COLLATE "C")), CHECK ("count" = 1 OR "s" = "odd name"), CHECK (coalesce("count", 0) + abs("count") % 2 = 0))
            """)
        let checks = p.omissions.filter { $0.kind == "check" }
        #expect(checks.count == 5)
        #expect(p.omission("check", containing: "LIKE")?.reason.contains("LIKE") == true)
        #expect(p.omission("check", containing: "typeof")?.reason.contains("typeof") == true)
        #expect(p.omission("check", containing: "CHECK (count)")?.reason.contains("boolean") == true)
        #expect(p.omission("check", containing: "length(count)")?.reason.contains("bigint") == true)
        #expect(p.omission("check", containing: "IS 'a'")?.reason.contains("IS") == true)
    }

    @Test func uniqueConstraintsAndIndexes() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, a INTEGER, b TEXT, deleted INTEGER, doc TEXT, name TEXT,
              CONSTRAINT ab UNIQUE (a, b), UNIQUE (b COLLATE NOCASE));
            CREATE UNIQUE INDEX u_email_lower ON u(lower(email));
            CREATE INDEX u_live ON u(a DESC, b) WHERE deleted IS NULL;
            CREATE INDEX u_nocase ON u(name COLLATE NOCASE);
            CREATE INDEX u_json ON u(json_extract(doc, '$.k'));
            CREATE INDEX u_binary ON u(name COLLATE BINARY ASC);
            """, "  u: {to: users}")
        let t = try #require(p.table("users"))
        #expect(t.createSQL == """
            CREATE TABLE "app"."users" ("id" bigint NOT NULL, "email" text NOT NULL UNIQUE, "a" bigint, "b" text, "deleted" bigint, "doc" text, "name" text, PRIMARY KEY ("id"), CONSTRAINT "ab" UNIQUE ("a", "b"))
            """)
        #expect(t.indexes == [
            PostgresIndex(name: "u_email_lower", sql: "CREATE UNIQUE INDEX \"u_email_lower\" ON \"app\".\"users\" ((lower((\"email\") COLLATE \"C\")))"),
            PostgresIndex(name: "u_live", sql: "CREATE INDEX \"u_live\" ON \"app\".\"users\" (\"a\" DESC, \"b\") WHERE \"deleted\" IS NULL"),
            PostgresIndex(name: "u_binary", sql: "CREATE INDEX \"u_binary\" ON \"app\".\"users\" (\"name\" ASC)"),
        ])
        #expect(p.omission("unique", containing: "NOCASE") != nil)
        #expect(p.omission("index", containing: "u_nocase")?.reason.contains("NOCASE") == true)
        #expect(p.omission("index", containing: "u_json")?.reason.contains("json_extract") == true)
        #expect(p.omissions.count == 3)
    }

    @Test func foreignKeysAreAddedNotValidThenValidated() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE parent(id INTEGER PRIMARY KEY, code TEXT UNIQUE, label TEXT);
            CREATE TABLE child(id INTEGER PRIMARY KEY,
              parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE ON UPDATE NO ACTION,
              code TEXT, label TEXT, other INTEGER,
              CONSTRAINT child_code FOREIGN KEY (code) REFERENCES parent(code) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
              FOREIGN KEY (other) REFERENCES parent);
            """, "  parent: {to: parents}\n  child: {columns: {id: id, pid: parent_id, code: code, label: label, other: other}}")
        let c = try #require(p.table("child"))
        #expect(c.foreignKeys.map(\.name) == ["child_pid_fkey", "child_code", "child_other_fkey"])
        #expect(c.foreignKeys[0].add == """
            ALTER TABLE "app"."child" ADD CONSTRAINT "child_pid_fkey" FOREIGN KEY ("pid") REFERENCES "app"."parents" ("id") ON DELETE CASCADE ON UPDATE NO ACTION NOT VALID
            """)
        #expect(c.foreignKeys[0].validate == "ALTER TABLE \"app\".\"child\" VALIDATE CONSTRAINT \"child_pid_fkey\"")
        #expect(c.foreignKeys[1].add == """
            ALTER TABLE "app"."child" ADD CONSTRAINT "child_code" FOREIGN KEY ("code") REFERENCES "app"."parents" ("code") ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED NOT VALID
            """)
        #expect(c.foreignKeys[2].add.contains("FOREIGN KEY (\"other\") REFERENCES \"app\".\"parents\" (\"id\") NOT VALID"))
        #expect(p.omissions.isEmpty)
        #expect(!c.createSQL.contains("REFERENCES"))
    }

    @Test func triggersViewsAndGeneratedColumnsAreOmissions() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, name TEXT COLLATE NOCASE);
            CREATE TRIGGER t_touch AFTER UPDATE ON t BEGIN UPDATE t SET a = a WHERE id = new.id; END;
            CREATE VIEW t_view AS SELECT id, a FROM t;
            """, "  t: {}")
        let trigger = try #require(p.omission("trigger", containing: "t_touch"))
        #expect(trigger.blocksCutover && trigger.table == "t" && trigger.reason.contains("recreate"))
        let view = try #require(p.omission("view", containing: "t_view"))
        #expect(view.blocksCutover)
        #expect(p.omission("generated column", containing: "twice") != nil)
        #expect(p.omission("collate", containing: "NOCASE") != nil)
        #expect(p.table("t")?.columns.map(\.name) == ["id", "a", "name"])
        #expect(p.table("t")?.createSQL.contains("twice") == false)
    }

    @Test func carriedOmissionsAreKept() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER CHECK (a > 0), b TEXT);
            CREATE INDEX t_a ON t(a);
            """, "  t: {columns: {id: id, b: b}}")
        #expect(p.omission("check", containing: "a > 0") != nil)
        #expect(p.omission("index", containing: "t_a") != nil)
    }

    @Test func foreignKeysToLaterTablesAndUniqueIndexes() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE child(id INTEGER PRIMARY KEY, ref TEXT REFERENCES parent(code), tag TEXT REFERENCES parent(tag));
            CREATE TABLE parent(id INTEGER PRIMARY KEY ON CONFLICT REPLACE, code TEXT, tag TEXT COLLATE NOCASE);
            CREATE UNIQUE INDEX parent_code ON parent(code);
            CREATE UNIQUE INDEX parent_tag ON parent(tag COLLATE NOCASE);
            """, "  child: {}\n  parent: {}")
        let c = try #require(p.table("child"))
        // The parent comes later in the plan; its unique index makes code a key.
        #expect(c.foreignKeys.map(\.name) == ["child_ref_fkey"])
        #expect(c.foreignKeys.first?.add.contains("REFERENCES \"app\".\"parent\" (\"code\") NOT VALID") == true)
        // A NOCASE unique index is not carried, so tag is not unique in PostgreSQL.
        #expect(p.omission("foreign key", containing: "tag")?.reason.contains("primary key or unique") == true)
        #expect(p.omission("index", containing: "parent_tag") != nil)
        #expect(p.omission("on conflict", containing: "REPLACE") != nil)
        #expect(p.omission("collate", containing: "tag") != nil)
    }

    @Test func longNamesFitWithAHash() throws {
        let long = String(repeating: "x", count: 70)
        let a = PostgresSchema.fitName(long)
        let b = PostgresSchema.fitName(long + "y")
        #expect(a.utf8.count == 63 && b.utf8.count == 63 && a != b)
        #expect(PostgresSchema.fitName("short") == "short")
        let multibyte = PostgresSchema.fitName(String(repeating: "é", count: 40))
        #expect(multibyte.utf8.count <= 63)
        #expect(throws: MigrationError.self) {
            _ = try PGSchemaFixture.translate("CREATE TABLE t(id INTEGER PRIMARY KEY);", "  t: {to: \(long)}")
        }
    }

    @Test func textualInputIsExact() {
        #expect(PostgresSchema.textualInput(.integer(Int64.min)) == "-9223372036854775808")
        #expect(PostgresSchema.textualInput(.real(0.1)) == "0.1")
        #expect(PostgresSchema.textualInput(.real(-Double.infinity)) == "-Infinity")
        #expect(PostgresSchema.textualInput(.text("2024-01-01")) == "2024-01-01")
        #expect(PostgresSchema.textualInput(.blob([1])) == nil)
        #expect(PostgresSchema.textualInput(.null) == nil)
        for d in [0.1, 1e300, -2.5e-308, 123456789.123456789, Double.ulpOfOne] {
            #expect(Double(PostgresSchema.decimalText(d)) == d)
        }
    }
}

/// The translated DDL run on a real PostgreSQL server
/// (`PostgresServer.shared()`, a database per test), and the preflight's
/// parse check of plan-typed values there.
@Suite struct PostgresSchemaServerTests {
    static func database() throws -> PGConnection {
        let server = try PostgresServer.shared()
        return try PGConnection(server.conninfo(database: try server.createDatabase("pgschema")))
    }

    /// A result value as plain text (hex for bytes).
    static func plain(_ v: Value) -> String {
        switch v {
        case .null: return "NULL"
        case .integer(let i): return String(i)
        case .real(let d): return "\(d)"
        case .text(let s): return s
        case .blob(let b): return b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        }
    }

    static func sqlState(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch let e as PGError { return e.sqlState ?? "none" } catch { return "other: \(error)" }
    }

    /// Creates everything of `p` in schema app, in the migrator's order:
    /// tables (and sequences), [rows], indexes, foreign keys added NOT VALID, validated.
    static func build(_ p: PostgresSchemaPlan, on c: PGConnection, rows: [String] = []) throws {
        try c.execute("CREATE SCHEMA \(PGSQL.ident(p.schema))")
        for t in p.tables {
            try c.execute(t.createSQL)
            if let i = t.identity { try c.execute(i.sequenceSQL) }
        }
        for r in rows { try c.execute(r) }
        for t in p.tables { for i in t.indexes { try c.execute(i.sql) } }
        for t in p.tables { for f in t.foreignKeys { try c.execute(f.add) } }
        for t in p.tables { for f in t.foreignKeys { try c.execute(f.validate) } }
    }

    @Test func translatedDDLRunsAndEnforces() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE parent(id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT NOT NULL UNIQUE, email TEXT, n NUMERIC DEFAULT 2.5,
              created TEXT DEFAULT CURRENT_TIMESTAMP, data BLOB DEFAULT x'00ff', CHECK (length(code) BETWEEN 1 AND 8));
            CREATE UNIQUE INDEX parent_email ON parent(lower(email));
            CREATE INDEX parent_recent ON parent(created DESC) WHERE n IS NOT NULL;
            CREATE TABLE child(region TEXT, seq INTEGER, parent_id INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE,
              code TEXT REFERENCES parent(code) DEFERRABLE INITIALLY DEFERRED, qty INTEGER DEFAULT 1 CHECK (qty > 0 AND qty IN (1, 2, 3)),
              PRIMARY KEY (region, seq)) WITHOUT ROWID;
            CREATE TRIGGER child_touch AFTER INSERT ON child BEGIN SELECT 1; END;
            """, "  parent: {}\n  child: {}", observed: ["parent": ["data": "blob"]])
        let c = try Self.database()
        defer { c.close() }
        try Self.build(p, on: c, rows: [
            "INSERT INTO app.parent (id, code, email) VALUES (1, 'a', 'A@x'), (7, 'b', NULL)",
            "INSERT INTO app.child (region, seq, parent_id, code) VALUES ('eu', 1, 1, 'a'), ('EU', 1, 7, NULL)",
        ])
        // Columns as translated.
        let cols = try c.query("""
            SELECT attname::text, format_type(atttypid, atttypmod), attnotnull, coalesce(collname::text, '')
            FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
            WHERE attrelid = 'app.child'::regclass AND attnum > 0 ORDER BY attnum
            """).rows.map { $0.map(Self.plain).joined(separator: " ") }
        #expect(cols == ["region text 1 C", "seq bigint 1 ", "parent_id bigint 1 ", "code text 0 ", "qty bigint 0 "])
        // Identity: after setval past the copied keys, a keyless insert gets 8.
        let identity = try #require(p.table("parent")?.identity)
        _ = try c.query(identity.setvalSQL, [.value(.integer(0))])
        let next = try c.query("INSERT INTO app.parent (code) VALUES ('c') RETURNING id, n::text, length(created), data")
        #expect(next.rows.first?.map(Self.plain) == ["8", "2.5", "19", "00ff"])
        // CHECKs, UNIQUE (lower(email)) and foreign keys enforce.
        #expect(Self.sqlState { try c.execute("INSERT INTO app.parent (code) VALUES ('toolongcode')") } == "23514")
        #expect(Self.sqlState { try c.execute("INSERT INTO app.parent (code, email) VALUES ('d', 'a@X')") } == "23505")
        #expect(Self.sqlState { try c.execute("INSERT INTO app.child (region, seq, parent_id, qty) VALUES ('x', 1, 1, 4)") } == "23514")
        #expect(Self.sqlState { try c.execute("INSERT INTO app.child (region, seq, parent_id) VALUES ('x', 2, 99)") } == "23503")
        try c.execute("DELETE FROM app.parent WHERE id = 7")
        #expect(try c.query("SELECT count(*) FROM app.child").rows.first?.first.map(Self.plain) == "1")
        // Key order is bytewise ('EU' < 'eu'), as in SQLite.
        try c.execute("INSERT INTO app.child (region, seq, parent_id) VALUES ('EU', 2, 1)")
        #expect(try c.query("SELECT region FROM app.child ORDER BY region, seq").rows.map { Self.plain($0[0]) } == ["EU", "eu"])
        #expect(p.omission("trigger", containing: "child_touch")?.blocksCutover == true)
    }

    @Test func everyTranslatedPieceOfTheUnitSchemasRuns() throws {
        // The schemas of the pure tests, created for real: nothing the
        // translation emits may be refused by PostgreSQL.
        let cases: [(String, String, [String: [String: String]])] = [
            ("CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b REAL, c TEXT, d NUMERIC, e BLOB, f, g VARCHAR(10) NOT NULL, h DOUBLE, k DECIMAL(10,2));", "  t: {}", ["t": ["e": "blob", "f": "integer"]]),
            ("""
             CREATE TABLE d(id INTEGER PRIMARY KEY, n INTEGER DEFAULT 0, neg INTEGER DEFAULT -7, r REAL DEFAULT (-1.5), s TEXT DEFAULT 'it''s',
               ts TEXT DEFAULT CURRENT_TIMESTAMP, b BLOB DEFAULT x'00ff', t5 TEXT DEFAULT 5, flag INTEGER DEFAULT TRUE, num NUMERIC DEFAULT 2.5);
             """, "  d: {}", ["d": ["b": "blob"]]),
            ("""
             CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER CHECK (n >= 0 AND n <= 10), s TEXT, CONSTRAINT s_in CHECK (s IN ('a', 'b') OR s IS NULL),
               CHECK (length(s) < 5), CHECK (s NOTNULL OR n BETWEEN 1 AND 2), CHECK (lower(s) != upper(s)), CHECK (coalesce(n, 0) + abs(n) % 2 = 0),
               CHECK (CASE WHEN n > 5 THEN s IS NOT NULL ELSE 1 = 1 END), CHECK (trim(s) || 'x' <> 'x'));
             """, "  c: {}", [:]),
            ("""
             CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, a INTEGER, b TEXT, deleted INTEGER, CONSTRAINT ab UNIQUE (a, b));
             CREATE UNIQUE INDEX u_email_lower ON u(lower(email));
             CREATE INDEX u_live ON u(a DESC, b) WHERE deleted IS NULL;
             CREATE INDEX u_expr ON u(abs(a) * 2, substr(b, 1, 2));
             """, "  u: {to: users}", [:]),
            ("""
             CREATE TABLE odd(id INTEGER PRIMARY KEY AUTOINCREMENT, "col ""q""\" TEXT UNIQUE);
             CREATE TABLE kid(id INTEGER PRIMARY KEY, o TEXT REFERENCES odd("col ""q""\") ON UPDATE SET NULL);
             """, "  odd: {to: 'wéird \"t\"'}\n  kid: {}", [:]),
        ]
        for (sql, yaml, observed) in cases {
            let p = try PGSchemaFixture.translate(sql, yaml, observed: observed)
            let c = try Self.database()
            defer { c.close() }
            try Self.build(p, on: c)
            #expect(p.tables.count >= 1)
        }
    }

    @Test func validateMovesWhatTheServerRefusesToOmissions() throws {
        let p = try PGSchemaFixture.translate("""
            CREATE TABLE v(id INTEGER PRIMARY KEY, s TEXT CHECK (s > 0), n INTEGER CHECK (n > 0), deleted INTEGER);
            CREATE INDEX v_live ON v(n) WHERE deleted = '';
            CREATE INDEX v_n ON v(n) WHERE deleted IS NULL;
            CREATE TABLE w(id INTEGER PRIMARY KEY, v_id INTEGER REFERENCES v(id), v_s TEXT REFERENCES v(id));
            """, "  v: {}\n  w: {}")
        #expect(p.table("v")?.checks.count == 2)
        let c = try Self.database()
        defer { c.close() }
        let valid = try PostgresSchema.validate(p, on: c)
        let t = try #require(valid.table("v"))
        #expect(t.checks.map(\.label) == ["CHECK (n > 0)"])
        #expect(t.indexes.map(\.name) == ["v_n"])
        #expect(valid.omission("check", containing: "s > 0")?.reason.contains("PostgreSQL refuses") == true)
        #expect(valid.omission("index", containing: "v_live") != nil)
        // A text column cannot reference a bigint key in PostgreSQL.
        #expect(valid.table("w")?.foreignKeys.map(\.name) == ["w_v_id_fkey"])
        #expect(valid.omission("foreign key", containing: "w_v_s_fkey")?.reason.contains("PostgreSQL refuses") == true)
        // Nothing was left on the server; what remains runs for real.
        #expect(try c.query("SELECT count(*) FROM pg_class WHERE relname = 'v'").rows.first?.first.map(Self.plain) == "0")
        try Self.build(valid, on: c)
        #expect(Self.sqlState { try c.execute("INSERT INTO app.v (id, n) VALUES (1, 0)") } == "23514")
    }

    /// Seeded random values of every storage class: when the preflight
    /// passes them, the translated types hold them exactly (written with
    /// each column's encoding, read back unchanged).
    @Test func preflightCleanValuesRoundTripExactly() throws {
        var seed = UInt64(UInt32.random(in: 1...UInt32.max))
        print("preflightCleanValuesRoundTripExactly seed \(seed)")
        func next() -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return seed ^ (seed >> 29)
        }
        func text() -> String {
            var out = ""
            for _ in 0..<Int(next() % 12) {
                let ranges: [ClosedRange<UInt32>] = [0x20...0x7E, 0x01...0x1F, 0xA0...0x24F, 0x4E00...0x4FFF, 0x1F600...0x1F64F]
                let r = ranges[Int(next() % UInt64(ranges.count))]
                if let u = Unicode.Scalar(r.lowerBound + UInt32(next() % UInt64(r.count))) { out.unicodeScalars.append(u) }
            }
            return out
        }
        func real() -> Double {
            let specials: [Double] = [0, -0.0, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 0.1, 1e300]
            if next() % 4 == 0 { return specials[Int(next() % UInt64(specials.count))] }
            let d = Double(bitPattern: next())
            return d.isNaN ? 1.5 : d
        }
        func finite() -> Double {
            var d = real()
            while !d.isFinite || (d == 0 && d.sign == .minus) { d = real() }
            return d
        }
        let c = try Self.database()
        defer { c.close() }
        try PGSchemaFixture.withDirectory { dir in
            let s = try PGSchemaFixture.source("CREATE TABLE r(id INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT, n NUMERIC, b BLOB, u);", "  r: {}", in: dir)
            defer { try? s.connection.close() }
            let insert = try s.connection.prepare("INSERT INTO r VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            let ints: [Int64] = [.min, .max, 0, -1, 1 << 53 + 1]
            for id in 1...300 {
                let i: Value = next() % 5 == 0 ? .integer(ints[Int(next() % 5)]) : .integer(Int64(bitPattern: next()))
                let n: Value = next() % 2 == 0 ? .integer(Int64(bitPattern: next())) : .real(finite())
                let b: Value = .blob((0..<Int(next() % 9)).map { _ in UInt8(truncatingIfNeeded: next()) })
                let row: [Value] = [.integer(Int64(id)), next() % 10 == 0 ? .null : i, .real(real()), .text(text()), n, b, .text(text())]
                insert.reset()
                try insert.bind(row)
                try insert.execute()
            }
            let (report, observed) = try PostgresPreflight.run(plan: s.plan, mappings: s.mappings, schema: s.schema, source: s.connection, server: c)
            #expect(report.isClean, "\(report.message)")
            let p = try PostgresSchema.translate(plan: s.plan, mappings: s.mappings, schema: s.schema, pgSchema: "app", observedClasses: observed)
            let t = try #require(p.table("r"))
            #expect(t.columns.map(\.encoding) == [.int8, .int8, .float8, .text, .numeric, .bytea, .text])
            try Self.build(p, on: c)
            var source: [[Value]] = []
            let read = try s.connection.prepare("SELECT id, i, f, s, n, b, u FROM r ORDER BY id")
            while try read.step() { source.append((0..<7).map { read.columnValue(Int32($0)) }) }
            for row in source {
                let params: [PGParam] = zip(row, t.columns).map { v, col in
                    col.encoding == .numeric ? .textual(PostgresSchema.textualInput(v)) : .value(v)
                }
                _ = try c.query("INSERT INTO app.r VALUES ($1, $2, $3, $4, $5::numeric, $6, $7)", params)
            }
            let back = try c.query("SELECT id, i, f, s, n::text, b, u FROM app.r ORDER BY id").rows
            #expect(back.count == source.count)
            for (a, b) in zip(source, back) {
                for k in [0, 1, 3, 5, 6] { #expect(a[k] == b[k], "row \(a[0]) column \(k): \(a[k]) vs \(b[k])") }
                if case .real(let x) = a[2], case .real(let y) = b[2] { #expect(x.bitPattern == y.bitPattern, "row \(a[0]) f: \(x) vs \(y)") }
                else { #expect(a[2] == b[2]) }
                switch (a[4], b[4]) {
                case (.integer(let x), .text(let y)): #expect(String(x) == y, "row \(a[0]) n")
                case (.real(let x), .text(let y)): #expect(Double(y)?.bitPattern == x.bitPattern, "row \(a[0]) n: \(x) vs \(y)")
                default: Issue.record("row \(a[0]) n: \(a[4]) vs \(b[4])")
                }
            }
        }
    }

    @Test func planTypedValuesAreParsedOnTheServer() throws {
        let c = try Self.database()
        defer { c.close() }
        try PGSchemaFixture.withDirectory { dir in
            var sql = "CREATE TABLE e(id INTEGER PRIMARY KEY, created TEXT, amount TEXT, doc TEXT);"
            // 2500 rows: more than one batch; two bad timestamps, one amount too large
            // and one that numeric(5) would round, one bad JSON.
            for i in 1...2500 {
                let ts = i == 17 ? "not a date" : i == 2400 ? "2024-02-30 10:00:00" : "2024-01-01 10:00:00+00"
                sql += "INSERT INTO e VALUES (\(i), '\(ts)', '\(i == 5 ? "123456" : i == 6 ? "1.5" : "12.0")', '\(i == 9 ? "{\"a\":" : "{\"a\": \(i)}")');"
            }
            let s = try PGSchemaFixture.source(sql, """
                  e:
                    columns:
                      id: id
                      created_at: {expr: "trim(created)", type: timestamptz}
                      amount: {expr: "trim(amount)", type: "numeric(5)"}
                      doc: {expr: "trim(doc)", type: jsonb}
                """, in: dir)
            defer { try? s.connection.close() }
            let (report, _) = try PostgresPreflight.run(plan: s.plan, mappings: s.mappings, schema: s.schema, source: s.connection, server: c)
            #expect(report.unchecked.isEmpty)
            #expect(report.violations.map(\.line) == [
                "e -> e: type created_at (timestamptz): values PostgreSQL does not accept as timestamptz: 2 rows, first keys (id=17), (id=2400); correct those rows, or the plan's expression or type: for the column",
                "e -> e: type amount (numeric(5)): values PostgreSQL does not accept as numeric(5): 2 rows, first keys (id=5), (id=6); correct those rows, or the plan's expression or type: for the column",
                "e -> e: type doc (jsonb): values PostgreSQL does not accept as jsonb: 1 row, first keys (id=9); correct those rows, or the plan's expression or type: for the column",
            ])
            // Nothing is left behind in the session.
            #expect(try c.query("SELECT count(*) FROM pg_proc WHERE proname LIKE 'tidemark_unparsable%'").rows.first?.first.map(Self.plain) == "0")
            // A type the server does not know is a plan error naming it.
            let bad = try PGSchemaFixture.source("", "  e: {columns: {id: id, x: {expr: \"trim(created)\", type: datetime}}}", in: dir)
            #expect(throws: MigrationError.self) {
                _ = try PostgresPreflight.run(plan: bad.plan, mappings: bad.mappings, schema: bad.schema, source: bad.connection, server: c)
            }
        }
    }
}
