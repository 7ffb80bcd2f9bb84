import TidemarkLog

/// What `tidemark transform DB TABLE …` asks for, with `sqlite-utils
/// transform`'s spellings and meanings. Column names are the table's
/// current (old) names, matched without regard to case as SQLite does;
/// `--set`, `--not-null`, `--default` and the like also accept a column's
/// new name (after `--rename`) where the two differ.
public struct TransformOptions: Sendable, Equatable {
    /// `--type COL TYPE`: one of ``validTypes`` (sqlite-utils' set).
    public var types: [Pair] = []
    /// `--drop COL`.
    public var drops: [String] = []
    /// `--rename OLD NEW`.
    public var renames: [Pair] = []
    /// `-o/--column-order COL`: these columns first, in this order; the
    /// others after them in their current order.
    public var columnOrder: [String] = []
    /// `--not-null COL` / `--not-null-false COL`.
    public var notNull: [String] = []
    public var notNullFalse: [String] = []
    /// `--pk COL` (repeated: a compound key) and `--pk-none`.
    public var pk: [String] = []
    public var pkNone = false
    /// `--default COL VALUE` (quoted as sqlite-utils does, see
    /// ``TransformShape/defaultLiteral(_:)``) / `--default-none COL`.
    public var defaults: [Pair] = []
    public var defaultNone: [String] = []
    /// `--add-foreign-key COL OTHER_TABLE OTHER_COL`.
    public var addForeignKeys: [ForeignKey] = []
    /// `--drop-foreign-key COL`: every foreign key COL takes part in.
    public var dropForeignKeys: [String] = []
    /// `--strict` (true) / `--no-strict` (false); nil keeps the table's mode.
    public var strict: Bool?
    /// `--create "CREATE TABLE …"`: the whole new definition (the table's
    /// own name), for any shape the options cannot say.
    public var create: String?
    /// `--set COL EXPR`: fill COL (a new name) with a SQLite expression over
    /// the old row.
    public var sets: [Pair] = []
    /// `--inverse COL EXPR`: how rollback fills old column COL from the new
    /// row (needed for a `--set` column that replaces an old one).
    public var inverses: [Pair] = []
    /// `--allow-lossy COL`: accept a type change whose values do not all
    /// convert back unchanged.
    public var allowLossy: [String] = []

    public struct Pair: Sendable, Equatable {
        public var column: String
        public var value: String
        public init(_ column: String, _ value: String) {
            self.column = column
            self.value = value
        }
    }

    public struct ForeignKey: Sendable, Equatable {
        public var column: String
        public var otherTable: String
        public var otherColumn: String
        public init(_ column: String, _ otherTable: String, _ otherColumn: String) {
            self.column = column
            self.otherTable = otherTable
            self.otherColumn = otherColumn
        }
    }

    /// The column types `--type` takes, as sqlite-utils does.
    public static let validTypes = ["INTEGER", "TEXT", "FLOAT", "REAL", "BLOB", "ANY"]

    public init() {}

    /// Whether anything beyond `--set`/`--inverse`/`--allow-lossy` shapes
    /// the table (what `--create` replaces).
    var shapesTable: Bool {
        !types.isEmpty || !drops.isEmpty || !columnOrder.isEmpty || !notNull.isEmpty || !notNullFalse.isEmpty
            || !pk.isEmpty || pkNone || !defaults.isEmpty || !defaultNone.isEmpty || !addForeignKeys.isEmpty
            || !dropForeignKeys.isEmpty || strict != nil
    }

    /// The options as command-line arguments in a fixed order: what the
    /// plan file records so that running the same command again resumes,
    /// and different options are recognised as such.
    public var arguments: [String] {
        var a: [String] = []
        for p in types { a += ["--type", p.column, p.value.uppercased()] }
        for d in drops { a += ["--drop", d] }
        for p in renames { a += ["--rename", p.column, p.value] }
        for c in columnOrder { a += ["--column-order", c] }
        for c in notNull { a += ["--not-null", c] }
        for c in notNullFalse { a += ["--not-null-false", c] }
        for c in pk { a += ["--pk", c] }
        if pkNone { a.append("--pk-none") }
        for p in defaults { a += ["--default", p.column, p.value] }
        for c in defaultNone { a += ["--default-none", c] }
        for f in addForeignKeys { a += ["--add-foreign-key", f.column, f.otherTable, f.otherColumn] }
        for c in dropForeignKeys { a += ["--drop-foreign-key", c] }
        if let strict { a.append(strict ? "--strict" : "--no-strict") }
        if let create { a += ["--create", create] }
        for p in sets { a += ["--set", p.column, p.value] }
        for p in inverses { a += ["--inverse", p.column, p.value] }
        for c in allowLossy { a += ["--allow-lossy", c] }
        return a
    }

    /// ``arguments`` on one line, each a JSON string (newlines in
    /// `--create` escaped): the plan file's record of the command.
    var recorded: String { Self.oneLine("[" + arguments.map(JSONText.quoted).joined(separator: ",") + "]") }

    /// `s` with every character YAML takes for a line break (which would
    /// end a comment line early) written as a `\\uXXXX` escape.
    static func oneLine(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if [0x0A, 0x0D, 0x85, 0x2028, 0x2029].contains(u.value) {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// ``arguments`` as a person would type them (shell-quoted where needed).
    public var commandLine: String {
        arguments.map { arg in
            let plain = !arg.isEmpty && arg.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=,".contains($0) }
            return plain ? arg : "'" + arg.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
        }.joined(separator: " ")
    }
}
