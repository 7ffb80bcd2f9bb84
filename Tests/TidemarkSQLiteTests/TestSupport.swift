import Foundation
import TidemarkLog
import TidemarkTestSupport
@testable import TidemarkSQLite

/// Runs `body` with a fresh directory that is removed afterwards.
func withTemporaryDirectory<R>(_ body: (URL) throws -> R) throws -> R {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("tidemark-sqlite-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url)
}

/// Runs `body` with a connection to a new database file in a temporary directory.
func withTemporaryDatabase<R>(_ body: (Connection, String) throws -> R) throws -> R {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("test.db").path
        let connection = try Connection(path: path, mode: .readWriteCreate)
        defer { try? connection.close() }
        return try body(connection, path)
    }
}

extension Connection {
    /// All rows of `sql` as values, for assertions.
    func values(_ sql: String, _ arguments: [Value] = []) throws -> [[Value]] {
        let statement = try prepare(sql)
        try statement.bind(arguments)
        return try statement.rows { row in
            (0..<row.columnCount).map { row.columnValue($0) }
        }
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


struct ProcessFailure: Error, CustomStringConvertible {
    var description: String
}

/// Runs an external program to completion, feeding `input` on stdin; returns
/// stdout, throws with stderr on a non-zero exit.
@discardableResult
func run(_ executable: String, _ arguments: [String], input: String = "") throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [executable] + arguments
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try stdin.fileHandleForWriting.close()
    // Read both pipes to the end before waiting, so a full pipe cannot block the child.
    let group = DispatchGroup()
    nonisolated(unsafe) var errData = Data()
    group.enter()
    DispatchQueue.global().async {
        errData = stderr.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = stdout.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let out = String(decoding: outData, as: UTF8.self)
    let err = String(decoding: errData, as: UTF8.self)
    guard process.terminationStatus == 0 else {
        throw ProcessFailure(description: "\(executable) exited \(process.terminationStatus): \(err)")
    }
    return out
}

/// Runs `script` through the `sqlite3` command-line shell, stopping at the first error.
@discardableResult
func sqlite3CLI(_ path: String, _ script: String) throws -> String {
    try run("sqlite3", ["-bail", path], input: script)
}

/// Runs Python code with `sys.argv[1]` set to `path`.
@discardableResult
func python(_ path: String, _ code: String) throws -> String {
    try run("python3", ["-c", code, path])
}

extension SourceID: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self.init(value) }
}
