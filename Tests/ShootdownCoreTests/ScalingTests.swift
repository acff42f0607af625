import Foundation
import Testing
@testable import ShootdownCore

@Suite struct ScalingTests {
    @Test func exactLineHasZeroError() throws {
        let fit = try #require(LinearFit([(1, 3), (2, 5), (3, 7), (4, 9)]))
        #expect(abs(fit.slope - 2) < 1e-12)
        #expect(abs(fit.intercept - 1) < 1e-12)
        #expect(fit.slopeStandardError.map { $0 < 1e-12 } == true)
    }

    @Test func knownStandardError() throws {
        // y = x with residuals +1, -1, +1, -1 at x = 0..3: slope 0.6, SE² = (Σr²/(n−2))/Sxx.
        let fit = try #require(LinearFit([(0, 1), (1, 0), (2, 3), (3, 2)]))
        #expect(abs(fit.slope - 0.6) < 1e-12)
        let residuals = [(0.0, 1.0), (1, 0), (2, 3), (3, 2)].map { $0.1 - (fit.intercept + 0.6 * $0.0) }
        let expected = ((residuals.map { $0 * $0 }.reduce(0, +) / 2) / 5).squareRoot()
        #expect(abs(fit.slopeStandardError! - expected) < 1e-12)
    }

    @Test func degenerateInputsHaveNoFit() {
        #expect(LinearFit([(1, 1)]) == nil)
        #expect(LinearFit([(2, 1), (2, 5)]) == nil)
    }

    /// The 8ce720d5bd kernel: one sync broadcast per fork+exit whatever the size.
    @Test func batchedSyncsAreConstant() throws {
        let verdict = try #require(ScalingVerdict.classify([(1, 1.0), (4, 1.05), (16, 0.95), (64, 1.0)]))
        #expect(verdict.scaling == .constant)
    }

    /// The 1013af4f58-only kernel: one broadcast per shared PMD table, i.e. per GiB.
    @Test func perTableSyncsAreLinear() throws {
        let verdict = try #require(ScalingVerdict.classify([(1, 1.0), (4, 4.1), (16, 15.8), (64, 64.2)]))
        #expect(verdict.scaling == .linear)
        #expect(abs(verdict.fit.slope - 1) < 0.02)
        #expect(verdict.fit.slopeStandardError! < 0.05)
    }

    /// ±25% around 7 over five values: no trend, but too noisy to promise "flat" either.
    @Test func noiseWithoutTrendIsUndecided() throws {
        let verdict = try #require(ScalingVerdict.classify([(1, 6.0), (2, 9.0), (3, 5.5), (4, 8.5), (5, 6.2)]))
        #expect(verdict.scaling == .undecided)
        #expect(verdict.reason?.hasSuffix("too noisy to tell") == true)
    }

    /// Two points fit a line exactly, so they cannot tell a line from a constant.
    @Test func twoPointsAreUndecided() throws {
        for points in [[(1.0, 1.0), (2, 2.0)], [(1, 1.0), (2, 1.1)], [(1, 0.05), (2, 0.3)]] {
            let verdict = try #require(ScalingVerdict.classify(points))
            #expect(verdict.scaling == .undecided)
            #expect(verdict.reason == "2 swept values; a line needs at least 3 to be told from a constant")
        }
    }
}

@Suite struct SweepAnalysisTests {
    static func result(gib: Int, vcpus: Int = 4, arch: Arch = .x86_64, syncPerOp: Double, cal: Double,
                       status: CellStatus = .pass) -> CellResult {
        let descriptor = CellDescriptor(id: "\(arch)-gib\(gib)-\(vcpus)", arch: arch, kernel: "debian:6.12.117", kernelVersion: "6.12.117",
                                        kernelOrigin: "test", accel: .tcg, paravirt: "default", vcpus: vcpus, memoryMiB: 1024,
                                        test: "hugetlb-share-fork-exit",
                                        parameters: ["gib": .int(gib), "children": .int(1), "fault": .choice("none")])
        let counters = CellCounters(operation: "fork-exit", operations: 20,
                                    ipis: [IPIDelta(name: "CAL", description: "Function call interrupts", perCPU: [], total: Int(cal * 20), perOperation: cal)],
                                    probes: [ProbeDelta(symbol: "tlb_remove_table_sync_one", hits: Int(syncPerOp * 20), missed: 0, perOperation: syncPerOp)])
        return CellResult(cell: descriptor, status: status, reason: nil, checks: [], counters: counters, metrics: [:],
                          splats: [], guest: nil, timings: CellTimings(totalSeconds: 1))
    }

    @Test func findsTheGibSweepPerArchAndClassifiesEachMetric() throws {
        let results = [1, 2, 4, 8].flatMap { gib in
            [Self.result(gib: gib, syncPerOp: Double(gib), cal: 6),
             Self.result(gib: gib, arch: .aarch64, syncPerOp: 1, cal: 6)]
        }
        let series = SweepAnalysis.series(results)
        #expect(Set(series.map(\.axis)) == ["gib"])
        #expect(series.count == 4)
        let x86Sync = try #require(series.first { $0.group.hasPrefix("x86_64") && $0.metric == "probe:tlb_remove_table_sync_one" })
        #expect(x86Sync.verdict.scaling == .linear)
        #expect(x86Sync.points.map(\.x) == [1, 2, 4, 8])
        let armSync = try #require(series.first { $0.group.hasPrefix("aarch64") && $0.metric == "probe:tlb_remove_table_sync_one" })
        #expect(armSync.verdict.scaling == .constant)
        let text = TerminalReport.render(results, sweeps: series)
        #expect(text.contains("scaling over gib (1, 2, 4, 8)"))
        #expect(text.contains("sync-entered per fork-exit"))
    }

    /// Delivered sync IPIs over syncs entered, across vCPUs: vCPUs − 1 everywhere is a
    /// broadcast to all online CPUs; a fixed count is a sync that reaches only the mm's CPUs.
    /// The test's wall time per operation rides along.
    @Test(arguments: [(true, "every sync reached every other online CPU"), (false, "only the CPUs the mm ran on")])
    func syncReachOverVCPUsIsNamed(broadcast: Bool, signature: String) throws {
        let results = [2, 4, 6, 8].map { vcpus -> CellResult in
            var result = Self.result(gib: 1, vcpus: vcpus, syncPerOp: 1, cal: 6)
            let reached = broadcast ? vcpus - 1 : 1
            result.counters!.probes.append(ProbeDelta(symbol: "tlb_remove_table_smp_sync", hits: 20 * reached, missed: 0,
                                                      perOperation: Double(reached)))
            result.metrics["wall_ns"] = String(20 * 1500 * vcpus)
            return result
        }
        let series = SweepAnalysis.series(results)
        let reach = try #require(series.first { $0.metric == SweepAnalysis.reachMetric })
        #expect(reach.points.map(\.y) == (broadcast ? [1, 3, 5, 7] : [1, 1, 1, 1]))
        #expect(reach.signature?.contains(signature) == true)
        let wall = try #require(series.first { $0.metric == SweepAnalysis.wallMetric })
        #expect(wall.points.map(\.y) == [3, 6, 9, 12])
        #expect(series.filter { $0.metric != SweepAnalysis.reachMetric }.allSatisfy { $0.signature == nil })
        let text = TerminalReport.render(results, sweeps: series)
        #expect(text.contains("CPUs reached per sync") && text.contains("→ " + reach.signature!))
        #expect(text.contains("µs (test wall time) per fork-exit"))
    }

    @Test func vcpuAxisAndFailedCellsAreHandled() {
        var results = [2, 4, 8].map { Self.result(gib: 1, vcpus: $0, syncPerOp: 1, cal: Double($0)) }
        results.append(Self.result(gib: 1, vcpus: 16, syncPerOp: 1, cal: 99, status: .fail))
        let series = SweepAnalysis.series(results)
        #expect(Set(series.map(\.axis)) == ["vcpus"])
        #expect(series.allSatisfy { $0.points.count == 3 })
        #expect(SweepAnalysis.series([Self.result(gib: 1, syncPerOp: 1, cal: 1)]).isEmpty)
    }
}
