import TidemarkLog
import TidemarkSQLite

/// The resolved plan a migration was started with, stored in the target's
/// migration state beside a fingerprint of what shapes the target rows.
///
/// Why: a plan file edited after `migrate` began (a column expression, a
/// rename, an added table) would otherwise make the target silently mix two
/// shapes. Every command that copies, replays or switches compares the
/// current plan's fingerprint with the stored one and stops on a mismatch,
/// naming what changed; `status` and `rollback` work from the stored plan,
/// so the way back never depends on the edited file.
///
/// The stored text is a plan file in JSON (which ``Plan/parse(_:relativeTo:name:)``
/// reads back): absolute paths, every table with its resolved columns
/// (explicit even where the plan said "all columns"), and `inverse:`.
public struct PlanRecord: Sendable, Equatable {
    /// 16 hex digits (FNV-1a, 64 bits) of each table's source, target,
    /// shape, key and column expressions, in plan order, and — only where
    /// the plan uses them — column `type:`/`not_null:`, `create:` and
    /// `foreign_keys: drop` (they change the target's schema). Paths, chunk size
    /// and `inverse:` are left out: they do not change what a target row
    /// holds (an `inverse:` may be added later, for a rollback after cutover).
    public var fingerprint: String
    public var json: String

    public init(fingerprint: String, json: String) {
        self.fingerprint = fingerprint
        self.json = json
    }

    /// The record of `plan` resolved as `mappings`.
    public static func make(plan: Plan, mappings: [TableMapping]) -> PlanRecord {
        let q = JSONText.quoted
        var shape = ""
        var tables: [String] = []
        for m in mappings {
            let tablePlan = plan.tables.first(where: { $0.source.lowercased() == m.source.name.lowercased() })
            shape += "table \(m.source.name.lowercased()) -> \(m.targetTable) \(m.shape.rawValue) key \(m.sourceKey.joined(separator: ","))\n"
            var cols: [String] = []
            for c in m.columns {
                // The schema keys (type:, not_null:, create:, foreign_keys:)
                // enter the fingerprint only when used, so the fingerprint
                // of a plan without them is the one stored before they existed.
                var line = "  \(c.target) = \(c.expression)"
                if let t = c.type { line += " {type \(t)}" }
                if let n = c.notNull { line += " {not_null \(n)}" }
                shape += line + "\n"
                if c.type == nil && c.notNull == nil {
                    cols.append(q(c.target) + ":" + q(c.expression))
                } else {
                    var long = [q("expr") + ":" + q(c.expression)]
                    if let t = c.type { long.append(q("type") + ":" + q(t)) }
                    if let n = c.notNull { long.append(q("not_null") + ":" + (n ? "true" : "false")) }
                    cols.append(q(c.target) + ":{" + long.joined(separator: ",") + "}")
                }
            }
            // A swapped table's target is implied (its shadow): stored as
            // `swap: true`, which parses back to the same target.
            let swap = tablePlan?.swap == true
            if swap { shape += "  swap\n" }
            var entry = (swap ? q("swap") + ":true" : q("to") + ":" + q(m.targetTable)) + "," + q("columns") + ":{" + cols.joined(separator: ",") + "}"
            if let create = tablePlan?.create {
                shape += "  create \(create)\n"
                entry += "," + q("create") + ":" + q(create)
            }
            if tablePlan?.foreignKeys == .drop {
                shape += "  foreign_keys drop\n"
                entry += "," + q("foreign_keys") + ":" + q("drop")
            }
            if let inverse = tablePlan?.inverse {
                entry += "," + q("inverse") + ":{" + inverse.map { q($0.target) + ":" + q($0.expression) }.joined(separator: ",") + "}"
            }
            tables.append(q(m.source.name) + ":{" + entry + "}")
        }
        let json = "{" + [
            q("source") + ":" + q(Plan.canonical(plan.source)),
            q("target") + ":" + q(Plan.canonical(plan.target)),
            q("log") + ":" + q(Plan.canonical(plan.log)),
            q("chunk_rows") + ":" + String(plan.chunkRows),
            q("tables") + ":{" + tables.joined(separator: ",") + "}",
        ].joined(separator: ",") + "}"
        return PlanRecord(fingerprint: fnv1a(shape), json: json)
    }

    /// The stored plan, as a ``Plan``.
    public func plan() throws -> Plan {
        do {
            return try Plan.parse(json, relativeTo: "/", name: "the plan stored in the migration state")
        } catch {
            throw MigrationError(.foreignState, "the plan stored in the migration state is unreadable (\(error)); roll back with the original plan file")
        }
    }

    /// What differs between the stored plan and the current one, one
    /// phrase per change (table, column, expression), for the refusal.
    public static func differences(stored: PlanRecord, current: PlanRecord) -> [String] {
        guard let old = try? stored.plan(), let new = try? current.plan() else {
            return ["the resolved plan"]
        }
        var out: [String] = []
        func find(_ p: Plan, _ name: String) -> TablePlan? { p.tables.first { $0.source.lowercased() == name.lowercased() } }
        for t in old.tables where find(new, t.source) == nil { out.append("table \(t.source) was removed") }
        for t in new.tables where find(old, t.source) == nil { out.append("table \(t.source) was added") }
        for o in old.tables {
            guard let n = find(new, o.source) else { continue }
            if o.target.lowercased() != n.target.lowercased() { out.append("table \(o.source) now goes to \(n.target) instead of \(o.target)") }
            let oc = o.columns ?? [], nc = n.columns ?? []
            for c in oc {
                guard let m = nc.first(where: { $0.target.lowercased() == c.target.lowercased() }) else {
                    out.append("column \(o.target).\(c.target) was removed"); continue
                }
                if m.expression != c.expression { out.append("column \(o.target).\(c.target) is now `\(m.expression)` instead of `\(c.expression)`") }
                if m.type != c.type { out.append("column \(o.target).\(c.target) now has type \(m.type ?? "(none)") instead of \(c.type ?? "(none)")") }
                if m.notNull != c.notNull { out.append("column \(o.target).\(c.target) now has not_null \(m.notNull.map(String.init) ?? "(unset)") instead of \(c.notNull.map(String.init) ?? "(unset)")") }
            }
            for c in nc where !oc.contains(where: { $0.target.lowercased() == c.target.lowercased() }) {
                out.append("column \(n.target).\(c.target) = `\(c.expression)` was added")
            }
            if o.create != n.create { out.append(n.create == nil ? "table \(o.target) no longer has create:" : o.create == nil ? "table \(o.target) now has create:" : "the create: of \(o.target) changed") }
            if o.swap != n.swap { out.append(n.swap ? "table \(o.source) now has swap: true" : "table \(o.source) no longer has swap: true") }
            if o.foreignKeys != n.foreignKeys { out.append("table \(o.target) now has foreign_keys: \(n.foreignKeys.rawValue) instead of \(o.foreignKeys.rawValue)") }
            if oc.map({ $0.target.lowercased() }) != nc.map({ $0.target.lowercased() }),
               Set(oc.map { $0.target.lowercased() }) == Set(nc.map { $0.target.lowercased() }) {
                out.append("the columns of \(o.target) are in another order")
            }
        }
        if out.isEmpty, old.tables.map({ $0.source.lowercased() }) != new.tables.map({ $0.source.lowercased() }) {
            out.append("the tables are in another order")
        }
        if out.isEmpty { out.append("a source table's key or shape (its schema changed)") }
        return out
    }

    /// The refusal when `current` differs from `stored`: what changed and
    /// the two ways on.
    static func mismatch(stored: PlanRecord, current: PlanRecord) -> MigrationError {
        let what = differences(stored: stored, current: current)
        return MigrationError(.planChanged, "the plan changed since this migration began: \(what.joined(separator: "; ")); restore the plan as it was, or run `tidemark rollback` (it works from the stored plan) and migrate again")
    }

    static func fnv1a(_ s: String) -> String {
        let h = FNV1a64.hash(Array(s.utf8))
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// The plan stored with a migration, for the commands that must work from
/// it whatever the plan file says now (`status`, `rollback`).
public enum StoredPlan {
    /// The plan stored in the migration state of `plan.target` (the file's
    /// paths locate the target), or nil when there is no state or it
    /// predates stored plans.
    ///
    /// `inverse:` entries of the current file are kept for tables whose
    /// stored plan has none: the inverse is the way back, which the
    /// rollback error asks users to add after cutover.
    public static func load(for plan: Plan) throws -> Plan? {
        guard FileSystemCheck.exists(plan.target) else { return nil }
        let target = try Connection(path: plan.target, mode: .readOnly)
        defer { try? target.close() }
        guard let record = try StateTables.load(target)?.plan else { return nil }
        var stored = try record.plan()
        for i in stored.tables.indices where stored.tables[i].inverse == nil {
            stored.tables[i].inverse = plan.tables.first { $0.source.lowercased() == stored.tables[i].source.lowercased() }?.inverse
        }
        return stored
    }

    /// ``load(for:)``, or `plan` itself when nothing is stored: what
    /// `rollback` should work from.
    public static func forWayBack(_ plan: Plan) throws -> Plan {
        try load(for: plan) ?? plan
    }
}
