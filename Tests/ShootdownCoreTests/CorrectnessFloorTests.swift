import Foundation
import Testing
import Yams
@testable import ShootdownCore

/// Figures a fix requires: the manifests' `required_for: correctness` floors, the shipped
/// specs' two-sided bounds, and compare naming a fall below a floor for what it is.
@Suite struct CorrectnessFloorTests {
    static let catalog = TemplateCatalog(resources: Repository.root)

    static func recorded(_ name: String) throws -> RunReport {
        try NoisyScalingTests.recorded(name)
    }

    /// The stock recorded run, and the same run with the unshare sync edited out of its
    /// figures (see Fixtures/README.md): a kernel without 1013af4f58.
    static func stockAndWithoutSync() throws -> (stock: RunReport, noSync: RunReport) {
        let stock = try recorded("sweep-6-pass.json"), noSync = try recorded("edited-no-unshare-sync-from-sweep-6-pass.json")
        return (RunReport(runID: stock.runID, name: stock.name, cells: stock.cells, sweeps: SweepAnalysis.series(stock.cells)),
                RunReport(runID: noSync.runID, name: noSync.name, cells: noSync.cells, sweeps: SweepAnalysis.series(noSync.cells)))
    }

    static func syncFloor(_ test: String) throws -> ProbeCheck {
        try #require(catalog.template(named: test).manifest.probeChecks.first { $0.requiredFor == .correctness })
    }

    /// Only the exit that leaves the table exclusive must sync, so the floor per operation
    /// follows the parameters: one per cycle of `children` fork+exits, one per round of `sharers` unshares.
    @Test func floorsFollowTheParameters() throws {
        let forkExit = try Self.syncFloor("hugetlb-share-fork-exit")
        #expect(forkExit.probe == "tlb_remove_table_sync_one" && forkExit.minExpression == "1/children")
        #expect(forkExit.minPerOp == 1)  // the manifest's default, children=1
        #expect(forkExit.why?.contains("1013af4f58") == true)
        #expect(forkExit.resolved(["children": .int(8), "gib": .int(4)]).minPerOp == 0.125)
        let unshare = try Self.syncFloor("gup-pin-unshare")
        #expect(unshare.minPerOp == 0.5)
        #expect(unshare.resolved(["sharers": .int(4)]).minPerOp == 0.25)
        // What the guest run is judged against is resolved for the instance.
        let template = try Self.catalog.template(named: "hugetlb-share-fork-exit")
        let instance = try #require(template.instances(overrides: ["children=8"]).first)
        let rendered = try TemplateRenderer.render(template, instance)
        #expect(rendered.probeChecks.first { $0.requiredFor == .correctness }?.minPerOp == 0.125)
    }

    @Test func manifestFloorsAreChecked() throws {
        func load(_ checks: String) throws -> TemplateManifest {
            let yaml = """
                name: t
                summary: s
                description: d
                operation: op
                hugepages: "0"
                probes: [tlb_remove_table_sync_one]
                probe_checks:
                \(checks)
                parameters:
                  - {name: children, type: int, default: 2, help: h}
                """
            let manifest = try YAMLDecoder().decode(TemplateManifest.self, from: yaml)
            try manifest.checkConsistency()
            return manifest
        }
        #expect(try load("  - {probe: tlb_remove_table_sync_one, min_per_op: 1/children, name: n, required_for: correctness, why: w}")
            .probeChecks[0].minPerOp == 0.5)
        #expect(throws: ShootdownError.self) {
            try load("  - {probe: tlb_remove_table_sync_one, min_per_op: 1/childs, name: n}")
        }
        #expect(throws: ShootdownError.self) {
            try load("  - {probe: tlb_remove_table_sync_one, min_per_op: 1, name: n, required_for: correctness}")
        }
        #expect(throws: (any Error).self) {
            try load("  - {probe: tlb_remove_table_sync_one, min_per_op: 1, name: n, required_for: speed, why: w}")
        }
    }

    /// Every shipped spec that runs hugetlb-share-fork-exit or gup-pin-unshare bounds the
    /// sync from both sides.
    @Test(arguments: ["nightly", "repro-hugetlb-ipi-storm", "small-matrix"])
    func shippedSpecsBoundTheSyncBothWays(_ name: String) throws {
        let spec = try MatrixSpec.load(Repository.root.appendingPathComponent("ci/\(name).yaml"), catalog: Self.catalog)
        for test in spec.tests where ["hugetlb-share-fork-exit", "gup-pin-unshare"].contains(test.name) {
            let bounds = (spec.expectations + test.expectations).compactMap { scoped -> (Double?, Double?)? in
                guard case .metric("probe:tlb_remove_table_sync_one", let min, let max) = scoped.rule,
                      scoped.test == nil || scoped.test == test.name else { return nil }
                return (min, max)
            }
            #expect(bounds.contains { $0.0 != nil && $0.1 != nil }, "\(name): \(test.name) has \(bounds)")
        }
    }

    static func nightlyRules(for test: String) throws -> [ScopedExpectation] {
        let spec = try MatrixSpec.load(Repository.root.appendingPathComponent("ci/nightly.yaml"), catalog: catalog)
        return spec.expectations + spec.tests.filter { $0.name == test }.flatMap(\.expectations)
    }

    @Test func stockRunMeetsTheNightlyAndTheFloors() throws {
        let (stock, _) = try Self.stockAndWithoutSync()
        let rules = try Self.nightlyRules(for: "hugetlb-share-fork-exit")
        let floor = try Self.syncFloor("hugetlb-share-fork-exit")
        for cell in stock.cells {
            let outcomes = ExpectationCheck.evaluate(rules, cell: cell)
            #expect(outcomes.count == 2 && outcomes.allSatisfy(\.met), "\(cell.cell.id): \(outcomes)")
            let registrations = cell.guest?.probes ?? []
            #expect(VerdictBuilder.probeCheck(floor.resolved(cell.cell.parameters), counters: cell.counters!, registrations: registrations).passed)
        }
        let sweepOutcomes = ExpectationCheck.evaluate(rules, sweeps: stock.sweeps, cells: stock.cells)
        #expect(!sweepOutcomes.isEmpty && sweepOutcomes.allSatisfy(\.met), "\(sweepOutcomes)")
    }

    /// sync-entered 0.00 per fork+exit passed the nightly while it had only `max: 1.5`.
    @Test func aKernelWithoutTheSyncFailsTheNightly() throws {
        let (_, noSync) = try Self.stockAndWithoutSync()
        let rules = try Self.nightlyRules(for: "hugetlb-share-fork-exit")
        let floor = try Self.syncFloor("hugetlb-share-fork-exit")
        for cell in noSync.cells {
            let unmet = ExpectationCheck.evaluate(rules, cell: cell).filter { !$0.met }
            #expect(unmet.map(\.rule) == ["probe:tlb_remove_table_sync_one per op >= 1 and <= 1.5 (test hugetlb-share-fork-exit)"],
                    "\(cell.cell.id): \(unmet)")
            #expect(unmet.first?.detail == "0.000 per fork-exit")
            let check = VerdictBuilder.probeCheck(floor.resolved(cell.cell.parameters), counters: cell.counters!, registrations: cell.guest?.probes ?? [])
            #expect(!check.passed && check.detail == "0.00 per fork-exit, need ≥ 1.00")
        }
    }

    /// Without the floors the drop reads as it did on the measured kernel: fewer CAL/IPI1,
    /// an "improvement". With them it is a correctness regression, and it gates.
    @Test func compareCallsTheMissingSyncACorrectnessRegression() throws {
        let (stock, noSync) = try Self.stockAndWithoutSync()
        let blind = Comparison(a: stock, b: noSync)
        #expect(blind.regressions == 0)
        #expect(blind.cells.allSatisfy { $0.change == .improvement }, "\(blind.text)")

        let required = Comparison.requiredChecks(Self.catalog, tests: ["hugetlb-share-fork-exit"])
        let comparison = Comparison(a: stock, b: noSync, required: required)
        #expect(comparison.cells.count == 6)
        #expect(comparison.cells.allSatisfy { $0.change == .correctnessRegression }, "\(comparison.text)")
        let note = try #require(comparison.cells.first?.note)
        #expect(note.hasPrefix("correctness: sync-entered 1.00 → 0.00 per fork-exit, below its floor 1.00 (1013af4f58: "))
        let sync = try #require(comparison.cells.first?.metrics.first { $0.metric == "probe:tlb_remove_table_sync_one" })
        #expect(sync.change == .correctnessRegression)
        #expect(comparison.regressions == 6 && comparison.correctnessRegressions == 6)
        #expect(comparison.text.contains("cells: 6 correctness regression"))
        #expect(comparison.text.contains("  CORRECTNESS REGRESSION x86_64 tcg pv-default 4cpu hugetlb-share-fork-exit children=1 cycles=20 fault=none gib=1 touch=8: correctness: sync-entered"))
        #expect(comparison.text.contains("verdict: 6 regression(s), 6 of them correctness regression(s)"))

        // Restoring the sync is no regression, though CAL/IPI1 rise with it.
        let restored = Comparison(a: noSync, b: stock, required: required)
        #expect(restored.regressions == 0, "\(restored.text)")
        #expect(restored.cells.allSatisfy { $0.change == .improvement && $0.note.hasPrefix("correctness restored: sync-entered 0.00 → 1.00") })
        #expect(Comparison(a: noSync, b: stock).regressions == 6)  // what it would read as without the floors
    }

    /// A B cell that the floor already failed at run time is named the same way, not only "new FAIL".
    @Test func aFloorThatFailedTheCellIsStillACorrectnessRegression() throws {
        let (stock, noSync) = try Self.stockAndWithoutSync()
        var cells = noSync.cells
        cells[0].status = .fail
        cells[0].reason = "check failed: a GUP-fast sync where a PMD table became exclusive (0.00 per fork-exit, need ≥ 1.00)"
        let b = RunReport(runID: "b", name: "run", cells: cells, sweeps: SweepAnalysis.series(cells))
        let comparison = Comparison(a: stock, b: b, required: Comparison.requiredChecks(Self.catalog, tests: ["hugetlb-share-fork-exit"]))
        let first = try #require(comparison.cells.first { $0.key.contains("x86_64") && $0.key.contains("gib=1 ") })
        #expect(first.change == .correctnessRegression)
        #expect(first.note.hasSuffix("; new FAIL"), "\(first.note)")
    }

    /// Eight children per cycle: 1/8 per fork+exit meets the floor, 0 does not; a cell of
    /// another test is not judged by this test's floor.
    @Test func theFloorIsPerCellParameters() throws {
        let required = Comparison.requiredChecks(Self.catalog, tests: ["hugetlb-share-fork-exit", "madv-collapse"])
        #expect(required.keys.sorted() == ["hugetlb-share-fork-exit"])
        func cell(sync: Double, kernel: String) -> CellResult {
            var result = CompareTests.cell(kernel: kernel, sync: sync, cal: 6)
            result.cell.parameters["children"] = .int(8)
            return result
        }
        let a = CompareTests.report([cell(sync: 0.125, kernel: "a")], id: "a")
        #expect(Comparison(a: a, b: CompareTests.report([cell(sync: 0.125, kernel: "b")], id: "b"), required: required).regressions == 0)
        let broken = Comparison(a: a, b: CompareTests.report([cell(sync: 0, kernel: "b")], id: "b"), required: required)
        #expect(broken.cells.first?.change == .correctnessRegression)
        #expect(broken.cells.first?.note.contains("0.12 → 0.00 per fork-exit, below its floor") == true, "\(broken.cells.first?.note ?? "")")
    }
}
