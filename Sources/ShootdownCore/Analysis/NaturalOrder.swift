import Foundation

/// String order with digit runs compared as numbers: "gib=8" before "gib=32", "6.1.192"
/// before "6.12.117". Swept values reach reports inside labels and keys (and run folders
/// list cells in plain string order), so this is what sorts them the way a reader counts.
func naturallyPrecedes(_ a: String, _ b: String) -> Bool {
    var left = a.unicodeScalars[...], right = b.unicodeScalars[...]
    func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }
    func run(_ text: inout Substring.UnicodeScalarView, digits: Bool) -> String {
        let end = text.firstIndex { isDigit($0) != digits } ?? text.endIndex
        defer { text = text[end...] }
        return String(String.UnicodeScalarView(text[..<end]))
    }
    while let l = left.first, let r = right.first {
        let digits = isDigit(l)
        guard digits == isDigit(r) else { return String(l) < String(r) }
        let chunkL = run(&left, digits: digits), chunkR = run(&right, digits: digits)
        if digits {
            // Leading zeros aside, a longer run is a larger number; equal lengths compare as text.
            let trimmedL = chunkL.drop { $0 == "0" }, trimmedR = chunkR.drop { $0 == "0" }
            if trimmedL.count != trimmedR.count { return trimmedL.count < trimmedR.count }
            if trimmedL != trimmedR { return trimmedL < trimmedR }
        } else if chunkL != chunkR {
            // Only the first differing character decides, as in plain order, so "a" < "ab1".
            return chunkL < chunkR
        }
    }
    return left.isEmpty && !right.isEmpty || (left.isEmpty && right.isEmpty && a < b)
}
