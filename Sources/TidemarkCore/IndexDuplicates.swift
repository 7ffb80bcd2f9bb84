import TidemarkLog
import TidemarkSQLite

/// Why a UNIQUE index could not be built after the copy: the duplicate key
/// values, found by grouping the target table on the index's own terms.
///
/// The terms are read from the index's SQL, not rewritten: the text between
/// the parentheses after `ON table` is split at its top-level commas (quotes,
/// strings and nested parentheses respected) and a trailing `ASC`/`DESC`
/// dropped, which is what `GROUP BY` accepts; a partial index's `WHERE`
/// is kept as written. When the SQL cannot be read that way, the error says
/// so without values rather than guess.
enum IndexDuplicates {
    /// The one-line error for a unique index whose build the target refused.
    static func error(_ index: TargetSchema.Object, target: Connection, sqliteMessage: String) -> MigrationError {
        var found = ""
        if let (terms, condition) = split(index.sql), !terms.isEmpty,
           let groups = try? duplicates(table: index.table, terms: terms, condition: condition, in: target), !groups.isEmpty {
            found = ": " + groups.map { g in
                zip(terms, g.values).map { "\($0)=\(QuotedValue.literal($1))" }.joined(separator: ", ") + " (\(g.rows) rows)"
            }.joined(separator: "; ")
        }
        return MigrationError(.constraint, "unique index \(index.name) on \(index.table) cannot be built, its key has duplicates\(found.isEmpty ? " (\(sqliteMessage))" : found); nothing of this step was written — fix those rows in the source (the fix is replayed before the next build) or change the plan, then run `tidemark migrate`")
    }

    /// Up to `limit` duplicate groups of `terms` in `table` (rows where a
    /// term is NULL never collide in a unique index).
    static func duplicates(table: String, terms: [String], condition: String?, in c: Connection, limit: Int = 3) throws -> [(values: [Value], rows: Int)] {
        let list = terms.joined(separator: ", ")
        let notNull = terms.map { "(\($0)) IS NOT NULL" }.joined(separator: " AND ")
        let s = try c.prepare("SELECT \(list), count(*) FROM main.\(quoteIdentifier(table))\(condition.map { " WHERE \($0)" } ?? "") GROUP BY \(list) HAVING count(*) > 1 AND \(notNull) LIMIT \(limit)")
        return try s.rows { r in ((0..<Int32(terms.count)).map { r.columnValue($0) }, Int(r.columnInt64(Int32(terms.count)))) }
    }

    /// The indexed terms and the WHERE condition of a `CREATE INDEX`.
    static func split(_ sql: String) -> (terms: [String], condition: String?)? {
        let chars = Array(sql)
        var i = 0
        var depth = 0
        var sawOn = false
        var open: Int?
        var close: Int?
        var commas: [Int] = []
        var word = ""
        func endWord() {
            if depth == 0 && word.uppercased() == "ON" { sawOn = true }
            word = ""
        }
        while i < chars.count {
            let ch = chars[i]
            switch ch {
            case "'", "\"", "`", "[":
                endWord()
                let end: Character = ch == "[" ? "]" : ch
                i += 1
                while i < chars.count {
                    if chars[i] == end {
                        if end != "]" && i + 1 < chars.count && chars[i + 1] == end { i += 2; continue }
                        break
                    }
                    i += 1
                }
            case "(":
                endWord()
                if depth == 0 && sawOn && open == nil { open = i }
                depth += 1
            case ")":
                endWord()
                depth -= 1
                if depth == 0 && open != nil && close == nil { close = i }
            case ",":
                endWord()
                if depth == 1 && open != nil && close == nil { commas.append(i) }
            default:
                if ch.isLetter || ch.isNumber || ch == "_" { word.append(ch) } else { endWord() }
            }
            if close != nil { break }
            i += 1
        }
        guard let o = open, let c = close else { return nil }
        let bounds = [o] + commas + [c]
        var terms: [String] = []
        for k in 0..<(bounds.count - 1) {
            var term = String(chars[(bounds[k] + 1)..<bounds[k + 1]]).trimmingSpaces
            for suffix in ["ASC", "DESC"] {
                let u = term.uppercased()
                if u.hasSuffix(" " + suffix) || u.hasSuffix("\n" + suffix) || u.hasSuffix("\t" + suffix) {
                    term = String(term.dropLast(suffix.count)).trimmingSpaces
                }
            }
            terms.append(term)
        }
        let rest = String(chars[(c + 1)...]).trimmingSpaces
        var condition: String?
        if rest.uppercased().hasPrefix("WHERE") {
            condition = String(rest.dropFirst(5)).trimmingSpaces
        }
        return (terms, condition)
    }
}
