import Foundation
import Testing
@testable import ShootdownCore

/// Swept values read in numeric order wherever they reach a report.
@Suite struct NaturalOrderTests {
    @Test func digitRunsCompareAsNumbers() {
        #expect(["gib=32", "gib=1", "gib=8"].sorted(by: naturallyPrecedes) == ["gib=1", "gib=8", "gib=32"])
        #expect(["6.12.117", "6.1.192"].sorted(by: naturallyPrecedes) == ["6.1.192", "6.12.117"])
        #expect(["b", "a2", "a10", "a", "a1x"].sorted(by: naturallyPrecedes) == ["a", "a1x", "a2", "a10", "b"])
        #expect(!naturallyPrecedes("gib=8", "gib=8") && naturallyPrecedes("x01", "x1") != naturallyPrecedes("x1", "x01"))
    }

    /// Cells as a run folder lists them (string order: gib1, gib32, gib8), at three sizes and two child counts.
    static func cells() throws -> [CellResult] {
        let recorded = try NoisyScalingTests.recorded("sweep-6-pass.json").cells.filter { $0.cell.arch == .x86_64 }
        var cells: [CellResult] = []
        for (children, gib) in [(16, 1), (16, 32), (16, 8), (2, 1), (2, 32), (2, 8)] {
            var cell = recorded[cells.count % recorded.count]
            cell.cell.parameters["gib"] = .int(gib)
            cell.cell.parameters["children"] = .int(children)
            cell.cell.id = "x86_64-children\(children)-gib\(gib)"
            cells.append(cell)
        }
        return cells.sorted { $0.cell.id < $1.cell.id }
    }

    @Test func statusGridColumnsGoByValue() throws {
        let html = HTMLReport.grid(try Self.cells())
        let header = try #require(html.split(separator: "\n").first { $0.hasPrefix("<tr><th></th>") })
        #expect(header == "<tr><th></th><th>children=2<br>gib=1<br>4 vCPU</th><th>children=2<br>gib=8<br>4 vCPU</th><th>children=2<br>gib=32<br>4 vCPU</th>"
            + "<th>children=16<br>gib=1<br>4 vCPU</th><th>children=16<br>gib=8<br>4 vCPU</th><th>children=16<br>gib=32<br>4 vCPU</th></tr>")
    }

    @Test func plotsAndSweepsGoByValue() throws {
        let cells = try Self.cells()
        let sweeps = SweepAnalysis.series(cells)
        let gibSync = sweeps.filter { $0.axis == "gib" && $0.metric == "probe:tlb_remove_table_sync_one" }
        #expect(gibSync.map { $0.group.contains("children=2 ") } == [true, false])
        #expect(gibSync[0].points.map(\.x) == [1, 8, 32])
        // Older reports keep their stored order: the page sorts the legend itself.
        let report = RunReport(runID: "r", name: "run", cells: cells, sweeps: sweeps.reversed())
        let svg = try #require(HTMLReportTests.svgs(HTMLReport.render(report)).first {
            $0.contains("data-axis=\"gib\" data-metric=\"probe:tlb_remove_table_sync_one\"")
        })
        #expect(HTMLReportTests.xTickLabels(svg) == ["1", "8", "32"])
        let two = try #require(svg.range(of: ">children=2:<")), sixteen = try #require(svg.range(of: ">children=16:<"))
        #expect(two.lowerBound < sixteen.lowerBound)
        let text = TerminalReport.scalingSection(sweeps.reversed())
        let first = try #require(text.range(of: "children=2 ")), second = try #require(text.range(of: "children=16 "))
        #expect(first.lowerBound < second.lowerBound)
    }
}
