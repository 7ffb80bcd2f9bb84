import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// A database as it was at an earlier point of its change log
/// (`tidemark log as-of`).
///
/// The past is reached by rewinding the present, never by replaying from
/// nothing:
///
/// 1. The live database (the source before cutover, the target after) is
///    copied with SQLite's online backup API (``TidemarkSQLite/Connection/backup(to:)``):
///    one consistent snapshot, taken while writers write.
/// 2. The copy's own capture high-water mark is the LSN it is at: the
///    highest `seq` its outbox ever assigned (the same number the migrator
///    uses, `SQLiteStore.captureHighWater(on:schema:)`).
/// 3. Every change after the requested point up to that LSN is undone, in
///    reverse LSN order, from its before image, in one transaction on the
///    copy: an insert is deleted by key; an update gets its before image back
///    (a key change deletes the new key and puts the old row back); a delete
///    is inserted again. Each undo must touch exactly one row, or the copy
///    and the log disagree and the rewind stops with an error.
/// 4. Tidemark's own objects (`_tidemark_*` tables and their triggers) are
///    dropped. Application triggers are dropped before undoing (undoing
///    must not fire them) and created again afterwards. Tables that capture
///    does not record cannot be rewound and are left out.
///
/// Where the changes come from: those already shipped are read from the log;
/// those still in the copy's outbox (captured but not yet shipped when the
/// copy was taken) are read from the copy's outbox itself, so the rewind
/// never waits for the shipper. Every change the copy's outbox no longer
/// holds was shipped before the copy was taken, so the log (read after the
/// copy) must reach the outbox's first `seq` − 1; when it does not, the
/// log is not this database's (or lost its end) and the rewind refuses.
///
/// What can be reached: the copy's LSN and every point back to the earliest
/// one whose later changes are all available — the later of where this
/// capture installation began (its `first_seq`: writes before capture was
/// installed were never recorded) and the first change still in the log or
/// outbox, minus one (retention removes the oldest segments). A point
/// outside that range is refused with one line naming the range.
///
/// Limits: the result has the copy's schema (a table whose columns changed
/// after the point is rewound only while its images fit the table); an
/// update of a column left out of `UPDATE OF` capture (plans that capture
/// only some columns' updates) is not in the log and so is not undone —
/// ``AsOfReport/partialUpdateCapture`` names such tables. `sqlite_sequence`
/// counters of the application's AUTOINCREMENT tables keep the copy's values
/// (the log does not record them). Resolving a time reads every reachable
/// change's commit time from the start of the reachable range.
public enum AsOf {
    /// Where to rewind to: an LSN, or a commit time (the last LSN whose
    /// commit time is at or before it).
    public enum Point: Sendable, Hashable, CustomStringConvertible {
        case lsn(LSN)
        case time(Timestamp)

        /// A whole number is an LSN; anything else must be an RFC 3339 time
        /// in UTC (`2026-11-25T11:00:00Z`, fraction optional).
        public init(parsing text: String) throws(AsOfError) {
            if let n = UInt64(text) {
                self = .lsn(LSN(n))
                return
            }
            // A time relative to now, as the log readers take it (-15m, -2h, -1d, -30s).
            if text.hasPrefix("-"), let unit = text.last, "smhd".contains(unit),
               case .time(let t)? = try? LogPoint.parse(text, nowMicros: Clock.wallMicros()) {
                self = .time(t)
                return
            }
            let digits = text.hasPrefix("-") || text.hasPrefix("+") ? text.dropFirst() : Substring(text)
            if !digits.isEmpty && digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
                throw AsOfError(.badPoint, "--at \(text) is not an LSN: an LSN is a whole number from 0 to \(UInt64.max)")
            }
            do {
                self = .time(try Timestamp(parsing: text))
            } catch {
                throw AsOfError(.badPoint, "--at \(text) is neither an LSN (a whole number) nor an RFC 3339 time: \(error.message)")
            }
        }

        public var description: String {
            switch self {
            case .lsn(let l): "LSN \(l)"
            case .time(let t): "\(t)"
            }
        }
    }

    /// Rewinds a copy of `db` to `point` and writes it to `output`, a new
    /// SQLite database of the captured tables without Tidemark's objects.
    ///
    /// The database is built under `output` + `.partial` and renamed into
    /// place only when complete: a failed rewind leaves no `output`.
    ///
    /// - Throws: ``AsOfError`` (`outputExists`, `beforeLogStart`, `future`,
    ///   `notCaptured`, `logMismatch`, `logGap`, `doesNotMatch`, …), or what
    ///   SQLite or the log reader said.
    @discardableResult
    public static func rewind(db: String, log: String, at point: Point, output: String) throws -> AsOfReport {
        if access(output, F_OK) == 0 {
            throw AsOfError(.outputExists, "\(output) already exists; as-of writes a new database: remove it or choose another --output")
        }
        let partial = output + ".partial"
        removeDatabaseFiles(partial)
        do {
            let rewound = try rewindCopy(db: db, log: log, at: point, copyPath: partial, onlyTable: nil)
            let copy = rewound.copy
            // One self-contained file: no -wal beside it.
            try copy.setJournalMode(.delete)
            try copy.close()
            if rename(partial, output) != 0 {
                let why = String(cString: strerror(errno))
                throw AsOfError(.io, "cannot move the rewound database to \(output): \(why)")
            }
            return rewound.report
        } catch {
            removeDatabaseFiles(partial)
            throw error
        }
    }

    /// The rows of one captured table as they were at `point` (only the row
    /// whose key matches `key`, when given), ordered by key.
    ///
    /// The rewind runs on a scratch copy in `$TMPDIR` (or /tmp), which is
    /// removed afterwards, and undoes only the changes of `table`.
    ///
    /// - Parameter key: Key columns and values, as `log history --key` takes
    ///   them (an unnamed field stands for a single-column key; text matches
    ///   a number of the same literal form). Its columns must be exactly the
    ///   table's key columns.
    /// - Throws: ``AsOfError`` `unknownTable` for a table capture does not
    ///   record, `badKey` for a key of the wrong shape, and what
    ///   ``rewind(db:log:at:output:)`` throws.
    public static func rows(db: String, log: String, at point: Point, table: String, key: [Field]? = nil) throws -> AsOfRows {
        let scratch = scratchPath()
        defer { removeDatabaseFiles(scratch) }
        let rewound = try rewindCopy(db: db, log: log, at: point, copyPath: scratch, onlyTable: table, key: key)
        let copy = rewound.copy
        defer { try? copy.close() }
        guard let shape = rewound.shape else {
            throw AsOfError(.unknownTable, "table '\(table)' is not captured in \(db)")
        }
        let order = shape.keyColumns.map(quoteIdentifier).joined(separator: ", ")
        let statement = try copy.prepare(
            "SELECT \(shape.columns.map(quoteIdentifier).joined(separator: ", ")) FROM main.\(quoteIdentifier(shape.name)) ORDER BY \(order)")
        var rows: [[Field]] = []
        try statement.forEachRow { row in
            let fields = shape.columns.enumerated().map { Field($0.element, row.columnValue(Int32($0.offset))) }
            if let key {
                let rowKey = shape.keyColumns.compactMap { name in fields.first { $0.name == name } }
                let probe = ChangeRecord(lsn: .zero, timestampMicros: 0, table: shape.name, operation: .insert,
                                         key: rowKey, before: nil, after: fields)
                guard probe.matches(key: key) else { return }
            }
            rows.append(fields)
        }
        return AsOfRows(report: rewound.report, table: shape.name, columns: shape.columns, keyColumns: shape.keyColumns, rows: rows)
    }

    // MARK: The rewind

    struct Rewound {
        let copy: Connection
        var report: AsOfReport
        /// The shape of `onlyTable`, when one was asked for.
        var shape: CapturedTable?
    }

    /// Copies `db` into `copyPath` and rewinds the copy to `point`; returns
    /// the copy, open. With `onlyTable`, only that table's changes are
    /// undone (the other tables stay as copied).
    static func rewindCopy(db: String, log: String, at point: Point, copyPath: String, onlyTable: String?, key: [Field]? = nil) throws -> Rewound {
        guard access(db, F_OK) == 0 else {
            throw AsOfError(.missingDatabase, "\(db) does not exist; --db names the live database whose log --log is")
        }
        let reader = try LogReader(directory: log)
        let copy: Connection
        do {
            let source = try Connection(path: db, mode: .readOnly)
            defer { try? source.close() }
            copy = try source.backup(to: copyPath)
        }
        let copiedAtMicros = Clock.wallMicros()
        do {
            return try rewind(copy: copy, dbPath: db, reader: reader, point: point, copiedAtMicros: copiedAtMicros,
                              onlyTable: onlyTable, key: key)
        } catch {
            try? copy.close()
            throw error
        }
    }

    private static func rewind(copy: Connection, dbPath db: String, reader: LogReader, point requested: Point,
                               copiedAtMicros: Int64, onlyTable: String?, key: [Field]?) throws -> Rewound {
        let logPath = reader.directory.path
        guard try Capture.isInstalled(copy), let installation = try Capture.installation(copy) else {
            throw AsOfError(.notCaptured, "capture is not installed in \(db): as-of rewinds the database with the changes capture records; run it on the live database capture ships into \(logPath)")
        }
        if let stored = try Capture.storedSourceID(copy), stored != reader.sourceID {
            throw AsOfError(.logMismatch, "\(db) is source \(stored) but the log \(logPath) belongs to source \(reader.sourceID); give the log this database ships into")
        }
        let shapes = try Capture.shapes(copy)
        var current: [String: CapturedTable] = [:]
        for s in shapes { current[s.name] = s }

        // The one table asked for, checked before any work.
        var wanted: CapturedTable?
        if let onlyTable {
            guard let shape = current.values.first(where: { $0.name.lowercased() == onlyTable.lowercased() }) else {
                let names = current.keys.sorted().joined(separator: ", ")
                throw AsOfError(.unknownTable, "table '\(onlyTable)' is not captured in \(db) (captured: \(names.isEmpty ? "none" : names))")
            }
            if let key { try checkKey(key, of: shape) }
            wanted = shape
        }
        let tableFilter: Set<String>? = wanted.map { w in Set(shapes.filter { $0.name.lowercased() == w.name.lowercased() }.map(\.name)) }

        let copyLSN = try SQLiteStore.captureHighWater(on: copy, schema: "main")
        let firstSeq = LSN(UInt64(max(0, installation.firstSeq)))
        let outboxFirst: LSN? = try {
            let s = try copy.prepare("SELECT min(seq) FROM main._tidemark_outbox")
            guard try s.step(), !s.columnIsNull(0) else { return nil }
            return LSN(UInt64(max(0, s.columnInt64(0))))
        }()

        // The first change still in the log (retention removes old segments).
        let logFirst: LSN? = try reader.cursor().next()?.lsn
        let lowestAvailable = [logFirst, outboxFirst].compactMap { $0 }.min()
        let earliest = max(firstSeq, lowestAvailable.map(previous) ?? copyLSN)
        // Everything below the outbox's first row was shipped before the
        // copy was taken, so the log must reach it.
        let logMustReach = min(outboxFirst.map(previous) ?? copyLSN, copyLSN)
        let logHead = try reader.headLSN()
        func earliestReason() -> String {
            if earliest == firstSeq && (lowestAvailable.map { $0 <= firstSeq.next } ?? true) {
                let when = installation.installedAtMicros.map { " at \(Timestamp(microsSinceEpoch: $0))" } ?? ""
                return "capture was installed in \(db) at LSN \(firstSeq)\(when); nothing before it was recorded"
            }
            return "the log \(logPath) starts at LSN \(logFirst.map(String.init(describing:)) ?? "?") (older segments were removed by retention)"
        }

        // Resolve the point.
        var point: LSN
        var pointMicros: Int64?
        switch requested {
        case .lsn(let lsn):
            if lsn > copyLSN {
                throw AsOfError(.future, "LSN \(lsn) is in the future: \(db) is at LSN \(copyLSN); as-of reaches LSN \(earliest) to \(copyLSN)")
            }
            if lsn < earliest {
                throw AsOfError(.beforeLogStart, "LSN \(lsn) is before the earliest reachable point, LSN \(earliest): \(earliestReason())")
            }
            point = lsn
        case .time(let time):
            let t = time.microsSinceEpoch
            if t > copiedAtMicros {
                throw AsOfError(.future, "\(time) is in the future: \(db) was copied at \(Timestamp(microsSinceEpoch: copiedAtMicros)) (LSN \(copyLSN))")
            }
            // The last LSN whose commit time is at or before `t`, among the
            // reachable changes: in the log by frame seek (only the frames
            // around `t` are decoded), then in the outbox past the log's end
            // (later LSNs, so any there wins).
            var found: (LSN, Int64)?
            var firstAvailable: ChangeRecord?
            let logEnd = min(logHead, copyLSN)
            if logEnd > earliest, let r = try reader.lastRecord(atOrBefore: t, in: earliest.next...logEnd) {
                found = (r.lsn, r.timestampMicros)
            }
            try forEachChange(reader: reader, logHead: logHead, copy: copy, after: max(earliest, logEnd), through: copyLSN, tables: nil) { r in
                if firstAvailable == nil { firstAvailable = r }
                if r.timestampMicros <= t, found.map({ r.lsn > $0.0 }) ?? true { found = (r.lsn, r.timestampMicros) }
            }
            if found == nil, logEnd > earliest {
                // Only for the error below: the first reachable change.
                let floor = try Retention.deletedBelow(reader.directory)
                if let r = try reader.cursor(from: max(earliest.next, floor)).next(), r.lsn <= logEnd { firstAvailable = r }
            }
            if let found {
                (point, pointMicros) = (found.0, found.1)
            } else if earliest == firstSeq, let installedAt = installation.installedAtMicros, installedAt <= t {
                point = firstSeq
            } else {
                let when = firstAvailable.map { " (the next change, LSN \($0.lsn), was at \(Timestamp(microsSinceEpoch: $0.timestampMicros)))" } ?? ""
                throw AsOfError(.beforeLogStart, "\(time) is before the earliest reachable point, LSN \(earliest)\(when): \(earliestReason())")
            }
        }

        if point < logMustReach && logHead < logMustReach {
            throw AsOfError(.logMismatch, "the log \(logPath) ends at LSN \(logHead) but \(db) had already shipped its changes up to LSN \(logMustReach): this is not its log, or the log lost its end")
        }
        let gaps = try reader.directory.meta().gaps.filter { $0.upperBound > point && $0.lowerBound <= logMustReach }
        if let gap = gaps.first {
            throw AsOfError(.logGap, "the changes at LSN \(gap.lowerBound) to \(gap.upperBound) were lost to damage (`log repair` quarantined them), so \(db) cannot be rewound to LSN \(point); the latest reachable point before the copy's LSN \(copyLSN) is LSN \(gaps.map(\.upperBound).max() ?? gap.upperBound)")
        }

        // The changes to undo: (point, copyLSN], from the log and the outbox.
        let changes = UndoSpool(copy)
        var fromOutbox = 0
        try forEachChange(reader: reader, logHead: logHead, copy: copy, after: previous(point),
                          through: copyLSN, tables: tableFilter, outboxCount: { fromOutbox = $0 }) { r in
            if r.lsn == point { pointMicros = r.timestampMicros; return }
            if r.lsn > point { try changes.append(r) }
        }

        let partial = current.values.filter { $0.updateColumns != nil }.map(\.name).sorted()
        let captured = current.keys.sorted()
        var report = AsOfReport(lsn: point, micros: pointMicros, copyLSN: copyLSN, earliest: earliest, undone: changes.count,
                                undoneFromOutbox: fromOutbox, tables: captured, leftOut: [], partialUpdateCapture: partial)
        try changes.close()
        report.leftOut = try undo(changes, in: copy, captured: Set(captured.map { $0.lowercased() }))
        return Rewound(copy: copy, report: report, shape: wanted)
    }

    /// Calls `body` with every change in (`after`, `through`], in LSN order:
    /// from the log while it has them, then from the copy's outbox.
    private static func forEachChange(reader: LogReader, logHead: LSN, copy: Connection, after: LSN, through: LSN,
                                      tables: Set<String>?, outboxCount: (Int) -> Void = { _ in },
                                      _ body: (ChangeRecord) throws -> Void) throws {
        var last = after
        if logHead > after {
            let floor = try Retention.deletedBelow(reader.directory)
            let cursor = try reader.cursor(from: max(after.next, floor), tables: tables)
            while let r = try cursor.next() {
                if r.lsn > through { break }
                try body(r)
                last = r.lsn
            }
            // A record of another table may have been the last one read.
            last = max(last, min(logHead, through))
        }
        guard last < through else { outboxCount(0); return }
        let decoder = try OutboxDecoder(connection: copy)
        var count = 0
        while true {
            let batch = try decoder.read(from: copy, after: last, limit: 10_000)
            guard !batch.isEmpty else { break }
            for r in batch {
                if let tables, !tables.contains(r.table) { continue }
                try body(r)
                count += 1
            }
            last = batch[batch.count - 1].lsn
        }
        outboxCount(count)
    }

    /// A key given on the command line must name exactly the key columns.
    static func checkKey(_ key: [Field], of shape: CapturedTable) throws(AsOfError) {
        let columns = shape.keyColumns
        let shown = columns.joined(separator: ", ")
        if key.count == 1 && key[0].name.isEmpty {
            guard columns.count == 1 else {
                let example = "{" + columns.map { "\"\($0)\":…" }.joined(separator: ",") + "}"
                throw AsOfError(.badKey, "table '\(shape.name)' has a composite key (\(shown)); give --key as a JSON object such as '\(example)'")
            }
            return
        }
        let names = key.map(\.name)
        let unknown = names.filter { n in !columns.contains(where: { $0 == n }) }
        guard unknown.isEmpty, Set(names).count == names.count, Set(names) == Set(columns) else {
            let what = unknown.isEmpty ? "names \(names.joined(separator: ", "))" : "names \(unknown.joined(separator: ", ")), not a key column"
            throw AsOfError(.badKey, "the key of table '\(shape.name)' is (\(shown)); --key \(what): give every key column once")
        }
    }

    /// Undoes `changes` (in LSN order) newest first in one transaction, then
    /// removes Tidemark's objects and the tables capture does not record.
    /// Returns the names of the tables left out.
    private static func undo(_ changes: UndoSpool, in copy: Connection, captured: Set<String>) throws -> [String] {
        // A cascade or a deferred check would change rows the log does not name.
        try copy.execute("PRAGMA foreign_keys = OFF")
        let triggers = try copy.prepare("SELECT name, tbl_name, sql FROM main.sqlite_schema WHERE type = 'trigger' AND sql IS NOT NULL ORDER BY rowid")
            .rows { ($0.columnText(0), $0.columnText(1), $0.columnText(2)) }
        return try copy.transaction(.immediate) {
            for (name, _, _) in triggers {
                try copy.execute("DROP TRIGGER main.\(quoteIdentifier(name))")
            }
            var columnsByTable: [String: Set<String>] = [:]
            try changes.forEachNewestFirst { change in
                let table = change.table
                let columns: Set<String>
                if let known = columnsByTable[table] {
                    columns = known
                } else {
                    guard let info = try Schema.table(named: table, in: copy) else {
                        throw AsOfError(.doesNotMatch, "the change at LSN \(change.lsn) is to table '\(table)', which the database no longer has; as-of cannot rewind past a dropped table")
                    }
                    columns = Set(info.columns.map { $0.name.lowercased() })
                    columnsByTable[table] = columns
                }
                try undoOne(change, columns: columns, in: copy)
            }
            // Tidemark's objects (their triggers went above).
            let ours = try copy.prepare("SELECT name FROM main.sqlite_schema WHERE type = 'table' AND substr(name, 1, 10) = '_tidemark_'")
                .rows { $0.columnText(0) }
            for name in ours { try copy.execute("DROP TABLE main.\(quoteIdentifier(name))") }
            try copy.execute("DELETE FROM main.sqlite_sequence WHERE substr(name, 1, 10) = '_tidemark_'")
            // Tables capture does not record are at the copy's time, not the
            // point's: they are not part of the result.
            var leftOut: [String] = []
            for table in try Schema.tables(in: copy) where !captured.contains(table.lowercased()) {
                try copy.execute("DROP TABLE main.\(quoteIdentifier(table))")
                leftOut.append(table)
            }
            // Application triggers back, on what is still there.
            for (name, table, sql) in triggers where !Schema.isInternal(name) {
                guard try Schema.objectType(named: table, in: copy) != nil else { continue }
                try copy.execute(sql)
            }
            return leftOut
        }
    }

    /// The changes an as-of undoes, newest first. The first few thousand
    /// stay in memory; past that they go to a temporary table of the copy's
    /// connection (a file, not memory), so memory stays flat however far
    /// back the point is. Records go through their exact JSON form (integers,
    /// reals bit for bit, text, blobs) and come back unchanged.
    final class UndoSpool {
        static let inMemory = 4_096
        private let copy: Connection
        private var memory: [ChangeRecord] = []
        private var spooled = false
        private var began = false
        private var insert: Statement?
        private(set) var count = 0

        init(_ copy: Connection) { self.copy = copy }

        func append(_ r: ChangeRecord) throws {
            count += 1
            if !spooled && memory.count < Self.inMemory {
                memory.append(r)
                return
            }
            if !spooled {
                try copy.execute("PRAGMA temp_store = FILE")
                try copy.execute("CREATE TEMP TABLE _tidemark_undo(lsn INTEGER PRIMARY KEY, record TEXT NOT NULL)")
                insert = try copy.prepare("INSERT INTO temp._tidemark_undo(lsn, record) VALUES (?1, ?2)")
                began = !copy.isInTransaction
                if began { try copy.execute("BEGIN") }
                spooled = true
                let held = memory
                memory = []
                for h in held { try write(h) }
            }
            try write(r)
        }

        private func write(_ r: ChangeRecord) throws {
            guard let insert else { return }
            insert.reset()
            try insert.bind([.integer(Int64(bitPattern: r.lsn.rawValue)), .text(r.jsonLine)])
            try insert.execute()
        }

        /// Calls `body` with every change, newest first.
        func forEachNewestFirst(_ body: (ChangeRecord) throws -> Void) throws {
            guard spooled else {
                for r in memory.reversed() { try body(r) }
                return
            }
            let read = try copy.prepare("SELECT record FROM temp._tidemark_undo ORDER BY lsn DESC")
            while try read.step() {
                let line = read.columnText(0)
                let draft = try ChangeRecord.parseJSONLine(line, lineNumber: 0)
                guard let lsn = draft.lsn, let micros = draft.timestampMicros else {
                    throw AsOfError(.doesNotMatch, "a spooled change lost its LSN or time: \(line.prefix(80))")
                }
                try body(try draft.record(lsnIfAbsent: lsn, timestampMicrosIfAbsent: micros))
            }
        }

        /// Ends the spool's transaction (the undo runs in its own).
        func close() throws {
            if began && copy.isInTransaction { try copy.execute("COMMIT") }
            began = false
        }
    }

    private static func undoOne(_ change: ChangeRecord, columns: Set<String>, in copy: Connection) throws {
        let table = "main." + quoteIdentifier(change.table)
        func mismatch(_ why: String) -> AsOfError {
            let key = change.key.map { "\($0.name)=\($0.value)" }.joined(separator: ", ")
            return AsOfError(.doesNotMatch, "cannot undo the \(change.operation) at LSN \(change.lsn) of \(change.table) (\(key)): \(why); the database and the log do not agree")
        }
        func checkColumns(_ image: [Field]) throws {
            if let missing = image.first(where: { !columns.contains($0.name.lowercased()) }) {
                throw AsOfError(.doesNotMatch, "the change at LSN \(change.lsn) of \(change.table) has column '\(missing.name)', which the table no longer has; as-of cannot rewind past a change of the table's columns")
            }
        }
        func whereKey(_ key: [Field], from index: Int) -> String {
            key.enumerated().map { "\(quoteIdentifier($0.element.name)) IS ?\(index + $0.offset)" }.joined(separator: " AND ")
        }
        func delete(_ key: [Field]) throws {
            let s = try copy.cachedStatement("DELETE FROM \(table) WHERE \(whereKey(key, from: 1))")
            try s.execute(key.map(\.value))
            if copy.changes != 1 { throw mismatch("the row is not in the database") }
        }
        func insert(_ image: [Field]) throws {
            try checkColumns(image)
            let s = try copy.cachedStatement(
                "INSERT INTO \(table)(\(image.map { quoteIdentifier($0.name) }.joined(separator: ", "))) VALUES (\(image.indices.map { "?\($0 + 1)" }.joined(separator: ", ")))")
            do {
                try s.execute(image.map(\.value))
            } catch let e as SQLiteError {
                throw mismatch("putting the row back failed: \(e.message)")
            }
        }
        switch change.operation {
        case .insert:
            try delete(change.key)
        case .delete:
            guard let before = change.before else { throw mismatch("the record has no before image") }
            try insert(before)
        case .update:
            guard let before = change.before else { throw mismatch("the record has no before image") }
            if change.isKeyChange {
                try delete(change.key)
                try insert(before)
            } else {
                try checkColumns(before)
                let sets = before.enumerated().map { "\(quoteIdentifier($0.element.name)) = ?\($0.offset + 1)" }.joined(separator: ", ")
                let s = try copy.cachedStatement("UPDATE \(table) SET \(sets) WHERE \(whereKey(change.key, from: before.count + 1))")
                do {
                    try s.execute(before.map(\.value) + change.key.map(\.value))
                } catch let e as SQLiteError {
                    throw mismatch("restoring the row failed: \(e.message)")
                }
                if copy.changes != 1 { throw mismatch("the row is not in the database") }
            }
        }
    }

    /// The LSN before `lsn` (zero stays zero).
    private static func previous(_ lsn: LSN) -> LSN { lsn == .zero ? .zero : LSN(lsn.rawValue - 1) }

    // MARK: Files

    private static func scratchPath() -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return "\(base)/tidemark-as-of-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).db"
    }

    private static func removeDatabaseFiles(_ path: String) {
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
    }
}

/// What a rewind did.
public struct AsOfReport: Sendable, Hashable {
    /// The LSN the database was rewound to.
    public var lsn: LSN
    /// The commit time of the change at ``lsn``, when the log or the outbox
    /// still holds it (nil at the start of capture).
    public var micros: Int64?
    /// The LSN the copy of the live database was at.
    public var copyLSN: LSN
    /// The earliest point that could have been reached.
    public var earliest: LSN
    /// Changes undone.
    public var undone: Int
    /// Of them, those read from the copy's outbox (not yet shipped).
    public var undoneFromOutbox: Int
    /// The captured tables (the tables of the result).
    public var tables: [String]
    /// User tables capture does not record, left out of the result.
    public var leftOut: [String]
    /// Captured tables whose updates are captured only for some columns:
    /// updates of the other columns are not undone.
    public var partialUpdateCapture: [String]
}

/// One table's rows at a point; see ``AsOf/rows(db:log:at:table:key:)``.
public struct AsOfRows: Sendable, Hashable {
    public var report: AsOfReport
    public var table: String
    public var columns: [String]
    public var keyColumns: [String]
    /// In key order; each row's fields in ``columns`` order.
    public var rows: [[Field]]
}

/// Why as-of refused or failed: one line saying what is wrong and what to do.
public struct AsOfError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        case badPoint = "bad-point"
        case beforeLogStart = "before-log-start"
        case future
        case missingDatabase = "missing-database"
        case notCaptured = "not-captured"
        case logMismatch = "log-mismatch"
        case logGap = "log-gap"
        case unknownTable = "unknown-table"
        case badKey = "bad-key"
        case doesNotMatch = "does-not-match"
        case outputExists = "output-exists"
        case io
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
