/// An error from the change log: what went wrong, where, and what to do.
///
/// `description` is one line a person can act on. Whether the condition is
/// recoverable is a property of the code (``LogError/Code/isRecoverable``),
/// decided here and nowhere else.
public struct LogError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A frame failed a checksum, or its metadata does not chain to the previous frame.
        public static let corruptFrame = Code("corrupt-frame")
        /// The last frame of the last segment is incomplete (a torn write).
        public static let tornTail = Code("torn-tail")
        /// Another process holds the append lock.
        public static let locked = Code("locked")
        /// The log belongs to a different source.
        public static let foreignSource = Code("foreign-source")
        /// The log is written by another kind of writer (capture vs `log append`).
        public static let wrongWriter = Code("wrong-writer")
        /// An LSN is not greater than the one before it.
        public static let lsnOrder = Code("lsn-order")
        /// A record that cannot be stored (bad images, oversize).
        public static let invalidRecord = Code("invalid-record")
        /// The directory is not a Tidemark log, or its metadata is unreadable.
        public static let notALog = Code("not-a-log")
        /// A system call failed.
        public static let io = Code("io")
        /// zstd reported an error.
        public static let compression = Code("compression")
        /// Input that could not be parsed (JSON lines).
        public static let badInput = Code("bad-input")
        /// A requested position is no longer in the log (removed by retention).
        public static let truncated = Code("truncated")

        /// A torn tail is cut off by the next appender; everything else stops.
        public var isRecoverable: Bool { self == .tornTail }
    }

    public var code: Code
    public var message: String
    /// The segment file the error was found in, if any.
    public var segment: String?
    /// The LSN range affected, if known.
    public var lsnRange: ClosedRange<LSN>?

    public init(_ code: Code, _ message: String, segment: String? = nil, lsnRange: ClosedRange<LSN>? = nil) {
        self.code = code
        self.message = message
        self.segment = segment
        self.lsnRange = lsnRange
    }

    public var description: String { message }
}
