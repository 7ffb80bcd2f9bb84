/// The few pieces of SQL text the preflight needs that no PRAGMA gives: the
/// CHECK constraints of a `CREATE TABLE`, and the terms and WHERE clause of a
/// `CREATE INDEX`. Reads text SQLite itself accepted (the statements were
/// created in a scratch database first); it never rewrites names.
enum PreflightSQL {
    struct Token: Equatable {
        enum Kind: Equatable { case word, quoted, string, number, punct, variable }
        var kind: Kind
        var text: String
        /// Character offsets in the statement, end exclusive.
        var start: Int
        var end: Int

        func isKeyword(_ k: String) -> Bool { kind == .word && text.uppercased() == k }
        var isOpen: Bool { kind == .punct && text == "(" }
        var isClose: Bool { kind == .punct && text == ")" }
        var isComma: Bool { kind == .punct && text == "," }
        static func undouble(_ s: String, _ quote: Character) -> String {
            var out = ""
            var previous = false
            for ch in s {
                if ch == quote && previous { previous = false; continue }
                previous = ch == quote
                out.append(ch)
            }
            return out
        }
        /// The identifier this token names (unquoted), if it is one.
        var identifier: String? {
            switch kind {
            case .word: return text
            case .quoted:
                let inner = String(text.dropFirst().dropLast())
                switch text.first {
                case "\"", "`": return Self.undouble(inner, text.first ?? "\"")
                default: return inner
                }
            default: return nil
            }
        }
    }

    /// SQLite's tokens, without spaces and comments.
    static func tokens(_ sql: String) -> [Token] {
        let chars = Array(sql)
        var out: [Token] = []
        var i = 0
        func emit(_ kind: Token.Kind, _ from: Int, _ to: Int) {
            out.append(Token(kind: kind, text: String(chars[from..<to]), start: from, end: to))
        }
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace { i += 1; continue }
            if c == "-", i + 1 < chars.count, chars[i + 1] == "-" {
                while i < chars.count, chars[i] != "\n" { i += 1 }
                continue
            }
            if c == "/", i + 1 < chars.count, chars[i + 1] == "*" {
                i += 2
                while i < chars.count, !(chars[i] == "*" && i + 1 < chars.count && chars[i + 1] == "/") { i += 1 }
                i = min(chars.count, i + 2)
                continue
            }
            let start = i
            if c == "'" || c == "\"" || c == "`" {
                // A doubled quote inside is the quote itself.
                i += 1
                while i < chars.count {
                    if chars[i] == c {
                        if i + 1 < chars.count, chars[i + 1] == c { i += 2; continue }
                        i += 1
                        break
                    }
                    i += 1
                }
                emit(c == "'" ? .string : .quoted, start, i)
                continue
            }
            if c == "[" {
                while i < chars.count, chars[i] != "]" { i += 1 }
                i = min(chars.count, i + 1)
                emit(.quoted, start, i)
                continue
            }
            if (c == "x" || c == "X"), i + 1 < chars.count, chars[i + 1] == "'" {
                i += 2
                while i < chars.count, chars[i] != "'" { i += 1 }
                i = min(chars.count, i + 1)
                emit(.string, start, i)
                continue
            }
            if c.isLetter || c == "_" || (c.unicodeScalars.first.map { $0.value > 127 } ?? false) {
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" || chars[i] == "$"
                        || (chars[i].unicodeScalars.first.map { $0.value > 127 } ?? false) { i += 1 }
                emit(.word, start, i)
                continue
            }
            if c.isNumber || (c == "." && i + 1 < chars.count && chars[i + 1].isNumber) {
                while i < chars.count, chars[i].isNumber || chars[i].isLetter || chars[i] == "." || chars[i] == "_"
                        || ((chars[i] == "+" || chars[i] == "-") && (chars[i - 1] == "e" || chars[i - 1] == "E")) { i += 1 }
                emit(.number, start, i)
                continue
            }
            if c == "?" || c == ":" || c == "@" || c == "$" {
                i += 1
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" { i += 1 }
                emit(.variable, start, i)
                continue
            }
            // Two-character operators stay one token; it matters only for
            // comparing token lists.
            let two = i + 1 < chars.count ? String([c, chars[i + 1]]) : ""
            if ["||", "<=", ">=", "==", "!=", "<>", "<<", ">>", "->"].contains(two) {
                i += 2
                if two == "->", i < chars.count, chars[i] == ">" { i += 1 }
                emit(.punct, start, i)
                continue
            }
            i += 1
            emit(.punct, start, i)
        }
        return out
    }

    /// The index of the `)` closing the `(` at `open`, or nil.
    static func closing(_ t: [Token], from open: Int) -> Int? {
        var depth = 0
        var i = open
        while i < t.count {
            if t[i].isOpen { depth += 1 } else if t[i].isClose { depth -= 1; if depth == 0 { return i } }
            i += 1
        }
        return nil
    }

    static func text(_ sql: String, _ t: [Token], _ from: Int, _ through: Int) -> String {
        guard from <= through else { return "" }
        let chars = Array(sql)
        return String(chars[t[from].start..<t[through].end])
    }

    struct Check: Equatable {
        /// `CONSTRAINT name`, if it has one.
        var name: String?
        /// The expression as written.
        var expression: String
        /// Its tokens' texts, for comparing two CHECKs regardless of spacing.
        var shape: [String]
        /// Identifiers it names (column candidates), lowercased.
        var identifiers: Set<String>
    }

    /// Every CHECK constraint of a `CREATE TABLE` (column and table constraints).
    static func checks(ofCreateTable sql: String) -> [Check] {
        let t = tokens(sql)
        var out: [Check] = []
        var i = 0
        while i < t.count {
            if t[i].isKeyword("CHECK"), i + 1 < t.count, t[i + 1].isOpen, let close = closing(t, from: i + 1) {
                var name: String? = nil
                if i >= 2, t[i - 2].isKeyword("CONSTRAINT") { name = t[i - 1].identifier }
                let inner = Array(t[(i + 2)..<close])
                out.append(Check(name: name, expression: close > i + 2 ? text(sql, t, i + 2, close - 1) : "",
                                 shape: inner.map { $0.kind == .word ? $0.text.lowercased() : $0.text },
                                 identifiers: Set(inner.compactMap { $0.kind == .word || $0.kind == .quoted ? $0.identifier?.lowercased() : nil })))
                i = close + 1
                continue
            }
            i += 1
        }
        return out
    }

    struct IndexParts: Equatable {
        /// Each indexed term as written, without ASC/DESC.
        var terms: [String]
        /// The partial index's WHERE expression.
        var whereClause: String?
    }

    /// The terms and WHERE of `CREATE [UNIQUE] INDEX … ON t (terms) [WHERE e]`.
    static func indexParts(_ sql: String) -> IndexParts? {
        let t = tokens(sql)
        guard let on = t.firstIndex(where: { $0.isKeyword("ON") }),
              let open = t[on...].firstIndex(where: { $0.isOpen }), let close = closing(t, from: open) else { return nil }
        var terms: [String] = []
        var depth = 0
        var termStart = open + 1
        func addTerm(_ endExclusive: Int) {
            var last = endExclusive - 1
            if last >= termStart, t[last].isKeyword("ASC") || t[last].isKeyword("DESC") { last -= 1 }
            terms.append(text(sql, t, termStart, last))
        }
        for i in (open + 1)..<close {
            if t[i].isOpen { depth += 1 } else if t[i].isClose { depth -= 1 }
            else if t[i].isComma && depth == 0 { addTerm(i); termStart = i + 1 }
        }
        addTerm(close)
        var whereClause: String? = nil
        if close + 1 < t.count, t[close + 1].isKeyword("WHERE") {
            var last = t.count - 1
            while last > close + 1, t[last].kind == .punct, t[last].text == ";" { last -= 1 }
            whereClause = text(sql, t, close + 2, last)
        }
        return IndexParts(terms: terms, whereClause: whereClause)
    }
}
