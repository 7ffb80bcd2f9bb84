import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// What `tidemark finish` did (or, in a dry run, would do).
public struct FinishReport: Sendable {
    /// Every object removed, as `<kind> <name> in <database>`.
    public var removed: [String]
    public var dryRun: Bool
    /// Nothing was left to remove.
    public var nothingToDo: Bool { removed.isEmpty }
}

/// Ends a cutover that is kept: removes what the migration installed that
/// only a rollback needs — reverse capture in the target (its changes first
/// shipped into the log, which keeps them), capture left on the guarded
/// source, the migration state and journals, the log consumer.
///
/// The guards and the switch record stay on the source, so nothing is
/// written where nobody reads and the ``Router`` still answers "target";
/// `dropSource` then drops the old tables themselves (their guards go with
/// them). After `finish` a rollback is no longer possible. Idempotent.
public enum Finish {
    public static func run(plan: Plan, dropSource: Bool = false, dryRun: Bool = false) throws -> FinishReport {
        guard FileSystemCheck.exists(plan.source) else {
            throw MigrationError(.missingSource, "source database \(plan.source) does not exist; check `source:` in the plan")
        }
        let mode: Connection.OpenMode = dryRun ? .readOnly : .readWrite
        let source = try Connection(path: plan.source, mode: mode)
        if plan.isPostgres && !dryRun {
            let pg = try PostgresStore.connect(plan.target)
            defer { pg.close() }
            try PostgresRollback.settleCutover(plan: plan, pg: pg)
            if try PostgresRollback.Journal.read(pg) == .prepared {
                throw MigrationError(.rollbackPending, "a rollback of \(plan.displayTarget) was interrupted; run `tidemark rollback` to finish it, then `tidemark finish`")
            }
        }
        let target = FileSystemCheck.exists(plan.target) ? try Connection(path: plan.target, mode: mode) : nil
        if let target, !dryRun { _ = try CutoverJournal.settle(plan: plan, source: source, target: target) }
        guard let record = try SwitchRecord.read(source) else {
            throw MigrationError(.notCutOver, "\(plan.source) records no cutover; `finish` ends a kept cutover — run `tidemark cutover` first, or `tidemark rollback` to abandon the migration")
        }
        if let target, let j = try RollbackJournal.read(target), j.phase == .prepared {
            throw MigrationError(.rollbackPending, "a rollback of \(plan.displayTarget) was interrupted; run `tidemark rollback` to finish it, or `tidemark cutover` to keep the target, then `tidemark finish`")
        }
        let state = try target.flatMap { try StateTables.load($0) }
        // The switch record names what moved (source=target per table); in
        // place (one file, same table) the old columns share the new table.
        var routed: [(source: String, target: String)] = []
        for pair in record.tables.split(separator: ",") {
            let p = pair.split(separator: "=", maxSplits: 1).map(String.init)
            if p.count == 2 { routed.append((p[0], p[1])) }
        }
        // A swapped table is routed to itself too, but its old table is aside.
        var swapped: Set<String> = []
        for r in routed where plan.isSameFile && r.source.lowercased() == r.target.lowercased() {
            if try TableSwap.isSwapped(r.source, in: source) { swapped.insert(r.source.lowercased()) }
        }
        if dropSource, plan.isSameFile, let m = routed.first(where: { $0.source.lowercased() == $0.target.lowercased() && !swapped.contains($0.source.lowercased()) }) {
            throw MigrationError(.badPlan, "\(m.source) was migrated in place; its old columns live in the same table, so --drop-source cannot drop it — drop its replaced columns yourself after dropping the guard triggers _tidemark_guard_\(m.source)_insert and _update")
        }
        var removed: [String] = []
        let sameFile = plan.isSameFile
        // Capture: the target's reverse capture (two files) and whatever is
        // left on the source (the one outbox of a same-file migration).
        let targetCapture = try !sameFile && (target.map { try Capture.isInstalled($0) } ?? false)
        let sourceCapture = try Capture.isInstalled(source)
        if targetCapture, let target { removed += try Rollback.captureObjects(target).map { "\($0) in \(plan.displayTarget)" } }
        if sourceCapture { removed += try Rollback.captureObjects(source).map { "\($0) in \(plan.source)" } }
        var targetDrops: [String] = []
        if let target {
            for t in [StateTables.tables, StateTables.migration, RollbackJournal.table, SchemaStore.table] where try Schema.table(named: t, in: target) != nil {
                targetDrops.append(t)
            }
        }
        removed += targetDrops.map { "table \($0) in \(plan.displayTarget)" }
        let consumer = "migration-" + Migrator.consumerSuffix(plan.displayTarget)
        let hasConsumer = try Rollback.hasConsumer(plan: plan, consumer)
        if hasConsumer { removed.append("log consumer \(consumer) in \(plan.log)") }
        var sourceDrops: [String] = []
        var dropSwitchRecord = false
        if dropSource {
            for r in routed {
                // A swap's old table is the one set aside (its indexes go with it).
                let old = swapped.contains(r.source.lowercased()) ? TablePlan.asideName(of: r.source) : r.source
                if try Schema.table(named: old, in: source) != nil { sourceDrops.append(old) }
            }
            removed += sourceDrops.map { "table \($0) (with its guards) in \(plan.source)" }
            // Every table was swapped (each routes to itself) and its old
            // table goes now: the switch record routes nothing any more, and
            // left in place it would pass a later migration of the file for
            // one already cut over.
            if plan.isSameFile, !routed.isEmpty, routed.allSatisfy({ swapped.contains($0.source.lowercased()) }) {
                dropSwitchRecord = true
                removed.append("table \(SwitchRecord.table) in \(plan.source)")
            }
        }
        if dryRun { return FinishReport(removed: removed, dryRun: true) }
        _ = state

        // Reverse changes go into the log before their outbox goes away.
        if targetCapture, let target {
            try Rollback.shipReverse(plan: plan, target: target, through: LSN(UInt64(max(0, try Capture.lastCapturedSeq(target)))))
            try Capture.uninstall(connection: target, force: true)
        }
        if sourceCapture {
            if sameFile { try shipSameFile(plan: plan, source: source) }
            try Capture.uninstall(connection: source, force: true)
        }
        if let target, !targetDrops.isEmpty {
            try target.transaction(.immediate) { for t in targetDrops { try target.execute("DROP TABLE IF EXISTS main.\(t)") } }
        }
        if plan.isPostgres { removed += try finishPostgres(plan: plan) }
        if hasConsumer { try Consumers(LogDirectory(plan.log)).unregister(consumer) }
        if !sourceDrops.isEmpty {
            try source.transaction(.immediate) {
                for t in sourceDrops { try source.execute("DROP TABLE IF EXISTS main.\(quoteIdentifier(t))") }
                if dropSwitchRecord { try source.execute("DROP TABLE IF EXISTS main.\(SwitchRecord.table)") }
            }
        }
        return FinishReport(removed: removed, dryRun: false)
    }

    /// A PostgreSQL target: its captured writes go into the log (which
    /// keeps them), then reverse capture and the migration state go.
    static func finishPostgres(plan: Plan) throws -> [String] {
        let source = try Connection(path: plan.source, mode: .readOnly)
        let pgs = try PostgresStore(plan: plan, source: source)
        let pg = pgs.pg
        var removed: [String] = []
        guard let state = try pgs.mapped({ try PostgresState.load(pg) }) else { return [] }
        if try pgs.mapped({ try PGCapture.isInstalled(pg) }) {
            try PostgresRollback.ship(plan: plan, pgs: pgs, floor: state.cutover?.lsn ?? .zero)
            let mappings = try PostgresRollback.mappings(plan, source: source)
            let captured = try mappings.map { try PostgresReverse.capturedTable($0, pgs: pgs) }
            try pgs.mapped { try PGCapture.uninstall(pg, tables: captured, dropOutbox: true) }
            removed.append("reverse capture (triggers, tidemark.outbox) in \(plan.displayTarget)")
        }
        try pgs.mapped {
            try pg.execute("DROP TABLE IF EXISTS tidemark.migration, tidemark.migration_tables, tidemark.schema_objects, tidemark.rollback")
        }
        removed.append("migration state (schema tidemark) in \(plan.displayTarget)")
        return removed
    }

    /// Same file: the one outbox holds the target's writes since the switch;
    /// they go into the log before the outbox is removed.
    static func shipSameFile(plan: Plan, source: Connection) throws {
        guard LogDirectory(plan.log).exists else { return }
        try Rollback.shipReverse(plan: plan, target: source, through: LSN(UInt64(max(0, try Capture.lastCapturedSeq(source)))))
    }
}
