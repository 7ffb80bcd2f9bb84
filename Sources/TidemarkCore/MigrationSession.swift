import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import TidemarkPostgres

/// Ships through an in-process ``Shipper`` when this process can own the
/// log's appender, or else waits for another process (`tidemark capture run`)
/// to ship and only reads the log's head.
final class ShipperFeed: ChangeFeed {
    let sourcePath: String
    let logPath: String
    let sourceID: SourceID
    private var shipper: Shipper?
    private var appender: LogAppender?
    /// The source's one-shipper lock, held while this process ships.
    private var lock: ShipperLock?
    private var external = false
    private let reader: LogReader?

    init(sourcePath: String, logPath: String, sourceID: SourceID) throws {
        self.sourcePath = sourcePath
        self.logPath = logPath
        self.sourceID = sourceID
        // One shipper per source (ShipperLock): another process shipping into
        // this log makes this one a reader, as the log's own lock does; one
        // shipping into another log is an error (`shipperRunning`), before
        // the log is opened.
        lock = try ShipperLock.acquire(sourcePath: sourcePath, logPath: logPath)
        if lock == nil {
            external = true
        } else {
            do {
                appender = try LogAppender(directory: logPath, sourceID: sourceID, options: LogOptions(durability: .commit))
            } catch let e as LogError where e.code == .locked {
                external = true
                lock = nil
            }
        }
        reader = external ? try LogReader(directory: logPath) : nil
    }

    /// Whether another process is shipping.
    var isExternal: Bool { external }

    func ship(sourceWritable: Bool) throws -> LSN {
        if external { return try reader!.headLSN() }
        if shipper == nil {
            let connection = try Connection(path: sourcePath, mode: .readWrite)
            shipper = try Shipper(connection: connection, appender: appender!, lock: lock)
        }
        let s = shipper!
        var rounds = 0
        while true {
            // Between rounds of a backlog: each round is whole (shipped rows
            // leave the outbox only once the log holds them durably).
            if rounds > 0 { try Interruption.check("shipping a backlog of captured changes into the log (\(rounds) rounds); the migration is where its last step left it — run the same command to resume") }
            rounds += 1
            let round = try s.shipOnce(deleteShipped: sourceWritable)
            if round.shipped < s.options.batchLimit { return round.lastLSN }
        }
    }

    func close() throws {
        try appender?.close()
        shipper?.releaseLock()
        lock?.release()
    }
}

extension Migrator {
    /// Everything `tidemark migrate` needs, opened from a plan: checks the
    /// plan before touching anything, then opens or creates the target,
    /// installs capture if missing, and ships in-process when it can.
    public static func open(plan: Plan, options: MigratorOptions = MigratorOptions()) throws -> Migrator {
        try open(plan: plan, options: options, wrappingFeed: { $0 })
    }

    /// ``open(plan:options:)`` with the in-process feed passed through
    /// `wrappingFeed`: the seam tests use to interleave source writes with
    /// the shipping calls inside a step.
    /// - Parameters:
    ///   - schema: a first run's target schema given by the caller (tests),
    ///     instead of the one ``TargetSchema/resolve(plan:mappings:source:sameFile:)`` gives.
    ///   - preflight: the preflight to run instead of ``Preflight`` (tests).
    package static func open(plan: Plan, options: MigratorOptions, wrappingFeed: (ChangeFeed) -> ChangeFeed,
                     schema givenSchema: TargetSchema? = nil, preflight: PreflightRunner? = nil) throws -> Migrator {
        guard FileSystemCheck.exists(plan.source) else {
            throw MigrationError(.missingSource, "source database \(plan.source) does not exist; check `source:` in the plan")
        }
        if plan.isPostgres {
            return try openPostgres(plan: plan, options: options, wrappingFeed: wrappingFeed, schema: givenSchema)
        }
        // A target a rollback left behind starts over (new capture, fresh copy).
        try Rollback.clearForNewMigration(plan: plan)
        let source = try Connection(path: plan.source, mode: .readWrite)
        let sourceID = try Capture.storedSourceID(source) ?? LogReader.existingSourceID(plan.log) ?? SourceID.random()
        // Every check a first run or a resume makes, read-only, before the
        // target file, the log directory or capture are created: bad input
        // changes nothing. A first run resolves the target's schema and runs
        // the preflight here too: a refusal leaves no file behind.
        var firstRunSchema: TargetSchema?
        do {
            let existingTarget = plan.isSameFile ? source
                : FileSystemCheck.exists(plan.target) ? try Connection(path: plan.target, mode: .readOnly) : nil
            let mappings = try PlanResolver.resolve(plan, source: source, target: existingTarget ?? source,
                                                    ownedColumns: try existingTarget.map(StateTables.addedColumns) ?? [:])
            let existingState = try existingTarget.flatMap { try StateTables.load($0) }
            if let existingTarget {
                if let state = existingState {
                    try Migrator.checkResumable(state, plan: plan, mappings: mappings, sourceID: sourceID.rawValue)
                } else {
                    try TargetSetup.check(mappings, target: existingTarget)
                }
            }
            // Invariant: a source's switch record belongs to the migration
            // whose state sits beside it. A new migration (no state) from a
            // source still holding an earlier, finished migration's record
            // would take it for its own at cutover ("already cut over",
            // nothing switched), so it is refused before anything is made.
            if existingState == nil, let earlier = try SwitchRecord.read(source) {
                let tables = earlier.tables.split(separator: ",").map { $0.split(separator: "=").first.map(String.init) ?? "" }.joined(separator: ", ")
                throw MigrationError(.foreignState, "\(plan.source) was switched by an earlier migration (\(tables), cut over at LSN \(earlier.lsn)) whose switch record (table \(SwitchRecord.table)) still routes them; a new migration from this source would take it for its own cutover, and one switch per source file is all Tidemark keeps — roll that migration back, or (a transform) `tidemark finish --drop-source` it, before starting another")
            }
            if existingState == nil {
                var schema = try givenSchema ?? TargetSchema.resolve(plan: plan, mappings: mappings, source: source, sameFile: plan.isSameFile)
                // An empty target table that exists already is checked as it is.
                if givenSchema == nil, let existingTarget { schema = try schema.withExistingTables(in: existingTarget) }
                let report = try (preflight ?? { try Preflight.run(plan: $0, mappings: $1, schema: $2, source: $3) })(plan, mappings, schema, source)
                if !report.isClean { throw Migrator.preflightError(report) }
                firstRunSchema = schema
            }
        }
        if FileSystemCheck.exists(plan.log) {
            let logSource = try LogReader(directory: plan.log).sourceID
            if let stored = try Capture.storedSourceID(source), stored != logSource {
                throw MigrationError(.foreignState, "the log \(plan.log) belongs to source \(logSource), but \(plan.source) is captured as \(stored); use the log made for this database")
            }
        }
        // The feed first: it takes the source's one-shipper lock, so a migrate
        // refused for another process's shipper creates no target file.
        let feed = try ShipperFeed(sourcePath: plan.source, logPath: plan.log, sourceID: sourceID)
        let target = plan.isSameFile ? try Connection(path: plan.source, mode: .readWrite) : try Connection(path: plan.target, mode: .readWriteCreate)
        if !plan.isSameFile { _ = try target.setJournalMode(.wal) }
        return try Migrator(plan: plan, source: source, target: target, feed: wrappingFeed(feed), sourceID: sourceID.rawValue, options: options,
                            schema: firstRunSchema, preflight: nil, preflightDone: firstRunSchema != nil)
    }

    /// ``open(plan:options:)`` for a PostgreSQL target: connects (a bad
    /// connection string, server, password, database or privilege is one
    /// line naming the target without its password), and on a first run
    /// resolves the schema, runs both preflights (the carried constraints
    /// over the source rows, and what PostgreSQL can hold exactly) and
    /// translates the schema, before anything is written anywhere.
    static func openPostgres(plan: Plan, options: MigratorOptions, wrappingFeed: (ChangeFeed) -> ChangeFeed,
                             schema givenSchema: TargetSchema?) throws -> Migrator {
        do {
            return try openPostgresChecked(plan: plan, options: options, wrappingFeed: wrappingFeed, schema: givenSchema)
        } catch let e as PGError {
            throw PostgresStore.migrationError(e, target: plan.displayTarget)
        }
    }

    private static func openPostgresChecked(plan: Plan, options: MigratorOptions, wrappingFeed: (ChangeFeed) -> ChangeFeed,
                                            schema givenSchema: TargetSchema?) throws -> Migrator {
        let source = try Connection(path: plan.source, mode: .readWrite)
        let sourceID = try Capture.storedSourceID(source) ?? LogReader.existingSourceID(plan.log) ?? SourceID.random()
        let store = try PostgresStore(plan: plan, source: source)
        // A target a rollback left behind starts over (fresh copy).
        try PostgresRollback.clearForNewMigration(plan: plan, pgs: store)
        let mappings = try store.resolveMappings(plan)
        for m in mappings {
            for (k, collation) in zip(m.sourceKey, m.keyCollations) where collation.uppercased() != "BINARY" {
                throw MigrationError(.badPlan, "key column \(m.source.name).\(k) compares with COLLATE \(collation), but PostgreSQL compares keys exactly (collation \"C\"): two source keys SQLite finds equal would be two rows; migrate a BINARY key, or give the table a new key")
            }
        }
        if let state = try store.loadState() {
            try Migrator.checkResumable(state, plan: plan, mappings: mappings, sourceID: sourceID.rawValue)
        } else {
            let schema = try givenSchema ?? TargetSchema.resolve(plan: plan, mappings: mappings, source: source, sameFile: false)
            var report = try Preflight.run(plan: plan, mappings: mappings, schema: schema, source: source)
            let types = try PostgresPreflight.run(plan: plan, mappings: mappings, schema: schema, source: source, server: store.pg)
            report.violations += types.report.violations
            report.unchecked += types.report.unchecked
            if !report.isClean { throw Migrator.preflightError(report) }
            let translated = try PostgresSchema.translate(plan: plan, mappings: mappings, schema: schema, pgSchema: plan.pgSchema,
                                                          observedClasses: types.observedClasses)
            // What the server refuses of the translated constraints and
            // indexes becomes an omission (reported), never a failed build.
            store.schemaPlan = try store.mapped { try PostgresSchema.validate(translated, on: store.pg) }
        }
        if FileSystemCheck.exists(plan.log) {
            let logSource = try LogReader(directory: plan.log).sourceID
            if let stored = try Capture.storedSourceID(source), stored != logSource {
                throw MigrationError(.foreignState, "the log \(plan.log) belongs to source \(logSource), but \(plan.source) is captured as \(stored); use the log made for this database")
            }
        }
        let feed = try ShipperFeed(sourcePath: plan.source, logPath: plan.log, sourceID: sourceID)
        return try Migrator(plan: plan, source: source, store: store, feed: wrappingFeed(feed), sourceID: sourceID.rawValue, options: options,
                            schema: nil, preflight: nil, preflightDone: true)
    }

    /// Releases the log appender (if this process shipped).
    public func close() throws {
        try (feed as? ShipperFeed)?.close()
    }
}

extension LogReader {
    static func existingSourceID(_ path: String) -> SourceID? {
        try? LogReader(directory: path).sourceID
    }
}

enum FileSystemCheck {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }
}

#if canImport(Glibc)
import Glibc
#endif
