import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkSQLite

extension CutoverTests {
    /// The cutover journal as an enum, stored in the same columns every
    /// earlier version wrote (`cutover_state` text, `cutover_lsn`,
    /// `cutover_at`, `cutover_pause_us`), checked on real target files.
    @Suite struct CutoverStateStorage {
        static let states: [CutoverState?] = [
            nil,
            .prepared(lsn: LSN(41), atMicros: 1_700_000_000_000_000),
            .done(lsn: LSN(42), atMicros: 1_700_000_000_000_001, pauseMicros: 1_234),
            .done(lsn: LSN(43), atMicros: 1_700_000_000_000_002, pauseMicros: nil),
            .rolledBack(lsn: LSN(44), atMicros: 1_700_000_000_000_003, pauseMicros: 99),
            .rolledBack(lsn: nil, atMicros: nil, pauseMicros: nil),
        ]

        /// A target holding a migration state, as `migrate` creates it.
        static func withTarget(_ body: (Connection) throws -> Void) async throws {
            try await withTemporaryDirectory { dir in
                let c = try Connection(path: dir + "/target.db", mode: .readWriteCreate)
                let state = MigrationState(sourceID: "src", sourcePath: dir + "/source.db", appliedLSN: LSN(40),
                                           appliedTimestampMicros: 0, startedAtMicros: 0, caughtUpAtMicros: nil, tables: [])
                try c.transaction(.immediate) { try StateTables.insert(state, addedColumns: [:], into: c) }
                try body(c)
            }
        }

        @Test(arguments: states)
        func roundTripsThroughTheTarget(_ cutover: CutoverState?) async throws {
            try await Self.withTarget { c in
                var state = try #require(try StateTables.load(c))
                state.cutover = cutover
                try c.transaction(.immediate) { try StateTables.saveCutover(state, in: c) }
                #expect(try StateTables.load(c)?.cutover == cutover)
                #expect(try StateTables.position(c)?.cutover == cutover?.kind)
            }
        }

        /// Rows as earlier versions wrote them (the strings they stored)
        /// read as the enum; so the on-disk format did not change.
        @Test func readsWhatEarlierVersionsWrote() async throws {
            try await Self.withTarget { c in
                func set(_ sql: String) throws -> CutoverState? {
                    try c.execute("UPDATE _tidemark_migration SET \(sql) WHERE id = 1")
                    return try StateTables.load(c)?.cutover
                }
                #expect(try set("cutover_state = 'prepared', cutover_lsn = 7, cutover_at = 8, cutover_pause_us = NULL") == .prepared(lsn: LSN(7), atMicros: 8))
                #expect(try set("cutover_state = 'done', cutover_pause_us = 9") == .done(lsn: LSN(7), atMicros: 8, pauseMicros: 9))
                #expect(try set("cutover_state = 'rolled-back'") == .rolledBack(lsn: LSN(7), atMicros: 8, pauseMicros: 9))
                #expect(try set("cutover_state = NULL, cutover_lsn = NULL, cutover_at = NULL, cutover_pause_us = NULL") == nil)
                let raw = try c.prepare("SELECT cutover_state FROM _tidemark_migration")
                var state = try #require(try StateTables.load(c))
                state.cutover = .rolledBack(lsn: LSN(7), atMicros: 8, pauseMicros: nil)
                try StateTables.saveCutover(state, in: c)
                #expect(try raw.step() && raw.columnText(0) == "rolled-back", "the stored string changed")
            }
        }

        /// A state no version writes is one clear error, not a guess. (The
        /// SQLite table's CHECK admits only the three names; a PostgreSQL
        /// target's column has no such check, so the decoder refuses too.)
        @Test func refusesWhatNoVersionWrites() async throws {
            try await Self.withTarget { c in
                try c.execute("UPDATE _tidemark_migration SET cutover_state = 'done', cutover_lsn = NULL, cutover_at = 8 WHERE id = 1")
                #expect { try StateTables.load(c) } throws: { ($0 as? MigrationError)?.message.contains("has no LSN or time") == true }
            }
            #expect { try CutoverState(stored: "half-done", lsn: LSN(7), atMicros: 8, pauseMicros: nil) } throws: {
                ($0 as? MigrationError)?.message.contains("unknown cutover state 'half-done'") == true
            }
            #expect { try CutoverState(stored: "prepared", lsn: nil, atMicros: 8, pauseMicros: nil) } throws: {
                ($0 as? MigrationError)?.code == .foreignState
            }
        }

        /// A rollback keeps the switch it undid.
        @Test func rollingBackKeepsTheSwitch() {
            #expect(CutoverState.done(lsn: LSN(5), atMicros: 6, pauseMicros: 7).rolledBack == .rolledBack(lsn: LSN(5), atMicros: 6, pauseMicros: 7))
            #expect(CutoverState.prepared(lsn: LSN(5), atMicros: 6).rolledBack == .rolledBack(lsn: LSN(5), atMicros: 6, pauseMicros: nil))
            #expect(CutoverState.done(lsn: LSN(5), atMicros: 6, pauseMicros: nil).lsn == LSN(5))
        }
    }
}
