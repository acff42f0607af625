import Foundation
import Testing
@testable import ShootdownCore

@Suite struct RunMergeTests {
    static func shard(_ root: URL, _ name: String, gibs: [Int]) throws -> URL {
        let directory = try RunDirectory.create(root: root, runID: name)
        let request = RunRequest(name: "nightly", tests: [TestSelection(name: "hugetlb-share-fork-exit", parameters: ["gib=1,2,4"])],
                                 expectations: [ScopedExpectation(rule: .scaling(over: "gib", metric: "probe:tlb_remove_table_sync_one", is: .constant))])
        try directory.writeManifest(RunManifest(request: request, cells: []))
        for gib in gibs {
            try directory.write(SweepAnalysisTests.result(gib: gib, syncPerOp: 1, cal: 6), artifacts: RunDirectory.CellArtifacts())
        }
        return directory.url
    }

    @Test func shardsMergeIntoOneRunWithSweepsAndExpectations() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("merge-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let first = try Self.shard(root, "shard1", gibs: [1, 4]), second = try Self.shard(root, "shard2", gibs: [2])
        let report = try RunMerge.merge([first, second], into: root.appendingPathComponent("merged"))
        #expect(report.cells.count == 3)
        #expect(report.name == "nightly")
        #expect(report.sweeps.contains { $0.metric == "probe:tlb_remove_table_sync_one" && $0.points.count == 3 })
        #expect(report.sweepExpectations.map(\.met) == [true])
        for file in ["results.json", "report.html", "junit.xml", "kcidb.json", "run.json"] {
            #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("merged/\(file)").path), "\(file)")
        }
    }

    @Test func overlappingRunsAreRefused() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("merge-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let first = try Self.shard(root, "a", gibs: [1]), second = try Self.shard(root, "b", gibs: [1])
        #expect(throws: ShootdownError.self) { try RunMerge.merge([first, second], into: root.appendingPathComponent("merged")) }
        #expect(throws: ShootdownError.self) { try RunMerge.merge([root.appendingPathComponent("nope")], into: root.appendingPathComponent("m2")) }
    }
}
