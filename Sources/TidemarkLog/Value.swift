/// One column value, in one of SQLite's five storage classes, kept exactly.
///
/// Equality is *bit* equality for reals: `-0.0 != 0.0` and `NaN == NaN` when
/// their bit patterns match, because the log promises to return exactly the
/// bytes it was given.
public enum Value: Sendable, CustomStringConvertible {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// SQL literal form, the same as SQLite's `quote()` for finite values.
    public var description: String {
        switch self {
        case .null: return "NULL"
        case .integer(let i): return String(i)
        case .real(let d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d < 0 ? "-Inf" : "Inf" }
            return d.description
        case .text(let s):
            var out = "'"
            for ch in s { if ch == "'" { out += "''" } else { out.append(ch) } }
            return out + "'"
        case .blob(let b):
            var s = "X'"
            for byte in b {
                let hex = String(byte, radix: 16, uppercase: true)
                if hex.count == 1 { s += "0" }
                s += hex
            }
            return s + "'"
        }
    }
}

extension Value: Hashable {
    public static func == (lhs: Value, rhs: Value) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.integer(let a), .integer(let b)): return a == b
        case (.real(let a), .real(let b)): return a.bitPattern == b.bitPattern
        case (.text(let a), .text(let b)): return a == b
        case (.blob(let a), .blob(let b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0 as UInt8)
        case .integer(let i): hasher.combine(1 as UInt8); hasher.combine(i)
        case .real(let d): hasher.combine(2 as UInt8); hasher.combine(d.bitPattern)
        case .text(let s): hasher.combine(3 as UInt8); hasher.combine(s)
        case .blob(let b): hasher.combine(4 as UInt8); hasher.combine(b)
        }
    }
}
