import Foundation
import Testing
@testable import ShootdownCore

@Suite struct MarginalCostTests {
    /// A loop-counted cell of `cycles` fork+exits whose loop cost `perOp` each plus `once`.
    static func cell(cycles: Int, repeatIndex: Int = 1, syncPerOp: Double, calPerOp: Double, calOnce: Int,
                     scope: CounterScope = .measuredLoop) -> CellResult {
        var result = SweepAnalysisTests.result(gib: 2, syncPerOp: syncPerOp, cal: 0)
        result.cell.parameters["cycles"] = .int(cycles)
        result.cell.id = "x86_64-cycles\(cycles)-r\(repeatIndex)"
        let cal = Int(calPerOp * Double(cycles)) + calOnce
        result.counters = CellCounters(operation: "fork-exit", operations: cycles,
                                       ipis: [IPIDelta(name: "CAL", description: "Function call interrupts", perCPU: [cal], total: cal,
                                                       perOperation: Double(cal) / Double(cycles))],
                                       probes: [ProbeDelta(symbol: "tlb_remove_table_sync_one", hits: Int(syncPerOp * Double(cycles)),
                                                           missed: 0, perOperation: syncPerOp)],
                                       scope: scope)
        return result
    }

    /// What the loop pays once is the intercept, not part of the per-op cost.
    @Test func theSlopeIsThePerOpCostAndTheOnceCostIsTheIntercept() throws {
        let cells = [5, 10, 20].flatMap { cycles in
            [Self.cell(cycles: cycles, syncPerOp: 1, calPerOp: 4, calOnce: 12),
             Self.cell(cycles: cycles, repeatIndex: 2, syncPerOp: 1, calPerOp: 4, calOnce: cycles == 10 ? 14 : 10)]
        }
        let fits = MarginalCost.fits(cells, metrics: ["ipi:CAL", "probe:tlb_remove_table_sync_one"])
        let sync = try #require(fits.first { $0.metric == "probe:tlb_remove_table_sync_one" })
        #expect(sync.axis == "cycles" && sync.fit.points == 6)
        #expect(abs(sync.fit.slope - 1) < 1e-9 && abs(sync.fit.intercept) < 1e-9)
        #expect(sync.margin == 0)
        let cal = try #require(fits.first { $0.metric == "ipi:CAL" })
        #expect(abs(cal.fit.slope - 4) < 0.2, "\(cal.fit)")
        #expect(abs(cal.fit.intercept - 12) < 2, "\(cal.fit)")
        let margin = try #require(cal.margin)
        #expect(margin > 0 && margin < 1)
        // The naive quotient at 5 cycles reads 6.4 CAL per op; the margin is 4.
        #expect(cells[0].counters?.ipi("CAL")?.perOperation == 6.4)
        let text = TerminalReport.render(cells)
        #expect(text.contains("marginal cost (loop totals fitted against OPS, 95% interval)"))
        #expect(text.contains("sync-entered  1.00 ± 0.00"), "\(text)")
    }

    @Test func whatDoesNotMoveTheCountOrWasNotLoopCountedIsNotFitted() {
        let wholeTest = [5, 10, 20].map { Self.cell(cycles: $0, syncPerOp: 1, calPerOp: 4, calOnce: 12, scope: .wholeTest) }
        #expect(MarginalCost.fits(wholeTest, metrics: ["ipi:CAL"]).isEmpty)
        var gibSweep = [1, 2, 4].map { gib -> CellResult in
            var cell = Self.cell(cycles: 20, syncPerOp: 1, calPerOp: 4, calOnce: 12)
            cell.cell.parameters["gib"] = .int(gib)
            cell.cell.id += "-gib\(gib)"
            return cell
        }
        #expect(MarginalCost.fits(gibSweep, metrics: ["ipi:CAL"]).isEmpty)
        gibSweep[0].status = .fail
        #expect(MarginalCost.fits(gibSweep, metrics: ["ipi:CAL"]).isEmpty)
    }
}
