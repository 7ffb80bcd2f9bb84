import Foundation
import TidemarkLog
import TidemarkTestSupport
@testable import TidemarkSQLite

/// Runs `body` with a connection to a new database file in a temporary directory.
func withTemporaryDatabase<R>(_ body: (Connection, String) throws -> R) throws -> R {
    try withTemporaryDirectory { directory in
        let path = directory + "/test.db"
        let connection = try Connection(path: path, mode: .readWriteCreate)
        defer { try? connection.close() }
        return try body(connection, path)
    }
}

/// Doubles that are hard to print and parse: subnormals, extremes,
/// neighbours of powers of two and ten, and values SQLite 3.40's quote() gets wrong.
let awkwardDoubles: [Double] = {
    var values: [Double] = [
        0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3, 1e308, -1e308, 1e-308, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
        2.2250738585072014e-308, Double.leastNormalMagnitude.nextDown, .greatestFiniteMagnitude,
        -.greatestFiniteMagnitude, .leastNormalMagnitude, .leastNonzeroMagnitude,
        0.30000000000000004, 123456789012345678.0, 9007199254740993.0, 1.0, -1.0, 100.0,
        8.228927346002939e-297, 6.203765383161799e-298, 4.0858482746520603e-39,
        2.4538196538123904e-296, .pi, -.pi, 1e15, 1e16, 1e17, 1e22, 1e23,
    ]
    for exponent in stride(from: -1074, through: 1023, by: 37) {
        let v = Double(sign: .plus, exponent: exponent, significand: 1)
        values += [v, v.nextUp, v.nextDown, -v]
    }
    var generator = SplitMix64(seed: 0x5EED)
    for _ in 0..<3000 {
        let d = Double(bitPattern: generator.next())
        if d.isFinite { values.append(d) }
    }
    return values
}()


/// Runs `script` through the `sqlite3` command-line shell, stopping at the first error.
@discardableResult
func sqlite3CLI(_ path: String, _ script: String) throws -> String {
    try runProcess("sqlite3", ["-bail", path], stdin: Array(script.utf8)).succeeded("sqlite3")
}

/// Runs Python code with `sys.argv[1]` set to `path`.
@discardableResult
func python(_ path: String, _ code: String) throws -> String {
    try runProcess("python3", ["-c", code, path]).succeeded("python3")
}

extension SourceID: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self.init(value) }
}
