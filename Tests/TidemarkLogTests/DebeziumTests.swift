import Foundation
import TidemarkTestSupport
import Testing
@testable import TidemarkLog

/// `--format debezium`: Debezium's change-event envelope (payload only, as
/// Kafka Connect's JSON converter writes it with schemas disabled), checked
/// byte for byte in the encoder and through the real `tidemark` executable.
@Suite struct DebeziumTests {
    static let source = DebeziumSource(name: "src-1")
    static let micros: Int64 = 1_790_000_000_123_456  // ms 1790000000123

    static func record(_ op: ChangeOperation, key: [Field], before: [Field]?, after: [Field]?, table: String = "users") -> ChangeRecord {
        ChangeRecord(lsn: LSN(7), timestampMicros: micros, table: table, operation: op, key: key, before: before, after: after)
    }

    static func src(_ table: String = "users", lsn: UInt64 = 7) -> String {
        #"{"version":"tidemark","connector":"tidemark","name":"src-1","ts_ms":1790000000123,"db":"src-1","table":""#
            + table + #"","lsn":\#(lsn)}"#
    }

    @Test func insertIsACreate() {
        let r = Self.record(.insert, key: [Field("id", .integer(42))], before: nil,
                            after: [Field("id", .integer(42)), Field("email", .text("a@x"))])
        #expect(r.debeziumLines(source: Self.source) == [
            #"{"before":null,"after":{"id":42,"email":"a@x"},"source":"# + Self.src() + #","op":"c","ts_ms":1790000000123}"#,
        ])
        #expect(r.debeziumLines(source: Self.source, withKey: true) == [
            #"{"id":42}"# + "\t" + #"{"before":null,"after":{"id":42,"email":"a@x"},"source":"# + Self.src() + #","op":"c","ts_ms":1790000000123}"#,
        ])
    }

    @Test func updateCarriesBothImages() {
        let r = Self.record(.update, key: [Field("id", .integer(1))],
                            before: [Field("id", .integer(1)), Field("email", .text("a@x"))],
                            after: [Field("id", .integer(1)), Field("email", .text("b@x"))])
        #expect(r.debeziumLines(source: Self.source) == [
            #"{"before":{"id":1,"email":"a@x"},"after":{"id":1,"email":"b@x"},"source":"# + Self.src() + #","op":"u","ts_ms":1790000000123}"#,
        ])
    }

    @Test func deleteIsFollowedByATombstoneOnlyWithKey() {
        let r = Self.record(.delete, key: [Field("id", .integer(1))],
                            before: [Field("id", .integer(1)), Field("email", .text("b@x"))], after: nil)
        let event = #"{"before":{"id":1,"email":"b@x"},"after":null,"source":"# + Self.src() + #","op":"d","ts_ms":1790000000123}"#
        #expect(r.debeziumLines(source: Self.source) == [event])
        #expect(r.debeziumLines(source: Self.source, withKey: true) == [
            #"{"id":1}"# + "\t" + event,
            #"{"id":1}"# + "\tnull",
        ])
    }

    @Test func keyChangeIsDeleteTombstoneCreate() {
        let r = Self.record(.update, key: [Field("id", .integer(2))],
                            before: [Field("id", .integer(1)), Field("n", .text("x"))],
                            after: [Field("id", .integer(2)), Field("n", .text("x"))])
        #expect(r.isKeyChange)
        let delete = #"{"before":{"id":1,"n":"x"},"after":null,"source":"# + Self.src() + #","op":"d","ts_ms":1790000000123}"#
        let create = #"{"before":null,"after":{"id":2,"n":"x"},"source":"# + Self.src() + #","op":"c","ts_ms":1790000000123}"#
        #expect(r.debeziumLines(source: Self.source) == [delete, create])
        #expect(r.debeziumLines(source: Self.source, withKey: true) == [
            #"{"id":1}"# + "\t" + delete,
            #"{"id":1}"# + "\tnull",
            #"{"id":2}"# + "\t" + create,
        ])
    }

    @Test func compositeKeyKeepsKeyOrder() {
        let key = [Field("order_id", .integer(7)), Field("line", .integer(2))]
        let r = Self.record(.insert, key: key, before: nil,
                            after: [Field("line", .integer(2)), Field("order_id", .integer(7)), Field("qty", .integer(3))])
        let lines = r.debeziumLines(source: Self.source, withKey: true)
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix(#"{"order_id":7,"line":2}"# + "\t" + #"{"before":null,"after":{"line":2,"order_id":7,"qty":3},"#) == true)
    }

    @Test func valuesMapAsDebeziumWritesThem() {
        let after = [
            Field("id", .integer(Int64.min)),
            Field("n", .null),
            Field("r", .real(1)),
            Field("small", .real(-0.0)),
            Field("big", .real(1e308)),
            Field("nan", .real(.nan)),
            Field("inf", .real(.infinity)),
            Field("ninf", .real(-.infinity)),
            Field("t", .text("caf\u{e9} \"q\" \\ \n\u{1}")),
            Field("b", .blob([0, 1, 0xFF])),
            Field("e", .blob([])),
        ]
        let r = Self.record(.insert, key: [Field("id", .integer(Int64.min))], before: nil, after: after)
        let expected = #"{"before":null,"after":{"id":-9223372036854775808,"n":null,"r":1.0,"small":-0.0,"big":1e+308,"#
            + #""nan":"NaN","inf":"Infinity","ninf":"-Infinity","t":"café \"q\" \\ \u000a\u0001","b":"AAH/","e":""},"#
            + #""source":"# + Self.src() + #","op":"c","ts_ms":1790000000123}"#
        let lines = r.debeziumLines(source: Self.source)
        #expect(lines == [expected])
        // Valid JSON that Foundation reads back to the same values.
        let object = try? JSONSerialization.jsonObject(with: Data(expected.utf8)) as? [String: Any]
        let image = object?["after"] as? [String: Any]
        #expect(image?["t"] as? String == "caf\u{e9} \"q\" \\ \n\u{1}")
        #expect(image?["b"] as? String == Data([0, 1, 0xFF]).base64EncodedString())
        #expect(image?["n"] is NSNull)
    }

    @Test func millisecondsRoundDownAlsoBefore1970() {
        #expect(ChangeRecord.floorMillis(1_999) == 1)
        #expect(ChangeRecord.floorMillis(-1) == -1)
        #expect(ChangeRecord.floorMillis(-1_000) == -1)
        #expect(ChangeRecord.floorMillis(-1_001) == -2)
        #expect(ChangeRecord.floorMillis(Int64.min) == Int64.min / 1000 - 1)
    }

    @Test func databaseNameAndVersionWhenKnown() {
        let r = Self.record(.insert, key: [Field("id", .integer(1))], before: nil, after: [Field("id", .integer(1))])
        let lines = r.debeziumLines(source: DebeziumSource(name: "s", database: "app.db", version: "1.2"))
        #expect(lines.first?.contains(#""source":{"version":"1.2","connector":"tidemark","name":"s","ts_ms":1790000000123,"db":"app.db","table":"users","lsn":7}"#) == true)
    }

    // MARK: Through the CLI

    /// A log written by `tidemark log append` (an insert, an update, a key
    /// change, a delete, a composite-key table), then `log tail --format
    /// debezium` with and without `--with-key`, every line parsed by
    /// JSONSerialization and checked against the records.
    @Test(.timeLimit(.minutes(10)))
    func tailPrintsDebeziumEventsThroughTheCLI() async throws {
        try await withTemporaryDirectory { root in
            let dir = root + "/log"
            let t0: Int64 = 1_790_000_000_000_000
            let records = [
                ChangeRecord(lsn: .zero, timestampMicros: t0, table: "users", operation: .insert,
                             key: [Field("id", .integer(1))], before: nil,
                             after: [Field("id", .integer(1)), Field("email", .text("a@x")), Field("avatar", .blob([1, 2, 3]))]),
                ChangeRecord(lsn: .zero, timestampMicros: t0 + 1_500, table: "users", operation: .update,
                             key: [Field("id", .integer(1))],
                             before: [Field("id", .integer(1)), Field("email", .text("a@x")), Field("avatar", .blob([1, 2, 3]))],
                             after: [Field("id", .integer(1)), Field("email", .null), Field("avatar", .blob([1, 2, 3]))]),
                ChangeRecord(lsn: .zero, timestampMicros: t0 + 2_000, table: "users", operation: .update,
                             key: [Field("id", .integer(5))],
                             before: [Field("id", .integer(1)), Field("email", .null), Field("avatar", .blob([1, 2, 3]))],
                             after: [Field("id", .integer(5)), Field("email", .null), Field("avatar", .blob([1, 2, 3]))]),
                ChangeRecord(lsn: .zero, timestampMicros: t0 + 3_000, table: "lines", operation: .insert,
                             key: [Field("order_id", .integer(7)), Field("line", .integer(2))], before: nil,
                             after: [Field("order_id", .integer(7)), Field("line", .integer(2)), Field("price", .real(.infinity))]),
                ChangeRecord(lsn: .zero, timestampMicros: t0 + 4_000, table: "users", operation: .delete,
                             key: [Field("id", .integer(5))],
                             before: [Field("id", .integer(5)), Field("email", .null), Field("avatar", .blob([1, 2, 3]))], after: nil),
            ]
            let input = records.map(\.jsonLineWithoutLSN).joined(separator: "\n")
            let created = try await tidemark(["log", "append", "--log", dir], stdin: Array(input.utf8))
            try #require(created.status == 0, "stderr: \(created.stderr)")
            let sourceID = try LogReader(directory: dir).sourceID.rawValue

            // Without keys: one event per record, two for the key change.
            let plain = try await tidemark(["log", "tail", "--log", dir, "--since", "1", "--format", "debezium"])
            try #require(plain.status == 0, "stderr: \(plain.stderr)")
            let events = try plain.stdoutText.split(separator: "\n").map { try Self.object(String($0)) }
            #expect(events.map { $0["op"] as? String } == ["c", "u", "d", "c", "c", "d"])
            #expect(events.map { ($0["source"] as? [String: Any])?["lsn"] as? Int } == [1, 2, 3, 3, 4, 5])
            #expect(events.map { ($0["source"] as? [String: Any])?["table"] as? String } == ["users", "users", "users", "users", "lines", "users"])
            for e in events {
                let source = try #require(e["source"] as? [String: Any])
                #expect(source["name"] as? String == sourceID)
                #expect(source["db"] as? String == sourceID)
                #expect(source["connector"] as? String == "tidemark")
                #expect(e["ts_ms"] as? Int == source["ts_ms"] as? Int)
                #expect(Set(e.keys) == ["before", "after", "source", "op", "ts_ms"])
            }
            #expect((events[1]["source"] as? [String: Any])?["ts_ms"] as? Int == 1_790_000_000_001)
            #expect((events[0]["after"] as? [String: Any])?["avatar"] as? String == "AQID")
            #expect((events[1]["after"] as? [String: Any])?["email"] is NSNull)
            #expect((events[1]["before"] as? [String: Any])?["email"] as? String == "a@x")
            #expect((events[2]["before"] as? [String: Any])?["id"] as? Int == 1 && events[2]["after"] is NSNull)
            #expect(events[3]["before"] is NSNull && (events[3]["after"] as? [String: Any])?["id"] as? Int == 5)
            #expect((events[4]["after"] as? [String: Any])?["price"] as? String == "Infinity")

            // With keys: key TAB value, tombstones after deletes.
            let keyed = try await tidemark(["log", "tail", "--log", dir, "--since", "1", "--format", "debezium", "--with-key"])
            try #require(keyed.status == 0, "stderr: \(keyed.stderr)")
            let pairs = try keyed.stdoutText.split(separator: "\n").map { line -> ([String: Any], String) in
                let parts = line.split(separator: "\t", maxSplits: 1)
                try #require(parts.count == 2, "no TAB in \(line)")
                return (try Self.object(String(parts[0])), String(parts[1]))
            }
            #expect(pairs.map { $0.0["id"] as? Int } == [1, 1, 1, 1, 5, nil, 5, 5])
            #expect(pairs[5].0["order_id"] as? Int == 7 && pairs[5].0["line"] as? Int == 2)
            #expect(pairs.map { $0.1 == "null" } == [false, false, false, true, false, false, false, true])
            let keyedOps = try pairs.filter { $0.1 != "null" }.map { try Self.object($0.1)["op"] as? String }
            #expect(keyedOps == ["c", "u", "d", "c", "c", "d"])
            #expect(plain.stdoutText.split(separator: "\n") == pairs.filter { $0.1 != "null" }.map { Substring($0.1) })

            // --table and --from still apply; --with-key alone is refused.
            let filtered = try await tidemark(["log", "tail", "--log", dir, "--format", "debezium", "--table", "lines"])
            #expect(filtered.status == 0 && filtered.stdoutText.split(separator: "\n").count == 1)
            let refused = try await tidemark(["log", "tail", "--log", dir, "--with-key"])
            #expect(refused.status != 0 && refused.stderr.contains("--format debezium"), "\(refused.stderr)")
        }
    }

    static func object(_ line: String) throws -> [String: Any] {
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(parsed as? [String: Any], "not an object: \(line)")
    }
}
