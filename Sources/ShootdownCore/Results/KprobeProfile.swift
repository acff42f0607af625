import Foundation

/// A parsed /sys/kernel/tracing/kprobe_profile: `  <event> <hits> <misses>` per line.
public struct KprobeProfile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var event: String
        public var hits: Int
        public var missed: Int
    }

    public var entries: [Entry]
    /// Lines of an event whose figures cannot be counters (signed, beyond 64 bits), by
    /// event: a delta over such an event is refused, not guessed.
    public var invalid: [String: String] = [:]

    public static func parse(_ text: String) -> KprobeProfile {
        var profile = KprobeProfile(entries: [])
        for line in text.lines() {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count == 3 else { continue }
            switch (GuestNumber.classify(words[1]), GuestNumber.classify(words[2])) {
            case (.count(let hits), .count(let missed)):
                profile.entries.append(Entry(event: String(words[0]), hits: hits, missed: missed))
            case (.text, _), (_, .text):
                continue
            default:
                profile.invalid[String(words[0]), default: String(line)] = String(line)
            }
        }
        return profile
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

    /// Hit deltas for every registered probe, in registration order. Counts are the
    /// guest's: a figure that is no counter or went backwards is refused, with the probe named.
    public static func deltas(before: KprobeProfile, after: KprobeProfile, symbols: [String],
                              operations: Int?) throws(GuestDataError) -> [ProbeDelta] {
        var deltas: [ProbeDelta] = []
        for symbol in symbols {
            let event = KprobeEventName.sanitized(symbol)
            for (snapshot, profile) in [("after", after), ("before", before)] {
                if let line = profile.invalid[event] {
                    throw GuestDataError("kprobe_profile \(snapshot) the test: '\(line.trimmingCharacters(in: .whitespaces))' holds no counters")
                }
            }
            guard let end = after.entry(event) else { continue }
            let start = before.entry(event)
            let hits = try GuestNumber.delta(before: start?.hits ?? 0, after: end.hits, what: "kprobe \(symbol) hits")
            let missed = try GuestNumber.delta(before: start?.missed ?? 0, after: end.missed, what: "kprobe \(symbol) misses")
            deltas.append(ProbeDelta(symbol: symbol, hits: hits, missed: missed,
                                     perOperation: operations.flatMap { $0 > 0 ? Double(hits) / Double($0) : nil }))
        }
        return deltas
    }
}

public enum KprobeEventName {
    /// The agent's event name for a symbol: `foo.isra.0` → `foo_isra_0`.
    public static func sanitized(_ symbol: String) -> String {
        String(symbol.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
    }
}
