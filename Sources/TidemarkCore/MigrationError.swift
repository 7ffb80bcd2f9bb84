/// An error of planning, migrating, verifying or cutting over: one line a
/// person can act on (what, where, what to do).
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let badPlan = Code("bad-plan")
        public static let missingSource = Code("missing-source")
        public static let missingTable = Code("missing-table")
        public static let missingColumn = Code("missing-column")
        public static let badExpression = Code("bad-expression")
        public static let noPrimaryKey = Code("no-primary-key")
        public static let keyNotCarried = Code("key-not-carried")
        public static let incompatibleTarget = Code("incompatible-target")
        public static let targetNotEmpty = Code("target-not-empty")
        public static let foreignState = Code("foreign-state")
        public static let constraint = Code("constraint")
        public static let captureMissing = Code("capture-missing")
        public static let shippingStalled = Code("shipping-stalled")
        public static let logGap = Code("log-gap")
        public static let cutOver = Code("cut-over")
        public static let cutoverTimeout = Code("cutover-timeout")
        public static let pauseExceeded = Code("pause-exceeded")
        public static let notCaughtUp = Code("not-caught-up")
        public static let noInverse = Code("no-inverse")
        /// The plan differs from the one stored when the migration began.
        public static let planChanged = Code("plan-changed")
        /// A row's primary key has a NULL part (it cannot be keyed).
        public static let nullKey = Code("null-key")
        /// Cutover without a clean verify made after the copy finished.
        public static let notVerified = Code("not-verified")
        /// Source rows would break the target's constraints (preflight).
        public static let preflight = Code("preflight")
        /// The target's schema is not complete yet (an index not built, a
        /// trigger or view that cannot be carried) so it cannot be cut over to.
        public static let schemaIncomplete = Code("schema-incomplete")
        /// The target server cannot be reached, refused the login, or went away.
        public static let targetUnavailable = Code("target-unavailable")
        /// What this command cannot do for this kind of target (yet).
        public static let unsupported = Code("unsupported")
    }

    public var code: Code
    public var message: String
    /// For ``Code/preflight``: the violations the message lists, as data
    /// (`migrate --json` prints them).
    public var violations: [PreflightViolation] = []

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
