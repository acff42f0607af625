import Foundation

/// The `ipi:ipi_send_cpu` and `ipi:ipi_send_cpumask` tracepoints (v6.4+) as the agent's
/// trace instance recorded them during one test: every IPI the kernel sent, with the
/// function the target CPUs run (`callback`) and where it was sent from (`callsite`).
/// The test's window marks are `tracing_mark_write: shootdown-window begin|end` lines.
public struct IPITrace: Sendable, Equatable {
    public struct Send: Sendable, Equatable {
        /// What the receivers run, without its offset; nil for an IPI without one (a
        /// reschedule, an irq_work), named by its callsite instead.
        public var callback: String?
        public var callsite: String
        /// CPUs the IPI went to.
        public var cpus: Int
        public var inWindow: Bool
        /// A csd_queue_cpu event: `callback` queued to run on one other CPU. The IPI that
        /// carries it is an ipi_send event whose callback is the generic call-function
        /// handler, and one IPI may carry several queued functions.
        public var queued: Bool

        /// The row this send counts in.
        var senderName: String {
            if !queued, let callback, callback.hasPrefix("generic_smp_call_function") { return IPISenders.callFunctionIPIs }
            return callback ?? "callsite:\(callsite)"
        }
    }

    public var sends: [Send]
    /// Both window marks were found, in order: `inWindow` is the measured loop.
    public var windowMarked: Bool
    /// Events the ring buffer overwrote ("entries-in-buffer/entries-written" in the header).
    public var lost: Int

    /// Lines that are not ipi events, markers or the header are skipped: the trace is guest
    /// text. A last line without a newline was cut by the agent's cap and is dropped.
    public static func parse(_ text: String) -> IPITrace {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        if !text.isEmpty, !(text.last?.isNewline ?? true) { lines.removeLast() }
        var sends: [Send] = []
        var lost = 0
        var begun = false, ended = false
        for line in lines {
            if line.hasPrefix("#") {
                if let counts = Self.value(after: "entries-in-buffer/entries-written:", in: line) {
                    let parts = counts.split(separator: "/").compactMap { Int($0) }
                    if parts.count == 2, parts[1] >= parts[0] { lost = parts[1] - parts[0] }
                }
                continue
            }
            if line.contains("tracing_mark_write: shootdown-window begin") {
                begun = !ended
                continue
            }
            if line.contains("tracing_mark_write: shootdown-window end") {
                ended = begun
                continue
            }
            if let event = line.range(of: ": csd_queue_cpu: ") {
                let body = line[event.upperBound...]
                guard value(after: "cpu=", in: body).flatMap({ Int($0) }) != nil,
                      let callsite = value(after: "callsite=", in: body).map(symbol),
                      let function = value(after: "func=", in: body).map(symbol) else { continue }
                sends.append(Send(callback: function, callsite: callsite, cpus: 1, inWindow: begun && !ended, queued: true))
                continue
            }
            guard let event = line.range(of: ": ipi_send_cpu") else { continue }
            let body = line[event.upperBound...]
            let cpus: Int
            if body.hasPrefix("mask: "), let mask = value(after: "cpumask=", in: body) {
                guard let count = cpuCount(mask) else { continue }
                cpus = count
            } else if body.hasPrefix(": "), value(after: "cpu=", in: body).flatMap({ Int($0) }) != nil {
                cpus = 1
            } else {
                continue
            }
            guard let callsite = value(after: "callsite=", in: body).map(symbol) else { continue }
            let callback = value(after: "callback=", in: body).map(symbol)
            sends.append(Send(callback: callback == "0x0" ? nil : callback, callsite: callsite, cpus: cpus,
                              inWindow: begun && !ended, queued: false))
        }
        return IPITrace(sends: sends, windowMarked: begun && ended, lost: lost)
    }

    /// The CPUs in a cpumask as the tracepoint prints it: 32-bit hex groups, most
    /// significant first ("00000000,0000000e": CPUs 1-3), or a list ("1-3") in other
    /// kernels; nil when it is neither.
    static func cpuCount(_ mask: Substring) -> Int? {
        let groups = mask.split(separator: ",", omittingEmptySubsequences: false)
        if groups.allSatisfy({ $0.count == 8 && $0.allSatisfy(\.isHexDigit) }) {
            let count = groups.reduce(0) { $0 + (UInt32($1, radix: 16)?.nonzeroBitCount ?? 0) }
            return count > 0 ? count : nil
        }
        return cpuListCount(mask)
    }

    static func cpuListCount(_ list: Substring) -> Int? {
        var count = 0
        for range in list.split(separator: ",") {
            let ends = range.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard ends.count <= 2, let low = ends.first ?? nil, let high = ends.last ?? nil,
                  low >= 0, high >= low, high < 1 << 16 else { return nil }
            count += high - low + 1
        }
        return count > 0 ? count : nil
    }

    static func value(after key: String, in line: Substring) -> Substring? {
        guard let start = line.range(of: key) else { return nil }
        let rest = line[start.upperBound...].drop { $0 == " " }
        let value = rest.prefix { !$0.isWhitespace }
        return value.isEmpty ? nil : value
    }

    /// `flush_tlb_func+0x0/0x250` → `flush_tlb_func`.
    static func symbol(_ text: Substring) -> String {
        String(text.prefix { $0 != "+" })
    }
}

/// IPIs by who sent them, for the cell: from the ipi tracepoints where the kernel has them.
public struct IPISenders: Sendable, Codable, Equatable {
    public struct Sender: Sendable, Codable, Equatable {
        /// The function queued to the receivers (csd), `callsite:<function>` for an IPI
        /// without a callback (a reschedule), or `callFunctionIPIs`.
        public var name: String
        /// One per target CPU of every send: IPIs for `callFunctionIPIs` and callsite
        /// rows, functions queued to run on another CPU for the csd rows.
        public var ipis: Int
        public var perOperation: Double?

        enum CodingKeys: String, CodingKey {
            case name, ipis
            case perOperation = "per_op"
        }
    }

    public var scope: CounterScope
    /// The trace lost events, or the agent cut it: every count is a lower bound.
    public var lowerBound: Bool
    public var senders: [Sender]

    enum CodingKeys: String, CodingKey {
        case scope, senders
        case lowerBound = "lower_bound"
    }

    /// Counts the measured loop where both marks are in the trace, the whole test otherwise.
    public init(_ trace: IPITrace, operations: Int?, cut: Bool) {
        scope = trace.windowMarked ? .measuredLoop : .wholeTest
        lowerBound = cut || trace.lost > 0
        var counts: [String: Int] = [:]
        for send in trace.sends where !trace.windowMarked || send.inWindow {
            counts[send.senderName, default: 0] += send.cpus
        }
        senders = counts.map { name, ipis in
            Sender(name: name, ipis: ipis, perOperation: operations.flatMap { $0 > 0 ? Double(ipis) / Double($0) : nil })
        }.sorted { ($0.ipis, $1.name) > ($1.ipis, $0.name) }
    }

    public func sender(_ name: String) -> Sender? { senders.first { $0.name == name } }

    /// The call-function IPIs themselves, whatever functions they carried.
    public static let callFunctionIPIs = "call-function IPIs"
}
