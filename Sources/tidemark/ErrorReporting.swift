import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

/// `not carried: index idx_x on users: names column email, which the plan drops`
func omissionLine(_ o: TargetSchema.Omission) -> String {
    "not carried: \(o.kind) \(o.name) on \(o.table): \(o.reason)\(o.blocksCutover ? " (blocks cutover unless `cutover --drop-triggers`)" : "")"
}

func omissionJSON(_ o: TargetSchema.Omission) -> String {
    var j = JSONObject()
    j.set("kind", o.kind)
    j.set("name", o.name)
    j.set("table", o.table)
    j.set("reason", o.reason)
    j.set("blocks_cutover", o.blocksCutover)
    return j.text
}

func valueJSON(_ v: Value) -> String {
    var b: [UInt8] = []
    v.appendJSON(to: &b)
    return String(decoding: b, as: UTF8.self)
}

func violationJSON(_ v: PreflightViolation) -> String {
    var j = JSONObject()
    j.set("table", v.table)
    j.set("target_table", v.targetTable)
    j.set("kind", v.kind)
    j.set("constraint", v.constraint)
    j.set("rows", v.rows)
    j.set("keys", array: v.keys.map { key in "{" + key.map { JSONObject.quote($0.name) + ":" + valueJSON($0.value) }.joined(separator: ",") + "}" })
    return j.text
}

/// ``reportingErrors(_:)``, and with `json` a library error is one JSON
/// object on stderr instead of a line: `{"error":{"code":…,"message":…}}`,
/// with the preflight's violations as data.
func reportingErrors(json: Bool, _ body: () throws -> Void) throws {
    guard json else { return try reportingErrors(body) }
    do {
        try body()
    } catch let e as MigrationError {
        var inner = JSONObject()
        inner.set("code", e.code.rawValue)
        inner.set("message", e.message)
        if e.code == .preflight { inner.set("violations", array: e.violations.map(violationJSON)) }
        var o = JSONObject()
        o.set("error", inner)
        let line = Array((o.text + "\n").utf8)
        line.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
        throw ExitCode(1)
    } catch {
        try reportingErrors { throw error }
    }
}

