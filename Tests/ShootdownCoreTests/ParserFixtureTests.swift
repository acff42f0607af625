import Foundation
import Testing
@testable import ShootdownCore

/// Parsers against real captures from Debian 6.1 and 6.12 guests (Fixtures/README.md).
@Suite struct InterruptTableFixtureTests {
    static let captures: [(file: String, cpus: Int, ipis: [String])] = [
        ("x86_64-1cpu-6.12.txt", 1, ["IWI", "RES", "CAL", "TLB"]),
        ("x86_64-3cpu-6.1.txt", 3, ["IWI", "RES", "CAL", "TLB"]),
        ("x86_64-4cpu-6.12.txt", 4, ["IWI", "RES", "CAL", "TLB"]),
        ("x86_64-8cpu-6.12.txt", 8, ["IWI", "RES", "CAL", "TLB"]),
        ("aarch64-1cpu-6.12.txt", 1, (0...7).map { "IPI\($0)" }),
        ("aarch64-3cpu-6.1.txt", 3, (0...6).map { "IPI\($0)" }),
        ("aarch64-4cpu-6.12.txt", 4, (0...7).map { "IPI\($0)" }),
        ("aarch64-8cpu-6.12.txt", 8, (0...7).map { "IPI\($0)" }),
    ]

    @Test(arguments: captures.indices)
    func parsesEveryRowWithOneCountPerCPU(index: Int) throws {
        let capture = Self.captures[index]
        let table = try #require(InterruptTable.parse(try Fixture.text("interrupts/\(capture.file)")))
        #expect(table.cpus == capture.cpus)
        for name in capture.ipis {
            let row = try #require(table.row(name), "\(capture.file): no \(name) row")
            #expect(row.counts.count == capture.cpus, "\(capture.file) \(name)")
            #expect(!row.description.isEmpty)
        }
        // Rows with one global count (x86 ERR/MIS, arm64 Err) keep exactly that count.
        for single in ["ERR", "MIS", "Err"] {
            if let row = table.row(single) { #expect(row.counts.count == 1) }
        }
        // MSI rows: the counts stop at the CPU columns; numbers in the chip name stay text.
        for row in table.rows where row.description.contains("MSI") {
            #expect(row.counts.count == capture.cpus)
        }
    }

    @Test func arm64IPINamesDifferByKernel() throws {
        let new = try #require(InterruptTable.parse(try Fixture.text("interrupts/aarch64-4cpu-6.12.txt")))
        let old = try #require(InterruptTable.parse(try Fixture.text("interrupts/aarch64-3cpu-6.1.txt")))
        #expect(new.row("IPI1")?.description == "Function call interrupts")
        #expect(new.row("IPI7")?.description == "KGDB roundup interrupts")
        #expect(old.row("IPI7") == nil)
        #expect(old.row("IPI1")?.description == "Function call interrupts")
    }

    @Test func x86DeltasCountTheShootdowns() throws {
        let before = try #require(InterruptTable.parse(try Fixture.text("interrupts/x86_64-4cpu-6.12-before.txt")))
        let after = try #require(InterruptTable.parse(try Fixture.text("interrupts/x86_64-4cpu-6.12-after.txt")))
        let deltas = try IPIAccounting.deltas(before: before, after: after, operations: 3000)
        let tlb = try #require(deltas.first { $0.name == "TLB" })
        #expect(tlb.perCPU.count == 4)
        #expect(tlb.total == zip(after.row("TLB")!.counts, before.row("TLB")!.counts).map { $0 - $1 }.reduce(0, +))
        #expect(tlb.total > 10_000)
        #expect(tlb.perOperation == Double(tlb.total) / 3000)
        #expect(deltas.map(\.name).contains("CAL"))
        #expect(!deltas.map(\.name).contains("LOC"))
        #expect(!deltas.map(\.name).contains("PMI"))
    }

    @Test func arm64DeltasNameEveryIPIRow() throws {
        let before = try #require(InterruptTable.parse(try Fixture.text("interrupts/aarch64-4cpu-6.12-before.txt")))
        let after = try #require(InterruptTable.parse(try Fixture.text("interrupts/aarch64-4cpu-6.12-after.txt")))
        let deltas = try IPIAccounting.deltas(before: before, after: after, operations: nil)
        #expect(deltas.map(\.name) == (0...7).map { "IPI\($0)" })
        #expect((deltas.first { $0.name == "IPI0" }?.total ?? 0) > 0)
        #expect(deltas.allSatisfy { $0.perOperation == nil })
    }

    @Test func missingRowsAndTruncationAreTolerated() throws {
        let full = try Fixture.text("interrupts/x86_64-4cpu-6.12.txt")
        let cut = String(full.prefix(full.count * 2 / 3))
        let table = try #require(InterruptTable.parse(cut))
        #expect(table.cpus == 4)
        let before = try #require(InterruptTable.parse(cut))
        let after = try #require(InterruptTable.parse(full))
        // A row absent before (cut off) counts from zero instead of disappearing.
        let deltas = try IPIAccounting.deltas(before: before, after: after, operations: nil)
        #expect(deltas.map(\.name).contains("TLB"))
        #expect(InterruptTable.parse("garbage\nmore garbage\n") == nil)
    }
}

@Suite struct KprobeProfileFixtureTests {
    @Test(arguments: ["x86_64-6.12", "aarch64-6.12"])
    func hitsGrowBetweenSnapshots(capture: String) throws {
        let before = KprobeProfile.parse(try Fixture.text("kprobes/\(capture)-before.txt"))
        let after = KprobeProfile.parse(try Fixture.text("kprobes/\(capture).txt"))
        #expect(after.entry("tlb_remove_table_sync_one") != nil)
        let deltas = try ProbeDelta.deltas(before: before, after: after,
                                       symbols: ["tlb_remove_table_sync_one", "smp_call_function_many_cond", "no_such_symbol"],
                                       operations: 8)
        #expect(deltas.map(\.symbol) == ["tlb_remove_table_sync_one", "smp_call_function_many_cond"])
        #expect(deltas[0].hits == 8)
        #expect(deltas[0].perOperation == 1)
    }

    @Test func olderKernelSameFormat() throws {
        for capture in ["x86_64-6.1", "aarch64-6.1"] {
            #expect(!KprobeProfile.parse(try Fixture.text("kprobes/\(capture).txt")).entries.isEmpty)
        }
    }

    @Test func sanitisedEventNames() {
        #expect(KprobeEventName.sanitized("__huge_pmd_unshare.constprop.0.isra.0") == "__huge_pmd_unshare_constprop_0_isra_0")
    }
}

@Suite struct SplatFixtureTests {
    static let expectations: [(file: String, kinds: [String], title: String?)] = [
        ("x86_64-clean-boot-6.12.log", [], nil),
        ("aarch64-clean-boot-6.12.log", [], nil),
        ("x86_64-oops-panic-6.12.log", ["bug", "oops", "panic"], "BUG: kernel NULL pointer dereference, address: 0000000000000000"),
        ("aarch64-oops-panic-6.12.log", ["oops", "oops", "panic"], "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000"),
        ("x86_64-warning-6.12.log", ["warning"], nil),
        ("aarch64-warning-6.12.log", ["warning"], nil),
        ("x86_64-bad-page-state-6.12.log", ["bad-page"], "BUG: Bad page state in process insmod  pfn:02cd3"),
        ("x86_64-bug-oops-nopanic-6.12.log", ["bug", "oops"], nil),
        ("x86_64-oops-int3-tcg-6.12.log", ["oops", "oops", "panic"], "Oops: int3: 0000 [#1] PREEMPT SMP NOPTI"),
        ("x86_64-sysrq-panic-6.12.log", ["panic"], "Kernel panic - not syncing: sysrq triggered crash"),
        ("aarch64-sysrq-panic-6.12.log", ["panic"], nil),
        ("x86_64-vmalloc-warn-alloc-6.12.log", ["alloc-failure"], nil),
        ("x86_64-truncated.log", ["bug", "oops"], nil),
    ]

    @Test(arguments: expectations.indices)
    func findsTheRealSplats(index: Int) throws {
        let expectation = Self.expectations[index]
        let splats = SplatScanner.scan(try Fixture.text("console/\(expectation.file)"))
        #expect(splats.map(\.kind) == expectation.kinds, "\(expectation.file): \(splats.map(\.title))")
        if let title = expectation.title { #expect(splats.first?.title == title) }
        for splat in splats {
            #expect(!splat.title.contains("\r"))
            #expect(!splat.title.hasPrefix("["))
            #expect(splat.excerpt.hasPrefix(splat.title))
        }
    }

    @Test func warningExcerptRunsToItsEndMarker() throws {
        let splat = try #require(SplatScanner.scan(try Fixture.text("console/x86_64-warning-6.12.log")).first)
        #expect(splat.title.hasPrefix("WARNING: CPU: 1 PID: 155 at"))
        #expect(splat.excerpt.contains("Call Trace:"))
        #expect(splat.excerpt.hasSuffix("---[ end trace 0000000000000000 ]---"))
    }

    @Test func kmsgRecordsAreScannedToo() throws {
        let kmsg = try Fixture.text("kmsg/x86_64-6.12-full.txt")
        #expect(SplatScanner.scan(kmsg).isEmpty)
        let withWarning = kmsg + "4,999,5000000,-;WARNING: CPU: 0 PID: 1 at mm/hugetlb.c:1 x+0x0/0x0\n"
        #expect(SplatScanner.scan(withWarning).map(\.kind) == ["warning"])
    }

    /// The host must call a crashed guest FAIL with the splat, not ERROR, even with no records.
    @Test func crashedGuestIsFailWithItsSplat() throws {
        let console = try Fixture.text("console/x86_64-oops-int3-tcg-6.12.log")
        let verdict = VerdictBuilder.judge(.init(testID: "test", operation: "x", probes: [], console: console,
                                                 records: GuestRecords(), timedOut: false, startError: nil,
                                                 wall: .seconds(3), timeoutSeconds: 60))
        #expect(verdict.status == .fail)
        #expect(verdict.reason == "kernel splat: Oops: int3: 0000 [#1] PREEMPT SMP NOPTI")
        #expect(verdict.consoleTail != nil)
    }
}
