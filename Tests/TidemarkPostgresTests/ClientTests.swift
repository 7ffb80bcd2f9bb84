import Testing
import TidemarkLog
import TidemarkPostgres
import TidemarkTestSupport

/// A connection to a fresh database of the shared test cluster.
func freshConnection(_ prefix: String = "client") throws -> (PGConnection, String) {
    let server = try PostgresServer.shared()
    let db = try server.createDatabase(prefix)
    return (try PGConnection(server.conninfo(database: db)), db)
}

@Suite struct ClientTests {
    @Test func connectExecuteQuery() throws {
        let (c, _) = try freshConnection()
        defer { c.close() }
        #expect(c.serverVersionNumber >= 120000)
        try c.execute("CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        let rows = try c.query("SELECT id, v FROM t WHERE id = $1", [.value(.integer(1))])
        #expect(rows.columnNames == ["id", "v"])
        #expect(rows.rows == [[.integer(1), .text("a")]])
        let n = try c.transaction { () throws -> Int in
            try c.query("INSERT INTO t VALUES ($1, $2)", [.value(.integer(2)), .value(.text("b"))]).affectedRows
        }
        #expect(n == 1)
        let copied = try c.copyIn("COPY t (id, v) FROM STDIN (FORMAT binary)") { buf in
            for i in 3...5 {
                buf.beginRow(fieldCount: 2)
                buf.int8(Int64(i))
                buf.text("x\(i)")
            }
        }
        #expect(copied == 3)
        #expect(try c.query("SELECT count(*) FROM t").rows == [[.integer(5)]])
    }
}
