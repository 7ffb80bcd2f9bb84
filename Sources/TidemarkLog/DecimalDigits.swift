extension Array where Element == UInt8 {
    /// Appends `value` in ASCII decimal, left-padded with zeros to
    /// `minimumDigits`, without going through `String` (the JSON and
    /// timestamp encoders call this several times per record).
    @inline(__always)
    mutating func appendDecimal(_ value: UInt64, minimumDigits: Int = 1) {
        var digitCount = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digitCount += 1
        }
        let length = Swift.max(digitCount, minimumDigits)
        let start = count
        append(contentsOf: repeatElement(UInt8(ascii: "0"), count: length))
        var v = value
        var i = start + length - 1
        while v != 0 {
            self[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
            i -= 1
        }
    }

    /// Appends a signed integer in ASCII decimal (`Int64.min` included).
    @inline(__always)
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 { append(UInt8(ascii: "-")) }
        appendDecimal(value.magnitude)
    }
}
