import Foundation

/// One check behind a verdict: from the test's TAP (`guest`) or made by the host.
public struct Check: Sendable, Codable, Equatable {
    public var name: String
    public var passed: Bool
    public var skipped: Bool
    public var detail: String?
    public var source: String

    public init(name: String, passed: Bool, skipped: Bool = false, detail: String? = nil, source: String) {
        self.name = name
        self.passed = passed
        self.skipped = skipped
        self.detail = detail
        self.source = source
    }
}

/// Where a cell's per-op counts were taken.
public enum CounterScope: String, Sendable, Codable, Equatable {
    /// Between the test's own marks around the loop that performs the operations.
    case measuredLoop = "loop"
    /// Around the whole test program: set-up, teardown and exit included.
    case wholeTest = "test"
}

public struct CellCounters: Sendable, Codable, Equatable {
    /// What one operation is (`fork-exit`), and how many the test performed.
    public var operation: String
    public var operations: Int?
    /// Counted in `scope`, per operation where the test reported a count.
    public var ipis: [IPIDelta]
    public var probes: [ProbeDelta]
    /// nil in results written before the tests marked their loops: the whole test.
    public var scope: CounterScope?
    /// With a measured loop: what the test cost outside it (totals, not per op).
    public var fixedIPIs: [IPIDelta]?
    public var fixedProbes: [ProbeDelta]?
    /// IPIs delivered by sender, from the ipi tracepoints; nil where the kernel has none.
    public var ipiSenders: IPISenders?

    public init(operation: String, operations: Int?, ipis: [IPIDelta], probes: [ProbeDelta], scope: CounterScope? = nil,
                fixedIPIs: [IPIDelta]? = nil, fixedProbes: [ProbeDelta]? = nil, ipiSenders: IPISenders? = nil) {
        self.operation = operation
        self.operations = operations
        self.ipis = ipis
        self.probes = probes
        self.scope = scope
        self.fixedIPIs = fixedIPIs
        self.fixedProbes = fixedProbes
        self.ipiSenders = ipiSenders
    }

    enum CodingKeys: String, CodingKey {
        case operation, operations, ipis, probes, scope
        case fixedIPIs = "fixed_ipis", fixedProbes = "fixed_probes", ipiSenders = "ipi_senders"
    }

    /// Some hits of the probe were missed (kprobe_profile's misses): its count is a lower bound.
    public func isLowerBound(_ symbol: String) -> Bool { (probe(symbol)?.missed ?? 0) > 0 }

    public func ipi(_ name: String) -> IPIDelta? { ipis.first { $0.name == name } }
    public func probe(_ symbol: String) -> ProbeDelta? { probes.first { $0.symbol == symbol } }
}

public struct CellTimings: Sendable, Codable, Equatable {
    /// Kernel start until the agent was ready (guest clock).
    public var bootSeconds: Double?
    /// The test program's own wall time (guest clock).
    public var testSeconds: Double?
    /// Domain start until it stopped (host clock).
    public var totalSeconds: Double
    /// The part of the total spent in libvirt's domain start (host clock).
    public var startSeconds: Double?

    public init(bootSeconds: Double? = nil, testSeconds: Double? = nil, totalSeconds: Double, startSeconds: Double? = nil) {
        self.bootSeconds = bootSeconds
        self.testSeconds = testSeconds
        self.totalSeconds = totalSeconds
        self.startSeconds = startSeconds
    }

    enum CodingKeys: String, CodingKey {
        case bootSeconds = "boot_s", testSeconds = "test_s", totalSeconds = "total_s", startSeconds = "start_s"
    }
}

public struct GuestInfo: Sendable, Codable, Equatable {
    public var uname: String
    public var cpus: Int
    public var hugepages: HugepageCounters
    public var probes: [ProbeRegistration]
    /// "virtio-serial", or "console" when the agent found no result port.
    public var recordsChannel: String?

    enum CodingKeys: String, CodingKey {
        case uname, cpus, hugepages, probes
        case recordsChannel = "records_channel"
    }
}

/// The cell a result belongs to, as written into its result.json.
public struct CellDescriptor: Sendable, Codable, Equatable {
    public var id: String
    public var arch: Arch
    public var kernel: String
    public var kernelVersion: String
    public var kernelOrigin: String
    public var accel: Accelerator
    /// "on", "off", or "default" when the hypervisor's defaults were left alone.
    public var paravirt: String
    public var vcpus: Int
    public var memoryMiB: Int
    public var test: String
    public var parameters: [String: ParameterValue]
    /// Under TCG: whether QEMU ran the vCPUs on one host thread or a thread each.
    public var tcgThreads: TCGThreads?

    enum CodingKeys: String, CodingKey {
        case id, arch, kernel, accel, paravirt, vcpus, test, parameters
        case kernelVersion = "kernel_version", kernelOrigin = "kernel_origin", memoryMiB = "memory_mib"
        case tcgThreads = "tcg_threads"
    }
}

/// Everything known about one cell after it ran: written as result.json.
public struct CellResult: Sendable, Codable, Equatable {
    public static let schemaVersion = 1

    public var schema = CellResult.schemaVersion
    public var cell: CellDescriptor
    public var status: CellStatus
    public var reason: String?
    public var checks: [Check]
    public var counters: CellCounters?
    public var metrics: [String: String]
    public var splats: [Splat]
    public var guest: GuestInfo?
    public var timings: CellTimings
    /// The console's last lines when the harness failed, to show without opening files.
    public var consoleTail: String?
    /// A matrix spec's expectations for this cell; an unmet one makes the cell FAIL.
    public var expectations: [ExpectationOutcome]?
    /// For repeated cells: which repeat this is (1-based); nil when not repeated.
    public var repeatIndex: Int?
    /// Race tests: whether the widening module was armed and how often it fired.
    public var widening: WideningSummary?
    /// Set when the cell shared its guest boot with other cells (`--isolation batch`).
    public var batch: BatchPlacement?
    /// How its guest came to life: restored from a saved guest, or booted (and why not
    /// restored); absent from results before saved guests, and from replays.
    public var guestStart: String?

    enum CodingKeys: String, CodingKey {
        case schema, cell, status, reason, checks, counters, metrics, splats, guest, timings, expectations, widening, batch
        case consoleTail = "console_tail", repeatIndex = "repeat", guestStart = "guest_start"
    }
}
