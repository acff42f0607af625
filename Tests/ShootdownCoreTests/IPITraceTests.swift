import Foundation
import Testing
@testable import ShootdownCore

/// Real captures of the agent's ipi/csd trace instance: Debian 6.12.117 under TCG, 4 vCPUs,
/// hugetlb-share-fork-exit defaults (20 fork+exit cycles, one sync broadcast each).
@Suite struct IPITraceTests {
    static func capture(_ arch: String) throws -> String {
        try String(contentsOf: ReplayWorld.fixture("ipi-trace/\(arch)-6.12.117-fork-exit.trace"), encoding: .utf8)
    }

    @Test(arguments: ["x86_64", "aarch64"])
    func theSyncBroadcastIsToldApartFromTheRest(arch: String) throws {
        let trace = IPITrace.parse(try Self.capture(arch))
        #expect(trace.windowMarked)
        #expect(trace.lost == 0)
        let senders = IPISenders(trace, operations: 20, cut: false)
        #expect(senders.scope == .measuredLoop && !senders.lowerBound)
        // The sync reaches the three other vCPUs once per fork+exit.
        #expect(senders.sender("tlb_remove_table_smp_sync")?.ipis == 60)
        #expect(senders.sender("tlb_remove_table_smp_sync")?.perOperation == 3)
        #expect(senders.sender("sched_ttwu_pending") != nil)
        let callFunction = try #require(senders.sender(IPISenders.callFunctionIPIs))
        #expect(callFunction.ipis >= 60, "every broadcast needs an IPI per CPU whose queue was empty")
        // Outside the marks there were sends too: the window is narrower than the test.
        let whole = IPISenders(IPITrace(sends: trace.sends, windowMarked: false, lost: 0), operations: 20, cut: false)
        #expect(whole.senders.map(\.ipis).reduce(0, +) > senders.senders.map(\.ipis).reduce(0, +))
    }

    @Test func cpumasksInBothFormats() {
        #expect(IPITrace.cpuCount("00000000,0000000e") == 3)
        #expect(IPITrace.cpuCount("00000001,80000000") == 2)
        #expect(IPITrace.cpuCount("1-3") == 3)
        #expect(IPITrace.cpuCount("0,2-3") == 3)
        #expect(IPITrace.cpuCount("3-1") == nil)
        #expect(IPITrace.cpuCount("zz") == nil)
        #expect(IPITrace.cpuCount("00000000") == nil)
    }

    /// The trace is guest text: lines that are not what the tracepoints print are skipped,
    /// a line cut by the agent's cap is dropped, and marks out of order mark nothing.
    @Test func hostileTraceTextCountsNothingItShouldNot() {
        let text = """
            # entries-in-buffer/entries-written: 5/9   #P:4
            garbage
            x-1 [000] d..1. 1.0: ipi_send_cpumask: cpumask=zz callsite=a+0x1/0x2 callback=b+0x0/0x1
            x-1 [000] d..1. 1.0: tracing_mark_write: shootdown-window end
            x-1 [000] d..1. 1.0: ipi_send_cpu: cpu=1 callsite=wakeup_preempt+0x3/0x7 callback=0x0
            x-1 [000] d..1. 1.0: csd_queue_cpu: cpu=2 callsite=c+0x1/0x2
            x-1 [000] d..1. 1.0: ipi_send_cpu: cpu=2 callsite=e+0x1/0x2 callback=f+0x0/0x1
            """
        let trace = IPITrace.parse(text)
        #expect(!trace.windowMarked)
        #expect(trace.lost == 4)
        #expect(trace.sends.map(\.callsite) == ["wakeup_preempt"])  // the last line has no newline: cut
        let senders = IPISenders(trace, operations: 2, cut: false)
        #expect(senders.lowerBound)
        #expect(senders.scope == .wholeTest)
        #expect(senders.senders == [.init(name: "callsite:wakeup_preempt", ipis: 1, perOperation: 0.5)])
    }

    /// From the agent's record to the cell's counters and the terminal table.
    @Test func aTestRecordsTraceReachesTheTable() throws {
        let record = SyntheticGuest.test(ipiTrace: try Self.capture("x86_64"))
        let verdict = SyntheticGuest.judge([SyntheticGuest.boot(), record, SyntheticGuest.done])
        let senders = try #require(verdict.counters?.ipiSenders)
        #expect(senders.sender("tlb_remove_table_smp_sync")?.perOperation == 3)
        let text = TerminalReport.render([SyntheticGuest.cellResult(verdict, vcpus: 4)])
        #expect(text.contains("IPIs by sender"))
        #expect(text.contains("tlb_remove_table_smp_sync 3.00"), "\(text)")
    }
}
