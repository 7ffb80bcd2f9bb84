import CSQLite
import TidemarkLog

/// The storage class of one value, as SQLite reports it for a result column.
public enum StorageClass: Sendable, Hashable, CustomStringConvertible {
    case integer, real, text, blob, null

    init(sqliteType: Int32) {
        switch sqliteType {
        case SQLITE_INTEGER: self = .integer
        case SQLITE_FLOAT: self = .real
        case SQLITE_TEXT: self = .text
        case SQLITE_BLOB: self = .blob
        default: self = .null
        }
    }

    /// The name `typeof()` gives the class in SQL.
    public var description: String {
        switch self {
        case .integer: "integer"
        case .real: "real"
        case .text: "text"
        case .blob: "blob"
        case .null: "null"
        }
    }
}

/// One prepared SQL statement, finalized when the last reference goes away.
///
/// Parameter indexes are 1-based and column indexes 0-based, as in SQLite's
/// C API, so that SQLite's documentation applies unchanged.
///
/// A statement belongs to the ``Connection`` that prepared it and is used on
/// the same thread; it is not `Sendable`. A statement may outlive its
/// connection: the connection is closed with `sqlite3_close_v2`, which keeps
/// the handle alive (as a "zombie") until its last statement is finalized.
public final class Statement {
    /// The `sqlite3_stmt*`; never exposed outside the package.
    package let handle: OpaquePointer
    /// The SQL text this statement was prepared from.
    public let sql: String

    init(handle: OpaquePointer, sql: String) {
        self.handle = handle
        self.sql = sql
    }

    deinit {
        sqlite3_finalize(handle)
    }

    private func error(_ code: Int32) -> SQLiteError {
        SQLiteError.from(code, db: sqlite3_db_handle(handle), sql: sql)
    }

    @inline(__always)
    private func check(_ code: Int32) throws(SQLiteError) {
        if code != SQLITE_OK { throw error(code) }
    }

    // MARK: Binding

    /// The number of SQL parameters (`?`, `?NNN`, `:name` …) in the statement.
    public var parameterCount: Int32 { sqlite3_bind_parameter_count(handle) }

    /// Binds SQL NULL to parameter `index` (1-based).
    public func bindNull(at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_null(handle, index))
    }

    /// Binds a 64-bit integer to parameter `index` (1-based).
    public func bind(_ value: Int64, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    /// Binds an integer to parameter `index` (1-based); lets literals such as
    /// `bind(1, at: 1)` resolve without a type annotation.
    public func bind(_ value: Int, at index: Int32) throws(SQLiteError) {
        try bind(Int64(value), at: index)
    }

    /// Binds a double, bit for bit, to parameter `index` (1-based).
    ///
    /// A NaN is stored by SQLite as NULL.
    public func bind(_ value: Double, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_double(handle, index, value))
    }

    /// Binds UTF-8 text to parameter `index` (1-based). SQLite copies the bytes
    /// (`SQLITE_TRANSIENT`) because the string may not outlive the binding;
    /// ``withBindings(_:_:)`` avoids the copy.
    public func bind(_ value: String, at index: Int32) throws(SQLiteError) {
        var value = value
        let code = value.withUTF8 { buffer in
            Self.bindText(handle, index, buffer, tidemark_sqlite_transient())
        }
        try check(code)
    }

    /// Binds a blob to parameter `index` (1-based), copied by SQLite
    /// (`SQLITE_TRANSIENT`). An empty array binds an empty blob, not NULL.
    public func bind(bytes: [UInt8], at index: Int32) throws(SQLiteError) {
        let code = bytes.withUnsafeBufferPointer { buffer in
            Self.bindBlob(handle, index, UnsafeRawBufferPointer(buffer), tidemark_sqlite_transient())
        }
        try check(code)
    }

    /// Binds one value in its own storage class to parameter `index` (1-based).
    public func bind(_ value: Value, at index: Int32) throws(SQLiteError) {
        switch value {
        case .null: try bindNull(at: index)
        case .integer(let i): try bind(i, at: index)
        case .real(let d): try bind(d, at: index)
        case .text(let s): try bind(s, at: index)
        case .blob(let b): try bind(bytes: b, at: index)
        }
    }

    /// Binds `values` to parameters 1…n, copying text and blobs.
    public func bind(_ values: [Value]) throws(SQLiteError) {
        for (offset, value) in values.enumerated() {
            try bind(value, at: Int32(offset + 1))
        }
    }

    /// Binds UTF-8 text *without copying* (`SQLITE_STATIC`): the caller
    /// keeps `bytes` alive and unchanged until the statement is stepped and
    /// reset, or rebound (replay binds straight from a log frame's buffer).
    package func bindStatic(text bytes: UnsafeRawBufferPointer, at index: Int32) throws(SQLiteError) {
        try check(Self.bindText(handle, index, bytes.bindMemory(to: UInt8.self), tidemark_sqlite_static()))
    }

    /// Binds a blob *without copying*; the same rule as ``bindStatic(text:at:)``.
    package func bindStatic(blob bytes: UnsafeRawBufferPointer, at index: Int32) throws(SQLiteError) {
        try check(Self.bindBlob(handle, index, bytes, tidemark_sqlite_static()))
    }

    /// Sets every parameter back to NULL.
    public func clearBindings() {
        // > sqlite3_clear_bindings … reset all host parameters to NULL.
        // It cannot fail on a valid statement handle.
        sqlite3_clear_bindings(handle)
    }

    /// The most parameters bound without copying by ``withBindings(_:_:)``;
    /// each one nests a scoped pointer access, so this bounds the stack depth.
    static let staticBindingLimit = 32

    /// Binds `values` to parameters 1…n *without copying* text and blobs, runs
    /// `body` (which steps the statement), then clears the bindings.
    ///
    /// The text and blob bytes are bound with `SQLITE_STATIC` while a scoped
    /// pointer access keeps them alive:
    /// > If the fifth argument is the special value SQLITE_STATIC, then SQLite
    /// > assumes that the information is in static, unmanaged space and does
    /// > not need to be freed.
    /// Clearing the bindings before the access ends is what makes that true.
    /// With more than ``staticBindingLimit`` values the bytes are copied instead.
    public func withBindings<R>(_ values: [Value], _ body: () throws -> R) throws -> R {
        defer { clearBindings() }
        if values.count > Self.staticBindingLimit {
            try bind(values)
            return try body()
        }
        return try bindStatic(values, from: 0, body)
    }

    private func bindStatic<R>(_ values: [Value], from offset: Int, _ body: () throws -> R) throws -> R {
        if offset == values.count { return try body() }
        let index = Int32(offset + 1)
        switch values[offset] {
        case .text(var s):
            return try s.withUTF8 { buffer in
                try check(Self.bindText(handle, index, buffer, tidemark_sqlite_static()))
                return try bindStatic(values, from: offset + 1, body)
            }
        case .blob(let b):
            return try b.withUnsafeBytes { buffer in
                try check(Self.bindBlob(handle, index, buffer, tidemark_sqlite_static()))
                return try bindStatic(values, from: offset + 1, body)
            }
        case let other:
            try bind(other, at: index)
            return try bindStatic(values, from: offset + 1, body)
        }
    }

    private static func bindText(
        _ handle: OpaquePointer, _ index: Int32, _ buffer: UnsafeBufferPointer<UInt8>,
        _ destructor: sqlite3_destructor_type?
    ) -> Int32 {
        if let base = buffer.baseAddress, buffer.count > 0 {
            return base.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                sqlite3_bind_text64(handle, index, $0, UInt64(buffer.count), destructor, UInt8(SQLITE_UTF8))
            }
        }
        // An empty Swift buffer may have no address, and SQLite binds a NULL
        // pointer as SQL NULL; SQLite copies this empty C string (TRANSIENT).
        return sqlite3_bind_text64(handle, index, "", 0, tidemark_sqlite_transient(), UInt8(SQLITE_UTF8))
    }

    private static func bindBlob(
        _ handle: OpaquePointer, _ index: Int32, _ buffer: UnsafeRawBufferPointer,
        _ destructor: sqlite3_destructor_type?
    ) -> Int32 {
        if let base = buffer.baseAddress, buffer.count > 0 {
            return sqlite3_bind_blob64(handle, index, base, UInt64(buffer.count), destructor)
        }
        // > sqlite3_bind_zeroblob() … binds a BLOB of length N that is filled with zeroes.
        return sqlite3_bind_zeroblob(handle, index, 0)
    }

    // MARK: Execution

    /// Rewinds the statement so it can run again; bindings are kept.
    ///
    /// The code `sqlite3_reset` returns repeats the error of the last failed
    /// step, which ``step()`` already threw, so it is not thrown again here.
    public func reset() {
        sqlite3_reset(handle)
    }

    /// Runs the statement to its next row.
    ///
    /// - Returns: `true` when a row is available to the `column…` accessors,
    ///   `false` when the statement is done.
    /// - Throws: ``SQLiteError`` with SQLite's code and message.
    @discardableResult
    public func step() throws(SQLiteError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let code: throw error(code)
        }
    }

    /// Runs the statement to completion (from its current position), ignoring
    /// any rows, then rewinds it.
    public func execute() throws(SQLiteError) {
        defer { reset() }
        while try step() {}
    }

    /// Binds `values` without copying, runs the statement to completion and
    /// rewinds it.
    public func execute(_ values: [Value]) throws {
        try withBindings(values) { try self.execute() as Void }
    }

    /// Calls `body` once per result row, then rewinds the statement.
    public func forEachRow(_ body: (Statement) throws -> Void) throws {
        defer { reset() }
        while try step() { try body(self) }
    }

    /// The result rows, each turned into a value by `transform`; rewinds the
    /// statement afterwards.
    public func rows<T>(_ transform: (Statement) throws -> T) throws -> [T] {
        var result: [T] = []
        try forEachRow { result.append(try transform($0)) }
        return result
    }

    // MARK: Reading the current row

    /// The number of result columns.
    public var columnCount: Int32 { sqlite3_column_count(handle) }

    /// The name of result column `index` (0-based).
    public func columnName(_ index: Int32) -> String {
        guard let name = sqlite3_column_name(handle, index) else { return "" }
        return String(cString: name)
    }

    /// The storage class of column `index` (0-based) in the current row.
    public func columnType(_ index: Int32) -> StorageClass {
        StorageClass(sqliteType: sqlite3_column_type(handle, index))
    }

    /// Column `index` (0-based) of the current row as an integer (SQLite converts
    /// other classes by its usual rules).
    @inline(__always)
    public func columnInt64(_ index: Int32) -> Int64 {
        sqlite3_column_int64(handle, index)
    }

    /// Column `index` (0-based) of the current row as a double.
    @inline(__always)
    public func columnDouble(_ index: Int32) -> Double {
        sqlite3_column_double(handle, index)
    }

    /// Column `index` (0-based) of the current row as text.
    ///
    /// The length comes from `sqlite3_column_bytes`, not from a terminating
    /// NUL, so embedded NUL characters survive:
    /// > call sqlite3_column_text() … first to force the result into the
    /// > desired format, then invoke sqlite3_column_bytes() … to find the size
    /// Bytes that are not valid UTF-8 are replaced by U+FFFD; use
    /// ``withColumnBytes(_:_:)`` to see them unchanged.
    public func columnText(_ index: Int32) -> String {
        guard let text = sqlite3_column_text(handle, index) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, index))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    /// Column `index` (0-based) of the current row as bytes; an empty blob and
    /// NULL both read as `[]` (check ``columnType(_:)`` to tell them apart).
    public func columnBlob(_ index: Int32) -> [UInt8] {
        guard let blob = sqlite3_column_blob(handle, index) else { return [] }
        let count = Int(sqlite3_column_bytes(handle, index))
        return Array(UnsafeRawBufferPointer(start: blob, count: count))
    }

    /// Calls `body` with the bytes of column `index` (0-based) in place: UTF-8
    /// for text, raw bytes otherwise. The buffer is valid only inside `body`.
    public func withColumnBytes<R>(_ index: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let base: UnsafeRawPointer?
        if sqlite3_column_type(handle, index) == SQLITE_TEXT {
            base = sqlite3_column_text(handle, index).map { UnsafeRawPointer($0) }
        } else {
            base = sqlite3_column_blob(handle, index)
        }
        let count = Int(sqlite3_column_bytes(handle, index))
        return try body(UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : count))
    }

    /// Column `index` (0-based) of the current row in its own storage class.
    public func columnValue(_ index: Int32) -> Value {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, index))
        case SQLITE_TEXT: return .text(columnText(index))
        case SQLITE_BLOB: return .blob(columnBlob(index))
        default: return .null
        }
    }

    /// Whether column `index` (0-based) of the current row is NULL.
    public func columnIsNull(_ index: Int32) -> Bool {
        sqlite3_column_type(handle, index) == SQLITE_NULL
    }
}
