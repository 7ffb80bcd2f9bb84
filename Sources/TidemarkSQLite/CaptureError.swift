/// An error from trigger capture: what is wrong, with which table, and what
/// to do about it, in one line (`description`).
public struct CaptureError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A table named for capture does not exist.
        public static let missingTable = Code("missing-table")
        /// A name for capture is a view or a virtual table.
        public static let notATable = Code("not-a-table")
        /// A table has no PRIMARY KEY, so its rows have no stable identity.
        public static let noPrimaryKey = Code("no-primary-key")
        /// A column named in the update-column list does not exist or is generated.
        public static let badColumn = Code("bad-column")
        /// A captured table's columns or key differ from those captured, or its
        /// triggers are gone.
        public static let shapeChanged = Code("shape-changed")
        /// The outbox still holds changes that were not shipped.
        public static let unshippedChanges = Code("unshipped-changes")
        /// The database is captured for another source id.
        public static let foreignSource = Code("foreign-source")
        /// Capture is not installed in this database.
        public static let notInstalled = Code("not-installed")
        /// An outbox row cannot be decoded.
        public static let badOutboxRow = Code("bad-outbox-row")
        /// The database cannot be captured as it is (encoding, journal mode).
        public static let unsupported = Code("unsupported")
        /// Another process is shipping from this source (``ShipperLock``).
        public static let shipperRunning = Code("shipper-running")
        /// The source lost commits the log already holds, or reused their
        /// `seq` for other changes (a power loss under `synchronous = NORMAL`
        /// before the shipper made the source durable).
        public static let sourceBehindLog = Code("source-behind-log")
        /// A file operation on the source's side failed.
        public static let io = Code("io")
    }

    public var code: Code
    public var message: String
    /// The table concerned, if one is.
    public var table: String?

    public init(_ code: Code, _ message: String, table: String? = nil) {
        self.code = code
        self.message = message
        self.table = table
    }

    public var description: String { message }
}
