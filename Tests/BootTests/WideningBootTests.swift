import Foundation
import Testing
@testable import ShootdownCore

/// The widening module on real guests: built against Debian's headers (downloaded once
/// into the cache), loaded by the agent, armed, and seen firing.
@Suite(.serialized, .sharingTheHost) struct WideningBootTests {
    /// arm64 Debian 6.12: the race test widened; the walker is held, the unshare lands in
    /// the window, and the sync is what waits for it.
    @Test func raceTestArmsItsPointAndItFires() throws {
        let results = try BootTests.run(RunRequest(arches: [.aarch64],
                                                   tests: [TestSelection(name: "gup-fast-unshare-race", parameters: ["rounds=3"])],
                                                   timeoutSeconds: 240))
        let result = try #require(results.first)
        #expect(result.status == .pass, "\(result.reason ?? "")")
        let widening = try #require(result.widening)
        #expect(widening.status == "on", "\(widening.reason ?? "")")
        let point = try #require(widening.locations.first { $0.location == "gup_fast_folio_allowed" })
        #expect(point.armed && point.count > 0, "\(point)")
        #expect((Int(result.metrics["overlaps"] ?? "") ?? 0) >= 1)
        let sync = try #require(widening.locations.first { $0.location == "tlb_remove_table_sync_one" })
        #expect(sync.count >= 1, "the sync never ran inside a widened window: \(sync)")
    }

    /// The module builds against Debian's headers packages, for the exact release: the
    /// newest amd64, and 6.1's arm64, whose headers take the cross compiler from dpkg's
    /// host type unless shootdown names it.
    @Test(arguments: [(nil, Arch.x86_64), ("6.1.192", Arch.aarch64)])
    func moduleBuildsAgainstDebianHeaders(version: String?, arch: Arch) throws {
        let context = BootTests.context()
        let kernel = try KernelResolver(context: context).resolve(.debian(version: version), arch: arch)
        let module = try #require(WideningModuleBuilder(context: context).module(for: kernel).module)
        let text = String(decoding: try Data(contentsOf: module), as: UTF8.self)
        let release = try #require(kernel.kernel.lastPathComponent.split(separator: "-", maxSplits: 1).last)
        #expect(text.contains("vermagic=\(release) "), "module not built for \(release)")
    }

    /// A point the kernel cannot arm is named in the cell; the others still work.
    @Test func anUnknownSymbolIsReportedAndTheGuestGoesOn() throws {
        let context = BootTests.context()
        let kernel = try KernelResolver(context: context).resolve(.debian(version: nil), arch: .x86_64)
        let module = try #require(WideningModuleBuilder(context: context).module(for: kernel).module)
        let builder = ProgramBuilder(context: context)
        let agentSource = try String(contentsOf: context.paths.resources.appendingPathComponent("Images/agent/agent.c"), encoding: .utf8)
        let agent = try Data(contentsOf: builder.build(source: agentSource, name: "agent", arch: .x86_64))
        let program = try Data(contentsOf: builder.build(source: """
            #include <stdio.h>
            #include <unistd.h>
            int main(void) { getppid(); printf("TAP version 13\\nok 1 ran\\n# metric ops=1\\n1..1\\n"); return 0; }
            """, name: "widen-smoke", arch: .x86_64))
        let plan = GuestPlan(hugepages: 0, probes: [], tests: [.init(id: "test", timeoutSeconds: 30, path: "/shootdown/tests/test")],
                             widening: WideningPlan(comm: nil, points: [.init(location: "shootdown_no_such_function", delayUs: 10, limit: 1)],
                                                    watch: ["__x64_sys_getppid"]))
        let image = GuestImage(agent: agent, plan: plan, programs: [("test", program)], wideningModule: try Data(contentsOf: module))
        let launcher = GuestLauncher(context: context, connection: try LibvirtConnection(uri: context.libvirtURI))
        let spec = try launcher.stagedSpec(name: "shootdown-test-widen-\(getpid())", arch: .x86_64, accel: .tcg,
                                           paravirt: nil, vcpus: 1, memoryMiB: 512, tcgThreads: .single)
        let outcome = try launcher.boot(spec, kernel: kernel.kernel, initramfs: image.archive, timeout: .seconds(120))
        launcher.waitForTeardowns()
        var input = VerdictBuilder.Input(testID: "test", operation: "op", probes: [], console: String(decoding: outcome.console, as: UTF8.self),
                                         records: GuestRecords.parse(outcome.results), timedOut: outcome.timedOut,
                                         startError: outcome.startError, wall: outcome.wall, timeoutSeconds: 120)
        input.widening = WideningRequest(plan: plan.widening!, availability: .module)
        let verdict = VerdictBuilder.judge(input)
        #expect(verdict.status == .pass, "\(verdict.reason ?? "")")
        let missing = try #require(verdict.checks.first { $0.name == "widening point shootdown_no_such_function armed" })
        #expect(missing.skipped && missing.detail?.contains("no such symbol") == true, "\(missing)")
        let watch = try #require(verdict.widening?.locations.first { $0.location == "__x64_sys_getppid" })
        #expect(watch.armed && watch.hits >= 1, "\(watch)")
    }
}
