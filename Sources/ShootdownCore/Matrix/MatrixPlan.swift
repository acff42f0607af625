import Foundation

/// A spec's cells before anything is downloaded or booted, for `matrix --plan`, with
/// an estimate of the time they take.
public struct MatrixPlan: Sendable {
    public struct Entry: Sendable, Equatable {
        public var kernel: String
        public var arch: Arch
        public var paravirt: Paravirt?
        public var vcpus: Int
        public var test: String
        public var parameters: String
        public var repeatIndex: Int?
        public var accel: Accelerator
        public var skipReason: String?
        /// What the cell adds to the run: its boot's cost when it is the boot's first cell.
        public var estimatedSeconds: Double
        /// The guest boot it runs in (1-based); nil for a skipped cell.
        public var boot: Int?
    }

    public var entries: [Entry]
    public var jobs: Int
    /// Entry indices per guest boot, as the run will group them (CellPlanner).
    public var boots: [[Int]]

    /// Seconds measured on a 2-core host under TCG (BENCHMARKS.md): a guest to the agent
    /// and power-off, booted or restored from a saved guest, and one default-size test;
    /// KVM is taken as 2.5 s (boot) and 0.5 s. A paravirt-on cell under TCG is skipped and
    /// costs nothing. Saving a guest the first time (a boot, once per configuration) is
    /// not counted.
    static func bootSeconds(arch: Arch, accel: Accelerator, fresh: FreshGuest = .boot) -> Double {
        switch (fresh, accel, arch) {
        case (.restore, _, _): return 1.5
        case (.boot, .kvm, _): return 2.5
        case (.boot, .tcg, .x86_64): return 5.5
        case (.boot, .tcg, .aarch64): return 4.5
        }
    }

    static func testSeconds(accel: Accelerator) -> Double { accel == .kvm ? 0.5 : 1 }

    public init(request: RunRequest, options: ExecutionOptions, context: ToolContext, catalog: TemplateCatalog) throws {
        try request.validate()
        let resolver = KernelResolver(context: context)
        let probe = try? AccelProbe(context: context)
        var kernels: [(spec: KernelSpec, arch: Arch, accel: Accelerator)] = []
        for kernel in request.kernels {
            for arch in try request.arches ?? resolver.naturalArches(kernel) {
                // Without a cached probe verdict the plan assumes TCG, the slower case.
                let decision = probe?.decisionWithoutProbe(arch: arch, choice: request.accel)
                kernels.append((kernel, arch, decision?.accel ?? (request.accel == .kvm ? .kvm : .tcg)))
            }
        }
        var tests: [(name: String, instance: TestInstance)] = []
        for selection in request.tests {
            tests += try catalog.template(named: selection.name).instances(overrides: selection.parameters).map { (selection.name, $0) }
        }
        let points = options.slice(CellPlanner.expand(kernels: kernels.count, paravirt: request.paravirt, vcpus: request.vcpus,
                                                      tests: tests.count, repeats: request.repeats))
        jobs = options.resolvedJobs(guestMemoryMiB: request.memoryMiB)
        let skips = points.map { point in
            CellPlanner.skipReason(accel: kernels[point.kernel].accel, paravirt: point.paravirt, accelReason: "plan")
        }
        // The run's key also holds probes and widening, which follow from the template.
        struct GuestKey: Hashable { var kernel: Int, paravirt: Paravirt?, vcpus: Int, template: String }
        boots = CellPlanner.batches(keys: zip(points, skips).map { point, skip in
            skip == nil ? GuestKey(kernel: point.kernel, paravirt: point.paravirt, vcpus: point.vcpus, template: tests[point.test].name) : nil
        }, isolation: options.isolation, jobs: jobs)
        var bootOf: [Int: (number: Int, first: Bool)] = [:]
        for (number, boot) in boots.enumerated() {
            for (position, index) in boot.enumerated() { bootOf[index] = (number + 1, position == 0) }
        }
        entries = zip(points, skips).enumerated().map { index, element in
            let (point, skip) = element
            let kernel = kernels[point.kernel], test = tests[point.test]
            let place = bootOf[index]!
            let seconds = skip != nil ? 0
                : (place.first ? Self.bootSeconds(arch: kernel.arch, accel: kernel.accel, fresh: options.fresh) : 0)
                    + Self.testSeconds(accel: kernel.accel)
            return Entry(kernel: kernel.spec.description, arch: kernel.arch, paravirt: point.paravirt, vcpus: point.vcpus,
                         test: test.name, parameters: test.instance.parameterText, repeatIndex: point.repeatIndex,
                         accel: kernel.accel, skipReason: skip.map { _ in "paravirt on needs KVM" },
                         estimatedSeconds: seconds, boot: skip == nil ? place.number : nil)
        }
    }

    public var estimatedSeconds: Double { entries.map(\.estimatedSeconds).reduce(0, +) / Double(jobs) }

    public var text: String {
        var rows: [[String]] = [["#", "BOOT", "KERNEL", "ARCH", "ACCEL", "PARAVIRT", "VCPUS", "TEST", "PARAMETERS", "NOTE"]]
        for (index, entry) in entries.enumerated() {
            rows.append([String(index + 1), entry.boot.map(String.init) ?? "-", entry.kernel, entry.arch.rawValue, entry.accel.rawValue,
                         entry.paravirt?.rawValue ?? "default", String(entry.vcpus), entry.test,
                         entry.parameters + (entry.repeatIndex.map { " (repeat \($0))" } ?? ""), entry.skipReason.map { "SKIP: \($0)" } ?? ""])
        }
        let minutes = estimatedSeconds / 60
        let booting = boots.filter { entries[$0[0]].boot != nil }.count
        return TerminalReport.table(rows)
            + String(format: "\n%d cells in %d boot(s), %d at a time: about %.0f s (%.1f min) plus kernel downloads and builds, and saving guests the first time\n",
                     entries.count, booting, jobs, estimatedSeconds, minutes)
    }
}
