extension Array where Element == UInt8 {
    /// Appends `value` in ASCII decimal, left-padded with zeros to
    /// `minimumDigits` (at most 20), without going through `String`: the JSON
    /// and timestamp encoders call this several times per record.
    @inline(__always)
    mutating func appendDecimal(_ value: UInt64, minimumDigits: Int = 1) {
        precondition(minimumDigits <= 20, "at most 20 digits")
        // UInt64.max has 20 digits; write them right to left on the stack.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var v = value
            var i = 20
            repeat {
                i -= 1
                digits[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            } while v != 0
            while 20 - i < minimumDigits {
                i -= 1
                digits[i] = UInt8(ascii: "0")
            }
            append(contentsOf: UnsafeBufferPointer(rebasing: digits[i...]))
        }
    }

    /// Appends a signed integer in ASCII decimal (`Int64.min` included).
    @inline(__always)
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 { append(UInt8(ascii: "-")) }
        appendDecimal(value.magnitude)
    }
}
