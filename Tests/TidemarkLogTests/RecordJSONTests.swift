import Testing
import TidemarkTestSupport
@testable import TidemarkLog

/// Tests for the text forms of change records: ``Timestamp``, JSON lines
/// (``ChangeRecord/appendJSON(to:)``, ``ChangeRecord/parseJSONLine(_:lineNumber:)``)
/// and ``ChangeRecord/textLine``. Nested so `swift test --filter RecordJSON`
/// runs them all.
@Suite("Record JSON")
struct RecordJSONTests {}

// MARK: - Helpers


/// Encodes, parses back and completes a record; the result must equal the input.
func roundTrip(_ record: ChangeRecord, sourceLocation: SourceLocation = #_sourceLocation) throws -> ChangeRecord {
    let line = record.jsonLine
    #expect(!line.contains("\n"), sourceLocation: sourceLocation)
    let draft = try ChangeRecord.parseJSONLine(line, lineNumber: 1)
    #expect(draft.lsn == record.lsn, sourceLocation: sourceLocation)
    #expect(draft.timestampMicros == record.timestampMicros, sourceLocation: sourceLocation)
    return try draft.record(lsnIfAbsent: LSN(999), timestampMicrosIfAbsent: 999)
}

func insert(_ after: [Field], table: String = "t", key: [Field]? = nil, lsn: UInt64 = 1) -> ChangeRecord {
    ChangeRecord(
        lsn: LSN(lsn), timestampMicros: 1_795_604_400_123_456, table: table, operation: .insert,
        key: key ?? [after.first ?? Field("id", .integer(1))], before: nil, after: after)
}

/// The `.badInput` error a line gives, or a recorded failure.
func rejection(_ line: String, lineNumber: Int = 42, sourceLocation: SourceLocation = #_sourceLocation) -> LogError? {
    do {
        let draft = try ChangeRecord.parseJSONLine(line, lineNumber: lineNumber)
        Issue.record("accepted: \(line) → \(draft)", sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.code == .badInput, sourceLocation: sourceLocation)
        #expect(error.message.hasPrefix("line \(lineNumber): "), "\(error.message)", sourceLocation: sourceLocation)
        return error
    }
}

let goldenUpdate = ChangeRecord(
    lsn: LSN(7), timestampMicros: 1_795_604_400_123_456, table: "users", operation: .update,
    key: [Field("id", .integer(1))],
    before: [Field("id", .integer(1)), Field("email", .text("a@x"))],
    after: [Field("id", .integer(1)), Field("email", .text("b@x")), Field("name", .text("Bo"))])

// MARK: - Timestamps

extension RecordJSONTests {
    @Suite("Timestamp")
    struct Timestamps {
        static let knownInstants: [(Int64, String)] = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_795_604_400_123_456, "2026-11-25T11:00:00.123456Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (951_827_696_000_007, "2000-02-29T12:34:56.000007Z"),
            (-2_203_891_200_000_000, "1900-03-01T00:00:00.000000Z"),
            (-11_670_998_399_999_999, "1600-02-29T00:00:00.000001Z"),
            (1_709_251_199_999_999, "2024-02-29T23:59:59.999999Z"),
            (-62_135_596_800_000_000, "0001-01-01T00:00:00.000000Z"),
            (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
            (-28_502_720_999_500_000, "1066-10-14T09:30:00.500000Z"),
            (Int64.max, "+294247-01-10T04:00:54.775807Z"),
            (Int64.min, "-290308-12-21T19:59:05.224192Z"),
        ]

        @Test("formats known instants, parses them back", arguments: knownInstants)
        func known(micros: Int64, text: String) throws {
            #expect(Timestamp(microsSinceEpoch: micros).description == text)
            #expect(try Timestamp(parsing: text).microsSinceEpoch == micros)
        }

        @Test("every instant in a random sweep round trips, before 1970 too")
        func randomRoundTrip() throws {
            var rng = SplitMix64(seed: 1)
            for i in 0..<20_000 {
                let micros: Int64 = switch i % 3 {
                case 0: Int64(bitPattern: rng.next())  // whole range, years ±290 000
                case 1: Int64.random(in: -62_135_596_800_000_000...253_402_300_799_999_999, using: &rng)
                default: Int64.random(in: -5_000_000_000_000_000...5_000_000_000_000_000, using: &rng)
                }
                let text = Timestamp(microsSinceEpoch: micros).description
                #expect(try Timestamp(parsing: text).microsSinceEpoch == micros, "\(text)")
            }
        }

        @Test("day numbers and civil dates agree day by day over ±2200 years")
        func calendarIsContinuous() {
            var previous = CivilCalendar.civil(fromDays: -800_001)
            for day in Int64(-800_000)...800_000 {
                let date = CivilCalendar.civil(fromDays: day)
                #expect(CivilCalendar.days(fromYear: date.year, month: date.month, day: date.day) == day)
                let expected: (Int64, Int64, Int64) =
                    if previous.day < CivilCalendar.daysIn(month: previous.month, year: previous.year) {
                        (previous.year, previous.month, previous.day + 1)
                    } else if previous.month < 12 {
                        (previous.year, previous.month + 1, 1)
                    } else {
                        (previous.year + 1, 1, 1)
                    }
                if date != expected {
                    Issue.record("day \(day): \(date), expected \(expected)")
                    return
                }
                previous = date
            }
        }

        @Test("reads fewer fraction digits, no fraction, and +00:00", arguments: [
            ("2026-11-25T11:00:00.1Z", 1_795_604_400_100_000),
            ("2026-11-25T11:00:00.12Z", 1_795_604_400_120_000),
            ("2026-11-25T11:00:00.00001Z", 1_795_604_400_000_010),
            ("2026-11-25T11:00:00Z", 1_795_604_400_000_000),
            ("2026-11-25T11:00:00.123456+00:00", 1_795_604_400_123_456),
            ("1969-12-31T23:59:59.9+00:00", -100_000),
        ] as [(String, Int64)])
        func lenient(text: String, micros: Int64) throws {
            #expect(try Timestamp(parsing: text).microsSinceEpoch == micros)
        }

        @Test("rejects anything else with a reason", arguments: [
            ("", "year needs 4 digits"),
            ("2026-11-25 11:00:00Z", "expected 'T'"),
            ("2026-11-25t11:00:00Z", "expected 'T'"),
            ("2026-11-25T11:00:00z", "only UTC"),
            ("2026-11-25T11:00:00", "missing zone"),
            ("2026-11-25T11:00:00.1234567Z", "more than 6 fraction digits"),
            ("2026-11-25T11:00:00.Z", "fraction needs 1 to 6 digits"),
            ("2026-11-25T11:00:00+01:00", "not UTC"),
            ("2026-11-25T11:00:00-00:00", "only UTC"),
            ("2026-02-29T00:00:00Z", "day 29 does not exist in 2026-02"),
            ("1900-02-29T00:00:00Z", "day 29 does not exist"),
            ("2026-04-31T00:00:00Z", "day 31 does not exist"),
            ("2026-13-01T00:00:00Z", "month 13"),
            ("2026-00-01T00:00:00Z", "month 0"),
            ("2026-11-25T24:00:00Z", "hour 24"),
            ("2026-11-25T11:60:00Z", "minute 60"),
            ("2016-12-31T23:59:60Z", "leap seconds"),
            ("26-11-25T11:00:00Z", "year needs 4 digits"),
            ("2026-1-25T11:00:00Z", "month needs 2 digits"),
            ("2026-11-25T11:00:00Z ", "unexpected text after the zone"),
            ("+999999-01-01T00:00:00Z", "out of range"),
        ])
        func rejects(text: String, reason: String) {
            do {
                let t = try Timestamp(parsing: text)
                Issue.record("accepted \(text) as \(t.microsSinceEpoch)")
            } catch {
                #expect(error.code == .badInput)
                #expect(error.message.contains(reason), "\(error.message)")
                #expect(error.message.contains("\"\(text)\""), "\(error.message)")
            }
        }
    }
}

// MARK: - Encoding

extension RecordJSONTests {
    @Suite("Encoding")
    struct Encoding {
        @Test("golden: update")
        func goldenUpdateLine() {
            #expect(goldenUpdate.jsonLine == #"{"lsn":7,"ts":"2026-11-25T11:00:00.123456Z","table":"users","op":"update","key":{"id":1},"before":{"id":1,"email":"a@x"},"after":{"id":1,"email":"b@x","name":"Bo"}}"#)
        }

        @Test("golden: insert of every storage class")
        func goldenInsert() {
            let record = ChangeRecord(
                lsn: LSN(18_446_744_073_709_551_615), timestampMicros: -1, table: "sensor \"A\"", operation: .insert,
                key: [Field("site", .text("nord")), Field("n", .integer(-9_223_372_036_854_775_808))],
                before: nil,
                after: [
                    Field("site", .text("nord")), Field("n", .integer(-9_223_372_036_854_775_808)),
                    Field("v", .real(2)), Field("w", .real(-.infinity)), Field("note", .null),
                    Field("raw", .blob([0xDE, 0xAD, 0xBE, 0xEF])), Field("s", .text("é\t\\")),
                ])
            #expect(record.jsonLine == #"{"lsn":18446744073709551615,"ts":"1969-12-31T23:59:59.999999Z","table":"sensor \"A\"","op":"insert","key":{"site":"nord","n":-9223372036854775808},"after":{"site":"nord","n":-9223372036854775808,"v":2.0,"w":{"$real":"-inf"},"note":null,"raw":{"$blob":"3q2+7w=="},"s":"é\u0009\\"}}"#)
        }

        @Test("golden: delete with a composite key")
        func goldenDelete() {
            let record = ChangeRecord(
                lsn: LSN(3), timestampMicros: 0, table: "t", operation: .delete,
                key: [Field("a", .integer(1)), Field("b", .text("x"))],
                before: [Field("a", .integer(1)), Field("b", .text("x")), Field("c", .real(0.1))], after: nil)
            #expect(record.jsonLine == #"{"lsn":3,"ts":"1970-01-01T00:00:00.000000Z","table":"t","op":"delete","key":{"a":1,"b":"x"},"before":{"a":1,"b":"x","c":0.1}}"#)
        }

        static let valueForms: [(Value, String)] = [
            (.null, "null"),
            (.integer(0), "0"),
            (.integer(-42), "-42"),
            (.integer(.max), "9223372036854775807"),
            (.integer(.min), "-9223372036854775808"),
            (.real(1), "1.0"),
            (.real(-0.0), "-0.0"),
            (.real(0.1), "0.1"),
            (.real(1e308), "1e+308"),
            (.real(1e16), "1e+16"),
            (.real(1e15), "1000000000000000.0"),
            (.real(.leastNonzeroMagnitude), "5e-324"),
            (.real(-1.5e-7), "-1.5e-07"),
            (.real(.infinity), #"{"$real":"inf"}"#),
            (.real(-.infinity), #"{"$real":"-inf"}"#),
            (.real(.nan), #"{"$real":"nan"}"#),
            (.text(""), #""""#),
            (.text("say \"hi\" \\ bye"), #""say \"hi\" \\ bye""#),
            (.text("\u{0}\u{1}\n\r\u{1F}\u{7F}"), #""\u0000\u0001\u000a\u000d\u001f\#u{7F}""#),
            (.text("😀 e\u{301} 日本 \u{2028}"), "\"😀 e\u{301} 日本 \u{2028}\""),
            (.text("a/b"), #""a/b""#),
            (.blob([]), #"{"$blob":""}"#),
            (.blob([0]), #"{"$blob":"AA=="}"#),
            (.blob([0xFF, 0xFF]), #"{"$blob":"//8="}"#),
            (.blob(Array("foobar".utf8)), #"{"$blob":"Zm9vYmFy"}"#),
        ]

        @Test("value forms", arguments: valueForms)
        func valueForm(value: Value, json: String) {
            var buffer: [UInt8] = []
            value.appendJSON(to: &buffer)
            #expect(String(decoding: buffer, as: UTF8.self) == json)
        }

        @Test("base64 matches the RFC 4648 test vectors", arguments: [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
        ])
        func base64Vectors(plain: String, encoded: String) throws {
            var buffer: [UInt8] = []
            Base64.append(Array(plain.utf8), to: &buffer)
            #expect(String(decoding: buffer, as: UTF8.self) == encoded)
            #expect(try Base64.decode(encoded.utf8) == Array(plain.utf8))
        }

        @Test("appendJSON appends to a reused buffer")
        func appends() {
            var buffer = Array("x".utf8)
            goldenUpdate.appendJSON(to: &buffer)
            #expect(String(decoding: buffer, as: UTF8.self) == "x" + goldenUpdate.jsonLine)
            buffer.removeAll(keepingCapacity: true)
            goldenUpdate.appendJSON(to: &buffer)
            #expect(String(decoding: buffer, as: UTF8.self) == goldenUpdate.jsonLine)
        }
    }
}

// MARK: - Round trips

extension RecordJSONTests {
    @Suite("Round trip")
    struct RoundTrip {
        static let edgeValues: [Value] = [
            .null,
            .integer(0), .integer(1), .integer(-1), .integer(.max), .integer(.min),
            .real(0), .real(-0.0), .real(0.1), .real(1e308), .real(-1e308), .real(.leastNonzeroMagnitude), .real(-.leastNonzeroMagnitude),
            .real(.greatestFiniteMagnitude), .real(.leastNormalMagnitude), .real(1.0 / 3.0),
            .real(.infinity), .real(-.infinity), .real(.nan), .real(9_007_199_254_740_992.0.nextUp),
            .text(""), .text("plain"), .text("😀👩‍👩‍👧‍👦"), .text("e\u{301}\u{308} combining"),
            .text("\u{0}\u{1}\u{8}\u{C}\n\r\t\u{1F}\u{7F}"), .text("\"quoted\" and \\back\\slashed\\"),
            .text("\u{FEFF}bom \u{2028}\u{2029} \u{10FFFF}"), .text("{\"$blob\":\"AA==\"}"),
            .blob([]), .blob([0]), .blob([0, 1]), .blob([0, 1, 2]), .blob(Array(0...255)),
        ]

        @Test("every value kind and edge", arguments: edgeValues)
        func value(_ value: Value) throws {
            let record = insert([Field("id", .integer(1)), Field("v", value)])
            #expect(try roundTrip(record) == record)
            // Also as a key value and in before/after images of an update.
            let update = ChangeRecord(
                lsn: LSN(2), timestampMicros: 0, table: "t", operation: .update,
                key: [Field("k", value)], before: [Field("v", value)], after: [Field("v", .null), Field("w", value)])
            #expect(try roundTrip(update) == update)
        }

        @Test("a big blob")
        func bigBlob() throws {
            var rng = SplitMix64(seed: 7)
            let bytes = (0..<(1 << 20) + 1).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let record = insert([Field("id", .integer(1)), Field("data", .blob(bytes))])
            #expect(try roundTrip(record) == record)
        }

        @Test("300 columns and a composite key, order kept")
        func wideRow() throws {
            let after = (0..<300).map { i -> Field in
                let value: Value = switch i % 5 {
                case 0: .integer(Int64(i) * -1_000_003)
                case 1: .real(Double(i) / 7)
                case 2: .text("column \(i) ✓")
                case 3: .blob([UInt8(i & 0xFF), 0, 0xFF])
                default: .null
                }
                return Field("c\(299 - i)", value)
            }
            let record = ChangeRecord(
                lsn: LSN(5), timestampMicros: 1, table: "wide", operation: .insert,
                key: [after[0], after[2], after[3]], before: nil, after: after)
            let back = try roundTrip(record)
            #expect(back == record)
            #expect(back.after?.map(\.name) == after.map(\.name))
        }

        @Test("unicode table and column names")
        func unicodeNames() throws {
            let record = ChangeRecord(
                lsn: LSN(1), timestampMicros: 0, table: "Bücher \"alt\"\n", operation: .delete,
                key: [Field("nº", .integer(1)), Field("😀", .text("x"))],
                before: [Field("nº", .integer(1)), Field("😀", .text("x")), Field("", .null)], after: nil)
            #expect(try roundTrip(record) == record)
        }

        @Test("random records")
        func random() throws {
            var rng = SplitMix64(seed: 42)
            func randomValue() -> Value {
                switch rng.next() % 6 {
                case 0: return .null
                case 1: return .integer(Int64(bitPattern: rng.next()))
                case 2:
                    let d = Double(bitPattern: rng.next())
                    return .real(d.isNaN ? .nan : d)  // only the canonical NaN is kept
                case 3: return .real(Double(Int64.random(in: -1_000_000...1_000_000, using: &rng)) / 1000)
                case 4:
                    let scalars = (0..<Int.random(in: 0...12, using: &rng)).map { _ -> Character in
                        let v = UInt32.random(in: 0...0x10FFFF, using: &rng)
                        return Character(Unicode.Scalar(v) ?? "?")
                    }
                    return .text(String(scalars))
                default:
                    return .blob((0..<Int.random(in: 0...20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
                }
            }
            for n in 1...2_000 {
                let columns = (0..<Int.random(in: 1...8, using: &rng)).map { Field("c\($0)", randomValue()) }
                let op = ChangeOperation.allCases.randomElement(using: &rng)!
                let record = ChangeRecord(
                    lsn: LSN(UInt64(n)), timestampMicros: Int64(bitPattern: rng.next()), table: "t\(n % 7)",
                    operation: op, key: [columns[0]],
                    before: op == .insert ? nil : columns.shuffled(using: &rng),
                    after: op == .delete ? nil : columns)
                let back = try roundTrip(record)
                if back != record {
                    Issue.record("record \(n): \(record.jsonLine)")
                    return
                }
            }
        }
    }
}

// MARK: - Decoding

extension RecordJSONTests {
    @Suite("Decoding")
    struct Decoding {
        @Test("lsn and ts are optional; the appender assigns them")
        func draftWithoutPosition() throws {
            let draft = try ChangeRecord.parseJSONLine(
                #"{"table":"users","op":"insert","key":{"id":1},"after":{"id":1}}"#, lineNumber: 1)
            #expect(draft.lsn == nil)
            #expect(draft.timestampMicros == nil)
            let record = try draft.record(lsnIfAbsent: LSN(10), timestampMicrosIfAbsent: 123)
            #expect(record == ChangeRecord(
                lsn: LSN(10), timestampMicros: 123, table: "users", operation: .insert,
                key: [Field("id", .integer(1))], before: nil, after: [Field("id", .integer(1))]))
        }

        @Test("a line's own lsn and ts win over the assigned ones")
        func draftWithPosition() throws {
            let draft = try ChangeRecord.parseJSONLine(goldenUpdate.jsonLine, lineNumber: 1)
            #expect(try draft.record(lsnIfAbsent: LSN(99), timestampMicrosIfAbsent: 0) == goldenUpdate)
        }

        @Test("a draft that no longer validates is refused")
        func mutatedDraft() throws {
            var draft = try ChangeRecord.parseJSONLine(goldenUpdate.jsonLine, lineNumber: 1)
            draft.before = nil
            #expect(throws: LogError.self) { try draft.record(lsnIfAbsent: LSN(1), timestampMicrosIfAbsent: 0) }
        }

        @Test("accepts any member order, whitespace, escapes, and null images")
        func lenientButExact() throws {
            let line = " \t{ \"after\" : { \"s\" : \"caf\\u00e9 \\ud83d\\ude00 \\/ \\b\\f\\n\\r\\t \\\"\\\\\", \"r\":1E2, \"z\":-0, \"e\":1.5e-3 },"
                + "\"before\":null, \"op\":\"insert\", \"key\":{\"s\":null}, \"table\":\"t\", \"ts\":\"1970-01-01T00:00:01+00:00\", \"lsn\":12 }\r\n"
            let draft = try ChangeRecord.parseJSONLine(line, lineNumber: 3)
            #expect(draft.lsn == LSN(12))
            #expect(draft.timestampMicros == 1_000_000)
            #expect(draft.before == nil)
            #expect(draft.key == [Field("s", .null)])
            #expect(draft.after == [
                Field("s", .text("café 😀 / \u{8}\u{C}\n\r\t \"\\")), Field("r", .real(100)),
                Field("z", .integer(0)), Field("e", .real(0.0015)),
            ])
        }

        @Test("reads bytes and substrings as well as strings")
        func inputKinds() throws {
            let line = goldenUpdate.jsonLine
            let fromBytes = try ChangeRecord.parseJSONLine(Array(line.utf8), lineNumber: 1)
            let buffer = Array(("junk\n" + line + "\nmore").utf8)
            let fromSlice = try ChangeRecord.parseJSONLine(buffer[5..<(5 + line.utf8.count)], lineNumber: 2)
            let fromSubstring = try ChangeRecord.parseJSONLine(("x" + line).dropFirst(), lineNumber: 3)
            let expected = try ChangeRecord.parseJSONLine(line, lineNumber: 4)
            #expect(fromBytes == expected)
            #expect(fromSlice == expected)
            #expect(fromSubstring == expected)
        }

        @Test("invalid UTF-8 is rejected, not repaired")
        func invalidUTF8() {
            var bytes = Array(#"{"table":"t","op":"insert","key":{"id":"#.utf8)
            bytes += [UInt8(ascii: "\""), 0xC3, 0x28, UInt8(ascii: "\"")]
            bytes += Array(#"},"after":{"id":1}}"#.utf8)
            do {
                _ = try ChangeRecord.parseJSONLine(bytes, lineNumber: 8)
                Issue.record("accepted invalid UTF-8")
            } catch {
                #expect(error.code == .badInput)
                #expect(error.message.hasPrefix("line 8: "))
                #expect(error.message.contains("not valid UTF-8"))
            }
        }
    }
}

// MARK: - Rejections

extension RecordJSONTests {
    @Suite("Rejections")
    struct Rejections {
        static let head = #""table":"t","op":"insert","key":{"id":1}"#

        /// Each line and a piece of the message that must explain it.
        static let cases: [(String, String)] = [
            ("", "empty line"),
            ("   ", "empty line"),
            ("[]", "expected '{'"),
            (#"{"table":"t","op":"insert","key":{"id":1},"after":{"id":1},"who":"me"}"#, #"unknown member "who""#),
            (#"{"op":"insert","key":{"id":1},"after":{"id":1}}"#, #"missing "table""#),
            (#"{"table":"t","key":{"id":1},"after":{"id":1}}"#, #"missing "op""#),
            (#"{"table":"t","op":"insert","after":{"id":1}}"#, #"missing "key""#),
            (#"{"table":"t","op":"upsert","key":{"id":1},"after":{"id":1}}"#, #""op" is "upsert""#),
            (#"{"table":"t","op":"INSERT","key":{"id":1},"after":{"id":1}}"#, #""op" is "INSERT""#),
            (#"{"table":"t","op":7,"key":{"id":1},"after":{"id":1}}"#, #""op" must be a string"#),
            (#"{"table":"","op":"insert","key":{"id":1},"after":{"id":1}}"#, #""table" is empty"#),
            (#"{"table":1,"op":"insert","key":{"id":1},"after":{"id":1}}"#, #""table" must be a string"#),
            // Images inconsistent with the operation (ChangeRecord.validate()).
            ("{\(head)}", "insert needs an after image"),
            ("{\(head),\"after\":{\"id\":1},\"before\":{\"id\":1}}", "insert must not have a before image"),
            (#"{"table":"t","op":"update","key":{"id":1},"after":{"id":1}}"#, "update needs before and after images"),
            (#"{"table":"t","op":"delete","key":{"id":1},"before":{"id":1},"after":{"id":1}}"#, "delete must not have an after image"),
            (#"{"table":"t","op":"delete","key":{"id":1}}"#, "delete needs a before image"),
            (#"{"table":"t","op":"insert","key":{},"after":{"id":1}}"#, "key is empty"),
            (#"{"table":"t","op":"insert","key":[1],"after":{"id":1}}"#, #""key" must be an object"#),
            (#"{"table":"t","op":"insert","key":{"id":1},"after":"x"}"#, #""after" must be an object"#),
            // Duplicates.
            (#"{"table":"t","table":"u","op":"insert","key":{"id":1},"after":{"id":1}}"#, #"duplicate member "table""#),
            ("{\(head),\"after\":{\"id\":1,\"id\":2}}", #""after" has column "id" twice"#),
            // Trailing garbage and syntax.
            ("{\(head),\"after\":{\"id\":1}} x", "unexpected text after the record"),
            ("{\(head),\"after\":{\"id\":1}}{}", "unexpected text after the record"),
            ("{\(head),\"after\":{\"id\":1},}", "expected a quoted member name"),
            ("{\(head),\"after\":{\"id\":1}", "expected ',' or '}', but the line ended"),
            ("{\(head) \"after\":{\"id\":1}}", "expected ',' or '}' at byte"),
            ("{'table':'t'}", "expected a quoted member name"),
            ("{\(head),\"after\":{\"id\" 1}}", "expected ':'"),
            ("{\(head),\"after\":{\"id\":}}", "expected a value"),
            // Values that are not SQLite values.
            ("{\(head),\"after\":{\"id\":[1]}}", "arrays are not column values"),
            ("{\(head),\"after\":{\"id\":{\"a\":1}}}", "objects are not column values"),
            ("{\(head),\"after\":{\"id\":{}}}", "{} is not a column value"),
            ("{\(head),\"after\":{\"id\":true}}", "SQLite has no boolean type"),
            ("{\(head),\"after\":{\"id\":false}}", "SQLite has no boolean type"),
            ("{\(head),\"after\":{\"id\":nul}}", "expected null"),
            ("{\(head),\"after\":{\"id\":9223372036854775808}}", "outside the 64-bit range"),
            ("{\(head),\"after\":{\"id\":-9223372036854775809}}", "outside the 64-bit range"),
            ("{\(head),\"after\":{\"id\":99999999999999999999999}}", "outside the 64-bit range"),
            ("{\(head),\"after\":{\"id\":1e400}}", "beyond the double range"),
            ("{\(head),\"after\":{\"id\":-1e400}}", #"{"$real":"-inf"}"#),
            ("{\(head),\"after\":{\"id\":01}}", "leading zeros"),
            ("{\(head),\"after\":{\"id\":1.}}", "expected a digit after '.'"),
            ("{\(head),\"after\":{\"id\":.5}}", "expected a value"),
            ("{\(head),\"after\":{\"id\":1e}}", "expected a digit in exponent"),
            ("{\(head),\"after\":{\"id\":+1}}", "expected a value"),
            ("{\(head),\"after\":{\"id\":-}}", "expected a digit in number"),
            ("{\(head),\"after\":{\"id\":NaN}}", "expected a value"),
            ("{\(head),\"after\":{\"id\":{\"$real\":\"1.5\"}}}", #""$real" is "1.5""#),
            ("{\(head),\"after\":{\"id\":{\"$real\":\"Infinity\"}}}", #""$real" is "Infinity""#),
            ("{\(head),\"after\":{\"id\":{\"$real\":1}}}", #""$real" must be a string"#),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"AAE\"}}}", "not a multiple of 4"),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"A===\"}}}", "not end padding"),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"AA=A\"}}}", "after '=' padding"),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"AAE!\"}}}", "'!' at character 4 is not in the standard base64 alphabet"),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"AA-_\"}}}", "not in the standard base64 alphabet"),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"AAF=\"}}}", "not canonical"),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"AB==\"}}}", "not canonical"),
            ("{\(head),\"after\":{\"id\":{\"$blob\":\"\",\"x\":1}}}", "exactly one member"),
            // Strings.
            ("{\(head),\"after\":{\"id\":\"\\ud83d\"}}", "high surrogate \\uD83D is not followed"),
            ("{\(head),\"after\":{\"id\":\"\\ud83dx\"}}", "high surrogate \\uD83D is not followed"),
            ("{\(head),\"after\":{\"id\":\"\\ud83d\\u0041\"}}", "not a low surrogate"),
            ("{\(head),\"after\":{\"id\":\"\\ude00\"}}", "lone low surrogate \\uDE00"),
            ("{\(head),\"after\":{\"id\":\"a\nb\"}}", "raw control character"),
            ("{\(head),\"after\":{\"id\":\"a\u{0}b\"}}", "raw control character"),
            ("{\(head),\"after\":{\"id\":\"\\x41\"}}", "unknown escape"),
            ("{\(head),\"after\":{\"id\":\"\\u12G4\"}}", "expected 4 hex digits"),
            ("{\(head),\"after\":{\"id\":\"abc", "unterminated string"),
            ("{\(head),\"after\":{\"id\":\"abc\\", "ends in a backslash"),
            // lsn and ts.
            (#"{"lsn":0,"table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#, "must be at least 1"),
            (#"{"lsn":-1,"table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#, #""lsn" must be a positive integer"#),
            (#"{"lsn":1.5,"table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#, #""lsn" must be an integer, not 1.5"#),
            (#"{"lsn":"7","table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#, #""lsn" must be a positive integer"#),
            (#"{"lsn":18446744073709551616,"table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#, "larger than 2^64-1"),
            (#"{"ts":"2026-11-25T11:00:00+01:00","table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#, "not UTC"),
            (#"{"ts":1795604400123456,"table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#, #""ts" must be a string"#),
        ]

        @Test("each gives .badInput naming the line and the problem", arguments: cases)
        func rejects(line: String, reason: String) {
            guard let error = rejection(line) else { return }
            #expect(error.message.contains(reason), "\(error.message)")
        }

        @Test("a validation failure does not mention a placeholder LSN")
        func noPlaceholderLSN() {
            let error = rejection("{\(Self.head)}", lineNumber: 5)
            #expect(error?.message == "line 5: record for table 't': insert needs an after image")
            let withLSN = rejection("{\"lsn\":9,\(Self.head)}", lineNumber: 6)
            #expect(withLSN?.message == "line 6: record at LSN 9 for table 't': insert needs an after image")
        }

        @Test("syntax errors point at the byte")
        func position() {
            let error = rejection(#"{"table":"t" "op":"insert"}"#, lineNumber: 1)
            #expect(error?.message == "line 1: expected ',' or '}' at byte 14, found '\"'")
        }
    }
}

// MARK: - Text rendering

extension RecordJSONTests {
    @Suite("Text line")
    struct Text {
        @Test("update shows only changed columns")
        func update() {
            #expect(goldenUpdate.textLine
                == "7  2026-11-25T11:00:00.123456Z  update  users  id=1  email: 'a@x' → 'b@x', name: 'Bo'")
        }

        @Test("insert and delete show the whole image")
        func insertAndDelete() {
            let row = [Field("id", .integer(2)), Field("email", .text("it's")), Field("name", .null), Field("r", .real(1.5))]
            let ins = ChangeRecord(lsn: LSN(8), timestampMicros: 0, table: "users", operation: .insert,
                                   key: [row[0]], before: nil, after: row)
            #expect(ins.textLine == "8  1970-01-01T00:00:00.000000Z  insert  users  id=2  + id=2, email='it''s', name=NULL, r=1.5")
            let del = ChangeRecord(lsn: LSN(9), timestampMicros: 0, table: "users", operation: .delete,
                                   key: [row[0], row[1]], before: row, after: nil)
            #expect(del.textLine == "9  1970-01-01T00:00:00.000000Z  delete  users  id=2, email='it''s'  - id=2, email='it''s', name=NULL, r=1.5")
        }

        @Test("an update that changed nothing, and a column only in before")
        func oddUpdates() {
            let same = ChangeRecord(lsn: LSN(1), timestampMicros: 0, table: "t", operation: .update,
                                    key: [Field("id", .integer(1))],
                                    before: [Field("a", .real(-0.0))], after: [Field("a", .real(-0.0))])
            #expect(same.textLine.hasSuffix("id=1  (no column changed)"))
            let dropped = ChangeRecord(lsn: LSN(1), timestampMicros: 0, table: "t", operation: .update,
                                       key: [Field("id", .integer(1))],
                                       before: [Field("a", .real(0.0)), Field("b", .integer(1))],
                                       after: [Field("a", .real(-0.0))])
            #expect(dropped.textLine.hasSuffix("id=1  a: 0.0 → -0.0, b: 1 → (absent)"))
        }

        @Test("stays on one line; long blobs are shortened")
        func oneLine() {
            let record = insert([
                Field("id", .integer(1)), Field("note", .text("a\nb\tc\u{1B}")),
                Field("small", .blob([0x00, 0xFF])), Field("big", .blob(Array(repeating: 0xAB, count: 4096))),
                Field("x", .real(.infinity)),
            ])
            #expect(record.textLine.hasSuffix(
                #"+ id=1, note='a\nb\tc\u{1B}', small=X'00FF', big=X'ABABABABABABABABABABABABABABABAB…' (4096 bytes), x=Inf"#))
            #expect(!record.textLine.contains("\n"))
        }
    }
}
