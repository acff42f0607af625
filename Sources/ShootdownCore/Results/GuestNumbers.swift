/// Numbers the guest wrote (in /proc/interrupts or kprobe_profile text) are untrusted:
/// they are parsed strictly and every sum or difference on them is checked, so a hostile
/// or broken guest gives a reasoned ERROR, never a trap of the host process.
public struct GuestDataError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum GuestNumber {
    public enum Word: Equatable {
        /// A counter: decimal digits only, within Int.
        case count(Int)
        /// Looks like a number but cannot be a counter: signed, or beyond Int.max.
        case invalid
        /// Not a number at all (a description word).
        case text
    }

    /// Classifies one whitespace-separated word. Counters the kernel prints are unsigned
    /// decimal; `Int(_:)` alone would also accept "-5" and "+5".
    public static func classify(_ word: Substring) -> Word {
        let utf8 = word.utf8
        var digits = utf8[...]
        if let sign = digits.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return .text }
        guard digits.count == utf8.count, let value = Int(word) else { return .invalid }
        return .count(value)
    }

    /// `after - before` of two counters; a counter that went backwards is rejected.
    public static func delta(before: Int, after: Int, what: @autoclosure () -> String) throws(GuestDataError) -> Int {
        // Both are ≥ 0 (see `classify`), so the subtraction itself cannot overflow.
        guard before >= 0, after >= 0 else { throw GuestDataError("\(what()): negative counter (\(before) → \(after))") }
        guard after >= before else { throw GuestDataError("\(what()): counter went backwards (\(before) → \(after))") }
        return after - before
    }

    /// A checked sum of counters.
    public static func sum(_ values: [Int], what: @autoclosure () -> String) throws(GuestDataError) -> Int {
        var total = 0
        for value in values {
            let (next, overflow) = total.addingReportingOverflow(value)
            guard !overflow else { throw GuestDataError("\(what()): the total overflows 64 bits") }
            total = next
        }
        return total
    }
}
