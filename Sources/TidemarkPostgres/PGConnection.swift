import CLibPQ
import TidemarkLog

/// A synchronous PostgreSQL connection over libpq.
///
/// Not for concurrent use: one thread at a time (like libpq's PGconn).
/// Every call either succeeds or throws a `PGError`; after an error with
/// `connectionLost` the connection is unusable and should be closed.
public final class PGConnection {
    /// nil once closed.
    var conn: OpaquePointer?
    /// Passwords this connection may know (conninfo, PGPASSWORD, ~/.pgpass);
    /// removed from every message defensively.
    let secrets: [String]
    /// Parameter type OIDs of statements prepared through `prepare`.
    var preparedTypes: [String: [UInt32]] = [:]
    var savepointCounter = 0
    var inPipeline = false
    /// The pipeline `sendPipelined` keeps open between calls (nil: none).
    /// Invariant: every synchronous call settles it first (``live()``), so
    /// its results and its first error are read before anything else runs
    /// on the connection, and in the order the statements were sent.
    var openPipeline: PGPipeline?

    public let serverVersionNumber: Int

    /// PQconnectdb: URI or key=value; PG* env vars and ~/.pgpass as in psql.
    /// Sets client_encoding UTF8 and refuses servers older than 12.
    public init(_ conninfo: String) throws {
        // A conninfo libpq cannot parse: its message may quote part of the
        // text, so it is shown only when the conninfo holds no password.
        if let problem = PGConnection.conninfoSyntaxError(conninfo) {
            let shown = PGConnection.redacted(conninfo)
            let holdsPassword = shown != conninfo.trimmedBlanks()
            throw PGError(message: holdsPassword
                ? "invalid PostgreSQL connection string (\(shown)); check its syntax (a URI's password must be percent-encoded)"
                : "invalid PostgreSQL connection string (\(shown)): \(problem)")
        }
        guard let c = PQconnectdb(conninfo) else {
            throw PGError(message: "could not allocate a PostgreSQL connection (out of memory)")
        }
        var secrets: [String] = []
        if let pw = PGConnection.conninfoPassword(conninfo) { secrets.append(pw) }
        if let pw = PQpass(c).map({ String(cString: $0) }), !pw.isEmpty { secrets.append(pw) }
        self.secrets = secrets.filter { $0.count >= 4 }
        let redact: (String) -> String = { [secrets = self.secrets] text in PGConnection.redact(text, secrets) }
        guard PQstatus(c) == CONNECTION_OK else {
            let message = PGError.oneLine(redact(String(cString: PQerrorMessage(c))))
            PQfinish(c)
            throw PGError(message: "could not connect to PostgreSQL (\(PGConnection.redacted(conninfo))): \(message)")
        }
        // Notices (e.g. "table does not exist, skipping") are not printed.
        PQsetNoticeProcessor(c, { _, _ in }, nil)
        let version = Int(PQserverVersion(c))
        if let refusal = PGConnection.versionRefusal(version) {
            PQfinish(c)
            throw refusal
        }
        if PQsetClientEncoding(c, "UTF8") != 0 {
            let message = PGError.oneLine(redact(String(cString: PQerrorMessage(c))))
            PQfinish(c)
            throw PGError(message: "could not set client_encoding to UTF8: \(message)")
        }
        conn = c
        serverVersionNumber = version
    }

    deinit { close() }

    /// The error for a server older than 12 (nil when the version is fine).
    static func versionRefusal(_ version: Int) -> PGError? {
        guard version < 120000 else { return nil }
        // server_version_num: major*10000+minor from 10 on, else major*10000+minor*100+patch.
        let shown = version >= 100000 ? "\(version / 10000).\(version % 10000)"
            : "\(version / 10000).\(version / 100 % 100).\(version % 100)"
        return PGError(message: "the PostgreSQL server is version \(shown) (server_version_num \(version)); Tidemark needs PostgreSQL 12 or newer")
    }

    /// The conninfo without its password (URI and key=value forms).
    public static func redacted(_ conninfo: String) -> String { PGSQL.redactedConninfo(conninfo) }

    /// The server process id serving this connection (pg_backend_pid()).
    public var backendPID: Int { conn.map { Int(PQbackendPID($0)) } ?? 0 }

    /// False once closed or after libpq found the connection broken.
    public var isUsable: Bool { conn.map { PQstatus($0) == CONNECTION_OK } ?? false }

    public func close() {
        openPipeline = nil
        if let c = conn { PQfinish(c) }
        conn = nil
    }

    // MARK: statements

    /// Simple query protocol; may hold several statements; results discarded.
    public func execute(_ sql: String) throws {
        let c = try live()
        let res = PQexec(c, sql)
        defer { PQclear(res) }
        try checkStatus(res, sql: sql)
    }

    /// Extended protocol, binary results.
    @discardableResult
    public func query(_ sql: String, _ params: [PGParam] = []) throws -> PGRows {
        let c = try live()
        let encoded = try PGValues.encode(params)
        let res = encoded.withCArrays { types, values, lengths, formats in
            PQexecParams(c, sql, Int32(params.count), types, values, lengths, formats, 1)
        }
        defer { PQclear(res) }
        try checkStatus(res, sql: sql)
        return PGValues.rows(res!)
    }

    /// Streams a query's rows to `body` one at a time (libpq single-row
    /// mode), so a large result is never held whole; decoding as `query`.
    /// Returns the column names. If `body` throws, the query is cancelled,
    /// its remaining rows discarded, and the error rethrown.
    @discardableResult
    public func forEachRow(_ sql: String, _ params: [PGParam] = [], _ body: ([Value]) throws -> Void) throws -> [String] {
        let c = try live()
        let encoded = try PGValues.encode(params)
        let sent = encoded.withCArrays { types, values, lengths, formats in
            PQsendQueryParams(c, sql, Int32(params.count), types, values, lengths, formats, 1)
        }
        guard sent == 1 else { throw error(from: nil) }
        _ = PQsetSingleRowMode(c)
        var names: [String] = []
        var failure: Error?
        while let res = PQgetResult(c) {
            defer { PQclear(res) }
            if failure != nil { continue }   // draining after an error
            let status = PQresultStatus(res)
            if status == PGRES_SINGLE_TUPLE || status == PGRES_TUPLES_OK {
                let rows = PGValues.rows(res)
                if names.isEmpty { names = rows.columnNames }
                do { for row in rows.rows { try body(row) } } catch {
                    failure = error
                    if let cancel = PQgetCancel(c) {
                        var buffer = [CChar](repeating: 0, count: 256)
                        _ = PQcancel(cancel, &buffer, 256)
                        PQfreeCancel(cancel)
                    }
                }
            } else {
                do { try checkStatus(res, sql: sql) } catch { failure = error }
            }
        }
        if let failure { throw failure }
        return names
    }

    /// Prepares a named statement; nil types (or missing trailing ones) are
    /// inferred by the server. The final parameter types are read back
    /// (PQdescribePrepared) so `execPrepared` can send matching formats.
    public func prepare(_ name: String, _ sql: String, types: [PGType?]) throws {
        let c = try live()
        let oids: [Oid] = types.map { $0?.rawValue ?? 0 }
        let res = oids.withUnsafeBufferPointer { PQprepare(c, name, sql, Int32(oids.count), $0.baseAddress) }
        defer { PQclear(res) }
        try checkStatus(res, sql: sql)
        preparedTypes[name] = try describe(name)
    }

    @discardableResult
    public func execPrepared(_ name: String, _ params: [PGParam]) throws -> PGRows {
        let c = try live()
        let types: [UInt32]
        if let known = preparedTypes[name] { types = known } else {
            types = try describe(name)
            preparedTypes[name] = types
        }
        let encoded = try PGValues.encode(params, against: types)
        let res = encoded.withCArrays { _, values, lengths, formats in
            PQexecPrepared(c, name, Int32(params.count), values, lengths, formats, 1)
        }
        defer { PQclear(res) }
        try checkStatus(res, sql: "EXECUTE \(name)")
        return PGValues.rows(res!)
    }

    func describe(_ name: String) throws -> [UInt32] {
        let c = try live()
        let res = PQdescribePrepared(c, name)
        defer { PQclear(res) }
        try checkStatus(res, sql: "describe \(name)")
        return (0..<PQnparams(res)).map { PQparamtype(res, $0) }
    }

    /// BEGIN … COMMIT, ROLLBACK on throw. Inside a transaction already, a
    /// savepoint instead (released on success, rolled back to on throw).
    /// A COMMIT the server turns into a ROLLBACK (an earlier statement of
    /// the transaction failed and the error was caught) throws.
    public func transaction<R>(_ body: () throws -> R) throws -> R {
        let c = try live()
        switch PQtransactionStatus(c) {
        case PQTRANS_IDLE:
            try execute("BEGIN")
            let result: R
            do {
                result = try body()
                try settlePipeline()
            } catch {
                discardPipeline()
                try? execute("ROLLBACK")
                throw error
            }
            let res = PQexec(c, "COMMIT")
            defer { PQclear(res) }
            try checkStatus(res, sql: "COMMIT")
            if let tag = PQcmdStatus(res).map({ String(cString: $0) }), tag == "ROLLBACK" {
                throw PGError(message: "the transaction was rolled back at COMMIT because a statement in it had failed", sqlState: "25P02")
            }
            return result
        case PQTRANS_INTRANS, PQTRANS_INERROR:
            savepointCounter += 1
            let savepoint = PGSQL.ident("tidemark_sp_\(savepointCounter)")
            try execute("SAVEPOINT \(savepoint)")
            let result: R
            do {
                result = try body()
                try settlePipeline()
            } catch {
                discardPipeline()
                try? execute("ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)")
                throw error
            }
            try execute("RELEASE SAVEPOINT \(savepoint)")
            return result
        default:
            throw lostOrBusy()
        }
    }

    // MARK: pipeline

    /// Pipeline mode: queue many statements, one round trip. Enter, run the
    /// body, sync, drain every result, exit; throws the first error. Results
    /// of queued statements are read and discarded.
    ///
    /// Memory and socket buffers stay bounded: every
    /// `PGPipeline.batch` queued statements a flush request makes the server
    /// send their results, which are read before queueing more (no Sync, so
    /// the pipeline stays one implicit transaction when not in one). After a
    /// server error the next `send` throws it, so the body stops early. If
    /// the body throws, a statement raising an error is queued before the
    /// Sync so nothing it queued commits (outside an explicit transaction;
    /// inside one, `transaction` rolls back).
    public func withPipeline<R>(_ body: (PGPipeline) throws -> R) throws -> R {
        let c = try live()
        guard !inPipeline else { throw PGError(message: "withPipeline called inside withPipeline") }
        guard PQenterPipelineMode(c) == 1 else {
            throw PGError(message: "could not enter pipeline mode: " + errorText(c), connectionLost: PQstatus(c) == CONNECTION_BAD)
        }
        inPipeline = true
        defer { inPipeline = false }
        let pipeline = PGPipeline(connection: self, conn: c)
        var result: R?
        var bodyError: Error?
        do { result = try body(pipeline) } catch { bodyError = error }
        if bodyError != nil, pipeline.firstError == nil {
            _ = PQsendQueryParams(c, "DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '\(PGConnection.abandonState)', MESSAGE = 'pipeline abandoned by the client'; END$$", 0, nil, nil, nil, nil, 0)
        }
        pipeline.finish()
        if PQexitPipelineMode(c) != 1, pipeline.firstError == nil, bodyError == nil {
            throw PGError(message: "could not leave pipeline mode: " + errorText(c), connectionLost: PQstatus(c) == CONNECTION_BAD)
        }
        if let error = pipeline.firstError, error.sqlState != PGConnection.abandonState { throw error }
        if let bodyError { throw bodyError }
        if let error = pipeline.firstError { throw error }
        guard let result else { throw PGError(message: "pipeline body returned no result") }
        return result
    }

    /// The SQLSTATE of the statement that aborts an abandoned pipeline.
    static let abandonState = "TMABN"

    /// Sends an execution of a statement prepared with `prepare` without
    /// waiting for it: the connection enters pipeline mode (if it is not in
    /// it) and stays there, so the server works on it while the caller
    /// prepares the next one. Its result, and the first error of every
    /// statement sent so, are read by ``settlePipeline()`` — or by the next
    /// synchronous call, which settles first and throws that error.
    ///
    /// A server error is never thrown here (it is reported at the settle,
    /// in order); only a broken connection is. After a server error the
    /// server skips the rest up to the settle's Sync, so nothing sent after
    /// it runs; inside a transaction, the transaction is then aborted.
    public func sendPipelined(_ name: String, _ params: [PGParam]) throws {
        guard let c = conn else { throw PGError(message: "the PostgreSQL connection is closed", connectionLost: true) }
        let pipeline: PGPipeline
        if let open = openPipeline {
            pipeline = open
        } else {
            guard !inPipeline else { throw PGError(message: "sendPipelined called inside withPipeline") }
            guard PQenterPipelineMode(c) == 1 else {
                throw PGError(message: "could not enter pipeline mode: " + errorText(c), connectionLost: PQstatus(c) == CONNECTION_BAD)
            }
            pipeline = PGPipeline(connection: self, conn: c)
            openPipeline = pipeline
        }
        do {
            try pipeline.sendPrepared(name, params)
        } catch let e as PGError where !e.connectionLost {
            // Recorded by the pipeline; reported at the settle.
            return
        }
        // Hand it to the server now (libpq holds small messages back in
        // pipeline mode), so the server works while the caller goes on.
        if PQflush(c) != 0 {
            let e = PGError(message: "sending a pipelined statement failed: " + errorText(c), connectionLost: true)
            pipeline.record(e)
            throw e
        }
    }

    /// Whether statements sent by ``sendPipelined(_:_:)`` await their settle.
    public var hasOpenPipeline: Bool { openPipeline != nil }

    /// Syncs the open pipeline, reads every result up to the Sync, leaves
    /// pipeline mode, and throws the first error among them (none open:
    /// nothing to do). The connection is out of pipeline mode afterwards,
    /// error or not.
    public func settlePipeline() throws {
        guard let pipeline = openPipeline else { return }
        openPipeline = nil
        guard let c = conn else { throw PGError(message: "the PostgreSQL connection is closed", connectionLost: true) }
        pipeline.finish()
        if PQexitPipelineMode(c) != 1, pipeline.firstError == nil {
            throw PGError(message: "could not leave pipeline mode: " + errorText(c), connectionLost: PQstatus(c) == CONNECTION_BAD)
        }
        if let error = pipeline.firstError { throw error }
    }

    /// Settles the open pipeline, dropping its error (the caller is already
    /// failing, and rolls back).
    public func discardPipeline() {
        try? settlePipeline()
    }

    // MARK: COPY

    /// COPY … FROM STDIN: `sql` is the COPY statement (binary format:
    /// `WITH (FORMAT binary)`); body writes the data; returns rows copied.
    public func copyIn(_ sql: String, _ body: (inout PGCopyBuffer) throws -> Void) throws -> Int {
        try copy(sql, binary: true) { sink in
            var buffer = PGCopyBuffer(sink: sink)
            try body(&buffer)
            buffer.finish()
        }
    }

    /// COPY … FROM STDIN in the text format (no FORMAT option, or FORMAT
    /// text); see `PGCopyTextBuffer` for the escaping. Returns rows copied.
    public func copyInText(_ sql: String, _ body: (inout PGCopyTextBuffer) throws -> Void) throws -> Int {
        try copy(sql, binary: false) { sink in
            var buffer = PGCopyTextBuffer(sink: sink)
            try body(&buffer)
            buffer.flush()
        }
    }

    func copy(_ sql: String, binary: Bool, _ produce: (PGCopySink) throws -> Void) throws -> Int {
        let c = try live()
        let start = PQexec(c, sql)
        let startStatus = PQresultStatus(start)
        let isBinary = PQbinaryTuples(start) == 1
        if startStatus != PGRES_COPY_IN {
            defer { PQclear(start) }
            try checkStatus(start, sql: sql)
            throw PGError(message: "the statement given to copyIn is not a COPY … FROM STDIN: \(sql.prefix(80))")
        }
        PQclear(start)
        let sink = PGCopySink(conn: c, redact: { [secrets] in PGConnection.redact($0, secrets) })
        var failure: Error?
        if isBinary != binary {
            failure = PGError(message: binary
                ? "copyIn sends the binary COPY format; add WITH (FORMAT binary) to the COPY statement or use copyInText"
                : "copyInText sends the text COPY format; remove FORMAT binary from the COPY statement or use copyIn")
        } else {
            do { try produce(sink) } catch { failure = error }
        }
        if let failure {
            _ = PQputCopyEnd(c, "COPY abandoned by the client")
            drain(c)
            throw failure
        }
        if let error = sink.error {
            _ = PQputCopyEnd(c, "COPY abandoned by the client")
            // The server's own error (e.g. the backend was terminated) says more.
            let serverError = firstResultError(c)
            throw serverError ?? error
        }
        if PQputCopyEnd(c, nil) != 1 {
            if let serverError = firstResultError(c) { throw serverError }
            throw PGError(message: "ending COPY failed: " + errorText(c), connectionLost: true)
        }
        let res = PQgetResult(c)
        defer { PQclear(res); drain(c) }
        try checkStatus(res, sql: sql)
        let tuples = PQcmdTuples(res).map { String(cString: $0) } ?? ""
        return Int(tuples) ?? 0
    }

    /// Reads the results after a COPY ended; the first error among them.
    func firstResultError(_ c: OpaquePointer) -> PGError? {
        var found: PGError?
        var guardCount = 0
        while let res = PQgetResult(c) {
            let status = PQresultStatus(res)
            if found == nil, status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR { found = error(from: res) }
            PQclear(res)
            guardCount += 1
            if status == PGRES_COPY_IN || guardCount > 100 { break }
        }
        if found == nil, PQstatus(c) == CONNECTION_BAD {
            found = error(from: nil)
        }
        return found
    }

    // MARK: internals

    /// The open connection, with no pipelined statement unread (their
    /// first error is thrown here, before anything else is sent).
    func live() throws -> OpaquePointer {
        guard let c = conn else { throw PGError(message: "the PostgreSQL connection is closed", connectionLost: true) }
        if openPipeline != nil { try settlePipeline() }
        return c
    }

    /// Discards remaining results (after COPY, or an unexpected state).
    func drain(_ c: OpaquePointer) {
        var count = 0
        while let res = PQgetResult(c) {
            let status = PQresultStatus(res)
            PQclear(res)
            if status == PGRES_COPY_IN { _ = PQputCopyEnd(c, "unexpected COPY") }
            if status == PGRES_COPY_OUT {
                var buf: UnsafeMutablePointer<CChar>?
                while PQgetCopyData(c, &buf, 0) > 0 { PQfreemem(buf) }
            }
            count += 1
            if count > 10000 || PQstatus(c) == CONNECTION_BAD { break }
        }
    }

    /// Throws unless `res` is a successful command or row set.
    func checkStatus(_ res: OpaquePointer?, sql: String) throws {
        guard let res else { throw error(from: nil) }
        switch PQresultStatus(res) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE:
            return
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            if let c = conn {
                if PQresultStatus(res) == PGRES_COPY_IN { _ = PQputCopyEnd(c, "COPY is only supported through copyIn") }
                drain(c)
            }
            throw PGError(message: "COPY statements run through copyIn/copyInText, not execute/query: \(sql.prefix(80))")
        default:
            throw error(from: res)
        }
    }

    /// A PGError from a result (or, for nil, from the connection).
    func error(from res: OpaquePointer?) -> PGError {
        let bad = conn.map { PQstatus($0) == CONNECTION_BAD } ?? true
        guard let res else {
            let text = conn.map(errorText) ?? "the PostgreSQL connection is closed"
            return PGError(message: text.isEmpty ? "the PostgreSQL server did not answer" : text, connectionLost: bad)
        }
        func field(_ code: UInt8) -> String? {
            PQresultErrorField(res, Int32(code)).map { PGConnection.redact(String(cString: $0), secrets) }
        }
        let state = field(UInt8(ascii: "C"))
        var message = field(UInt8(ascii: "M"))
        if message == nil || message!.isEmpty {
            let text = PQresultErrorMessage(res).map { String(cString: $0) } ?? ""
            message = PGConnection.redact(text.isEmpty ? (conn.map(errorText) ?? "") : text, secrets)
        }
        if message?.isEmpty ?? true { message = "PostgreSQL reported an error without a message" }
        return PGError(message: message ?? "", sqlState: state, detail: field(UInt8(ascii: "D")),
                       connectionLost: bad || PGError.isConnectionState(state))
    }

    func errorText(_ c: OpaquePointer) -> String {
        PGError.oneLine(PGConnection.redact(String(cString: PQerrorMessage(c)), secrets))
    }

    func lostOrBusy() -> PGError {
        if let c = conn, PQstatus(c) == CONNECTION_BAD {
            return PGError(message: "the PostgreSQL connection is broken: " + errorText(c), connectionLost: true)
        }
        return PGError(message: "the PostgreSQL connection is busy with another command")
    }

    static func redact(_ text: String, _ secrets: [String]) -> String {
        var out = text
        for secret in secrets where out.contains(secret) {
            out = out.split(separator: secret, omittingEmptySubsequences: false).joined(separator: "***")
        }
        return out
    }

    /// libpq's complaint about a conninfo's syntax, nil if it parses.
    static func conninfoSyntaxError(_ conninfo: String) -> String? {
        var errmsg: UnsafeMutablePointer<CChar>?
        if let options = PQconninfoParse(conninfo, &errmsg) {
            PQconninfoFree(options)
            return nil
        }
        defer { if let errmsg { PQfreemem(errmsg) } }
        let text = errmsg.map { PGError.oneLine(String(cString: $0)) } ?? ""
        return text.isEmpty ? "it could not be parsed" : text
    }

    /// The password a conninfo carries, if any (libpq's own parser, so URI
    /// percent-encoding and quoted values are handled).
    static func conninfoPassword(_ conninfo: String) -> String? {
        var errmsg: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &errmsg) else {
            if let errmsg { PQfreemem(errmsg) }
            return nil
        }
        defer { PQconninfoFree(options) }
        var p = options
        while let keyword = p.pointee.keyword {
            if String(cString: keyword) == "password", let value = p.pointee.val {
                let pw = String(cString: value)
                return pw.isEmpty ? nil : pw
            }
            p = p.advanced(by: 1)
        }
        return nil
    }
}
