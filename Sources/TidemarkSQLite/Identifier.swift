/// Quotes an SQL identifier (table, column, trigger name) for SQLite.
///
/// > If you want to use a keyword as a name, you need to quote it. …
/// > "keyword" A keyword in double-quotes is an identifier.
/// Doubling embedded double quotes makes any name safe, so every identifier
/// Tidemark puts into SQL goes through here; values are never spliced into
/// SQL at all, they are bound.
///
///     quoteIdentifier("a\"b") == "\"a\"\"b\""
public func quoteIdentifier(_ name: String) -> String {
    var quoted = "\""
    quoted.reserveCapacity(name.utf8.count + 2)
    for character in name.unicodeScalars {
        if character == "\"" { quoted += "\"\"" } else { quoted.unicodeScalars.append(character) }
    }
    quoted += "\""
    return quoted
}

/// Quotes `text` as an SQL string literal (`'it''s'`).
///
/// Only for SQL that cannot take bound parameters — the bodies of triggers
/// created by capture install, which name their own table — never for data.
func quoteStringLiteral(_ text: String) -> String {
    var quoted = "'"
    quoted.reserveCapacity(text.utf8.count + 2)
    for character in text.unicodeScalars {
        if character == "'" { quoted += "''" } else { quoted.unicodeScalars.append(character) }
    }
    quoted += "'"
    return quoted
}
