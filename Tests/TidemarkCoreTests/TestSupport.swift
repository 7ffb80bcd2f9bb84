import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

#if canImport(Glibc)
import Glibc
#endif

/// Writes `text` to `path`.
func writeText(_ path: String, _ text: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

extension SplitMix {
    /// A value in `range`.
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    /// True with probability `percent` / 100.
    mutating func chance(_ percent: Int) -> Bool { Int(next() % 100) < percent }

    mutating func pick<T>(_ items: [T]) -> T { items[Int(next() % UInt64(items.count))] }
}

/// What a database holds, for "nothing changed" checks: its journal mode,
/// schema and every table's rows. Nil when the file does not exist.
struct DatabaseImage: Equatable, CustomStringConvertible {
    var journalMode: String
    var schema: [[Value]]
    var rows: [String: [[Value]]]

    init?(path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let c = try Connection(path: path, mode: .readOnly)
        defer { try? c.close() }
        journalMode = try c.values("PRAGMA journal_mode").first.map { "\($0[0])" } ?? "?"
        schema = try c.values("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name")
        rows = [:]
        for row in try c.values("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name") {
            guard case .text(let name) = row[0] else { continue }
            rows[name] = try c.values("SELECT * FROM \(quoteIdentifier(name)) ORDER BY 1, 2")
        }
    }

    var description: String { "journal \(journalMode); schema \(schema); \(rows.mapValues(\.count)) rows" }
}

/// The entries of `directory` that hold data (SQLite's -wal/-shm files,
/// which merely opening a WAL database creates, left out).
func directoryEntries(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory)
        .filter { !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") && !$0.hasSuffix("-journal") }
        .sorted()
}

/// Capture objects in a database: triggers and `_tidemark_` tables.
func captureObjects(_ path: String) throws -> [String] {
    let c = try Connection(path: path, mode: .readOnly)
    defer { try? c.close() }
    return try c.values("SELECT name FROM sqlite_schema WHERE type = 'trigger' OR name LIKE '\\_tidemark\\_%' ESCAPE '\\' ORDER BY name")
        .map { "\($0[0])" }
}

/// Every table of `plan` compares equal, or an issue naming the differences.
func expectEqualTables(_ plan: Plan, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    for c in try TableComparison.compare(plan: plan) {
        #expect(c.isEqual, "\(context): table \(c.table) differs after \(c.rowsCompared) equal rows: missing \(c.missing), extra \(c.extra), different \(c.different)",
                sourceLocation: sourceLocation)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// Time limits: Swift Testing counts a test's time from when it is
// scheduled, and synchronous tests share a cooperative pool as wide as the
// machine (two threads here), so a limit must cover the whole run of every
// test target (they share one process): 10 minutes everywhere, whatever the
// test's own length.
// The bounds that stop a stuck test are inside it: `run(seconds:)` and
// `Child.wait(timeoutSeconds:)`.

extension Migrator {
    /// `run(progress:)`, stopped after `seconds` however far it got: a
    /// migration that never catches up (a feedback loop, a stuck copy) fails
    /// the test instead of hanging it — a time limit cannot interrupt
    /// synchronous code.
    func run(seconds: Double, progress: (MigrationProgress) -> Void = { _ in }) throws -> MigrationSummary {
        let deadline = Clock.monotonicNanos() + UInt64(seconds * 1e9)
        return try run { p in
            progress(p)
            if Clock.monotonicNanos() > deadline { stop() }
        }
    }
}
