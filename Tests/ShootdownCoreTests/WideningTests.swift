import Foundation
import Testing
@testable import ShootdownCore

/// The widening module's manifest section, plan lines, stats parsing and the checks a
/// cell gets from them.
@Suite struct WideningTests {
    static let catalog = TemplateCatalog(resources: Repository.root)

    /// Real stats as an arm64 6.12.117 guest printed them (gup-fast-unshare-race, widened).
    static let statsBefore = """
        point gup_fast_folio_allowed+0 delay_us=20000 limit=-1 armed=1 error=0 hits=3 fired=0
        watch __unmap_hugepage_range+0 armed=1 error=0 hits=0 during=0
        watch tlb_remove_table_sync_one+0 armed=1 error=0 hits=0 during=0

        """
    static let statsAfter = """
        point gup_fast_folio_allowed+0 delay_us=20000 limit=-1 armed=1 error=0 hits=63 fired=60
        watch __unmap_hugepage_range+0 armed=1 error=0 hits=40 during=20
        watch tlb_remove_table_sync_one+0 armed=1 error=0 hits=20 during=20

        """

    @Test func raceTemplateDeclaresItsPointsAndEvidence() throws {
        let template = try Self.catalog.template(named: "gup-fast-unshare-race")
        let rendered = try TemplateRenderer.render(template, try template.instances(overrides: ["widen_us=5000"])[0])
        let widening = try #require(rendered.widening)
        #expect(widening.comm == "sd-gupfast")
        #expect(widening.points == [.init(location: "gup_fast_folio_allowed", delayUs: 5000, limit: -1), .init(location: "try_grab_folio", delayUs: 5000, limit: -1)])
        #expect(widening.watch == ["__unmap_hugepage_range", "tlb_remove_table_sync_one"])
        #expect(rendered.evidence.map(\.metric) == ["overlaps"])
        // The delay reaches the C source too, which times its unshare by it.
        #expect(rendered.source.contains("#define WIDEN_US 5000L"))
    }

    @Test func planLinesFollowTheProtocol() {
        let plan = GuestPlan(hugepages: 4, probes: ["huge_pmd_share"], tests: [.init(id: "test", timeoutSeconds: 60, path: "/shootdown/tests/test")],
                             widening: WideningPlan(comm: "sd-gupfast", points: [.init(location: "gup_fast_folio_allowed+0x10", delayUs: 100, limit: 5)],
                                                    watch: ["tlb_remove_table_sync_one"]))
        #expect(plan.text == """
            version 1
            hugepages 4
            probe huge_pmd_share
            widen gup_fast_folio_allowed+0x10 100 5
            watch tlb_remove_table_sync_one
            widen-comm sd-gupfast
            test test 60 /shootdown/tests/test

            """)
        let image = GuestImage(agent: Data("agent".utf8), plan: plan, programs: [], wideningModule: Data("ko".utf8))
        #expect(image.listing.contains("/shootdown/widen/shootdown_widen.ko"))
    }

    @Test(arguments: [
        ("comm: this-name-is-far-too-long\npoints: []", "comm 'this-name-is-far-too-long' must be 1 to 15 characters"),
        ("points:\n  - {symbol: \"gup fast\", delay_us: 10}", "'gup fast' is not a symbol or symbol+offset"),
        ("points:\n  - {symbol: gup_fast_folio_allowed+zz, delay_us: 10}", "'gup_fast_folio_allowed+zz' is not a symbol"),
        ("points:\n  - {symbol: gup_fast_folio_allowed, delay_us: nosuchparam}", "delay_us 'nosuchparam' must be microseconds or a parameter expression"),
        ("points:\n  - {symbol: gup_fast_folio_allowed, delay_us: 10, limit: -2}", "limit -2 must be -1"),
    ])
    func manifestMistakesAreNamed(section: String, message: String) throws {
        let yaml = """
            name: t
            summary: s
            description: d
            operation: op
            hugepages: "1"
            probes: []
            parameters:
              - {name: rounds, type: int, default: 1, min: 1, max: 9, help: h}
            widen:
            \(section.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))

            """
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("widen-manifest-\(UUID().uuidString).yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try TemplateManifest.load(from: url)
            Issue.record("accepted: \(section)")
        } catch let error as ShootdownError {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }

    @Test func statsParseAndSubtract() {
        let delta = WideningStats.delta(before: .parse(Self.statsBefore), after: .parse(Self.statsAfter))
        #expect(delta.locations.count == 3)
        let point = delta.locations[0]
        #expect(point.kind == .point && point.location == "gup_fast_folio_allowed" && point.armed)
        #expect(point.hits == 60 && point.count == 60 && point.delayUs == 20000)
        #expect(delta.locations[2].count == 20)
    }

    /// Guest text is hostile: malformed, overflowing or backwards counters are no evidence.
    @Test func hostileStatsAreDropped() {
        let junk = """
            point gup_fast_folio_allowed+0 delay_us=1 limit=-1 armed=1 error=0 hits=99999999999999999999999 fired=1
            watch x+0 armed=2 error=0 hits=1 during=0
            watch y+0 armed=1 error=0 hits=-1 during=0
            point z+0 armed=1 error=0 hits=1
            \u{1b}[31mpoint q+0 armed=1 error=0 hits=1 fired=1
            watch \u{1b}[2Jevil+0 armed=1 error=0 hits=1 during=0
            nonsense
            """
        #expect(WideningStats.parse(junk).locations.isEmpty)
        let backwards = WideningStats.delta(before: .parse(Self.statsAfter), after: .parse(Self.statsBefore))
        #expect(backwards.locations.isEmpty)
    }

    static func judge(widening: WideningRequest?, before: String = statsBefore, stats: String = statsAfter,
                      metrics: String = "# metric overlaps=3\n") -> Verdict {
        let boot = #"{"type":"boot","agent":1,"uname":"6.12.117","cpus":4,"hugepages":{"requested":4,"total":4,"free":4},"probes":[],"widen":{"status":"ok","error":""},"dmesg":"","uptime_ns":1}"#
        let output = "TAP version 13\nok 1 fine\n# metric ops=3\n\(metrics)1..1\n"
        let test: [String: Any] = ["type": "test", "id": "test", "exit": 0, "signal": 0, "timed_out": false, "wall_ns": 1,
                                   "output": output, "interrupts_before": "", "interrupts_after": "", "kprobes_before": "",
                                   "kprobes_after": "", "hugepages_before": [String: Int](), "hugepages_after": [String: Int](),
                                   "kmsg": "", "widen_before": before, "widen_after": stats]
        let testLine = String(decoding: try! JSONSerialization.data(withJSONObject: test), as: UTF8.self)
        let records = GuestRecords.parse(Data((boot + "\n" + testLine + "\n" + #"{"type":"done","uptime_ns":2}"# + "\n").utf8))
        var input = VerdictBuilder.Input(testID: "test", operation: "unshare", probes: [], console: "", records: records,
                                         timedOut: false, startError: nil, wall: .seconds(1), timeoutSeconds: 60)
        input.widening = widening
        input.evidence = [EvidenceCheck(metric: "overlaps", min: 1, name: "the race window was exercised")]
        return VerdictBuilder.judge(input)
    }

    static let plan = WideningPlan(comm: "sd-gupfast", points: [.init(location: "gup_fast_folio_allowed", delayUs: 20000, limit: -1)], watch: [])

    @Test func armedWideningIsRecordedAndChecked() {
        let verdict = Self.judge(widening: WideningRequest(plan: Self.plan, availability: .module))
        #expect(verdict.status == .pass, "\(verdict.reason ?? "")")
        #expect(verdict.widening?.status == "on")
        #expect(verdict.metrics["widen.gup_fast_folio_allowed.fired"] == "60")
        #expect(verdict.checks.contains { $0.name == "widening point gup_fast_folio_allowed armed" && $0.passed && !$0.skipped })
    }

    @Test func aPointThatCannotBeArmedIsNamedAndTheCellGoesOn() {
        let failed = "point gup_fast_nowhere+0 delay_us=20000 limit=-1 armed=0 error=-2 hits=0 fired=0\n"
        let verdict = Self.judge(widening: WideningRequest(plan: Self.plan, availability: .module), before: failed, stats: failed)
        #expect(verdict.status == .pass)
        let check = try? #require(verdict.checks.first { $0.name == "widening point gup_fast_nowhere armed" })
        #expect(check?.skipped == true)
        #expect(check?.detail?.contains("no such symbol") == true)
    }

    @Test func noModuleSaysWhyAndRunsUnwidened() {
        let verdict = Self.judge(widening: WideningRequest(plan: Self.plan, availability: .unavailable("a file: image has no build folder")))
        #expect(verdict.status == .pass)
        #expect(verdict.widening?.status == "unavailable")
        #expect(verdict.checks.contains { $0.name == "race window widened" && $0.skipped && $0.detail == "a file: image has no build folder" })
    }

    /// "PASS, but the race never ran" is no PASS.
    @Test func missingEvidenceIsAnError() {
        let none = Self.judge(widening: nil, metrics: "# metric overlaps=0\n")
        #expect(none.status == .error)
        #expect(none.reason?.contains("the test proved nothing: the race window was exercised (overlaps = 0, need ≥ 1)") == true, "\(none.reason ?? "")")
        #expect(none.checks.contains { $0.name == "the race window was exercised" && !$0.passed })
        let absent = Self.judge(widening: nil, metrics: "")
        #expect(absent.status == .error)
        #expect(absent.reason?.contains("reported no overlaps metric") == true)
    }

    @Test func debianOriginsNameTheirPackage() {
        let package = DebianKernelPackage(origin: "linux-image-6.12.118+deb12-arm64 6.12.118-1~deb12u1", arch: .aarch64)
        #expect(package?.abi == "6.12.118+deb12")
        #expect(package?.debianVersion == "6.12.118-1~deb12u1")
        #expect(DebianKernelPackage(origin: "/root/vmlinuz", arch: .x86_64) == nil)
        #expect(DebianKernelPackage(origin: "linux-image-6.12.118+deb12-arm64 6.12.118-1~deb12u1", arch: .x86_64) == nil)
    }
}

/// Real records of gup-fast-unshare-race on Debian 6.12.117 under TCG, widened: what the
/// watch points say about who made the unshare wait for the walker.
@Suite struct WideningCaptureTests {
    static func verdict(_ name: String) throws -> Verdict {
        let url = Repository.root.appendingPathComponent("Tests/ShootdownCoreTests/Fixtures/records/\(name)")
        let template = try TemplateCatalog(resources: Repository.root).template(named: "gup-fast-unshare-race")
        let rendered = try TemplateRenderer.render(template, template.defaultInstance)
        var input = VerdictBuilder.Input(testID: "test", operation: rendered.operation, probes: rendered.probes,
                                         probeChecks: rendered.probeChecks, console: "", records: GuestRecords.parse(try Data(contentsOf: url)),
                                         timedOut: false, startError: nil, wall: .seconds(30), timeoutSeconds: 300)
        input.widening = WideningRequest(plan: try #require(rendered.widening), availability: .module)
        input.evidence = rendered.evidence
        return VerdictBuilder.judge(input)
    }

    static func during(_ verdict: Verdict, _ location: String) -> UInt64? {
        verdict.widening?.locations.first { $0.location == location }?.count
    }

    /// arm64 flushes with broadcast TLBI: the sync IPI is what waits for the widened walker.
    @Test func onArm64TheSyncRunsInsideTheWindow() throws {
        let verdict = try Self.verdict("aarch64-6.12.117-gup-fast-race-widened.jsonl")
        #expect(verdict.status == .pass, "\(verdict.reason ?? "")")
        #expect(verdict.metrics["overlaps"] == "20")
        #expect(Self.during(verdict, "tlb_remove_table_sync_one") == 20)
    }

    /// x86 without paravirt flush: the TLB-flush IPI already waited for the walker, so the
    /// sync that follows never finds one in its window (why x86 TCG cannot catch the bug).
    @Test func onX86TheFlushIPIWaitsFirst() throws {
        let verdict = try Self.verdict("x86_64-6.12.117-gup-fast-race-widened.jsonl")
        #expect(verdict.status == .pass, "\(verdict.reason ?? "")")
        #expect(verdict.metrics["overlaps"] == "20")
        #expect(Self.during(verdict, "tlb_remove_table_sync_one") == 0)
        #expect((verdict.widening?.locations.first { $0.location == "gup_fast_folio_allowed" }?.count ?? 0) > 0)
    }
}

/// Real boots of collapse-gup-fast-race on linux-source-6.12 built for arm64 by
/// ci/prove-gup-fast-race: the stock kernel, and the one without the collapse sync.
@Suite struct CollapseRaceCaptureTests {
    static func fixture(_ path: String) throws -> Data {
        try Data(contentsOf: Repository.root.appendingPathComponent("Tests/ShootdownCoreTests/Fixtures/\(path)"))
    }

    static func verdict(records: String, console: String = "") throws -> Verdict {
        let template = try TemplateCatalog(resources: Repository.root).template(named: "collapse-gup-fast-race")
        let rendered = try TemplateRenderer.render(template, template.defaultInstance)
        var input = VerdictBuilder.Input(testID: "test", operation: rendered.operation, probes: rendered.probes,
                                         probeChecks: rendered.probeChecks, console: console,
                                         records: GuestRecords.parse(try fixture("records/\(records)")),
                                         timedOut: false, startError: nil, wall: .seconds(10), timeoutSeconds: 300)
        input.widening = WideningRequest(plan: try #require(rendered.widening), availability: .module)
        input.evidence = rendered.evidence
        return VerdictBuilder.judge(input)
    }

    /// The sync makes every collapse wait for the widened walker: PASS, one sync per collapse.
    @Test func theStockKernelPassesWithTheRaceExercised() throws {
        let verdict = try Self.verdict(records: "aarch64-6.12.118-collapse-race-widened.jsonl")
        #expect(verdict.status == .pass, "\(verdict.reason ?? "")")
        #expect(verdict.metrics["ops"] == "20")
        #expect(verdict.metrics["overlaps"] == "20")
        #expect(verdict.metrics["refill_pages_seen"] == "0")
        #expect(verdict.widening?.locations.first { $0.location == "tlb_remove_table_sync_one" }?.count == 19)
    }

    /// Without the sync the walker dereferences a fake PTE and the guest panics mid-test:
    /// a FAIL that names the splat, not an ERROR for the missing test result.
    @Test func theKernelWithoutTheSyncFailsOnTheOops() throws {
        let console = String(decoding: try Self.fixture("console/aarch64-6.12.118-no-collapse-sync-gup-fast-oops.log"), as: UTF8.self)
        let verdict = try Self.verdict(records: "aarch64-6.12.118-no-collapse-sync-collapse-race-widened.jsonl", console: console)
        #expect(verdict.status == .fail)
        #expect(verdict.reason?.contains("Unable to handle kernel paging request") == true, "\(verdict.reason ?? "")")
    }
}
