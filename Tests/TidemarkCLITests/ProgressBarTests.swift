import Testing
@testable import tidemark
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// The terminal progress bar as a unit: it fits the width it is given,
/// shows 0 % and 100 % as an empty and a full bar, and says nothing it
/// cannot know when the total is unknown.
@Suite struct ProgressBarTests {
    static let label = "  users → accounts  copying"

    @Test func fitsEveryWidth() {
        for width in [0, 1, 10, 20, 40, 60, 80, 100, 200] {
            for (done, total) in [(0, 100), (37, 100), (100, 100), (123_456_789, 987_654_321)] {
                let line = ProgressBar.line(label: Self.label, done: done, total: total, rowsPerSecond: 1234.5, width: width)
                #expect(line.count <= width, "width \(width), \(done)/\(total): \(line.count) characters: \(line)")
            }
            let unknown = ProgressBar.line(label: Self.label, done: 42, total: nil, rowsPerSecond: 10, width: width)
            #expect(unknown.count <= width, "width \(width), unknown total: \(unknown)")
        }
    }

    @Test func zeroPercentIsAnEmptyBar() {
        let line = ProgressBar.line(label: Self.label, done: 0, total: 1_000, rowsPerSecond: nil, width: 100)
        #expect(line.contains("[........"), "\(line)")
        #expect(!line.contains("#"), "\(line)")
        #expect(line.contains("  0%  0/1000 rows"), "\(line)")
        #expect(!line.contains("ETA"), "no rate yet, so no ETA: \(line)")
    }

    @Test func halfWayShowsRateAndETA() {
        let line = ProgressBar.line(label: Self.label, done: 500, total: 1_000, rowsPerSecond: 100, width: 120)
        #expect(line.contains(" 50%  500/1000 rows  100 rows/s  ETA 5 s"), "\(line)")
        let bar = line.split(separator: "[").last?.split(separator: "]").first.map(String.init) ?? ""
        #expect(!bar.isEmpty)
        #expect(bar.filter { $0 == "#" }.count == bar.count / 2, "\(bar)")
    }

    @Test func hundredPercentIsAFullBar() {
        let line = ProgressBar.line(label: Self.label, done: 1_000, total: 1_000, rowsPerSecond: 100, width: 100)
        #expect(line.contains("100%  1000/1000 rows"), "\(line)")
        #expect(!line.contains("."), "a full bar has no empty cell: \(line)")
        #expect(line.contains("#]"), "\(line)")
        #expect(!line.contains("ETA"), "nothing left, no ETA: \(line)")
        // More rows than estimated: still 100 %, never more.
        let over = ProgressBar.line(label: Self.label, done: 1_500, total: 1_000, rowsPerSecond: nil, width: 100)
        #expect(over.contains("100%"), "\(over)")
        // An empty table is done.
        #expect(ProgressBar.line(label: Self.label, done: 0, total: 0, rowsPerSecond: nil, width: 100).contains("100%"))
    }

    @Test func unknownTotalHasNoBarPercentOrETA() {
        let line = ProgressBar.line(label: "verifying users", done: 4_500, total: nil, rowsPerSecond: 1_200, width: 100)
        #expect(line == "verifying users  4500 rows  1200 rows/s", "\(line)")
    }

    @Test func aNarrowTerminalDropsTheBarThenCutsTheLine() {
        let narrow = ProgressBar.line(label: Self.label, done: 5, total: 10, rowsPerSecond: nil, width: 50)
        #expect(!narrow.contains("["), "no room for a bar of 10: \(narrow)")
        #expect(narrow.hasSuffix("…") || narrow.count <= 50, "\(narrow)")
        let cut = ProgressBar.fit("abcdefghij", 5)
        #expect(cut == "abcd…")
        #expect(ProgressBar.fit("abc", 5) == "abc")
    }

    @Test func durations() {
        #expect(ProgressBar.duration(0) == "0 s")
        #expect(ProgressBar.duration(4.2) == "5 s")
        #expect(ProgressBar.duration(185) == "3 min 5 s")
        #expect(ProgressBar.duration(7_800) == "2 h 10 min")
        #expect(ProgressBar.duration(.infinity) == "?")
    }
}

/// The `--json` error codes: stable names for the library's error kinds.
@Suite struct ErrorCodeTests {
    @Test func codesAreSnakeCaseAndStable() {
        let cases: [(Error, String)] = [
            (MigrationError(.badPlan, "x"), "invalid_plan"),
            (MigrationError(.missingSource, "x"), "source_not_found"),
            (MigrationError(.preflight, "x"), "preflight_violations"),
            (MigrationError(.notVerified, "x"), "not_verified"),
            (MigrationError(.cutoverTimeout, "x"), "cutover_timeout"),
            (LogError(.io, "x"), "io_error"),
            (LogError(.notALog, "x"), "not_a_log"),
            (LogError(.corruptFrame, "x"), "corrupt_frame"),
            (CaptureError(.notInstalled, "x"), "capture_not_installed"),
            (AsOfError(.beforeLogStart, "x"), "before_log_start"),
            (InterruptedError(signal: 15, place: "x"), "interrupted"),
            (CommandFailure("not_found", "x"), "not_found"),
        ]
        for (error, code) in cases {
            #expect(errorCode(for: error) == code, "\(error)")
        }
        // Every MigrationError kind has a snake_case code.
        for kind in ["bad-plan", "log-gap", "plan-changed", "schema-incomplete", "target-unavailable"] {
            let code = errorCode(for: MigrationError(.init(kind), "x"))
            #expect(code.allSatisfy { $0.isLowercase || $0 == "_" }, "\(kind) → \(code)")
        }
    }

    @Test func jsonIsAskedForBeforeTheTerminator() {
        #expect(ErrorOutput.wantsJSON(["migrate", "--json"]))
        #expect(ErrorOutput.wantsJSON(["--json", "log", "stats"]))
        #expect(!ErrorOutput.wantsJSON(["log", "append", "--", "--json"]))
        #expect(!ErrorOutput.wantsJSON(["migrate", "--jsonl"]))
    }

    @Test func anErrorIsOneJSONObject() {
        let line = errorJSON(LogError(.corruptFrame, "segment 3 is \"damaged\"\nbadly", segment: "00000003.seg", lsnRange: LSN(5)...LSN(9)))
        #expect(!line.contains("\n"))
        #expect(line == #"{"error":{"code":"corrupt_frame","message":"segment 3 is \"damaged\"\u000abadly","segment":"00000003.seg","first_lsn":5,"last_lsn":9}}"#, "\(line)")
    }
}
