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
    /// ok, missing (before v6.4, or no tracing) or error: the ipi tracepoints per test.
    public var ipiTrace: String?

    enum CodingKeys: String, CodingKey {
        case agent, uname, machine, cpus, hugepages, probes, dmesg, widen
        case ipiTrace = "ipi_trace"
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
    /// The test's own snapshots around its measured loop; nil when it marked none.
    public var window: MeasuredWindow?
    /// nil from agents before the page-table check.
    public var pageTables: PageTableCounts?
    /// The ipi tracepoints' text (IPITrace), where the boot record says `ipi_trace: ok`.
    public var ipiTrace: String?
    public var ipiTraceCut: Bool?

    enum CodingKeys: String, CodingKey {
        case id, exit, signal, output, kmsg, window
        case pageTables = "page_tables_kb"
        case ipiTrace = "ipi_trace", ipiTraceCut = "ipi_trace_cut"
        case widenBefore = "widen_before", widenAfter = "widen_after"
        case timedOut = "timed_out", wallNs = "wall_ns", outputTruncated = "output_truncated"
        case interruptsBefore = "interrupts_before", interruptsAfter = "interrupts_after"
        case kprobesBefore = "kprobes_before", kprobesAfter = "kprobes_after"
        case hugepagesBefore = "hugepages_before", hugepagesAfter = "hugepages_after"
    }
}

/// PageTables of /proc/meminfo (kB) before the test and once its page tables were freed.
public struct PageTableCounts: Sendable, Codable, Equatable {
    public var before: Int?
    public var after: Int?
    /// How long the agent waited for the count to come back down (it gives up at 1 s).
    public var settleMs: Int?

    enum CodingKeys: String, CodingKey {
        case before, after
        case settleMs = "settle_ms"
    }
}

/// /proc/interrupts and kprobe_profile as the test copied them at the start and the end
/// of the loop that performs its operations (Templates/_common/window.c.mustache).
public struct MeasuredWindow: Sendable, Codable, Equatable {
    public var interruptsBegin: String
    public var interruptsEnd: String
    public var kprobesBegin: String
    public var kprobesEnd: String
    /// The agent cut a copy at its cap: the window cannot be counted.
    public var cut: Bool

    enum CodingKeys: String, CodingKey {
        case cut
        case interruptsBegin = "interrupts_begin", interruptsEnd = "interrupts_end"
        case kprobesBegin = "kprobes_begin", kprobesEnd = "kprobes_end"
    }
}

/// Everything the agent sent in one boot.
public struct GuestRecords: Sendable, Equatable {
    public var boot: BootRecord?
    public var tests: [TestRecord] = []
    public var finished = false
    public var agentErrors: [String] = []
    /// Lines that were not valid records: reported, never trusted. The first
    /// `keptReasons` are kept; `rejectedCount` counts them all.
    public var rejected: [String] = []
    public var rejectedCount = 0
    /// Valid records the protocol does not allow (a second boot, test or done record, a
    /// record after the final one, records on the console the host did not ask for).
    /// They make the cell an ERROR; the first of each kind is the one kept.
    public var disallowed: [String] = []
    /// Set when the host cut the stream at its size limit (see GuestStream).
    public var truncation: GuestStream.Truncation?
    /// Lines after `maxProblemLines` bad ones: counted, not decoded (the stream is
    /// already an ERROR, and decoding millions of junk lines would take minutes).
    public var unparsedLines = 0
    public var doneUptimeNs: Int64?

    public static let maxLineBytes = 4 << 20
    public static let keptReasons = 20
    public static let maxProblemLines = 1000
    /// The prefix of records the agent writes to the console when it finds no result port.
    public static let consolePrefix = "@@SHOOTDOWN-RECORD@@"

    /// The console fallback's records as a JSON Lines stream (empty when there are none).
    /// Only lines that start with the prefix count: a kernel message or a test can print
    /// it mid-line, the agent writes it at a line start.
    public static func fromConsole(_ console: String) -> Data {
        var console = console
        let prefix = Array(consolePrefix.utf8)
        var out = Data()
        console.withUTF8 { bytes in
            GuestStream.forEachLine(UnsafeRawBufferPointer(bytes)) { line, _, _ in
                guard line.starts(with: prefix) else { return true }
                if !out.isEmpty { out.append(UInt8(ascii: "\n")) }
                out.append(contentsOf: line.dropFirst(prefix.count))
                return true
            }
        }
        return out
    }

    /// One boot's records, from the channel the protocol allows. The agent writes them to
    /// the virtio-serial port, and to the console only when it finds no port
    /// (Images/agent/PROTOCOL.md); the host accepts console records only when it asked
    /// for them: `consoleFallback` says the host cannot know that the kernel has a result
    /// port (a kernel whose config it has not seen). Console records anywhere else are
    /// forged or misplaced, and reported as disallowed.
    public static func collect(port: Data, console: String, consoleFallback: Bool)
        -> (records: GuestRecords, stream: Data, fromConsole: Bool) {
        let consoleStream = fromConsole(console)
        let consoleLines = consoleStream.isEmpty ? 0 : consoleStream.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        if port.isEmpty && consoleFallback && !consoleStream.isEmpty {
            return (parse(consoleStream), consoleStream, true)
        }
        var records = parse(port)
        if !consoleStream.isEmpty {
            records.disallowed.append(port.isEmpty
                ? "the console carried \(consoleLines) record line(s), but this kernel has a result port (its config was checked); console records are not trusted"
                : "the console carried \(consoleLines) record line(s) while the result port was in use; console records are not trusted")
        }
        return (records, port, false)
    }

    /// Parses the JSON Lines stream strictly and in one pass: every line is one object
    /// with a known `type`; anything else is rejected with a reason.
    public static func parse(_ data: Data) -> GuestRecords {
        var records = GuestRecords()
        var parser = Parser()
        data.withUnsafeBytes { bytes in
            var rest = 0
            GuestStream.forEachLine(bytes) { line, number, terminated in
                guard parser.problems < maxProblemLines else {
                    rest = bytes.baseAddress!.distance(to: line.baseAddress ?? bytes.baseAddress!)
                    return false
                }
                parser.take(line, number: number, last: !terminated, into: &records)
                return true
            }
            // Past the junk limit the lines are only counted, in bulk, and searched for
            // the host's truncation marker.
            if rest > 0 {
                let tail = UnsafeRawBufferPointer(rebasing: bytes[rest...])
                records.unparsedLines = GuestStream.countLines(tail)
                if let truncation = GuestStream.truncation(in: tail) { records.truncation = truncation }
            }
        }
        return records
    }

    struct Parser {
        let decoder = JSONDecoder()
        let marker = Array(GuestStream.truncationMarker.utf8)
        /// Line numbers of the records kept, by kind ("boot", "test:<id>", "done").
        var kept: [String: Int] = [:]
        var problems = 0

        struct Envelope: Decodable {
            var type: String
            var message: String?
            var uptimeNs: Int64?
            enum CodingKeys: String, CodingKey { case type, message, uptimeNs = "uptime_ns" }
        }

        mutating func take(_ line: UnsafeRawBufferPointer, number: Int, last: Bool, into records: inout GuestRecords) {
            if line.isEmpty { return }
            // The host's own marker is looked for on every line, even past the junk limit.
            if line.starts(with: marker) {
                records.truncation = GuestStream.Truncation(line: Substring(decoding: line, as: UTF8.self))
                return
            }
            guard line.count <= GuestRecords.maxLineBytes else {
                reject("line \(number): \(line.count) bytes, over the \(GuestRecords.maxLineBytes)-byte limit", into: &records)
                return
            }
            // A record is an object: anything else is junk, rejected without a decoder.
            guard line.first(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) == UInt8(ascii: "{") else {
                reject("line \(number): \(last ? "truncated or invalid" : "invalid") record (not JSON)", into: &records)
                return
            }
            let lineData = Data(line)
            do {
                let envelope = try decoder.decode(Envelope.self, from: lineData)
                if records.finished {
                    disallow("line \(number): a \(GuestText.excerpt(envelope.type)) record after the final one (line \(kept["done"] ?? 0))", into: &records)
                    return
                }
                switch envelope.type {
                case "boot":
                    let boot = try decoder.decode(BootRecord.self, from: lineData)
                    guard keep("boot", number, into: &records, what: "boot record") else { return }
                    records.boot = boot
                case "test":
                    let test = try decoder.decode(TestRecord.self, from: lineData)
                    guard keep("test:" + test.id, number, into: &records, what: "record for test '\(GuestText.excerpt(test.id))'") else { return }
                    records.tests.append(test)
                case "done":
                    kept["done"] = number
                    records.finished = true
                    records.doneUptimeNs = envelope.uptimeNs
                case "agent-error":
                    if records.agentErrors.count < GuestRecords.keptReasons {
                        records.agentErrors.append(envelope.message ?? "unspecified agent error")
                    }
                default:
                    reject("line \(number): unknown record type '\(GuestText.excerpt(envelope.type))'", into: &records)
                }
            } catch {
                reject("line \(number): \(last ? "truncated or invalid" : "invalid") record (\(GuestRecords.describe(error)))", into: &records)
            }
        }

        /// Keeps the first record of a kind; a second one is disallowed.
        mutating func keep(_ kind: String, _ number: Int, into records: inout GuestRecords, what: String) -> Bool {
            if let first = kept[kind] {
                disallow("line \(number): a second \(what) (line \(first) is kept)", into: &records)
                return false
            }
            kept[kind] = number
            return true
        }

        mutating func reject(_ reason: String, into records: inout GuestRecords) {
            problems += 1
            records.rejectedCount += 1
            if records.rejected.count < GuestRecords.keptReasons { records.rejected.append(reason) }
        }

        mutating func disallow(_ reason: String, into records: inout GuestRecords) {
            problems += 1
            if records.disallowed.count < GuestRecords.keptReasons { records.disallowed.append(reason) }
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field \(GuestText.excerpt(key.stringValue))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "bad field \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted: return "not JSON"
        default: return "\(error)"
        }
    }
}
