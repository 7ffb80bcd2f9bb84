/// Guard triggers on PostgreSQL tables that no longer hold the live data
/// (after a rollback from a PostgreSQL target): every INSERT, UPDATE,
/// DELETE and TRUNCATE statement on them fails with the given message,
/// before it changes anything.
///
/// Objects: the function `tidemark.refuse_write()` (raises its trigger
/// argument, SQLSTATE 25006 `read_only_sql_transaction`) and, per table,
/// the statement trigger `tidemark_guard`.
public enum PGGuard {
    static let trigger = "tidemark_guard"

    static let functionSQL = """
        CREATE SCHEMA IF NOT EXISTS tidemark;
        CREATE OR REPLACE FUNCTION tidemark.refuse_write() RETURNS trigger
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $tm$
        BEGIN
            RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'read_only_sql_transaction';
        END
        $tm$;
        """

    /// Installs (or replaces, with the new message) the guard on
    /// `schema`.`tables`, in one transaction. `message` is what writers see,
    /// e.g. "this table moved back to SQLite file /data/shop.db; write there".
    public static func install(_ c: PGConnection, schema: String, tables: [String], message: String) throws {
        try c.transaction {
            try c.execute("SET LOCAL client_min_messages = warning")
            try c.execute(functionSQL)
            for table in tables {
                let target = "\(PGSQL.ident(schema)).\(PGSQL.ident(table))"
                try c.execute("""
                    DROP TRIGGER IF EXISTS \(trigger) ON \(target);
                    CREATE TRIGGER \(trigger) BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON \(target)
                        FOR EACH STATEMENT EXECUTE FUNCTION tidemark.refuse_write(\(PGSQL.literal(message)));
                    """)
            }
        }
    }

    /// Removes the guard from `schema`.`tables` (missing tables or guards
    /// are fine); the shared function goes when no guard is left.
    public static func remove(_ c: PGConnection, schema: String, tables: [String]) throws {
        try c.transaction {
            try c.execute("SET LOCAL client_min_messages = warning")
            for table in tables {
                let target = "\(PGSQL.ident(schema)).\(PGSQL.ident(table))"
                let exists = try c.query("SELECT to_regclass($1) IS NOT NULL", [.textual(target)])
                if PGCapture.isTrue(exists) { try c.execute("DROP TRIGGER IF EXISTS \(trigger) ON \(target)") }
            }
            let left = try c.query("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = '\(trigger)')")
            if !PGCapture.isTrue(left) { try c.execute("DROP FUNCTION IF EXISTS tidemark.refuse_write()") }
        }
    }
}
