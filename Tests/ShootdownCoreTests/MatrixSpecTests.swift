import Foundation
import Testing
@testable import ShootdownCore

@Suite struct MatrixSpecTests {
    static let catalog = TemplateCatalog(resources: Repository.root)

    static func parse(_ text: String) throws -> MatrixSpec {
        try MatrixSpec.parse(text, file: "spec.yaml", catalog: catalog)
    }

    @Test(arguments: ["nightly.yaml", "repro-hugetlb-ipi-storm.yaml", "small-matrix.yaml"])
    func shippedSpecsParse(file: String) throws {
        let spec = try MatrixSpec.load(Repository.root.appendingPathComponent("ci/\(file)"), catalog: Self.catalog)
        #expect(!spec.tests.isEmpty)
        #expect(!spec.expectations.isEmpty)
    }

    @Test func fullSpecParses() throws {
        let spec = try Self.parse("""
            name: demo
            kernels: [debian:6.12.117, "file:/tmp/bzImage"]
            arches: [x86_64, arm64]
            paravirt: [on, off, default]
            vcpus: [2, 4]
            memory_mib: 2048
            accel: tcg
            repeats: 3
            timeout_s: 120
            tests:
              - hugetlb-share-fork-exit
              - name: madv-collapse
                params: {pmds: [2, 8], memory: shmem}
                expect:
                  - metric: probe:tlb_remove_table_sync_one
                    max: 1.5
                    arch: x86_64
            expect:
              - status: [PASS, DONE]
              - scaling: {over: gib, metric: "probe:tlb_remove_table_sync_one", is: constant}
            """)
        #expect(spec.name == "demo")
        #expect(spec.kernels == [.debian(version: "6.12.117"), .file(path: "/tmp/bzImage")])
        #expect(spec.arches == [.x86_64, .aarch64])
        #expect(spec.paravirt == [.on, .off, nil])
        #expect(spec.vcpus == [2, 4] && spec.memoryMiB == 2048 && spec.accel == .tcg && spec.repeats == 3 && spec.timeoutSeconds == 120)
        #expect(spec.tests.map(\.name) == ["hugetlb-share-fork-exit", "madv-collapse"])
        #expect(spec.tests[1].parameters == ["pmds=2,8", "memory=shmem"])
        #expect(spec.tests[1].expectations == [ScopedExpectation(rule: .metric(name: "probe:tlb_remove_table_sync_one", min: nil, max: 1.5),
                                                                 arch: .x86_64, test: "madv-collapse")])
        #expect(spec.expectations.map(\.rule) == [.status([.pass, .done]),
                                                  .scaling(over: "gib", metric: "probe:tlb_remove_table_sync_one", is: .constant)])
    }

    @Test(arguments: [
        ("kernels: [debian]\ntests: [hugetlb-share-fork-exit]\nvcpu: 4\n", "spec.yaml:3:1: unknown key 'vcpu' in the spec; allowed here: name, libvirt_uri, kernels, arches, paravirt, vcpus, memory_mib, accel, repeats, timeout_s, config_fragments, tests, expect"),
        ("kernels: [debian, svn:linux@v6.12]\ntests: [hugetlb-share-fork-exit]\n", "spec.yaml:1:19: unknown kernel 'svn:linux@v6.12'; use debian[:VERSION] (e.g. debian:6.12.117), file:PATH, git:TREE@REF or dir:PATH"),
        ("kernels: [debian]\narches: [riscv64]\ntests: [hugetlb-share-fork-exit]\n", "spec.yaml:2:10: unknown arch 'riscv64'; use x86_64 or aarch64"),
        ("kernels: [debian]\ntests: [hugetlb-share-fork-exit]\nvcpus: [4, 0]\n", "spec.yaml:3:12: vcpus 0 is out of range 1...256"),
        ("kernels: [debian]\ntests:\n  - name: hugetlb-share-fork-exit\n    params: {gibs: 2}\n", "spec.yaml:4:14: unknown key 'gibs' in params; allowed here: gib, touch, children, cycles, fault"),
        ("kernels: [debian]\ntests:\n  - name: hugetlb-share-fork-exit\n    params: {fault: maybe}\n", "spec.yaml:4:13: hugetlb-share-fork-exit: fault must be one of none, corrupt, not 'maybe' (shootdown generate --describe hugetlb-share-fork-exit)"),
        ("kernels: [debian]\ntests: [no-such-test]\n", "spec.yaml:2:9: unknown test 'no-such-test'; available: collapse-gup-fast-race, gup-fast-unshare-race, gup-pin-unshare, hugetlb-share-fork-exit, hugetlb-shared-migrate, hugetlb-unshare-paths, madv-collapse (shootdown generate --list)"),
        ("kernels: [debian]\ntests: [hugetlb-share-fork-exit]\nexpect:\n  - metric: sync_one\n    max: 1\n", "spec.yaml:4:13: metric 'sync_one' must be probe:<symbol>, ipi:<row>, time:wall_us or reach:tlb_remove_table_sync_one (e.g. probe:tlb_remove_table_sync_one, ipi:CAL, ipi:IPI1)"),
        ("kernels: [debian]\ntests: [hugetlb-share-fork-exit]\nexpect:\n  - metric: ipi:CAL\n", "spec.yaml:4:5: a metric rule needs min:, max: or both"),
        ("kernels: [debian]\ntests: [hugetlb-share-fork-exit]\nexpect:\n  - scaling: {over: gib, is: flat}\n", "spec.yaml:4:30: scaling is 'flat'? use constant or linear"),
        ("kernels: [debian]\ntests: [hugetlb-share-fork-exit]\nexpect:\n  - status: GREEN\n", "spec.yaml:4:13: status 'GREEN' is not one of FAIL, ERROR, MISS, PASS, DONE, SKIP"),
        ("tests: [hugetlb-share-fork-exit]\n", "spec.yaml:1:1: the spec needs `kernels:` (e.g. [debian:6.12.117])"),
        ("kernels: [debian]\nconfig_fragments: [kasan.config]\ntests: [hugetlb-share-fork-exit]\n", "spec.yaml:2:20: no config fragment at "),
        ("kernels: [debian]\ntests: [hugetlb-share-fork-exit\n", "spec.yaml: not valid YAML"),
    ])
    func badSpecsSayWhereAndWhatIsAllowed(text: String, message: String) {
        do {
            _ = try Self.parse(text)
            Issue.record("accepted: \(text)")
        } catch let error as ShootdownError {
            #expect(error.description.hasPrefix(message), "\(error.description)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

@Suite struct MatrixPlanTests {
    static func context() -> ToolContext {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString)")
        return ToolContext(paths: ToolPaths(cache: scratch, results: scratch, resources: Repository.root, stage: scratch),
                           libvirtURI: "test:///default", log: { _ in })
    }

    static let request = RunRequest(kernels: [.debian(version: "6.12.117")], paravirt: [.on, .off], vcpus: [2, 4],
                                    tests: [TestSelection(name: "hugetlb-share-fork-exit", parameters: ["gib=1,2,4"])],
                                    accel: .tcg, repeats: 2)

    @Test func expandsEveryAxisInOrder() throws {
        let plan = try MatrixPlan(request: Self.request, options: ExecutionOptions(jobs: 1), context: Self.context(),
                                  catalog: TemplateCatalog(resources: Repository.root))
        #expect(plan.entries.count == 2 * 2 * 2 * 3 * 2)
        #expect(plan.entries.filter { $0.skipReason != nil }.count == 24)
        #expect(plan.entries.first?.arch == .x86_64 && plan.entries.last?.arch == .aarch64)
        // One boot per arch and vCPU count (paravirt off): its 3 gib values × 2 repeats share it.
        #expect(plan.boots.filter { plan.entries[$0[0]].boot != nil }.map(\.count) == [6, 6, 6, 6])
        #expect(abs(plan.estimatedSeconds - 4 * (1.5 + 6 * 1)) < 1e-9)
        #expect(plan.text.contains("48 cells in 4 boot(s), 1 at a time"))  // jobs: 1 was asked for
        let booted = try MatrixPlan(request: Self.request, options: ExecutionOptions(jobs: 1, fresh: .boot),
                                    context: Self.context(), catalog: TemplateCatalog(resources: Repository.root))
        #expect(abs(booted.estimatedSeconds - (2 * (5.5 + 6 * 1) + 2 * (4.5 + 6 * 1))) < 1e-9)
        let isolated = try MatrixPlan(request: Self.request, options: ExecutionOptions(jobs: 1, isolation: .cell, fresh: .boot),
                                      context: Self.context(), catalog: TemplateCatalog(resources: Repository.root))
        #expect(abs(isolated.estimatedSeconds - (12 * 6.5 + 12 * 5.5)) < 1e-9)
        #expect(isolated.text.contains("48 cells in 24 boot(s), 1 at a time"))
    }

    @Test func shardsCoverEveryCellExactlyOnce() throws {
        let catalog = TemplateCatalog(resources: Repository.root)
        let all = try MatrixPlan(request: Self.request, options: ExecutionOptions(), context: Self.context(), catalog: catalog).entries
        var seen: [MatrixPlan.Entry] = []
        for index in 1...5 {
            seen += try MatrixPlan(request: Self.request, options: ExecutionOptions(shard: (index, 5)), context: Self.context(),
                                   catalog: catalog).entries
        }
        // Each shard plans its own boots: compare the cells, not their boots.
        func cell(_ entry: MatrixPlan.Entry) -> String {
            "\(entry.kernel) \(entry.arch) \(entry.paravirt.map(\.rawValue) ?? "-") \(entry.vcpus) \(entry.parameters) \(entry.repeatIndex ?? 0)"
        }
        #expect(seen.count == all.count)
        #expect(seen.map(cell).sorted() == all.map(cell).sorted())
        #expect(throws: ShootdownError.self) { try ExecutionOptions.parseShard("5/4") }
        #expect(throws: ShootdownError.self) { try ExecutionOptions.parseShard("x") }
        #expect(try ExecutionOptions.parseShard("2/4") == (2, 4))
    }

    @Test func parallelismFollowsCPUsAndMemory() {
        #expect(ExecutionOptions.defaultJobs(cpus: 2, memoryMiB: 24_000, guestMemoryMiB: 1024) == 2)
        #expect(ExecutionOptions.defaultJobs(cpus: 16, memoryMiB: 128_000, guestMemoryMiB: 1024) == 16)
        #expect(ExecutionOptions.defaultJobs(cpus: 64, memoryMiB: 8_000, guestMemoryMiB: 1024) == 3)
        #expect(ExecutionOptions.defaultJobs(cpus: 1, memoryMiB: 512, guestMemoryMiB: 1024) == 1)
    }
}

@Suite struct ExpectationTests {
    static let sync = ScopedExpectation(rule: .metric(name: "probe:tlb_remove_table_sync_one", min: nil, max: 1.5))

    @Test func cellRules() {
        let low = SweepAnalysisTests.result(gib: 1, syncPerOp: 1.0, cal: 6)
        let high = SweepAnalysisTests.result(gib: 4, syncPerOp: 4.0, cal: 6)
        #expect(ExpectationCheck.evaluate([Self.sync], cell: low).map(\.met) == [true])
        let failed = ExpectationCheck.evaluate([Self.sync], cell: high)
        #expect(failed.map(\.met) == [false])
        #expect(failed.first?.detail == "4.000 per fork-exit")
        #expect(ExpectationCheck.evaluate([ScopedExpectation(rule: .status([.pass]))], cell: low).map(\.met) == [true])
        let missing = ScopedExpectation(rule: .metric(name: "ipi:IPI1", min: 1, max: nil))
        #expect(ExpectationCheck.evaluate([missing], cell: low).first?.detail == "ipi:IPI1 was not measured")
        // Scoped to another arch: not applied.
        #expect(ExpectationCheck.evaluate([ScopedExpectation(rule: Self.sync.rule, arch: .aarch64)], cell: high).isEmpty)
        // Skipped cells measured nothing and are not judged.
        #expect(ExpectationCheck.evaluate([Self.sync], cell: SweepAnalysisTests.result(gib: 1, syncPerOp: 9, cal: 6, status: .skip)).isEmpty)
    }

    @Test func sweepRules() {
        let results = [1, 2, 4].flatMap { gib in
            [SweepAnalysisTests.result(gib: gib, syncPerOp: Double(gib), cal: 6),
             SweepAnalysisTests.result(gib: gib, arch: .aarch64, syncPerOp: 1, cal: 6)]
        }
        let sweeps = SweepAnalysis.series(results)
        let constant = ScopedExpectation(rule: .scaling(over: "gib", metric: "probe:tlb_remove_table_sync_one", is: .constant))
        let outcomes = ExpectationCheck.evaluate([constant], sweeps: sweeps, cells: results)
        #expect(outcomes.count == 2)
        #expect(outcomes.first { $0.subject.contains("x86_64") }?.met == false)
        #expect(outcomes.first { $0.subject.contains("aarch64") }?.met == true)
        let absent = ScopedExpectation(rule: .scaling(over: "children", metric: "probe:tlb_remove_table_sync_one", is: .constant))
        #expect(ExpectationCheck.evaluate([absent], sweeps: sweeps, cells: results).map(\.met) == [false])
        let report = RunReport(runID: "r", name: "n", cells: results, sweeps: sweeps, sweepExpectations: outcomes)
        #expect(report.failed)
        #expect(TerminalReport.render(report).contains("FAIL expectation probe:tlb_remove_table_sync_one per op over gib is constant"))
    }
}
