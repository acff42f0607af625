import Foundation

/// A manifest's `widen:` section: where the widening module (Images/widen) holds a task
/// inside a race window, and which functions it watches for landing in one.
public struct WideningManifest: Sendable, Decodable, Equatable {
    public struct Point: Sendable, Decodable, Equatable {
        /// `symbol` or `symbol+offset` (an offset into a function, for inlined walkers).
        public var symbol: String
        /// Microseconds: an integer or a product/sum of parameter names (like `hugepages`).
        public var delayUs: String
        /// Delays per boot at most; -1 for no limit.
        public var limit: Int
        /// Where the point works and why it sits where it does.
        public var note: String?

        enum CodingKeys: String, CodingKey {
            case symbol, limit, note
            case delayUs = "delay_us"
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            symbol = try container.decode(String.self, forKey: .symbol)
            // YAML gives `delay_us: 500` as a number and `delay_us: widen_us` as a string.
            if let number = try? container.decode(Int.self, forKey: .delayUs) {
                delayUs = String(number)
            } else {
                delayUs = try container.decode(String.self, forKey: .delayUs)
            }
            limit = try container.decodeIfPresent(Int.self, forKey: .limit) ?? -1
            note = try container.decodeIfPresent(String.self, forKey: .note)
        }
    }

    /// Only tasks whose comm starts with this are delayed (the test names its threads).
    public var comm: String?
    public var points: [Point]
    public var watch: [String]

    enum CodingKeys: String, CodingKey { case comm, points, watch }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        comm = try container.decodeIfPresent(String.self, forKey: .comm)
        points = try container.decodeIfPresent([Point].self, forKey: .points) ?? []
        watch = try container.decodeIfPresent([String].self, forKey: .watch) ?? []
    }

    /// The most widening points and watches the module takes (MAX_POINTS in shootdown_widen.c).
    static let maxLocations = 16

    /// Manifest mistakes, caught when the manifest loads.
    func validate(test: String, parameters: Set<String>) throws {
        func invalid(_ message: String) -> ShootdownError { .templateInvalid(path: test, message: "widen: \(message)") }
        if let comm, comm.isEmpty || comm.utf8.count > 15 || !comm.allSatisfy(Self.isNameCharacter) {
            throw invalid("comm '\(comm)' must be 1 to 15 characters of [A-Za-z0-9_.-] (a task's comm)")
        }
        guard points.count + watch.count <= Self.maxLocations else {
            throw invalid("\(points.count + watch.count) points and watches; the module takes at most \(Self.maxLocations)")
        }
        for location in points.map(\.symbol) + watch where !Self.isLocation(location) {
            throw invalid("'\(location)' is not a symbol or symbol+offset")
        }
        for point in points {
            guard point.limit >= -1 else { throw invalid("\(point.symbol): limit \(point.limit) must be -1 (no limit) or more") }
            do {
                _ = try PoolExpression(point.delayUs, known: parameters)
            } catch {
                throw invalid("\(point.symbol): delay_us '\(point.delayUs)' must be microseconds or a parameter expression")
            }
        }
    }

    static func isNameCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "." || c == "-")
    }

    /// `name` or `name+offset` (decimal or 0x hex), as kprobes take them.
    static func isLocation(_ text: String) -> Bool {
        let parts = text.split(separator: "+", maxSplits: 1, omittingEmptySubsequences: false)
        let symbol = parts[0]
        guard !symbol.isEmpty, symbol.utf8.count < 128,
              symbol.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") }),
              !(symbol.first?.isNumber ?? true) else { return false }
        guard parts.count == 2 else { return true }
        let offset = parts[1]
        if offset.hasPrefix("0x") { return offset.count > 2 && UInt(offset.dropFirst(2), radix: 16) != nil }
        return UInt(offset) != nil
    }

    /// The points with their delays worked out for one instance's parameters.
    func resolved(_ values: [String: ParameterValue]) -> WideningPlan {
        WideningPlan(comm: comm, points: points.map { point in
            let delay = (try? PoolExpression(point.delayUs, known: Set(values.keys)))?.evaluate(values) ?? 0
            return WideningPlan.Point(location: point.symbol, delayUs: delay, limit: point.limit)
        }, watch: watch)
    }
}

/// What one guest's widening module is asked to do.
public struct WideningPlan: Sendable, Codable, Equatable {
    public struct Point: Sendable, Codable, Equatable {
        public var location: String
        public var delayUs: Int
        public var limit: Int

        enum CodingKeys: String, CodingKey {
            case location, limit
            case delayUs = "delay_us"
        }
    }

    public var comm: String?
    public var points: [Point]
    public var watch: [String]

    /// The agent's plan lines (Images/agent/PROTOCOL.md).
    var planLines: [String] {
        points.map { "widen \($0.location) \($0.delayUs) \($0.limit)" } + watch.map { "watch \($0)" }
            + (comm.map { ["widen-comm \($0)"] } ?? [])
    }
}

/// A manifest's `evidence:` entry: a test metric that must reach a minimum for the
/// result to mean anything (e.g. the race window overlapped an unshare at least once).
/// Unmet evidence makes the cell ERROR: the test ran, but proved nothing.
public struct EvidenceCheck: Sendable, Codable, Equatable {
    public var metric: String
    public var min: Double
    public var name: String
}
