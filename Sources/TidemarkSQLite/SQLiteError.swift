import CSQLite

/// An error reported by SQLite: its result code, its message, and the SQL or
/// file it concerns.
///
/// `description` is one line a person can act on: what failed, where, and —
/// for the codes where there is something to do — what to do.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// A SQLite result code. `rawValue` is the *extended* code when SQLite
    /// gave one (e.g. `SQLITE_CONSTRAINT_PRIMARYKEY`); ``primary`` strips it to
    /// the primary code, which is what callers usually compare.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public init(_ rawValue: Int32) { self.rawValue = rawValue }

        /// The primary result code (the low 8 bits of an extended code).
        public var primary: Code { Code(rawValue & 0xFF) }

        /// SQLite's own English name for the code, e.g. "database is locked".
        public var name: String { String(cString: sqlite3_errstr(rawValue)) }

        public var description: String { "\(rawValue)" }

        public static let error = Code(SQLITE_ERROR)
        public static let `internal` = Code(SQLITE_INTERNAL)
        public static let permission = Code(SQLITE_PERM)
        public static let abort = Code(SQLITE_ABORT)
        public static let busy = Code(SQLITE_BUSY)
        public static let locked = Code(SQLITE_LOCKED)
        public static let noMemory = Code(SQLITE_NOMEM)
        public static let readOnly = Code(SQLITE_READONLY)
        public static let interrupt = Code(SQLITE_INTERRUPT)
        public static let ioError = Code(SQLITE_IOERR)
        public static let corrupt = Code(SQLITE_CORRUPT)
        public static let full = Code(SQLITE_FULL)
        public static let cannotOpen = Code(SQLITE_CANTOPEN)
        public static let schema = Code(SQLITE_SCHEMA)
        public static let tooBig = Code(SQLITE_TOOBIG)
        public static let constraint = Code(SQLITE_CONSTRAINT)
        public static let mismatch = Code(SQLITE_MISMATCH)
        public static let misuse = Code(SQLITE_MISUSE)
        public static let range = Code(SQLITE_RANGE)
        public static let notADatabase = Code(SQLITE_NOTADB)
    }

    /// The result code, extended when SQLite reported one.
    public var code: Code
    /// The message from `sqlite3_errmsg` (or one of ours for conditions SQLite
    /// reports only by code).
    public var message: String
    /// The SQL being prepared or run, when the error concerns one statement.
    public var sql: String?
    /// The database file, when the error concerns opening it.
    public var path: String?

    public init(code: Code, message: String, sql: String? = nil, path: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
        self.path = path
    }

    /// The primary result code, for comparisons such as `error.primaryCode == .busy`.
    public var primaryCode: Code { code.primary }

    public var description: String {
        var line = message
        if message.isEmpty || message == code.name {
            line = code.name
        } else if !message.contains(code.name) {
            line += " (\(code.name))"
        }
        line += " [SQLite code \(code.rawValue)]"
        if let sql { line += " while running `\(Self.abbreviate(sql))`" }
        if let path, !line.contains(path) { line += " on \(path)" }
        if let hint { line += "; \(hint)" }
        return line
    }

    /// What a person can do about the error, when there is something obvious.
    private var hint: String? {
        switch code.primary {
        case .busy:
            return "another connection held the lock past the busy timeout: retry, or raise the busy timeout"
        case .readOnly:
            return "check the file's permissions and that it was not opened read-only"
        case .full:
            return "free disk space and retry"
        case .corrupt:
            return "the database file is damaged: restore it from a backup"
        default:
            return nil
        }
    }

    private static func abbreviate(_ sql: String) -> String {
        let oneLine = sql.split(whereSeparator: \.isNewline)
            .map { $0.trimmingSpaces() }
            .joined(separator: " ")
        if oneLine.count <= 200 { return oneLine }
        return String(oneLine.prefix(200)) + "…"
    }
}

extension SQLiteError {
    /// The error SQLite recorded on `db` for the result code `resultCode`.
    ///
    /// `sqlite3_errmsg` describes the most recent failed call on the handle, so
    /// this must be called right after the call that returned `resultCode`, on
    /// the thread that made it.
    static func from(_ resultCode: Int32, db: OpaquePointer?, sql: String? = nil, path: String? = nil) -> SQLiteError {
        var code = resultCode
        var message = String(cString: sqlite3_errstr(resultCode))
        if let db {
            let extended = sqlite3_extended_errcode(db)
            // The extended code refines the primary one only when they agree.
            if extended & 0xFF == resultCode & 0xFF { code = extended }
            if let cMessage = sqlite3_errmsg(db) { message = String(cString: cMessage) }
        }
        return SQLiteError(code: Code(code), message: message, sql: sql, path: path)
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s.removeFirst() }
        while let last = s.last, last == " " || last == "\t" { s.removeLast() }
        return s
    }
}
