extension ChangeRecord {
    /// Parses a key given as a JSON object (`{"order_id":7,"line":2}`), with
    /// the same value rules as JSON lines.
    public static func parseJSONKey(_ text: String) throws(LogError) -> [Field] {
        var parser = JSONLineParser(bytes: Array(text.utf8), lineNumber: 1)
        parser.skipWhitespace()
        let fields = try parser.parseImage("key")
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else {
            throw LogError(.badInput, "the key has text after its closing brace")
        }
        guard !fields.isEmpty else { throw LogError(.badInput, "the key object is empty") }
        return fields
    }

    /// A block for `tidemark log history`: a heading line, then one line per
    /// column with the before and after values side by side; changed columns
    /// are marked with `*`.
    ///
    ///     LSN 7  2026-11-25T11:00:00.123456Z  update  users  id=1
    ///       column  before   after
    ///       email   'a@x'    'b@x'   *
    ///       name    'Bo'     'Bo'
    public var historyText: String {
        var out = "LSN \(lsn)  \(Timestamp(microsSinceEpoch: timestampMicros))  \(operation)  \(table)  "
        out += key.map { "\($0.name)=\(RecordText.literal($0.value))" }.joined(separator: ", ")
        var names: [String] = []
        for f in (before ?? []) + (after ?? []) where !names.contains(f.name) { names.append(f.name) }
        let b = Dictionary((before ?? []).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let a = Dictionary((after ?? []).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let rows = names.map { name -> (String, String, String, Bool) in
            let bv = b[name].map(RecordText.literal) ?? ""
            let av = a[name].map(RecordText.literal) ?? ""
            let changed = operation == .update && b[name] != a[name]
            return (name, bv, av, changed)
        }
        let w0 = max(6, rows.map { $0.0.count }.max() ?? 0)
        let w1 = max(6, rows.map { $0.1.count }.max() ?? 0)
        let w2 = max(5, rows.map { $0.2.count }.max() ?? 0)
        func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
        func trimmed(_ s: String) -> String { var s = s; while s.last == " " { s.removeLast() }; return s }
        out += "\n  " + pad("column", w0) + "  " + pad("before", w1) + "  after"
        for r in rows {
            out += "\n" + trimmed("  " + pad(r.0, w0) + "  " + pad(r.1, w1) + "  " + pad(r.2, w2) + (r.3 ? "  *" : ""))
        }
        return out
    }
}
