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
                 directory: RunDirectory, alreadyDone: Int, total: Int, fresh: FreshGuest,
                 onCell: @Sendable (CellResult, URL, Progress) -> Void) throws {
        guard !cells.isEmpty else { return }
        let hostCPUs = context.hostCPUs
        let board = WorkBoard(batches: boots, alreadyDone: alreadyDone, total: total, threads: hostCPUs) { boot in
            Self.emulatorThreads(cells[boot[0]].cell, test: cells[boot[0]].test.test, hostCPUs: hostCPUs)
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

    /// Host threads a cell's guest keeps busy (WorkBoard): under TCG one, or a thread per
    /// vCPU where it runs multi-threaded (TCGThreads); a KVM vCPU sleeps in the kernel when
    /// idle, and a skipped cell boots nothing: none.
    static func emulatorThreads(_ cell: Cell, test: RenderedTest, hostCPUs: Int) -> Int {
        guard cell.accel == .tcg, cell.skipReason == nil else { return 0 }
        return tcgThreads(cell, test: test, hostCPUs: hostCPUs) == .multi ? cell.vcpus : 1
    }

    static func tcgThreads(_ cell: Cell, test: RenderedTest, hostCPUs: Int) -> TCGThreads {
        TCGThreads.choose(arch: cell.arch, vcpus: cell.vcpus, hostCPUs: hostCPUs, races: test.races)
    }

    /// How TCG runs this cell's vCPUs on this host.
    func tcgThreads(_ cell: Cell, test: RenderedTest) -> TCGThreads {
        Self.tcgThreads(cell, test: test, hostCPUs: context.hostCPUs)
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
