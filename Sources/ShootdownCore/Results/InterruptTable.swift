/// A parsed /proc/interrupts snapshot.
public struct InterruptTable: Sendable, Equatable {
    public struct Row: Sendable, Equatable {
        /// "CAL", "IPI1", "LOC", "24", ...
        public var label: String
        /// One count per CPU column; rows like ERR/MIS carry a single total.
        public var counts: [Int]
        /// "Function call interrupts", "IO-APIC 2-edge timer", ...
        public var description: String

        public var total: Int { counts.reduce(0, +) }
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
            var words = line[line.index(after: colon)...].split(separator: " ", omittingEmptySubsequences: true)[...]
            while counts.count < cpus, let word = words.first, let count = Int(word) {
                counts.append(count)
                words.removeFirst()
            }
            rows.append(Row(label: label, counts: counts, description: words.joined(separator: " ")))
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
    /// counts from zero; a counter that went backwards (CPU hot-unplug) counts as zero.
    public static func deltas(before: InterruptTable, after: InterruptTable, operations: Int?) -> [IPIDelta] {
        after.rows.filter { isIPI($0.label) }.map { row in
            let previous = before.row(row.label)?.counts ?? []
            let perCPU = row.counts.enumerated().map { index, count in
                max(0, count - (index < previous.count ? previous[index] : 0))
            }
            let total = perCPU.reduce(0, +)
            return IPIDelta(name: row.label, description: row.description, perCPU: perCPU, total: total,
                            perOperation: operations.flatMap { $0 > 0 ? Double(total) / Double($0) : nil })
        }
    }
}
