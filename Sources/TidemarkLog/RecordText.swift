extension ChangeRecord {
    /// One line for a person reading `tidemark log tail --format text` or
    /// `tidemark log history`: what changed, not every column of the row.
    ///
    /// Fields are separated by two spaces:
    ///
    ///     LSN  TIME                         OP      TABLE  KEY   CHANGE
    ///     7    2026-11-25T11:00:00.123456Z  update  users  id=1  email: 'a@x' → 'b@x', name: 'Bo'
    ///     8    2026-11-25T11:00:01.000000Z  insert  users  id=2  + id=2, email='c@x', name=NULL
    ///     9    2026-11-25T11:00:02.000000Z  delete  users  id=1  - id=1, email='b@x', name='Bo'
    ///
    /// (the header and the column alignment are for this comment only; the
    /// line itself is not padded).
    ///
    /// - KEY: `column=value` for each key column, joined by `, `.
    /// - insert: `+` and the whole after image; delete: `-` and the whole
    ///   before image, as `column=value` joined by `, `.
    /// - update: only the columns whose value changed, as
    ///   `column: before → after`, in after-image order. A column in the
    ///   after image but not the before image (capture limited to some
    ///   columns) shows as `column: after`; one only in the before image as
    ///   `column: before → (absent)`. An update that changed nothing shows
    ///   `(no column changed)`.
    ///
    /// Values are in SQL literal form (``Value/description``: `NULL`, `42`,
    /// `1.5`, `'it''s'`, `X'00FF'`), with two changes that keep a record on
    /// one readable line: control characters inside text are shown as
    /// escapes (`\n`, `\t`, `\r`, `\u{1B}`), and a blob longer than 32
    /// bytes shows its first 16 bytes and its size (`X'000102030405060708090A0B0C0D0E0F…' (4096 bytes)`).
    /// The text form is for reading, not for parsing back; use the JSON line
    /// form (``jsonLine``) to keep values exact.
    public var textLine: String {
        var out = ""
        out += lsn.description
        out += "  "
        out += Timestamp(microsSinceEpoch: timestampMicros).description
        out += "  "
        out += operation.description
        out += "  "
        out += RecordText.readable(table)
        out += "  "
        RecordText.appendAssignments(key, to: &out)
        out += "  "
        switch operation {
        case .insert:
            out += "+ "
            RecordText.appendAssignments(after ?? [], to: &out)
        case .delete:
            out += "- "
            RecordText.appendAssignments(before ?? [], to: &out)
        case .update:
            RecordText.appendChanges(before: before ?? [], after: after ?? [], to: &out)
        }
        return out
    }
}

/// Helpers for ``ChangeRecord/textLine``.
enum RecordText {
    static let blobBytesShownMax = 16
    static let blobBytesInFullMax = 32

    static func appendAssignments(_ fields: [Field], to out: inout String) {
        for (i, field) in fields.enumerated() {
            if i > 0 { out += ", " }
            out += readable(field.name)
            out += "="
            out += literal(field.value)
        }
    }

    static func appendChanges(before: [Field], after: [Field], to out: inout String) {
        var beforeByName: [String: Value] = [:]
        beforeByName.reserveCapacity(before.count)
        for field in before { beforeByName[field.name] = field.value }
        let afterNames = Set(after.map(\.name))

        var count = 0
        func separate() {
            if count > 0 { out += ", " }
            count += 1
        }
        for field in after {
            if let old = beforeByName[field.name] {
                if old == field.value { continue }
                separate()
                out += "\(readable(field.name)): \(literal(old)) → \(literal(field.value))"
            } else {
                separate()
                out += "\(readable(field.name)): \(literal(field.value))"
            }
        }
        for field in before where !afterNames.contains(field.name) {
            separate()
            out += "\(readable(field.name)): \(literal(field.value)) → (absent)"
        }
        if count == 0 { out += "(no column changed)" }
    }

    /// SQL literal form, shortened for blobs and kept on one line for text.
    static func literal(_ value: Value) -> String {
        switch value {
        case .text:
            return readable(value.description)
        case .blob(let bytes) where bytes.count > blobBytesInFullMax:
            let head = Value.blob(Array(bytes.prefix(blobBytesShownMax))).description
            return "\(head.dropLast())…' (\(bytes.count) bytes)"
        default:
            return value.description
        }
    }

    /// `s` with control characters (C0, DEL, C1, and the line and paragraph
    /// separators) escaped, so it cannot break or reshape the line.
    static func readable(_ s: String) -> String {
        func isControl(_ v: UInt32) -> Bool {
            v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029
        }
        guard s.unicodeScalars.contains(where: { isControl($0.value) }) else { return s }
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where isControl(scalar.value):
                out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
