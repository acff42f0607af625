import Foundation

/// A test program's TAP output (kselftest flavour) with its `# metric k=v` lines.
public struct TAPReport: Sendable, Equatable {
    public struct Result: Sendable, Equatable {
        public var number: Int
        public var ok: Bool
        public var description: String
        /// The reason of a `# SKIP` directive.
        public var skip: String?
    }

    public var planned: Int?
    /// `1..0 # SKIP reason`: the whole test skipped.
    public var planSkip: String?
    public var results: [Result] = []
    public var metrics: [String: String] = [:]
    /// `# ...` diagnostics other than metrics, kept for failure messages.
    public var diagnostics: [String] = []

    public func metric(_ key: String) -> Int? { metrics[key].flatMap { Int($0) } }

    public static func parse(_ text: String) -> TAPReport {
        var report = TAPReport()
        for rawLine in text.lines() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("1..") {
                let (count, directive) = splitDirective(String(line.dropFirst(3)))
                report.planned = Int(count.trimmingCharacters(in: .whitespaces))
                if let directive, directive.uppercased().hasPrefix("SKIP") {
                    report.planSkip = String(directive.dropFirst(4)).trimmingCharacters(in: .whitespaces)
                }
            } else if line.hasPrefix("ok ") || line.hasPrefix("not ok ") {
                let ok = line.hasPrefix("ok ")
                let rest = line.dropFirst(ok ? 3 : 7)
                let numberText = rest.prefix { $0.isNumber }
                let (description, directive) = splitDirective(String(rest.dropFirst(numberText.count)))
                var skip: String?
                if let directive, directive.uppercased().hasPrefix("SKIP") {
                    skip = String(directive.dropFirst(4)).trimmingCharacters(in: .whitespaces)
                }
                report.results.append(Result(number: Int(numberText) ?? report.results.count + 1, ok: ok,
                                             description: description.trimmingCharacters(in: CharacterSet(charactersIn: " -")),
                                             skip: skip))
            } else if line.hasPrefix("# metric ") {
                let pair = line.dropFirst("# metric ".count)
                if let equals = pair.firstIndex(of: "=") {
                    report.metrics[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
                }
            } else if line.hasPrefix("#") {
                report.diagnostics.append(String(line.dropFirst().trimmingCharacters(in: .whitespaces)))
            }
        }
        return report
    }

    private static func splitDirective(_ text: String) -> (String, String?) {
        guard let hash = text.firstIndex(of: "#") else { return (text, nil) }
        return (String(text[..<hash]).trimmingCharacters(in: .whitespaces),
                String(text[text.index(after: hash)...]).trimmingCharacters(in: .whitespaces))
    }
}
