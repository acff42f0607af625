import Foundation

/// Hugepage pool counters (2 MiB pages) as the agent read them.
public struct HugepageCounters: Sendable, Codable, Equatable {
    public var total: Int?
    public var free: Int?
    public var resv: Int?
    public var surp: Int?
    public var requested: Int?
}

public struct ProbeRegistration: Sendable, Codable, Equatable {
    public var symbol: String
    public var status: String
    public var error: String?
}

public struct BootRecord: Sendable, Codable, Equatable {
    public var agent: Int
    public var uname: String
    public var machine: String?
    public var cpus: Int
    public var hugepages: HugepageCounters
    public var probes: [ProbeRegistration]
    public var dmesg: String
    public var uptimeNs: Int64?
    /// Whether the widening module loaded (absent from agents before it existed).
    public var widen: WideningLoad?

    enum CodingKeys: String, CodingKey {
        case agent, uname, machine, cpus, hugepages, probes, dmesg, widen
        case uptimeNs = "uptime_ns"
    }
}

/// The boot record's `widen`: off, ok, absent or error, and why.
public struct WideningLoad: Sendable, Codable, Equatable {
    public var status: String
    public var error: String?
}

public struct TestRecord: Sendable, Codable, Equatable {
    public var id: String
    public var exit: Int
    public var signal: Int
    public var timedOut: Bool
    public var wallNs: Int64
    public var output: String
    public var outputTruncated: Bool?
    public var interruptsBefore: String
    public var interruptsAfter: String
    public var kprobesBefore: String
    public var kprobesAfter: String
    public var hugepagesBefore: HugepageCounters
    public var hugepagesAfter: HugepageCounters
    public var kmsg: String
    public var widenBefore: String?
    public var widenAfter: String?

    enum CodingKeys: String, CodingKey {
        case id, exit, signal, output, kmsg
        case widenBefore = "widen_before", widenAfter = "widen_after"
        case timedOut = "timed_out", wallNs = "wall_ns", outputTruncated = "output_truncated"
        case interruptsBefore = "interrupts_before", interruptsAfter = "interrupts_after"
        case kprobesBefore = "kprobes_before", kprobesAfter = "kprobes_after"
        case hugepagesBefore = "hugepages_before", hugepagesAfter = "hugepages_after"
    }
}

/// Everything the agent sent in one boot.
public struct GuestRecords: Sendable, Equatable {
    public var boot: BootRecord?
    public var tests: [TestRecord] = []
    public var finished = false
    public var agentErrors: [String] = []
    /// Lines that were not valid records: reported, never trusted.
    public var rejected: [String] = []
    public var doneUptimeNs: Int64?

    public static let maxLineBytes = 4 << 20
    /// The prefix of records the agent writes to the console when it finds no result port.
    public static let consolePrefix = "@@SHOOTDOWN-RECORD@@"

    /// The console fallback's records as a JSON Lines stream (empty when there are none).
    public static func fromConsole(_ console: String) -> Data {
        let records = console.lines().compactMap { line -> Substring? in
            guard let range = line.range(of: consolePrefix) else { return nil }
            return line[range.upperBound...]
        }
        return Data(records.joined(separator: "\n").utf8)
    }

    /// Parses the JSON Lines stream strictly: every line is one object with a known
    /// `type`; anything else is rejected with a reason.
    public static func parse(_ data: Data) -> GuestRecords {
        var records = GuestRecords()
        let decoder = JSONDecoder()
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.isEmpty { continue }
            guard line.count <= maxLineBytes else {
                records.rejected.append("line \(lineNumber): \(line.count) bytes, over the \(maxLineBytes)-byte limit")
                continue
            }
            let lineData = Data(line)
            struct Envelope: Decodable {
                var type: String
                var message: String?
                var uptimeNs: Int64?
                enum CodingKeys: String, CodingKey { case type, message, uptimeNs = "uptime_ns" }
            }
            do {
                let envelope = try decoder.decode(Envelope.self, from: lineData)
                switch envelope.type {
                case "boot": records.boot = try decoder.decode(BootRecord.self, from: lineData)
                case "test": records.tests.append(try decoder.decode(TestRecord.self, from: lineData))
                case "done":
                    records.finished = true
                    records.doneUptimeNs = envelope.uptimeNs
                case "agent-error": records.agentErrors.append(envelope.message ?? "unspecified agent error")
                default: records.rejected.append("line \(lineNumber): unknown record type '\(envelope.type)'")
                }
            } catch {
                let last = lineNumber == data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).count
                records.rejected.append("line \(lineNumber): \(last ? "truncated or invalid" : "invalid") record (\(Self.describe(error)))")
            }
        }
        return records
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field \(key.stringValue)"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "bad field \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted: return "not JSON"
        default: return "\(error)"
        }
    }
}
