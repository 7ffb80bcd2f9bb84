// Debezium change events: the form of change records for `tidemark log tail
// --format debezium` (and `log history --format debezium`), for tools that
// already consume Debezium's change-event envelope from Kafka.
//
// Each record becomes the value payload Debezium writes for a row change,
// as Kafka Connect's JSON converter prints it with `schemas.enable=false`
// (payload only, no `schema` member), one JSON object per line:
//
//     {"before":{"id":1,"email":"a@x"},"after":{"id":1,"email":"b@x"},
//      "source":{"version":"tidemark","connector":"tidemark","name":"<source id>",
//                "ts_ms":1790000000000,"db":"<source id>","table":"users","lsn":7},
//      "op":"u","ts_ms":1790000000000}
//
// | envelope member  | from the record                                          |
// |------------------|----------------------------------------------------------|
// | `before`         | the before image (`null` for an insert)                  |
// | `after`          | the after image (`null` for a delete)                    |
// | `source.version` | ``DebeziumSource/version`` (default `"tidemark"`)        |
// | `source.connector` | always `"tidemark"`                                    |
// | `source.name`    | the log's source id (Debezium's logical server name)     |
// | `source.ts_ms`   | commit time, milliseconds since the epoch (floor of µs)  |
// | `source.db`      | the database name when known, else the source id         |
// | `source.table`   | the table                                                |
// | `source.lsn`     | the record's LSN                                         |
// | `op`             | `"c"` insert, `"u"` update, `"d"` delete; never `"r"`    |
// | `ts_ms`          | the commit time again (Debezium puts the connector's processing time here; a log has none, and the same log must print the same events) |
//
// Values, as Debezium writes SQLite-like columns with `binary.handling.mode=base64`:
//
// | Value          | JSON                                                |
// |----------------|-----------------------------------------------------|
// | `.null`        | `null`                                              |
// | `.integer`     | number                                              |
// | `.real` finite | number (shortest round-trip digits, e.g. `1.0`)     |
// | `.real` other  | string `"NaN"`, `"Infinity"` or `"-Infinity"` (JSON has no such numbers) |
// | `.text`        | string                                              |
// | `.blob`        | string, standard base64 with padding                |
//
// With `withKey` every line starts with the record's key as Kafka Connect's
// key payload (`{"id":42}`, key columns in key order) and a TAB, the form
// `kcat -K'\t'` reads. A delete is then followed by a tombstone, the key with
// the value `null`, as Debezium does by default (`tombstones.on.delete`) so
// Kafka's log compaction can drop the key. Without `withKey` there are no
// tombstones: a bare `null` line would say nothing.
//
// A key change (one update whose before image holds the old key, see
// ``ChangeRecord/isKeyChange``) becomes what Debezium emits when a primary
// key changes: a delete of the old key (`op` `"d"`, the before image), its
// tombstone (with `withKey`), then a create of the new key (`op` `"c"`, the
// after image), all with this record's LSN and time.

/// What a Debezium event's `source` block says about the log.
public struct DebeziumSource: Sendable, Hashable {
    /// Debezium's logical server name: the log's source id.
    public var name: String
    /// `source.db`: the database's name, or the source id when not known.
    public var database: String
    /// `source.version`.
    public var version: String

    public init(name: String, database: String? = nil, version: String = "tidemark") {
        self.name = name
        self.database = database ?? name
        self.version = version
    }
}

extension ChangeRecord {
    /// Appends this record's Debezium events to `buffer`, each line ending
    /// in `\n`: one line, or for a key change the delete and the create
    /// (and with `withKey`, a tombstone after each delete). See the tables
    /// at the top of `RecordDebezium.swift`.
    public func appendDebezium(to buffer: inout [UInt8], source: DebeziumSource, withKey: Bool) {
        if let (delete, insert) = splitKeyChange() {
            delete.appendDebeziumEvents(to: &buffer, source: source, withKey: withKey)
            insert.appendDebeziumEvents(to: &buffer, source: source, withKey: withKey)
        } else {
            appendDebeziumEvents(to: &buffer, source: source, withKey: withKey)
        }
    }

    /// This record's Debezium event lines, without newlines.
    public func debeziumLines(source: DebeziumSource, withKey: Bool = false) -> [String] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(512)
        appendDebezium(to: &buffer, source: source, withKey: withKey)
        return buffer.split(separator: 0x0A, omittingEmptySubsequences: true).map {
            String(decoding: $0, as: UTF8.self)
        }
    }

    /// The event (and tombstone) of a record that is not a key change.
    private func appendDebeziumEvents(to buffer: inout [UInt8], source: DebeziumSource, withKey: Bool) {
        if withKey {
            Self.appendDebeziumFields(key, to: &buffer)
            buffer.append(0x09)
        }
        let millis = Self.floorMillis(timestampMicros)
        buffer.append(contentsOf: #"{"before":"#.utf8)
        if let before { Self.appendDebeziumFields(before, to: &buffer) } else { buffer.append(contentsOf: "null".utf8) }
        buffer.append(contentsOf: #","after":"#.utf8)
        if let after { Self.appendDebeziumFields(after, to: &buffer) } else { buffer.append(contentsOf: "null".utf8) }
        buffer.append(contentsOf: #","source":{"version":"#.utf8)
        JSONText.appendString(source.version, to: &buffer)
        buffer.append(contentsOf: #","connector":"tidemark","name":"#.utf8)
        JSONText.appendString(source.name, to: &buffer)
        buffer.append(contentsOf: #","ts_ms":"#.utf8)
        buffer.appendDecimal(millis)
        buffer.append(contentsOf: #","db":"#.utf8)
        JSONText.appendString(source.database, to: &buffer)
        buffer.append(contentsOf: #","table":"#.utf8)
        JSONText.appendString(table, to: &buffer)
        buffer.append(contentsOf: #","lsn":"#.utf8)
        buffer.appendDecimal(lsn.rawValue)
        switch operation {
        case .insert: buffer.append(contentsOf: #"},"op":"c","ts_ms":"#.utf8)
        case .update: buffer.append(contentsOf: #"},"op":"u","ts_ms":"#.utf8)
        case .delete: buffer.append(contentsOf: #"},"op":"d","ts_ms":"#.utf8)
        }
        buffer.appendDecimal(millis)
        buffer.append(contentsOf: "}\n".utf8)
        if withKey && operation == .delete {
            Self.appendDebeziumFields(key, to: &buffer)
            buffer.append(contentsOf: "\tnull\n".utf8)
        }
    }

    /// Microseconds to whole milliseconds, rounded down (also before 1970).
    static func floorMillis(_ micros: Int64) -> Int64 {
        let q = micros / 1000
        return micros % 1000 < 0 ? q - 1 : q
    }

    static func appendDebeziumFields(_ fields: [Field], to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "{"))
        var first = true
        for field in fields {
            if !first { buffer.append(UInt8(ascii: ",")) }
            first = false
            JSONText.appendString(field.name, to: &buffer)
            buffer.append(UInt8(ascii: ":"))
            field.value.appendDebeziumJSON(to: &buffer)
        }
        buffer.append(UInt8(ascii: "}"))
    }
}

extension Value {
    /// Appends this value as a Debezium event carries it (see the table at
    /// the top of `RecordDebezium.swift`).
    public func appendDebeziumJSON(to buffer: inout [UInt8]) {
        switch self {
        case .null:
            buffer.append(contentsOf: "null".utf8)
        case .integer(let i):
            buffer.appendDecimal(i)
        case .real(let d):
            if d.isNaN {
                buffer.append(contentsOf: #""NaN""#.utf8)
            } else if d.isInfinite {
                buffer.append(contentsOf: d < 0 ? #""-Infinity""#.utf8 : #""Infinity""#.utf8)
            } else {
                // As Kafka Connect's converter prints a float64 (`1.0`, not `1`).
                Value.appendFiniteRealJSON(d, to: &buffer)
            }
        case .text(let s):
            JSONText.appendString(s, to: &buffer)
        case .blob(let bytes):
            buffer.append(UInt8(ascii: "\""))
            Base64.append(bytes, to: &buffer)
            buffer.append(UInt8(ascii: "\""))
        }
    }
}
