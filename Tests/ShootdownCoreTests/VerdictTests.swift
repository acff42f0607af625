import Foundation
import Testing
@testable import ShootdownCore

/// Builds agent records as the guest would send them.
enum SyntheticGuest {
    static let interruptsBefore = """
                   CPU0       CPU1
         RES:         10         20   Rescheduling interrupts
         CAL:        100        200   Function call interrupts
         TLB:          5          5   TLB shootdowns
        """
    static let interruptsAfter = """
                   CPU0       CPU1
         RES:         12         20   Rescheduling interrupts
         CAL:        140        240   Function call interrupts
         TLB:          5          9   TLB shootdowns
        """
    static let kprobesBefore = "  tlb_remove_table_sync_one                     0               0\n  huge_pmd_share                                0               0\n"
    static let kprobesAfter = "  tlb_remove_table_sync_one                    20               0\n  huge_pmd_share                               40               0\n"

    static let passingTAP = """
        TAP version 13
        1..2
        # metric ops=20
        # metric op=fork-exit
        ok 1 data integrity across 20 cycles of 1 sharers
        ok 2 hugetlb pool back to baseline
        """

    static func boot(dmesg: String = "[    0.000000] Linux version 6.12.117\n") -> String {
        json(["type": "boot", "agent": 1, "uname": "6.12.117+deb12-amd64", "machine": "x86_64", "cpus": 2,
              "hugepages": ["requested": 24, "total": 24, "free": 24],
              "probes": [["symbol": "tlb_remove_table_sync_one", "status": "ok"], ["symbol": "huge_pmd_share", "status": "ok"],
                         ["symbol": "tlb_flush_unshared_tables", "status": "missing"]],
              "dmesg": dmesg, "uptime_ns": 1_500_000_000])
    }

    static func test(output: String = passingTAP, exit: Int = 0, signal: Int = 0, timedOut: Bool = false,
                     freeAfter: Int = 24, kmsg: String = "", window: [String: Any]? = nil,
                     pageTables: [String: Any]? = nil, ipiTrace: String? = nil, id: String = "test") -> String {
        json(["type": "test", "window": window ?? NSNull(), "page_tables_kb": pageTables ?? NSNull(), "ipi_trace": ipiTrace ?? NSNull(), "id": id, "exit": exit, "signal": signal, "timed_out": timedOut, "wall_ns": 2_000_000_000,
              "output": output, "output_truncated": false,
              "interrupts_before": interruptsBefore, "interrupts_after": interruptsAfter,
              "kprobes_before": kprobesBefore, "kprobes_after": kprobesAfter,
              "hugepages_before": ["total": 24, "free": 24, "resv": 0, "surp": 0],
              "hugepages_after": ["total": 24, "free": freeAfter, "resv": 0, "surp": 0], "kmsg": kmsg])
    }

    static let done = #"{"type":"done","uptime_ns":4000000000}"#

    /// The judged cell as run writes it: an x86_64 TCG cell of the verdict.
    static func cellResult(_ verdict: Verdict, vcpus: Int = 2) -> CellResult {
        let descriptor = CellDescriptor(id: "x86_64-cell", arch: .x86_64, kernel: "debian", kernelVersion: "6.12.117", kernelOrigin: "test",
                                        accel: .tcg, paravirt: "default", vcpus: vcpus, memoryMiB: 1024, test: "t", parameters: [:])
        return CellResult(cell: descriptor, status: verdict.status, reason: verdict.reason, checks: verdict.checks,
                          counters: verdict.counters, metrics: verdict.metrics, splats: verdict.splats, guest: verdict.guest,
                          timings: verdict.timings, consoleTail: verdict.consoleTail)
    }

    /// Marks around the loop, inside the whole test's before/after above.
    static let loopInterruptsBegin = """
                   CPU0       CPU1
         RES:         11         20   Rescheduling interrupts
         CAL:        110        210   Function call interrupts
         TLB:          5          5   TLB shootdowns
        """
    static let loopInterruptsEnd = """
                   CPU0       CPU1
         RES:         11         20   Rescheduling interrupts
         CAL:        125        225   Function call interrupts
         TLB:          5          8   TLB shootdowns
        """

    static func window(interruptsEnd: String = loopInterruptsEnd, kprobesEnd: Int = 19, cut: Bool = false) -> [String: Any] {
        ["interrupts_begin": loopInterruptsBegin, "interrupts_end": interruptsEnd,
         "kprobes_begin": "  tlb_remove_table_sync_one                     1               0\n  huge_pmd_share                                0               0\n",
         "kprobes_end": "  tlb_remove_table_sync_one                    \(kprobesEnd)               0\n  huge_pmd_share                               40               0\n",
         "cut": cut]
    }

    static func json(_ object: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    static func judge(_ lines: [String], console: String = "", timedOut: Bool = false, startError: String? = nil,
                      probeChecks: [ProbeCheck] = []) -> Verdict {
        let records = GuestRecords.parse(Data(lines.joined(separator: "\n").utf8))
        return VerdictBuilder.judge(.init(testID: "test", operation: "fork-exit", probes: ["tlb_remove_table_sync_one"],
                                          probeChecks: probeChecks, console: console, records: records, timedOut: timedOut, startError: startError,
                                          wall: .seconds(6), timeoutSeconds: 60))
    }
}

@Suite struct VerdictTests {
    @Test func passingTestGivesPassWithPerOperationCounters() throws {
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.done])
        #expect(verdict.status == .pass)
        #expect(verdict.reason == nil)
        let counters = try #require(verdict.counters)
        #expect(counters.operations == 20)
        #expect(counters.ipi("CAL")?.perCPU == [40, 40])
        #expect(counters.ipi("CAL")?.total == 80)
        #expect(counters.ipi("CAL")?.perOperation == 4.0)
        #expect(counters.ipi("TLB")?.total == 4)
        #expect(counters.probe("tlb_remove_table_sync_one")?.perOperation == 1.0)
        #expect(counters.probe("huge_pmd_share")?.hits == 40)
        #expect(counters.probe("tlb_flush_unshared_tables") == nil)
        #expect(verdict.timings == CellTimings(bootSeconds: 1.5, testSeconds: 2.0, totalSeconds: 6))
        #expect(verdict.checks.map(\.name) == ["data integrity across 20 cycles of 1 sharers", "hugetlb pool back to baseline",
                                               "hugetlb pool unchanged across the test", "no kernel splat"])
    }

    @Test func failingGuestCheckBecomesFail() {
        let tap = SyntheticGuest.passingTAP.replacingOccurrences(of: "ok 1 data integrity", with: "not ok 1 data integrity")
            + "\n# page 3: expected 0x1234 found 0xdead"
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(output: tap, exit: 1), SyntheticGuest.done])
        #expect(verdict.status == .fail)
        #expect(verdict.reason == "check failed: data integrity across 20 cycles of 1 sharers")
    }

    @Test func leakedHugepagesFailOnTheHostEvenIfTheTestPasses() {
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(freeAfter: 22), SyntheticGuest.done])
        #expect(verdict.status == .fail)
        #expect(verdict.reason?.hasPrefix("check failed: hugetlb pool unchanged across the test (free 24→22") == true)
    }

    @Test func skipExitGivesSkipWithReason() {
        let tap = "TAP version 13\n1..0 # SKIP no 2 MiB hugepages available\n"
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(output: tap, exit: 4), SyntheticGuest.done])
        #expect(verdict.status == .skip)
        #expect(verdict.reason == "no 2 MiB hugepages available")
    }

    @Test func splatFailsTheCellEvenWhenTheTestPassed() {
        let kmsg = "4,512,2000000,-;WARNING: CPU: 1 PID: 88 at mm/hugetlb.c:5012 huge_pmd_unshare+0x1c/0x90\n4,513,2000001,-;Modules linked in:\n"
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(kmsg: kmsg), SyntheticGuest.done])
        #expect(verdict.status == .fail)
        #expect(verdict.reason == "kernel splat: WARNING: CPU: 1 PID: 88 at mm/hugetlb.c:5012 huge_pmd_unshare+0x1c/0x90")
    }

    @Test func noBootRecordIsErrorWithTheConsoleTail() {
        let verdict = SyntheticGuest.judge([], console: "SeaBIOS\nBooting from ROM..\n", timedOut: true)
        #expect(verdict.status == .error)
        #expect(verdict.reason == "no result: the guest did not reach the agent within 60 s")
        #expect(verdict.consoleTail?.contains("Booting from ROM") == true)
    }

    @Test func panicWithoutRecordsIsFailNotError() {
        let console = "[    3.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n[    3.2] ---[ end Kernel panic ]---\n"
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot()], console: console)
        #expect(verdict.status == .fail)
        #expect(verdict.reason == "kernel splat: Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b")
    }

    @Test func startFailureIsError() {
        let verdict = SyntheticGuest.judge([], startError: "unsupported configuration")
        #expect(verdict.status == .error)
        #expect(verdict.reason == "the guest did not start: unsupported configuration")
    }

    @Test func hungTestKilledByTheAgentIsFail() {
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(exit: -1, signal: 9, timedOut: true), SyntheticGuest.done])
        #expect(verdict.status == .fail)
        #expect(verdict.reason?.hasPrefix("test timed out in the guest") == true)
    }

    @Test func missingDoneRecordIsError() {
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test()], timedOut: true)
        #expect(verdict.status == .error)
        #expect(verdict.reason == "the guest did not power off within 60 s after the test")
    }

    @Test func garbageOnTheChannelIsRejectedNotTrusted() {
        let records = GuestRecords.parse(Data("\(SyntheticGuest.boot())\n{\"type\":\"test\",\"id\":1}\nnot json\n{\"type\":\"surprise\"}\n{\"type\":\"te".utf8))
        #expect(records.boot != nil)
        #expect(records.tests.isEmpty)
        #expect(records.rejected == ["line 2: invalid record (bad field id)", "line 3: invalid record (not JSON)",
                                     "line 4: unknown record type 'surprise'", "line 5: truncated or invalid record (not JSON)"])
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), "{oops", SyntheticGuest.test(), SyntheticGuest.done])
        #expect(verdict.status == .error)
        #expect(verdict.reason?.hasPrefix("the result channel held invalid records") == true)
    }

    @Test func probeChecksPassFailOrSkipOnTheHost() throws {
        let lines = [SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.done]
        let shared = ProbeCheck(probe: "huge_pmd_share", minPerOp: 1, name: "children shared the tables")
        let pass = SyntheticGuest.judge(lines, probeChecks: [shared])
        #expect(pass.status == .pass)
        #expect(pass.checks.first { $0.name == shared.name }?.detail == "2.00 per fork-exit, need ≥ 1.00")

        let tooFew = SyntheticGuest.judge(lines, probeChecks: [ProbeCheck(probe: "huge_pmd_share", minPerOp: 3, name: "x")])
        #expect(tooFew.status == .fail)
        #expect(tooFew.reason == "check failed: x (2.00 per fork-exit, need ≥ 3.00)")

        let absent = SyntheticGuest.judge(lines, probeChecks: [ProbeCheck(probe: "tlb_flush_unshared_tables", minPerOp: 1, name: "y")])
        #expect(absent.status == .pass)
        let skipped = try #require(absent.checks.first { $0.name == "y" })
        #expect(skipped.skipped)
    }

    @Test func consoleFallbackRecordsAreRecovered() {
        let console = "[    1.0] booting\r\n@@SHOOTDOWN-RECORD@@\(SyntheticGuest.boot())\r\n[    2.0] noise\r\n"
            + "@@SHOOTDOWN-RECORD@@\(SyntheticGuest.test())\r\n@@SHOOTDOWN-RECORD@@\(SyntheticGuest.done)\r\n"
        let records = GuestRecords.parse(GuestRecords.fromConsole(console))
        #expect(records.boot != nil)
        #expect(records.tests.count == 1)
        #expect(records.finished)
        #expect(records.rejected.isEmpty)
        #expect(GuestRecords.fromConsole("[    1.0] nothing here\r\n").isEmpty)
    }

    @Test func paravirtEvidenceMustMatchTheRequest() {
        func judge(_ requested: Paravirt, _ arch: Arch, dmesg: String) -> Verdict {
            var input = VerdictBuilder.Input(testID: "test", operation: "fork-exit", probes: [], console: "",
                                             records: GuestRecords.parse(Data([SyntheticGuest.boot(dmesg: dmesg), SyntheticGuest.test(),
                                                                               SyntheticGuest.done].joined(separator: "\n").utf8)),
                                             timedOut: false, startError: nil, wall: .seconds(5), timeoutSeconds: 60)
            input.paravirt = (requested, arch)
            return VerdictBuilder.judge(input)
        }
        let pvLog = "6,300,1000,-;KVM setup pv remote TLB flush\n"
        #expect(judge(.on, .x86_64, dmesg: pvLog).status == .pass)
        #expect(judge(.off, .x86_64, dmesg: "6,1,1,-;Linux version\n").status == .pass)
        let contradicted = judge(.off, .x86_64, dmesg: pvLog)
        #expect(contradicted.status == .fail)
        #expect(contradicted.reason == "setup: paravirt off in effect: guest log shows 'KVM setup pv remote TLB flush'")
        #expect(judge(.on, .aarch64, dmesg: "6,1,1,-;arm-pv: using stolen time PV\n").status == .pass)
        #expect(judge(.on, .aarch64, dmesg: "6,1,1,-;nothing\n").status == .fail)
    }

    @Test func planMismatchIsError() {
        let tap = "1..3\nok 1 a\nok 2 b\n# metric ops=1\n"
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(output: tap), SyntheticGuest.done])
        #expect(verdict.status == .error)
        #expect(verdict.reason == "the test planned 3 checks but reported 2")
    }
}

@Suite struct MeasuredWindowTests {
    @Test func perOperationFiguresCountTheLoopAndTheRestIsFixedCost() throws {
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(window: SyntheticGuest.window()), SyntheticGuest.done])
        #expect(verdict.status == .pass)
        let counters = try #require(verdict.counters)
        #expect(counters.scope == .measuredLoop)
        #expect(counters.ipi("CAL")?.total == 30)
        #expect(counters.ipi("CAL")?.perOperation == 1.5)
        #expect(counters.probe("tlb_remove_table_sync_one")?.hits == 18)
        #expect(counters.probe("tlb_remove_table_sync_one")?.perOperation == 0.9)
        let fixedCAL = try #require(counters.fixedIPIs?.first { $0.name == "CAL" })
        #expect(fixedCAL.perCPU == [25, 25])
        #expect(fixedCAL.perOperation == nil)
        #expect(counters.fixedIPIs?.first { $0.name == "TLB" }?.total == 1)
        #expect(counters.fixedIPIs?.first { $0.name == "RES" }?.total == 2)
        #expect(counters.fixedProbes?.first { $0.symbol == "tlb_remove_table_sync_one" }?.hits == 2)
        #expect(counters.fixedProbes?.first { $0.symbol == "huge_pmd_share" }?.hits == 0)
    }

    @Test func aTestWithoutMarksIsCountedWhole() throws {
        let counters = try #require(SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.done]).counters)
        #expect(counters.scope == .wholeTest)
        #expect(counters.ipi("CAL")?.total == 80)
        #expect(counters.fixedIPIs == nil)
    }

    @Test(arguments: [
        (true, 19, "cut at the agent's cap"),
        (false, 0, "the measured loop:"),
        (false, 30, "counted more than the whole test"),
    ])
    func implausibleMarksAreAnErrorNotAFigure(cut: Bool, kprobesEnd: Int, reason: String) {
        let window = SyntheticGuest.window(kprobesEnd: kprobesEnd, cut: cut)
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(window: window), SyntheticGuest.done])
        #expect(verdict.status == .error)
        #expect(verdict.reason?.contains(reason) == true, "\(verdict.reason ?? "nil")")
        #expect(verdict.counters == nil)
    }

    @Test func theResultRecordsWhatWasCounted() throws {
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(window: SyntheticGuest.window()), SyntheticGuest.done])
        let json = try JSONEncoder().encode(try #require(verdict.counters))
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["scope"] as? String == "loop")
        #expect((object["fixed_ipis"] as? [Any])?.isEmpty == false)
    }

    @Test func theTableSaysWhatWasCountedAndWhatLiesOutside() throws {
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(window: SyntheticGuest.window()), SyntheticGuest.done])
        var result = SyntheticGuest.cellResult(verdict)
        let text = TerminalReport.render([result])
        #expect(text.contains("COUNTED"))
        #expect(text.contains("  loop  "))
        #expect(text.contains("sync-entered 0.9"))
        #expect(text.contains("COUNTED loop: between the test's marks"))
        #expect(text.contains("outside the measured loop"))
        #expect(text.contains("CAL 50"))
        #expect(text.contains("sync-entered 2"))
        #expect(!text.contains("≥"))

        result.counters?.probes[0].missed = 3
        result.counters?.scope = .wholeTest
        let lowerBound = TerminalReport.render([result])
        #expect(lowerBound.contains("sync-entered ≥0.9"))
        #expect(lowerBound.contains("lower bound"))
        #expect(lowerBound.contains("whole test"))
        #expect(!lowerBound.contains("outside the measured loop"))
    }
}

@Suite struct PageTableCheckTests {
    static func judge(_ pageTables: [String: Any]) -> Verdict {
        SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(pageTables: pageTables), SyntheticGuest.done])
    }

    @Test func tablesFreedOnceTheTestExitedPass() throws {
        let verdict = Self.judge(["before": 412, "after": 408, "settle_ms": 30])
        #expect(verdict.status == .pass)
        let check = try #require(verdict.checks.first { $0.name == "page tables freed after the test" })
        #expect(check.passed && check.source == "host")
        #expect(check.detail == "PageTables 412 → 408 kB after 30 ms (a leak is over 48 kB)")
        // The 44 kB a boot's first processes leave to the kernel is not a leak.
        #expect(Self.judge(["before": 28, "after": 72, "settle_ms": 1000]).status == .pass)
    }

    /// A PMD table left behind in each of twenty cycles by a share count that went wrong.
    @Test func tablesLeftBehindFailTheCell() throws {
        let verdict = Self.judge(["before": 412, "after": 492, "settle_ms": 1000])
        #expect(verdict.status == .fail)
        let check = try #require(verdict.checks.first { $0.name == "page tables freed after the test" })
        #expect(!check.passed)
        #expect(check.detail == "PageTables 412 → 492 kB: 80 kB (20 tables of 4 KiB) still allocated after 1000 ms once the test had exited, more than the kernel's own 48 kB")
        #expect(verdict.reason?.contains("page tables freed after the test") == true, "\(verdict.reason ?? "nil")")
    }

    @Test func unreadableOrAbsentCountsMakeNoCheck() {
        for counts: [String: Any] in [["before": NSNull(), "after": 416], ["before": -4, "after": 0]] {
            let verdict = Self.judge(counts)
            #expect(verdict.status == .pass)
            #expect(!verdict.checks.contains { $0.name.hasPrefix("page tables") })
        }
        let old = SyntheticGuest.judge([SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.done])
        #expect(!old.checks.contains { $0.name.hasPrefix("page tables") })
    }
}
