import Testing
@testable import ShootdownCore

@Suite struct TAPReportTests {
    @Test func parsesResultsDirectivesAndMetrics() {
        let report = TAPReport.parse("""
            TAP version 13
            1..3
            # metric ops=20
            # metric shared_hugetlb_kb=4096
            ok 1 - data integrity
            not ok 2 pool back to baseline
            ok 3 sharing # SKIP no smaps
            # Totals: pass:1 fail:1
            """)
        #expect(report.planned == 3)
        #expect(report.results.map(\.ok) == [true, false, true])
        #expect(report.results[0].description == "data integrity")
        #expect(report.results[2].skip == "no smaps")
        #expect(report.metric("ops") == 20)
        #expect(report.metric("shared_hugetlb_kb") == 4096)
        #expect(report.diagnostics == ["Totals: pass:1 fail:1"])
    }

    @Test func planSkip() {
        let report = TAPReport.parse("TAP version 13\n1..0 # SKIP hugetlb pool too small (need 24, have 3)\n")
        #expect(report.planned == 0)
        #expect(report.planSkip == "hugetlb pool too small (need 24, have 3)")
    }
}
