import TidemarkCore
import TidemarkLog

// JSON data for `--json` outputs: values in the log's JSON form (see
// RecordJSON.swift), keys as objects of their columns (`{"id":42}`), times as
// RFC 3339 strings. Never a Swift description of a value.

/// One value in the log's JSON form (`42`, `"a"`, `null`, `{"$blob":"…"}`).
func jsonValue(_ v: Value) -> String {
    var buffer: [UInt8] = []
    v.appendJSON(to: &buffer)
    return String(decoding: buffer, as: UTF8.self)
}

/// A key as an object of its columns, in key order: `{"id":42}`. When the
/// column names are not known (or do not fit), the values alone as an array.
func jsonKey(_ values: [Value], columns: [String]?) -> String {
    guard let columns, columns.count == values.count else {
        return "[" + values.map(jsonValue).joined(separator: ",") + "]"
    }
    return "{" + zip(columns, values).map { JSONObject.quote($0) + ":" + jsonValue($1) }.joined(separator: ",") + "}"
}

/// A time as RFC 3339 text with microseconds (`"2026-11-25T11:00:00.123456Z"`).
func jsonTime(_ micros: Int64?) -> String? {
    micros.map { Timestamp(microsSinceEpoch: $0).description }
}

/// An LSN range as `{"first_lsn":5,"last_lsn":9}`.
func jsonLSNRange(_ r: ClosedRange<LSN>) -> String {
    var j = JSONObject()
    j.set("first_lsn", r.lowerBound.rawValue)
    j.set("last_lsn", r.upperBound.rawValue)
    return j.text
}
