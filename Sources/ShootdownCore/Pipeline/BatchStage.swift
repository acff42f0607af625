import Foundation

/// The batch stage of a run: several cells that need the same guest in one boot.
extension RunPipeline {
    /// What must be equal for cells to share a guest: the machine (kernel, arch,
    /// accelerator, paravirt, vCPUs, memory), and what the agent sets up once per boot
    /// (probes, widening). Only cells of one template share a boot, so that a pool sized
    /// for one test never takes memory another template's test needs; the pool is the
    /// largest its cells ask for. Skipped cells boot nothing: nil.
    struct GuestKey: Hashable {
        var kernel: String
        var arch: Arch
        var accel: Accelerator
        var paravirt: Paravirt?
        var vcpus: Int
        var memoryMiB: Int
        var template: String
        var probes: [String]
        var widening: [String]
    }

    func guestKey(_ cell: Cell, _ planned: PlannedTest) -> GuestKey? {
        guard cell.skipReason == nil else { return nil }
        let widening = wideningRequest(planned.test, kernel: cell.kernel, off: planned.wideningOff)
        return GuestKey(kernel: cell.kernel.kernel.path, arch: cell.arch, accel: cell.accel, paravirt: cell.paravirt,
                        vcpus: cell.vcpus, memoryMiB: cell.memoryMiB, template: cell.instance.test, probes: planned.test.probes,
                        widening: widening.map { ["\($0.availability)"] + $0.plan.planLines } ?? [])
    }

    struct BatchOutcome {
        /// The cells the boot reached, in order, judged.
        var ran: [(result: CellResult, artifacts: RunDirectory.CellArtifacts)]
        /// Positions (in the batch) of the cells it did not reach.
        var notRun: [Int]
    }

    /// One boot for `members`; each reached cell is judged from its own part of the boot
    /// and keeps its own files, with a reproducer that runs it alone.
    func runBatch(_ members: [(cell: Cell, test: PlannedTest)], assets: ArchAssets, launcher: any GuestLaunching,
                  runID: String, fresh: FreshGuest) throws -> BatchOutcome {
        let first = members[0].cell
        let ids = members.indices.map { GuestBatch.testID(position: $0, count: members.count) }
        let widening = wideningRequest(members[0].test.test, kernel: first.kernel, off: members[0].test.wideningOff)
        let image = try guestImage(members.map { ($0.cell, $0.test.test) }, assets: assets, widening: widening)
        // The first cell's whole budget, then each later test's own limit in the guest.
        let timeout = first.timeoutSeconds + members.dropFirst().map { Self.testTimeout($0.cell) }.reduce(0, +)
        let name = Self.domainName(runID: runID, cellID: "batch-\(first.id)")
        let spec = try guestSpec(name: name, cell: first, test: members[0].test.test, launcher: launcher)
        let outcome = try launcher.start(spec, kernel: first.kernel.kernel, image: image, timeout: .seconds(timeout), fresh: fresh)

        let console = String(decoding: outcome.console, as: UTF8.self)
        let collected = GuestRecords.collect(port: outcome.results, console: console, consoleFallback: first.kernel.config == nil)
        let split = GuestBatch.split(console: console, records: collected.records, testIDs: ids, timedOut: outcome.timedOut)
        let share = outcome.wall.seconds / Double(split.parts.count)
        let streams = GuestBatch.streams(collected.stream, ids: ids)
        var ran: [(result: CellResult, artifacts: RunDirectory.CellArtifacts)] = []
        for (position, part) in split.parts.enumerated() {
            let (cell, planned) = members[position]
            var (result, artifacts) = judge(cell, test: planned, testID: ids[position], console: part.console,
                                            records: part.records, fromConsole: collected.fromConsole,
                                            timedOut: part.timedOut, outcome: outcome, widening: widening)
            result.timings.totalSeconds = share
            result.batch = BatchPlacement(boot: name, position: position + 1, size: members.count, bootSeconds: outcome.wall.seconds)
            // The cell's own single-test image, so that reproduce.sh runs it alone.
            let alone = try guestImage(cell, test: planned.test, assets: assets, widening: widening)
            artifacts.console = Data(part.console.utf8)
            artifacts.records = streams[ids[position]]!
            artifacts.initramfs = alone.archive
            artifacts.initramfsListing = alone.listing
            artifacts.reproducer = Reproducer.script(cell: cell, spec: spec, libvirtURI: context.libvirtURI,
                                                     batch: result.batch)
            ran.append((result, artifacts))
        }
        return BatchOutcome(ran: ran, notRun: split.notRun)
    }
}
