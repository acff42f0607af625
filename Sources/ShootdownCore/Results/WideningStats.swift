import Foundation

/// The widening module's per-point counters (Images/agent/PROTOCOL.md, "Widening stats"),
/// as guest text: parsed strictly, and a line that does not parse is left out.
public struct WideningStats: Sendable, Equatable {
    public struct Location: Sendable, Codable, Equatable {
        public enum Kind: String, Sendable, Codable { case point, watch }
        public var kind: Kind
        /// `symbol+offset` as the module printed it.
        public var location: String
        public var armed: Bool
        /// The errno register_kprobe returned (0 when armed).
        public var error: Int
        public var hits: UInt64
        /// Delays done (points) or hits while a delay was in progress (watches).
        public var count: UInt64
        public var delayUs: UInt64?
    }

    public var locations: [Location]

    public static func parse(_ text: String) -> WideningStats {
        WideningStats(locations: text.lines().compactMap(parseLine))
    }

    static func parseLine(_ line: Substring) -> Location? {
        let words = line.split(separator: " ")
        guard words.count >= 2, let kind = Location.Kind(rawValue: String(words[0])) else { return nil }
        var fields: [String: String] = [:]
        for word in words.dropFirst(2) {
            guard let equals = word.firstIndex(of: "=") else { return nil }
            fields[String(word[..<equals])] = String(word[word.index(after: equals)...])
        }
        guard let armed = fields["armed"].flatMap({ UInt8($0) }), armed <= 1,
              let error = fields["error"].flatMap({ Int($0) }),
              let hits = fields["hits"].flatMap({ UInt64($0) }),
              let count = fields[kind == .point ? "fired" : "during"].flatMap({ UInt64($0) }) else { return nil }
        var location = String(words[1])
        if location.hasSuffix("+0") { location.removeLast(2) }
        // Names end up in reports and metric keys: only what a kprobe location can be.
        guard WideningManifest.isLocation(location) else { return nil }
        return Location(kind: kind, location: location, armed: armed == 1, error: error, hits: hits, count: count,
                        delayUs: fields["delay_us"].flatMap { UInt64($0) })
    }

    /// Counts during one test: after minus before, per location. A counter that went
    /// backwards or a location missing before is no evidence: it is dropped.
    public static func delta(before: WideningStats, after: WideningStats) -> WideningStats {
        WideningStats(locations: after.locations.compactMap { later in
            guard let earlier = before.locations.first(where: { $0.kind == later.kind && $0.location == later.location }) else {
                return before.locations.isEmpty ? later : nil
            }
            guard later.hits >= earlier.hits, later.count >= earlier.count else { return nil }
            var delta = later
            delta.hits -= earlier.hits
            delta.count -= earlier.count
            return delta
        })
    }
}

/// What a cell's widening was: asked for, armed, and how often it fired.
public struct WideningSummary: Sendable, Codable, Equatable {
    /// on (module loaded), off (not asked for by the run), unavailable (no module for
    /// this kernel), or failed (the module did not load).
    public var status: String
    public var reason: String?
    public var locations: [WideningStats.Location]

    /// Host checks that say plainly whether the race window was widened. A point that
    /// could not be armed is a skipped check with the reason: the run goes on unwidened.
    func checks() -> [Check] {
        guard status == "on" else {
            return [Check(name: "race window widened", passed: true, skipped: true,
                          detail: reason ?? "widening \(status)", source: "host")]
        }
        return locations.map { location in
            switch (location.kind, location.armed) {
            case (.point, true):
                return Check(name: "widening point \(location.location) armed", passed: true,
                             detail: "\(location.count) delays of \(location.delayUs ?? 0) µs in \(location.hits) hits", source: "host")
            case (.watch, true):
                return Check(name: "watch point \(location.location) armed", passed: true,
                             detail: "\(location.hits) hits, \(location.count) during a widened delay", source: "host")
            case (_, false):
                return Check(name: "\(location.kind == .point ? "widening" : "watch") point \(location.location) armed", passed: true,
                             skipped: true, detail: Self.armingFailure(location.error), source: "host")
            }
        }
    }

    static func armingFailure(_ error: Int) -> String {
        switch -error {
        case Int(ENOENT), Int(EINVAL): return "not armed: the kernel has no such symbol or offset (inlined?), error \(error); ran without it"
        case Int(EILSEQ): return "not armed: the offset is not an instruction boundary (error \(error)); ran without it"
        default: return "not armed: register_kprobe returned \(error); ran without it"
        }
    }

    /// Metrics for reports and expectations: `widen.<location>.fired`, `.hits`, `.during`.
    var metrics: [String: String] {
        var metrics: [String: String] = [:]
        for location in locations where location.armed {
            metrics["widen.\(location.location).hits"] = String(location.hits)
            metrics["widen.\(location.location).\(location.kind == .point ? "fired" : "during")"] = String(location.count)
        }
        return metrics
    }
}
