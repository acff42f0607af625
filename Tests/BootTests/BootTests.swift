import Foundation
import Testing
@testable import ShootdownCore

/// Real boots under libvirt (TCG on hosts without working KVM). They need a host set up
/// by `ci/setup-host`, as root; the kernels are downloaded once into the shared cache.
@Suite(.serialized, .sharingTheHost) struct BootTests {
    static let results = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-boot-tests-\(getpid())")

    static func context() -> ToolContext {
        var paths = ToolPaths.standard(results: results.path)
        paths.resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return ToolContext(paths: paths, log: { _ in })
    }

    static func run(_ request: RunRequest) throws -> [CellResult] {
        try RunPipeline(context: context()).run(request).results
    }

    /// The default test on both arches: PASS, IPIs counted, and with one child sharing
    /// with the parent every fork/exit unshares a PMD table, so the table-free sync
    /// broadcast runs at least once per cycle.
    @Test func defaultForkExitPassesOnBothArches() throws {
        let results = try Self.run(RunRequest(tests: [TestSelection(name: RunRequest.defaultTest, parameters: ["children=1", "cycles=10"])], timeoutSeconds: 240))
        #expect(Set(results.map(\.cell.arch)) == [.x86_64, .aarch64])
        for result in results {
            #expect(result.status == .pass, "\(result.cell.id): \(result.reason ?? "")")
            let counters = try #require(result.counters)
            #expect(counters.operations == 10)
            let functionCall = result.cell.arch == .x86_64 ? "CAL" : "IPI1"
            #expect((counters.ipi(functionCall)?.total ?? 0) > 0, "\(result.cell.id): no \(functionCall) IPIs")
            let sync = try #require(counters.probe("tlb_remove_table_sync_one"), "\(result.cell.id): probe not registered")
            #expect(sync.hits >= 10, "\(result.cell.id): \(sync.hits) sync broadcasts for 10 fork/exit cycles")
            // The ipi/csd tracepoints (6.12 has them) see the sync reach the 3 other vCPUs,
            // once per cycle, inside the measured loop.
            let senders = try #require(counters.ipiSenders, "\(result.cell.id): no ipi trace")
            #expect(senders.scope == .measuredLoop)
            #expect(senders.sender("tlb_remove_table_smp_sync")?.ipis == 30, "\(result.cell.id): \(senders.senders)")
            #expect(result.guest?.cpus == 4)
            let cellDirectory = Self.results.appendingPathComponent(try Self.runDirectory(of: result)).appendingPathComponent(result.cell.id)
            for file in ["result.json", "console.log", "records.jsonl", "domain.xml", "reproduce.sh", "initramfs.cpio"] {
                #expect(FileManager.default.fileExists(atPath: cellDirectory.appendingPathComponent(file).path), "\(file) missing")
            }
        }
    }

    /// Every template, short parameters, both arches: PASS with its operations counted.
    @Test func everyTemplatePassesOnBothArches() throws {
        let tests = [TestSelection(name: "madv-collapse", parameters: ["pmds=2", "threads=1"]),
                     TestSelection(name: "gup-pin-unshare", parameters: ["iterations=2", "gib=1"]),
                     TestSelection(name: "madv-collapse", parameters: ["pmds=2", "threads=0", "memory=shmem"]),
                     TestSelection(name: "gup-fast-unshare-race", parameters: ["rounds=2", "widen_us=5000"]),
                     TestSelection(name: "collapse-gup-fast-race", parameters: ["rounds=2", "widen_us=5000"]),
                     TestSelection(name: "hugetlb-unshare-paths",
                                   parameters: ["path=munmap,munmap-half,mremap,mprotect,mprotect-half,punch-hole,truncate",
                                                "cycles=2", "children=2"]),
                     TestSelection(name: "hugetlb-shared-migrate")]
        let results = try Self.run(RunRequest(tests: tests, timeoutSeconds: 240))
        #expect(results.count == 26)
        for result in results {
            #expect(result.status == .pass, "\(result.cell.id): \(result.reason ?? "")")
            #expect((result.counters?.operations ?? 0) > 0, "\(result.cell.id): no operations reported")
            #expect(result.counters?.scope == .measuredLoop, "\(result.cell.id): the test marked no measured loop")
            let pageTables = result.checks.first { $0.name == "page tables freed after the test" }
            #expect(pageTables?.passed == true, "\(result.cell.id): \(pageTables?.detail ?? "no page-table check")")
        }
        // Every unshare path: one sync per table handover (8ce720d5bd; measured exactly 1.00 on
        // every path, a stray one tolerated), each reaching the other 3 CPUs.
        for result in results where result.cell.test == "hugetlb-unshare-paths" {
            let sync = result.counters?.probe("tlb_remove_table_sync_one")?.perOperation ?? 0
            #expect(sync >= 1 && sync <= 1.5, "\(result.cell.id): \(sync) syncs per handover")
            let delivered = result.counters?.probe("tlb_remove_table_smp_sync")?.perOperation ?? 0
            #expect(delivered == 3 * sync, "\(result.cell.id): \(delivered) sync IPIs per handover for \(sync) syncs")
        }
        // A two-node guest: no page moved while its PMD table was shared, every page once not.
        for result in results where result.cell.test == "hugetlb-shared-migrate" {
            #expect(result.metrics["moved_while_shared"] == "0" && result.metrics["control_moved"] == "1",
                    "\(result.cell.id): \(result.metrics)")
        }
        // Jann Horn's fix: one sync broadcast per collapsed anonymous PMD.
        for result in results where result.cell.test == "madv-collapse" && result.cell.parameters["memory"] == .choice("anon") {
            let sync = result.counters?.probe("tlb_remove_table_sync_one")?.perOperation ?? 0
            #expect(sync >= 0.5 && sync <= 2, "\(result.cell.id): \(sync) syncs per collapsed PMD")
        }
    }

    /// A check that fails inside the guest must arrive as FAIL on the host.
    @Test func brokenGuestCheckIsFail() throws {
        let results = try Self.run(RunRequest(arches: [.x86_64], tests: [TestSelection(name: RunRequest.defaultTest, parameters: ["fault=corrupt", "cycles=2"])], timeoutSeconds: 120))
        let result = try #require(results.first)
        #expect(result.status == .fail)
        #expect(result.reason?.hasPrefix("check failed: data integrity") == true, "\(result.reason ?? "")")
    }

    /// A batch on real guests, both arches: a cell whose guest check fails ends its boot
    /// (the agent sees a test that did not pass), the cells after it run in a fresh boot,
    /// and every cell gets the verdict a boot of its own gives (brokenGuestCheckIsFail).
    @Test func aFailingCellEndsItsBatchAndTheRestRunInAFreshBoot() throws {
        let results = try Self.run(RunRequest(tests: [TestSelection(name: RunRequest.defaultTest, parameters: ["cycles=2,3", "fault=none,corrupt"])],
                                              timeoutSeconds: 120))
        #expect(results.count == 8)
        for arch in [Arch.x86_64, .aarch64] {
            let cells = results.filter { $0.cell.arch == arch }
            for result in cells {
                let corrupt = result.cell.parameters["fault"]?.description == "corrupt"
                #expect(result.status == (corrupt ? .fail : .pass), "\(result.cell.id): \(result.reason ?? "")")
                if corrupt { #expect(result.reason?.hasPrefix("check failed: data integrity") == true, "\(result.reason ?? "")") }
            }
            // Two boots: the first ended after its failing cell, the second ran the two left.
            let boots = Dictionary(grouping: cells, by: { $0.batch?.boot ?? "alone" })
            #expect(boots.count == 2, "\(arch): \(boots.keys.sorted())")
            #expect(boots.values.map { $0.map { $0.batch?.size ?? 0 } }.map(Set.init).sorted { $0.first! > $1.first! } == [[4], [2]])
            #expect(cells.allSatisfy { ($0.batch?.position == 2) == ($0.status == .fail) })
        }
    }

    /// Debian 6.1 builds virtio and virtio_console as modules: the image must carry and
    /// load them, or the result channel never appears.
    @Test func debian61LoadsItsVirtioModules() throws {
        let results = try Self.run(RunRequest(kernels: [.debian(version: "6.1.192")], arches: [.x86_64],
                                              tests: [TestSelection(name: RunRequest.defaultTest, parameters: ["cycles=2"])], timeoutSeconds: 120))
        let result = try #require(results.first)
        #expect(result.status == .pass, "\(result.reason ?? "")")
        #expect(result.guest?.uname.hasPrefix("6.1.0-") == true)
    }

    /// Fresh guests by restore, both arches: each cell restores a guest saved at the
    /// agent's ready point (made on first use, kept across runs) and passes with the counts
    /// a booted guest gives; `--fresh boot` boots. (How long each takes: BENCHMARKS.md.)
    @Test func restoredGuestsPassOnBothArches() throws {
        let request = RunRequest(tests: [TestSelection(name: RunRequest.defaultTest, parameters: ["cycles=4"])], timeoutSeconds: 120)
        _ = try Self.run(request)  // saves the guests where this host has none yet
        let restored = try Self.run(request)
        let booted = try RunPipeline(context: Self.context()).run(request, options: ExecutionOptions(fresh: .boot)).results
        #expect(Set(restored.map(\.cell.arch)) == [.x86_64, .aarch64])
        for (restored, booted) in zip(restored, booted) {
            #expect(restored.status == .pass, "\(restored.cell.id): \(restored.reason ?? "") \(restored.consoleTail ?? "")")
            #expect(restored.guestStart?.hasPrefix("restored a saved guest") == true, "\(restored.guestStart ?? "")")
            #expect(booted.status == .pass && booted.guestStart == "cold boot", "\(booted.guestStart ?? "")")
            // The same kernel work per operation either way.
            for probe in ["tlb_remove_table_sync_one", "tlb_remove_table_smp_sync"] {
                #expect(restored.counters?.probe(probe)?.perOperation == booted.counters?.probe(probe)?.perOperation, "\(probe)")
            }
        }
    }

    /// Guest files through libvirt's storage API, as for a remote host (qemu+ssh): the
    /// kernel and initramfs are uploaded as volumes and the channels downloaded back.
    @Test func volumeStagingAsForRemoteHosts() throws {
        var context = Self.context()
        context.staging = .volumes
        let outcome = try RunPipeline(context: context).run(
            RunRequest(arches: [.x86_64], tests: [TestSelection(name: RunRequest.defaultTest, parameters: ["cycles=2"])],
                       timeoutSeconds: 120))
        let results = outcome.results
        let result = try #require(results.first)
        #expect(result.status == .pass, "\(result.reason ?? "")")
        #expect(result.counters?.probe("tlb_remove_table_sync_one") != nil)
        #expect(result.guestStart?.hasPrefix("cold boot: restoring needs the hypervisor on this machine") == true, "\(result.guestStart ?? "")")
        let connection = try LibvirtConnection(uri: context.libvirtURI)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: LibvirtConnection.poolPath).filter { !$0.hasPrefix("bin-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        // This run's own domains: other suites (and other users) boot guests meanwhile.
        #expect(try connection.domainNames(prefix: "shootdown-\(outcome.directory.runID)").isEmpty)
    }

    /// A guest that never reports is destroyed at the timeout and comes back as ERROR.
    @Test func hangingGuestIsErrorAndDestroyed() throws {
        let context = Self.context()
        let kernel = try KernelResolver(context: context).resolve(.debian(version: nil), arch: .x86_64)
        let sleeper = try ProgramBuilder(context: context).build(
            source: "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n", name: "sleeper", arch: .x86_64)
        let image = GuestImage(agent: try Data(contentsOf: sleeper), plan: GuestPlan(hugepages: 0, probes: [], tests: []), programs: [])
        let connection = try LibvirtConnection(uri: context.libvirtURI)
        let launcher = GuestLauncher(context: context, connection: connection)
        let spec = try launcher.stagedSpec(name: "shootdown-test-hang-\(getpid())", arch: .x86_64, accel: .tcg,
                                           paravirt: nil, vcpus: 1, memoryMiB: 256, tcgThreads: .single)
        let outcome = try launcher.boot(spec, kernel: kernel.kernel, initramfs: image.archive, timeout: .seconds(8))
        launcher.waitForTeardowns()
        #expect(outcome.timedOut)
        #expect(outcome.wall < .seconds(20))
        let verdict = VerdictBuilder.judge(.init(testID: "test", operation: "x", probes: [],
                                                 console: String(decoding: outcome.console, as: UTF8.self),
                                                 records: GuestRecords.parse(outcome.results), timedOut: outcome.timedOut,
                                                 startError: outcome.startError, wall: outcome.wall, timeoutSeconds: 8))
        #expect(verdict.status == .error)
        #expect(try connection.domainNames(prefix: spec.name) == [])
        #expect(!FileManager.default.fileExists(atPath: URL(fileURLWithPath: spec.kernel).deletingLastPathComponent().path))
    }

    static func runDirectory(of result: CellResult) throws -> String {
        let runs = try FileManager.default.contentsOfDirectory(atPath: results.path)
        return try #require(runs.first { FileManager.default.fileExists(atPath: results.appendingPathComponent($0).appendingPathComponent(result.cell.id).path) })
    }
}
