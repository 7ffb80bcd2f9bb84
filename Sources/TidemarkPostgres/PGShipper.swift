import TidemarkLog

/// Moves a PostgreSQL target's captured changes (``PGCapture``) from
/// `tidemark.outbox` into the change log, exactly once, in the order the
/// rows were changed.
///
/// ## Which rows may be shipped, and in which order
///
/// PostgreSQL commits concurrent transactions in any order: an outbox row
/// with a lower `id` can commit after a higher one was shipped. Ordering by
/// transaction id does not help either: a transaction that took its xid
/// early may change a row after a later-xid transaction changed it and
/// committed, so `(xid, id)` order can put one key's changes out of order.
/// `id` order is each key's order: the trigger takes its `id` while the
/// writer holds the row's lock (or waits on the unique index for the key),
/// which it keeps until it ends, so the next writer of that key takes a
/// higher `id`.
///
/// Invariant: rows are shipped in `id` order, and only rows with `id` at or
/// below the *final* bound, below which no row can still appear. A bound is
/// final once every transaction that could hold an `id` at or below it has
/// ended. The shipper reads the sequence's last value `L`, then (a later
/// statement, so a later snapshot) the snapshot's `xmax` `X`: whoever took
/// an `id` ≤ `L` had an xid before that (a row trigger runs after its
/// row's write, which assigns the xid), so below `X`. When a later
/// snapshot's `xmin` (`pg_snapshot_xmin(pg_current_snapshot())`, the oldest
/// transaction still running) is at or above `X`, all of them have ended,
/// and `L` is final; any later row takes an `id` above `L` (the sequence
/// has `CACHE 1`, so no session holds preallocated lower values). A
/// rolled-back transaction's rows are never visible, so never shipped.
///
/// ## One round, exactly once under a crash anywhere
///
/// 1. Assign: in one statement, number the final rows with `lsn IS NULL`
///    in `id` order from `max(floor, log head, highest assigned lsn) + 1`.
///    Durable in PostgreSQL before the log sees them.
/// 2. Append: rows with `lsn` above the log's head, in `lsn` order, with
///    those LSNs; then sync the log.
/// 3. Delete rows with `lsn` at or below the log's durable head.
///
/// The log records what was shipped. A crash after 1 leaves numbered rows
/// that the next round appends (their `lsn` is above the head); after 2,
/// rows at or below the head, which the next round deletes — a new shipper
/// first checks them against the log's records of their LSNs, so a row is
/// never dropped as "shipped" unless the log holds it. Numbering is never
/// redone: a row keeps the LSN it was given.
///
/// One database has one shipper at a time: it holds a session advisory lock
/// for its lifetime (released by ``close()`` or when its connection ends).
public final class PGShipper {
    public let connection: PGConnection
    /// The most rows numbered, appended and deleted per round.
    public var batchLimit: Int

    /// `id`s at or below this are final (see the invariant).
    private var finalThrough: Int64 = 0
    /// A bound not yet final: the sequence's last value and the xmax of a
    /// snapshot taken after it was read.
    private var candidate: (lastID: Int64, xmax: Int64)?
    /// Leftover rows at or below this LSN were compared with the log.
    private var verifiedThrough: LSN?
    private var closed = false

    /// The advisory lock key of "the shipper of this database's outbox".
    static let lockKey: Int64 = 0x7469_6465_6d61_726b  // "tidemark"

    /// Takes the shipper lock on `connection`, which the shipper then owns.
    ///
    /// - Throws: ``PGCaptureError`` when capture is not installed or another
    ///   shipper holds the lock; ``PGError``.
    public init(connection: PGConnection, batchLimit: Int = 10_000) throws {
        precondition(batchLimit > 0)
        self.connection = connection
        self.batchLimit = batchLimit
        guard try PGCapture.isInstalled(connection) else {
            throw PGCaptureError("reverse capture is not installed in this PostgreSQL database (no tidemark.outbox); install it before shipping")
        }
        let locked = try connection.query("SELECT pg_try_advisory_lock($1)", [.value(.integer(Self.lockKey))])
        guard PGCapture.isTrue(locked) else {
            throw PGCaptureError("another tidemark shipper is shipping this PostgreSQL database's outbox; stop it first, or let it ship")
        }
    }

    /// Releases the shipper lock (the connection stays open).
    public func close() {
        guard !closed else { return }
        closed = true
        _ = try? connection.query("SELECT pg_advisory_unlock($1)", [.value(.integer(Self.lockKey))])
    }

    #if DEBUG
    /// Test seam (DEBUG builds only): called at each named point of a round
    /// ("assigned", "appended", "synced", "deleted"); throwing stops the
    /// round there, as a crash would.
    package var testHook: ((String) throws -> Void)?
    #endif

    @inline(__always)
    private func reached(_ point: String) throws {
        #if DEBUG
        try testHook?(point)
        #endif
    }

    /// Ships every final change into `appender`; LSNs start above `floor`
    /// (the switch LSN) and the log's head. Returns the log's last LSN.
    ///
    /// Rows of transactions still running, and rows written after one of them
    /// began writing, wait for a later call (see the invariant).
    @discardableResult
    public func ship(into appender: LogAppender, after floor: LSN) throws -> LSN {
        if closed { throw PGCaptureError("this shipper was closed; make a new one") }
        if verifiedThrough == nil { try checkLeftovers(appender) }
        while true {
            let head = appender.lastLSN
            let bound = try advanceFinalBound()
            let base = max(floor, head)
            let assigned = try assign(through: bound, after: base)
            try reached("assigned")
            let records = try readAssigned(after: head)
            if !records.isEmpty {
                try appender.append(records)
                try reached("appended")
                try appender.sync()
                try reached("synced")
            }
            verifiedThrough = appender.lastLSN
            try connection.query("DELETE FROM tidemark.outbox WHERE lsn <= $1",
                                 [.value(.integer(Int64(clamping: appender.durableLSNValue.rawValue)))])
            try reached("deleted")
            if assigned < batchLimit && records.count < batchLimit { break }
        }
        return appender.lastLSN
    }

    /// Captured changes not yet deleted from the outbox: committed ones,
    /// shipped or not (rows of running transactions are not visible).
    public func pending() throws -> Int {
        let rows = try connection.query("SELECT count(*) FROM tidemark.outbox")
        if case .integer(let n)? = rows.rows.first?.first { return Int(n) }
        return 0
    }

    /// The final bound and the candidate bound (see the invariant), to watch
    /// the rule at work in tests.
    package var bounds: (finalThrough: Int64, candidate: (lastID: Int64, xmax: Int64)?) {
        (finalThrough, candidate)
    }

    /// Moves the final bound forward as far as ended transactions allow.
    /// Two steps at most: a candidate from an earlier round that has become
    /// final is replaced by a fresh one, which is final at once when no
    /// transaction is running.
    package func advanceFinalBound() throws -> Int64 {
        for _ in 0..<2 {
            if candidate == nil { candidate = try readCandidate() }
            guard let c = candidate, try currentXmin() >= c.xmax else { break }
            finalThrough = max(finalThrough, c.lastID)
            candidate = nil
        }
        return finalThrough
    }

    /// Two statements, in this order (each its own snapshot): the sequence's
    /// last value handed out, then the snapshot's xmax.
    private func readCandidate() throws -> (lastID: Int64, xmax: Int64) {
        let seq = try connection.query("SELECT last_value, is_called FROM tidemark.outbox_id_seq")
        guard let row = seq.rows.first, row.count == 2, case .integer(let last) = row[0] else {
            throw PGCaptureError("cannot read tidemark.outbox_id_seq; reinstall reverse capture")
        }
        let called = PGCapture.isTrue(PGRows(columnNames: [], columnTypes: [], rows: [[row[1]]], affectedRows: 0))
        let xmax = try int64(connection.query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"), "the snapshot's xmax")
        return (called ? last : last - 1, xmax)
    }

    private func currentXmin() throws -> Int64 {
        try int64(connection.query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"), "the snapshot's xmin")
    }

    private func int64(_ rows: PGRows, _ what: String) throws -> Int64 {
        switch rows.rows.first?.first {
        case .integer(let v)?: return v
        case .text(let s)?: if let v = Int64(s) { return v }
        default: break
        }
        throw PGCaptureError("PostgreSQL returned no value for \(what)")
    }

    /// Step 1: numbers final unnumbered rows in `id` order; returns how many.
    /// One statement, so one transaction: all of a batch or none.
    private func assign(through bound: Int64, after base: LSN) throws -> Int {
        guard bound > 0 else { return 0 }
        let rows = try connection.query("""
            WITH base AS (SELECT greatest($1::bigint, coalesce(max(lsn), 0)) AS b FROM tidemark.outbox),
                 eligible AS (SELECT id, row_number() OVER (ORDER BY id) AS rn
                              FROM tidemark.outbox WHERE lsn IS NULL AND id <= $2 ORDER BY id LIMIT $3)
            UPDATE tidemark.outbox o SET lsn = base.b + eligible.rn
            FROM eligible, base WHERE o.id = eligible.id
            """, [.value(.integer(Int64(clamping: base.rawValue))), .value(.integer(bound)), .value(.integer(Int64(batchLimit)))])
        return rows.affectedRows
    }

    static let selectColumns = "lsn, ts_us, tbl, op::text, \"key\"::text, \"before\"::text, \"after\"::text"

    /// Step 2's read: numbered rows above the log's head, in LSN order.
    private func readAssigned(after head: LSN) throws -> [ChangeRecord] {
        let rows = try connection.query(
            "SELECT \(Self.selectColumns) FROM tidemark.outbox WHERE lsn > $1 ORDER BY lsn LIMIT $2",
            [.value(.integer(Int64(clamping: head.rawValue))), .value(.integer(Int64(batchLimit)))])
        return try rows.rows.map(PGOutboxDecoder.decode)
    }

    /// Once per shipper, before anything is deleted: numbered rows at or
    /// below the log's head were appended by a shipper that stopped before
    /// deleting them. Each must equal the log's record of its LSN; otherwise
    /// the log was not filled from this outbox (or lost records), and deleting
    /// them as shipped would lose changes.
    private func checkLeftovers(_ appender: LogAppender) throws {
        let head = appender.lastLSN
        defer { }
        guard head > .zero else { verifiedThrough = head; return }
        let rows = try connection.query(
            "SELECT \(Self.selectColumns) FROM tidemark.outbox WHERE lsn <= $1 ORDER BY lsn",
            [.value(.integer(Int64(clamping: head.rawValue)))])
        var cursor: LogCursor?
        var logged: ChangeRecord?
        let gaps = appender.meta.gaps
        for row in rows.rows {
            let outbox = try PGOutboxDecoder.decode(row)
            if gaps.contains(where: { $0.contains(outbox.lsn) }) { continue }
            if cursor == nil { cursor = try LogReader(directory: appender.directory.path).cursor(from: outbox.lsn) }
            while logged.map({ $0.lsn < outbox.lsn }) ?? true, let c = cursor, let next = try c.next() { logged = next }
            guard let logged, logged.lsn == outbox.lsn, logged == outbox else {
                throw PGCaptureError("outbox row with LSN \(outbox.lsn) (table '\(outbox.table)') differs from the log's record of that LSN in \(appender.directory.path): this log was not filled from this database's outbox; nothing was deleted — ship into the log made for this migration")
            }
        }
        verifiedThrough = head
    }
}

/// Decodes outbox rows (``PGShipper/selectColumns``) into change records.
enum PGOutboxDecoder {
    static func decode(_ row: [Value]) throws -> ChangeRecord {
        guard row.count == 7, case .integer(let lsn) = row[0], case .integer(let ts) = row[1],
              case .text(let table) = row[2], case .text(let op) = row[3], case .text(let keyText) = row[4] else {
            throw PGCaptureError("an outbox row has an unexpected shape; reinstall reverse capture")
        }
        let operation: ChangeOperation
        switch op {
        case "i": operation = .insert
        case "u": operation = .update
        case "d": operation = .delete
        default: throw PGCaptureError("outbox row with LSN \(lsn): unknown operation '\(op)'")
        }
        func image(_ v: Value) throws -> [Field]? {
            switch v {
            case .null: return nil
            case .text(let s): return try fields(s, lsn: lsn)
            default: throw PGCaptureError("outbox row with LSN \(lsn): an image is not jsonb text")
            }
        }
        let record = ChangeRecord(
            lsn: LSN(UInt64(max(0, lsn))), timestampMicros: ts, table: table, operation: operation,
            key: try fields(keyText, lsn: lsn), before: try image(row[5]), after: try image(row[6]))
        try record.validate()
        return record
    }

    /// `[[name, tag, payload], …]` → fields.
    static func fields(_ json: String, lsn: Int64) throws -> [Field] {
        var parser = JSONArrayParser(Array(json.utf8))
        guard let items = try? parser.parseDocument() else {
            throw PGCaptureError("outbox row with LSN \(lsn): an image is not the expected JSON array")
        }
        var out: [Field] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case .array(let parts) = item, parts.count == 3,
                  case .string(let name) = parts[0], case .string(let tag) = parts[1] else {
                throw PGCaptureError("outbox row with LSN \(lsn): an image field is not [name, tag, payload]")
            }
            switch parts[2] {
            case .null: out.append(Field(name, .null))
            case .string(let payload):
                guard let value = PGValueCodec.decode(tag: tag, payload) else {
                    throw PGCaptureError("outbox row with LSN \(lsn): column '\(name)' has a bad '\(tag)' value")
                }
                out.append(Field(name, value))
            case .array: throw PGCaptureError("outbox row with LSN \(lsn): column '\(name)' has a bad value")
            }
        }
        return out
    }
}

/// The payloads of ``PGCapture``'s image encoding.
enum PGValueCodec {
    static func decode(tag: String, _ payload: String) -> Value? {
        switch tag {
        case "i": return Int64(payload).map(Value.integer)
        case "f":
            guard payload.utf8.count == 16, let bits = UInt64(payload, radix: 16) else { return nil }
            return .real(Double(bitPattern: bits))
        case "t", "x": return .text(payload)
        case "b": return hexBytes(payload).map(Value.blob)
        case "n": return numeric(payload)
        default: return nil
        }
    }

    static func hexBytes(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    /// numeric's decimal text → `.integer` when integral and within Int64;
    /// `.real` when the double nearest to it prints (shortest form) as
    /// exactly that decimal; otherwise `.text` (NaN, ±Infinity, more digits
    /// than a double holds).
    static func numeric(_ s: String) -> Value {
        guard let d = Decimal10(s) else { return .text(s) }
        if let i = d.int64 { return .integer(i) }
        if let x = Double(s), x.isFinite, let shortest = Decimal10(x.description), shortest == d { return .real(x) }
        return .text(s)
    }
}

/// A decimal number in canonical form: sign, significant digits without
/// leading or trailing zeros, and the position of the decimal point
/// (value = 0.digits × 10^point). Zero has no digits and no sign.
struct Decimal10: Equatable {
    var negative: Bool
    var digits: [UInt8]
    var point: Int

    /// Parses `[-+]digits[.digits][e[-+]digits]`; nil for anything else.
    init?(_ s: String) {
        let u = Array(s.utf8)
        var i = 0
        var negative = false
        if i < u.count, u[i] == 45 || u[i] == 43 { negative = u[i] == 45; i += 1 }
        var digits: [UInt8] = []
        var intCount = 0
        var sawDigit = false
        while i < u.count, u[i] >= 48 && u[i] <= 57 { digits.append(u[i] - 48); intCount += 1; i += 1; sawDigit = true }
        if i < u.count, u[i] == 46 {
            i += 1
            while i < u.count, u[i] >= 48 && u[i] <= 57 { digits.append(u[i] - 48); i += 1; sawDigit = true }
        }
        guard sawDigit else { return nil }
        var exponent = 0
        if i < u.count, u[i] == 101 || u[i] == 69 {
            i += 1
            var expNegative = false
            if i < u.count, u[i] == 45 || u[i] == 43 { expNegative = u[i] == 45; i += 1 }
            var sawExp = false
            while i < u.count, u[i] >= 48 && u[i] <= 57 {
                guard exponent < 100_000 else { return nil }
                exponent = exponent * 10 + Int(u[i] - 48); i += 1; sawExp = true
            }
            guard sawExp else { return nil }
            if expNegative { exponent = -exponent }
        }
        guard i == u.count else { return nil }
        var point = intCount + exponent
        var start = 0
        while start < digits.count, digits[start] == 0 { start += 1; point -= 1 }
        var end = digits.count
        while end > start, digits[end - 1] == 0 { end -= 1 }
        self.digits = Array(digits[start..<end])
        self.point = self.digits.isEmpty ? 0 : point
        self.negative = self.digits.isEmpty ? false : negative
    }

    /// The value as an Int64 when it is integral and fits.
    var int64: Int64? {
        if digits.isEmpty { return 0 }
        guard point >= digits.count, point <= 19 else { return nil }
        var magnitude: UInt64 = 0
        for k in 0..<point {
            let digit = k < digits.count ? UInt64(digits[k]) : 0
            let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(digit)
            if o1 || o2 { return nil }
            magnitude = a
        }
        if negative {
            if magnitude == UInt64(Int64.max) + 1 { return Int64.min }
            return magnitude <= UInt64(Int64.max) ? -Int64(magnitude) : nil
        }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }
}

/// Just enough JSON for outbox images: arrays, strings, null (jsonb's own
/// output, so no numbers or objects).
struct JSONArrayParser {
    enum Node { case array([Node]), string(String), null }
    struct Failure: Error {}
    let u: [UInt8]
    var i = 0
    init(_ u: [UInt8]) { self.u = u }

    mutating func parseDocument() throws -> [Node] {
        let node = try value()
        skipSpace()
        guard i == u.count, case .array(let items) = node else { throw Failure() }
        return items
    }

    mutating func skipSpace() {
        while i < u.count, u[i] == 32 || u[i] == 10 || u[i] == 13 || u[i] == 9 { i += 1 }
    }

    mutating func value() throws -> Node {
        skipSpace()
        guard i < u.count else { throw Failure() }
        switch u[i] {
        case 91:  // [
            i += 1
            var items: [Node] = []
            skipSpace()
            if i < u.count, u[i] == 93 { i += 1; return .array(items) }
            while true {
                items.append(try value())
                skipSpace()
                guard i < u.count else { throw Failure() }
                if u[i] == 44 { i += 1; continue }
                if u[i] == 93 { i += 1; return .array(items) }
                throw Failure()
            }
        case 34: return .string(try string())
        case 110:
            guard i + 4 <= u.count, u[i + 1] == 117, u[i + 2] == 108, u[i + 3] == 108 else { throw Failure() }
            i += 4
            return .null
        default: throw Failure()
        }
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= u.count, let v = UInt32(String(decoding: u[i..<i + 4], as: UTF8.self), radix: 16) else { throw Failure() }
        i += 4
        return v
    }

    mutating func string() throws -> String {
        i += 1
        var bytes: [UInt8] = []
        while true {
            guard i < u.count else { throw Failure() }
            let c = u[i]
            if c == 34 { i += 1; break }
            if c != 92 { bytes.append(c); i += 1; continue }
            i += 1
            guard i < u.count else { throw Failure() }
            let e = u[i]
            i += 1
            switch e {
            case 34: bytes.append(34)
            case 92: bytes.append(92)
            case 47: bytes.append(47)
            case 98: bytes.append(8)
            case 102: bytes.append(12)
            case 110: bytes.append(10)
            case 114: bytes.append(13)
            case 116: bytes.append(9)
            case 117:
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard i + 2 <= u.count, u[i] == 92, u[i + 1] == 117 else { throw Failure() }
                    i += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw Failure() }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let s = Unicode.Scalar(scalar) else { throw Failure() }
                bytes.append(contentsOf: Array(String(Character(s)).utf8))
            default: throw Failure()
            }
        }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw Failure() }
        return s
    }
}
