import CLibPQ

/// An error from the PostgreSQL client: a server error (with its SQLSTATE),
/// a client-side error (bad parameter, unsupported server) or a lost
/// connection. `description` is one line; it never contains a password.
public struct PGError: Error, CustomStringConvertible, Sendable {
    /// The five-character SQLSTATE, e.g. "23505"; nil for client-side and
    /// connection-establishment errors (libpq reports those without one).
    public var sqlState: String?
    /// The primary message (one line, no password ever).
    public var message: String
    /// The server's DETAIL, if any (one line).
    public var detail: String?
    /// The server went away or the connection is unusable (PQstatus is
    /// CONNECTION_BAD, or the SQLSTATE is class 08 or 57P01–57P04).
    /// False for a failed initial connection: there was nothing to lose.
    public var connectionLost: Bool

    public init(message: String, sqlState: String? = nil, detail: String? = nil, connectionLost: Bool = false) {
        self.message = PGError.oneLine(message)
        self.sqlState = sqlState
        self.detail = detail.map(PGError.oneLine)
        self.connectionLost = connectionLost
    }

    /// One line: message [: detail] [(SQLSTATE xxxxx)].
    public var description: String {
        var s = message
        if let detail, !detail.isEmpty { s += ": " + detail }
        if let sqlState { s += " (SQLSTATE \(sqlState))" }
        return s
    }

    /// True for the SQLSTATEs meaning the session is gone.
    static func isConnectionState(_ state: String?) -> Bool {
        guard let state else { return false }
        return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "57P04"].contains(state)
    }

    /// Collapses a possibly multi-line libpq message into one trimmed line.
    static func oneLine(_ text: String) -> String {
        var parts: [String] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let trimmed = line.trimmedBlanks()
            if !trimmed.isEmpty { parts.append(trimmed) }
        }
        // Runs of blanks become one space (libpq writes "FATAL:  message").
        var out = ""
        for ch in parts.joined(separator: "; ") {
            if (ch == " " || ch == "\t"), out.last == " " { continue }
            out.append(ch == "\t" ? " " : ch)
        }
        return out
    }
}

extension StringProtocol {
    func trimmedBlanks() -> String {
        let set = " \t"
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
