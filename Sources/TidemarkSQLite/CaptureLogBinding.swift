#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Binding a capture installation to the one log its changes belong in.
///
/// After a cutover the target's writes (reverse capture) continue the
/// migration's log: their `seq`s start past the switch LSN, so that log stays
/// one timeline and a rollback finds them there. Shipped into any other log
/// they would be missing from the one a rollback reads (and the other log's
/// LSNs would not be the target's), so the shipper refuses any log but the
/// bound one.
extension Capture {
    static let boundLogKey = "bound_log"

    /// The log directory `path` as one spelling (symlinks and `..` resolved
    /// when it exists), so two spellings of one directory compare equal.
    public static func canonicalLogPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Records that this installation's changes go into the log at
    /// `logPath` only (inside the caller's transaction, if any).
    /// - Parameter schema: the schema holding the capture tables.
    public static func bindLog(_ connection: Connection, schema: String = "main", logPath: String) throws {
        try connection.prepare("INSERT OR REPLACE INTO \(quoteIdentifier(schema)).\(metaTable)(name, value) VALUES (?1, ?2)")
            .execute([.text(boundLogKey), .text(canonicalLogPath(logPath))])
    }

    /// The log this installation is bound to, or nil (any log that passes
    /// the shipper's other checks).
    public static func boundLog(_ connection: Connection) throws -> String? {
        guard try isInstalled(connection) else { return nil }
        let s = try connection.prepare("SELECT value FROM main.\(metaTable) WHERE name = ?1")
        try s.bind([.text(boundLogKey)])
        return try s.step() ? s.columnText(0) : nil
    }

    /// Throws `foreignSource` when this installation is bound to another log
    /// than `logPath`.
    public static func checkBoundLog(_ connection: Connection, logPath: String) throws {
        guard let bound = try boundLog(connection) else { return }
        let asked = canonicalLogPath(logPath)
        guard bound == asked else {
            throw CaptureError(.foreignSource,
                "\(connection.path) captures the writes made after a cutover, which continue the migration's log \(bound); ship them there (`--log \(bound)`), not into \(asked)")
        }
    }
}
