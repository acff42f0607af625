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
        public var estimatedSeconds: Double
    }

    public var entries: [Entry]
    public var jobs: Int

    /// Seconds per cell measured on a 2-core host under TCG (BENCHMARKS.md); KVM is
    /// taken as 3 s. A paravirt-on cell under TCG is skipped and costs nothing.
    static func estimate(arch: Arch, accel: Accelerator) -> Double {
        switch (accel, arch) {
        case (.kvm, _): return 3
        case (.tcg, .x86_64): return 6.5
        case (.tcg, .aarch64): return 5.5
        }
    }

    public init(request: RunRequest, options: ExecutionOptions, context: ToolContext, catalog: TemplateCatalog) throws {
        try request.validate()
        let resolver = KernelResolver(context: context)
        let probe = try? AccelProbe(context: context)
        var entries: [Entry] = []
        for kernel in request.kernels {
            for arch in try request.arches ?? resolver.naturalArches(kernel) {
                // Without a cached probe verdict the plan assumes TCG, the slower case.
                let decision = probe?.decisionWithoutProbe(arch: arch, choice: request.accel)
                let accel = decision?.accel ?? (request.accel == .kvm ? .kvm : .tcg)
                for paravirt in request.paravirt {
                    for vcpus in request.vcpus {
                        for selection in request.tests {
                            for instance in try catalog.template(named: selection.name).instances(overrides: selection.parameters) {
                                for repeatIndex in 1...request.repeats {
                                    let skip = accel == .tcg && paravirt == .on ? "paravirt on needs KVM" : nil
                                    entries.append(Entry(kernel: kernel.description, arch: arch, paravirt: paravirt, vcpus: vcpus,
                                                         test: selection.name, parameters: instance.parameterText,
                                                         repeatIndex: request.repeats > 1 ? repeatIndex : nil, accel: accel,
                                                         skipReason: skip,
                                                         estimatedSeconds: skip == nil ? Self.estimate(arch: arch, accel: accel) : 0))
                                }
                            }
                        }
                    }
                }
            }
        }
        self.entries = options.slice(entries)
        jobs = options.resolvedJobs(guestMemoryMiB: request.memoryMiB)
    }

    public var estimatedSeconds: Double { entries.map(\.estimatedSeconds).reduce(0, +) / Double(jobs) }

    public var text: String {
        var rows: [[String]] = [["#", "KERNEL", "ARCH", "ACCEL", "PARAVIRT", "VCPUS", "TEST", "PARAMETERS", "NOTE"]]
        for (index, entry) in entries.enumerated() {
            rows.append([String(index + 1), entry.kernel, entry.arch.rawValue, entry.accel.rawValue,
                         entry.paravirt?.rawValue ?? "default", String(entry.vcpus), entry.test,
                         entry.parameters + (entry.repeatIndex.map { " (repeat \($0))" } ?? ""), entry.skipReason.map { "SKIP: \($0)" } ?? ""])
        }
        let minutes = estimatedSeconds / 60
        return TerminalReport.table(rows)
            + String(format: "\n%d cells, %d at a time: about %.0f s (%.1f min) plus kernel downloads and builds\n",
                     entries.count, jobs, estimatedSeconds, minutes)
    }
}
