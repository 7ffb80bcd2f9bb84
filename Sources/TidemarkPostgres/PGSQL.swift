import TidemarkLog

/// Quoting helpers for SQL text sent to PostgreSQL, and conninfo redaction.
public enum PGSQL {
    /// A quoted identifier: double quotes around, inner double quotes doubled.
    /// Always quoted, so case and reserved words are kept as given.
    public static func ident(_ name: String) -> String {
        var out = "\""
        for ch in name {
            if ch == "\"" { out += "\"\"" } else { out.append(ch) }
        }
        return out + "\""
    }

    /// `schema.name`, both quoted.
    public static func qualified(_ schema: String, _ name: String) -> String {
        ident(schema) + "." + ident(name)
    }

    /// A string literal. Quotes are doubled; a string holding a backslash is
    /// written as an escape string (E'…' with backslashes doubled) so the
    /// result means the same whatever `standard_conforming_strings` is.
    public static func literal(_ text: String) -> String {
        let hasBackslash = text.contains("\\")
        var out = hasBackslash ? "E'" : "'"
        for ch in text {
            switch ch {
            case "'": out += "''"
            case "\\": out += "\\\\"
            default: out.append(ch)
            }
        }
        return out + "'"
    }

    /// A value as an SQL literal PostgreSQL parses back exactly: integers
    /// bare, doubles as `'<shortest round-trip>'::float8` (NaN, ±Infinity
    /// included), text as a string literal, blobs as `'\x…'::bytea`.
    public static func literal(_ value: Value) -> String {
        switch value {
        case .null: return "NULL"
        case .integer(let i): return String(i)
        case .real(let d): return "'" + PGValues.float8Text(d) + "'::float8"
        case .text(let s): return literal(s)
        case .blob(let b): return "'\\x" + PGValues.hex(b) + "'::bytea"
        }
    }

    /// The conninfo without its password; see `PGConnection.redacted`.
    public static func redactedConninfo(_ conninfo: String) -> String {
        let trimmed = conninfo.drop(while: { $0 == " " || $0 == "\t" || $0 == "\n" })
        for scheme in ["postgresql://", "postgres://"] where trimmed.lowercased().hasPrefix(scheme) {
            return redactedURI(String(trimmed), schemeLength: scheme.count)
        }
        return redactedKeyValue(conninfo)
    }

    /// URI form: the userinfo loses everything from its first ':' (the
    /// password, percent-encoded or not), and a `password` query parameter
    /// is dropped. The userinfo ends at the last '@' before the path/query.
    static func redactedURI(_ uri: String, schemeLength: Int) -> String {
        let chars = Array(uri)
        let scheme = String(chars[0..<schemeLength])
        let afterScheme = Array(chars[schemeLength...])
        // The query part starts at the first '?'; the authority ends at the
        // first '/' after the last '@' (a '/' inside a password is tolerated).
        let queryStart = afterScheme.firstIndex(of: "?") ?? afterScheme.count
        var head = Array(afterScheme[0..<queryStart])
        let query = Array(afterScheme[queryStart...])
        if let at = head.lastIndex(of: "@") {
            var userinfo = Array(head[0..<at])
            if let colon = userinfo.firstIndex(of: ":") { userinfo = Array(userinfo[0..<colon]) }
            let hostPart = Array(head[(at + 1)...])
            head = userinfo.isEmpty ? hostPart : userinfo + ["@"] + hostPart
        }
        let rest = head
        var out = scheme + String(rest)
        if !query.isEmpty {
            let params = String(query.dropFirst()).split(separator: "&", omittingEmptySubsequences: false)
            let kept = params.filter { param in
                let key = param.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
                return percentDecoded(key).lowercased() != "password"
            }
            if !kept.isEmpty { out += "?" + kept.joined(separator: "&") }
        }
        return out
    }

    /// key=value form: the `password` pair is removed; other pairs are kept
    /// as written (values may be single-quoted with backslash escapes).
    /// Unparsable input yields a placeholder rather than risk a leak.
    static func redactedKeyValue(_ conninfo: String) -> String {
        let chars = Array(conninfo)
        var i = 0
        var pairs: [String] = []
        func isSpace(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }
        while true {
            while i < chars.count, isSpace(chars[i]) { i += 1 }
            if i >= chars.count { break }
            var key = ""
            while i < chars.count, chars[i] != "=", !isSpace(chars[i]) { key.append(chars[i]); i += 1 }
            while i < chars.count, isSpace(chars[i]) { i += 1 }
            guard i < chars.count, chars[i] == "=", !key.isEmpty else { return "(conninfo not shown: it could not be parsed)" }
            i += 1
            while i < chars.count, isSpace(chars[i]) { i += 1 }
            var value = ""
            if i < chars.count, chars[i] == "'" {
                value.append("'"); i += 1
                var closed = false
                while i < chars.count {
                    let c = chars[i]
                    if c == "\\", i + 1 < chars.count { value.append(c); value.append(chars[i + 1]); i += 2; continue }
                    value.append(c); i += 1
                    if c == "'" { closed = true; break }
                }
                guard closed else { return "(conninfo not shown: it could not be parsed)" }
            } else {
                while i < chars.count, !isSpace(chars[i]) {
                    if chars[i] == "\\", i + 1 < chars.count { value.append(chars[i]); value.append(chars[i + 1]); i += 2; continue }
                    value.append(chars[i]); i += 1
                }
            }
            if key.lowercased() != "password" { pairs.append(key + "=" + value) }
        }
        return pairs.joined(separator: " ")
    }

    static func percentDecoded(_ s: String) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(s.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "%"), i + 2 < utf8.count,
               let h = hexNibble(utf8[i + 1]), let l = hexNibble(utf8[i + 2]) {
                bytes.append(h << 4 | l); i += 3
            } else { bytes.append(utf8[i]); i += 1 }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func hexNibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
