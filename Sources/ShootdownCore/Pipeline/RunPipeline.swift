import Foundation

/// The whole pipeline for one run: templates → programs → kernels → cells → guests →
/// verdicts. Cells run on a pool of workers; each cell's files are on disk before it
/// counts as done, so an interrupted run can be resumed.
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
        public var report: RunReport
    }

    /// Where a run stands after each finished cell.
    public struct Progress: Sendable {
        public var done: Int
        public var total: Int
        public var failures: Int
        public var remainingSeconds: Double?
    }

    /// Prepared inputs shared by every cell of one arch.
    struct ArchAssets {
        var agent: Data
        var programs: [TestInstance: Data]
    }

    /// A rendered test with the expectations of the selection it came from.
    struct PlannedTest {
        var test: RenderedTest
        var expectations: [ScopedExpectation]
        /// The run turned the test's widening off.
        var wideningOff = false
    }

    /// The stages in order: everything that can refuse the run (hypervisor, results
    /// folder, resume request) comes before anything is built or booted.
    public func run(_ request: RunRequest, options: ExecutionOptions = ExecutionOptions(),
                    onCell: @Sendable (CellResult, URL, Progress) -> Void = { _, _, _ in }) throws -> Outcome {
        try request.validate()
        handleInterruptions()
        try context.guests.prepare(context: context)
        let opened = try openDirectory(request, options)
        let directory = opened.directory
        let cells: [(cell: Cell, test: PlannedTest)], assets: [Arch: ArchAssets]
        do {
            // Plan first, then resolve, build and probe only what this shard's cells need.
            let tests = try renderTests(request)
            let slots = try kernelSlots(request)
            let points = options.slice(CellPlanner.expand(kernels: slots.count, paravirt: request.paravirt, vcpus: request.vcpus,
                                                          tests: tests.count, repeats: request.repeats))
            let neededTests = Set(points.map(\.test)).sorted().map { tests[$0] }
            let kernels = try resolveKernels(request, slots: slots, needed: Set(points.map(\.kernel)),
                                             widening: neededTests.contains { $0.test.widening != nil && !$0.wideningOff })
            assets = try buildPrograms(neededTests.map(\.test), arches: Set(kernels.values.map(\.arch)))
            let decisions = try chooseAccelerators(request, kernels: kernels.keys.sorted().map { kernels[$0]! }, assets: assets)
            cells = makeCells(points, request: request, kernels: kernels, decisions: decisions, tests: tests)
            try recordManifest(RunManifest(request: request, cells: cells.map(\.cell), shard: options.shardText),
                               in: directory, resumed: opened.manifest)
        } catch {
            // A run that failed before it had any cell leaves no folder behind.
            if opened.manifest == nil { try? FileManager.default.removeItem(at: directory.url) }
            throw error
        }

        let finished = Set(try directory.results().map(\.cell.id))
        let pending = cells.filter { !finished.contains($0.cell.id) }
        let jobs = options.resolvedJobs(guestMemoryMiB: request.memoryMiB)
        let boots = CellPlanner.batches(keys: pending.map { guestKey($0.cell, $0.test) }, isolation: options.isolation, jobs: jobs)
        context.log("run \(directory.runID): \(cells.count) cell(s)" + (finished.isEmpty ? "" : ", \(cells.count - pending.count) already done")
                    + (boots.count < pending.count ? " in \(boots.count) boot(s)" : "")
                    + ", \(jobs) at a time → \(directory.url.path)")
        do {
            try execute(pending, boots: boots, jobs: min(jobs, max(1, boots.count)), assets: assets, directory: directory,
                        alreadyDone: cells.count - pending.count, total: cells.count, fresh: options.fresh, onCell: onCell)
        } catch let error as RunInterrupted {
            throw error
        } catch {
            throw RunStopped(error: error, directory: directory, finished: try directory.results().count, total: cells.count)
        }

        let report = try directory.rebuildReport(request: request)
        return Outcome(directory: directory, results: report.cells, sweeps: report.sweeps, report: report)
    }

    /// From the start of the run: a stop signal destroys the guests and removes this
    /// process's stage folders (the process-wide registry also exits, see ActiveDomains).
    func handleInterruptions() {
        let registry = context.activeDomains
        if registry === ActiveDomains.shared { registry.handleStopSignals() }
        let stage = context.paths.stage
        registry.onInterrupt(stage.path) { StaleGuests.removeOwnStageFolders(stage) }
    }

    /// A new run folder (its id checked and unique), or the one to resume with its
    /// manifest, which must be for the same request. Either must take files.
    func openDirectory(_ request: RunRequest, _ options: ExecutionOptions) throws -> (directory: RunDirectory, manifest: RunManifest?) {
        guard let resume = options.resume else {
            let directory = try RunDirectory.create(root: context.paths.results, runID: options.runID)
            do {
                try directory.checkWritable()
            } catch {
                try? FileManager.default.removeItem(at: directory.url)
                throw error
            }
            return (directory, nil)
        }
        if let runID = options.runID, runID != resume {
            throw ShootdownError.usage("--run-id \(runID) and --resume \(resume): give one of them")
        }
        let directory = try RunDirectory.locate(resume, resultsRoot: context.paths.results)
        guard let manifest = try directory.readManifest() else {
            throw ShootdownError.usage("--resume \(resume): \(directory.url.path) has no readable run.json")
        }
        var differences = RunManifest.differences(manifest.request, request)
        if manifest.shard != options.shardText {
            differences.append("shard: \(manifest.shard ?? "none") in run.json, \(options.shardText ?? "none") now")
        }
        guard differences.isEmpty else {
            throw ShootdownError.usage("--resume \(directory.runID): the run was started with a different request; "
                                       + differences.joined(separator: "; ") + " (run it with its own options, or start a new run)")
        }
        try directory.checkWritable()
        return (directory, manifest)
    }

    /// Writes run.json for a new run. A resumed run keeps its own, and must expand to the
    /// same cells: a kernel spec that now resolves to another version (debian:latest after
    /// an update) would mix two kernels in one run.
    func recordManifest(_ manifest: RunManifest, in directory: RunDirectory, resumed: RunManifest?) throws {
        guard let resumed else { return try directory.writeManifest(manifest) }
        let before = resumed.cells.map(\.id), now = manifest.cells.map(\.id)
        guard before == now else {
            let gone = before.filter { !now.contains($0) }, new = now.filter { !before.contains($0) }
            throw ShootdownError.usage("--resume \(directory.runID): the request now expands to other cells"
                                       + (gone.isEmpty ? "" : "; no longer: \(gone.joined(separator: ", "))")
                                       + (new.isEmpty ? "" : "; new: \(new.joined(separator: ", "))")
                                       + " (a kernel resolves to another version?); start a new run")
        }
    }

    /// Runs boots on `jobs` workers, each with its own guest launcher (a libvirt
    /// connection), and persists each finished cell: a boot's cells are on disk before
    /// its worker starts another. Cells a batch did not reach go back on the board for a
    /// fresh boot. The first harness exception stops the other workers.
    func execute(_ cells: [(cell: Cell, test: PlannedTest)], boots: [[Int]], jobs: Int, assets: [Arch: ArchAssets],
                 directory: RunDirectory, alreadyDone: Int, total: Int, fresh: FreshGuest = .restore,
                 onCell: @Sendable (CellResult, URL, Progress) -> Void) throws {
        guard !cells.isEmpty else { return }
        let board = WorkBoard(batches: boots, alreadyDone: alreadyDone, total: total,
                              threads: ProcessInfo.processInfo.activeProcessorCount) { boot in
            Self.emulatorThreads(cells[boot[0]].cell)
        }
        let registry = context.activeDomains
        Workers.run(jobs) { _ in
            do {
                let launcher = try context.guests.launcher(context: context)
                defer { launcher.waitForTeardowns() }
                while let (boot, ordinal) = board.next() {
                    let members = boot.map { cells[$0] }
                    context.log(boot.count == 1 ? "[\(ordinal)/\(total)] \(members[0].cell.id)"
                                : "[\(ordinal)–\(ordinal + boot.count - 1)/\(total)] one boot: "
                                + members.map(\.cell.id).joined(separator: ", "))
                    let ran: [(result: CellResult, artifacts: RunDirectory.CellArtifacts)], notRun: [Int]
                    do {
                        if boot.count == 1 {
                            (ran, notRun) = ([try runCell(members[0].cell, test: members[0].test, assets: assets[members[0].cell.arch]!,
                                                          launcher: launcher, runID: directory.runID, fresh: fresh)], [])
                        } else {
                            let outcome = try runBatch(members, assets: assets[members[0].cell.arch]!, launcher: launcher,
                                                       runID: directory.runID, fresh: fresh)
                            (ran, notRun) = (outcome.ran, outcome.notRun.map { boot[$0] })
                        }
                    } catch {
                        board.settle(boot, notRun: [])
                        throw error
                    }
                    // A guest we destroyed on Ctrl-C is no result: leave its cells for --resume.
                    if registry.isInterrupted {
                        board.settle(boot, notRun: [])
                        break
                    }
                    for (index, judged) in ran.enumerated() {
                        var result = judged.result
                        applyExpectations(cells[boot[index]].test.expectations, to: &result)
                        // Persist: on disk before the cell counts as done, so an interrupted run loses nothing finished.
                        let cellDirectory = try directory.write(result, artifacts: judged.artifacts)
                        onCell(result, cellDirectory, board.finish(result, seconds: result.timings.totalSeconds, jobs: jobs))
                    }
                    if !notRun.isEmpty {
                        context.log("  the boot ended after \(ran.count) of \(boot.count) cell(s); \(notRun.count) go to a fresh boot")
                    }
                    board.settle(boot, notRun: notRun)
                }
            } catch {
                board.abort(error)
            }
        }
        if let signal = registry.interruptingSignal { throw RunInterrupted(signal: signal) }
        if let error = board.error { throw error }
    }

    /// Host threads a cell's guest keeps busy (WorkBoard): a thread per vCPU for arm64's
    /// multi-threaded TCG, one for x86 under TCG (single-threaded, DomainSpec.singleThreadedTCG);
    /// a KVM vCPU sleeps in the kernel when idle, and a skipped cell boots nothing: none.
    static func emulatorThreads(_ cell: Cell) -> Int {
        guard cell.accel == .tcg, cell.skipReason == nil else { return 0 }
        return cell.arch == .x86_64 ? 1 : cell.vcpus
    }

    /// Unmet expectations turn a passing cell into a failing one.
    func applyExpectations(_ expectations: [ScopedExpectation], to result: inout CellResult) {
        let outcomes = ExpectationCheck.evaluate(expectations, cell: result)
        guard !outcomes.isEmpty else { return }
        result.expectations = outcomes
        if let unmet = outcomes.first(where: { !$0.met }), result.status == .pass {
            result.status = .fail
            result.reason = "expectation not met: \(unmet.rule) (\(unmet.detail))"
        }
    }

    /// Templates → one rendered C program per parameter combination, with the
    /// expectations that apply to it (the run's and its test's own).
    func renderTests(_ request: RunRequest) throws -> [PlannedTest] {
        let catalog = TemplateCatalog(resources: context.paths.resources)
        return try request.tests.flatMap { selection in
            try catalog.render([selection]).map {
                PlannedTest(test: $0, expectations: request.expectations + selection.expectations,
                            wideningOff: !request.wideningEnabled)
            }
        }
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

    /// One cell: image, boot, judge (persisting is the caller's).
    func runCell(_ cell: Cell, test planned: PlannedTest, assets: ArchAssets, launcher: any GuestLaunching, runID: String,
                 fresh: FreshGuest = .boot) throws -> (CellResult, RunDirectory.CellArtifacts) {
        let test = planned.test
        if let reason = cell.skipReason {
            let result = CellResult(cell: cell.descriptor, status: .skip, reason: reason, checks: [], counters: nil,
                                    metrics: [:], splats: [], guest: nil, timings: CellTimings(totalSeconds: 0),
                                    repeatIndex: cell.repeatIndex)
            return (result, RunDirectory.CellArtifacts())
        }
        let widening = wideningRequest(test, kernel: cell.kernel, off: planned.wideningOff)
        let image = try guestImage(cell, test: test, assets: assets, widening: widening)
        let archive = image.archive
        let (spec, outcome) = try boot(cell, image: image, launcher: launcher, runID: runID, fresh: fresh)
        let console = String(decoding: outcome.console, as: UTF8.self)
        // Console records only where the host cannot know the kernel has a result port:
        // every kernel with a known config was checked for virtio-serial (PROTOCOL.md).
        let collected = GuestRecords.collect(port: outcome.results, console: console, consoleFallback: cell.kernel.config == nil)
        var (result, artifacts) = judge(cell, test: planned, testID: Self.programID, console: console, records: collected.records,
                                        fromConsole: collected.fromConsole, timedOut: outcome.timedOut, outcome: outcome,
                                        widening: widening)
        artifacts.console = outcome.console
        artifacts.records = collected.stream
        artifacts.initramfs = archive
        artifacts.initramfsListing = image.listing
        artifacts.reproducer = Reproducer.script(cell: cell, spec: spec, libvirtURI: context.libvirtURI)
        return (result, artifacts)
    }

    /// One cell's verdict from what its test produced: the records it may see, and the
    /// console of its boot (a batch passes the boot's lines and the test's own).
    func judge(_ cell: Cell, test planned: PlannedTest, testID: String, console: String, records: GuestRecords,
               fromConsole: Bool, timedOut: Bool, outcome: GuestOutcome,
               widening: WideningRequest?) -> (CellResult, RunDirectory.CellArtifacts) {
        let test = planned.test
        var input = VerdictBuilder.Input(testID: testID, operation: test.operation, probes: test.probes,
                                         probeChecks: test.probeChecks, console: console, records: records,
                                         timedOut: timedOut, startError: outcome.startError, wall: outcome.wall,
                                         startLatency: outcome.startLatency, timeoutSeconds: cell.timeoutSeconds)
        input.recordsFromConsole = fromConsole
        input.paravirt = cell.paravirt.map { ($0, cell.arch) }
        input.widening = widening
        input.evidence = test.evidence
        let verdict = VerdictBuilder.judge(input)
        var artifacts = RunDirectory.CellArtifacts()
        artifacts.dmesg = records.boot?.dmesg
        artifacts.testOutput = records.tests.first { $0.id == testID }?.output
        artifacts.domainXML = outcome.domainXML
        var result = CellResult(cell: cell.descriptor, status: verdict.status, reason: verdict.reason,
                                checks: verdict.checks, counters: verdict.counters, metrics: verdict.metrics,
                                splats: verdict.splats, guest: verdict.guest, timings: verdict.timings,
                                consoleTail: verdict.consoleTail, repeatIndex: cell.repeatIndex)
        result.widening = verdict.widening
        result.guestStart = outcome.start
        return (result, artifacts)
    }

    /// What the cell's guest is asked to widen, and whether it can.
    func wideningRequest(_ test: RenderedTest, kernel: KernelImage, off: Bool) -> WideningRequest? {
        guard let plan = test.widening else { return nil }
        if off { return WideningRequest(plan: plan, availability: .off("widening turned off for this run (--widen off)")) }
        if kernel.wideningModule != nil { return WideningRequest(plan: plan, availability: .module) }
        return WideningRequest(plan: plan, availability: .unavailable(kernel.wideningUnavailable ?? "no widening module for this kernel"))
    }
}

extension RunPipeline {
    /// The id of the cell's test program in the guest plan and its records.
    static let programID = "test"

    /// The initramfs: agent, plan, test program, the kernel's channel modules and, where the
    /// test widens and a module was built for this kernel, the widening module.
    func guestImage(_ cell: Cell, test: RenderedTest, assets: ArchAssets, widening: WideningRequest? = nil) throws -> GuestImage {
        let programID = Self.programID
        let module = widening?.availability == .module ? try cell.kernel.wideningModule.map { try Data(contentsOf: $0) } : nil
        let plan = GuestPlan(hugepages: test.hugepages, probes: test.probes,
                             tests: [.init(id: programID, timeoutSeconds: Self.testTimeout(cell), path: "/shootdown/tests/\(programID)")],
                             widening: module == nil ? nil : widening?.plan)
        return GuestImage(agent: assets.agent, plan: plan, programs: [(programID, assets.programs[cell.instance]!)],
                          modules: try cell.kernel.moduleFiles(), wideningModule: module)
    }

    /// The agent kills a hung test well before the host gives up on the whole guest.
    static func testTimeout(_ cell: Cell) -> Int { max(5, cell.timeoutSeconds * 3 / 4) }

    /// Boots the cell's guest; returns the spec it booted (for the reproducer) and what came back.
    func boot(_ cell: Cell, image: GuestImage, launcher: any GuestLaunching, runID: String,
              fresh: FreshGuest) throws -> (DomainSpec, GuestOutcome) {
        let spec = try launcher.stagedSpec(name: Self.domainName(runID: runID, cellID: cell.id), arch: cell.arch, accel: cell.accel,
                                           paravirt: cell.paravirt, vcpus: cell.vcpus, memoryMiB: cell.memoryMiB)
        let outcome = try launcher.start(spec, kernel: cell.kernel.kernel, image: image, timeout: .seconds(cell.timeoutSeconds),
                                         fresh: fresh)
        return (spec, outcome)
    }

    /// Unique per run and cell; libvirt names take no dots here.
    static func domainName(runID: String, cellID: String) -> String {
        domainSafe(String("shootdown-\(runID)-\(cellID)".prefix(200)))
    }
}

/// A run stopped by a harness failure (the hypervisor went away, a results write failed):
/// says so once, with where the finished cells are and how to continue.
public struct RunStopped: Error, CustomStringConvertible {
    public var error: Error
    public var directory: RunDirectory
    public var finished: Int
    public var total: Int

    public var description: String {
        "\(error)\n\(finished) of \(total) cell(s) finished and kept in \(directory.url.path); "
            + "when the cause is fixed, continue with --resume \(directory.runID)"
    }
}
