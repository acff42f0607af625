import Foundation

/// The stages of one cell in a boot of its own: image, boot, judge (persisting is the
/// caller's). BatchStage does the same for cells that share a boot.
extension RunPipeline {
    /// One cell: image, boot, judge (persisting is the caller's).
    func runCell(_ cell: Cell, test planned: PlannedTest, assets: ArchAssets, launcher: any GuestLaunching, runID: String,
                 fresh: FreshGuest) throws -> (CellResult, RunDirectory.CellArtifacts) {
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
        let (spec, outcome) = try boot(cell, test: test, image: image, launcher: launcher, runID: runID, fresh: fresh)
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
        if cell.accel == .tcg { result.cell.tcgThreads = tcgThreads(cell, test: test) }
        return (result, artifacts)
    }

    /// What the cell's guest is asked to widen, and whether it can.
    func wideningRequest(_ test: RenderedTest, kernel: KernelImage, off: Bool) -> WideningRequest? {
        guard let plan = test.widening else { return nil }
        if off { return WideningRequest(plan: plan, availability: .off("widening turned off for this run (--widen off)")) }
        if kernel.wideningModule != nil { return WideningRequest(plan: plan, availability: .module) }
        return WideningRequest(plan: plan, availability: .unavailable(kernel.wideningUnavailable ?? "no widening module for this kernel"))
    }

    /// The id of the cell's test program in the guest plan and its records.
    static let programID = "test"

    /// The initramfs: agent, plan, test program, the kernel's channel modules and, where the
    /// test widens and a module was built for this kernel, the widening module.
    func guestImage(_ cell: Cell, test: RenderedTest, assets: ArchAssets, widening: WideningRequest? = nil) throws -> GuestImage {
        try guestImage([(cell, test)], assets: assets, widening: widening)
    }

    /// The image of one boot for `members` (cells that need the same guest): the plan runs
    /// their tests in order, a batch when there are several, with the largest hugepage pool
    /// any of them asks for; one cell's image keeps the single-cell test id.
    func guestImage(_ members: [(cell: Cell, test: RenderedTest)], assets: ArchAssets,
                    widening: WideningRequest?) throws -> GuestImage {
        let first = members[0]
        let ids = members.indices.map { GuestBatch.testID(position: $0, count: members.count) }
        let module = widening?.availability == .module ? try first.cell.kernel.wideningModule.map { try Data(contentsOf: $0) } : nil
        let steps = zip(members, ids).map { member, id in
            GuestPlan.TestStep(id: id, timeoutSeconds: Self.testTimeout(member.cell), path: "/shootdown/tests/\(id)")
        }
        let plan = GuestPlan(hugepages: members.map(\.test.hugepages).max() ?? 0, probes: first.test.probes, tests: steps,
                             widening: module == nil ? nil : widening?.plan, batch: members.count > 1)
        return GuestImage(agent: assets.agent, plan: plan, programs: zip(ids, members).map { ($0, assets.programs[$1.cell.instance]!) },
                          modules: try first.cell.kernel.moduleFiles(), wideningModule: module)
    }

    /// The agent kills a hung test well before the host gives up on the whole guest.
    static func testTimeout(_ cell: Cell) -> Int { max(5, cell.timeoutSeconds * 3 / 4) }

    /// The guest a cell's test needs (a batch's first cell stands for all of them): its
    /// shape, how TCG runs its vCPUs here, and its NUMA nodes.
    func guestSpec(name: String, cell: Cell, test: RenderedTest, launcher: any GuestLaunching) throws -> DomainSpec {
        var spec = try launcher.stagedSpec(name: name, arch: cell.arch, accel: cell.accel, paravirt: cell.paravirt,
                                           vcpus: cell.vcpus, memoryMiB: cell.memoryMiB, tcgThreads: tcgThreads(cell, test: test))
        spec.numaNodes = test.numaNodes
        return spec
    }

    /// Boots the cell's guest; returns the spec it booted (for the reproducer) and what came back.
    func boot(_ cell: Cell, test: RenderedTest, image: GuestImage, launcher: any GuestLaunching, runID: String,
              fresh: FreshGuest) throws -> (DomainSpec, GuestOutcome) {
        let spec = try guestSpec(name: Self.domainName(runID: runID, cellID: cell.id), cell: cell, test: test, launcher: launcher)
        let outcome = try launcher.start(spec, kernel: cell.kernel.kernel, image: image, timeout: .seconds(cell.timeoutSeconds),
                                         fresh: fresh)
        return (spec, outcome)
    }

    /// Unique per run and cell; libvirt names take no dots here.
    static func domainName(runID: String, cellID: String) -> String {
        domainSafe(String("shootdown-\(runID)-\(cellID)".prefix(200)))
    }
}
