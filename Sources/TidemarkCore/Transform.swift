import Synchronization
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// `tidemark transform DB TABLE …`: SQLite's missing online ALTER TABLE.
///
/// It writes the plan it runs beside the database
/// (`DB.tidemark/TABLE/plan.yml`, log in `DB.tidemark/TABLE/log`): a
/// same-file plan whose one table has `swap: true`, `create:` (the new
/// shape under the table's own name), `columns:` (each new column as an
/// expression over the old row) and `inverse:` (for rollback). Then it runs
/// the lifecycle every migration runs — capture, copy/replay into the
/// shadow table, verify, and the fenced cutover that swaps the shadow in.
///
/// Resuming: the plan records the options it was made from. Running the same
/// command again finds the plan and continues from the stored migration's
/// phase (after kill -9 too: every step is resumable on its own). Other
/// options while a transform of the table is under way are refused: the
/// shadow holds rows of the stored shape.
public enum Transform {
    /// Where a transform of `table` in `db` keeps its plan and log.
    public static func directory(db: String, table: String) -> String {
        absolute(db) + ".tidemark/" + table
    }

    /// Everything decided before anything is written.
    public struct Prepared: Sendable {
        public var db: String
        public var table: String
        public var planPath: String
        /// The plan file's text (new, or as stored when resuming).
        public var planText: String
        /// The derived shape; nil when resuming a stored plan.
        public var shape: TransformShape?
        /// The stored plan is resumed (same options).
        public var resuming: Bool
        /// The stored migration's phase (planned when none).
        public var phase: LifecyclePhase
        public var options: TransformOptions
    }

    /// How far to go and the cutover's bounds.
    public struct Settings: Sendable {
        /// Swap at the end (false: stop once verified).
        public var cutover = true
        public var maxLagMillis = 500
        public var maxPauseMillis = 2_000
        public var timeoutSeconds = 60.0
        /// Rows per copied chunk: each is one write transaction of the file.
        public var chunkRows = 1_000
        /// Longest a replay transaction holds the file's write lock (ms).
        public var replayBatchMillis = 40
        /// After each copy or replay step, pause this many times the step's
        /// own duration before the next (see ``copyAndVerify``).
        public var yieldRatio = 1.0
        public init() {}
    }

    /// What a running transform reports.
    public enum Event: Sendable {
        case copy(MigrationProgress)
        case verify(table: String, rows: Int)
        /// A step starts: "copying", "verifying", "swapping".
        case step(String)
    }

    public struct Report: Sendable {
        public var planPath: String
        public var phase: LifecyclePhase
        public var rowsCopied = 0
        public var changesReplayed = 0
        public var verifiedRows = 0
        public var cutover: CutoverReport?
        public var alreadyDone = false
        public var seconds = 0.0
        /// Constraints of the old definition the new one does not keep.
        public var notes: [String] = []
        /// Indexes, triggers and views the new table does not get, with why
        /// (the migration's "not carried" list).
        public var notCarried: [String] = []
    }

    // MARK: Deciding

    /// Reads the table, the options and any stored transform of the table;
    /// derives the new shape (or takes the stored one to resume) and checks
    /// it: unknown names, contradictions, lossy type changes. Writes nothing
    /// (a cutover journal a crash left is settled, as `status` does).
    public static func prepare(db: String, table: String, options: TransformOptions) throws -> Prepared {
        guard FileSystemCheck.exists(db) else { throw transformError("database \(db) does not exist; check the path") }
        let source = try Connection(path: db, mode: .readOnly)
        defer { try? source.close() }
        let name = try Schema.table(named: table, in: source)?.name ?? table
        let dir = directory(db: db, table: name)
        let planPath = dir + "/plan.yml"
        if FileSystemCheck.exists(planPath) {
            let text: String
            do { text = try readTextFile(planPath) } catch {
                throw transformError("cannot read \(planPath): \(error); remove it if no transform of \(name) is under way")
            }
            let stored = recordedOptions(text)
            let plan = try Plan.parse(text, relativeTo: dir, name: planPath)
            let phase = try MigrationStatus.read(plan: plan).lifecycle(planArgument: "--plan \(planPath)").phase
            let inProgress = ![.planned, .finished, .rolledBack].contains(phase)
            if stored == options.recorded {
                // Same command: resume from the stored phase (finished: done).
                return Prepared(db: db, table: name, planPath: planPath, planText: text, shape: nil, resuming: true, phase: phase, options: options)
            }
            if inProgress {
                let what = phase == .cutOver
                    ? "is cut over; keep it with `tidemark finish --plan \(planPath)` (or undo it with `tidemark rollback --plan \(planPath)`)"
                    : "is \(phase.rawValue); run that command again to finish it, or abandon it with `tidemark rollback --plan \(planPath)`"
                throw transformError("a transform of \(name) with other options (\(storedCommandLine(text) ?? "see \(planPath)")) \(what), then run this one")
            }
        }
        // One migration per file at a time (its state lives in the file).
        if let state = try StateTables.load(source), !state.tables.contains(where: { $0.sourceTable.lowercased() == name.lowercased() }) {
            let other = state.tables.map(\.sourceTable).joined(separator: ", ")
            let otherPlan = state.tables.count == 1 ? directory(db: db, table: state.tables[0].sourceTable) + "/plan.yml" : "its plan"
            throw transformError("\(db) already holds a migration of \(other) (\(state.cutover?.kind == .done ? "cut over" : "under way")); one migration per file at a time — finish it (`tidemark finish --plan \(otherPlan)`) or roll it back (`tidemark rollback --plan \(otherPlan)`), then transform \(name)")
        }
        // A finished migration of this file leaves its switch record, which
        // a new migration's cutover would take for its own (it would report
        // "already cut over" without swapping): refused until the lifecycle
        // tells the two apart.
        if try SwitchRecord.read(source) != nil, try StateTables.load(source) == nil {
            throw transformError("\(db) holds the switch record of an earlier, finished migration (table _tidemark_cutover), which a new transform's cutover would mistake for its own; a second online migration of this file after `finish` is not supported yet")
        }
        let shape = try TransformShape.derive(table: name, options: options, db: source)
        guard shape.changes else {
            throw transformError("nothing to change: \(name) already has this shape")
        }
        try checkLossy(shape, options: options, db: source)
        let text = planText(db: absolute(db), shape: shape, options: options)
        return Prepared(db: db, table: name, planPath: planPath, planText: text, shape: shape, resuming: false, phase: .planned, options: options)
    }

    /// Refuses a type change whose values do not all convert back unchanged
    /// (the old affinity applied to the new value gives the old value),
    /// unless `--allow-lossy` names the column. Lists the first keys.
    static func checkLossy(_ shape: TransformShape, options: TransformOptions, db: Connection) throws {
        let q = quoteIdentifier
        guard let info = try Schema.table(named: shape.table, in: db) else { return }
        let key = info.primaryKey.map(q).joined(separator: ", ")
        for c in shape.converted {
            let allowed = options.allowLossy.contains { $0.lowercased() == c.old.lowercased() || $0.lowercased() == c.new.lowercased() }
            if allowed { continue }
            let forward = TransformShape.affinityExpression(q(c.old), to: c.newAffinity)
            let back = TransformShape.affinityExpression("(\(forward))", to: c.oldAffinity)
            let x = q(c.old)
            // Same storage class and equal (BINARY for text); NULL stays NULL.
            let lossy = "NOT (typeof(\(back)) = typeof(\(x)) AND (\(x) IS NULL OR (\(back)) = \(x) COLLATE BINARY))"
            let count = try db.prepare("SELECT count(*) FROM \(q(info.name)) WHERE \(lossy)")
            _ = try count.step()
            let n = Int(count.columnInt64(0))
            guard n > 0 else { continue }
            let first = try db.prepare("SELECT \(key), \(x) FROM \(q(info.name)) WHERE \(lossy) ORDER BY \(key) LIMIT 5")
            let rows = try first.rows { r in
                let k = (0..<info.primaryKey.count).map { "\(r.columnValue(Int32($0)))" }
                return (k.count == 1 ? k[0] : "(" + k.joined(separator: ", ") + ")") + " (\(r.columnValue(Int32(info.primaryKey.count))))"
            }
            let typed = options.types.first { $0.column.lowercased() == c.old.lowercased() || $0.column.lowercased() == c.new.lowercased() }?.value.uppercased() ?? c.newAffinity
            throw MigrationError(.preflight, "--type \(c.old) \(typed) would change \(n) value\(n == 1 ? "" : "s") for good (they do not convert back): \(info.primaryKey.joined(separator: ", ")) \(list(rows, max: 5) + (n > rows.count ? " and \(n - rows.count) more" : "")); nothing was changed — fix those rows, or pass --allow-lossy \(c.old) to accept")
        }
    }

    // MARK: The plan file

    /// The plan text: JSON-quoted scalars (valid YAML), the options on a
    /// comment line so that a later run can tell same from different.
    static func planText(db: String, shape: TransformShape, options: TransformOptions) -> String {
        let j = yamlQuoted
        var lines = [
            "# Written by `tidemark transform`; run the same command again to resume it.",
            "# command: " + TransformOptions.oneLine("tidemark transform \(shellQuoted(db)) \(shellQuoted(shape.table)) \(options.commandLine)"),
            "# options: \(options.recorded)",
            "source: \(j(db))",
            "target: \(j(db))",
            "log: log",
            "tables:",
            "  \(j(shape.table)):",
            "    swap: true",
            "    create: \(j(shape.createSQL))",
            "    columns:",
        ]
        for c in shape.columns { lines.append("      \(j(c.name)): \(j(c.expression))") }
        if !shape.inverse.isEmpty {
            lines.append("    inverse:")
            for c in shape.inverse { lines.append("      \(j(c.name)): \(j(c.expression))") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A YAML double-quoted scalar: `"`, `\\` and control characters
    /// escaped (`\\n`, `\\t`, `\\uXXXX`), everything else as it is.
    static func yamlQuoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F || u.value == 0x85 || u.value == 0x2028 || u.value == 0x2029 || u.value == 0xFEFF:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    static func recordedOptions(_ planText: String) -> String? {
        planText.split(separator: "\n").first { $0.hasPrefix("# options: ") }.map { String($0.dropFirst("# options: ".count)) }
    }

    static func storedCommandLine(_ planText: String) -> String? {
        planText.split(separator: "\n").first { $0.hasPrefix("# command: ") }.map { String($0.dropFirst("# command: ".count)) }
    }

    static func shellQuoted(_ s: String) -> String {
        let plain = !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=,".contains($0) }
        return plain ? s : "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }

    /// Writes `text` to `path` atomically (temporary file, fsync, rename).
    static func writePlan(_ text: String, to path: String) throws {
        let dir = String(path[..<path.lastIndex(of: "/")!])
        try makeDirectories(dir)
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw transformError("cannot write \(tmp): \(String(cString: strerror(errno))); check the directory's permissions") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw transformError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func makeDirectories(_ dir: String) throws {
        var path = ""
        for part in dir.split(separator: "/", omittingEmptySubsequences: false) {
            path += (path.isEmpty && dir.hasPrefix("/") && part.isEmpty) ? "/" : (path.hasSuffix("/") || path.isEmpty ? "" : "/") + part
            if part.isEmpty { continue }
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                throw transformError("cannot create \(path): \(String(cString: strerror(errno))); check the permissions beside the database")
            }
        }
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return Plan.canonical(path) }
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return path }
        return Plan.canonical(String(cString: buf) + "/" + path)
    }

    // MARK: Running

    /// Writes the plan (first run) and runs the lifecycle from where the
    /// stored migration stands: copy and replay until caught up, verify
    /// while replay keeps following, then the cutover that swaps the new
    /// table in. SIGINT/SIGTERM stop at a safe point (``InterruptedError``).
    public static func run(_ p: Prepared, settings: Settings = Settings(),
                           progress: @escaping @Sendable (Event) -> Void = { _ in }) throws -> Report {
        let start = Clock.monotonicNanos()
        var report = Report(planPath: p.planPath, phase: p.phase, notes: p.shape?.notes ?? [])
        if !p.resuming { try writePlan(p.planText, to: p.planPath) }
        if p.phase == .finished {
            report.alreadyDone = true
            report.seconds = Double(Clock.monotonicNanos() - start) / 1e9
            return report
        }
        var plan = try Plan.load(path: p.planPath)
        plan.chunkRows = settings.chunkRows
        func finish() -> Report {
            report.seconds = Double(Clock.monotonicNanos() - start) / 1e9
            return report
        }
        switch p.phase {
        case .cutOver, .finished:
            report.alreadyDone = true
            return finish()
        case .rollbackInterrupted:
            throw transformError("a rollback of this transform stopped half-way; finish it with `tidemark rollback --plan \(p.planPath)`, then run transform again")
        case .cutoverInterrupted:
            break
        default:
            try copyAndVerify(plan, p, settings: settings, report: &report, progress: progress)
        }
        report.phase = .verified
        guard settings.cutover else { return finish() }
        progress(.step("swapping"))
        try Rollback.resolveBeforeCutover(plan: plan)
        try Lifecycle.checkCutover(plan: plan, skipVerify: false)
        let migrator = try Migrator.open(plan: plan, options: MigratorOptions(follow: true))
        defer { try? migrator.close() }
        var o = CutoverOptions()
        o.maxLagMillis = settings.maxLagMillis
        o.maxPauseMillis = settings.maxPauseMillis
        o.timeoutSeconds = settings.timeoutSeconds
        let r = try migrator.cutover(o)
        report.cutover = r
        report.alreadyDone = r.alreadyDone
        report.phase = .cutOver
        return finish()
    }

    /// Copy and replay until caught up, then verify while replay follows
    /// on another thread (verify tells keys changed under it from real
    /// differences by the log, so the log must keep up meanwhile).
    static func copyAndVerify(_ plan: Plan, _ p: Prepared, settings: Settings, report: inout Report,
                              progress: @escaping @Sendable (Event) -> Void) throws {
        let migrator: Migrator
        // One file: every copy chunk, replay batch and index build is a write
        // transaction the application's writers wait behind. So indexes are
        // maintained row by row during the copy (an index built after it
        // would hold the lock for a whole pass over the table), and replay
        // commits at least every `replayBatchMillis`: the longest wait is a
        // chunk's or a batch's, never the table's.
        var options = MigratorOptions(follow: true)
        options.indexesDuringCopy = true
        options.replayBatchMillis = settings.replayBatchMillis
        do {
            migrator = try Migrator.open(plan: plan, options: options)
        } catch let e as MigrationError where e.code == .preflight && !p.resuming {
            // Nothing was written but the plan file: take it away too.
            unlink(p.planPath)
            rmdir(String(p.planPath[..<p.planPath.lastIndex(of: "/")!]))
            var refusal = MigrationError(.preflight, "transform \(p.table): " + e.message.replacing(
                "\(p.table) -> \(TablePlan.shadowName(of: p.table))", with: "\(p.table) (new shape)").replacing(
                "nothing was written — fix those rows in the source or change the plan, then run migrate again",
                with: "nothing was changed — fix those rows, or change the options, then run transform again"))
            refusal.violations = e.violations
            throw refusal
        }
        defer { try? migrator.close() }
        report.notCarried = migrator.notCarried.map { "\($0.kind) \($0.name) on \($0.table): \($0.reason)" }
        progress(.step("copying"))
        let caughtUp = Atomic<Bool>(false)
        // The follower's progress calls and this thread's are serialized by
        // one lock that also holds `quiet`: once this thread has set it, no
        // follower call is running or can start, so `progress` (which draws
        // on the terminal and is not thread-safe) never runs on two threads.
        let quiet = Mutex<Bool>(false)
        let done = Atomic<Bool>(false)
        let failure = Mutex<(any Error)?>(nil)
        let summary = Mutex<MigrationSummary?>(nil)
        nonisolated(unsafe) let follower = migrator
        let yieldRatio = settings.yieldRatio
        spawnThread {
            defer { done.store(true, ordering: .sequentiallyConsistent) }
            do {
                // Fairness for the application: its writers wait for the
                // file's write lock in SQLite's busy handler, which only polls
                // (after 1, 2, 5, 10, … up to 100 ms between tries) — it does
                // not queue. Steps committed back to back leave no gap for a
                // poll to land in, and a writer can starve for seconds. So
                // after each step (this callback runs after its commit,
                // outside any transaction) the migrator pauses `yieldRatio`
                // times as long as the step took: the lock is free at least
                // that share of the time, and a waiting writer's next poll
                // almost surely finds it free.
                var stepStart = Clock.monotonicNanos()
                let s = try follower.run { m in
                    if m.caughtUp { caughtUp.store(true, ordering: .sequentiallyConsistent) }
                    quiet.withLock { q in if !q { progress(.copy(m)) } }
                    let stepMillis = Double(Clock.monotonicNanos() - stepStart) / 1e6
                    if yieldRatio > 0 { Clock.sleep(milliseconds: max(1, Int((stepMillis * yieldRatio).rounded(.up)))) }
                    stepStart = Clock.monotonicNanos()
                }
                summary.withLock { $0 = s }
            } catch {
                failure.withLock { $0 = error }
            }
        }
        func stopFollower() {
            follower.stop()
            while !done.load(ordering: .sequentiallyConsistent) { Clock.sleep(milliseconds: 2) }
        }
        // Until caught up (or the follower stops: an error, a signal).
        while !caughtUp.load(ordering: .sequentiallyConsistent) && !done.load(ordering: .sequentiallyConsistent) {
            Clock.sleep(milliseconds: 10)
        }
        if let e = failure.withLock({ $0 }) { stopFollower(); throw e }
        if done.load(ordering: .sequentiallyConsistent) {
            try Interruption.check("copying \(p.table); run the same command again to resume")
            throw transformError("the copy of \(p.table) stopped before it caught up; run the same command again to resume")
        }
        quiet.withLock { $0 = true }
        progress(.step("verifying"))
        let verified: Verifier.Report
        do {
            var vo = Verifier.Options()
            vo.chunkRows = settings.chunkRows
            verified = try Verifier(plan: plan, options: vo).run { table, rows in progress(.verify(table: table, rows: rows)) }
        } catch {
            stopFollower()
            throw error
        }
        stopFollower()
        if let e = failure.withLock({ $0 }) { throw e }
        if let s = summary.withLock({ $0 }) {
            report.rowsCopied = s.rowsCopied
            report.changesReplayed = s.changesReplayed
        }
        report.verifiedRows = verified.rows
        guard verified.isEqual else {
            let t = verified.tables.first { !$0.isEqual }
            throw MigrationError(.notVerified, "verify found the rebuilt \(p.table) different from the old one (\(t.map { "\($0.missingCount) missing, \($0.extraCount) extra, \($0.differentCount) different, \($0.foreignKeyCount) foreign key, \($0.unsettled.count) unsettled" } ?? "?")); nothing was swapped — see `tidemark verify --plan \(p.planPath)`, then run transform again or roll it back with `tidemark rollback --plan \(p.planPath)`")
        }
    }
}
