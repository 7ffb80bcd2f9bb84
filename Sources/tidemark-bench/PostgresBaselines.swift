#if canImport(Glibc)
import Glibc
#endif
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import TidemarkTestSupport

// What `tidemark-bench postgres` measures against: the source table it
// generates, the PostgreSQL server it loads into (a throwaway cluster or
// --server), and the value-by-value comparison of a loaded table with the
// SQLite source.

/// The benchmark's source: one table `t` of six columns, generated from a
/// seed, so every run and every tool starts from the same bytes.
enum PostgresSourceTable {
    static let name = "t"
    static let columns = ["id", "r", "name", "n", "data", "note"]

    static let createSQL = """
        CREATE TABLE t (
            id INTEGER PRIMARY KEY,
            r REAL NOT NULL,
            name TEXT NOT NULL,
            n INTEGER,
            data BLOB,
            note TEXT
        )
        """

    /// The same table in PostgreSQL with the exact types (the psql COPY
    /// pipe's pre-created target).
    static let postgresCreateSQL = """
        CREATE TABLE t (
            id bigint PRIMARY KEY,
            r double precision NOT NULL,
            name text NOT NULL,
            n bigint,
            data bytea,
            note text
        )
        """

    /// Pieces of text: ASCII, Latin accents, CJK, emoji, CSV's special
    /// characters (comma, quote, newline). Never NUL (PostgreSQL text cannot
    /// hold it; the preflight refuses it).
    private static let fragments = [
        "alpha", "Beta", "gamma delta", "Chloé", "Müller", "García", "Zoë", "日本語", "中文字符", "한국어", "Ελληνικά",
        "кириллица", "emoji 🙂", "🚀🌍", "a,b", "say \"hi\"", "line\nbreak", "tab\there", "back\\slash", " ", "0",
        "NULL", "\\N", "x", "long-word-without-spaces", "ß", "ﬁ ligature", "e\u{301} combining",
    ]

    /// Writes `rows` rows (ids 1…rows) to a new database at `path`.
    /// `fullEdges` adds REALs beyond float4's range and subnormals to the
    /// edge rows (pgloader then loads no row of the table: see ``edgeRows``).
    static func create(path: String, rows: Int, seed: UInt64, fullEdges: Bool = false) throws {
        try removeDatabase(path)
        let c = try Connection(path: path, mode: .readWriteCreate)
        _ = try c.setJournalMode(.wal)
        try c.execute(createSQL)
        var random = SplitMix64(seed: seed)
        let insert = try c.prepare("INSERT INTO t(id, r, name, n, data, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        var id = 0
        while id < rows {
            try c.transaction(.immediate) {
                for _ in 0..<min(10_000, rows - id) {
                    id += 1
                    let i = Int64(id)
                    try insert.execute(i <= edgeRows ? edgeRow(id: i, full: fullEdges, &random) : row(id: i, &random))
                }
            }
        }
        try c.close()
    }

    /// Rows 1…``edgeRows`` carry the edge values (every REAL bit pattern
    /// class, large integers, empty and large blobs); the rest are ordinary
    /// rows: REALs of 17 significant digits between 1e-30 and 1e30 and
    /// integers within ±2^62. No integer lies beyond ±2^62 (SBCL's fixnums):
    /// pgloader 3.6.7 cannot format one ("not of type (OR STRING NULL
    /// FIXNUM)") and then loads nothing of the table (20,000 rows) or hangs
    /// (200,000 rows), which would leave no baseline to compare with. For
    /// the same reason the edge REALs stay within float4's range unless
    /// `fullEdges`: pgloader narrows REAL to real (float4), and one value
    /// out of its range ("1.0e308" is out of range for type real, 22003)
    /// makes pgloader 3.6.7 load no row of the table, exit status 0.
    static let edgeRows: Int64 = 32

    /// One generated row.
    static func row(id: Int64, _ random: inout SplitMix64) -> [Value] {
        if id <= edgeRows { return edgeRow(id: id, full: false, &random) }
        return [.integer(id), .real(real(&random)), .text(text(&random, maxFragments: 12)),
                random.chance(5) ? .null : .integer(integer(&random)),
                random.chance(10) ? .null : .blob(blob(&random)),
                random.chance(30) ? .null : .text(random.chance(5) ? "" : text(&random, maxFragments: 4))]
    }

    /// Within float4's range (1.2e-38 … 3.4e38 and zero).
    static let edgeReals: [Double] = [0.0, -0.0, 3.0e38, -3.3999999521443642e38, 1.2e-38, -1.1754943508222875e-38,
                                      0.1, 1.0 / 3.0, -123456789.12345678, 9007199254740993.0, 1.0000000000000002, -0.30000000000000004]
    /// Beyond it: every exponent, subnormals.
    static let fullEdgeReals: [Double] = [1e308, -1.7976931348623157e308, Double.leastNonzeroMagnitude, -Double.leastNormalMagnitude,
                                          1e-300, -Double(bitPattern: 1000)]
    static let edgeIntegers: [Int64] = [(1 << 62) - 1, -(1 << 62), 0, -1, 1 << 53, -(1 << 53) - 1, 1 << 31, -(1 << 31) - 1]

    static func edgeRow(id: Int64, full: Bool, _ random: inout SplitMix64) -> [Value] {
        let k = Int(id - 1)
        let reals = full ? edgeReals + fullEdgeReals : edgeReals
        var r = k < reals.count ? reals[k] : real(&random)
        if full && k >= reals.count {
            r = Double(bitPattern: random.next())
            if !r.isFinite { r = Double(bitPattern: 0x0000_8000_0000_0001) }
        }
        return [.integer(id), .real(r), .text(k % 3 == 0 ? "" : text(&random, maxFragments: 40)),
                k % 4 == 3 ? .null : .integer(edgeIntegers[k % edgeIntegers.count]),
                k % 5 == 4 ? .null : .blob(k % 5 == 0 ? [] : random.bytes(k % 5 == 1 ? 100_000 : 1 + k)),
                k % 2 == 0 ? .null : .text(k % 3 == 1 ? "" : random.pick(fragments))]
    }

    /// Doubles with 17 significant digits, either sign, 1e-30 … 1e30
    /// (within float4's range, so a REAL column narrowed to it keeps every
    /// row, with fewer digits).
    static func real(_ random: inout SplitMix64) -> Double {
        let mantissa = Double(random.next() >> 11) / Double(1 << 53)
        var scale = 1.0
        let exponent = random.below(61) - 30
        for _ in 0..<abs(exponent) { scale *= 10 }
        let value = exponent < 0 ? mantissa / scale : mantissa * scale
        return random.chance(30) ? -value : value
    }

    /// Integers of every magnitude within ±2^62.
    static func integer(_ random: inout SplitMix64) -> Int64 {
        let magnitude = Int64(random.next() >> UInt64(2 + random.below(62)))
        return random.chance(40) ? -magnitude : magnitude
    }

    static func text(_ random: inout SplitMix64, maxFragments: Int) -> String {
        let n = random.below(maxFragments + 1)
        var s = ""
        for i in 0..<n {
            if i > 0 && random.chance(70) { s += " " }
            s += random.pick(fragments)
        }
        return s
    }

    static func blob(_ random: inout SplitMix64) -> [UInt8] {
        let n = random.chance(2) ? 1_000 + random.below(3_000) : random.below(65)
        return random.bytes(n)
    }
}

/// The PostgreSQL server the benchmark loads into: a throwaway cluster of
/// ``PostgresServer`` or an existing server given by URI. Each load goes
/// into a database of its own, created and dropped here.
final class BenchPostgres {
    /// URI parts; the password (if any) stays inside and is never printed.
    private let userInfo: String        // "user" or "user:password", percent-encoded as given
    private let hostPort: String        // "host:port" or "" (socket from the query)
    private let query: [(String, String)]
    private let maintenanceDatabase: String
    /// Where the throwaway cluster lives, for the report.
    let description: String
    let serverVersion: Int
    /// The server's CPU meter, when it runs on this machine (throwaway cluster).
    private(set) var serverCPU: ServerCPU?
    private var created: [String] = []

    /// The throwaway cluster of this process.
    convenience init() throws {
        let server = try PostgresServer.shared()
        let socket = server.socketDirectory
        let port = try Self.socketPort(in: socket)
        try self.init(uri: "postgresql://postgres@/postgres?host=\(Self.percentEncoded(socket))&port=\(port)",
                      description: "throwaway cluster, socket \(socket)")
        serverCPU = ServerCPU(dataDirectory: server.dataDirectory)
    }

    /// An existing server: `postgres[ql]://[user[:password]@][host[:port]]/db[?param=value…]`.
    /// The database is only connected to, for CREATE/DROP DATABASE.
    init(uri: String, description: String? = nil) throws {
        var rest: Substring
        if uri.hasPrefix("postgresql://") { rest = uri.dropFirst("postgresql://".count) }
        else if uri.hasPrefix("postgres://") { rest = uri.dropFirst("postgres://".count) }
        else { throw BenchmarkError("--server must be a postgres:// or postgresql:// URI") }
        guard !uri.contains("'") else { throw BenchmarkError("--server must not contain a single quote") }
        var queryText: Substring = ""
        if let q = rest.firstIndex(of: "?") { queryText = rest[rest.index(after: q)...]; rest = rest[..<q] }
        var database: Substring = "postgres"
        if let slash = rest.firstIndex(of: "/") {
            let d = rest[rest.index(after: slash)...]
            if !d.isEmpty { database = d }
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            userInfo = String(rest[..<at])
            hostPort = String(rest[rest.index(after: at)...])
        } else {
            userInfo = ""
            hostPort = String(rest)
        }
        query = queryText.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        maintenanceDatabase = String(database)
        let maintenance = Self.build(userInfo, hostPort, maintenanceDatabase, query)
        let c = try PGConnection(maintenance)
        serverVersion = c.serverVersionNumber
        c.close()
        self.description = description ?? PGConnection.redacted(maintenance)
    }

    private static func build(_ userInfo: String, _ hostPort: String, _ database: String, _ query: [(String, String)]) -> String {
        "postgresql://" + (userInfo.isEmpty ? "" : userInfo + "@") + hostPort + "/" + database
            + (query.isEmpty ? "" : "?" + query.map { $0.0 + "=" + $0.1 }.joined(separator: "&"))
    }

    /// Server CPU seconds so far (nil: not measurable).
    func serverSeconds() -> Double? { serverCPU?.seconds() }

    /// ``serverSeconds()`` after 200 ms, so that backends whose client has
    /// just gone have ended and been reaped into the postmaster's total.
    func settledServerSeconds() -> Double? {
        guard serverCPU != nil else { return nil }
        sleep(until: monotonicNanos() + 200_000_000)
        return serverSeconds()
    }

    /// The libpq URI of `database`.
    func uri(_ database: String) -> String { Self.build(userInfo, hostPort, database, query) }

    /// pgloader's spelling of the same target: a socket directory is
    /// `unix:/dir:port` in the netloc (pgloader's manual, "Target
    /// Connection String"), not libpq's `?host=/dir`.
    func pgloaderURI(_ database: String) -> String {
        let host = query.first { $0.0 == "host" }.map { Self.percentDecoded($0.1) }
        let port = query.first { $0.0 == "port" }?.1
        let others = query.filter { !["host", "port"].contains($0.0) }
        var netloc = hostPort
        if let host, host.hasPrefix("/") {
            netloc = "unix:" + host.replacingColons() + ":" + (port ?? "5432")
        } else if let host {
            netloc = host + (port.map { ":" + $0 } ?? "")
        }
        return "postgresql://" + (userInfo.isEmpty ? "" : userInfo + "@") + netloc + "/" + database
            + (others.isEmpty ? "" : "?" + others.map { $0.0 + "=" + $0.1 }.joined(separator: "&"))
    }

    /// Creates an empty database named `tmbench_<label>_<pid>`.
    func createDatabase(_ label: String) throws -> String {
        let name = "tmbench_\(label)_\(getpid())"
        let c = try PGConnection(uri(maintenanceDatabase))
        defer { c.close() }
        try c.execute("DROP DATABASE IF EXISTS \(PGSQL.ident(name))")
        try c.execute("CREATE DATABASE \(PGSQL.ident(name))")
        created.append(name)
        return name
    }

    /// Drops a database made by ``createDatabase(_:)``, connections and all.
    func dropDatabase(_ name: String) throws {
        let c = try PGConnection(uri(maintenanceDatabase))
        defer { c.close() }
        try c.execute("DROP DATABASE IF EXISTS \(PGSQL.ident(name)) WITH (FORCE)")
        created.removeAll { $0 == name }
    }

    /// Drops every database still left (a failed run's).
    func dropAll() {
        for name in created { try? dropDatabase(name) }
    }

    /// The port of the socket file `.s.PGSQL.<port>` in `directory`.
    private static func socketPort(in directory: String) throws -> Int {
        guard let dir = opendir(directory) else { throw BenchmarkError("cannot list the server's socket directory \(directory)") }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name.hasPrefix(".s.PGSQL."), !name.hasSuffix(".lock"), let port = Int(name.dropFirst(".s.PGSQL.".count)) { return port }
        }
        throw BenchmarkError("no PostgreSQL socket in \(directory); did the server start?")
    }

    private static func percentEncoded(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "/"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                out.append(Character(Unicode.Scalar(b)))
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 15)])
            }
        }
        return out
    }

    private static func percentDecoded(_ s: String) -> String {
        var bytes: [UInt8] = []
        var u = Array(s.utf8)[...]
        while let b = u.first {
            u = u.dropFirst()
            if b == UInt8(ascii: "%"), u.count >= 2, let v = UInt8(String(decoding: u.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                u = u.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private extension String {
    /// pgloader doubles colons inside a socket path.
    func replacingColons() -> String { split(separator: ":", omittingEmptySubsequences: false).joined(separator: "::") }
}

/// How a loaded PostgreSQL table differs from the SQLite source.
struct ValueDifferences {
    var rowsCompared = 0
    /// Values (cells) whose type or bytes differ; REAL bit for bit.
    var changedValues = 0
    var changedByColumn: [String: Int] = [:]
    var missingRows = 0
    var extraRows = 0
    /// A few examples, `column id: source → target`.
    var examples: [String] = []

    var isClean: Bool { changedValues == 0 && missingRows == 0 && extraRows == 0 }

    var summary: String {
        var parts = ["\(changedValues) values changed"]
        if !changedByColumn.isEmpty {
            parts[0] += " (" + PostgresSourceTable.columns.compactMap { c in changedByColumn[c].map { "\(c) \($0)" } }.joined(separator: ", ") + ")"
        }
        parts.append("\(missingRows) rows missing")
        if extraRows > 0 { parts.append("\(extraRows) rows extra") }
        return parts.joined(separator: ", ")
    }

    var json: JSON {
        .object([("rows_compared", .int(rowsCompared)), ("changed_values", .int(changedValues)),
                 ("changed_by_column", .object(PostgresSourceTable.columns.compactMap { c in changedByColumn[c].map { (c, JSON.int($0)) } })),
                 ("missing_rows", .int(missingRows)), ("extra_rows", .int(extraRows)),
                 ("examples", .array(examples.map(JSON.string)))])
    }

    /// Whether two values are the same: same storage class and the same
    /// bits (REAL), bytes (TEXT as UTF-8, BLOB) or integer.
    static func same(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.integer(x), .integer(y)): return x == y
        case let (.real(x), .real(y)): return x.bitPattern == y.bitPattern
        case let (.text(x), .text(y)): return x.utf8.elementsEqual(y.utf8)
        case let (.blob(x), .blob(y)): return x == y
        default: return false
        }
    }

    /// Reads every row of `t` from the SQLite source and from PostgreSQL
    /// (binary results, key ranges of `chunk` ids) and compares them value
    /// by value, matched by `id`.
    static func compare(source: String, target conninfo: String, chunk: Int64 = 20_000) throws -> ValueDifferences {
        var d = ValueDifferences()
        let s = try Connection(path: source, mode: .readOnly)
        defer { try? s.close() }
        let pg = try PGConnection(conninfo)
        defer { pg.close() }
        let columnList = PostgresSourceTable.columns.joined(separator: ", ")
        func top(_ sql: String) throws -> Int64 {
            let st = try s.prepare(sql)
            _ = try st.step()
            return st.columnIsNull(0) ? 0 : st.columnInt64(0)
        }
        let pgRange = try pg.query("SELECT min(id)::bigint, max(id)::bigint FROM t")
        func bound(_ v: Value?) -> Int64? { if case .integer(let i)? = v { return i } else { return nil } }
        let low = min(try top("SELECT min(id) FROM t"), bound(pgRange.rows.first?[0]) ?? .max) - 1
        let high = max(try top("SELECT max(id) FROM t"), bound(pgRange.rows.first?[1]) ?? .min)
        let sourceChunk = try s.prepare("SELECT \(columnList) FROM t WHERE id > ?1 AND id <= ?2 ORDER BY id")
        var lo = low
        while lo < high {
            let hi = lo > high - chunk ? high : lo + chunk
            try sourceChunk.bind(lo, at: 1)
            try sourceChunk.bind(hi, at: 2)
            let ours = try sourceChunk.rows { st in (0..<Int32(PostgresSourceTable.columns.count)).map { st.columnValue($0) } }
            let theirs = try pg.query("SELECT \(columnList) FROM t WHERE id > $1 AND id <= $2 ORDER BY id",
                                      [.value(.integer(lo)), .value(.integer(hi))]).rows
            var i = 0, j = 0
            while i < ours.count || j < theirs.count {
                let a = i < ours.count ? bound(ours[i][0]) : nil
                let b = j < theirs.count ? bound(theirs[j][0]) : nil
                if let a, b == nil || a < b! {
                    d.missingRows += 1
                    if d.examples.count < 5 { d.examples.append("row id \(a) missing") }
                    i += 1
                } else if let b, a == nil || b < a! {
                    d.extraRows += 1
                    if d.examples.count < 5 { d.examples.append("row id \(b) extra") }
                    j += 1
                } else {
                    d.rowsCompared += 1
                    for (k, column) in PostgresSourceTable.columns.enumerated() {
                        let x = ours[i][k], y = k < theirs[j].count ? theirs[j][k] : .null
                        if !same(x, y) {
                            d.changedValues += 1
                            d.changedByColumn[column, default: 0] += 1
                            if d.examples.count < 5 {
                                d.examples.append("\(column) of id \(a.map(String.init) ?? "?"): \(shortText(x)) → \(shortText(y))")
                            }
                        }
                    }
                    i += 1
                    j += 1
                }
            }
            lo = hi
        }
        return d
    }

    private static func shortText(_ v: Value) -> String {
        let t: String
        switch v {
        case .real(let d): t = "real " + String(d)
        case .blob(let b): t = "blob of \(b.count) bytes"
        default: t = v.description
        }
        return t.count > 40 ? String(t.prefix(40)) + "…" : t
    }
}

/// CPU time the PostgreSQL server spent: the postmaster, its live children
/// (backends, background processes) and the children it has reaped (ended
/// backends), from /proc. Only for a server on this machine whose data
/// directory is known (the throwaway cluster).
struct ServerCPU {
    let postmaster: Int32

    /// The postmaster of the cluster in `dataDirectory` (first line of
    /// postmaster.pid), or nil.
    init?(dataDirectory: String) {
        guard let text = readSmallFile(dataDirectory + "/postmaster.pid"),
              let first = text.split(separator: "\n").first, let pid = Int32(first.filter { $0.isNumber }), pid > 0 else { return nil }
        postmaster = pid
    }

    /// Seconds of CPU so far (user + system).
    func seconds() -> Double {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard let own = Self.stat(postmaster) else { return .nan }
        var total = own.utime + own.stime + own.cutime + own.cstime
        if let dir = opendir("/proc") {
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                guard let pid = Int32(name), pid != postmaster, let s = Self.stat(pid), s.ppid == postmaster else { continue }
                total += s.utime + s.stime + s.cutime + s.cstime
            }
        }
        return Double(total) / ticks
    }

    /// Fields of /proc/<pid>/stat (proc(5): ppid is field 4, utime … cstime
    /// fields 14 … 17; the command name in parentheses may hold spaces).
    private static func stat(_ pid: Int32) -> (ppid: Int32, utime: Int, stime: Int, cutime: Int, cstime: Int)? {
        guard let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 14, let ppid = Int32(f[1]), let u = Int(f[11]), let s = Int(f[12]), let cu = Int(f[13]), let cs = Int(f[14]) else { return nil }
        return (ppid, u, s, cu, cs)
    }
}
