/// A parsed /proc/interrupts snapshot.
public struct InterruptTable: Sendable, Equatable {
    public struct Row: Sendable, Equatable {
        /// "CAL", "IPI1", "LOC", "24", ...
        public var label: String
        /// One count per CPU column; rows like ERR/MIS carry a single total.
        public var counts: [Int]
        /// "Function call interrupts", "IO-APIC 2-edge timer", ...
        public var description: String
        /// A count column that cannot be a counter (signed, beyond 64 bits): the row's
        /// counts stop there, and any delta over the row is refused.
        public var invalidCount: String?
    }

    public var cpus: Int
    public var rows: [Row]

    public func row(_ label: String) -> Row? { rows.first { $0.label == label } }

    /// Parses the kernel's text. Tolerates missing rows, rows with fewer columns and a
    /// truncated last line; returns nil only when there is no CPU header.
    public static func parse(_ text: String) -> InterruptTable? {
        var lines = text.lines()
        guard let header = lines.first else { return nil }
        let cpus = header.split(separator: " ").filter { $0.hasPrefix("CPU") }.count
        guard cpus > 0 else { return nil }
        lines.removeFirst()
        var rows: [Row] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let label = line[..<colon].trimmingCharacters(in: .whitespaces)
            guard !label.isEmpty, !label.contains(" ") else { continue }
            var counts: [Int] = []
            var invalid: String?
            var words = line[line.index(after: colon)...].split(separator: " ", omittingEmptySubsequences: true)[...]
            scan: while counts.count < cpus, let word = words.first {
                switch GuestNumber.classify(word) {
                // Per-CPU counts are 32-bit in the kernel (printed with %10u): more is forged.
                case .count(let count) where count <= Int(UInt32.max): counts.append(count)
                case .count: invalid = String(word)
                case .invalid: invalid = String(word)
                case .text: break scan
                }
                words.removeFirst()
                if invalid != nil { break }
            }
            rows.append(Row(label: label, counts: counts, description: words.joined(separator: " "), invalidCount: invalid))
        }
        return InterruptTable(cpus: cpus, rows: rows)
    }
}

/// How much one IPI type fired during a test.
public struct IPIDelta: Sendable, Codable, Equatable {
    /// The /proc/interrupts label: CAL, TLB, RES (x86); IPI0…IPIn (arm64).
    public var name: String
    public var description: String
    public var perCPU: [Int]
    public var total: Int
    /// total / operations, when the test reported an operation count.
    public var perOperation: Double?

    enum CodingKeys: String, CodingKey {
        case name, description, total
        case perCPU = "per_cpu", perOperation = "per_op"
    }
}

public enum IPIAccounting {
    /// x86 rows that count inter-processor interrupts (rescheduling, function call, TLB
    /// shootdown, IRQ work, and the posted-interrupt notifications of a KVM host); on
    /// arm64 every IPIn row is one.
    static let x86IPIRows: Set<String> = ["RES", "CAL", "TLB", "IWI", "PMN", "PIN", "NPI", "PIW"]

    public static func isIPI(_ label: String) -> Bool {
        x86IPIRows.contains(label) || (label.hasPrefix("IPI") && label.dropFirst(3).allSatisfy(\.isNumber))
    }

    /// Per-CPU deltas of every IPI row present after the test. A row missing before
    /// counts from zero. The numbers are the guest's: a count that is no counter, a
    /// counter that went backwards, or a total beyond 64 bits is refused with the row named.
    public static func deltas(before: InterruptTable, after: InterruptTable, operations: Int?) throws(GuestDataError) -> [IPIDelta] {
        var deltas: [IPIDelta] = []
        for row in after.rows where isIPI(row.label) {
            let previousRow = before.row(row.label)
            for (snapshot, bad) in [("after", row.invalidCount), ("before", previousRow?.invalidCount)] {
                if let bad { throw GuestDataError("/proc/interrupts \(snapshot) the test, row \(row.label): '\(bad)' is not a counter") }
            }
            let previous = previousRow?.counts ?? []
            var perCPU: [Int] = []
            for (index, count) in row.counts.enumerated() {
                perCPU.append(try GuestNumber.delta(before: index < previous.count ? previous[index] : 0, after: count,
                                                    what: "/proc/interrupts row \(row.label) CPU\(index)"))
            }
            let total = try GuestNumber.sum(perCPU, what: "/proc/interrupts row \(row.label)")
            deltas.append(IPIDelta(name: row.label, description: row.description, perCPU: perCPU, total: total,
                                   perOperation: operations.flatMap { $0 > 0 ? Double(total) / Double($0) : nil }))
        }
        return deltas
    }
}
