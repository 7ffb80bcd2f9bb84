/// Which store wrote which part of a log: the source until a cutover, the
/// new home after it, the source again after a rollback. One timeline, so
/// an audit reader can say of every record where it was written.
///
/// Kept in `origins` in the log directory, one line per switch,
/// `<first LSN> <store>`, appended (never rewritten) by cutover and
/// rollback after their commit point; records before the first line were
/// written by the log's source. Only switches write it, so it never races
/// the appender, and a missing line (a crash right after a commit point)
/// only loses the marking, never a record.
public enum LogOrigins {
    public struct Switch: Sendable, Equatable {
        /// The first LSN the store wrote.
        public var fromLSN: LSN
        /// `target <name>` or `source <name>`.
        public var store: String
        public init(fromLSN: LSN, store: String) {
            self.fromLSN = fromLSN
            self.store = store
        }
    }

    static func path(_ d: LogDirectory) -> String { d.path + "/origins" }

    /// Records that `store` writes the log from `fromLSN` on (durable on return).
    public static func append(_ d: LogDirectory, fromLSN: LSN, store: String) throws(LogError) {
        let line = "\(fromLSN.rawValue) \(store.replacingNewlines())\n"
        // Only switches write this file, one at a time (each after its
        // commit point), so writing at its end is appending.
        let created = !FileSystem.exists(path(d))
        let file = try SystemFile.openForWriting(path(d), create: true)
        try file.write(Array(line.utf8), at: try file.size())
        try file.sync()
        if created { try FileSystem.syncDirectory(d.path) }
    }

    /// Every switch, in LSN order (empty when the source wrote all of it).
    public static func load(_ d: LogDirectory) -> [Switch] {
        guard let text = try? FileSystem.readSmallFile(path(d)) else { return [] }
        var out: [Switch] = []
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " "), let lsn = UInt64(line[..<space]) else { continue }
            out.append(Switch(fromLSN: LSN(lsn), store: String(line[line.index(after: space)...])))
        }
        return out.sorted { $0.fromLSN < $1.fromLSN }
    }

    /// The store that wrote `lsn`: the last switch at or before it, else the source.
    public static func store(of lsn: LSN, in switches: [Switch]) -> String {
        switches.last { $0.fromLSN <= lsn }?.store ?? "source"
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}
