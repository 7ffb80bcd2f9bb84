import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The target's schema carried from the source through the plan: checked by
/// creating what the resolver produced in a fresh database and asking SQLite
/// (`table_xinfo`, `index_list`/`index_xinfo`, `foreign_key_list`, inserts
/// that a CHECK must refuse), against a hand-written expected schema.
@Suite struct TargetSchemaTests {
    /// Source `sql`, plan `yaml` (tables: part only) → resolved schema.
    static func resolve(_ sql: String, _ tablesYAML: String, sameFile: Bool = false,
                        extra: String = "", in dir: String) throws -> (TargetSchema, Connection) {
        let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
        try c.execute(sql)
        let plan = try Plan.parse("""
            source: src.db
            target: \(sameFile ? "src.db" : "dst.db")
            log: log
            \(extra)
            tables:
            \(tablesYAML)
            """, relativeTo: dir)
        let mappings = try PlanResolver.resolve(plan, source: c, target: c)
        return (try TargetSchema.resolve(plan: plan, mappings: mappings, source: c, sameFile: sameFile), c)
    }

    /// Creates `schema`'s tables and indexes in a fresh database.
    static func materialize(_ schema: TargetSchema, triggersAndViews: Bool = true, before: String = "") throws -> Connection {
        let db = try Connection(path: ":memory:", mode: .readWriteCreate)
        if !before.isEmpty { try db.execute(before) }
        for t in schema.tables { try db.execute(t.createSQL) }
        for i in schema.indexes { try db.execute(i.sql) }
        if triggersAndViews {
            for o in schema.views + schema.triggers { try db.execute(o.sql) }
        }
        return db
    }

    /// What SQLite says about `table`'s columns, indexes and foreign keys
    /// (automatic index names are normalized: they depend on nothing but order).
    static func facts(_ db: Connection, _ table: String) throws -> [String] {
        var out: [String] = []
        for r in try db.values("SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1)", [.text(table)]) {
            out.append("column \(r)")
        }
        for r in try db.values("SELECT wr, strict FROM pragma_table_list WHERE name = ?1", [.text(table)]) { out.append("table \(r)") }
        let indexes = try db.values("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY name", [.text(table)])
        for r in indexes {
            guard case .text(let name) = r[0] else { continue }
            let shown = name.hasPrefix("sqlite_autoindex") ? "auto" : name
            out.append("index \(shown) \(r[1...])")
            for x in try db.values("SELECT seqno, cid, name, \"desc\", coll, key FROM pragma_index_xinfo(?1)", [.text(name)]) {
                out.append("  \(shown) \(x)")
            }
        }
        for r in try db.values("SELECT \"table\", \"from\", \"to\", on_update, on_delete, match FROM pragma_foreign_key_list(?1) ORDER BY id, seq", [.text(table)]) {
            out.append("fk \(r)")
        }
        return out.sorted()
    }

    static let shop = """
        CREATE TABLE users(
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          email TEXT NOT NULL COLLATE NOCASE UNIQUE,
          name TEXT DEFAULT 'users' CHECK (length(name) < 100),
          legacy TEXT CONSTRAINT legacy_nonempty CHECK (legacy <> ''),
          "users" TEXT DEFAULT 'x',
          created REAL NOT NULL DEFAULT (julianday('now')),
          CONSTRAINT email_not_legacy CHECK (email <> legacy)
        );
        CREATE TABLE orders(
          id INTEGER NOT NULL,
          user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          total REAL NOT NULL DEFAULT 0 CHECK (total >= 0),
          status TEXT NOT NULL DEFAULT 'new' COLLATE NOCASE,
          note TEXT,
          PRIMARY KEY (id)
        ) STRICT;
        CREATE TABLE order_items(
          order_id INTEGER NOT NULL,
          line INTEGER NOT NULL,
          sku TEXT NOT NULL COLLATE NOCASE,
          qty INTEGER NOT NULL CHECK (qty > 0),
          PRIMARY KEY (order_id, line DESC),
          FOREIGN KEY (order_id) REFERENCES orders(id)
        ) WITHOUT ROWID;
        CREATE TABLE audit(id INTEGER PRIMARY KEY, msg TEXT);
        CREATE INDEX users_name ON users(name COLLATE NOCASE DESC);
        CREATE UNIQUE INDEX users_lower_email ON users(lower(email));
        CREATE INDEX orders_open ON orders(user_id, status) WHERE status <> 'done';
        CREATE INDEX users_legacy ON users(legacy);
        CREATE TRIGGER users_audit AFTER UPDATE OF email ON users BEGIN INSERT INTO audit(msg) VALUES ('users changed ' || new.email); END;
        CREATE TRIGGER orders_touch AFTER UPDATE OF total ON orders BEGIN UPDATE orders SET note = 'users' WHERE id = new.id; END;
        CREATE VIEW user_totals AS SELECT u.id, u.email, u."users", 'users' AS label, sum(o.total) AS total FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.id;
        """

    static let shopPlan = """
          users:
            to: accounts
            columns:
              id: id
              mail: email
              name: name
              users: '"users"'
              created: created
              email_lower: {expr: lower(email), type: TEXT, not_null: true}
          orders:
            to: purchases
            columns:
              id: id
              account_id: user_id
              total: total
              status: status
              note: note
          order_items:
            to: purchase_items
        """

    static let shopExpected = """
        CREATE TABLE accounts(
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          mail TEXT NOT NULL COLLATE NOCASE UNIQUE,
          name TEXT DEFAULT 'users' CHECK (length(name) < 100),
          "users" TEXT DEFAULT 'x',
          created REAL NOT NULL DEFAULT (julianday('now')),
          email_lower TEXT NOT NULL
        );
        CREATE TABLE purchases(
          id INTEGER NOT NULL,
          account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
          total REAL NOT NULL DEFAULT 0 CHECK (total >= 0),
          status TEXT NOT NULL DEFAULT 'new' COLLATE NOCASE,
          note TEXT,
          PRIMARY KEY (id)
        ) STRICT;
        CREATE TABLE purchase_items(
          order_id INTEGER NOT NULL,
          line INTEGER NOT NULL,
          sku TEXT NOT NULL COLLATE NOCASE,
          qty INTEGER NOT NULL CHECK (qty > 0),
          PRIMARY KEY (order_id, line DESC),
          FOREIGN KEY (order_id) REFERENCES purchases(id)
        ) WITHOUT ROWID;
        CREATE INDEX users_name ON accounts(name COLLATE NOCASE DESC);
        CREATE UNIQUE INDEX users_lower_email ON accounts(lower(mail));
        CREATE INDEX orders_open ON purchases(account_id, status) WHERE status <> 'done';
        """

    @Test("a multi-table schema is carried through renames, with what cannot be carried reported")
    func shopSchema() throws {
        try withTemporaryDirectory { dir in
            let (schema, source) = try Self.resolve(Self.shop, Self.shopPlan, in: dir)
            // FTS5 over users, when the linked SQLite has it.
            let hasFTS5 = (try? source.execute("CREATE VIRTUAL TABLE users_fts USING fts5(name, content='users', content_rowid='id')")) != nil
            let schemaAgain = hasFTS5 ? try Self.resolve2(source, Self.shopPlan, dir: dir) : schema

            let got = try Self.materialize(schemaAgain)
            let expected = try Connection(path: ":memory:", mode: .readWriteCreate)
            try expected.execute(Self.shopExpected)
            for t in ["accounts", "purchases", "purchase_items"] {
                #expect(try Self.facts(got, t) == Self.facts(expected, t), "table \(t)")
            }
            #expect(schemaAgain.tables.map(\.target) == ["accounts", "purchases", "purchase_items"])
            #expect(schemaAgain.tables.map(\.autoincrement) == [true, false, false])
            #expect(schemaAgain.indexes.map(\.name) == ["users_name", "users_lower_email", "orders_open"])
            #expect(schemaAgain.indexes.map(\.table) == ["accounts", "accounts", "purchases"])

            // CHECKs are carried with the new names (and work).
            try got.execute("INSERT INTO accounts(id, mail, name, created, email_lower) VALUES (1, 'a@x', 'ann', 1, 'a@x')")
            #expect(throws: SQLiteError.self) { try got.execute("INSERT INTO accounts(id, mail, name, created, email_lower) VALUES (2, 'b@x', '\(String(repeating: "n", count: 120))', 1, 'b@x')") }
            #expect(throws: SQLiteError.self) { try got.execute("INSERT INTO purchases VALUES (1, 1, -1, 'new', NULL)") }
            #expect(throws: SQLiteError.self) { try got.execute("INSERT INTO accounts(id, mail, created, email_lower) VALUES (3, 'A@X', 1, 'x')") }

            // The trigger on a carried table is rewritten; the literal 'users' stays.
            #expect(schemaAgain.triggers.map(\.name) == ["orders_touch"])
            let trigger = try #require(schemaAgain.triggers.first)
            #expect(trigger.table == "purchases")
            #expect(trigger.sql.contains("UPDATE \"purchases\" SET note = 'users'"))
            // The view: table, column and quoted-identifier names rewritten, literals kept.
            let view = try #require(schemaAgain.views.first)
            #expect(view.name == "user_totals" && view.table == "accounts" && view.replacesSQL == nil)
            #expect(try got.values("SELECT * FROM user_totals").isEmpty)
            let viewColumns = try got.values("SELECT name FROM pragma_table_info('user_totals')")
            #expect(viewColumns == [[.text("id")], [.text("mail")], [.text("users")], [.text("label")], [.text("total")]])
            #expect(view.sql.contains("'users' AS label") && view.sql.contains("u.\"users\""))
            #expect(try got.values("SELECT label FROM user_totals").isEmpty)
            try got.execute("INSERT INTO purchases VALUES (1, 1, 5, 'new', NULL)")
            #expect(try got.values("SELECT mail, users, label, total FROM user_totals") == [[.text("a@x"), .text("x"), .text("users"), .real(5)]])

            // What was left out, and why.
            let omitted = schemaAgain.omissions.map { "\($0.kind)|\($0.name)|\($0.table)|\($0.blocksCutover)" }
            var expectedOmissions = [
                "check|CONSTRAINT legacy_nonempty CHECK (legacy <> '')|users|false",
                "index|users_legacy|users|false",
                "trigger|users_audit|users|true",
                "check|CONSTRAINT email_not_legacy CHECK (email <> legacy)|users|false",
            ]
            if hasFTS5 { expectedOmissions.append("virtual table|users_fts|users|false") }
            #expect(Set(omitted) == Set(expectedOmissions))
            #expect(omitted.count == expectedOmissions.count)
            #expect(schemaAgain.omissions.first { $0.name == "users_legacy" }?.reason.contains("legacy") == true)
            #expect(schemaAgain.omissions.first { $0.name == "users_audit" }?.reason.contains("audit") == true)
        }
    }

    static func resolve2(_ c: Connection, _ tablesYAML: String, dir: String) throws -> TargetSchema {
        let plan = try Plan.parse("source: src.db\ntarget: dst.db\nlog: log\ntables:\n" + tablesYAML, relativeTo: dir)
        let mappings = try PlanResolver.resolve(plan, source: c, target: c)
        return try TargetSchema.resolve(plan: plan, mappings: mappings, source: c, sameFile: false)
    }

    @Test("a table whose name is spelled as a column, a literal and a quoted identifier: only the names are renamed")
    func nameSpelledEverywhere() throws {
        try withTemporaryDirectory { dir in
            let (schema, _) = try Self.resolve("""
                CREATE TABLE t(id INTEGER PRIMARY KEY, t TEXT DEFAULT 't' CHECK (t <> 't.t'), "t t" TEXT CHECK ("t t" <> 't'));
                CREATE INDEX t_t ON t(t, "t t");
                CREATE VIEW tv AS SELECT t.t, "t"."t t", 't' AS lit FROM "t" WHERE t.t <> 't';
                """, "  t:\n    to: u\n", in: dir)
            let table = try #require(schema.tables.first)
            #expect(table.createSQL == #"CREATE TABLE "u" (id INTEGER PRIMARY KEY, t TEXT DEFAULT 't' CHECK (t <> 't.t'), "t t" TEXT CHECK ("t t" <> 't'))"#)
            #expect(schema.indexes.first?.sql == #"CREATE INDEX t_t ON "u"(t, "t t")"#)
            #expect(schema.views.first?.sql == #"CREATE VIEW tv AS SELECT "u".t, "u"."t t", 't' AS lit FROM "u" WHERE "u".t <> 't'"#)
            #expect(schema.omissions.isEmpty)
        }
    }

    @Test("swapped column names (a→b, b→a) keep each constraint on its column")
    func swap() throws {
        try withTemporaryDirectory { dir in
            let (schema, _) = try Self.resolve("""
                CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b TEXT DEFAULT 'b', CHECK (a < b));
                CREATE INDEX t_a ON t(a);
                """, "  t:\n    to: t2\n    columns:\n      id: id\n      a: b\n      b: a\n", in: dir)
            let db = try Self.materialize(schema)
            let expected = try Connection(path: ":memory:", mode: .readWriteCreate)
            try expected.execute("CREATE TABLE t2(id INTEGER PRIMARY KEY, a TEXT DEFAULT 'b', b INTEGER NOT NULL, CHECK (b < a)); CREATE INDEX t_a ON t2(b);")
            #expect(try Self.facts(db, "t2") == Self.facts(expected, "t2"))
            try db.execute("INSERT INTO t2 VALUES (1, 2, 1)")
            #expect(throws: SQLiteError.self) { try db.execute("INSERT INTO t2 VALUES (2, 1, 2)") }
        }
    }

    @Test("computed columns: typed from the plan, none is ANY in a STRICT table; a replacing column keeps the source's constraints")
    func computedColumns() throws {
        try withTemporaryDirectory { dir in
            let (schema, _) = try Self.resolve("""
                CREATE TABLE t(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE CHECK (email <> ''), n INTEGER) STRICT;
                """, """
                  t:
                    to: t2
                    columns:
                      id: id
                      email: lower(email)
                      len: length(email)
                      n2: {expr: n * 2, type: INTEGER, not_null: true}
                      n: {expr: n + 1, not_null: false}
                """, in: dir)
            let db = try Self.materialize(schema)
            let expected = try Connection(path: ":memory:", mode: .readWriteCreate)
            try expected.execute("CREATE TABLE t2(id INTEGER PRIMARY KEY, email ANY NOT NULL UNIQUE CHECK (email <> ''), len ANY, n2 INTEGER NOT NULL, n ANY) STRICT")
            #expect(try Self.facts(db, "t2") == Self.facts(expected, "t2"))
            #expect(throws: SQLiteError.self) { try db.execute("INSERT INTO t2 VALUES (1, '', 1, 1, 1)") }
            #expect(schema.omissions.isEmpty)
        }
    }

    @Test("generated columns come along when what they name does; otherwise they are reported")
    func generatedColumns() throws {
        try withTemporaryDirectory { dir in
            let (schema, _) = try Self.resolve("""
                CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER,
                  s INTEGER GENERATED ALWAYS AS (a + 1) STORED, v AS (b * 2));
                """, "  t:\n    to: t2\n    columns:\n      id: id\n      x: a\n", in: dir)
            let db = try Self.materialize(schema)
            let expected = try Connection(path: ":memory:", mode: .readWriteCreate)
            try expected.execute("CREATE TABLE t2(id INTEGER PRIMARY KEY, x INTEGER, s INTEGER GENERATED ALWAYS AS (x + 1) STORED)")
            #expect(try Self.facts(db, "t2") == Self.facts(expected, "t2"))
            #expect(schema.omissions.map { "\($0.kind)|\($0.name)" } == ["generated column|v"])
        }
    }

    @Test("foreign keys: to a table not carried, and foreign_keys: drop, are reported")
    func foreignKeys() throws {
        try withTemporaryDirectory { dir in
            let sql = """
                CREATE TABLE p(id INTEGER PRIMARY KEY, code TEXT UNIQUE);
                CREATE TABLE q(id INTEGER PRIMARY KEY);
                CREATE TABLE c(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id), p_code TEXT, q_id INTEGER REFERENCES q,
                  FOREIGN KEY (p_code) REFERENCES p(code));
                """
            let (schema, _) = try Self.resolve(sql, "  p:\n    to: p2\n    columns:\n      pid: id\n  c:\n    to: c2\n", in: dir)
            let db = try Self.materialize(schema)
            #expect(try db.values("SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list('c2')") == [[.text("p2"), .text("p_id"), .text("pid")]])
            #expect(Set(schema.omissions.map(\.name)) == ["REFERENCES q", "FOREIGN KEY (p_code) REFERENCES p(code)", "UNIQUE"])
            #expect(schema.omissions.first { $0.name == "REFERENCES q" }!.reason.contains("does not migrate"))
            #expect(schema.omissions.first { $0.name.hasPrefix("FOREIGN") }!.reason.contains("code"))
            try withTemporaryDirectory { dir2 in
                let (dropped, _) = try Self.resolve(sql, "  p: {}\n  c:\n    foreign_keys: drop\n", in: dir2)
                let db2 = try Self.materialize(dropped)
                #expect(try db2.values("SELECT * FROM pragma_foreign_key_list('c')").isEmpty)
                #expect(dropped.omissions.filter { $0.kind == "foreign key" }.allSatisfy { $0.reason.contains("foreign_keys: drop") })
                #expect(dropped.omissions.filter { $0.kind == "foreign key" }.count == 3)
            }
        }
    }

    @Test("same file: carried index and trigger names collide with nothing; views keep their name and the SQL they replace")
    func sameFileNames() throws {
        try withTemporaryDirectory { dir in
            let sql = """
                CREATE TABLE orgs(id INTEGER PRIMARY KEY, name TEXT);
                CREATE TABLE users(id INTEGER PRIMARY KEY, org INTEGER REFERENCES orgs(id), email TEXT);
                CREATE TABLE log(msg TEXT);
                CREATE INDEX users_email ON users(email);
                CREATE INDEX accounts_email ON orgs(name);
                CREATE INDEX by_org ON users(org);
                CREATE TRIGGER stamp AFTER INSERT ON users BEGIN INSERT INTO log VALUES ('users ' || new.email); END;
                CREATE VIEW named AS SELECT u.email, o.name FROM users u JOIN orgs o ON o.id = u.org;
                """
            let (schema, source) = try Self.resolve(sql, "  users:\n    to: accounts\n", sameFile: true, in: dir)
            #expect(schema.indexes.map(\.name) == ["accounts_email_2", "by_org_accounts"])
            #expect(schema.triggers.map(\.name) == ["stamp_accounts"])
            #expect(schema.views.map(\.name) == ["named"])
            let view = try #require(schema.views.first)
            #expect(view.replacesSQL == "CREATE VIEW named AS SELECT u.email, o.name FROM users u JOIN orgs o ON o.id = u.org")
            // All of it can be created beside the source's objects in that one file.
            try source.execute("DROP VIEW named")
            for t in schema.tables { try source.execute(t.createSQL) }
            for o in schema.indexes + schema.triggers + schema.views { try source.execute(o.sql) }
            #expect(try source.values("SELECT \"table\", \"from\" FROM pragma_foreign_key_list('accounts')") == [[.text("orgs"), .text("org")]])
            try source.execute("INSERT INTO orgs VALUES (1, 'o'); INSERT INTO accounts VALUES (1, 1, 'a@x')")
            #expect(try source.values("SELECT * FROM named") == [[.text("a@x"), .text("o")]])
            #expect(try source.values("SELECT msg FROM log") == [[.text("users a@x")]])
            #expect(schema.omissions.isEmpty)
        }
    }

    @Test("create: the plan's own table, renamed to to:, with the source's indexes that fit it")
    func planCreate() throws {
        try withTemporaryDirectory { dir in
            let sql = """
                CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, name TEXT);
                CREATE INDEX users_email ON users(email);
                CREATE INDEX users_name ON users(name);
                """
            let plan = """
                  users:
                    to: accounts
                    create: "CREATE TABLE whatever(id INTEGER PRIMARY KEY, mail TEXT NOT NULL CHECK (mail LIKE '%@%'), extra INTEGER DEFAULT 0)"
                    columns:
                      id: id
                      mail: email
                """
            let (schema, _) = try Self.resolve(sql, plan, in: dir)
            let table = try #require(schema.tables.first)
            #expect(table.fromPlan && table.target == "accounts")
            #expect(table.createSQL == #"CREATE TABLE "accounts"(id INTEGER PRIMARY KEY, mail TEXT NOT NULL CHECK (mail LIKE '%@%'), extra INTEGER DEFAULT 0)"#)
            #expect(schema.indexes.map(\.sql) == [#"CREATE INDEX users_email ON "accounts"(mail)"#])
            #expect(schema.omissions.map { "\($0.kind)|\($0.name)" } == ["index|users_name"])
            _ = try Self.materialize(schema)
        }
    }

    @Test("type: on a plain copy is refused (it keeps the source's type)")
    func typeOnPlainCopy() throws {
        try withTemporaryDirectory { dir in
            let error = #expect(throws: MigrationError.self) {
                _ = try Self.resolve("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER)",
                                     "  t:\n    to: t2\n    columns:\n      id: id\n      b: {expr: a, type: TEXT}\n", in: dir)
            }
            #expect(error?.message.contains("tables.t.columns.b copies column a as is") == true, "\(error?.message ?? "")")
        }
    }

    @Test("create: refusals", arguments: [
        ("CREATE TABLE x(id INTEGER PRIMARY KEY, mail TEXT", "does not parse"),
        ("CREATE TABLE x(id INTEGER PRIMARY KEY)", "has no column mail"),
        ("CREATE TABLE x(id INTEGER, mail TEXT PRIMARY KEY)", "primary key (mail)"),
        ("CREATE TABLE x(id INTEGER PRIMARY KEY, mail TEXT); CREATE INDEX y ON x(mail)", "exactly one CREATE TABLE"),
    ])
    func planCreateRefusals(create: String, message: String) throws {
        try withTemporaryDirectory { dir in
            let escaped = create.replacingOccurrences(of: "\"", with: "\\\"")
            let plan = "  users:\n    create: \"\(escaped)\"\n    columns:\n      id: id\n      mail: email\n"
            let error = #expect(throws: MigrationError.self) {
                _ = try Self.resolve("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT)", plan, in: dir)
            }
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("tables.users.create") == true)
        }
    }

    @Test("a real migration creates the target with the carried definition", arguments: [false, true])
    func migratorUsesCarriedTable(sameFile: Bool) throws {
        try withTemporaryDirectory { dir in
            let c = try Connection(path: dir + "/src.db", mode: .readWriteCreate)
            try c.execute("""
                CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL COLLATE NOCASE UNIQUE, age INTEGER DEFAULT 18 CHECK (age >= 0));
                INSERT INTO users(email, age) VALUES ('a@x', 30), ('b@x', 40);
                CREATE INDEX users_age ON users(age) WHERE age > 20;
                """)
            try writeText(dir + "/p.yml", """
                source: src.db
                target: \(sameFile ? "src.db" : "dst.db")
                log: log
                tables:
                  users:
                    to: accounts
                    columns:
                      id: id
                      mail: email
                      age: age
                """)
            let plan = try Plan.load(path: dir + "/p.yml")
            var migrator: Migrator? = try Migrator.open(plan: plan)
            _ = try migrator!.run(seconds: 30)
            migrator = nil
            let target = try Connection(path: dir + (sameFile ? "/src.db" : "/dst.db"), mode: .readWrite)
            // The stored schema holds the carried index under a name free in that file.
            let stored = try #require(try SchemaStore.load(target))
            #expect(stored.indexes.map(\.name) == [sameFile ? "accounts_age" : "users_age"])
            let sql = try target.values("SELECT sql FROM sqlite_schema WHERE name = 'accounts'")
            #expect(sql == [[.text(#"CREATE TABLE "accounts" (id INTEGER PRIMARY KEY AUTOINCREMENT, mail TEXT NOT NULL COLLATE NOCASE UNIQUE, age INTEGER DEFAULT 18 CHECK (age >= 0))"#)]])
            #expect(try target.values("SELECT id, mail, age FROM accounts ORDER BY id") == [[.integer(1), .text("a@x"), .integer(30)], [.integer(2), .text("b@x"), .integer(40)]])
            #expect(throws: SQLiteError.self) { try target.execute("INSERT INTO accounts(mail, age) VALUES ('A@X', 1)") }
            #expect(throws: SQLiteError.self) { try target.execute("INSERT INTO accounts(mail, age) VALUES ('c@x', -1)") }
            #expect(try target.values("PRAGMA integrity_check") == [[.text("ok")]])
        }
    }

    @Test("a trigger SQLite cannot rewrite is dropped, reported as blocking, and the renames go on")
    func renameFallback() throws {
        try withTemporaryDirectory { dir in
            let sql = """
                CREATE TABLE a(id INTEGER PRIMARY KEY, x TEXT, gone TEXT);
                CREATE TABLE b(id INTEGER PRIMARY KEY, gone TEXT);
                CREATE TRIGGER a_t AFTER UPDATE ON a BEGIN UPDATE b SET gone = new.gone WHERE id = new.id; END;
                CREATE VIEW a_v AS SELECT a.gone AS g FROM a JOIN b USING (id);
                """
            // With renames: the rename of a finds the trigger broken.
            let (renamed, _) = try Self.resolve(sql, "  a:\n    to: a2\n    columns:\n      id: id\n      x: x\n  b:\n    to: b2\n", in: dir)
            #expect(renamed.triggers.isEmpty && renamed.views.isEmpty)
            #expect(Set(renamed.omissions.map { "\($0.kind)|\($0.name)|\($0.blocksCutover)" }) == ["trigger|a_t|true", "view|a_v|true"])
            #expect(renamed.omissions.allSatisfy { $0.reason.contains("gone") })
            _ = try Self.materialize(renamed)
        }
        try withTemporaryDirectory { dir in
            // Without any rename: the final check finds them.
            let (kept, _) = try Self.resolve("""
                CREATE TABLE a(id INTEGER PRIMARY KEY, x TEXT, gone TEXT);
                CREATE TABLE b(id INTEGER PRIMARY KEY, gone TEXT);
                CREATE TRIGGER a_t AFTER UPDATE ON a BEGIN UPDATE b SET gone = new.gone WHERE id = new.id; END;
                CREATE VIEW a_v AS SELECT a.gone AS g FROM a JOIN b USING (id);
                """, "  a:\n    columns:\n      id: id\n      x: x\n  b: {}\n", in: dir)
            #expect(kept.triggers.isEmpty && kept.views.isEmpty)
            #expect(Set(kept.omissions.map { "\($0.kind)|\($0.name)|\($0.blocksCutover)" }) == ["trigger|a_t|true", "view|a_v|true"])
        }
    }

    @Test("a carried foreign key whose parent key the plan's create: lacks is refused")
    func foreignKeyToPlanTable() throws {
        try withTemporaryDirectory { dir in
            let error = #expect(throws: MigrationError.self) {
                _ = try Self.resolve("""
                    CREATE TABLE p(id INTEGER PRIMARY KEY, code TEXT UNIQUE);
                    CREATE TABLE c(id INTEGER PRIMARY KEY, p_code TEXT REFERENCES p(code));
                    """, "  p:\n    create: CREATE TABLE p(id INTEGER PRIMARY KEY, code TEXT)\n  c: {}\n", in: dir)
            }
            #expect(error?.message.contains("foreign key") == true, "\(error?.message ?? "")")
        }
    }

    @Test("the CREATE TABLE splitter: quotes, comments, nested parentheses, CONSTRAINT names, multi-word clauses")
    func splitter() throws {
        let sql = """
            CREATE TABLE "we""ird" ( -- a comment, with (parens
              x BLOB DEFAULT x'00ff' NOT NULL,
              [b c] VARCHAR(10, 2) CONSTRAINT nn NOT NULL ON CONFLICT IGNORE DEFAULT NULL COLLATE NOCASE,
              `d` INTEGER REFERENCES p(id) ON DELETE SET NULL ON UPDATE SET DEFAULT NOT DEFERRABLE /* , */ CHECK (d IN (1, 2, ')')),
              g AS (x || 'a,b') STORED,
              h GENERATED ALWAYS AS (1) VIRTUAL UNIQUE,
              CONSTRAINT pk PRIMARY KEY (x, "b c"),
              FOREIGN KEY (d) REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED
            ) STRICT, WITHOUT ROWID
            """
        let parts = try CreateTableParts.parse(sql)
        #expect(parts.tableName == "we\"ird")
        #expect(parts.columns.map(\.name) == ["x", "b c", "d", "g", "h"])
        #expect(parts.columns.map(\.type) == ["BLOB", "VARCHAR(10, 2)", "INTEGER", "", ""])
        #expect(parts.columns.map { $0.constraints.map(\.kind.rawValue) } == [
            ["default", "not null"], ["not null", "default", "collate"], ["foreign key", "check"], ["generated column"], ["generated column", "unique"],
        ])
        #expect(parts.text(parts.columns[1].constraints[0].tokens) == "CONSTRAINT nn NOT NULL ON CONFLICT IGNORE")
        #expect(parts.text(parts.columns[2].constraints[0].tokens) == "REFERENCES p(id) ON DELETE SET NULL ON UPDATE SET DEFAULT NOT DEFERRABLE")
        #expect(parts.constraints.map(\.kind.rawValue) == ["primary key", "table foreign key"])
        #expect(parts.text(parts.constraints[0].tokens) == "CONSTRAINT pk PRIMARY KEY (x, \"b c\")")
        #expect(parts.isStrict && parts.options == "STRICT, WITHOUT ROWID")
        #expect(SQLTokenizer.identifiers(parts.columns[3].constraints[0].body) == ["as", "x", "stored"])
    }

    @Test("tables swapping names keep their foreign keys straight; a view over a carried view comes along")
    func tableSwapAndViewOverView() throws {
        try withTemporaryDirectory { dir in
            let (schema, _) = try Self.resolve("""
                CREATE TABLE a(id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id));
                CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));
                CREATE VIEW v1 AS SELECT a.id, b.id AS bid FROM a JOIN b ON b.id = a.b_id;
                CREATE VIEW v2 AS SELECT bid FROM v1;
                CREATE TRIGGER v1_ins INSTEAD OF INSERT ON v1 BEGIN INSERT INTO a(id) VALUES (new.id); END;
                """, "  a:\n    to: b\n  b:\n    to: a\n", in: dir)
            let db = try Self.materialize(schema)
            #expect(schema.tables.map(\.target) == ["b", "a"])
            #expect(try db.values("SELECT \"from\", \"table\" FROM pragma_foreign_key_list('b')") == [[.text("b_id"), .text("a")]])
            #expect(try db.values("SELECT \"from\", \"table\" FROM pragma_foreign_key_list('a')") == [[.text("a_id"), .text("b")]])
            #expect(schema.views.map(\.name) == ["v1", "v2"])
            #expect(schema.views.map(\.table) == ["b", "b"])
            try db.execute("INSERT INTO a VALUES (7, NULL); INSERT INTO b VALUES (1, 7)")
            #expect(try db.values("SELECT * FROM v2") == [[.integer(7)]])
            // The INSTEAD OF trigger on the carried view comes along, rewritten.
            #expect(schema.triggers.map(\.name) == ["v1_ins"])
            try db.execute("INSERT INTO v1(id) VALUES (9)")
            #expect(try db.values("SELECT id FROM b ORDER BY id") == [[.integer(1)], [.integer(9)]])
            #expect(schema.omissions.isEmpty)
        }
    }

    static let homeDDL = """
        CREATE TABLE customers(
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          email TEXT NOT NULL COLLATE NOCASE UNIQUE,
          name TEXT NOT NULL DEFAULT '',
          tier TEXT NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'pro')),
          created_at INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX customers_email_lower ON customers(lower(email));
        CREATE TABLE orders(
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
          status TEXT NOT NULL DEFAULT 'new',
          total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
          note TEXT);
        CREATE INDEX orders_by_customer ON orders(customer_id, status);
        CREATE INDEX orders_open ON orders(customer_id) WHERE status <> 'done';
        CREATE TABLE order_lines(
          order_id INTEGER NOT NULL REFERENCES orders(id),
          line INTEGER NOT NULL,
          sku TEXT NOT NULL,
          qty INTEGER NOT NULL CHECK (qty > 0),
          PRIMARY KEY (order_id, line)) WITHOUT ROWID;
        CREATE INDEX order_lines_sku ON order_lines(sku COLLATE NOCASE DESC);
        CREATE TABLE order_events(
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          order_id INTEGER NOT NULL,
          status TEXT NOT NULL,
          note TEXT DEFAULT 'customers');
        CREATE TABLE settings(key TEXT NOT NULL PRIMARY KEY, value ANY) STRICT;
        CREATE TRIGGER orders_status_event AFTER UPDATE OF status ON orders
        BEGIN
          INSERT INTO order_events(order_id, status, note) VALUES (new.id, new.status, 'customers');
        END;
        CREATE VIEW open_orders AS
          SELECT o.id AS order_id, c.email AS "customers", c.name AS name
          FROM orders o JOIN customers c ON c.id = o.customer_id
          WHERE o.status <> 'done';
        """


    @Test("the application schema of the end-to-end test resolves to what SQLite's own renames make of it")
    func matchesRenameOracle() throws {
        try withTemporaryDirectory { dir in
            let (schema, _) = try Self.resolve(Self.homeDDL, """
                  customers:
                    to: accounts
                    columns:
                      id: id
                      email: email
                      full_name: name
                      tier: tier
                      created_at: created_at
                  orders: {}
                  order_lines: {}
                  order_events: {}
                  settings: {}
                """, in: dir)
            let got = try Self.materialize(schema)
            let expected = try Connection(path: ":memory:", mode: .readWriteCreate)
            try expected.execute(Self.homeDDL)
            try expected.execute("ALTER TABLE customers RENAME TO accounts; ALTER TABLE accounts RENAME COLUMN name TO full_name;")
            for t in ["accounts", "orders", "order_lines", "order_events", "settings"] {
                #expect(try Self.facts(got, t) == Self.facts(expected, t), "table \(t)")
            }
            let objects = "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE type IN ('index', 'trigger', 'view') AND sql IS NOT NULL ORDER BY type, name"
            #expect(try got.values(objects) == expected.values(objects))
            #expect(schema.tables.map(\.autoincrement) == [true, true, false, true, false])
            #expect(schema.omissions.isEmpty)
        }
    }

    @Test("named constraints, conflict clauses and column renames inside them")
    func namedConstraints() throws {
        try withTemporaryDirectory { dir in
            let (schema, _) = try Self.resolve("""
                CREATE TABLE t(id INTEGER PRIMARY KEY ON CONFLICT REPLACE, a TEXT CONSTRAINT a_nn NOT NULL ON CONFLICT IGNORE,
                  b TEXT, CONSTRAINT ab UNIQUE (a, b) ON CONFLICT ABORT, CONSTRAINT a_ne_b CHECK (a <> b))
                """, "  t:\n    to: t2\n    columns:\n      id: id\n      x: a\n      b: b\n", in: dir)
            #expect(schema.tables.first?.createSQL == "CREATE TABLE \"t2\" (id INTEGER PRIMARY KEY ON CONFLICT REPLACE, x TEXT CONSTRAINT a_nn NOT NULL ON CONFLICT IGNORE, b TEXT, CONSTRAINT ab UNIQUE (x, b) ON CONFLICT ABORT, CONSTRAINT a_ne_b CHECK (x <> b))")
            let db = try Self.materialize(schema)
            try db.execute("INSERT INTO t2 VALUES (1, NULL, 'b')")  // ignored (ON CONFLICT IGNORE)
            #expect(try db.integer("SELECT count(*) FROM t2") == 0)
            #expect(schema.omissions.isEmpty)
        }
    }
}
