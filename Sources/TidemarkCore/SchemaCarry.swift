import TidemarkLog
import TidemarkSQLite

/// Carries the source's schema to the target through the plan (what
/// ``TargetSchema/resolve(plan:mappings:source:sameFile:)`` returns).
///
/// How, and why this way:
/// 1. Each planned source `CREATE TABLE` is cut into column definitions and
///    table constraints by ``CreateTableParts`` (a tokenizer, not text
///    search). What is kept is decided on the tokens' identifiers: an
///    identifier equal to a source column's name (case-insensitively) names
///    that column. A constraint naming a dropped column is an ``TargetSchema/Omission``.
/// 2. A CREATE TABLE under SOURCE names is assembled from the kept parts
///    (a computed column that replaces a same-named source column keeps that
///    name; other computed columns get a temporary unique one) and executed,
///    with the carried indexes, triggers and views, in a scratch in-memory
///    database (`foreign_keys = OFF`).
/// 3. SQLite itself then renames: columns (two phases through temporary
///    names, so swaps work), then tables (also two phases), with `ALTER
///    TABLE … RENAME COLUMN/TO`, which rewrites every CHECK, index, FK,
///    trigger and view — names inside string literals stay as they are.
///    Where a rename fails in a trigger or view, that object is dropped,
///    reported, and the rename retried.
/// 4. The rewritten SQL is read back from the scratch `sqlite_schema` and
///    checked once more by creating the whole result in a second scratch
///    database.
///
/// A table the plan defines itself (`create:`) takes the plan's CREATE TABLE
/// (renamed to `to:`) instead of the source's: the source's inline
/// constraints are then not carried (the plan's table replaces them, so
/// nothing is reported for them), while the source's separate indexes,
/// triggers and views still are, unless they name a column the plan's
/// table lacks (an omission).
enum SchemaCarry {
    struct SourceObject {
        var type: String
        var name: String
        var table: String
        var sql: String
    }

    /// One target column and where it comes from.
    struct CarriedColumn {
        enum Origin { case plain, replacing, new, generated }
        var origin: Origin
        /// Its name in the scratch table before the renames.
        var scratchName: String
        var target: String
        var mapped: TableMapping.MappedColumn?
        /// The source column definition it carries (plain, replacing, generated).
        var source: CreateTableParts.Column?
    }

    /// A planned copy table while it is being carried.
    struct Carried {
        var mapping: TableMapping
        var plan: TablePlan?
        var parts: CreateTableParts
        var columns: [CarriedColumn]
        /// Source column names (lowercased) that reach the target under some name.
        var kept: Set<String>
        /// Source column names (lowercased) the plan drops.
        var dropped: Set<String>
        var sourceLower: String { mapping.source.name.lowercased() }
    }

    static func resolve(plan: Plan, mappings: [TableMapping], source: Connection, sameFile: Bool) throws -> TargetSchema {
        var objects: [SourceObject] = []
        let list = try source.prepare("SELECT type, name, tbl_name, sql FROM main.sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid")
        while try list.step() {
            let o = SourceObject(type: list.columnText(0), name: list.columnText(1), table: list.columnText(2), sql: list.columnText(3))
            if Schema.isInternal(o.name) { continue }
            objects.append(o)
        }
        var omissions: [TargetSchema.Omission] = []
        func omit(_ kind: String, _ name: String, _ table: String, _ reason: String, blocks: Bool = false) {
            omissions.append(.init(kind: kind, name: name, table: table, reason: reason, blocksCutover: blocks))
        }

        // 1. What each planned table keeps.
        var carried: [Carried] = []
        for m in mappings where m.shape == .copy {
            guard let o = objects.first(where: { $0.type == "table" && $0.name.lowercased() == m.source.name.lowercased() }) else {
                throw MigrationError(.missingTable, "source table '\(m.source.name)' has no CREATE TABLE in the source schema")
            }
            let parts: CreateTableParts
            do { parts = try CreateTableParts.parse(o.sql) } catch {
                throw MigrationError(.badPlan, "cannot read the definition of source table '\(m.source.name)' (\(error)); report this with the table's CREATE TABLE")
            }
            let tablePlan = plan.tables.first { $0.source.lowercased() == m.source.name.lowercased() }
            // A plain copy keeps its source type: its values already have
            // that affinity, and another one would change some of them.
            // (A PostgreSQL target takes a `type:` on any column: the
            // preflight proves every value parses as that type.)
            if tablePlan?.create == nil, !plan.isPostgres, let c = m.columns.first(where: { $0.sourceColumn != nil && $0.type != nil }) {
                throw MigrationError(.badPlan, "tables.\(m.source.name).columns.\(c.target) copies column \(c.sourceColumn!) as is, so it keeps that column's type; type: is for computed columns (define the table with create: to change a type)")
            }
            carried.append(columnsOf(m, plan: tablePlan, parts: parts))
        }
        let carriedByName = Dictionary(carried.map { ($0.sourceLower, $0) }, uniquingKeysWith: { a, _ in a })
        let copySources = Set(carried.map(\.sourceLower))
        let sourceTables = Set(objects.filter { $0.type == "table" }.map { $0.name.lowercased() })
        let sourceViews = Set(objects.filter { $0.type == "view" }.map { $0.name.lowercased() })
        // Same file: the tables the plan does not move stay where they are,
        // beside the target; objects may keep reading them.
        // (A target table made beforehand, empty, is not one of them: the
        // carried definition is checked under that name.)
        let unmoved: Set<String> = sameFile
            ? sourceTables.subtracting(copySources).subtracting(carried.map { $0.mapping.targetTable.lowercased() }) : []

        // 2. Assemble each table under source names.
        var scratchSQL: [String: String] = [:]
        for c in carried {
            // A table the plan defines (create:) replaces the source's inline
            // constraints: what its stand-in leaves out is not reported.
            let fromPlan = c.plan?.create != nil
            scratchSQL[c.sourceLower] = assemble(c, carried: carriedByName, unmoved: unmoved, sourceTables: sourceTables,
                                                 omit: { if !fromPlan { omit($0, $1, $2, $3, blocks: $4) } })
        }

        // 3. Indexes, views and triggers that come along.
        var taken = Set(objects.map { $0.name.lowercased() })
        for c in carried { taken.insert(c.mapping.targetTable.lowercased()) }
        func freshName(_ name: String, _ c: Carried) -> String {
            guard sameFile else { return name }
            if c.plan?.swap == true { return swapIndexName(name, taken: &taken) }
            let src = c.mapping.source.name, dst = c.mapping.targetTable
            var base = name + "_" + dst
            // The source table's name inside the object's name (compared
            // without regard to case) becomes the target's.
            let chars = Array(name), pattern = Array(src.lowercased())
            if !pattern.isEmpty, chars.count >= pattern.count,
               let at = (0...(chars.count - pattern.count)).first(where: { i in
                   (0..<pattern.count).allSatisfy { String(chars[i + $0]).lowercased() == String(pattern[$0]) } }) {
                base = String(chars[..<at]) + dst + String(chars[(at + pattern.count)...])
            }
            var candidate = base
            var n = 2
            while taken.contains(candidate.lowercased()) { candidate = base + "_\(n)"; n += 1 }
            taken.insert(candidate.lowercased())
            return candidate
        }
        struct Pending { var kind: TargetSchema.Object.Kind; var name: String; var source: SourceObject; var carried: Carried; var sql: String }
        var pending: [Pending] = []
        for o in objects where o.type == "index" {
            guard let c = carriedByName[o.table.lowercased()] else { continue }
            let tokens = try SQLTokenizer.tokens(o.sql)
            guard let on = tokens.firstIndex(where: { $0.isKeyword("ON") }) else { continue }
            let names = SQLTokenizer.identifiers(tokens[(on + 2)...])
            if let d = names.intersection(c.dropped).sorted().first {
                omit("index", o.name, c.mapping.source.name, "index \(o.name) names column \(d), which the plan drops; recreate it on the target after cutover if still needed")
                continue
            }
            let name = freshName(o.name, c)
            pending.append(Pending(kind: .index, name: name, source: o, carried: c, sql: name == o.name ? o.sql : try SQLTokenizer.renamingObject(o.sql, to: name)))
        }
        var carriedViews: Set<String> = []
        /// The first carried table each carried view reads (a view over a
        /// carried view reads that table too).
        var viewTable: [String: Carried] = [:]
        // Which tables an object reads, and whether it can come along.
        func check(_ o: SourceObject, kind: String) throws -> (reads: [Carried], problem: String?) {
            let names = SQLTokenizer.identifiers(try SQLTokenizer.tokens(o.sql))
            let reads = carried.filter { names.contains($0.sourceLower) }
                + names.sorted().compactMap { viewTable[$0] }
            for t in names.intersection(sourceTables.union(sourceViews)).sorted() where t != o.name.lowercased() {
                if copySources.contains(t) || unmoved.contains(t) || carriedViews.contains(t) { continue }
                if sourceViews.contains(t) {
                    return (reads, "it reads view \(t), which is not carried")
                }
                return (reads, "it reads table \(t), which the plan does not migrate")
            }
            let keptAnywhere = reads.reduce(into: Set<String>()) { $0.formUnion($1.kept) }
            for c in reads {
                if let d = names.intersection(c.dropped).subtracting(keptAnywhere).sorted().first {
                    return (reads, "it names column \(d) of \(c.mapping.source.name), which the plan drops")
                }
            }
            return (reads, nil)
        }
        for o in objects where o.type == "view" {
            let (reads, problem) = try check(o, kind: "view")
            guard let first = reads.first else { continue }
            if let problem {
                omit("view", o.name, first.mapping.source.name, "view \(o.name) is not recreated: \(problem); fix the plan, or cut over with --drop-triggers and recreate it yourself", blocks: true)
                continue
            }
            carriedViews.insert(o.name.lowercased())
            viewTable[o.name.lowercased()] = first
            pending.append(Pending(kind: .view, name: o.name, source: o, carried: first, sql: o.sql))
        }
        for o in objects where o.type == "trigger" {
            // Triggers on a carried table, and INSTEAD OF triggers on a carried view.
            guard let c = carriedByName[o.table.lowercased()] ?? viewTable[o.table.lowercased()] else { continue }
            let (_, problem) = try check(o, kind: "trigger")
            if let problem {
                omit("trigger", o.name, c.mapping.source.name, "trigger \(o.name) is not recreated: \(problem); fix the plan, or cut over with --drop-triggers and recreate it yourself", blocks: true)
                continue
            }
            // A swap drops the old table's trigger and creates this one under
            // the same name (see TableSwap.md).
            let name = c.plan?.swap == true ? o.name : freshName(o.name, c)
            pending.append(Pending(kind: .trigger, name: name, source: o, carried: c, sql: name == o.name ? o.sql : try SQLTokenizer.renamingObject(o.sql, to: name)))
        }
        for o in objects where o.type == "table" && o.sql.uppercased().contains("VIRTUAL") {
            guard let tokens = try? SQLTokenizer.tokens(o.sql), tokens.count > 2, tokens[1].isKeyword("VIRTUAL") else { continue }
            let values = Set(tokens.filter { $0.isIdentifier || $0.kind == .string }.map { $0.value.lowercased() })
            for c in carried where values.contains(c.sourceLower) {
                omit("virtual table", o.name, c.mapping.source.name, "virtual table \(o.name) refers to \(c.mapping.source.name); Tidemark does not carry virtual tables — create it on the target after cutover")
            }
        }

        // 4. Scratch database: create under source names, let SQLite rename.
        let scratch = try Connection(path: ":memory:", mode: .readWriteCreate)
        defer { try? scratch.close() }
        try scratch.execute("PRAGMA foreign_keys = OFF")
        for o in objects where o.type == "table" && unmoved.contains(o.name.lowercased()) {
            try? scratch.execute(o.sql)
        }
        for c in carried {
            do { try scratch.execute(scratchSQL[c.sourceLower]!) } catch {
                throw MigrationError(.badPlan, "cannot carry the definition of table '\(c.mapping.source.name)' (\(error.message)); define the target table in the plan with create:")
            }
        }
        var made: [Pending] = []
        for p in pending {
            do {
                try scratch.execute(p.sql)
                made.append(p)
            } catch {
                omit(p.kind.rawValue, p.source.name, p.carried.mapping.source.name, "\(p.kind.rawValue) \(p.source.name) cannot be carried: \(error.message)", blocks: p.kind != .index)
            }
        }
        /// Runs a rename; a trigger or view the rename cannot rewrite is
        /// dropped and reported, and the rename tried again.
        func rename(_ sql: String, table: String) throws {
            while true {
                do {
                    try scratch.execute(sql)
                    return
                } catch {
                    let msg = error.message
                    guard let (kind, name) = failingObject(msg),
                          let i = made.firstIndex(where: { $0.kind == kind && $0.name.lowercased() == name.lowercased() }) else {
                        throw MigrationError(.badPlan, "cannot map the schema of table '\(table)' through the plan (\(msg)); define the target table in the plan with create:")
                    }
                    let p = made.remove(at: i)
                    try scratch.execute("DROP \(kind == .view ? "VIEW" : "TRIGGER") \(quoteIdentifier(name))")
                    omit(p.kind.rawValue, p.source.name, p.carried.mapping.source.name,
                         "\(p.kind.rawValue) \(p.source.name) cannot be rewritten for the new names (\(msg)); fix the plan, or cut over with --drop-triggers and recreate it yourself", blocks: true)
                }
            }
        }
        let q = quoteIdentifier
        var temp = 0
        func tempName() -> String { temp += 1; return "_tidemark_rename_\(temp)" }
        // A new column name written bare (when it can be) is put bare
        // where the old name was bare: the SQL reads as if the application
        // had renamed the column itself.
        func columnName(_ name: String) -> String {
            let plain = name.first.map { $0 == "_" || ($0.isASCII && $0.isLetter) } == true
                && name.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
            guard plain, (try? scratch.prepare("SELECT \(name) FROM (SELECT 1 AS \(q(name)))")) != nil else { return q(name) }
            return name
        }
        for c in carried {
            var second: [(String, String)] = []
            for col in c.columns where col.scratchName != col.target {
                let t = tempName()
                try rename("ALTER TABLE \(q(c.mapping.source.name)) RENAME COLUMN \(q(col.scratchName)) TO \(t)", table: c.mapping.source.name)
                second.append((t, col.target))
            }
            for (t, target) in second {
                try rename("ALTER TABLE \(q(c.mapping.source.name)) RENAME COLUMN \(t) TO \(columnName(target))", table: c.mapping.source.name)
            }
        }
        var secondTables: [(String, String, String)] = []
        for c in carried where c.mapping.source.name != c.mapping.targetTable {
            let t = tempName()
            try rename("ALTER TABLE \(q(c.mapping.source.name)) RENAME TO \(q(t))", table: c.mapping.source.name)
            secondTables.append((t, c.mapping.targetTable, c.mapping.source.name))
        }
        for (t, target, src) in secondTables {
            do { try rename("ALTER TABLE \(q(t)) RENAME TO \(q(target))", table: src) } catch {
                throw MigrationError(.badPlan, "cannot name the target of '\(src)' \(target): \(error); choose another to:")
            }
        }

        // 5. Read back.
        func sqlOf(_ type: String, _ name: String) throws -> String? {
            let s = try scratch.prepare("SELECT sql FROM main.sqlite_schema WHERE type = ?1 AND name = ?2 COLLATE NOCASE")
            try s.bind([.text(type), .text(name)])
            return try s.step() ? s.columnText(0) : nil
        }
        var result = TargetSchema(tables: [])
        for c in carried {
            let key = try primaryKey(of: c.mapping.targetTable, in: scratch)
            guard key.map({ $0.lowercased() }) == c.mapping.targetKey.map({ $0.lowercased() }) else {
                throw MigrationError(.keyNotCarried, "the carried definition of '\(c.mapping.source.name)' has primary key (\(key.joined(separator: ", "))) but the plan keys it by (\(c.mapping.targetKey.joined(separator: ", "))); define the target table with create:")
            }
            if let create = c.plan?.create {
                let sql = try planTable(create, c)
                result.tables.append(.init(source: c.mapping.source.name, target: c.mapping.targetTable, createSQL: sql,
                                           autoincrement: hasAutoincrement(sql), fromPlan: true))
            } else {
                guard let sql = try sqlOf("table", c.mapping.targetTable) else {
                    throw MigrationError(.badPlan, "table '\(c.mapping.targetTable)' vanished from the scratch schema")
                }
                result.tables.append(.init(source: c.mapping.source.name, target: c.mapping.targetTable, createSQL: sql,
                                           autoincrement: hasAutoincrement(sql)))
            }
        }
        for p in made {
            guard let sql = try sqlOf(p.kind.rawValue, p.name) else { continue }
            // A swap replaces the old table's triggers (same name), so their
            // definitions are kept for a rollback, as a replaced view's are.
            let swapTrigger = p.kind == .trigger && p.carried.plan?.swap == true
            let object = TargetSchema.Object(kind: p.kind, name: p.name, table: p.carried.mapping.targetTable, sql: sql,
                                             replacesSQL: (p.kind == .view && sameFile) || swapTrigger ? p.source.sql : nil)
            switch p.kind {
            case .index: result.indexes.append(object)
            case .trigger: result.triggers.append(object)
            case .view: result.views.append(object)
            }
        }

        // 6. Check the result as a whole: create it in a fresh database.
        // (A plan's own table may lack what a carried index or trigger names.)
        let check = try Connection(path: ":memory:", mode: .readWriteCreate)
        defer { try? check.close() }
        try check.execute("PRAGMA foreign_keys = OFF")
        for o in objects where o.type == "table" && unmoved.contains(o.name.lowercased()) { try? check.execute(o.sql) }
        for t in result.tables {
            do { try check.execute(t.createSQL) } catch {
                throw MigrationError(.badPlan, "the target table \(t.target) cannot be created beside the others (\(error.message)); choose another to: or fix its create:")
            }
        }
        func sourceOf(_ o: TargetSchema.Object) -> String {
            result.tables.first { $0.target == o.table }?.source ?? o.table
        }
        func originalName(_ o: TargetSchema.Object) -> String {
            made.first { $0.kind == o.kind && $0.name == o.name }?.source.name ?? o.name
        }
        result.indexes = result.indexes.filter { o in
            do { try check.execute(o.sql); return true } catch {
                omit("index", originalName(o), sourceOf(o), "index \(originalName(o)) does not fit the target table \(o.table) (\(describe(error))); recreate it on the target after cutover if still needed")
                return false
            }
        }
        result.views = result.views.filter { o in
            do {
                try check.execute(o.sql)
                _ = try check.prepare("SELECT * FROM \(q(o.name)) LIMIT 0")
                return true
            } catch {
                try? check.execute("DROP VIEW IF EXISTS \(q(o.name))")
                omit("view", originalName(o), sourceOf(o), "view \(originalName(o)) does not fit the target (\(describe(error))); fix the plan, or cut over with --drop-triggers and recreate it yourself", blocks: true)
                return false
            }
        }
        result.triggers = result.triggers.filter { o in
            do { try check.execute(o.sql); return true } catch {
                omit("trigger", originalName(o), sourceOf(o), "trigger \(originalName(o)) does not fit the target (\(describe(error))); fix the plan, or cut over with --drop-triggers and recreate it yourself", blocks: true)
                return false
            }
        }
        // Foreign keys must find their parent key (a plan's own table may
        // lack the column a carried foreign key names).
        do { _ = try check.prepare("PRAGMA foreign_key_check").rows { _ in 0 } } catch {
            throw MigrationError(.badPlan, "the carried foreign keys do not fit the target tables (\(describe(error))); make the parent's create: keep that key, or set foreign_keys: drop")
        }
        // A trigger body is only checked when its table's schema is parsed
        // again: rename each table away and back.
        for t in result.tables {
            var attempts = 0
            while attempts < 100 {
                attempts += 1
                do {
                    try check.execute("ALTER TABLE \(q(t.target)) RENAME TO \(q("_tidemark_check"))")
                    try check.execute("ALTER TABLE \(q("_tidemark_check")) RENAME TO \(q(t.target))")
                    break
                } catch {
                    guard let (kind, name) = failingObject(error.message), kind == .trigger || kind == .view else { break }
                    try? check.execute("DROP \(kind == .view ? "VIEW" : "TRIGGER") \(q(name))")
                    if kind == .trigger, let o = result.triggers.first(where: { $0.name.lowercased() == name.lowercased() }) {
                        result.triggers.removeAll { $0.name == o.name }
                        omit("trigger", originalName(o), sourceOf(o), "trigger \(originalName(o)) does not fit the target (\(describe(error))); fix the plan, or cut over with --drop-triggers and recreate it yourself", blocks: true)
                    } else if kind == .view, let o = result.views.first(where: { $0.name.lowercased() == name.lowercased() }) {
                        result.views.removeAll { $0.name == o.name }
                        omit("view", originalName(o), sourceOf(o), "view \(originalName(o)) does not fit the target (\(describe(error))); fix the plan, or cut over with --drop-triggers and recreate it yourself", blocks: true)
                    }
                }
            }
        }
        if carried.contains(where: { $0.plan?.swap == true }) {
            let reported = Set(omissions.map { $0.name.lowercased() })
            try nameSwappedObjects(&result, objects: objects.filter { !reported.contains($0.name.lowercased()) }, unmoved: unmoved,
                                   omit: { omit($0, $1, $2, $3, blocks: true) })
        }
        result.omissions = omissions
        return result
    }

    /// The name a swap gives a carried index: the old one keeps its name on
    /// the table set aside, so the new one is `<name>_v2` (`_v3` when the
    /// name already ends in `_v2`, and so on), unique in the file.
    static func swapIndexName(_ name: String, taken: inout Set<String>) -> String {
        var stem = name
        var n = 2
        if let r = name.lastIndex(of: "_"), name[name.index(after: r)...].first == "v",
           let v = Int(name[name.index(r, offsetBy: 2)...]), v >= 2 {
            stem = String(name[..<r])
            n = v + 1
        }
        while taken.contains((stem + "_v\(n)").lowercased()) { n += 1 }
        let fresh = stem + "_v\(n)"
        taken.insert(fresh.lowercased())
        return fresh
    }

    /// Swapped tables: the carried views and triggers are created in the swap,
    /// after the shadow took the table's real name, so their SQL must name
    /// the real table, not the shadow. SQLite rewrites them (the shadow
    /// renamed to the real name in a scratch database). Then every other
    /// object of the source that names a swapped table (a trigger on another
    /// table, a view the plan does not recreate) must still compile against
    /// the new shape: after the swap it reads the new table. One that does
    /// not is a blocking omission: the cutover is refused rather than leaving
    /// it broken.
    static func nameSwappedObjects(_ result: inout TargetSchema, objects: [SourceObject], unmoved: Set<String>,
                                   omit: (String, String, String, String) -> Void) throws {
        let q = quoteIdentifier
        let scratch = try Connection(path: ":memory:", mode: .readWriteCreate)
        defer { try? scratch.close() }
        try scratch.execute("PRAGMA foreign_keys = OFF")
        for o in objects where o.type == "table" && unmoved.contains(o.name.lowercased()) { try? scratch.execute(o.sql) }
        for t in result.tables { try scratch.execute(t.createSQL) }
        for o in result.indexes + result.views + result.triggers { try? scratch.execute(o.sql) }
        let swapped = result.tables.filter { $0.target.lowercased() == TablePlan.shadowName(of: $0.source).lowercased() }
        for t in swapped {
            do { try scratch.execute("ALTER TABLE \(q(t.target)) RENAME TO \(q(t.source))") } catch {
                throw MigrationError(.badPlan, "cannot name the swapped table \(t.source) in its views and triggers (\(describe(error))); fix the plan's create: or the objects that read \(t.source)")
            }
        }
        func sqlOf(_ type: String, _ name: String) throws -> String? {
            let s = try scratch.prepare("SELECT sql FROM main.sqlite_schema WHERE type = ?1 AND name = ?2 COLLATE NOCASE")
            try s.bind([.text(type), .text(name)])
            return try s.step() ? s.columnText(0) : nil
        }
        for i in result.views.indices {
            if let sql = try sqlOf("view", result.views[i].name) { result.views[i].sql = sql }
            if let t = swapped.first(where: { $0.target == result.views[i].table }) { result.views[i].table = t.source }
        }
        for i in result.triggers.indices {
            if let sql = try sqlOf("trigger", result.triggers[i].name) { result.triggers[i].sql = sql }
            if let t = swapped.first(where: { $0.target == result.triggers[i].table }) { result.triggers[i].table = t.source }
        }
        // Other tables' FOREIGN KEYs naming a swapped table read its new
        // shape after the swap: the parent key must still be a key of it.
        do { _ = try scratch.prepare("PRAGMA foreign_key_check").rows { _ in 0 } } catch {
            let names = swapped.map(\.source).joined(separator: ", ")
            throw MigrationError(.badPlan, "a FOREIGN KEY that names \(names) does not fit its new shape (\(describe(error))); keep the referenced columns the PRIMARY KEY or UNIQUE in create:")
        }
        // The objects the swap leaves in place that name a swapped table.
        let carriedNames = Set((result.views + result.triggers).map { $0.name.lowercased() })
        let swappedNames = Set(swapped.map { $0.source.lowercased() })
        for o in objects where (o.type == "view" || o.type == "trigger") && !carriedNames.contains(o.name.lowercased()) {
            guard let tokens = try? SQLTokenizer.tokens(o.sql) else { continue }
            let names = SQLTokenizer.identifiers(tokens[...])
            guard let hit = names.intersection(swappedNames).sorted().first,
                  !swappedNames.contains(o.table.lowercased()) else { continue }
            let table = swapped.first { $0.source.lowercased() == hit }?.source ?? hit
            do {
                try scratch.execute(o.sql)
                if o.type == "view" {
                    _ = try scratch.prepare("SELECT * FROM \(q(o.name)) LIMIT 0")
                } else if try Schema.table(named: o.table, in: scratch) != nil {
                    // A trigger's body is compiled into every statement that
                    // fires it: preparing (never running) an insert, an
                    // update of every column and a delete on its table
                    // compiles it against the new shape.
                    let info = try scratch.prepare("SELECT name FROM pragma_table_info(?1)")
                    try info.bind([.text(o.table)])
                    let names = try info.rows { $0.columnText(0) }
                    _ = try scratch.prepare("INSERT INTO \(q(o.table)) DEFAULT VALUES")
                    if !names.isEmpty {
                        _ = try scratch.prepare("UPDATE \(q(o.table)) SET " + names.map { "\(q($0)) = \(q($0))" }.joined(separator: ", "))
                    }
                    _ = try scratch.prepare("DELETE FROM \(q(o.table))")
                }
            } catch {
                try? scratch.execute("DROP \(o.type == "view" ? "VIEW" : "TRIGGER") IF EXISTS \(q(o.name))")
                omit(o.type, o.name, table, "\(o.type) \(o.name) names \(table), which the swap replaces, and does not fit its new shape (\(describe(error))); fix the plan, or drop or rewrite \(o.name) first")
            }
        }
        // Capture must follow each swapped table into its new shape in the
        // swap (its triggers regenerated under the real name): what capture
        // refuses (a UNIQUE index over an expression) is refused now, before
        // copying, not at the cutover.
        for t in swapped {
            do {
                _ = try scratch.transaction(.immediate) {
                    try Capture.installInTransaction(connection: scratch, tables: [t.source], sourceID: SourceID("schema-check"))
                }
            } catch {
                throw MigrationError(.badPlan, "capture cannot follow \(t.source) into its new shape (\(describe(error))); the swap must capture the new table's writes — change the plan's create: or indexes")
            }
        }
        // The shadow's own references to itself (a FOREIGN KEY of a tree)
        // must name the real table: the swap's legacy renames keep them as
        // written. So the shadow is created from its definition under the
        // real name, renamed to the shadow's name the same legacy way (only
        // the table's own name changes). Until the swap they point at the
        // old table, which has the same keys; foreign keys are off during
        // copy and replay, and verify checks them.
        try scratch.execute("PRAGMA legacy_alter_table = ON")
        for t in swapped {
            try scratch.execute("ALTER TABLE \(q(t.source)) RENAME TO \(q(t.target))")
            guard let sql = try sqlOf("table", t.target), let i = result.tables.firstIndex(where: { $0.target == t.target }) else { continue }
            result.tables[i].createSQL = sql
        }
    }

    static func describe(_ error: any Error) -> String {
        (error as? SQLiteError)?.message ?? "\(error)"
    }

    /// "error in trigger X: …" / "error in view X: …" → the object.
    static func failingObject(_ message: String) -> (TargetSchema.Object.Kind, String)? {
        for (prefix, kind) in [("error in trigger ", TargetSchema.Object.Kind.trigger), ("error in view ", .view)] {
            guard let r = message.firstRange(of: prefix) else { continue }
            let rest = message[r.upperBound...]
            guard let colon = rest.firstIndex(of: ":") else { continue }
            return (kind, String(rest[..<colon]))
        }
        return nil
    }

    static func primaryKey(of table: String, in c: Connection) throws -> [String] {
        let s = try c.prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
        try s.bind([.text(table)])
        return try s.rows { $0.columnText(0) }
    }

    static func hasAutoincrement(_ sql: String) -> Bool {
        (try? SQLTokenizer.tokens(sql))?.contains { $0.isKeyword("AUTOINCREMENT") } ?? false
    }

    /// Which source columns reach the target, and as what.
    static func columnsOf(_ m: TableMapping, plan: TablePlan?, parts: CreateTableParts) -> Carried {
        func sourceDef(_ name: String) -> CreateTableParts.Column? {
            parts.columns.first { $0.name.lowercased() == name.lowercased() }
        }
        var plainTaken: Set<String> = []
        for c in m.columns { if let s = c.sourceColumn { plainTaken.insert(s.lowercased()) } }
        var used: Set<String> = []
        var out: [CarriedColumn] = []
        var newCount = 0
        for c in m.columns {
            if let s = c.sourceColumn, used.insert(s.lowercased()).inserted {
                out.append(CarriedColumn(origin: .plain, scratchName: sourceDef(s)?.name ?? s, target: c.target, mapped: c, source: sourceDef(s)))
            } else if let def = sourceDef(c.target), !plainTaken.contains(c.target.lowercased()), used.insert(c.target.lowercased()).inserted {
                // A computed column named like a source column replaces it.
                out.append(CarriedColumn(origin: .replacing, scratchName: def.name, target: c.target, mapped: c, source: def))
            } else {
                newCount += 1
                out.append(CarriedColumn(origin: .new, scratchName: "_tidemark_new_\(newCount)", target: c.target, mapped: c, source: nil))
            }
        }
        let planNames = Set(m.columns.map { $0.target.lowercased() })
        var kept = used
        // Generated columns: carried when every column they name is carried
        // and the plan has no column of their name. Iterate: one generated
        // column may name another.
        let generated = m.source.columns.filter(\.isGenerated)
        var changed = true
        var carriedGenerated: Set<String> = []
        while changed {
            changed = false
            for g in generated where !carriedGenerated.contains(g.name.lowercased()) && !planNames.contains(g.name.lowercased()) {
                guard let def = sourceDef(g.name) else { continue }
                let names = SQLTokenizer.identifiers(def.constraints.filter { $0.kind == .generated }.flatMap { Array($0.body) })
                let sourceNames = Set(m.source.columns.map { $0.name.lowercased() })
                if names.intersection(sourceNames).subtracting([g.name.lowercased()]).isSubset(of: kept) {
                    carriedGenerated.insert(g.name.lowercased())
                    kept.insert(g.name.lowercased())
                    changed = true
                }
            }
        }
        let generatedColumns = m.source.columns.filter { carriedGenerated.contains($0.name.lowercased()) }.compactMap { sourceDef($0.name) }
            .map { CarriedColumn(origin: .generated, scratchName: $0.name, target: $0.name, mapped: nil, source: $0) }
        if plan?.columns == nil {
            // Source order, generated columns in their place.
            var ordered: [CarriedColumn] = []
            for def in parts.columns {
                if let c = out.first(where: { $0.source?.name.lowercased() == def.name.lowercased() }) { ordered.append(c) }
                else if let g = generatedColumns.first(where: { $0.scratchName.lowercased() == def.name.lowercased() }) { ordered.append(g) }
            }
            out = ordered + out.filter { c in !ordered.contains { $0.scratchName == c.scratchName } }
        } else {
            out += generatedColumns
        }
        let all = Set(parts.columns.map { $0.name.lowercased() })
        return Carried(mapping: m, plan: plan, parts: parts, columns: out, kept: kept, dropped: all.subtracting(kept))
    }

    /// The CREATE TABLE under source names with what `c` keeps; reports
    /// what it leaves out.
    static func assemble(_ c: Carried, carried: [String: Carried], unmoved: Set<String>, sourceTables: Set<String>,
                         omit: (String, String, String, String, Bool) -> Void) -> String {
        let q = quoteIdentifier
        let table = c.mapping.source.name
        let strict = c.parts.isStrict
        let dropFK = c.plan?.foreignKeys == .drop
        func text(_ t: ArraySlice<SQLToken>) -> String { c.parts.text(t) }
        func droppedName(_ tokens: ArraySlice<SQLToken>) -> String? {
            SQLTokenizer.identifiers(tokens).intersection(c.dropped).sorted().first
        }
        /// Whether a FOREIGN KEY's parent comes along; nil when it does,
        /// else why not.
        func foreignKeyProblem(_ body: ArraySlice<SQLToken>) -> String? {
            if dropFK { return "the plan sets foreign_keys: drop for \(table)" }
            guard let r = body.firstIndex(where: { $0.isKeyword("REFERENCES") }), r + 1 < body.endIndex else { return nil }
            if let d = droppedName(body[body.startIndex..<r]) { return "it names column \(d), which the plan drops" }
            let parent = body[r + 1].value.lowercased()
            if let p = carried[parent] {
                if r + 2 < body.endIndex, body[r + 2].isOpen {
                    var j = r + 3
                    while j < body.endIndex, !body[j].isClose {
                        if body[j].isIdentifier, p.dropped.contains(body[j].value.lowercased()) {
                            return "it references column \(body[j].value) of \(p.mapping.source.name), which the plan drops"
                        }
                        j += 1
                    }
                }
                return nil
            }
            if unmoved.contains(parent) { return nil }
            if sourceTables.contains(parent) || !unmoved.isEmpty {
                return "it references table \(body[r + 1].value), which the plan does not migrate; add that table to the plan, or set foreign_keys: drop"
            }
            return "it references table \(body[r + 1].value), which does not exist in the source; set foreign_keys: drop"
        }
        var defs: [String] = []
        for col in c.columns {
            let mapped = col.mapped
            // Source columns keep their name as written (bare or quoted).
            var def = col.source?.nameText ?? col.scratchName
            var type: String
            switch col.origin {
            case .plain, .generated: type = col.source?.type ?? ""
            case .replacing: type = mapped?.type ?? ""
            case .new:
                type = mapped?.type ?? ""
                if type.isEmpty, let s = mapped?.sourceColumn {
                    type = c.parts.columns.first { $0.name.lowercased() == s.lowercased() }?.type ?? ""
                }
            }
            if type.isEmpty && strict { type = "ANY" }
            if !type.isEmpty { def += " " + type }
            var hasNotNull = false
            for k in col.source?.constraints ?? [] {
                let label = text(k.tokens)
                switch k.kind {
                case .notNull:
                    if mapped?.notNull == false { continue }
                    hasNotNull = true
                case .generated:
                    if col.origin == .replacing {
                        omit("generated column", col.scratchName, table, "generated column \(col.scratchName) is replaced by the plan's column of that name", false)
                        continue
                    }
                case .check, .unique:
                    if let d = droppedName(k.body) {
                        omit(k.kind.rawValue, label, table, "\(label) on column \(col.target) names column \(d), which the plan drops", false)
                        continue
                    }
                case .references, .foreignKey:
                    if let why = foreignKeyProblem(k.body) {
                        omit("foreign key", label, table, "\(label) on column \(col.target) is not carried: \(why)", false)
                        continue
                    }
                default: break
                }
                def += " " + label
            }
            if mapped?.notNull == true && !hasNotNull { def += " NOT NULL" }
            defs.append(def)
        }
        // Constraints of the columns the plan drops go with them; those that
        // say more than "this column" are reported.
        for col in c.parts.columns where c.dropped.contains(col.name.lowercased()) {
            let isGenerated = col.constraints.contains { $0.kind == .generated }
            if isGenerated {
                omit("generated column", col.name, table, "generated column \(col.name) names a column the plan drops (or the plan replaces it); add it to the target after cutover if still needed", false)
                continue
            }
            for k in col.constraints where [.check, .unique, .references].contains(k.kind) {
                omit(k.kind.rawValue, text(k.tokens), table, "\(text(k.tokens)) belongs to column \(col.name), which the plan drops", false)
            }
        }
        for k in c.parts.constraints {
            let label = text(k.tokens)
            switch k.kind {
            case .foreignKey:
                if let why = foreignKeyProblem(k.body) {
                    omit("foreign key", label, table, "\(label) is not carried: \(why)", false)
                    continue
                }
            case .check, .unique:
                if let d = droppedName(k.body) {
                    omit(k.kind.rawValue, label, table, "\(label) names column \(d), which the plan drops", false)
                    continue
                }
            default: break
            }
            defs.append(label)
        }
        let options = c.parts.options.isEmpty ? "" : " " + c.parts.options
        return "CREATE TABLE \(c.parts.tableNameText) (\(defs.joined(separator: ", ")))\(options)"
    }

    /// The plan's own CREATE TABLE for `c`, checked and named `to:`.
    static func planTable(_ create: String, _ c: Carried) throws -> String {
        let src = c.mapping.source.name
        let scratch = try Connection(path: ":memory:", mode: .readWriteCreate)
        defer { try? scratch.close() }
        try scratch.execute("PRAGMA foreign_keys = OFF")
        do { try scratch.execute(create) } catch {
            throw MigrationError(.badPlan, "tables.\(src).create does not parse: \(error.message); fix the CREATE TABLE")
        }
        let names = try scratch.prepare("SELECT type, name FROM main.sqlite_schema WHERE name NOT LIKE 'sqlite_%'").rows { ($0.columnText(0), $0.columnText(1)) }
        guard names.count == 1, names[0].0 == "table" else {
            throw MigrationError(.badPlan, "tables.\(src).create must be exactly one CREATE TABLE statement (it made \(names.map { "\($0.0) \($0.1)" }.joined(separator: ", ")))")
        }
        let name = names[0].1
        let xinfo = try scratch.prepare("SELECT name FROM pragma_table_xinfo(?1)")
        try xinfo.bind([.text(name)])
        let have = Set(try xinfo.rows { $0.columnText(0).lowercased() })
        for col in c.mapping.columns where !have.contains(col.target.lowercased()) {
            throw MigrationError(.badPlan, "tables.\(src).create has no column \(col.target), which the plan's columns: fill; add it to the CREATE TABLE")
        }
        let key = try primaryKey(of: name, in: scratch)
        guard key.map({ $0.lowercased() }) == c.mapping.targetKey.map({ $0.lowercased() }) else {
            throw MigrationError(.badPlan, "tables.\(src).create has primary key (\(key.joined(separator: ", "))) but the plan keys \(src) by (\(c.mapping.targetKey.joined(separator: ", "))); declare PRIMARY KEY (\(c.mapping.targetKey.joined(separator: ", ")))")
        }
        let q = quoteIdentifier
        if name != c.mapping.targetTable {
            try scratch.execute("ALTER TABLE \(q(name)) RENAME TO \(q("_tidemark_rename"))")
            try scratch.execute("ALTER TABLE \(q("_tidemark_rename")) RENAME TO \(q(c.mapping.targetTable))")
        }
        let s = try scratch.prepare("SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?1")
        try s.bind([.text(c.mapping.targetTable)])
        guard try s.step() else { throw MigrationError(.badPlan, "tables.\(src).create: renamed table not found") }
        return s.columnText(0)
    }
}
