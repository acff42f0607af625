/// A parsed /sys/kernel/tracing/kprobe_profile: `  <event> <hits> <misses>` per line.
public struct KprobeProfile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var event: String
        public var hits: Int
        public var missed: Int
    }

    public var entries: [Entry]

    public static func parse(_ text: String) -> KprobeProfile {
        KprobeProfile(entries: text.lines().compactMap { line in
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count == 3, let hits = Int(words[1]), let missed = Int(words[2]) else { return nil }
            return Entry(event: String(words[0]), hits: hits, missed: missed)
        })
    }

    public func entry(_ event: String) -> Entry? { entries.first { $0.event == event } }
}

public struct ProbeDelta: Sendable, Codable, Equatable {
    public var symbol: String
    public var hits: Int
    public var missed: Int
    public var perOperation: Double?

    enum CodingKeys: String, CodingKey {
        case symbol, hits, missed
        case perOperation = "per_op"
    }

    /// Hit deltas for every registered probe, in registration order.
    public static func deltas(before: KprobeProfile, after: KprobeProfile, symbols: [String],
                              operations: Int?) -> [ProbeDelta] {
        symbols.compactMap { symbol in
            let event = KprobeEventName.sanitized(symbol)
            guard let end = after.entry(event) else { return nil }
            let start = before.entry(event)
            let hits = max(0, end.hits - (start?.hits ?? 0))
            return ProbeDelta(symbol: symbol, hits: hits, missed: max(0, end.missed - (start?.missed ?? 0)),
                              perOperation: operations.flatMap { $0 > 0 ? Double(hits) / Double($0) : nil })
        }
    }
}

public enum KprobeEventName {
    /// The agent's event name for a symbol: `foo.isra.0` → `foo_isra_0`.
    public static func sanitized(_ symbol: String) -> String {
        String(symbol.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
    }
}
