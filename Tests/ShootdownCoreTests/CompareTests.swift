import Foundation
import Testing
@testable import ShootdownCore

@Suite struct CompareTests {
    static func cell(gib: Int = 1, kernel: String = "6.12.117", sync: Double, cal: Double, status: CellStatus = .pass,
                     repeatIndex: Int? = nil) -> CellResult {
        var result = SweepAnalysisTests.result(gib: gib, syncPerOp: sync, cal: cal, status: status)
        result.cell.kernelVersion = kernel
        result.cell.id = "x86_64-\(kernel)-tcg-4cpu-gib\(gib)" + (repeatIndex.map { "-r\($0)" } ?? "")
        result.repeatIndex = repeatIndex
        if status != .pass { result.reason = "check failed: data integrity" }
        return result
    }

    static func report(_ cells: [CellResult], id: String) -> RunReport {
        RunReport(runID: id, name: "run", cells: cells, sweeps: SweepAnalysis.series(cells))
    }

    @Test func identicalRunsAreTheSame() {
        let a = Self.report([Self.cell(sync: 1, cal: 6)], id: "a"), b = Self.report([Self.cell(kernel: "6.12.118", sync: 1, cal: 6)], id: "b")
        let comparison = Comparison(a: a, b: b)
        #expect(comparison.cells.map(\.change) == [.same])
        #expect(comparison.regressions == 0)
        #expect(comparison.text.contains("verdict: no regression"))
    }

    /// Twice the sync broadcasts per fork+exit: the 1013af4f58-without-the-fix signature.
    @Test func moreSyncBroadcastsAreARegression() throws {
        let comparison = Comparison(a: Self.report([Self.cell(sync: 1, cal: 6)], id: "a"),
                                    b: Self.report([Self.cell(kernel: "6.12.118", sync: 2, cal: 6)], id: "b"))
        #expect(comparison.cells.first?.change == .regression)
        let sync = try #require(comparison.cells.first?.metrics.first { $0.metric == "probe:tlb_remove_table_sync_one" })
        #expect(sync.ratio == 2)
        #expect(comparison.text.contains("REGRESSION"))
        #expect(comparison.text.contains("sync-entered 1.00 → 2.00"))
    }

    /// CAL varies by a third between identical TCG runs: not a regression on its own.
    @Test func ipiNoiseWithinThresholdsIsTheSame() {
        let comparison = Comparison(a: Self.report([Self.cell(sync: 1, cal: 5.3)], id: "a"),
                                    b: Self.report([Self.cell(kernel: "x", sync: 1, cal: 7.4)], id: "b"))
        #expect(comparison.cells.first?.change == .same)
    }

    @Test func overlappingRepeatSpreadsAreTheSame() {
        let a = (1...3).map { Self.cell(sync: [1.0, 1.6, 2.0][$0 - 1], cal: 6, repeatIndex: $0) }
        let b = (1...3).map { Self.cell(kernel: "x", sync: [1.8, 2.2, 2.4][$0 - 1], cal: 6, repeatIndex: $0) }
        #expect(Comparison(a: Self.report(a, id: "a"), b: Self.report(b, id: "b")).cells.first?.change == .same)
        let apart = (1...3).map { Self.cell(kernel: "x", sync: [3.0, 3.1, 3.2][$0 - 1], cal: 6, repeatIndex: $0) }
        #expect(Comparison(a: Self.report(a, id: "a"), b: Self.report(apart, id: "b")).cells.first?.change == .regression)
    }

    @Test func statusChanges() {
        let newFail = Comparison(a: Self.report([Self.cell(sync: 1, cal: 6)], id: "a"),
                                 b: Self.report([Self.cell(kernel: "x", sync: 1, cal: 6, status: .fail)], id: "b"))
        #expect(newFail.cells.first?.change == .regression)
        #expect(newFail.cells.first?.note.hasPrefix("new FAIL") == true)
        let fixed = Comparison(a: Self.report([Self.cell(sync: 1, cal: 6, status: .fail)], id: "a"),
                               b: Self.report([Self.cell(kernel: "x", sync: 1, cal: 6)], id: "b"))
        #expect(fixed.cells.first?.change == .improvement)
        let added = Comparison(a: Self.report([], id: "a"), b: Self.report([Self.cell(sync: 1, cal: 6)], id: "b"))
        #expect(added.cells.first?.change == .added)
    }

    /// constant → linear over gib is a regression even where each cell looks fine alone.
    @Test func scalingBecomingLinearIsARegression() {
        let a = [1, 2, 4].map { Self.cell(gib: $0, sync: 1, cal: 6) }
        let b = [1, 2, 4].map { Self.cell(gib: $0, kernel: "6.12.118", sync: Double($0), cal: 6) }
        let comparison = Comparison(a: Self.report(a, id: "a"), b: Self.report(b, id: "b"))
        let sync = comparison.scaling.first { $0.metric == "probe:tlb_remove_table_sync_one" }
        #expect(sync?.a == .constant && sync?.b == .linear && sync?.change == .regression)
        #expect(comparison.regressions >= 1)
        #expect(comparison.text.contains("scaling of probe:tlb_remove_table_sync_one over gib: constant → linear"))
    }

    @Test func realRunAgainstItselfIsTheSame() throws {
        let data = try Data(contentsOf: Fixture.directory.appendingPathComponent("reports/sweep-6-pass.json"))
        let report = try JSONDecoder().decode(RunReport.self, from: data)
        let comparison = Comparison(a: report, b: report)
        #expect(comparison.regressions == 0)
        #expect(comparison.cells.count == 6)
    }
}

@Suite struct RepeatTableTests {
    @Test func repeatsShowMedianAndSpread() {
        let cells = (1...3).map { CompareTests.cell(sync: [1.0, 1.6, 2.0][$0 - 1], cal: 6, repeatIndex: $0) }
        let text = TerminalReport.render(RunReport(runID: "r", name: "run", cells: cells, sweeps: []))
        #expect(text.contains("repeats:"))
        let row = text.split(separator: "\n").first { $0.contains("sync-entered") && $0.contains("..") }
        #expect(row?.contains("1.60") == true && row?.contains("1.00..2.00") == true, "\(row ?? "no row")")
    }
}
