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

/// How failures are written: one text line `tidemark: …`, or with `--json`
/// anywhere on the command line one JSON object
/// `{"error":{"code":"…","message":"…"}}`. Set once by `main` from the raw
/// arguments, before parsing, so that usage errors follow it too.
enum ErrorOutput {
    nonisolated(unsafe) static var json = false

    /// Whether `arguments` ask for JSON (`--json` before any `--`).
    static func wantsJSON(_ arguments: [String]) -> Bool {
        for a in arguments {
            if a == "--" { return false }
            if a == "--json" { return true }
        }
        return false
    }
}

/// A failure of the command itself (not of a library): a code from the
/// table in ``errorCode(for:)`` and one line.
struct CommandFailure: Error, CustomStringConvertible {
    var code: String
    var message: String
    init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }
    var description: String { message }
}

/// The stable snake_case code a failure has under `--json`.
///
/// Invariant: a code, once published here, keeps its meaning; library
/// codes are mapped by name (new library codes get their own name with
/// `-` as `_`), never passed through unchecked.
func errorCode(for error: Error) -> String {
    switch error {
    case let e as CommandFailure: return e.code
    case is ValidationError: return "usage"
    case is InterruptedError: return "interrupted"
    case is PreflightError: return "preflight_violations"
    case let e as MigrationError:
        switch e.code {
        case .badPlan: return "invalid_plan"
        case .missingSource: return "source_not_found"
        case .missingTable: return "table_not_found"
        case .missingColumn: return "column_not_found"
        case .badExpression: return "invalid_expression"
        case .constraint: return "constraint_violation"
        case .preflight: return "preflight_violations"
        case .cutOver: return "already_cut_over"
        default: return snakeCase(e.code.rawValue)
        }
    case let e as LogError:
        switch e.code {
        case .io: return "io_error"
        case .locked: return "log_locked"
        case .badInput: return "invalid_input"
        case .compression: return "compression_error"
        case .notALog: return "not_a_log"
        default: return snakeCase(e.code.rawValue)
        }
    case let e as CaptureError:
        switch e.code {
        case .io: return "io_error"
        case .missingTable: return "table_not_found"
        case .badColumn: return "invalid_column"
        case .notInstalled: return "capture_not_installed"
        default: return snakeCase(e.code.rawValue)
        }
    case let e as AsOfError:
        switch e.code {
        case .io: return "io_error"
        case .badPoint: return "invalid_point"
        case .future: return "point_in_future"
        case .missingDatabase: return "database_not_found"
        case .unknownTable: return "table_not_found"
        case .badKey: return "invalid_key"
        default: return snakeCase(e.code.rawValue)
        }
    case is SQLiteError: return "sqlite_error"
    default:
        // The PostgreSQL client's errors, by their type's name: this
        // target does not link TidemarkPostgres directly.
        switch String(reflecting: type(of: error)) {
        case "TidemarkPostgres.PGError": return "postgres_error"
        case "TidemarkPostgres.PGCaptureError": return "postgres_capture_error"
        default: return "failed"
        }
    }
}

private func snakeCase(_ s: String) -> String {
    String(s.map { $0 == "-" || $0 == " " ? "_" : $0 })
}

/// The one JSON line a failure is under `--json`.
func errorJSON(_ error: Error, message: String? = nil) -> String {
    var inner = JSONObject()
    inner.set("code", errorCode(for: error))
    inner.set("message", message ?? "\(error)")
    switch error {
    case let e as MigrationError where e.code == .preflight:
        inner.set("violations", array: e.violations.map(violationJSON))
    case let e as PreflightError:
        inner.set("violations", array: e.report.violations.map(violationJSON))
    case let e as LogError:
        if let s = e.segment { inner.set("segment", s) }
        if let r = e.lsnRange {
            inner.set("first_lsn", r.lowerBound.rawValue)
            if r.upperBound.rawValue != UInt64.max { inner.set("last_lsn", r.upperBound.rawValue) }
        }
    case let e as CaptureError:
        if let t = e.table { inner.set("table", t) }
    case let e as InterruptedError:
        inner.set("signal", e.signalName)
    default:
        break
    }
    var o = JSONObject()
    o.set("error", inner)
    return o.text
}

/// Writes a failure to stderr: `tidemark: MESSAGE`, or its JSON line.
func reportError(_ error: Error) {
    if ErrorOutput.json {
        writeStandardError(errorJSON(error) + "\n")
    } else {
        printError("\(error)")
    }
}

/// Runs a command body, turning library errors into one stderr line (one
/// JSON object with `--json`) and exit 1; an interruption exits 130/143.
/// Validation errors go on to `main`, which reports them as usage (64).
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch let e as InterruptedError {
        // A long command stopped at a safe point on SIGINT/SIGTERM.
        reportError(e)
        throw ExitCode(e.exitStatus)
    } catch {
        reportError(error)
        throw ExitCode(1)
    }
}

/// ``reportingErrors(_:)``; `json` is kept for callers that pass their
/// flag, but `--json` on the command line already decides the form.
func reportingErrors(json: Bool, _ body: () throws -> Void) throws {
    if json { ErrorOutput.json = true }
    try reportingErrors(body)
}
