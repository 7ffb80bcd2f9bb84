import TidemarkTestSupport
import Testing
import TidemarkLog

@Suite("Key changes")
struct KeyChangeTests {
    func record(_ op: ChangeOperation, key: [Field], before: [Field]?, after: [Field]?) -> ChangeRecord {
        ChangeRecord(lsn: LSN(7), timestampMicros: 42, table: "t", operation: op, key: key, before: before, after: after)
    }

    @Test("an update that moves the row splits into a delete of the old key and an insert of the new one")
    func split() throws {
        let before = [Field("region", .text("eu")), Field("n", .integer(1)), Field("v", .real(0.5))]
        let after = [Field("region", .text("eu")), Field("n", .integer(11)), Field("v", .real(0.5))]
        let r = record(.update, key: [Field("region", .text("eu")), Field("n", .integer(11))], before: before, after: after)
        #expect(r.isKeyChange)
        #expect(r.beforeKey == [Field("region", .text("eu")), Field("n", .integer(1))])
        let (delete, insert) = try #require(r.splitKeyChange())
        #expect(delete == record(.delete, key: [Field("region", .text("eu")), Field("n", .integer(1))], before: before, after: nil))
        #expect(insert == record(.insert, key: r.key, before: nil, after: after))
        #expect(r.keyedChanges == [delete, insert])
        try delete.validate()
        try insert.validate()
    }

    @Test("updates that keep the key, inserts and deletes are not key changes", arguments: [
        (ChangeOperation.update, [Field("id", .integer(1)), Field("v", .null)], [Field("id", .integer(1)), Field("v", .text("x"))]),
        (.insert, nil, [Field("id", .integer(1)), Field("v", .null)]),
        (.delete, [Field("id", .integer(1)), Field("v", .null)], nil),
    ] as [(ChangeOperation, [Field]?, [Field]?)])
    func notKeyChanges(op: ChangeOperation, before: [Field]?, after: [Field]?) {
        let r = record(op, key: [Field("id", .integer(1))], before: before, after: after)
        #expect(!r.isKeyChange)
        #expect(r.splitKeyChange() == nil)
        #expect(r.keyedChanges == [r])
    }

    @Test("keys compare exactly: storage class and bits")
    func exact() {
        let moved = record(.update, key: [Field("k", .real(-0.0))], before: [Field("k", .real(0.0))], after: [Field("k", .real(-0.0))])
        #expect(moved.isKeyChange)
        let retyped = record(.update, key: [Field("k", .real(1))], before: [Field("k", .integer(1))], after: [Field("k", .real(1))])
        #expect(retyped.isKeyChange)
    }
}
