import Foundation
import Testing
@testable import ShootdownCore

@Suite struct HTMLReportTests {
    static func report(_ name: String) throws -> RunReport {
        let data = try Data(contentsOf: Fixture.directory.appendingPathComponent("reports/\(name)"))
        return try JSONDecoder().decode(RunReport.self, from: data)
    }

    /// The `<svg …>…</svg>` elements of a page, each as its text.
    static func svgs(_ html: String) -> [String] {
        html.components(separatedBy: "<svg ").dropFirst().map { "<svg " + $0.components(separatedBy: "</svg>")[0] }
    }

    /// The text of the x tick labels in one plot.
    static func xTickLabels(_ svg: String) -> [String] {
        svg.components(separatedBy: "<text class=\"xtick\"").dropFirst().map {
            String($0.drop { $0 != ">" }.dropFirst().prefix { $0 != "<" })
        }
    }

    /// Metrics a page plots per axis: the headline ones, and any that scales in some group.
    static func plotted(_ report: RunReport) -> [(axis: String, metric: String)] {
        let linear = Set(report.sweeps.filter { $0.verdict.scaling == .linear }.map { "\($0.axis)|\($0.metric)" })
        let keys = report.sweeps.map { "\($0.axis)|\($0.metric)" }
            .filter { key in HTMLReport.headlineMetrics.contains { key.hasSuffix("|" + $0) } || linear.contains(key) }
        return HTMLReport.firstAppearance(keys).map { key in
            let parts = key.split(separator: "|", maxSplits: 1).map(String.init)
            return (parts[0], parts[1])
        }
    }

    @Test func mixedRunMatchesGolden() throws {
        GoldenFile.check(HTMLReport.render(try Self.report("mixed-8-cells.json")), "report-mixed.html")
    }

    @Test func pageIsSelfContainedAndDeterministic() throws {
        let report = try Self.report("mixed-8-cells.json")
        let html = HTMLReport.render(report)
        #expect(html == HTMLReport.render(report))
        #expect(!html.contains("<script"))
        #expect(!html.contains("src="))
        #expect(!html.contains("<link"))
        #expect(!html.contains("url("))
    }

    @Test func guestTextIsEscaped() throws {
        var report = try Self.report("mixed-8-cells.json")
        let failed = try #require(report.cells.firstIndex { $0.status == .fail })
        report.cells[failed].reason = "<script>alert(1)</script> & \"quoted\""
        report.cells[failed].cell.id = "gib2\"><img src=x onerror=alert(2)>"
        report.cells[failed].splats[0].excerpt = "</pre><script>evil()</script>\u{1b}[0m"
        let html = HTMLReport.render(report)
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;"))
        #expect(html.contains("title=\"gib2&quot;&gt;&lt;img src=x onerror=alert(2)&gt;\""))
        #expect(html.contains("&lt;/pre&gt;&lt;script&gt;evil()&lt;/script&gt;\u{FFFD}[0m"))
    }

    @Test func failuresComeFirstWithTheirEvidence() throws {
        let html = HTMLReport.render(try Self.report("mixed-8-cells.json"))
        let failures = try #require(html.range(of: "id=\"failures\"")), grid = try #require(html.range(of: "id=\"grid\""))
        #expect(failures.lowerBound < grid.lowerBound)
        let section = String(html[failures.lowerBound..<grid.lowerBound])
        #expect(section.contains("<pre>WARNING: CPU: 1 PID: 88 at mm/hugetlb.c:5012 huge_pmd_unshare+0x1c/0x90\nModules linked in:"))
        #expect(section.contains("console tail:"))
        #expect(section.contains("Booting Linux on physical CPU"))
        #expect(section.range(of: "s-FAIL")!.lowerBound < section.range(of: "s-ERROR")!.lowerBound)
    }

    /// One plot per axis and metric, one line per group, the swept values on the x axis.
    @Test func everyPlottedMetricHasOneLinePerGroup() throws {
        let report = try Self.report("sweep-6-pass.json")
        let svgs = Self.svgs(HTMLReport.render(report))
        let shown = Self.plotted(report)
        #expect(Set(shown.map(\.metric)) == ["probe:tlb_remove_table_smp_sync", "probe:tlb_remove_table_sync_one", "probe:huge_pmd_share", "ipi:CAL", "ipi:IPI1", "ipi:TLB"])
        #expect(svgs.count == shown.count)
        for (axis, metric) in shown {
            let svg = try #require(svgs.first { $0.contains("data-axis=\"\(axis)\" data-metric=\"\(metric)\"") }, "no plot for \(metric)")
            let series = report.sweeps.filter { $0.axis == axis && $0.metric == metric }
            #expect(svg.components(separatedBy: "<polyline").count - 1 == series.count, "\(metric)")
            let swept = Set(series.flatMap(\.points).map { String(Int($0.x)) })
            #expect(swept.isSubset(of: Set(Self.xTickLabels(svg))), "\(metric): \(Self.xTickLabels(svg))")
        }
        let sync = try #require(svgs.first { $0.contains("data-metric=\"probe:tlb_remove_table_sync_one\"") })
        #expect(sync.contains("constant, slope +0.000 ± 0.000 per gib (same points as aarch64)"))
        let share = try #require(svgs.first { $0.contains("data-metric=\"probe:huge_pmd_share\"") })
        #expect(share.contains("linear, slope +1.050 ± 0.000 per gib"))
    }

    /// A vCPU sweep comes out of the same cells as the gib one, and is plotted the same way.
    @Test func vcpuSweepIsPlottedAgainstVCPUs() throws {
        var cells = try Self.report("sweep-6-pass.json").cells
        for (index, vcpus) in zip(cells.indices.filter { cells[$0].cell.arch == .x86_64 }, [2, 4, 8]) {
            cells[index].cell.vcpus = vcpus
            cells[index].cell.parameters["gib"] = .int(1)
        }
        let report = RunReport(runID: "vcpus", name: "run", cells: cells, sweeps: SweepAnalysis.series(cells))
        #expect(report.sweeps.contains { $0.axis == "vcpus" })
        let svg = try #require(Self.svgs(HTMLReport.render(report)).first { $0.contains("data-axis=\"vcpus\" data-metric=\"ipi:CAL\"") })
        #expect(Self.xTickLabels(svg) == ["2", "4", "8"])
        #expect(svg.contains(">vCPUs</text>"))
        #expect(svg.components(separatedBy: "<polyline").count == 2)
    }

    @Test func niceTicksRoundToOneTwoFive() {
        #expect(HTMLReport.LinePlot.niceTicks(0, 4.2) == [0, 1, 2, 3, 4, 5])
        #expect(HTMLReport.LinePlot.niceTicks(0, 1).map(HTMLReport.LinePlot.label) == ["0", "0.2", "0.4", "0.6", "0.8", "1"])
        #expect(HTMLReport.LinePlot.niceTicks(0, 0).map(HTMLReport.LinePlot.label) == ["0", "0.2", "0.4", "0.6", "0.8", "1"])
        #expect(HTMLReport.LinePlot.niceTicks(0, 9.5) == [0, 2, 4, 6, 8, 10])
        #expect(HTMLReport.LinePlot.niceTicks(0, 64) == [0, 20, 40, 60, 80])
    }
}
