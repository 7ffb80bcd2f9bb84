import TidemarkTestSupport
import Foundation
import Synchronization
import Testing
import TidemarkLog
import TidemarkSQLite

// The new home is complete: a realistic application schema (foreign keys
// between moved tables, partial and expression indexes, AUTOINCREMENT,
// STRICT, WITHOUT ROWID, collations, CHECKs, DEFAULTs, an application
// trigger and a view) is migrated with live writers, cut over, written to,
// and rolled back; SQLite itself checks the result at each point.
//
// The expected target schema is computed independently of Tidemark: the
// source's DDL is created in a scratch database and SQLite's own ALTER TABLE
// renames it the way the plan does.

@Suite("the complete new home")
struct CompleteHomeTests {
    static let ddl = """
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

    static let plan = """
        source: app.db
        target: app-v2.db
        log: changelog
        chunk_rows: 200
        tables:
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
        """

    /// The plan's renames, done by SQLite on the source's DDL.
    static let expectedRenames = """
        ALTER TABLE customers RENAME TO accounts;
        ALTER TABLE accounts RENAME COLUMN name TO full_name;
        """

    /// The application's queries, with the table names of each side.
    static func queries(customers: String, name: String) -> [String] {
        [
            "SELECT id FROM orders WHERE customer_id = 7 AND status = 'new'",
            "SELECT id FROM orders WHERE customer_id = 7 AND status <> 'done'",
            "SELECT id FROM \(customers) WHERE lower(email) = 'c7@example.com'",
            "SELECT id FROM \(customers) WHERE email = 'C7@EXAMPLE.COM'",
            "SELECT order_id FROM order_lines WHERE sku = 'SKU-3' COLLATE NOCASE ORDER BY sku COLLATE NOCASE DESC",
            "SELECT \(name) FROM \(customers) WHERE id = 3",
        ]
    }

    static func seed(_ path: String) throws {
        let c = try Connection(path: path, mode: .readWriteCreate)
        try c.execute("PRAGMA journal_mode = WAL")
        try c.execute(ddl)
        try c.transaction(.immediate) {
            for i in 1...300 {
                try c.prepare("INSERT INTO customers(id, email, name, tier, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .execute([.integer(Int64(i)), .text("C\(i)@Example.com"), .text("Customer \(i)"), .text(i % 3 == 0 ? "pro" : "free"), .integer(Int64(i))])
            }
            for o in 1...600 {
                try c.prepare("INSERT INTO orders(id, customer_id, status, total_cents) VALUES (?1, ?2, ?3, ?4)")
                    .execute([.integer(Int64(o)), .integer(Int64(o % 250 + 1)), .text(o % 4 == 0 ? "done" : "new"), .integer(Int64(o * 10))])
                for l in 1...(o % 3 + 1) {
                    try c.prepare("INSERT INTO order_lines VALUES (?1, ?2, ?3, ?4)")
                        .execute([.integer(Int64(o)), .integer(Int64(l)), .text("SKU-\(o % 17)"), .integer(Int64(l))])
                }
            }
            try c.execute("INSERT INTO settings VALUES ('currency', 'EUR'), ('tax', 0.2), ('version', 3)")
            // The highest ids were used once and deleted: AUTOINCREMENT must never hand them out again.
            try c.execute("INSERT INTO customers(id, email) VALUES (400, 'gone@example.com'); DELETE FROM customers WHERE id = 400")
            try c.execute("INSERT INTO orders(id, customer_id, total_cents) VALUES (900, 1, 1); DELETE FROM orders WHERE id = 900")
        }
        try c.close()
    }

    /// Application writers: inserts, updates (firing the app's trigger) and
    /// deletes through a connection that enforces foreign keys.
    final class Writers: @unchecked Sendable {
        let stop = Atomic<Bool>(false)
        let writes = Atomic<Int>(0)
        let failure = Mutex<String?>(nil)
        private var thread: Thread?

        func start(_ path: String, seed: UInt64) {
            let t = Thread { [self] in
                do {
                    let c = try Connection(path: path, busyTimeoutMillis: 10_000)
                    try c.execute("PRAGMA foreign_keys = ON")
                    var rng = SplitMix64(seed: seed)
                    var nextCustomer: Int64 = 1000, nextOrder: Int64 = 2000
                    while !stop.load(ordering: .relaxed) {
                        let customer = Int64(rng.next() % 250 + 1)
                        switch rng.next() % 6 {
                        case 0:
                            nextCustomer += 1
                            try c.prepare("INSERT INTO customers(id, email, name) VALUES (?1, ?2, ?3)")
                                .execute([.integer(nextCustomer), .text("New\(nextCustomer)@Example.com"), .text("n\(nextCustomer)")])
                        case 1:
                            nextOrder += 1
                            try c.transaction(.immediate) {
                                try c.prepare("INSERT INTO orders(id, customer_id, total_cents) VALUES (?1, ?2, ?3)")
                                    .execute([.integer(nextOrder), .integer(customer), .integer(Int64(rng.next() % 1000))])
                                try c.prepare("INSERT INTO order_lines VALUES (?1, 1, 'sku-new', 2)").execute([.integer(nextOrder)])
                            }
                        case 2, 3:
                            let order = Int64(rng.next() % 600 + 1)
                            try c.prepare("UPDATE orders SET status = ?1 WHERE id = ?2")
                                .execute([.text(["new", "paid", "done"][Int(rng.next() % 3)]), .integer(order)])
                        case 4:
                            try c.prepare("UPDATE customers SET name = name || '+' WHERE id = ?1").execute([.integer(customer)])
                        default:
                            let order = Int64(rng.next() % 600 + 1)
                            try c.transaction(.immediate) {
                                try c.prepare("DELETE FROM order_lines WHERE order_id = ?1").execute([.integer(order)])
                                try c.prepare("DELETE FROM orders WHERE id = ?1").execute([.integer(order)])
                            }
                        }
                        writes.add(1, ordering: .relaxed)
                        usleep(2_000)
                    }
                    try c.close()
                } catch {
                    failure.withLock { $0 = "\(error)" }
                }
            }
            thread = t
            t.start()
        }

        func finish() async throws {
            stop.store(true, ordering: .relaxed)
            while thread?.isFinished == false { try await pause(milliseconds: 10) }
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func aRealApplicationSchemaMovesWholeAndComesBack() async throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["TIDEMARK_SWEEP_SEED"].flatMap { UInt64($0) } ?? 11)
        try await withTemporaryDirectory { dir in
            let source = dir + "/app.db", target = dir + "/app-v2.db", planPath = dir + "/tidemark.yml"
            try await blocking { try Self.seed(source) }
            try Self.plan.write(toFile: planPath, atomically: true, encoding: .utf8)
            let planArgs = ["--plan", planPath]

            // Copy and replay under live writes.
            let writers = Writers()
            writers.start(source, seed: seed)
            try await pause(milliseconds: 300)
            let migrated = try await tidemark(["migrate", "--json"] + planArgs, timeoutSeconds: 120)
            try await pause(milliseconds: 300)
            try await writers.finish()
            #expect(writers.failure.withLock { $0 } == nil, "seed \(seed): writer failed: \(writers.failure.withLock { $0 } ?? "")")
            #expect(writers.writes.load(ordering: .relaxed) > 20, "seed \(seed)")
            try #require(migrated.status == 0, "seed \(seed): \(migrated.summary)")

            // Catch up with what was written after, prove it, switch.
            let caughtUp = try await tidemark(["migrate", "--json"] + planArgs, timeoutSeconds: 120)
            try #require(caughtUp.status == 0, "seed \(seed): \(caughtUp.summary)")
            let verified = try await tidemark(["verify", "--json"] + planArgs, timeoutSeconds: 120)
            try #require(verified.status == 0, "seed \(seed): \(verified.summary)")
            let cut = try await tidemark(["cutover", "--json"] + planArgs, timeoutSeconds: 120)
            try #require(cut.status == 0, "seed \(seed): \(cut.summary)")

            let t = try Connection(path: target)
            let s = try Connection(path: source)
            // SQLite's own checks.
            #expect(try t.prepare("PRAGMA integrity_check").rows { $0.columnText(0) } == ["ok"])
            #expect(try t.prepare("PRAGMA foreign_key_check").rows { $0.columnText(0) }.isEmpty)

            // The schema, against the source's mapped by SQLite's own renames.
            let expected = try Connection(path: ":memory:", mode: .readWriteCreate)
            try expected.execute(Self.ddl)
            try expected.execute(Self.expectedRenames)
            for table in ["accounts", "orders", "order_lines", "order_events", "settings"] {
                #expect(try Shape(table, expected) == Shape(table, t), "table \(table)")
            }
            #expect(try Self.objects(expected) == Self.objects(t), "triggers and views")

            // The application's queries use the same indexes on both sides.
            for (a, b) in zip(Self.queries(customers: "customers", name: "name"), Self.queries(customers: "accounts", name: "full_name")) {
                // An inline UNIQUE's automatic index is named after its table.
                let sourceIndexes = try Self.indexesUsed(a, s).map { $0.replacingOccurrences(of: "sqlite_autoindex_customers_", with: "sqlite_autoindex_accounts_") }
                #expect(try sourceIndexes == Self.indexesUsed(b, t), "query plan of \(b)")
                #expect(try !Self.indexesUsed(b, t).isEmpty || b.contains("WHERE id ="), "\(b) uses an index")
            }

            // Carried constraints hold on the target.
            #expect(throws: SQLiteError.self) { try t.execute("INSERT INTO accounts(email, tier) VALUES ('x@example.com', 'gold')") }
            #expect(throws: SQLiteError.self) { try t.execute("INSERT INTO accounts(email) VALUES ('c5@EXAMPLE.com')") }
            #expect(throws: SQLiteError.self) { try t.execute("INSERT INTO settings VALUES ('bad', 1, 2)") }

            // New ids are fresh: never one the source handed out (400, 900 were used and deleted).
            try t.execute("PRAGMA foreign_keys = ON")
            try t.execute("INSERT INTO accounts(email, full_name) VALUES ('after@example.com', 'After')")
            let newCustomer = t.lastInsertRowID
            #expect(newCustomer > 1000, "new account id \(newCustomer)")
            let sourceOrderSeq = try s.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'orders'").rows { $0.columnInt64(0) }.first ?? 0
            try t.prepare("INSERT INTO orders(customer_id, total_cents) VALUES (?1, 5)").execute([.integer(newCustomer)])
            let newOrder = t.lastInsertRowID
            #expect(newOrder > max(sourceOrderSeq, 900), "new order id \(newOrder), source sequence \(sourceOrderSeq)")
            try t.prepare("INSERT INTO order_lines VALUES (?1, 1, 'sku-after', 1)").execute([.integer(newOrder)])

            // The application's trigger fires on the target now, once; the view reads the target.
            let eventsBefore = try Self.count("order_events", t)
            try t.prepare("UPDATE orders SET status = 'paid' WHERE id = ?1").execute([.integer(newOrder)])
            #expect(try Self.count("order_events", t) == eventsBefore + 1)
            #expect(try t.prepare("SELECT count(*) FROM open_orders WHERE order_id = ?1").bound([.integer(newOrder)]).rows { $0.columnInt64(0) } == [1])
            #expect(try t.prepare("SELECT count(*) FROM open_orders").rows { $0.columnInt64(0) }.first ?? 0 > 0)
            #expect(try t.prepare("PRAGMA foreign_key_check").rows { $0.columnText(0) }.isEmpty)
            try t.close()

            // Rollback after writes on the target carries them back.
            let back = try await tidemark(["rollback", "--json"] + planArgs, timeoutSeconds: 120)
            try #require(back.status == 0, "seed \(seed): \(back.summary)")
            #expect(try s.prepare("SELECT email FROM customers WHERE id = ?1").bound([.integer(newCustomer)]).rows { $0.columnText(0) } == ["after@example.com"])
            #expect(try s.prepare("SELECT status FROM orders WHERE id = ?1").bound([.integer(newOrder)]).rows { $0.columnText(0) } == ["paid"],
                    "order \(newOrder) is back in the source")
            #expect(try s.prepare("PRAGMA foreign_key_check").rows { $0.columnText(0) }.isEmpty)
            #expect(try s.prepare("PRAGMA integrity_check").rows { $0.columnText(0) } == ["ok"])
            // The source's sequences moved past every id the target handed out.
            try s.execute("PRAGMA foreign_keys = ON")
            try s.execute("INSERT INTO customers(email) VALUES ('back@example.com')")
            #expect(s.lastInsertRowID > newCustomer)
            try s.close()
        }
    }

    /// What SQLite says about a table's shape.
    struct Shape: Equatable, CustomStringConvertible {
        var columns: [String]
        var indexes: [String]
        var foreignKeys: [String]
        var flags: String

        init(_ table: String, _ c: Connection) throws {
            columns = try c.prepare("SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1)")
                .bound([.text(table)]).rows { s in (0..<6).map { "\(s.columnValue(Int32($0)))" }.joined(separator: "|") }
            let list = try c.prepare("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY name")
                .bound([.text(table)]).rows { s in [s.columnText(0), "\(s.columnInt64(1))", s.columnText(2), "\(s.columnInt64(3))"] }
            indexes = try list.map { row in
                let cols = try c.prepare("SELECT seqno, cid, name, \"desc\", coll, key FROM pragma_index_xinfo(?1)")
                    .bound([.text(row[0])]).rows { s in (0..<6).map { "\(s.columnValue(Int32($0)))" }.joined(separator: ",") }
                let sql = try c.prepare("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?1").bound([.text(row[0])])
                    .rows { $0.columnIsNull(0) ? "" : $0.columnText(0) }.first ?? ""
                return row.joined(separator: "|") + " [" + cols.joined(separator: "; ") + "] " + sql
            }
            foreignKeys = try c.prepare("SELECT \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq")
                .bound([.text(table)]).rows { s in (0..<5).map { "\(s.columnValue(Int32($0)))" }.joined(separator: "|") }
            flags = try c.prepare("SELECT wr, strict FROM pragma_table_list WHERE schema = 'main' AND name = ?1")
                .bound([.text(table)]).rows { "wr=\($0.columnInt64(0)) strict=\($0.columnInt64(1))" }.first ?? "missing"
        }

        var description: String { "\(flags)\n  columns \(columns)\n  indexes \(indexes)\n  fks \(foreignKeys)" }
    }

    /// Triggers and views (Tidemark's own excluded), with their SQL.
    static func objects(_ c: Connection) throws -> [String] {
        try c.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE type IN ('trigger', 'view') AND name NOT LIKE '\\_tidemark\\_%' ESCAPE '\\' ORDER BY type, name")
            .rows { s in (0..<4).map { s.columnText(Int32($0)) }.joined(separator: "|") }
    }

    /// The indexes a query's plan names.
    static func indexesUsed(_ sql: String, _ c: Connection) throws -> [String] {
        try c.prepare("EXPLAIN QUERY PLAN " + sql).rows { $0.columnText(3) }.compactMap { detail -> String? in
            guard let r = detail.range(of: "INDEX ") else { return nil }
            return String(detail[r.upperBound...].prefix { $0 != " " })
        }
    }

    static func count(_ table: String, _ c: Connection) throws -> Int64 {
        try c.prepare("SELECT count(*) FROM \(quoteIdentifier(table))").rows { $0.columnInt64(0) }.first ?? -1
    }
}

extension Statement {
    /// Binds `values` and returns the statement, for one-line queries.
    func bound(_ values: [Value]) throws -> Statement {
        try bind(values)
        return self
    }
}
