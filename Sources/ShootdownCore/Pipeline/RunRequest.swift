import Foundation

/// What a run was asked to do; recorded in run.json. `shootdown run` builds one from its
/// options, `shootdown matrix` from a spec file.
public struct RunRequest: Sendable, Codable, Equatable {
    public var name: String
    public var kernels: [KernelSpec]
    /// nil: every arch the kernels serve.
    public var arches: [Arch]?
    /// nil entries leave the hypervisor's defaults alone.
    public var paravirt: [Paravirt?]
    public var vcpus: [Int]
    public var memoryMiB: Int
    public var tests: [TestSelection]
    public var accel: AcceleratorChoice
    public var timeoutSeconds: Int
    public var repeats: Int
    /// Expectations for every cell and sweep (tests carry their own too).
    public var expectations: [ScopedExpectation]
    /// Kconfig fragments added to kernels built from source (git:, dir:).
    public var configFragments: [String] = []
    /// Race tests' widening module: armed unless false (`--widen off`, spec `widen: off`).
    public var widen: Bool?
    /// Shipped kernel flavours for source builds (`debug`, `debug-kasan`): more fragments.
    public var flavour: KernelFlavour?

    /// Whether cells load the widening module where their test declares points.
    public var wideningEnabled: Bool { widen ?? true }

    /// Fragments for source builds: the flavour's, then the user's.
    public func kernelFragments(resources: URL) -> [URL] {
        (flavour.map { KernelConfigFragment.flavour($0, resources: resources) } ?? []) + configFragments.map { URL(fileURLWithPath: $0) }
    }

    public static let defaultTest = "hugetlb-share-fork-exit"

    public init(name: String = "run", kernels: [KernelSpec] = [.debian(version: nil)], arches: [Arch]? = nil,
                paravirt: [Paravirt?] = [nil], vcpus: [Int] = [4], memoryMiB: Int = 1024,
                tests: [TestSelection] = [TestSelection(name: RunRequest.defaultTest)],
                accel: AcceleratorChoice = .auto, timeoutSeconds: Int = 300, repeats: Int = 1,
                expectations: [ScopedExpectation] = []) {
        self.name = name
        self.kernels = kernels
        self.arches = arches
        self.paravirt = paravirt
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.tests = tests
        self.accel = accel
        self.timeoutSeconds = timeoutSeconds
        self.repeats = repeats
        self.expectations = expectations
    }

    public init(spec: MatrixSpec) {
        self.init(name: spec.name, kernels: spec.kernels, arches: spec.arches, paravirt: spec.paravirt, vcpus: spec.vcpus,
                  memoryMiB: spec.memoryMiB, tests: spec.tests, accel: spec.accel, timeoutSeconds: spec.timeoutSeconds,
                  repeats: spec.repeats, expectations: spec.expectations)
        configFragments = spec.configFragments
        widen = spec.widen
        flavour = spec.flavour
    }

    /// Rejects requests that cannot work before anything is downloaded or booted.
    public func validate() throws {
        guard !kernels.isEmpty else { throw ShootdownError.usage("no kernel given") }
        guard !tests.isEmpty else { throw ShootdownError.usage("no test given") }
        for count in vcpus where !(1...256).contains(count) {
            throw ShootdownError.usage("--vcpus \(count): use 1 to 256")
        }
        guard (128...65536).contains(memoryMiB) else {
            throw ShootdownError.usage("--memory \(memoryMiB): use 128 to 65536 MiB")
        }
        guard (10...86400).contains(timeoutSeconds) else {
            throw ShootdownError.usage("--timeout \(timeoutSeconds): use 10 to 86400 seconds")
        }
        guard (1...100).contains(repeats) else { throw ShootdownError.usage("--repeats \(repeats): use 1 to 100") }
    }

    /// `--test a --test b --param k=v`: each test takes the keys it knows; with one test
    /// every key must fit it (so a typo is an error, not a silently ignored option).
    public static func selections(tests names: [String], parameters: [String], catalog: TemplateCatalog) throws -> [TestSelection] {
        guard names.count > 1 else { return names.map { TestSelection(name: $0, parameters: parameters) } }
        return try names.map { name in
            let manifest = try catalog.template(named: name).manifest
            return TestSelection(name: name, parameters: parameters.filter {
                manifest.parameter(String($0.split(separator: "=").first ?? "")) != nil
            })
        }
    }
}

/// How to execute a run, as opposed to what it measures.
public struct ExecutionOptions: Sendable, Equatable {
    /// Guests booted at once; nil derives it from host CPUs and memory.
    public var jobs: Int?
    /// Run only slice `index` (1-based) of `count`: every cell lands in exactly one slice.
    public var shard: (index: Int, count: Int)?
    /// Continue this run folder, skipping cells with a complete result.
    public var resume: String?
    public var runID: String?
    /// Whether cells that need the same guest share one boot (see CellPlanner).
    public var isolation: Isolation
    /// Whether a boot's guest is restored from a saved one (SavedGuests) or booted.
    public var fresh: FreshGuest

    public init(jobs: Int? = nil, shard: (index: Int, count: Int)? = nil, resume: String? = nil, runID: String? = nil,
                isolation: Isolation = .batch, fresh: FreshGuest = .restore) {
        self.jobs = jobs
        self.shard = shard
        self.resume = resume
        self.runID = runID
        self.isolation = isolation
        self.fresh = fresh
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.jobs == rhs.jobs && lhs.shard?.index == rhs.shard?.index && lhs.shard?.count == rhs.shard?.count
            && lhs.resume == rhs.resume && lhs.runID == rhs.runID && lhs.isolation == rhs.isolation && lhs.fresh == rhs.fresh
    }

    /// The shard as `I/N`, as run.json records it.
    public var shardText: String? { shard.map { "\($0.index)/\($0.count)" } }

    /// `2/4` → (2, 4).
    public static func parseShard(_ text: String) throws -> (index: Int, count: Int) {
        let parts = text.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, (1...parts[1]).contains(parts[0]) else {
            throw ShootdownError.usage("--shard \(text): use I/N with 1 ≤ I ≤ N, e.g. --shard 2/4")
        }
        return (parts[0], parts[1])
    }

    /// This runner's slice of the cells: a contiguous run of the expansion order (which
    /// does not depend on how kernels resolve, so every runner computes the same slices).
    /// Contiguous, since the order is kernel first: a shard resolves, downloads or builds
    /// only the kernels of its own cells, and its boots hold neighbours that share a guest.
    public func slice<T>(_ items: [T]) -> [T] {
        guard let shard else { return items }
        let start = items.count * (shard.index - 1) / shard.count, end = items.count * shard.index / shard.count
        return Array(items[start..<end])
    }

    /// `jobs`, or the default for this host and guest size.
    public func resolvedJobs(guestMemoryMiB: Int) -> Int {
        max(1, jobs ?? Self.defaultJobs(cpus: ProcessInfo.processInfo.activeProcessorCount,
                                        memoryMiB: Int(ProcessInfo.processInfo.physicalMemory >> 20), guestMemoryMiB: guestMemoryMiB))
    }

    /// One guest per host CPU (measured: on 2 cores, 2 at a time give 1.8× the cells per
    /// hour of 1, and 3 or 4 no more), and per guest's memory plus 512 MiB of QEMU
    /// overhead, leaving a quarter of the memory free.
    public static func defaultJobs(cpus: Int, memoryMiB: Int, guestMemoryMiB: Int) -> Int {
        max(1, min(cpus, memoryMiB * 3 / 4 / (guestMemoryMiB + 512)))
    }
}
