import TidemarkTestSupport
import Foundation
import Testing
import TidemarkCore
import TidemarkLog
import TidemarkSQLite

/// Every cutover test runs in this one serialized suite: each starts several
/// processes and measures a pause, which neighbours on a 2-core machine
/// would distort.
@Suite(.serialized) struct CutoverTests {}

/// The models the writers' reports add up to.
struct Outcome {
    /// Initial rows plus every acknowledged write, wherever it landed.
    var all: Model
    /// Initial rows plus the writes acknowledged by the source.
    var onSource: Model
    var acknowledged = 0
    var refused = 0
}

/// Checks the writers' reports against the contract of a cutover and
/// returns the models they add up to:
/// - no writer failed otherwise than by a guard refusal (no busy timeouts,
///   no lost rows, no crashes);
/// - every refusal is a guard's: it starts with `tidemark:` and names where
///   the table went (after a cutover) or came back to (after a rollback);
/// - with `monotone`, once a writer was refused by the old tables no later
///   write of its own was acknowledged there (nothing was written where
///   nobody reads);
/// - with `expectSwitch`, every plain writer was refused at least once and
///   every routing writer wrote to the target (the test covered the switch).
func checkWriters(_ reports: [WriterReport], _ s: Scenario, expectSwitch: Bool, monotone: Bool = true,
                  sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
    var outcome = Outcome(all: s.initialModel(), onSource: s.initialModel())
    for r in reports {
        if let exit = r.exitSummary { Issue.record("\(r.name) did not finish cleanly: \(exit)", sourceLocation: sourceLocation) }
        let failures = r.failures
        #expect(failures.isEmpty, "\(r.name): \(failures.count) writes failed otherwise than by a guard, e.g. \(failures.prefix(3))", sourceLocation: sourceLocation)
        var refusedBySource = false
        var lateAcks = 0
        var badRefusals: [String] = []
        var targetAcks = 0
        for e in r.events {
            switch e {
            case .ok(let w, let store):
                outcome.all.apply(w)
                outcome.acknowledged += 1
                if store == .source {
                    outcome.onSource.apply(w)
                    if refusedBySource { lateAcks += 1 }
                } else {
                    targetAcks += 1
                }
            case .refused(let message, let table, let store):
                outcome.refused += 1
                if store == .source { refusedBySource = true }
                let expected = store == .source ? defaultRefusalPrefix(s, table: table) : rolledBackRefusal(s, table: table)
                if !message.hasPrefix(expected), badRefusals.count < 3 { badRefusals.append(message) }
            case .failed:
                break
            }
        }
        #expect(badRefusals.isEmpty, "\(r.name): refusals that do not name the new location: \(badRefusals)", sourceLocation: sourceLocation)
        if monotone {
            #expect(lateAcks == 0, "\(r.name): \(lateAcks) writes to the old tables were acknowledged after a guard had refused one", sourceLocation: sourceLocation)
        }
        if expectSwitch {
            if r.routing {
                #expect(targetAcks > 0, "\(r.name) never wrote to the target after the switch", sourceLocation: sourceLocation)
            } else {
                #expect(!r.refusals.isEmpty, "\(r.name) made no write after the switch (the test did not cover it)", sourceLocation: sourceLocation)
            }
        }
    }
    return outcome
}

/// `tidemark: items has moved to <target> table accounts` (or, same file,
/// `… moved to items_v2`): the start of a source guard's message.
func defaultRefusalPrefix(_ s: Scenario, table: String) -> String {
    let moved = table == "items" ? s.layout.items.table : s.layout.linesTable
    let place = s.layout.sameFile ? moved : "\(s.target) table \(moved)"
    return "tidemark: \(table) has moved to \(place) (cutover at LSN "
}

/// `tidemark: accounts was rolled back to <source> table items; write there`:
/// a target guard's message after a rollback.
func rolledBackRefusal(_ s: Scenario, table: String) -> String {
    let back = table == s.layout.items.table ? "items" : "lines"
    return "tidemark: \(table) was rolled back to \(s.source) table \(back); write there"
}

/// The cutover's commit point and fences agree: the source has the switch
/// record exactly when it has a guard on every migrated table, and the
/// Router says the same.
@discardableResult
func expectNeverHalf(_ s: Scenario, _ when: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
    let record = try s.switchRecordLSN()
    let guards = try s.guards(in: s.source).filter { $0.hasPrefix("_tidemark_guard_items_") || $0.hasPrefix("_tidemark_guard_lines_") }
    let route = try Router(plan: try s.loadPlan()).route()
    if record != nil {
        #expect(guards.count == 6, "\(when): switch record present but guards are \(guards)", sourceLocation: sourceLocation)
        #expect(route.authority == .target, "\(when): switch record present but the Router says \(route.authority)", sourceLocation: sourceLocation)
    } else {
        #expect(guards.isEmpty, "\(when): no switch record but guards \(guards)", sourceLocation: sourceLocation)
        #expect(route.authority == .source, "\(when): no switch record but the Router says \(route.authority)", sourceLocation: sourceLocation)
    }
    return record != nil
}

/// Checks a finished cutover's `--json` output and returns its LSN.
@discardableResult
func expectCutoverJSON(_ f: Finished, alreadyDone: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws -> Int64 {
    try #require(f.status == 0 && f.reason == .exit, "cutover failed: \(f.summary)", sourceLocation: sourceLocation)
    let j = try f.json()
    #expect(j.bool("cut_over") == true, "\(f.stdoutText)", sourceLocation: sourceLocation)
    #expect(j.bool("dry_run") == false, sourceLocation: sourceLocation)
    #expect(j.bool("already_done") == alreadyDone, "\(f.stdoutText)", sourceLocation: sourceLocation)
    let pause = try #require(j.double("pause_ms"), "no pause_ms in \(f.stdoutText)", sourceLocation: sourceLocation)
    if !alreadyDone {
        #expect(pause > 0 && pause < 2_000, "pause_ms \(pause)", sourceLocation: sourceLocation)
    }
    let lsn = try #require(j.int("lsn"), "no lsn in \(f.stdoutText)", sourceLocation: sourceLocation)
    #expect(j.string("at") != nil, sourceLocation: sourceLocation)
    return lsn
}

/// After a cutover: the switch is recorded in both stores and every old table is fenced.
func expectSwitched(_ s: Scenario, lsn: Int64?, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(try s.journal() == "done", "target journal", sourceLocation: sourceLocation)
    let record = try s.switchRecordLSN()
    #expect(record != nil, "no switch record in the source", sourceLocation: sourceLocation)
    if let lsn { #expect(record == lsn, "switch record LSN \(record ?? -1), cutover said \(lsn)", sourceLocation: sourceLocation) }
    try expectNeverHalf(s, "after cutover", sourceLocation: sourceLocation)
}

/// Writes one row to `table` in `path` and returns the error message, or nil if it was accepted.
func tryWrite(_ path: String, _ sql: String) throws -> String? {
    let c = try Connection(path: path, mode: .readWrite, busyTimeoutMillis: 10_000)
    do {
        try c.execute(sql)
        return nil
    } catch {
        return error.message
    }
}
