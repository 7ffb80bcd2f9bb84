import TidemarkLog
import TidemarkSQLite

extension Migrator {
    /// Refuses to replay across an LSN gap the log records (ranges lost to
    /// damage and quarantined by `tidemark log repair`): the changes in it
    /// never reach the target, so the target may differ from the source.
    /// `MigratorOptions.acceptGap` (`tidemark migrate --accept-gap`) goes on.
    ///
    /// Accepting a gap forgets the last verify (`StateTables.invalidateVerify`),
    /// so cutover requires a clean verify made after the gap was accepted.
    static func checkGaps(_ cursor: LogCursor, appliedLSN: LSN, options: MigratorOptions, log: String, store: TargetStore) throws {
        let ahead = cursor.recordedGaps.filter { $0.upperBound > appliedLSN }
        guard let first = ahead.first else { return }
        if options.acceptGap {
            try store.invalidateVerify()
            return
        }
        let list = ahead.map { "\($0.lowerBound)…\($0.upperBound)" }.joined(separator: ", ")
        throw MigrationError(.logGap,
            "the log \(log) lost LSN \(list) to damage (quarantined by `tidemark log repair`), after the migration's applied LSN \(appliedLSN): the changes in it cannot reach the target; run `tidemark migrate --accept-gap` to replay past it and then `tidemark verify` before cutover, or start the migration again (`tidemark rollback`, then `tidemark migrate`) — first lost LSN \(first.lowerBound)")
    }
}
