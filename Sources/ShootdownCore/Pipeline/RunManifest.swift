import Foundation

/// run.json: the request and the expanded cells.
public struct RunManifest: Sendable, Codable {
    public var request: RunRequest
    public var cells: [Cell]
    /// `I/N` when the run is one shard; resuming must use the same.
    public var shard: String?

    public init(request: RunRequest, cells: [Cell], shard: String? = nil) {
        self.request = request
        self.cells = cells
        self.shard = shard
    }

    /// The fields in which two requests differ, each as "field: old in run.json, new now".
    public static func differences(_ recorded: RunRequest, _ now: RunRequest) -> [String] {
        guard recorded != now else { return [] }
        func fields(_ request: RunRequest) -> [String: String] {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            guard let data = try? encoder.encode(request),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
            return object.mapValues { value in
                guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes]) else {
                    return "\(value)"
                }
                let text = String(decoding: data, as: UTF8.self)
                return text.count > 120 ? String(text.prefix(120)) + "…" : text
            }
        }
        let old = fields(recorded), new = fields(now)
        let found = Set(old.keys).union(new.keys).sorted().compactMap { key -> String? in
            let before = old[key] ?? "none", after = new[key] ?? "none"
            return before == after ? nil : "\(key): \(before) in run.json, \(after) now"
        }
        return found.isEmpty ? ["the requests differ"] : found
    }
}
