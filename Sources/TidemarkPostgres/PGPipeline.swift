import CLibPQ
import TidemarkLog

/// Statements queued inside `PGConnection.withPipeline`. Valid only during
/// the body; results are read by the pipeline and discarded.
public final class PGPipeline {
    unowned let connection: PGConnection
    let conn: OpaquePointer
    /// Statements queued whose results have not been read yet.
    var unread = 0
    /// The first server (or connection) error; later ones are consequences.
    var firstError: PGError?
    var finished = false

    /// Queued statements between flush requests (bounds memory and buffers).
    public static let batch = 1000

    init(connection: PGConnection, conn: OpaquePointer) {
        self.connection = connection
        self.conn = conn
    }

    /// Queues an execution of a statement prepared with `PGConnection.prepare`
    /// (parameters encoded against its types; a statement prepared another
    /// way gets `query`'s encoding).
    public func sendPrepared(_ name: String, _ params: [PGParam]) throws {
        try ready()
        let encoded: PGValues.Encoded
        if let types = connection.preparedTypes[name] {
            encoded = try PGValues.encode(params, against: types)
        } else {
            encoded = try PGValues.encode(params)
        }
        let rc = encoded.withCArrays { _, values, lengths, formats in
            PQsendQueryPrepared(conn, name, Int32(params.count), values, lengths, formats, 1)
        }
        try sent(rc)
    }

    /// Queues a statement with parameters (extended protocol, as `query`).
    public func send(_ sql: String, _ params: [PGParam] = []) throws {
        try ready()
        let encoded = try PGValues.encode(params)
        let rc = encoded.withCArrays { types, values, lengths, formats in
            PQsendQueryParams(conn, sql, Int32(params.count), types, values, lengths, formats, 1)
        }
        try sent(rc)
    }

    func ready() throws {
        if finished { throw PGError(message: "PGPipeline used after its withPipeline body ended") }
        if let firstError { throw firstError }
    }

    func sent(_ rc: Int32) throws {
        guard rc == 1 else {
            let error = PGError(message: "queueing a statement in the pipeline failed: " + connection.errorText(conn),
                                connectionLost: PQstatus(conn) == CONNECTION_BAD)
            if firstError == nil { firstError = error }
            throw error
        }
        unread += 1
        if unread >= PGPipeline.batch {
            readBatch()
            if let firstError { throw firstError }
        }
    }

    /// Asks the server to send what it has (no Sync) and reads the results
    /// of every statement queued so far.
    func readBatch() {
        guard PQsendFlushRequest(conn) == 1, PQflush(conn) == 0 else {
            record(connection.error(from: nil))
            unread = 0
            return
        }
        while unread > 0 {
            readOne()
            unread -= 1
            if PQstatus(conn) == CONNECTION_BAD { record(connection.error(from: nil)); unread = 0 }
        }
    }

    /// Reads one statement's results (up to the NULL that ends them).
    func readOne() {
        var results = 0
        while let res = PQgetResult(conn) {
            inspect(res)
            PQclear(res)
            results += 1
            if PQstatus(conn) == CONNECTION_BAD { break }
        }
        if results == 0, PQstatus(conn) == CONNECTION_BAD { record(connection.error(from: nil)) }
    }

    func inspect(_ res: OpaquePointer) {
        switch PQresultStatus(res) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE, PGRES_PIPELINE_SYNC:
            break
        case PGRES_PIPELINE_ABORTED:
            // Skipped because an earlier statement failed (already recorded).
            record(PGError(message: "a statement in the pipeline was skipped after an earlier error"))
        default:
            record(connection.error(from: res))
        }
    }

    func record(_ error: PGError) {
        if firstError == nil { firstError = error }
    }

    /// Sync, then read everything up to the sync point.
    func finish() {
        finished = true
        guard PQpipelineSync(conn) == 1 else {
            record(connection.error(from: nil))
            return
        }
        var emptyInARow = 0
        while true {
            guard let res = PQgetResult(conn) else {
                emptyInARow += 1
                if PQstatus(conn) == CONNECTION_BAD {
                    record(connection.error(from: nil))
                    return
                }
                // Two NULLs in a row cannot happen while the sync is pending.
                if emptyInARow > 2 { return }
                continue
            }
            emptyInARow = 0
            let status = PQresultStatus(res)
            inspect(res)
            PQclear(res)
            if status == PGRES_PIPELINE_SYNC { return }
        }
    }
}
