import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

// The schema at cutover and rollback: the index gate, AUTOINCREMENT
// sequences, the application's triggers and views, rollback through carried
// constraints, and rollback's inverse of renamed and computed columns.
//
// Until the carrying resolver lands, the fixture pre-creates the target
// tables with the source's constraints (an existing empty target table is
// adopted by `migrate`) and, after `migrate`, stores the triggers, views and
// AUTOINCREMENT flags in `_tidemark_schema` with `SchemaStore`, the way the
// resolver will.

/// A shop: customers, orders (AUTOINCREMENT, a FOREIGN KEY with ON DELETE
/// CASCADE, a CHECK) and an audit table an application trigger on orders
/// writes; a view over orders. The source's orders sequence is 100 while
/// its largest id is 90 (the newest orders were deleted).
struct ShopFixture {
    let root: String
    let sameFile: Bool

    var source: String { root + "/source.db" }
    var target: String { sameFile ? source : root + "/target.db" }
    var plan: String { root + "/plan.yml" }
    var planArguments: [String] { ["--plan", plan] }
    /// Target table names.
    var customers: String { sameFile ? "customers_v2" : "customers" }
    var orders: String { sameFile ? "orders_v2" : "orders" }
    var audit: String { sameFile ? "audit_v2" : "audit" }
    /// The application trigger's name in the target (one file: names are
    /// schema-wide, so the target's is another).
    var trigger: String { sameFile ? "audit_orders_v2" : "audit_orders" }
    static let view = "order_totals"

    static func tablesSQL(customers: String, orders: String, audit: String) -> String {
        """
        CREATE TABLE \(customers)(id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '');
        CREATE TABLE \(orders)(id INTEGER PRIMARY KEY AUTOINCREMENT,
                               customer_id INTEGER NOT NULL REFERENCES \(customers)(id) ON DELETE CASCADE ON UPDATE CASCADE,
                               total INTEGER NOT NULL CHECK (total >= 0), note TEXT);
        CREATE TABLE \(audit)(id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT NOT NULL);
        """
    }

    func triggerSQL() -> String {
        "CREATE TRIGGER \(trigger) AFTER INSERT ON \(orders) BEGIN INSERT INTO \(audit)(what) VALUES ('order ' || NEW.id); END"
    }

    func viewSQL() -> String {
        "CREATE VIEW \(Self.view) AS SELECT customer_id, sum(total) AS total FROM \(orders) GROUP BY customer_id"
    }

    /// - Parameter precreate: create the target tables with the source's
    ///   constraints (else `migrate` creates them, as the placeholder
    ///   resolver defines them, and owns them).
    static func create(root: String, sameFile: Bool, precreate: Bool = true) throws -> ShopFixture {
        let f = ShopFixture(root: root, sameFile: sameFile)
        let c = try Connection(path: f.source, mode: .readWriteCreate)
        _ = try c.setJournalMode(.wal)
        try c.execute(tablesSQL(customers: "customers", orders: "orders", audit: "audit"))
        try c.execute("""
            CREATE TRIGGER audit_orders AFTER INSERT ON orders BEGIN INSERT INTO audit(what) VALUES ('order ' || NEW.id); END;
            CREATE VIEW order_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id;
            """)
        try c.transaction(.immediate) {
            for i in 1...20 { try c.prepare("INSERT INTO customers(email, name) VALUES (?1, ?2)").execute([.text("c\(i)@x"), .text("C \(i)")]) }
            for i in 1...100 { try c.prepare("INSERT INTO orders(customer_id, total, note) VALUES (?1, ?2, 'n')").execute([.integer(Int64(i % 20 + 1)), .integer(Int64(i))]) }
            try c.execute("DELETE FROM orders WHERE id > 90")
        }
        // The target tables, with the source's constraints (see the top).
        if !precreate {
        } else if sameFile {
            try c.execute(tablesSQL(customers: f.customers, orders: f.orders, audit: f.audit))
        } else {
            let t = try Connection(path: f.target, mode: .readWriteCreate)
            _ = try t.setJournalMode(.wal)
            try t.execute(tablesSQL(customers: f.customers, orders: f.orders, audit: f.audit))
            try t.close()
        }
        try c.close()
        let tables = sameFile
            ? "  customers: {to: customers_v2}\n  orders: {to: orders_v2}\n  audit: {to: audit_v2}"
            : "  customers: {}\n  orders: {}\n  audit: {}"
        try """
            source: source.db
            target: \(sameFile ? "source.db" : "target.db")
            log: changelog
            tables:
            \(tables)

            """.write(toFile: f.plan, atomically: true, encoding: .utf8)
        return f
    }

    /// Stores what the resolver would for this fixture: the AUTOINCREMENT
    /// flags, the trigger, the view (one file: replacing the source's).
    func storeSchema(extra: (inout TargetSchema) -> Void = { _ in }) throws {
        let c = try Connection(path: target, mode: .readWrite)
        var schema = try #require(try SchemaStore.load(c), "migrate stored no schema")
        for i in schema.tables.indices { schema.tables[i].autoincrement = true }
        let originalView = try rows(source, "SELECT sql FROM sqlite_schema WHERE name = 'order_totals'").first.map { r -> String in
            if case .text(let s) = r[0] { s } else { "" }
        }
        schema.triggers = [.init(kind: .trigger, name: trigger, table: orders, sql: triggerSQL())]
        schema.views = [.init(kind: .view, name: Self.view, table: orders, sql: viewSQL(), replacesSQL: sameFile ? originalView : nil)]
        extra(&schema)
        try c.transaction(.immediate) { try SchemaStore.store(schema, in: c) }
        try c.close()
    }

    func objectNames(_ path: String, type: String) throws -> Set<String> {
        Set(try rows(path, "SELECT name FROM sqlite_schema WHERE type = '\(type)'").map { if case .text(let s) = $0[0] { s } else { "?" } })
    }

    func states() throws -> [String: String] {
        var out: [String: String] = [:]
        for r in try rows(target, "SELECT name, state FROM _tidemark_schema WHERE kind IN ('trigger', 'view')") {
            if case .text(let n) = r[0], case .text(let s) = r[1] { out[n] = s }
        }
        return out
    }

    func count(_ path: String, _ table: String) throws -> Int64 {
        if case .integer(let n) = try rows(path, "SELECT count(*) FROM \(quoteIdentifier(table))")[0][0] { return n }
        return -1
    }
}

@discardableResult
func insertReturningID(_ path: String, _ sql: String, foreignKeys: Bool = true) throws -> Int64 {
    let c = try Connection(path: path, mode: .readWrite, busyTimeoutMillis: 10_000)
    if foreignKeys { try c.execute("PRAGMA foreign_keys = ON") }
    try c.execute(sql)
    return c.lastInsertRowID
}

extension CutoverTests {
    @Suite struct SchemaSwitch {
        /// Sequences, triggers and views move at cutover and back at
        /// rollback. The application trigger does not fire during replay
        /// (it is not in the target yet) and fires on target writes after
        /// the cutover; a new target order gets id 101 (the source's
        /// sequence), not 91 (its largest id + 1). After inserts, updates, a
        /// rekey and a cascading delete on the target, rollback carries
        /// everything back: the source equals the target, its foreign keys
        /// and integrity hold, its own trigger did not fire a second time,
        /// and its next id is past every id the target used.
        @Test(.timeLimit(.minutes(10)), arguments: [false, true])
        func sequencesTriggersAndViewsAtCutoverAndRollback(sameFile: Bool) async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: sameFile)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                // A change replayed after the copy: the source's trigger fires
                // once on the source; its audit row is replayed as a change.
                try insertReturningID(f.source, "INSERT INTO orders(id, customer_id, total, note) VALUES (95, 3, 7, 'replayed')")
                try insertReturningID(f.source, "INSERT INTO customers(email, name) VALUES ('c21@x', 'C 21')")
                let replayed = try await tidemark(["migrate"] + f.planArguments)
                try #require(replayed.status == 0, "migrate: \(replayed.summary)")
                #expect(try f.count(f.target, f.audit) == f.count(f.source, "audit"), "the audit rows in the target differ from the source's after replay")
                #expect(try f.count(f.source, "audit") == 101)
                #expect(try !f.objectNames(f.target, type: "trigger").contains(f.trigger), "the application trigger exists before cutover")
                try f.storeSchema()

                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + f.planArguments)
                try #require(cut.status == 0, "cutover: \(cut.summary)")
                #expect(try f.objectNames(f.target, type: "trigger").contains(f.trigger))
                #expect(try rows(f.target, "SELECT sql FROM sqlite_schema WHERE name = 'order_totals'") == [[.text(f.viewSQL())]])
                #expect(try f.states() == [f.trigger: "created", ShopFixture.view: "created"])

                // The application writes the target, enforcing its foreign keys.
                let first = try insertReturningID(f.target, "INSERT INTO \(f.orders)(customer_id, total, note) VALUES (1, 5, 'after')")
                #expect(first == 101, "a new target order got id \(first); the source handed out up to 100")
                for i in 2...6 { try insertReturningID(f.target, "INSERT INTO \(f.orders)(customer_id, total, note) VALUES (\(i), 5, 'after')") }
                let newCustomer = try insertReturningID(f.target, "INSERT INTO \(f.customers)(email, name) VALUES ('new@x', 'New')")
                #expect(newCustomer == 22)
                let t = try Connection(path: f.target, mode: .readWrite)
                try t.execute("""
                    PRAGMA foreign_keys = ON;
                    DELETE FROM \(f.orders) WHERE id = 106;
                    UPDATE \(f.orders) SET total = total + 1 WHERE id = 10;
                    UPDATE \(f.orders) SET id = 93 WHERE id = 11;
                    DELETE FROM \(f.customers) WHERE id = 2;
                    UPDATE \(f.customers) SET email = 'c3@y' WHERE id = 3;
                    UPDATE \(f.customers) SET id = 500 WHERE id = 5;
                    INSERT INTO \(f.orders)(customer_id, total) VALUES (22, 1);
                    BEGIN; INSERT INTO \(f.orders)(customer_id, total) VALUES (22, 2); DELETE FROM \(f.orders) WHERE id = 108; COMMIT;
                    """)
                try t.close()
                // The trigger fired on each target insert (8), never during replay.
                #expect(try f.count(f.target, f.audit) == 101 + 8)

                let rollback = try await tidemark(["rollback", "--json"] + f.planArguments)
                try #require(rollback.status == 0, "rollback: \(rollback.summary)")
                #expect(try rollback.json().string("kind") == "reversed")
                let removed = try rollback.json()["removed"] as? [String] ?? []
                #expect(removed.count == 2 && removed.contains { $0.hasPrefix("trigger \(f.trigger) in ") } && removed.contains { $0.hasPrefix("view order_totals in ") }, "\(rollback.stdoutText)")
                for (s, t) in [("customers", f.customers), ("orders", f.orders), ("audit", f.audit)] {
                    expectRows(try rows(f.source, "SELECT * FROM \(s) ORDER BY id"), try rows(f.target, "SELECT * FROM \(t) ORDER BY id"), "\(s) after rollback")
                }
                #expect(try rows(f.source, "PRAGMA foreign_key_check").isEmpty)
                #expect(try rows(f.source, "PRAGMA integrity_check") == [[.text("ok")]])
                #expect(try f.objectNames(f.source, type: "trigger").contains("audit_orders"), "the source's own trigger is gone")
                let original = "CREATE VIEW order_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id"
                #expect(try rows(f.source, "SELECT sql FROM sqlite_schema WHERE name = 'order_totals'") == [[.text(original)]])
                if !sameFile {
                    #expect(try !f.objectNames(f.target, type: "trigger").contains(f.trigger), "rollback left the trigger in the target")
                    #expect(try !f.objectNames(f.target, type: "view").contains(ShopFixture.view), "rollback left the view in the target")
                } else {
                    #expect(try !f.objectNames(f.target, type: "trigger").contains(f.trigger), "rollback left the target's trigger")
                }
                // The source's next id is past every id the target handed out
                // (108: inserted and deleted in one transaction, which capture
                // folds into no change at all).
                let next = try insertReturningID(f.source, "INSERT INTO orders(customer_id, total) VALUES (1, 1)")
                #expect(next == 109, "a new source order got id \(next) after rollback; the target handed out up to 108")
            }
        }

        /// `tidemark cutover` SIGKILLed at each step with application
        /// triggers and views stored: once the next command settled it, the
        /// trigger and view exist in the target exactly when the cutover
        /// committed; a retry creates them and moves the sequence.
        @Test(.timeLimit(.minutes(10)), arguments: [
            (false, "reverse-capture"), (false, "locked"), (false, "prepared"), (false, "guarded"), (false, "switched"),
            (true, "locked"), (true, "guarded"),
        ])
        func killedAtAStepTriggersExistIffCommitted(sameFile: Bool, step: String) async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: sameFile)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                try f.storeSchema()
                try insertReturningID(f.source, "INSERT INTO orders(id, customer_id, total) VALUES (95, 3, 7)")
                let crashed = try await tidemark(["cutover", "--skip-verify", "--json"] + f.planArguments, environment: ["TIDEMARK_CRASH_AT": step])
                try #require(crashed.killed, "not killed at \(step): \(crashed.summary)")
                let status = try await tidemark(["status", "--json"] + f.planArguments)
                #expect(status.status == 0, "\(status.summary)")
                let committed = try rows(f.source, "SELECT count(*) FROM sqlite_schema WHERE name = '_tidemark_cutover'") == [[.integer(1)]]
                #expect(committed == (step == "switched"), "killed at \(step): committed \(committed)")
                #expect(try f.objectNames(f.target, type: "trigger").contains(f.trigger) == committed, "killed at \(step): trigger present iff committed")
                let viewSQL = try rows(f.target, "SELECT sql FROM sqlite_schema WHERE name = 'order_totals'")
                #expect((viewSQL == [[.text(f.viewSQL())]]) == committed, "killed at \(step): target view \(viewSQL)")
                #expect(try f.states() == [f.trigger: committed ? "created" : "pending", ShopFixture.view: committed ? "created" : "pending"])

                let retry = try await tidemark(["cutover", "--skip-verify", "--json"] + f.planArguments)
                try expectCutoverJSONShop(retry, alreadyDone: committed)
                #expect(try f.objectNames(f.target, type: "trigger").contains(f.trigger))
                #expect(try rows(f.target, "SELECT sql FROM sqlite_schema WHERE name = 'order_totals'") == [[.text(f.viewSQL())]])
                let id = try insertReturningID(f.target, "INSERT INTO \(f.orders)(customer_id, total) VALUES (1, 5)")
                #expect(id == 101)
                #expect(try rows(f.target, "SELECT what FROM \(f.audit) ORDER BY id DESC LIMIT 1") == [[.text("order 101")]])
            }
        }

        /// A rollback SIGKILLed at each of its steps, then finished by the
        /// next `rollback`: the triggers and views the cutover created are
        /// gone from the target, the source's sequence is past the target's
        /// ids, and the source's own trigger fired for no carried-back row.
        @Test(.timeLimit(.minutes(10)), arguments: ["rollback-fenced", "rollback-shipped", "rollback-applied", "rollback-switched"])
        func aKilledRollbackFinishedLaterDropsTheCutoversObjects(step: String) async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: false)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                try f.storeSchema()
                try expectCutoverJSONShop(try await tidemark(["cutover", "--skip-verify", "--json"] + f.planArguments))
                for _ in 0..<3 { try insertReturningID(f.target, "INSERT INTO orders(customer_id, total) VALUES (4, 4)") }
                try insertReturningID(f.target, "DELETE FROM orders WHERE id = 103")
                let crashed = try await tidemark(["rollback"] + f.planArguments, environment: ["TIDEMARK_CRASH_AT": step])
                try #require(crashed.killed, "not killed at \(step): \(crashed.summary)")
                let again = try await tidemark(["rollback", "--json"] + f.planArguments)
                try #require(again.status == 0, "rollback after the kill: \(again.summary)")
                #expect(try !f.objectNames(f.target, type: "trigger").contains(f.trigger))
                #expect(try !f.objectNames(f.target, type: "view").contains(ShopFixture.view))
                #expect(try f.states() == [f.trigger: "pending", ShopFixture.view: "pending"])
                expectRows(try rows(f.source, "SELECT * FROM audit ORDER BY id"), try rows(f.target, "SELECT * FROM audit ORDER BY id"), "audit after rollback")
                expectRows(try rows(f.source, "SELECT * FROM orders ORDER BY id"), try rows(f.target, "SELECT * FROM orders ORDER BY id"), "orders after rollback")
                let next = try insertReturningID(f.source, "INSERT INTO orders(customer_id, total) VALUES (1, 1)")
                #expect(next == 104, "a new source order got id \(next); the target handed out up to 103")
            }
        }

        /// A rollback killed after the source committed and before the
        /// target did, then a new `migrate`: the abandon it runs first drops
        /// the view the cutover created (views are not dropped with the
        /// tables they read) and the trigger, and the new migration starts
        /// with them pending.
        @Test(.timeLimit(.minutes(10)))
        func anAbandonDropsTheCutoversViewAndTrigger() async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: false, precreate: false)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                try f.storeSchema()
                try expectCutoverJSONShop(try await tidemark(["cutover", "--skip-verify", "--json"] + f.planArguments))
                #expect(try f.objectNames(f.target, type: "view").contains(ShopFixture.view))
                let crashed = try await tidemark(["rollback"] + f.planArguments, environment: ["TIDEMARK_CRASH_AT": "rollback-switched"])
                try #require(crashed.killed, "\(crashed.summary)")
                #expect(try f.objectNames(f.target, type: "view").contains(ShopFixture.view), "the target's side was not committed")
                let dry = try await tidemark(["rollback", "--dry-run", "--json"] + f.planArguments)
                #expect(dry.status == 0, "\(dry.summary)")
                let again = try await tidemark(["migrate"] + f.planArguments)
                try #require(again.status == 0, "migrate after the killed rollback: \(again.summary)")
                #expect(try !f.objectNames(f.target, type: "view").contains(ShopFixture.view), "the abandon left the cutover's view")
                #expect(try !f.objectNames(f.target, type: "trigger").contains(f.trigger), "the abandon left the cutover's trigger")
                #expect(try f.count(f.target, "orders") == f.count(f.source, "orders"))
            }
        }

        /// One file: replacing a view at cutover drops the source's INSTEAD
        /// OF trigger with it (SQLite drops a view's triggers with the view);
        /// the carried trigger takes over, and a rollback restores the view
        /// and the source's trigger as they were.
        @Test(.timeLimit(.minutes(10)))
        func aReplacedViewsInsteadOfTriggerComesBackWithIt() async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: true)
                let original = "CREATE TRIGGER order_totals_insert INSTEAD OF INSERT ON order_totals BEGIN INSERT INTO orders(customer_id, total, note) VALUES (NEW.customer_id, NEW.total, 'via view'); END"
                try Connection(path: f.source, mode: .readWrite).execute(original)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let carried = TargetSchema.Object(kind: .trigger, name: "order_totals_insert_v2", table: ShopFixture.view,
                                                  sql: "CREATE TRIGGER order_totals_insert_v2 INSTEAD OF INSERT ON order_totals BEGIN INSERT INTO orders_v2(customer_id, total, note) VALUES (NEW.customer_id, NEW.total, 'via view'); END")
                try f.storeSchema { s in s.triggers.append(carried) }
                try expectCutoverJSONShop(try await tidemark(["cutover", "--skip-verify", "--json"] + f.planArguments))
                #expect(try f.objectNames(f.source, type: "trigger").intersection(["order_totals_insert", "order_totals_insert_v2"]) == ["order_totals_insert_v2"])
                #expect(try tryWrite(f.source, "INSERT INTO order_totals(customer_id, total) VALUES (1, 9)") == nil)
                #expect(try rows(f.source, "SELECT id, total FROM orders_v2 WHERE note = 'via view'") == [[.integer(101), .integer(9)]])

                let rollback = try await tidemark(["rollback", "--json"] + f.planArguments)
                try #require(rollback.status == 0, "rollback: \(rollback.summary)")
                #expect(try rows(f.source, "SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'order_totals'") == [[.text(original)]])
                #expect(try tryWrite(f.source, "INSERT INTO order_totals(customer_id, total) VALUES (2, 3)") == nil)
                #expect(try rows(f.source, "SELECT id, total FROM orders WHERE note = 'via view' ORDER BY id") == [[.integer(101), .integer(9)], [.integer(102), .integer(3)]])
            }
        }

        /// A secondary index not yet built: cutover and its dry run refuse
        /// with one line naming it and `tidemark migrate`; nothing switches.
        @Test(.timeLimit(.minutes(10)))
        func cutoverRefusesWhileAnIndexIsPending() async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: false)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                try f.storeSchema { s in
                    s.indexes = [.init(kind: .index, name: "orders_by_customer", table: "orders", sql: "CREATE INDEX orders_by_customer ON orders(customer_id)")]
                }
                for dry in [true, false] {
                    let cut = try await tidemark(["cutover", "--skip-verify"] + (dry ? ["--dry-run"] : []) + f.planArguments)
                    #expect(cut.status == 1 && cut.stdout.isEmpty, "\(cut.summary)")
                    #expect(cut.stderrLines.count == 1 && cut.stderr.contains("orders_by_customer") && cut.stderr.contains("tidemark migrate"), "\(cut.stderr)")
                }
                #expect(try rows(f.source, "SELECT count(*) FROM sqlite_schema WHERE name = '_tidemark_cutover'") == [[.integer(0)]])
                #expect(try f.states()[f.trigger] == "pending")
                // Built (as `migrate` does it): the cutover proceeds.
                let t = try Connection(path: f.target, mode: .readWrite)
                try t.transaction(.immediate) {
                    try t.execute("CREATE INDEX orders_by_customer ON orders(customer_id)")
                    try SchemaStore.setState(.index, name: "orders_by_customer", state: "built", in: t)
                }
                try t.close()
                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + f.planArguments)
                try expectCutoverJSONShop(cut)
            }
        }

        /// A trigger the target cannot carry blocks cutover until
        /// `--drop-triggers` accepts it (named in a warning); `finish` then
        /// removes the stored schema and keeps the created trigger.
        @Test(.timeLimit(.minutes(10)))
        func anUncarriedTriggerBlocksCutoverUnlessDropped() async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: false)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                try f.storeSchema { s in
                    s.omissions = [.init(kind: "trigger", name: "orders_touch", table: "orders", reason: "names column legacy, which the plan drops", blocksCutover: true)]
                }
                let refused = try await tidemark(["cutover", "--skip-verify"] + f.planArguments)
                #expect(refused.status == 1 && refused.stderrLines.count == 1, "\(refused.summary)")
                #expect(refused.stderr.contains("orders_touch") && refused.stderr.contains("--drop-triggers") && refused.stderr.contains("legacy"), "\(refused.stderr)")
                #expect(try rows(f.source, "SELECT count(*) FROM sqlite_schema WHERE name = '_tidemark_cutover'") == [[.integer(0)]])
                #expect(try !f.objectNames(f.target, type: "trigger").contains(f.trigger))

                let cut = try await tidemark(["cutover", "--skip-verify", "--drop-triggers", "--json"] + f.planArguments)
                try expectCutoverJSONShop(cut)
                #expect(cut.stderr.contains("warning: --drop-triggers") && cut.stderr.contains("orders_touch"), "\(cut.stderr)")
                #expect(try (cut.json()["dropped"] as? [String])?.first?.contains("orders_touch") == true, "\(cut.stdoutText)")
                #expect(try f.objectNames(f.target, type: "trigger").contains(f.trigger))

                let finished = try await tidemark(["finish"] + f.planArguments)
                #expect(finished.status == 0, "\(finished.summary)")
                #expect(try !f.objectNames(f.target, type: "table").contains("_tidemark_schema"))
                #expect(try f.objectNames(f.target, type: "trigger").contains(f.trigger))
                #expect(try f.objectNames(f.target, type: "view").contains(ShopFixture.view))
            }
        }

        /// A stored trigger the target refuses (on a table the target
        /// lacks): the cutover fails whole with one line naming it; no
        /// trigger or view is left behind and the source stays authoritative.
        @Test(.timeLimit(.minutes(10)), arguments: [false, true])
        func aTriggerTheTargetRefusesFailsTheCutoverWhole(sameFile: Bool) async throws {
            try await withTemporaryDirectory { root in
                let f = try ShopFixture.create(root: root, sameFile: sameFile)
                let migrated = try await tidemark(["migrate"] + f.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let broken = TargetSchema.Object(kind: .trigger, name: "broken", table: "nowhere", sql: "CREATE TRIGGER broken AFTER INSERT ON nowhere BEGIN SELECT 1; END")
                try f.storeSchema { s in s.triggers.append(broken) }
                let cut = try await tidemark(["cutover", "--skip-verify"] + f.planArguments)
                #expect(cut.status == 1 && cut.stderrLines.count == 1 && cut.stderr.contains("trigger broken") && cut.stderr.contains("nothing was switched"), "\(cut.summary)")
                #expect(try rows(f.source, "SELECT count(*) FROM sqlite_schema WHERE name = '_tidemark_cutover'") == [[.integer(0)]])
                #expect(try !f.objectNames(f.target, type: "trigger").contains(f.trigger))
                let states = try f.states()
                #expect(states.values.allSatisfy { $0 == "pending" }, "\(states)")
                let original = "CREATE VIEW order_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id"
                #expect(try rows(f.source, "SELECT sql FROM sqlite_schema WHERE name = 'order_totals'") == [[.text(original)]])
                #expect(try tryWrite(f.source, "INSERT INTO orders(customer_id, total) VALUES (1, 1)") == nil, "the source must stay writable")
            }
        }

        /// Rollback's inverse needs only the computed column: renamed plain
        /// columns invert themselves, the `inverse:` entry gives the
        /// computed one, and a column the plan dropped keeps its DEFAULT.
        @Test(.timeLimit(.minutes(10)))
        func inverseListsOnlyComputedColumns() async throws {
            try await withTemporaryDirectory { root in
                let source = root + "/source.db"
                let c = try Connection(path: source, mode: .readWriteCreate)
                _ = try c.setJournalMode(.wal)
                try c.execute("""
                    CREATE TABLE people(id INTEGER PRIMARY KEY, email TEXT NOT NULL, full_name TEXT, age INTEGER NOT NULL, legacy TEXT DEFAULT 'old');
                    INSERT INTO people(id, email, full_name, age, legacy) VALUES (1, 'a@x', 'A', 30, 'l1'), (2, 'b@x', 'B', 40, 'l2'), (3, 'c@x', 'C', 50, 'l3');
                    """)
                try c.close()
                try """
                    source: source.db
                    target: target.db
                    log: changelog
                    tables:
                      people:
                        to: persons
                        columns:
                          id: id
                          mail: email
                          name: full_name
                          age_months: age * 12
                        inverse:
                          age: age_months / 12

                    """.write(toFile: root + "/plan.yml", atomically: true, encoding: .utf8)
                let plan = ["--plan", root + "/plan.yml"]
                let migrated = try await tidemark(["migrate"] + plan)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let cut = try await tidemark(["cutover", "--skip-verify", "--json"] + plan)
                try expectCutoverJSONShop(cut)
                let t = try Connection(path: root + "/target.db", mode: .readWrite)
                try t.execute("""
                    INSERT INTO persons(id, mail, name, age_months) VALUES (4, 'd@x', 'D', 240);
                    UPDATE persons SET mail = 'a@y', name = 'A2', age_months = 372 WHERE id = 1;
                    DELETE FROM persons WHERE id = 2;
                    """)
                try t.close()
                let rollback = try await tidemark(["rollback", "--json"] + plan)
                try #require(rollback.status == 0, "rollback: \(rollback.summary)")
                #expect(try rows(source, "SELECT id, email, full_name, age, legacy FROM people ORDER BY id") == [
                    [.integer(1), .text("a@y"), .text("A2"), .integer(31), .text("l1")],
                    [.integer(3), .text("c@x"), .text("C"), .integer(50), .text("l3")],
                    [.integer(4), .text("d@x"), .text("D"), .integer(20), .text("old")],
                ])
            }
        }

        /// A target change the source's constraints refuse (its CHECK is
        /// stricter than the target's) stops the rollback with one line
        /// naming the table, the key, the constraint and the LSN; nothing is
        /// carried back, and `cutover` keeps the target (lifting the fence).
        @Test(.timeLimit(.minutes(10)))
        func aChangeTheSourceRefusesStopsTheRollbackWhole() async throws {
            try await withTemporaryDirectory { root in
                let source = root + "/source.db"
                let c = try Connection(path: source, mode: .readWriteCreate)
                try c.execute("""
                    CREATE TABLE people(id INTEGER PRIMARY KEY, email TEXT NOT NULL, age INTEGER NOT NULL CHECK (age < 150));
                    INSERT INTO people VALUES (1, 'a@x', 30), (2, 'b@x', 40);
                    """)
                try c.close()
                // The plan's own target table is looser than the source.
                try """
                    source: source.db
                    target: target.db
                    log: changelog
                    tables:
                      people:
                        create: "CREATE TABLE people(id INTEGER PRIMARY KEY, email TEXT NOT NULL, age INTEGER NOT NULL)"

                    """.write(toFile: root + "/plan.yml", atomically: true, encoding: .utf8)
                let plan = ["--plan", root + "/plan.yml"]
                let migrated = try await tidemark(["migrate"] + plan)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                try expectCutoverJSONShop(try await tidemark(["cutover", "--skip-verify", "--json"] + plan))
                let t = try Connection(path: root + "/target.db", mode: .readWrite)
                try t.execute("INSERT INTO people VALUES (3, 'c@x', 20); UPDATE people SET age = 200 WHERE id = 2;")
                let rollback = try await tidemark(["rollback"] + plan)
                #expect(rollback.status == 1 && rollback.stderrLines.count == 1, "\(rollback.summary)")
                #expect(rollback.stderr.contains("people") && rollback.stderr.contains("id=2") && rollback.stderr.contains("CHECK") && rollback.stderr.contains("LSN"), "\(rollback.stderr)")
                #expect(try rows(source, "SELECT id, age FROM people ORDER BY id") == [[.integer(1), .integer(30)], [.integer(2), .integer(40)]], "a refused rollback carried something back")
                #expect(rollback.stderr.contains("tidemark cutover"), "\(rollback.stderr)")
                let kept = try await tidemark(["cutover", "--skip-verify", "--json"] + plan)
                try expectCutoverJSONShop(kept, alreadyDone: true)
                #expect(try tryWrite(root + "/target.db", "UPDATE people SET age = 100 WHERE id = 2") == nil, "the target stays writable")
                #expect(try rows(source, "SELECT id, age FROM people ORDER BY id") == [[.integer(1), .integer(30)], [.integer(2), .integer(40)]])
            }
        }

        /// A computed column that replaces a source column of the same name
        /// and has no `inverse:` entry: rollback refuses naming it.
        @Test(.timeLimit(.minutes(10)))
        func aReplacedColumnWithoutInverseIsRefused() async throws {
            try await withTemporaryDirectory { root in
                let source = root + "/source.db"
                let c = try Connection(path: source, mode: .readWriteCreate)
                try c.execute("""
                    CREATE TABLE people(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);
                    INSERT INTO people VALUES (1, 'A@x', 'a');
                    """)
                try c.close()
                try """
                    source: source.db
                    target: target.db
                    log: changelog
                    tables:
                      people:
                        columns:
                          id: id
                          email: lower(email)
                          name: name

                    """.write(toFile: root + "/plan.yml", atomically: true, encoding: .utf8)
                let plan = ["--plan", root + "/plan.yml"]
                let migrated = try await tidemark(["migrate"] + plan)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                try expectCutoverJSONShop(try await tidemark(["cutover", "--skip-verify", "--json"] + plan))
                let rollback = try await tidemark(["rollback"] + plan)
                #expect(rollback.status == 1 && rollback.stderrLines.count == 1, "\(rollback.summary)")
                #expect(rollback.stderr.contains("people.email") && rollback.stderr.contains("replaces source column email") && rollback.stderr.contains("inverse:"), "\(rollback.stderr)")
            }
        }
    }
}

/// A finished cutover's `--json` (the scenario's check without its pause
/// bound, which single runs on a busy machine may exceed).
func expectCutoverJSONShop(_ f: Finished, alreadyDone: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws {
    try #require(f.status == 0 && f.reason == .exit, "cutover failed: \(f.summary)", sourceLocation: sourceLocation)
    let j = try f.json()
    #expect(j.bool("cut_over") == true && j.bool("already_done") == alreadyDone, "\(f.stdoutText)", sourceLocation: sourceLocation)
}
