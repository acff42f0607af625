import Foundation

/// The stages before any guest: render the tests, plan and resolve the kernels this run
/// (or shard) needs, build the programs, choose accelerators, and make the cells.
extension RunPipeline {
    /// Templates → one rendered C program per parameter combination, with the
    /// expectations that apply to it (the run's and its test's own).
    func renderTests(_ request: RunRequest) throws -> [PlannedTest] {
        let catalog = TemplateCatalog(resources: context.paths.resources)
        let planned = try request.tests.flatMap { selection in
            try catalog.render([selection]).map {
                PlannedTest(test: $0, expectations: request.expectations + selection.expectations,
                            wideningOff: !request.wideningEnabled)
            }
        }
        // A NUMA guest gets a socket per node, so its vCPUs must split evenly: an x86 kernel
        // warns (a splat, so a FAIL) about a socket's cores spread over two nodes.
        for test in planned.map(\.test) where test.numaNodes > 1 {
            for vcpus in request.vcpus where vcpus % test.numaNodes != 0 {
                throw ShootdownError.usage("\(test.instance.test) runs on \(test.numaNodes) NUMA nodes, a socket each: "
                                           + "--vcpus \(vcpus) does not split evenly; use a multiple of \(test.numaNodes)")
            }
        }
        return planned
    }

    /// Every kernel spec × arch the request names, in order, before anything is resolved:
    /// the cells' kernel indices point here.
    func kernelSlots(_ request: RunRequest) throws -> [(spec: KernelSpec, arch: Arch)] {
        let resolver = KernelResolver(context: context)
        return try request.kernels.flatMap { spec in try (request.arches ?? resolver.naturalArches(spec)).map { (spec, $0) } }
    }

    /// The `needed` kernel slots, and with `widening` each one's widening module, built
    /// right after the kernel: a git tree's build folder holds only the commit built last.
    func resolveKernels(_ request: RunRequest, slots: [(spec: KernelSpec, arch: Arch)], needed: Set<Int>,
                        widening: Bool = false) throws -> [Int: KernelImage] {
        let resolver = KernelResolver(context: context, configFragments: request.kernelFragments(resources: context.paths.resources))
        var kernels: [Int: KernelImage] = [:]
        for index in needed.sorted() {
            let (spec, arch) = slots[index]
            var image = try resolver.resolve(spec, arch: arch)
            image.spec = spec.description
            context.log("kernel \(arch): \(spec) → \(image.version) (\(image.origin))")
            if widening {
                switch WideningModuleBuilder(context: context).module(for: image) {
                case .built(let module): image.wideningModule = module
                case .unavailable(let reason):
                    image.wideningUnavailable = reason
                    context.log("widen \(arch): \(reason); race tests run unwidened")
                }
            }
            kernels[index] = image
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

    func chooseAccelerators(_ request: RunRequest, kernels: [KernelImage],
                            assets: [Arch: ArchAssets]) throws -> [Arch: AccelDecision] {
        var decisions: [Arch: AccelDecision] = [:]
        var probe: AccelProbe?
        for kernel in kernels where decisions[kernel.arch] == nil {
            let accelProbe = try probe ?? AccelProbe(context: context)
            probe = accelProbe
            let decision = try accelProbe.decide(arch: kernel.arch, choice: request.accel, kernel: kernel,
                                                 agent: assets[kernel.arch]!.agent)
            context.log("accel \(kernel.arch): \(decision.reason)")
            decisions[kernel.arch] = decision
        }
        return decisions
    }

    /// The planned points as cells. A parameter that takes several values names every
    /// cell it appears in (`…-gib4`), from all the run's tests, so every shard names alike.
    func makeCells(_ points: [CellPlanner.Point], request: RunRequest, kernels: [Int: KernelImage],
                   decisions: [Arch: AccelDecision], tests: [PlannedTest]) -> [(cell: Cell, test: PlannedTest)] {
        var swept: [String: [String]] = [:]
        for (name, group) in Dictionary(grouping: tests.map(\.test), by: \.instance.test) {
            let parameters = group[0].instance.parameters.map(\.name)
            swept[name] = parameters.filter { parameter in Set(group.compactMap { $0.instance.values[parameter] }).count > 1 }
        }
        return points.map { point in
            let kernel = kernels[point.kernel]!, planned = tests[point.test], decision = decisions[kernel.arch]!
            return (Cell(kernel: kernel, accel: decision.accel, accelReason: decision.reason, paravirt: point.paravirt,
                         vcpus: point.vcpus, memoryMiB: request.memoryMiB, instance: planned.test.instance,
                         sweptParameters: swept[planned.test.instance.test] ?? [], timeoutSeconds: request.timeoutSeconds,
                         repeatIndex: point.repeatIndex), planned)
        }
    }
}
