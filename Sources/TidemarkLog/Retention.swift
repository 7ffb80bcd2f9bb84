/// Registered consumers of a log (a migration, a follower): each has a name
/// and the highest LSN it has applied. Retention never deletes a record a
/// consumer has not acknowledged.
///
/// Stored as one small file per consumer in DIR/consumers/, replaced
/// atomically (write, fsync, rename, fsync directory).
public struct Consumers: Sendable {
    public let directory: LogDirectory

    public init(_ directory: LogDirectory) { self.directory = directory }

    static func validate(_ name: String) throws(LogError) {
        let ok = !name.isEmpty && name.utf8.count <= 128 && name.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E
        } && !name.hasPrefix(".")
        guard ok else { throw LogError(.badInput, "consumer name '\(name)' must be 1-128 letters, digits, '.', '-' or '_'") }
    }

    private func path(_ name: String) -> String { directory.consumersPath + "/" + name }

    /// Registers `name` at `lsn` unless it is already registered (then its
    /// position is kept). Returns the registered position.
    @discardableResult
    public func register(_ name: String, at lsn: LSN) throws(LogError) -> LSN {
        try Self.validate(name)
        if let existing = try position(of: name) { return existing }
        try FileSystem.makeDirectory(directory.consumersPath)
        try FileSystem.writeAtomically(path(name), "\(lsn.rawValue)\n", directory: directory.consumersPath)
        return lsn
    }

    /// Records that `name` has applied every record up to `lsn`.
    public func acknowledge(_ name: String, through lsn: LSN) throws(LogError) {
        try Self.validate(name)
        try FileSystem.makeDirectory(directory.consumersPath)
        try FileSystem.writeAtomically(path(name), "\(lsn.rawValue)\n", directory: directory.consumersPath)
    }

    public func unregister(_ name: String) throws(LogError) {
        try Self.validate(name)
        try FileSystem.remove(path(name))
    }

    public func position(of name: String) throws(LogError) -> LSN? {
        let p = path(name)
        guard FileSystem.exists(p) else { return nil }
        let text = try FileSystem.readSmallFile(p)
        guard let v = UInt64(text.split(separator: "\n").first ?? "") else {
            throw LogError(.notALog, "consumer file \(p) is unreadable; remove it or acknowledge a position again")
        }
        return LSN(v)
    }

    /// Every consumer and its acknowledged LSN.
    public func all() throws(LogError) -> [String: LSN] {
        guard FileSystem.isDirectory(directory.consumersPath) else { return [:] }
        var result: [String: LSN] = [:]
        for name in try FileSystem.list(directory.consumersPath) where !name.contains(".tmp-") {
            if let lsn = try position(of: name) { result[name] = lsn }
        }
        return result
    }
}

/// Deleting old segments.
public enum Retention {
    /// Deletes whole segments all of whose records are below `lsn` and at or
    /// below every registered consumer's acknowledged LSN. The last segment is
    /// never deleted. Returns the deleted segments.
    ///
    /// Invariant: a segment is deleted only when the next segment's base LSN
    /// (an upper bound on its records + 1) is <= min(lsn, min ack + 1).
    @discardableResult
    public static func deleteSegments(in directory: LogDirectory, below lsn: LSN) throws(LogError) -> [SegmentFile] {
        let consumers = try Consumers(directory).all()
        var bound = lsn.rawValue
        for (_, ack) in consumers { bound = min(bound, ack.rawValue &+ 1) }
        let segments = try directory.segments()
        var doomed: [SegmentFile] = []
        for i in segments.indices.dropLast() where segments[i + 1].baseLSN.rawValue <= bound {
            doomed.append(segments[i])
        }
        guard let keep = doomed.last.map({ segments[segments.firstIndex(of: $0)! + 1] }) else { return [] }
        // Record the new floor first, so a reader asking for a removed LSN
        // gets `.truncated` rather than silently starting later.
        try FileSystem.writeAtomically(directory.path + "/retention", "deleted_below=\(keep.baseLSN.rawValue)\n", directory: directory.path)
        for s in doomed { try FileSystem.remove(s.path) }
        try FileSystem.syncDirectory(directory.path)
        return doomed
    }

    /// The LSN below which retention has deleted records (`.zero` if never).
    public static func deletedBelow(_ directory: LogDirectory) throws(LogError) -> LSN {
        let p = directory.path + "/retention"
        guard FileSystem.exists(p) else { return .zero }
        let text = try FileSystem.readSmallFile(p)
        for line in text.split(separator: "\n") where line.hasPrefix("deleted_below=") {
            if let v = UInt64(line.dropFirst("deleted_below=".count)) { return LSN(v) }
        }
        return .zero
    }
}
