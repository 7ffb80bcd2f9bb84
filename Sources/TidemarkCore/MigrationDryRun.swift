import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite

/// What `tidemark migrate --dry-run` reports: the schema the target would
/// get and what the preflight finds, read without changing anything.
public struct MigrationDryRun: Sendable {
    /// The target's schema: resolved from the source and the plan, or the
    /// stored one when the migration already began (``started``).
    public var schema: TargetSchema
    /// The preflight over the source (empty when the migration already
    /// began: a first run checked it then).
    public var preflight: PreflightReport
    /// The migration already began; `schema` is the stored copy.
    public var started: Bool
    /// Indexes of the stored schema still to be built (a started migration).
    public var pendingIndexes: [String]
    /// In-place columns: added, or adopted (they exist and are empty).
    public var inPlaceColumns: [InPlaceColumn] = []
    /// Target tables that exist already (made by hand, empty): they are
    /// kept as they are, not created from the schema.
    public var existingTables: [String] = []

    public struct InPlaceColumn: Sendable, Equatable {
        public var table: String
        public var column: String
        public var expression: String
        public var adopted: Bool
    }
}

extension Migrator {
    /// Resolves the plan and the target's schema and runs the preflight,
    /// reading only: no target file, log directory or capture is created,
    /// and an existing target is opened read-only.
    ///
    /// - Throws: ``MigrationError`` for a plan that does not resolve (as
    ///   `migrate` would), never for preflight violations (they are the report).
    public static func dryRun(plan: Plan) throws -> MigrationDryRun {
        guard FileSystemCheck.exists(plan.source) else {
            throw MigrationError(.missingSource, "source database \(plan.source) does not exist; check `source:` in the plan")
        }
        let source = try Connection(path: plan.source, mode: .readOnly)
        if plan.isPostgres { return try postgresDryRun(plan: plan, source: source) }
        let existingTarget = plan.isSameFile ? source
            : FileSystemCheck.exists(plan.target) ? try Connection(path: plan.target, mode: .readOnly) : nil
        let mappings = try PlanResolver.resolve(plan, source: source, target: existingTarget ?? source,
                                                ownedColumns: try existingTarget.map(StateTables.addedColumns) ?? [:])
        var inPlace: [MigrationDryRun.InPlaceColumn] = []
        for m in mappings where m.shape == .inPlace {
            for c in m.columns {
                inPlace.append(.init(table: m.targetTable, column: c.target, expression: c.expression,
                                     adopted: m.source.columns.contains { $0.name.lowercased() == c.target.lowercased() }))
            }
        }
        if let existingTarget, let state = try StateTables.load(existingTarget), state.cutover?.kind != .rolledBack {
            let stored = try SchemaStore.load(existingTarget)
                ?? TargetSchema.resolve(plan: plan, mappings: mappings, source: source, sameFile: plan.isSameFile)
            return MigrationDryRun(schema: stored, preflight: PreflightReport(), started: true,
                                   pendingIndexes: try SchemaStore.pending(.index, in: existingTarget), inPlaceColumns: inPlace)
        }
        if let existingTarget, try !StateTables.exists(existingTarget) { try TargetSetup.check(mappings, target: existingTarget) }
        let schema = try TargetSchema.resolve(plan: plan, mappings: mappings, source: source, sameFile: plan.isSameFile)
        let report = try Preflight.run(plan: plan, mappings: mappings, schema: schema, source: source)
        var existing: [String] = []
        if let existingTarget {
            for t in schema.tables where try Schema.table(named: t.target, in: existingTarget) != nil { existing.append(t.target) }
        }
        return MigrationDryRun(schema: schema, preflight: report, started: false, pendingIndexes: schema.indexes.map(\.name),
                               inPlaceColumns: inPlace, existingTables: existing)
    }
}

extension Migrator {
    /// `--dry-run` for a PostgreSQL target: both preflights (with the
    /// server's parse check), and the schema in PostgreSQL's terms — each
    /// table's CREATE TABLE, the indexes and foreign keys built after the
    /// copy, what does not translate — tried on the server in a transaction
    /// that is rolled back. Nothing is created.
    static func postgresDryRun(plan: Plan, source: Connection) throws -> MigrationDryRun {
        do {
            let pgs = try PostgresStore(plan: plan, source: source)
            defer { pgs.pg.close() }
            let mappings = try pgs.resolveMappings(plan)
            if let state = try PostgresState.load(pgs.pg), state.cutover?.kind != .rolledBack {
                let objects = try PostgresState.objects(pgs.pg)
                var schema = TargetSchema(tables: [])
                schema.indexes = objects.pending
                schema.omissions = objects.omissions
                return MigrationDryRun(schema: schema, preflight: PreflightReport(), started: true, pendingIndexes: objects.pending.map(\.name))
            }
            let carried = try TargetSchema.resolve(plan: plan, mappings: mappings, source: source, sameFile: false)
            var report = try Preflight.run(plan: plan, mappings: mappings, schema: carried, source: source)
            let types = try PostgresPreflight.run(plan: plan, mappings: mappings, schema: carried, source: source, server: pgs.pg)
            report.violations += types.report.violations
            report.unchecked += types.report.unchecked
            let translated = try PostgresSchema.validate(
                try PostgresSchema.translate(plan: plan, mappings: mappings, schema: carried, pgSchema: plan.pgSchema, observedClasses: types.observedClasses),
                on: pgs.pg)
            var schema = TargetSchema(tables: translated.tables.map { t in
                TargetSchema.Table(source: t.source, target: t.target, createSQL: t.createSQL + (t.identity.map { "; " + $0.sequenceSQL } ?? ""))
            })
            for t in translated.tables {
                schema.indexes += t.indexes.map { .init(kind: .index, name: $0.name, table: t.target, sql: $0.sql) }
                schema.indexes += t.foreignKeys.map { .init(kind: .index, name: $0.name, table: t.target, sql: $0.add + "; " + $0.validate) }
            }
            schema.omissions = translated.omissions
            var existing: [String] = []
            for t in translated.tables where try PostgresCatalog.columns(pgs.pg, schema: plan.pgSchema, table: t.target) != nil { existing.append(t.target) }
            return MigrationDryRun(schema: schema, preflight: report, started: false, pendingIndexes: schema.indexes.map(\.name),
                                   existingTables: existing)
        } catch let e as PGError {
            throw PostgresStore.migrationError(e, target: plan.displayTarget)
        }
    }
}
