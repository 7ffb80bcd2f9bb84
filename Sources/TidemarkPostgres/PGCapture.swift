import TidemarkLog

/// A column of a captured PostgreSQL table and its PostgreSQL type name
/// (as `format_type` or a plan writes it: `bigint`, `double precision`,
/// `numeric(12,2)`, `character varying(40)`, …).
public struct PGCapturedColumn: Sendable, Hashable {
    public var name: String
    public var type: String
    public init(_ name: String, _ type: String) {
        self.name = name
        self.type = type
    }
}

/// A PostgreSQL table whose row changes are captured for a rollback.
public struct PGCapturedTable: Sendable, Hashable {
    /// The table's schema and name as PostgreSQL spells them.
    public var schema: String
    public var name: String
    /// The table name the change records carry (the source's table).
    public var logTable: String
    /// The primary-key columns, in key order.
    public var keyColumns: [String]
    /// Every column, in the order of the row images.
    public var columns: [PGCapturedColumn]

    public init(schema: String, name: String, logTable: String, keyColumns: [String], columns: [PGCapturedColumn]) {
        self.schema = schema
        self.name = name
        self.logTable = logTable
        self.keyColumns = keyColumns
        self.columns = columns
    }
}

/// What capture and shipping report when the outbox or its rows are not
/// what they must be. One line: what is wrong and what to do.
public struct PGCaptureError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Trigger capture of a PostgreSQL target's writes after a cutover, so that
/// a rollback can carry them back to the SQLite source. Needs no server
/// configuration: plain PL/pgSQL triggers and one table.
///
/// ## Objects (schema `tidemark`)
///
/// | object | what |
/// |---|---|
/// | `tidemark.outbox` | one row per captured row change |
/// | `tidemark.outbox_id_seq` | its `id` sequence (`CACHE 1`: see ``PGShipper``) |
/// | `tidemark."capture_<table>_<hash>"()` | one generated trigger function per table |
/// | `tidemark.refuse_truncate()` | raises the trigger argument as an error |
/// | trigger `tidemark_capture` | `AFTER INSERT OR UPDATE OR DELETE … FOR EACH ROW` |
/// | trigger `tidemark_no_truncate` | `BEFORE TRUNCATE … FOR EACH STATEMENT`: refused |
///
/// `outbox(id, xid, lsn, ts_us, tbl, op, key, before, after)`: `id` from the
/// sequence when the trigger runs (while the writer holds the row's lock),
/// `xid` the writer's transaction, `lsn` null until the shipper assigns it,
/// `ts_us` the change's time in µs since the Unix epoch, `tbl` the log table
/// name, `op` `i`/`u`/`d`.
///
/// ## Row images
///
/// `key`, `before` and `after` are jsonb arrays (arrays keep their order;
/// objects would not) of `[column, tag, payload]`, in key order for `key`
/// and column order for the images. The payload is a JSON string, or JSON
/// null for SQL NULL:
///
/// | tag | types | payload | decoded as |
/// |---|---|---|---|
/// | `i` | smallint, integer, bigint; boolean (0/1) | decimal | `.integer` |
/// | `f` | double precision; real (widened exactly) | `float8send` as 16 hex digits: the bits, so -0.0, NaN payloads, ±inf exact | `.real` |
/// | `t` | text, character varying | the text | `.text` |
/// | `b` | bytea | lowercase hex | `.blob` |
/// | `n` | numeric | its decimal text | `.integer` if integral and in Int64, else `.real` if the double's shortest form is that decimal exactly, else `.text` |
/// | `x` | anything else (char(n), timestamps, uuid, json, enums, arrays…) | the type's text output (`::text`) | `.text` |
///
/// An update is one record whatever it changes: key = the new key, before =
/// the old row (so its key columns hold the old key), after = the new row.
/// An update that moves the row to another key is therefore one record whose
/// ``TidemarkLog/ChangeRecord/isKeyChange`` is true, as on the SQLite side.
///
/// TRUNCATE fires no row triggers, so it could not be captured: it is refused.
public enum PGCapture {
    public static let schema = "tidemark"
    public static let outbox = "tidemark.outbox"
    public static let outboxSequence = "tidemark.outbox_id_seq"
    /// A session setting: `on` in the migrator's own session, whose writes
    /// (the source's changes replayed) capture skips.
    public static let replayingSetting = "tidemark.replaying"
    static let captureTrigger = "tidemark_capture"
    static let truncateTrigger = "tidemark_no_truncate"

    /// The outbox, its sequence and index, and the shared functions.
    static let outboxSQL = """
        CREATE SCHEMA IF NOT EXISTS tidemark;
        CREATE TABLE IF NOT EXISTS tidemark.outbox (
            id bigserial PRIMARY KEY,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            lsn bigint NULL,
            ts_us bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
            tbl text NOT NULL,
            op char(1) NOT NULL CHECK (op IN ('i', 'u', 'd')),
            "key" jsonb NOT NULL,
            "before" jsonb NULL,
            "after" jsonb NULL
        );
        ALTER SEQUENCE tidemark.outbox_id_seq CACHE 1;
        CREATE UNIQUE INDEX IF NOT EXISTS outbox_lsn ON tidemark.outbox (lsn);
        CREATE OR REPLACE FUNCTION tidemark.refuse_truncate() RETURNS trigger
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $tm$
        BEGIN
            RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'feature_not_supported';
        END
        $tm$;
        """

    /// Installs (or reinstalls, idempotently) capture of `tables`, in one
    /// transaction: the outbox if missing, then each table's trigger
    /// function and triggers. Rows already in the outbox are kept.
    public static func install(_ c: PGConnection, tables: [PGCapturedTable]) throws {
        for t in tables { try check(t) }
        try c.transaction {
            // No "does not exist, skipping" notices from the drops below.
            try c.execute("SET LOCAL client_min_messages = warning")
            try c.execute(outboxSQL)
            for t in tables {
                try c.execute(functionSQL(t))
                let target = qualified(t)
                try c.execute("""
                    DROP TRIGGER IF EXISTS \(captureTrigger) ON \(target);
                    CREATE TRIGGER \(captureTrigger) AFTER INSERT OR UPDATE OR DELETE ON \(target)
                        FOR EACH ROW EXECUTE FUNCTION \(functionName(t))();
                    DROP TRIGGER IF EXISTS \(truncateTrigger) ON \(target);
                    CREATE TRIGGER \(truncateTrigger) BEFORE TRUNCATE ON \(target)
                        FOR EACH STATEMENT EXECUTE FUNCTION tidemark.refuse_truncate(\(PGSQL.literal(truncateMessage(t))));
                    """)
            }
        }
    }

    /// Drops the triggers and trigger functions of `tables`. The outbox
    /// stays while it holds rows not yet shipped (or other tables are still
    /// captured), unless `dropOutbox` — then it goes with its rows.
    public static func uninstall(_ c: PGConnection, tables: [PGCapturedTable], dropOutbox: Bool = false) throws {
        try c.transaction {
            try c.execute("SET LOCAL client_min_messages = warning")
            for t in tables {
                let exists = try c.query("SELECT to_regclass($1) IS NOT NULL", [.textual(qualified(t))])
                if isTrue(exists) {
                    try c.execute("""
                        DROP TRIGGER IF EXISTS \(captureTrigger) ON \(qualified(t));
                        DROP TRIGGER IF EXISTS \(truncateTrigger) ON \(qualified(t));
                        """)
                }
                try c.execute("DROP FUNCTION IF EXISTS \(functionName(t))()")
            }
            guard isTrue(try c.query("SELECT to_regclass('tidemark.outbox') IS NOT NULL")) else { return }
            var drop = dropOutbox
            if !drop {
                let left = try c.query("""
                    SELECT NOT EXISTS (SELECT 1 FROM tidemark.outbox)
                       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = '\(captureTrigger)')
                    """)
                drop = isTrue(left)
            }
            if drop {
                try c.execute("DROP TABLE tidemark.outbox")
                let stillGuarding = try c.query("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = '\(truncateTrigger)')")
                if !isTrue(stillGuarding) { try c.execute("DROP FUNCTION IF EXISTS tidemark.refuse_truncate()") }
            }
        }
    }

    /// Whether the outbox exists in the connection's database.
    public static func isInstalled(_ c: PGConnection) throws -> Bool {
        isTrue(try c.query("SELECT to_regclass('tidemark.outbox') IS NOT NULL"))
    }

    static func isTrue(_ rows: PGRows) -> Bool {
        guard let v = rows.rows.first?.first else { return false }
        switch v {
        case .integer(let i): return i != 0
        case .text(let s): return s == "t" || s == "true"
        default: return false
        }
    }

    static func truncateMessage(_ t: PGCapturedTable) -> String {
        "TRUNCATE of \(t.schema).\(t.name) is refused: tidemark captures this table's writes for a rollback and cannot capture a TRUNCATE; delete the rows with DELETE instead"
    }

    static func qualified(_ t: PGCapturedTable) -> String {
        "\(PGSQL.ident(t.schema)).\(PGSQL.ident(t.name))"
    }

    static func check(_ t: PGCapturedTable) throws {
        let where_ = "capture of \(t.schema).\(t.name)"
        if t.logTable.isEmpty { throw PGCaptureError("\(where_): the log table name is empty; give the source table's name") }
        if t.keyColumns.isEmpty { throw PGCaptureError("\(where_): no key columns; a captured table needs a primary key") }
        if t.columns.isEmpty { throw PGCaptureError("\(where_): no columns given") }
        let names = Set(t.columns.map(\.name))
        if names.count != t.columns.count { throw PGCaptureError("\(where_): a column is listed twice") }
        for k in t.keyColumns where !names.contains(k) {
            throw PGCaptureError("\(where_): key column '\(k)' is not among the columns given; list every column")
        }
    }

    /// `tidemark."capture_<table>_<hash>"`: readable, and unique per
    /// schema-qualified table within PostgreSQL's 63-byte names.
    static func functionName(_ t: PGCapturedTable) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a 64
        for b in Array(t.schema.utf8) + [0] + Array(t.name.utf8) {
            hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3
        }
        var short = ""
        for ch in t.name.unicodeScalars where short.utf8.count < 24 {
            if ch.isASCII && (ch.properties.isAlphabetic || ch.properties.numericType != nil || ch == "_") { short.unicodeScalars.append(ch) }
        }
        var hex = String(hash, radix: 16)
        while hex.count < 16 { hex = "0" + hex }
        return "tidemark.\(PGSQL.ident("capture_\(short)_\(hex)"))"
    }

    /// The tag and the SQL expression encoding `row.column` (see the table in
    /// the type's documentation).
    static func encoding(_ column: PGCapturedColumn, row: String) -> (tag: String, expr: String) {
        let ref = "\(row).\(PGSQL.ident(column.name))"
        switch baseType(column.type) {
        case "bigint", "int8", "integer", "int", "int4", "smallint", "int2", "bigserial", "serial", "smallserial", "serial8", "serial4", "serial2":
            return ("i", "(\(ref))::text")
        case "boolean", "bool":
            return ("i", "(\(ref))::int::text")
        case "double precision", "float8", "float", "real", "float4":
            return ("f", "encode(float8send((\(ref))::float8), 'hex')")
        case "text", "character varying", "varchar":
            return ("t", "(\(ref))::text")
        case "bytea":
            return ("b", "encode(\(ref), 'hex')")
        case "numeric", "decimal":
            return ("n", "(\(ref))::text")
        default:
            return ("x", "(\(ref))::text")
        }
    }

    /// The type name without modifiers, lowercased: `numeric(12,2)` → `numeric`.
    static func baseType(_ type: String) -> String {
        var t = type.lowercased()
        if let paren = t.firstIndex(of: "(") {
            // `float(24)` is real, `float(53)` double precision: both float8 here.
            t = String(t[..<paren])
        }
        return t.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).joined(separator: " ")
    }

    /// A jsonb array of `[name, tag, payload]` for `columns` of `row`.
    /// `jsonb_build_array` takes at most 100 arguments: chunks are joined
    /// with `||`.
    static func imageSQL(_ columns: [PGCapturedColumn], row: String) -> String {
        let fields = columns.map { column -> String in
            let (tag, expr) = encoding(column, row: row)
            return "jsonb_build_array(\(PGSQL.literal(column.name)), '\(tag)', \(expr))"
        }
        var chunks: [String] = []
        var i = 0
        while i < fields.count {
            let end = min(i + 90, fields.count)
            chunks.append("jsonb_build_array(\(fields[i..<end].joined(separator: ", ")))")
            i = end
        }
        return chunks.count == 1 ? chunks[0] : "(" + chunks.joined(separator: " || ") + ")"
    }

    /// The trigger function of one table. `SECURITY DEFINER`: writers need
    /// no rights on the outbox; `search_path` is pinned so no writer's
    /// objects can stand in for the catalog functions it calls.
    static func functionSQL(_ t: PGCapturedTable) -> String {
        let keyColumns = t.keyColumns.compactMap { k in t.columns.first { $0.name == k } }
        let table = PGSQL.literal(t.logTable)
        let insertInto = "INSERT INTO tidemark.outbox (tbl, op, \"key\", \"before\", \"after\") VALUES"
        // The migrator's own session (replaying the source's changes, which
        // are in the log already) sets `tidemark.replaying`: its writes are
        // not captured back as the target's.
        var body = """
            BEGIN
                IF current_setting('\(replayingSetting)', true) = 'on' THEN
                    RETURN NULL;
                END IF;
                IF TG_OP = 'INSERT' THEN
                    \(insertInto) (\(table), 'i', \(imageSQL(keyColumns, row: "NEW")), NULL, \(imageSQL(t.columns, row: "NEW")));
                ELSIF TG_OP = 'UPDATE' THEN
                    \(insertInto) (\(table), 'u', \(imageSQL(keyColumns, row: "NEW")), \(imageSQL(t.columns, row: "OLD")), \(imageSQL(t.columns, row: "NEW")));
                ELSE
                    \(insertInto) (\(table), 'd', \(imageSQL(keyColumns, row: "OLD")), \(imageSQL(t.columns, row: "OLD")), NULL);
                END IF;
                RETURN NULL;
            END
            """
        var tag = "$tm$"
        var n = 0
        while body.contains(tag) { n += 1; tag = "$tm\(n)$" }
        body = tag + "\n" + body + "\n" + tag
        return """
            CREATE OR REPLACE FUNCTION \(functionName(t))() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS \(body)
            """
    }
}
