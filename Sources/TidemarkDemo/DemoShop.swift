import TidemarkCore
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import Synchronization

/// The demo's shop database and the application writers that keep changing
/// it: inserts, updates (including key changes) and deletes on two tables,
/// one with a composite key.
public enum DemoShop {
    public static let schema = """
        CREATE TABLE customers(
          id INTEGER PRIMARY KEY,
          email TEXT NOT NULL,
          first_name TEXT NOT NULL,
          last_name TEXT NOT NULL,
          balance REAL NOT NULL DEFAULT 0,
          note TEXT,
          created_at INTEGER NOT NULL);
        CREATE TABLE order_lines(
          order_id INTEGER NOT NULL,
          line INTEGER NOT NULL,
          sku TEXT NOT NULL,
          qty INTEGER NOT NULL,
          unit_price REAL NOT NULL,
          PRIMARY KEY (order_id, line)) WITHOUT ROWID;
        """

    /// The reshaping plan: customers → accounts with transforms; order
    /// lines keep their composite key and gain a computed total.
    /// `target` is the SQLite file (relative to the plan) or a PostgreSQL
    /// connection string, written as one double-quoted YAML scalar.
    public static func planYAML(target: String = "shop-v2.db") -> String {
        """
        source: shop.db
        target: \(yamlScalar(target))
        log: changelog
        chunk_rows: 5000
        tables:
          customers:
            to: accounts
            columns:
              id: id
              email: lower(email)
              full_name: first_name || ' ' || last_name
              balance_cents: CAST(round(balance * 100) AS INTEGER)
              note: note
          order_lines:
            columns:
              order_id: order_id
              line: line
              sku: upper(sku)
              qty: qty
              total: qty * unit_price
        """
    }

    /// `text` as written when it is a plain path (letters, digits, `._/-`),
    /// else double-quoted.
    static func yamlScalar(_ text: String) -> String {
        let plain = !text.isEmpty && text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._/-".unicodeScalars.contains($0)
        }
        return plain ? text : yamlQuoted(text)
    }

    /// `text` as a YAML double-quoted scalar: backslash, quote and control
    /// characters escaped, so a conninfo's quotes, `#` and `:` stay literal.
    static func yamlQuoted(_ text: String) -> String {
        var out = "\""
        for u in text.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out += "\\x" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// Creates `path` with `rows` rows (40% customers, 60% order lines).
    public static func create(path: String, rows: Int) throws {
        let c = try Connection(path: path, mode: .readWriteCreate)
        _ = try c.setJournalMode(.wal)
        try c.execute(schema)
        let customers = rows * 2 / 5
        try c.transaction(.immediate) {
            let ins = try c.prepare("INSERT INTO customers(id, email, first_name, last_name, balance, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            var rng = SplitMix(seed: 42)
            for i in 1...max(1, customers) {
                try ins.execute([.integer(Int64(i)), .text("User\(i)@Example.COM"), .text(firstNames[i % firstNames.count]),
                                 .text(lastNames[(i / 7) % lastNames.count]), .real(Double(rng.next() % 100_000) / 100),
                                 i % 5 == 0 ? .null : .text("note \(i)"), .integer(1_700_000_000 + Int64(i))])
            }
            let line = try c.prepare("INSERT INTO order_lines(order_id, line, sku, qty, unit_price) VALUES (?, ?, ?, ?, ?)")
            var n = 0, order: Int64 = 0
            while n < rows - customers {
                order += 1
                for l in 1...Int64(1 + rng.next() % 4) where n < rows - customers {
                    try line.execute([.integer(order), .integer(l), .text("sku-\(rng.next() % 5000)"), .integer(Int64(1 + rng.next() % 9)),
                                      .real(Double(rng.next() % 10_000) / 100)])
                    n += 1
                }
            }
        }
        try c.close()
    }

    /// Drops what a previous demo left in the PostgreSQL target: its target
    /// tables (in the plan's schema) and the migration's schema `tidemark`.
    /// The demo owns these names; nothing else in the database is touched.
    static func clearPostgres(_ plan: Plan) throws {
        do {
            let pg = try PGConnection(plan.target)
            defer { pg.close() }
            let tables = plan.tables.map { PGSQL.qualified(plan.pgSchema, $0.target) }.joined(separator: ", ")
            try pg.execute("SET client_min_messages = warning; DROP TABLE IF EXISTS \(tables) CASCADE; DROP SCHEMA IF EXISTS tidemark CASCADE")
        } catch let e as PGError where e.sqlState == nil {
            // A connection error already names the (redacted) target.
            throw MigrationError(.badPlan, "demo: cannot drop the previous demo's tables: \(e)")
        } catch {
            throw MigrationError(.badPlan, "demo: cannot drop the previous demo's tables in \(plan.displayTarget): \(error)")
        }
    }

    /// How many of the acknowledged inserts `keys` ("c": customer id, "o":
    /// order id with line 1) are missing from the store `route` names:
    /// the SQLite file, or the plan's PostgreSQL target.
    static func countMissing(_ keys: [(Character, Int64)], route: Route, plan: Plan) throws -> Int {
        var lost = 0
        if route.authority == .target && plan.isPostgres {
            // The route's connection string has no password: use the plan's.
            let pg = try PGConnection(plan.target)
            defer { pg.close() }
            try pg.prepare("tidemark_demo_customer", "SELECT count(*) FROM \(PGSQL.qualified(plan.pgSchema, route.table(for: "customers"))) WHERE id = $1", types: [.int8])
            try pg.prepare("tidemark_demo_line", "SELECT count(*) FROM \(PGSQL.qualified(plan.pgSchema, route.table(for: "order_lines"))) WHERE order_id = $1 AND line = 1", types: [.int8])
            for (kind, id) in keys {
                let r = try pg.execPrepared(kind == "c" ? "tidemark_demo_customer" : "tidemark_demo_line", [.value(.integer(id))])
                guard case .integer(let n)? = r.rows.first?.first else {
                    throw MigrationError(.badPlan, "demo: unexpected count reply from \(plan.displayTarget)")
                }
                if n == 0 { lost += 1 }
            }
            return lost
        }
        let store = try Connection(path: route.database, mode: .readOnly)
        let customer = try store.prepare("SELECT count(*) FROM \(quoteIdentifier(route.table(for: "customers"))) WHERE id = ?")
        let line = try store.prepare("SELECT count(*) FROM \(quoteIdentifier(route.table(for: "order_lines"))) WHERE order_id = ? AND line = 1")
        for (kind, id) in keys {
            let s = kind == "c" ? customer : line
            s.reset()
            try s.bind([.integer(id)])
            _ = try s.step()
            if s.columnInt64(0) == 0 { lost += 1 }
        }
        return lost
    }

    static let firstNames = ["Ada", "Grace", "Linus", "Barbara", "Edsger", "Margaret", "Ken", "Radia", "Dennis", "Frances"]
    static let lastNames = ["Lovelace", "Hopper", "Torvalds", "Liskov", "Dijkstra", "Hamilton", "Thompson", "Perlman", "Ritchie", "Allen"]

    /// Counters shared by writer threads.
    public final class WriterStats: Sendable {
        public let attempted = Atomic<Int>(0)
        public let acknowledged = Atomic<Int>(0)
        public let failed = Atomic<Int>(0)
        /// Writes refused by a guard trigger and retried at the new location.
        public let rerouted = Atomic<Int>(0)
        public let stop = Atomic<Bool>(false)
        /// While set, write latencies are recorded (the cutover window).
        public let measuring = Atomic<Bool>(false)
        let firstError = Mutex<String?>(nil)
        let latenciesMicros = Mutex<[Int]>([])
        /// Keys of acknowledged inserts: ("c", id) customers, ("o", order id) order lines.
        let inserted = Mutex<[(Character, Int64)]>([])
        public init() {}
        public var error: String? { firstError.withLock { $0 } }
        public var latencies: [Int] { latenciesMicros.withLock { $0 } }
        public var insertedKeys: [(Character, Int64)] { inserted.withLock { $0 } }
    }

    /// Starts `threads` writer threads, each with its own connection and a
    /// 5 s busy timeout, together making about `writesPerSecond` autocommit
    /// writes a second until `stats.stop` is set. Writers follow `router`:
    /// when a write is refused by a guard trigger (after cutover), they route
    /// again and continue on the target with its schema. Returns a function
    /// that waits for them to finish.
    public static func startWriters(path: String, threads: Int, writesPerSecond: Int, stats: WriterStats, router: Router? = nil) -> () -> Void {
        let done = Atomic<Int>(0)
        // The highest keys are read once, before any writer starts: a thread
        // reading them after another one inserted would start its key range
        // inside that thread's, and their inserts would collide.
        let top: (customers: Int64, orders: Int64)
        do {
            let c = try Connection(path: path, mode: .readOnly, busyTimeoutMillis: 5000)
            let customers = try c.prepare("SELECT max(id) FROM customers")
            let orders = try c.prepare("SELECT max(order_id) FROM order_lines")
            _ = try customers.step()
            _ = try orders.step()
            top = (customers.columnInt64(0), orders.columnInt64(0))
        } catch {
            stats.firstError.withLock { if $0 == nil { $0 = "\(error)" } }
            return {}
        }
        for t in 0..<threads {
            spawnThread {
                defer { done.add(1, ordering: .relaxed) }
                do {
                    try write(path: path, thread: t, rate: max(1, writesPerSecond / threads), stats: stats, router: router, top: top)
                } catch {
                    stats.firstError.withLock { if $0 == nil { $0 = "\(error)" } }
                }
            }
        }
        return {
            while done.load(ordering: .relaxed) < threads { Clock.sleep(milliseconds: 5) }
        }
    }

    /// The application's statements (the same on every store, with the
    /// same parameters): the writer loop names one and the store runs its
    /// own SQL for it, in the old schema (source) or the new one (target
    /// after cutover).
    public enum AppStatement: CaseIterable, Sendable {
        case insertCustomer, updateBalance, rekey, deleteCustomer, insertLine, updateQty, deleteLine
    }

    /// Where the writers write: the SQLite source, a SQLite target, or a
    /// PostgreSQL target. One per writer thread (not shared).
    public protocol AppStore: AnyObject {
        func execute(_ statement: AppStatement, _ params: [Value]) throws
    }

    /// The target's tables after cutover: the demo plan's reshaped ones
    /// (`accounts`, `order_lines` with `total`), or the source's own columns
    /// (an identity plan, as the benchmarks migrate with).
    public enum TargetShape: Sendable {
        case reshaped, sameAsSource
    }

    /// How a writer's SQLite connection commits.
    public struct StoreOptions: Sendable {
        public var targetShape: TargetShape
        /// `PRAGMA synchronous = NORMAL`, as many WAL applications run:
        /// commits are durable at the next checkpoint rather than fsynced
        /// one by one. Off: SQLite's default (FULL).
        public var synchronousNormal: Bool

        public init(targetShape: TargetShape = .reshaped, synchronousNormal: Bool = true) {
            self.targetShape = targetShape
            self.synchronousNormal = synchronousNormal
        }
    }

    /// One application write: a statement, its parameters, and the key it
    /// inserts (for the lost-write check).
    public struct Write: Sendable {
        public var statement: AppStatement
        public var parameters: [Value]
        /// ("c", customer id) or ("o", order id of line 1) for an insert.
        public var insertedKey: (Character, Int64)?
    }

    /// The demo's write mix for one writer thread: 20% customer inserts,
    /// 30% balance updates, 3% key changes, 7% customer deletes, 15% line
    /// inserts, 17% quantity updates, 8% line deletes. Keys a thread inserts
    /// lie in its own range above `top` (read before any writer starts), so
    /// threads never collide. Deterministic for a thread index.
    public struct WriteMix: Sendable {
        private var rng: SplitMix
        private var nextCustomer: Int64
        private var nextOrder: Int64
        private let customers: UInt64
        private let orders: UInt64

        public init(thread: Int, top: (customers: Int64, orders: Int64)) {
            rng = SplitMix(seed: UInt64(1000 + thread))
            nextCustomer = top.customers + 1 + Int64(thread) * 10_000_000
            nextOrder = top.orders + 1 + Int64(thread) * 10_000_000
            customers = UInt64(max(1, top.customers))
            orders = UInt64(max(1, top.orders))
        }

        public mutating func next() -> Write {
            let pick = rng.next() % 100
            let a = rng.next(), b = rng.next()
            let customer = Value.integer(Int64(1 + a % customers))
            let order = Value.integer(Int64(1 + a % orders))
            switch pick {
            case 0..<20:
                defer { nextCustomer += 1 }
                return Write(statement: .insertCustomer,
                             parameters: [.integer(nextCustomer), .text("New\(nextCustomer)@Shop.example"), .text("New"), .text("Customer"),
                                          .real(Double(a % 1000) / 4), .null],
                             insertedKey: ("c", nextCustomer))
            case 20..<50:
                return Write(statement: .updateBalance, parameters: [.real(Double(a % 100) / 8), .text("Changed\(b % 1000)@Example.com"), customer])
            case 50..<53:
                defer { nextCustomer += 1 }
                return Write(statement: .rekey, parameters: [.integer(nextCustomer), customer])
            case 53..<60:
                return Write(statement: .deleteCustomer, parameters: [customer])
            case 60..<75:
                defer { nextOrder += 1 }
                return Write(statement: .insertLine, parameters: [.integer(nextOrder), .integer(1), .text("sku-\(a % 5000)"), .integer(1), .real(9.99)],
                             insertedKey: ("o", nextOrder))
            case 75..<92:
                return Write(statement: .updateQty, parameters: [order, .integer(Int64(1 + b % 2))])
            default:
                return Write(statement: .deleteLine, parameters: [order, .integer(Int64(1 + b % 3))])
            }
        }
    }

    /// A SQLite database (the source, or a SQLite target after cutover).
    final class SQLiteAppStore: AppStore {
        let connection: Connection
        let statements: [AppStatement: Statement]

        init(path: String, route: Route?, options: StoreOptions) throws {
            let c = try Connection(path: path, mode: .readWrite, busyTimeoutMillis: 5000)
            if options.synchronousNormal { try c.execute("PRAGMA synchronous = NORMAL") }
            var sql: [AppStatement: String]
            if let route, route.authority == .target, options.targetShape == .reshaped {
                let accounts = quoteIdentifier(route.table(for: "customers"))
                let lines = quoteIdentifier(route.table(for: "order_lines"))
                sql = [
                    .insertCustomer: "INSERT INTO \(accounts)(id, email, full_name, balance_cents, note) VALUES (?1, lower(?2), ?3 || ' ' || ?4, CAST(round(?5 * 100) AS INTEGER), ?6)",
                    .updateBalance: "UPDATE \(accounts) SET balance_cents = balance_cents + CAST(round(?1 * 100) AS INTEGER), email = lower(?2) WHERE id = ?3",
                    .rekey: "UPDATE \(accounts) SET id = ?1 WHERE id = ?2",
                    .deleteCustomer: "DELETE FROM \(accounts) WHERE id = ?1",
                    .insertLine: "INSERT INTO \(lines)(order_id, line, sku, qty, total) VALUES (?1, ?2, upper(?3), ?4, ?4 * ?5)",
                    .updateQty: "UPDATE \(lines) SET total = total / qty * (qty + 1), qty = qty + 1 WHERE order_id = ?1 AND line = ?2",
                    .deleteLine: "DELETE FROM \(lines) WHERE order_id = ?1 AND line = ?2",
                ]
            } else {
                // The source's columns, under the names the route gives.
                let customers = quoteIdentifier(route?.table(for: "customers") ?? "customers")
                let lines = quoteIdentifier(route?.table(for: "order_lines") ?? "order_lines")
                sql = [
                    .insertCustomer: "INSERT INTO \(customers)(id, email, first_name, last_name, balance, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1700000000)",
                    .updateBalance: "UPDATE \(customers) SET balance = balance + ?1, email = ?2 WHERE id = ?3",
                    .rekey: "UPDATE \(customers) SET id = ?1 WHERE id = ?2",
                    .deleteCustomer: "DELETE FROM \(customers) WHERE id = ?1",
                    .insertLine: "INSERT INTO \(lines)(order_id, line, sku, qty, unit_price) VALUES (?1, ?2, ?3, ?4, ?5)",
                    .updateQty: "UPDATE \(lines) SET qty = qty + 1 WHERE order_id = ?1 AND line = ?2",
                    .deleteLine: "DELETE FROM \(lines) WHERE order_id = ?1 AND line = ?2",
                ]
            }
            var prepared: [AppStatement: Statement] = [:]
            for s in AppStatement.allCases {
                guard let text = sql[s] else { continue }
                prepared[s] = try c.prepare(text)
            }
            connection = c
            statements = prepared
        }

        func execute(_ statement: AppStatement, _ params: [Value]) throws {
            guard let s = statements[statement] else { throw MigrationError(.badPlan, "demo writer: no SQLite statement for \(statement)") }
            try s.execute(params)
        }
    }

    /// A PostgreSQL target after cutover, in the target's schema (tables in
    /// `schema`, named as the route says). Parameters are the SQLite
    /// statements' ($n is ?n), typed explicitly so binary values bind.
    final class PostgresAppStore: AppStore {
        let pg: PGConnection

        /// `conninfo` is the plan's full target (the route's is redacted).
        init(conninfo: String, schema: String, route: Route) throws {
            pg = try PGConnection(conninfo)
            let accounts = PGSQL.qualified(schema, route.table(for: "customers"))
            let lines = PGSQL.qualified(schema, route.table(for: "order_lines"))
            let statements: [(AppStatement, String, [PGType?])] = [
                (.insertCustomer, "INSERT INTO \(accounts)(id, email, full_name, balance_cents, note) VALUES ($1, lower($2), $3 || ' ' || $4, CAST(round($5 * 100) AS bigint), $6)",
                 [.int8, .text, .text, .text, .float8, .text]),
                (.updateBalance, "UPDATE \(accounts) SET balance_cents = balance_cents + CAST(round($1 * 100) AS bigint), email = lower($2) WHERE id = $3",
                 [.float8, .text, .int8]),
                (.rekey, "UPDATE \(accounts) SET id = $1 WHERE id = $2", [.int8, .int8]),
                (.deleteCustomer, "DELETE FROM \(accounts) WHERE id = $1", [.int8]),
                (.insertLine, "INSERT INTO \(lines)(order_id, line, sku, qty, total) VALUES ($1, $2, upper($3), $4, $4 * $5)",
                 [.int8, .int8, .text, .int8, .float8]),
                (.updateQty, "UPDATE \(lines) SET total = total / qty * (qty + 1), qty = qty + 1 WHERE order_id = $1 AND line = $2", [.int8, .int8]),
                (.deleteLine, "DELETE FROM \(lines) WHERE order_id = $1 AND line = $2", [.int8, .int8]),
            ]
            do {
                for (s, sql, types) in statements { try pg.prepare(Self.name(s), sql, types: types) }
            } catch {
                pg.close()
                throw error
            }
        }

        deinit { pg.close() }

        static func name(_ s: AppStatement) -> String { "tidemark_demo_\(s)" }

        func execute(_ statement: AppStatement, _ params: [Value]) throws {
            _ = try pg.execPrepared(Self.name(statement), params.map { PGParam.value($0) })
        }
    }

    /// The store a writer uses for `route`: the route's SQLite file, or the
    /// plan's PostgreSQL target once the target is authoritative.
    public static func openStore(path: String, route: Route?, router: Router?, options: StoreOptions = StoreOptions()) throws -> AppStore {
        if let route, let plan = router?.plan, route.authority == .target, plan.isPostgres {
            guard options.targetShape == .reshaped else {
                throw MigrationError(.badPlan, "demo writer: a PostgreSQL target is written in the demo plan's reshaped tables only")
            }
            return try PostgresAppStore(conninfo: plan.target, schema: plan.pgSchema, route: route)
        }
        return try SQLiteAppStore(path: route?.database ?? path, route: route, options: options)
    }

    static func write(path: String, thread: Int, rate: Int, stats: WriterStats, router: Router?, top: (customers: Int64, orders: Int64)) throws {
        var route = try router?.route()
        var app = try openStore(path: path, route: route, router: router)
        var mix = WriteMix(thread: thread, top: top)
        let intervalNanos = UInt64(1_000_000_000 / rate)
        var due = Clock.monotonicNanos()
        while !stats.stop.load(ordering: .relaxed) {
            let now = Clock.monotonicNanos()
            if now < due { Clock.sleep(milliseconds: max(1, Int((due - now) / 1_000_000))); continue }
            due += intervalNanos
            if now > due + 1_000_000_000 { due = now }  // do not burst after a stall
            stats.attempted.add(1, ordering: .relaxed)
            let write = mix.next()
            let begin = Clock.monotonicNanos()
            var attempt = 0
            while true {
                attempt += 1
                do {
                    try app.execute(write.statement, write.parameters)
                    stats.acknowledged.add(1, ordering: .relaxed)
                    if let k = write.insertedKey { stats.inserted.withLock { $0.append(k) } }
                } catch {
                    if let router, Router.isMovedError(error), attempt < 3 {
                        // Cut over: route again and write at the new location.
                        route = try router.route()
                        app = try openStore(path: path, route: route, router: router)
                        stats.rerouted.add(1, ordering: .relaxed)
                        continue
                    }
                    stats.failed.add(1, ordering: .relaxed)
                    stats.firstError.withLock { if $0 == nil { $0 = "\(error)" } }
                }
                break
            }
            if stats.measuring.load(ordering: .relaxed) {
                let micros = Int((Clock.monotonicNanos() - begin) / 1000)
                stats.latenciesMicros.withLock { $0.append(micros) }
            }
        }
    }
}

/// A small deterministic PRNG (SplitMix64) so the demo repeats.
struct SplitMix: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
