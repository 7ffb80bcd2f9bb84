import TidemarkSQLite

/// A small SQLite tokenizer, enough to split schema statements into their
/// parts and to see which names a part mentions.
///
/// Why not text search: a table's or column's name may also be spelled
/// inside a string literal (`DEFAULT 'users'`), a comment, or as part of a
/// longer name; only a token that is an identifier names anything. The
/// tokenizer never rewrites names itself — renames are left to SQLite's
/// parser (`ALTER TABLE … RENAME`, see ``SchemaCarry``); it only decides
/// what is kept and cuts statements at top-level commas.
struct SQLToken: Equatable {
    enum Kind: Equatable {
        /// A bare word: a keyword or an unquoted identifier.
        case word
        /// `"x"`, `` `x` `` or `[x]`: always an identifier.
        case quoted
        /// `'…'`, a string literal.
        case string
        case number
        /// `x'…'`, a blob literal.
        case blob
        /// `?`, `?1`, `:a`, `@a`, `$a`.
        case parameter
        /// Punctuation and operators, one or more characters.
        case symbol
    }
    var kind: Kind
    /// The token as written.
    var text: Substring
    /// Offsets (in `String.Index`) into the tokenized text.
    var range: Range<String.Index>

    /// The name for identifiers (quotes removed, doubled quotes undone);
    /// the text otherwise.
    var value: String {
        switch kind {
        case .quoted:
            let inner = text.dropFirst().dropLast()
            switch text.first {
            case "\"": return String(inner).replacingOccurrencesOfPair("\"")
            case "`": return String(inner).replacingOccurrencesOfPair("`")
            default: return String(inner)
            }
        case .string:
            return String(text.dropFirst().dropLast()).replacingOccurrencesOfPair("'")
        default:
            return String(text)
        }
    }

    /// Whether this token could name a table or column.
    var isIdentifier: Bool { kind == .word || kind == .quoted }

    /// A bare word equal (case-insensitively) to `keyword`.
    func isKeyword(_ keyword: String) -> Bool {
        kind == .word && text.uppercased() == keyword
    }

    var isOpen: Bool { kind == .symbol && text == "(" }
    var isClose: Bool { kind == .symbol && text == ")" }
    var isComma: Bool { kind == .symbol && text == "," }
}

extension String {
    /// `a""b` → `a"b` for the given quote character.
    func replacingOccurrencesOfPair(_ quote: Character) -> String {
        var out = ""
        var previous = false
        for ch in self {
            if ch == quote && previous { previous = false; continue }
            previous = ch == quote
            out.append(ch)
        }
        return out
    }
}

enum SQLTokenizer {
    struct Unterminated: Error, CustomStringConvertible {
        var what: String
        var description: String { "unterminated \(what)" }
    }

    /// The tokens of `sql`, without whitespace and comments.
    static func tokens(_ sql: String) throws -> [SQLToken] {
        var out: [SQLToken] = []
        var i = sql.startIndex
        let end = sql.endIndex
        func isWordStart(_ c: Character) -> Bool { c == "_" || c.isLetter || (c.unicodeScalars.first.map { $0.value >= 0x80 } ?? false) }
        func isWordChar(_ c: Character) -> Bool { isWordStart(c) || c.isNumber || c == "$" }
        while i < end {
            let c = sql[i]
            if c.isWhitespace { i = sql.index(after: i); continue }
            let start = i
            func next(_ j: String.Index) -> Character? { j < end ? sql[j] : nil }
            // Comments.
            if c == "-", next(sql.index(after: i)) == "-" {
                while i < end, sql[i] != "\n" { i = sql.index(after: i) }
                continue
            }
            if c == "/", next(sql.index(after: i)) == "*" {
                i = sql.index(i, offsetBy: 2)
                while i < end, !(sql[i] == "*" && next(sql.index(after: i)) == "/") { i = sql.index(after: i) }
                i = i < end ? sql.index(i, offsetBy: 2) : end
                continue
            }
            func quoted(_ close: Character, doubled: Bool, kind: SQLToken.Kind, what: String) throws {
                i = sql.index(after: i)
                while true {
                    guard i < end else { throw Unterminated(what: what) }
                    if sql[i] == close {
                        let after = sql.index(after: i)
                        if doubled, next(after) == close { i = sql.index(after: after); continue }
                        i = after
                        break
                    }
                    i = sql.index(after: i)
                }
                out.append(SQLToken(kind: kind, text: sql[start..<i], range: start..<i))
            }
            switch c {
            case "'": try quoted("'", doubled: true, kind: .string, what: "string")
            case "\"": try quoted("\"", doubled: true, kind: .quoted, what: "quoted identifier")
            case "`": try quoted("`", doubled: true, kind: .quoted, what: "quoted identifier")
            case "[": try quoted("]", doubled: false, kind: .quoted, what: "quoted identifier")
            // (`where` binds to one pattern only: both spelled out.)
            case "x" where next(sql.index(after: i)) == "'", "X" where next(sql.index(after: i)) == "'":
                i = sql.index(after: i)
                try quoted("'", doubled: false, kind: .blob, what: "blob")
                out[out.count - 1].text = sql[start..<i]
                out[out.count - 1].range = start..<i
            case _ where c.isNumber || (c == "." && (next(sql.index(after: i))?.isNumber ?? false)):
                i = sql.index(after: i)
                while i < end, sql[i].isNumber || sql[i].isLetter || sql[i] == "." || sql[i] == "_"
                        || ((sql[i] == "+" || sql[i] == "-") && (sql[sql.index(before: i)] == "e" || sql[sql.index(before: i)] == "E")) {
                    i = sql.index(after: i)
                }
                out.append(SQLToken(kind: .number, text: sql[start..<i], range: start..<i))
            case "?", ":", "@", "$":
                i = sql.index(after: i)
                while i < end, isWordChar(sql[i]) { i = sql.index(after: i) }
                out.append(SQLToken(kind: .parameter, text: sql[start..<i], range: start..<i))
            case _ where isWordStart(c):
                while i < end, isWordChar(sql[i]) { i = sql.index(after: i) }
                out.append(SQLToken(kind: .word, text: sql[start..<i], range: start..<i))
            default:
                i = sql.index(after: i)
                let two: Set<String> = ["||", "<=", ">=", "==", "!=", "<>", "<<", ">>", "->"]
                if i < end, two.contains(String(sql[start...i])) {
                    i = sql.index(after: i)
                    if i < end, sql[start..<i] == "->", sql[i] == ">" { i = sql.index(after: i) }
                }
                out.append(SQLToken(kind: .symbol, text: sql[start..<i], range: start..<i))
            }
        }
        return out
    }

    /// The identifiers among `tokens` (names, lowercased).
    static func identifiers(_ tokens: some Sequence<SQLToken>) -> Set<String> {
        Set(tokens.filter(\.isIdentifier).map { $0.value.lowercased() })
    }

    /// Splits `tokens` at top-level commas (parentheses nest).
    static func splitTopLevel(_ tokens: ArraySlice<SQLToken>) -> [ArraySlice<SQLToken>] {
        var parts: [ArraySlice<SQLToken>] = []
        var depth = 0
        var start = tokens.startIndex
        for i in tokens.indices {
            let t = tokens[i]
            if t.isOpen { depth += 1 } else if t.isClose { depth -= 1 } else if t.isComma && depth == 0 {
                parts.append(tokens[start..<i])
                start = i + 1
            }
        }
        parts.append(tokens[start..<tokens.endIndex])
        return parts
    }

    /// The index of the `)` closing the `(` at `open`.
    static func closing(_ tokens: [SQLToken], from open: Int) -> Int? {
        var depth = 0
        for i in open..<tokens.count {
            if tokens[i].isOpen { depth += 1 } else if tokens[i].isClose {
                depth -= 1
                if depth == 0 { return i }
            }
        }
        return nil
    }

    /// Source text from the first to the last token of `tokens`, as written.
    static func text(_ tokens: ArraySlice<SQLToken>, in sql: String) -> String {
        guard let f = tokens.first, let l = tokens.last else { return "" }
        return String(sql[f.range.lowerBound..<l.range.upperBound])
    }

    /// The token index of an object's name in `CREATE [UNIQUE|TEMP] INDEX|TRIGGER|VIEW [IF NOT EXISTS] [schema.]name`.
    static func nameIndex(_ tokens: [SQLToken]) -> Int? {
        var i = 0
        guard i < tokens.count, tokens[i].isKeyword("CREATE") else { return nil }
        i += 1
        while i < tokens.count, tokens[i].kind == .word,
              ["UNIQUE", "TEMP", "TEMPORARY", "VIRTUAL"].contains(tokens[i].text.uppercased()) { i += 1 }
        guard i < tokens.count, tokens[i].kind == .word,
              ["INDEX", "TRIGGER", "VIEW", "TABLE"].contains(tokens[i].text.uppercased()) else { return nil }
        i += 1
        if i + 2 < tokens.count, tokens[i].isKeyword("IF"), tokens[i + 1].isKeyword("NOT"), tokens[i + 2].isKeyword("EXISTS") { i += 3 }
        if i + 2 < tokens.count, tokens[i + 1].kind == .symbol, tokens[i + 1].text == "." { i += 2 }
        return i < tokens.count && tokens[i].isIdentifier ? i : nil
    }

    /// `sql` with the object's name token replaced by `name` (quoted): the
    /// name is located by the statement's grammar, not searched for.
    static func renamingObject(_ sql: String, to name: String) throws -> String {
        let tokens = try tokens(sql)
        guard let n = nameIndex(tokens) else { return sql }
        var out = sql
        out.replaceSubrange(tokens[n].range, with: quoteIdentifier(name))
        return out
    }
}

/// A `CREATE TABLE` cut into its column definitions and table constraints.
struct CreateTableParts {
    struct Column {
        var name: String
        /// The name as written (bare or quoted).
        var nameText: String = ""
        /// The declared type as written ("" when none).
        var type: String
        /// Column constraints, each with its `CONSTRAINT name` prefix.
        var constraints: [Constraint]
    }
    struct Constraint {
        enum Kind: String {
            case primaryKey = "primary key", notNull = "not null", null, unique, check, `default`, collate
            case references = "foreign key", generated = "generated column", foreignKey = "table foreign key"
        }
        var kind: Kind
        var tokens: ArraySlice<SQLToken>
        /// Tokens after an eventual `CONSTRAINT name` (what the constraint says).
        var body: ArraySlice<SQLToken>
    }
    var sql: String
    var tableName: String
    /// The table's name as written.
    var tableNameText: String = ""
    var columns: [Column]
    /// Table constraints (PRIMARY KEY, UNIQUE, CHECK, FOREIGN KEY).
    var constraints: [Constraint]
    /// What follows the closing parenthesis (`WITHOUT ROWID`, `STRICT`).
    var options: String
    var isStrict: Bool { (try? SQLTokenizer.tokens(options))?.contains { $0.isKeyword("STRICT") } ?? false }

    func text(_ tokens: ArraySlice<SQLToken>) -> String { SQLTokenizer.text(tokens, in: sql) }

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    static let constraintStarts: Set<String> = ["CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE", "REFERENCES", "GENERATED", "AS"]

    static func parse(_ sql: String) throws -> CreateTableParts {
        let tokens = try SQLTokenizer.tokens(sql)
        guard let n = SQLTokenizer.nameIndex(tokens), n + 1 < tokens.count, tokens[n + 1].isOpen,
              let close = SQLTokenizer.closing(tokens, from: n + 1) else {
            throw Malformed(description: "not a CREATE TABLE … (…) statement")
        }
        let options = close + 1 < tokens.count ? SQLTokenizer.text(tokens[(close + 1)...], in: sql) : ""
        var parts = CreateTableParts(sql: sql, tableName: tokens[n].value, tableNameText: String(tokens[n].text),
                                     columns: [], constraints: [], options: options)
        for part in SQLTokenizer.splitTopLevel(tokens[(n + 2)..<close]) where !part.isEmpty {
            let first = part[part.startIndex]
            if first.kind == .word, ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"].contains(first.text.uppercased()) {
                var body = part
                if first.isKeyword("CONSTRAINT") { body = part.dropFirst(2) }
                guard let head = body.first else { throw Malformed(description: "empty constraint") }
                let kind: Constraint.Kind
                switch head.text.uppercased() {
                case "PRIMARY": kind = .primaryKey
                case "UNIQUE": kind = .unique
                case "CHECK": kind = .check
                default: kind = .foreignKey
                }
                parts.constraints.append(Constraint(kind: kind, tokens: part, body: body))
                continue
            }
            guard first.isIdentifier else { throw Malformed(description: "unexpected \(first.text)") }
            // Type: the words (and a parenthesized size) before the first constraint.
            var i = part.startIndex + 1
            var typeEnd = i
            while i < part.endIndex {
                let t = part[i]
                if t.kind == .word, constraintStarts.contains(t.text.uppercased()) { break }
                if t.isOpen, let c = SQLTokenizer.closing(Array(part[i...]), from: 0) { i += c + 1 } else { i += 1 }
                typeEnd = i
            }
            var column = Column(name: first.value, nameText: String(first.text),
                                type: SQLTokenizer.text(part[(part.startIndex + 1)..<typeEnd], in: sql), constraints: [])
            // Constraints: each starts at a constraint keyword at depth 0,
            // except where the keyword continues the one before (NOT
            // DEFERRABLE, SET NULL/DEFAULT, GENERATED ALWAYS AS, NOT NULL).
            var starts: [Int] = []
            var depth = 0
            var suppress = false
            var j = typeEnd
            while j < part.endIndex {
                let t = part[j]
                if t.isOpen { depth += 1; j += 1; continue }
                if t.isClose { depth -= 1; j += 1; continue }
                guard depth == 0, t.kind == .word else { j += 1; continue }
                let word = t.text.uppercased()
                if word == "CONSTRAINT" {
                    // `CONSTRAINT name` and the constraint after it are one.
                    starts.append(j)
                    j += 2
                    suppress = true
                    continue
                }
                let prev = j > typeEnd ? part[j - 1].text.uppercased() : ""
                let nextWord = j + 1 < part.endIndex ? part[j + 1].text.uppercased() : ""
                var begins = constraintStarts.contains(word)
                if word == "NOT" && nextWord == "DEFERRABLE" { begins = false }
                if (word == "NULL" || word == "DEFAULT") && (prev == "SET" || prev == "NOT" || prev == "DEFAULT") { begins = false }
                if word == "AS" && prev == "ALWAYS" { begins = false }
                if suppress { begins = false; suppress = false }
                if begins { starts.append(j) }
                j += 1
            }
            for (k, s) in starts.enumerated() {
                let e = k + 1 < starts.count ? starts[k + 1] : part.endIndex
                let slice = part[s..<e]
                var body = slice
                if slice.first!.isKeyword("CONSTRAINT") { body = slice.dropFirst(2) }
                guard let head = body.first else { throw Malformed(description: "empty constraint on \(column.name)") }
                let kind: Constraint.Kind
                switch head.text.uppercased() {
                case "PRIMARY": kind = .primaryKey
                case "NOT": kind = .notNull
                case "NULL": kind = .null
                case "UNIQUE": kind = .unique
                case "CHECK": kind = .check
                case "DEFAULT": kind = .default
                case "COLLATE": kind = .collate
                case "REFERENCES": kind = .references
                default: kind = .generated
                }
                column.constraints.append(Constraint(kind: kind, tokens: slice, body: body))
            }
            parts.columns.append(column)
        }
        return parts
    }
}
