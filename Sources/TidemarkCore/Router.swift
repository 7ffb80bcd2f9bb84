import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// Which store is authoritative for a migration, for readers and writers.
public struct Route: Sendable, Equatable {
    public enum Authority: String, Sendable { case source, target }

    public var authority: Authority
    /// The database file to read and write; for a PostgreSQL target, its
    /// connection string without the password (supply it as for `psql`:
    /// `~/.pgpass` or `PGPASSWORD`).
    public var database: String
    /// Source table → the table to use in `database`.
    public var tables: [String: String]
    /// The switch's LSN and time (nil before cutover).
    public var lsn: LSN?
    public var atMicros: Int64?

    /// The table to use for `sourceTable` (its own name if not migrated).
    public func table(for sourceTable: String) -> String { tables[sourceTable] ?? sourceTable }
}

/// Tells applications where to read and write. The source database's switch
/// record is the single source of truth (it is the cutover's commit point),
/// so every process that asks gets the same answer.
///
/// Usage: route once at start; when a write fails with a message starting
/// `tidemark:` (the guard triggers' error), route again and retry there.
public struct Router: Sendable {
    public let plan: Plan

    public init(plan: Plan) { self.plan = plan }

    /// How long ``route()`` waits for a rollback between its two commits
    /// (the target already fenced, the source not yet switched back).
    public static let transitionWaitMillis = 5_000

    public func route() throws -> Route {
        let source = try Connection(path: plan.source, mode: .readOnly)
        // A two-file rollback fences the target before the source's commit
        // point: in between, both stores refuse writes. That is a pause, as
        // a cutover's lock is: wait it out (bounded) so a writer refused by
        // the fence is sent to the source, not back to the fence.
        let deadline = Clock.monotonicNanos() + UInt64(Self.transitionWaitMillis) * 1_000_000
        while try SwitchRecord.read(source) != nil, try rollbackBetweenCommits(), Clock.monotonicNanos() < deadline {
            Clock.sleep(milliseconds: 2)
        }
        if let record = try SwitchRecord.read(source) {
            var tables: [String: String] = [:]
            for pair in record.tables.split(separator: ",") {
                let p = pair.split(separator: "=", maxSplits: 1)
                if p.count == 2 { tables[String(p[0])] = String(p[1]) }
            }
            let database = plan.isPostgres ? PGConnection.redacted(plan.target) : plan.target
            return Route(authority: .target, database: database, tables: tables, lsn: record.lsn, atMicros: record.atMicros)
        }
        return Route(authority: .source, database: plan.source,
                     tables: Dictionary(plan.tables.map { ($0.source, $0.source) }, uniquingKeysWith: { a, _ in a }), lsn: nil, atMicros: nil)
    }

    /// Whether a two-file rollback is between its fence and its commit point.
    private func rollbackBetweenCommits() throws -> Bool {
        guard !plan.isSameFile, FileSystemCheck.exists(plan.target) else { return false }
        let target = try Connection(path: plan.target, mode: .readOnly)
        let entry: RollbackJournal.Entry? = try RollbackJournal.read(target)
        return entry?.phase == .prepared
    }

    /// Whether `error` is a guard trigger's refusal (time to route again).
    public static func isMovedError(_ error: Error) -> Bool {
        "\(error)".contains("tidemark: ")
    }
}
