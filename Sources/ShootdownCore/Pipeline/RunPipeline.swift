import Foundation

/// The whole pipeline for one run: templates → programs → kernels → cells → guests →
/// verdicts, writing each cell's files before the next cell starts.
public struct RunPipeline: Sendable {
    let context: ToolContext

    public init(context: ToolContext) {
        self.context = context
    }

    public struct Outcome: Sendable {
        public var directory: RunDirectory
        public var results: [CellResult]
        /// Counters followed across swept parameters, with scaling verdicts.
        public var sweeps: [SweepSeries]
    }

    /// Prepared inputs shared by every cell of one arch.
    struct ArchAssets {
        var agent: Data
        var programs: [TestInstance: Data]
    }

    public func run(_ request: RunRequest, runID: String? = nil,
                    onCell: @Sendable (CellResult, URL) -> Void = { _, _ in }) throws -> Outcome {
        try request.validate()
        let rendered = try renderTests(request)
        let kernels = try resolveKernels(request)
        let assets = try buildPrograms(rendered, arches: Set(kernels.map(\.arch)))
        let connection = try LibvirtConnection(uri: context.libvirtURI)
        ActiveDomains.shared.destroyOnInterrupt()
        let decisions = try chooseAccelerators(request, kernels: kernels, assets: assets, connection: connection)
        let cells = expandCells(request, kernels: kernels, decisions: decisions, tests: rendered)

        let directory = try RunDirectory.create(root: context.paths.results, runID: runID)
        try directory.writeManifest(RunManifest(request: request, cells: cells.map(\.0)))
        context.log("run \(directory.runID): \(cells.count) cell(s) → \(directory.url.path)")

        let launcher = GuestLauncher(context: context, connection: connection)
        var results: [CellResult] = []
        for (index, (cell, test)) in cells.enumerated() {
            context.log("[\(index + 1)/\(cells.count)] \(cell.id)")
            let (result, artifacts) = try runCell(cell, test: test, assets: assets[cell.arch]!, launcher: launcher,
                                                  runID: directory.runID, index: index)
            // On disk before the next cell starts: an interrupted run loses nothing finished.
            let cellDirectory = try directory.write(result, artifacts: artifacts)
            results.append(result)
            onCell(result, cellDirectory)
        }
        launcher.waitForTeardowns()
        let sweeps = SweepAnalysis.series(results)
        try directory.writeReport(RunReport(runID: directory.runID, name: "run", cells: results, sweeps: sweeps))
        return Outcome(directory: directory, results: results, sweeps: sweeps)
    }

    /// Templates → one rendered C program per parameter combination.
    func renderTests(_ request: RunRequest) throws -> [RenderedTest] {
        try TemplateCatalog(resources: context.paths.resources).render(tests: request.tests, parameters: request.parameters)
    }

    func resolveKernels(_ request: RunRequest) throws -> [KernelImage] {
        let resolver = KernelResolver(context: context)
        var kernels: [KernelImage] = []
        for spec in request.kernels {
            for arch in try request.arches ?? resolver.naturalArches(spec) {
                var image = try resolver.resolve(spec, arch: arch)
                image.spec = spec.description
                context.log("kernel \(arch): \(spec) → \(image.version) (\(image.origin))")
                kernels.append(image)
            }
        }
        return kernels
    }

    /// The agent and every test program, compiled once per arch.
    func buildPrograms(_ rendered: [RenderedTest], arches: Set<Arch>) throws -> [Arch: ArchAssets] {
        let builder = ProgramBuilder(context: context)
        let agentURL = context.paths.resources.appendingPathComponent("Images/agent/agent.c")
        guard let agentSource = try? String(contentsOf: agentURL, encoding: .utf8) else {
            throw ShootdownError.io(path: agentURL.path, message: "the guest agent source is missing (set SHOOTDOWN_HOME to the checkout)")
        }
        var assets: [Arch: ArchAssets] = [:]
        for arch in arches.sorted() {
            let agent = try Data(contentsOf: builder.build(source: agentSource, name: "agent", arch: arch))
            var programs: [TestInstance: Data] = [:]
            for test in rendered {
                programs[test.instance] = try Data(contentsOf: builder.build(source: test.source, name: test.instance.test, arch: arch))
            }
            assets[arch] = ArchAssets(agent: agent, programs: programs)
        }
        return assets
    }

    func chooseAccelerators(_ request: RunRequest, kernels: [KernelImage], assets: [Arch: ArchAssets],
                            connection: LibvirtConnection) throws -> [Arch: AccelDecision] {
        let probe = AccelProbe(context: context, connection: connection)
        var decisions: [Arch: AccelDecision] = [:]
        for kernel in kernels where decisions[kernel.arch] == nil {
            let decision = try probe.decide(arch: kernel.arch, choice: request.accel, kernel: kernel,
                                            agent: assets[kernel.arch]!.agent)
            context.log("accel \(kernel.arch): \(decision.reason)")
            decisions[kernel.arch] = decision
        }
        return decisions
    }

    /// kernel × vCPU count × test instance, in that order. A parameter that takes several
    /// values in the run names every cell it appears in (`…-gib4`), the default one too.
    func expandCells(_ request: RunRequest, kernels: [KernelImage], decisions: [Arch: AccelDecision],
                     tests: [RenderedTest]) -> [(Cell, RenderedTest)] {
        var swept: [String: [String]] = [:]
        for (name, group) in Dictionary(grouping: tests, by: \.instance.test) {
            let parameters = group[0].instance.parameters.map(\.name)
            swept[name] = parameters.filter { parameter in Set(group.compactMap { $0.instance.values[parameter] }).count > 1 }
        }
        var cells: [(Cell, RenderedTest)] = []
        for kernel in kernels {
            let decision = decisions[kernel.arch]!
            for vcpus in request.vcpus {
                for test in tests {
                    cells.append((Cell(kernel: kernel, accel: decision.accel, accelReason: decision.reason,
                                       paravirt: request.paravirt, vcpus: vcpus, memoryMiB: request.memoryMiB,
                                       instance: test.instance, sweptParameters: swept[test.instance.test] ?? [],
                                       timeoutSeconds: request.timeoutSeconds), test))
                }
            }
        }
        return cells
    }

    func runCell(_ cell: Cell, test: RenderedTest, assets: ArchAssets, launcher: GuestLauncher, runID: String,
                 index: Int) throws -> (CellResult, RunDirectory.CellArtifacts) {
        var artifacts = RunDirectory.CellArtifacts()
        if let reason = cell.skipReason {
            let result = CellResult(cell: cell.descriptor, status: .skip, reason: reason, checks: [], counters: nil,
                                    metrics: [:], splats: [], guest: nil, timings: CellTimings(totalSeconds: 0))
            return (result, artifacts)
        }
        // The agent kills a hung test well before the host gives up on the whole guest.
        let testTimeout = max(5, cell.timeoutSeconds * 3 / 4)
        let programID = "test"
        let plan = GuestPlan(hugepages: test.hugepages, probes: test.probes,
                             tests: [.init(id: programID, timeoutSeconds: testTimeout, path: "/shootdown/tests/\(programID)")])
        let image = GuestImage(agent: assets.agent, plan: plan, programs: [(programID, assets.programs[cell.instance]!)],
                               modules: try cell.kernel.moduleFiles())
        let archive = image.archive
        let name = "shootdown-\(runID)-\(index)"
        let spec = try launcher.stagedSpec(name: name, arch: cell.arch, accel: cell.accel, paravirt: cell.paravirt,
                                           vcpus: cell.vcpus, memoryMiB: cell.memoryMiB)
        let outcome = try launcher.boot(spec, kernel: cell.kernel.kernel, initramfs: archive,
                                        timeout: .seconds(cell.timeoutSeconds))
        let console = String(decoding: outcome.console, as: UTF8.self)
        // No result port in the guest (a kernel without virtio console): the agent then
        // writes its records to the console, behind a prefix.
        let fallback = outcome.results.isEmpty ? GuestRecords.fromConsole(console) : Data()
        let records = GuestRecords.parse(fallback.isEmpty ? outcome.results : fallback)
        var input = VerdictBuilder.Input(testID: programID, operation: test.operation, probes: test.probes,
                                         probeChecks: test.probeChecks, console: console, records: records,
                                         timedOut: outcome.timedOut, startError: outcome.startError, wall: outcome.wall,
                                         startLatency: outcome.startLatency, timeoutSeconds: cell.timeoutSeconds)
        input.recordsFromConsole = !fallback.isEmpty
        let verdict = VerdictBuilder.judge(input)
        artifacts.console = outcome.console
        artifacts.records = fallback.isEmpty ? outcome.results : fallback
        artifacts.dmesg = records.boot?.dmesg
        artifacts.testOutput = records.tests.first?.output
        artifacts.domainXML = outcome.domainXML
        artifacts.initramfs = archive
        artifacts.initramfsListing = image.listing
        artifacts.reproducer = Reproducer.script(cell: cell, spec: spec, libvirtURI: context.libvirtURI)
        let result = CellResult(cell: cell.descriptor, status: verdict.status, reason: verdict.reason,
                                checks: verdict.checks, counters: verdict.counters, metrics: verdict.metrics,
                                splats: verdict.splats, guest: verdict.guest, timings: verdict.timings,
                                consoleTail: verdict.consoleTail)
        return (result, artifacts)
    }
}

/// run.json: the request and the expanded cells.
public struct RunManifest: Sendable, Codable {
    public var request: RunRequest
    public var cells: [Cell]
}

/// reproduce.sh: the cell again, three ways.
enum Reproducer {
    static func script(cell: Cell, spec: DomainSpec, libvirtURI: String) -> String {
        var local = spec
        local.kernel = cell.kernel.kernel.path
        local.initrd = "initramfs.cpio"
        local.consolePath = "repro-console.log"
        local.resultPath = "repro-records.jsonl"
        // A reproducer names the exact kernel, never "latest".
        let kernel = cell.kernel.spec.hasPrefix("debian") ? "debian:\(cell.kernel.version)" : cell.kernel.spec
        var rerun = ["shootdown", "run", "--arch", cell.arch.rawValue, "--kernel", kernel,
                     "--vcpus", String(cell.vcpus), "--memory", String(cell.memoryMiB), "--test", cell.instance.test,
                     "--accel", cell.accel.rawValue]
        if let paravirt = cell.paravirt { rerun += ["--paravirt", paravirt.rawValue] }
        rerun += cell.instance.parameters.flatMap { ["--param", "\($0.name)=\($0.value)"] }
        return """
        #!/bin/sh
        # Reproduces cell \(cell.id) without libvirt: the same kernel, initramfs and
        # command line as the domain in domain.xml. The console goes to repro-console.log,
        # the agent's records to repro-records.jsonl.
        #   through shootdown: \(rerun.map(shellQuoted).joined(separator: " "))
        #   through libvirt:   virsh -c \(libvirtURI) create domain.xml  (after staging the files it names)
        set -e
        cd "$(dirname "$0")"
        : > repro-console.log
        : > repro-records.jsonl
        exec \(QemuCommandLine.shellLine(for: local))

        """
    }
}
