import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkLog

/// A realistic record: 6–10 columns, ~200 bytes.
func sampleRecord(_ i: Int, lsn: UInt64 = 0, table: String = "users") -> ChangeRecord {
    let op: ChangeOperation = [.insert, .update, .update, .delete][i % 4]
    let row: [Field] = [
        Field("id", .integer(Int64(i))),
        Field("email", .text("user\(i)@example.com")),
        Field("name", .text("User Number \(i)")),
        Field("balance", .real(Double(i) * 1.25)),
        Field("active", .integer(Int64(i % 2))),
        Field("note", i % 3 == 0 ? .null : .text("note for \(i)")),
        Field("avatar", .blob([UInt8](repeating: UInt8(i & 0xFF), count: 8))),
    ]
    var after = row
    after[3] = Field("balance", .real(Double(i) * 1.5))
    return ChangeRecord(
        lsn: LSN(lsn), timestampMicros: 1_790_000_000_000_000 + Int64(i), table: table, operation: op,
        key: [Field("id", .integer(Int64(i)))],
        before: op == .insert ? nil : row,
        after: op == .delete ? nil : after)
}

func segmentFiles(_ dir: String) throws -> [String] {
    try LogDirectory(dir).segments().map(\.path)
}
