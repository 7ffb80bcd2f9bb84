/// A commit time: microseconds since the Unix epoch, UTC, shown and read as
/// RFC 3339 text with exactly six fraction digits:
///
///     2026-11-25T11:00:00.123456Z
///
/// Why not Foundation's `DateFormatter`/`ISO8601DateFormatter`: they round
/// through `Double` seconds (losing microseconds far from 1970), are slow on
/// a hot path that formats millions of records, and differ between platforms.
/// Here the calendar is plain integer arithmetic over the proleptic Gregorian
/// calendar (Howard Hinnant's `days_from_civil` / `civil_from_days`), so every
/// `Int64` — before 1970 too — formats and parses back to the same value.
///
/// Text form (``description`` writes it, ``init(parsing:)`` reads it):
///
/// | part     | written                         | also read                          |
/// |----------|---------------------------------|------------------------------------|
/// | year     | 4 digits, `0000`…`9999`;        | the same                           |
/// |          | outside that a sign and 4+ digits (`-0001`, `+10000`) | a sign with 4–6 digits |
/// | fraction | always `.` and 6 digits         | none, or `.` and 1–6 digits        |
/// | zone     | `Z`                             | `Z` or `+00:00`                    |
///
/// Anything else (other offsets, lowercase `t`/`z`, leap second `60`, more
/// than six fraction digits, spaces) is rejected with a message saying what
/// is wrong, because a timestamp silently read in another zone or precision
/// would put a change at the wrong place in an audit trail.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z; negative before it.
    public var microsSinceEpoch: Int64

    public init(microsSinceEpoch: Int64) {
        self.microsSinceEpoch = microsSinceEpoch
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.microsSinceEpoch < rhs.microsSinceEpoch
    }

    /// The RFC 3339 form, e.g. `2026-11-25T11:00:00.123456Z`.
    public var description: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        appendRFC3339(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the RFC 3339 form as UTF-8 without allocating, for encoders
    /// that build a line in a reused buffer.
    public func appendRFC3339(to buffer: inout [UInt8]) {
        var days = microsSinceEpoch / CivilCalendar.microsPerDay
        var microsOfDay = microsSinceEpoch % CivilCalendar.microsPerDay
        if microsOfDay < 0 {  // floor division: times before 1970 belong to the earlier day
            days -= 1
            microsOfDay += CivilCalendar.microsPerDay
        }
        let (year, month, day) = CivilCalendar.civil(fromDays: days)
        if year >= 0 && year <= 9999 {
            buffer.appendDecimal(UInt64(year), minimumDigits: 4)
        } else {
            buffer.append(year < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
            buffer.appendDecimal(year.magnitude, minimumDigits: 4)
        }
        buffer.append(UInt8(ascii: "-"))
        buffer.appendDecimal(UInt64(month), minimumDigits: 2)
        buffer.append(UInt8(ascii: "-"))
        buffer.appendDecimal(UInt64(day), minimumDigits: 2)
        buffer.append(UInt8(ascii: "T"))
        let seconds = microsOfDay / 1_000_000
        buffer.appendDecimal(UInt64(seconds / 3600), minimumDigits: 2)
        buffer.append(UInt8(ascii: ":"))
        buffer.appendDecimal(UInt64(seconds / 60 % 60), minimumDigits: 2)
        buffer.append(UInt8(ascii: ":"))
        buffer.appendDecimal(UInt64(seconds % 60), minimumDigits: 2)
        buffer.append(UInt8(ascii: "."))
        buffer.appendDecimal(UInt64(microsOfDay % 1_000_000), minimumDigits: 6)
        buffer.append(UInt8(ascii: "Z"))
    }

    /// Reads the RFC 3339 form described on the type.
    ///
    /// - Throws: ``LogError`` with code `.badInput` naming the text and what is
    ///   wrong with it.
    public init(parsing text: some StringProtocol) throws(LogError) {
        var reader = Reader(bytes: Array(text.utf8))
        do {
            self.init(microsSinceEpoch: try reader.parse())
        } catch {
            throw LogError(
                .badInput,
                "timestamp \"\(text)\": \(error.why); expected the form 2026-11-25T11:00:00.123456Z (UTC)")
        }
    }
}

// MARK: - CivilCalendar arithmetic

/// Proleptic Gregorian calendar arithmetic on day numbers, day 0 being
/// 1970-01-01. Algorithms from Howard Hinnant, "chrono-Compatible Low-Level
/// Date Algorithms" (public domain): eras of 400 years (146 097 days) make
/// the leap rule periodic, and a year that starts in March puts the leap day
/// last, so no table of month lengths is needed.
enum CivilCalendar {
    static let microsPerDay: Int64 = 86_400_000_000

    /// Days since 1970-01-01 of a civil date; `month` 1…12, `day` 1…31.
    static func days(fromYear year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400                                  // [0, 399]
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1  // [0, 365]
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear   // [0, 146096]
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The civil date of a day number; inverse of ``days(fromYear:month:day:)``.
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097                                                  // [0, 146096]
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365  // [0, 399]
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // [0, 365]
        let mp = (5 * dayOfYear + 2) / 153                                               // [0, 11], March = 0
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func isLeap(_ year: Int64) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

// MARK: - Parsing

extension Timestamp {
    /// Why a timestamp was rejected; turned into a ``LogError`` by the caller,
    /// which knows the whole text.
    struct Rejection: Error {
        var why: String
    }

    /// A cursor over the UTF-8 bytes of one timestamp.
    struct Reader {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        private mutating func expect(_ ascii: Unicode.Scalar, _ what: String) throws(Rejection) {
            guard current == UInt8(ascii: ascii) else {
                throw Rejection(why: "expected '\(ascii)' \(what) at character \(index + 1)")
            }
            index += 1
        }

        /// Reads between `min` and `max` decimal digits.
        private mutating func digits(_ what: String, min: Int, max: Int) throws(Rejection) -> (value: Int64, count: Int) {
            var value: Int64 = 0
            var count = 0
            while count < max, let c = current, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") {
                value = value * 10 + Int64(c - UInt8(ascii: "0"))
                count += 1
                index += 1
            }
            if count < min {
                throw Rejection(why: min == max
                    ? "the \(what) needs \(min) digits"
                    : "the \(what) needs \(min) to \(max) digits")
            }
            return (value, count)
        }

        mutating func parse() throws(Rejection) -> Int64 {
            // Year: exactly 4 digits, or a sign with 4…6 (years -999999…+999999
            // cover the whole Int64 range of microseconds, ±292 277 years).
            var year: Int64
            if let sign = current, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                index += 1
                year = try digits("signed year", min: 4, max: 6).value
                if sign == UInt8(ascii: "-") { year = -year }
            } else {
                year = try digits("year", min: 4, max: 4).value
            }
            try expect("-", "after the year")
            let month = try digits("month", min: 2, max: 2).value
            guard (1...12).contains(month) else { throw Rejection(why: "month \(month) is not 01…12") }
            try expect("-", "after the month")
            let day = try digits("day", min: 2, max: 2).value
            let monthLength = CivilCalendar.daysIn(month: month, year: year)
            guard day >= 1 && day <= monthLength else {
                throw Rejection(why: "day \(day) does not exist in \(year)-\(month < 10 ? "0" : "")\(month)")
            }
            try expect("T", "between date and time (uppercase)")
            let hour = try digits("hour", min: 2, max: 2).value
            guard hour <= 23 else { throw Rejection(why: "hour \(hour) is not 00…23") }
            try expect(":", "after the hour")
            let minute = try digits("minute", min: 2, max: 2).value
            guard minute <= 59 else { throw Rejection(why: "minute \(minute) is not 00…59") }
            try expect(":", "after the minute")
            let second = try digits("second", min: 2, max: 2).value
            if second == 60 { throw Rejection(why: "leap seconds (:60) cannot be represented") }
            guard second <= 59 else { throw Rejection(why: "second \(second) is not 00…59") }
            var fraction: Int64 = 0
            if current == UInt8(ascii: ".") {
                index += 1
                let (value, count) = try digits("fraction", min: 1, max: 6)
                if let c = current, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") {
                    throw Rejection(why: "more than 6 fraction digits (precision is one microsecond)")
                }
                fraction = value
                for _ in count..<6 { fraction *= 10 }
            }
            switch current {
            case UInt8(ascii: "Z"):
                index += 1
            case UInt8(ascii: "+"):
                let offsetStart = index
                index += 1
                let h = try digits("offset hour", min: 2, max: 2).value
                try expect(":", "in the offset")
                let m = try digits("offset minute", min: 2, max: 2).value
                guard h == 0 && m == 0 else {
                    let offset = String(decoding: bytes[offsetStart..<index], as: UTF8.self)
                    throw Rejection(why: "offset \(offset) is not UTC; only Z or +00:00 is accepted")
                }
            case nil:
                throw Rejection(why: "missing zone; end with Z")
            default:
                throw Rejection(why: "only UTC is accepted; end with Z or +00:00")
            }
            guard index == bytes.count else {
                throw Rejection(why: "unexpected text after the zone at character \(index + 1)")
            }

            // Days fit easily (|days| < 2^29); the multiplication is what can
            // overflow. Before 1970 the day's start is counted from the next
            // midnight backwards, so the earliest representable day (whose
            // midnight is below Int64.min) still reaches Int64.min.
            var days = CivilCalendar.days(fromYear: year, month: month, day: day)
            var microsOfDay = ((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction
            if days < 0 {
                days += 1
                microsOfDay -= CivilCalendar.microsPerDay
            }
            let (dayMicros, o1) = days.multipliedReportingOverflow(by: CivilCalendar.microsPerDay)
            let (total, o2) = dayMicros.addingReportingOverflow(microsOfDay)
            if o1 || o2 { throw Rejection(why: "out of range of 64-bit microseconds since 1970") }
            return total
        }
    }
}
