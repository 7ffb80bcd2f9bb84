/// A log sequence number: the position of one change in the change log.
///
/// LSNs are strictly increasing within a log. For a SQLite source the LSN of a
/// captured change is its outbox `seq`, so LSN order is commit order.
public struct LSN: RawRepresentable, Comparable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// The position before the first record; no record has it.
    public static let zero = LSN(0)

    public static func < (lhs: LSN, rhs: LSN) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
    public var next: LSN { LSN(rawValue + 1) }
}
