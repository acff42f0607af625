import Foundation
import Testing
@testable import ShootdownCore

/// The bisect driver on a synthetic git repository: each commit's "kernel" outcome is
/// the content of its file `outcome` (good, bad, unbuildable or flaky).
@Suite(.serialized) struct BisectTests {
    final class Stub: BisectStepEvaluator, @unchecked Sendable {
        var calls: [String] = []
        var failAfter: Int?
        var flakyToggle = false

        func evaluate(commit: String, tree: URL) throws -> (outcome: StepOutcome, summary: String) {
            if let failAfter, calls.count >= failAfter { throw ShootdownError.usage("interrupted") }
            calls.append(commit)
            // The commit is read from the user's tree's object store: nothing checks it out.
            let show = try? ProcessRunner().run(Command("git", ["-C", tree.path, "show", "\(commit):outcome"]), timeout: nil)
            let text = show.flatMap { $0.succeeded ? $0.stdout : nil }?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "missing"
            switch text {
            case "good": return (.good, "sync 1.00")
            case "bad": return (.bad, "sync 2.00")
            case "flaky":
                flakyToggle.toggle()
                return (flakyToggle ? .bad : .good, "flaky")
            default: return (.skip, "unbuildable")
            }
        }
    }

    static func repository(_ outcomes: [String]) throws -> (URL, [String], ToolContext) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("bisect-\(UUID().uuidString)")
        let repo = root.appendingPathComponent("linux")
        try FileManager.default.createDirectory(at: repo, withIntermediateDirectories: true)
        let runner = ProcessRunner()
        func git(_ arguments: [String]) throws -> String {
            try runner.check(Command("git", ["-C", repo.path, "-c", "user.name=t", "-c", "user.email=t@t"] + arguments)).stdout
        }
        _ = try git(["init", "--quiet"])
        var commits: [String] = []
        for (index, outcome) in outcomes.enumerated() {
            try outcome.write(to: repo.appendingPathComponent("outcome"), atomically: true, encoding: .utf8)
            try "\(index)\n".write(to: repo.appendingPathComponent("step"), atomically: true, encoding: .utf8)
            _ = try git(["add", "outcome", "step"])
            _ = try git(["commit", "--quiet", "--allow-empty", "-m", "commit \(index)"])
            commits.append(try git(["rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let context = ToolContext(paths: ToolPaths(cache: root.appendingPathComponent("cache"), results: root, resources: root, stage: root),
                                  log: { _ in })
        return (repo, commits, context)
    }

    @Test func findsTheFirstBadCommitSkippingUnbuildableOnes() throws {
        let (repo, commits, context) = try Self.repository(["good", "good", "unbuildable", "good", "good", "bad", "bad", "unbuildable", "bad", "bad"])
        defer { try? FileManager.default.removeItem(at: repo.deletingLastPathComponent()) }
        let stub = Stub()
        let result = try BisectDriver(tree: repo, good: commits[0], bad: commits[9], evaluator: stub, context: context).run()
        #expect(result.commit == commits[5])
        #expect(result.subject.hasSuffix("commit 5"))
        #expect(result.measurement == "sync 2.00")
        #expect(stub.calls.count <= 6)
        // The user's working tree was never touched, and the bisect's own worktree holds
        // its state only: builds happen in the tree's one shared worktree.
        #expect(try String(contentsOf: repo.appendingPathComponent("outcome"), encoding: .utf8) == "bad")
        let bisectFolders = try FileManager.default.contentsOfDirectory(atPath: context.paths.cache.appendingPathComponent("bisect").path)
        for folder in bisectFolders where !folder.hasSuffix(".json") {
            #expect(!FileManager.default.fileExists(atPath: context.paths.cache.appendingPathComponent("bisect/\(folder)/outcome").path))
        }
    }

    /// A real step runs the spec on `git:TREE@COMMIT`: the worktree and build folder that
    /// `run --kernel git:TREE@REF` uses, whatever the ref.
    @Test func aStepBuildsWhereRunsOfTheTreeBuild() throws {
        let (repo, commits, context) = try Self.repository(["good", "bad"])
        defer { try? FileManager.default.removeItem(at: repo.deletingLastPathComponent()) }
        var spec = RunRequest(tests: [TestSelection(name: RunRequest.defaultTest)])
        spec.configFragments = ["/spec.config"]
        let evaluator = BuildAndRunEvaluator(request: spec, arches: [.aarch64], criterion: .status(.fail),
                                             configFragments: [URL(fileURLWithPath: "/user.config")], context: context)
        let request = evaluator.request(commit: commits[1], tree: repo)
        #expect(request.kernels == [.git(tree: repo.path, ref: commits[1])])
        #expect(request.arches == [.aarch64])
        #expect(request.configFragments == ["/spec.config", "/user.config"])
        var withFragments = context
        withFragments.paths.resources = Repository.root
        let builder = KernelBuilder(context: withFragments)
        let first = KernelBuilder.Source(path: builder.worktree(of: repo), commit: commits[0], origin: "", treeKey: ContentHash.of(repo.path))
        var second = first
        second.commit = commits[1]
        #expect(try builder.buildDirectory(source: first, arch: .x86_64) == builder.buildDirectory(source: second, arch: .x86_64))
        #expect(KernelBuilder.makeVariables(.x86_64, output: URL(fileURLWithPath: "/o"), jobs: 3, source: first.path)
            .contains("CCACHE_BASEDIR=\(first.path.path)"))
    }

    @Test func findFixLooksForTheFirstGoodCommit() throws {
        let (repo, commits, context) = try Self.repository(["bad", "bad", "bad", "good", "good", "good"])
        defer { try? FileManager.default.removeItem(at: repo.deletingLastPathComponent()) }
        let result = try BisectDriver(tree: repo, good: commits[5], bad: commits[0], findFix: true, evaluator: Stub(), context: context).run()
        #expect(result.commit == commits[3])
    }

    @Test func flakyStepsAreSkippedWhenConfirmationDisagrees() throws {
        let (repo, commits, context) = try Self.repository(["good", "good", "flaky", "bad", "bad"])
        defer { try? FileManager.default.removeItem(at: repo.deletingLastPathComponent()) }
        // Commit 2 gives bad then good: skipped as flaky, so git cannot tell 2 from 3
        // and the driver says so with both candidates instead of guessing.
        do {
            _ = try BisectDriver(tree: repo, good: commits[0], bad: commits[4], confirm: 2, evaluator: Stub(), context: context).run()
            Issue.record("a flaky step must not be decided")
        } catch let error as ShootdownError {
            #expect(error.description.contains("cannot decide"))
            #expect(error.description.contains(commits[2]) && error.description.contains(commits[3]))
        }
    }

    @Test func anInterruptedBisectContinuesWithoutRepeatingSteps() throws {
        let outcomes = (0..<16).map { $0 < 11 ? "good" : "bad" }
        let (repo, commits, context) = try Self.repository(outcomes)
        defer { try? FileManager.default.removeItem(at: repo.deletingLastPathComponent()) }
        let first = Stub()
        first.failAfter = 2
        #expect(throws: ShootdownError.self) {
            try BisectDriver(tree: repo, good: commits[0], bad: commits[15], evaluator: first, context: context).run()
        }
        let second = Stub()
        let result = try BisectDriver(tree: repo, good: commits[0], bad: commits[15], evaluator: second, context: context).run()
        #expect(result.commit == commits[11])
        #expect(Set(second.calls).isDisjoint(with: first.calls))
        #expect(result.steps.count == first.calls.count + second.calls.count)
    }

    @Test func seriesBisectNamesThePatch() throws {
        let (repo, commits, context) = try Self.repository(["good", "good", "good", "bad", "bad"])
        defer { try? FileManager.default.removeItem(at: repo.deletingLastPathComponent()) }
        let patches = repo.deletingLastPathComponent().appendingPathComponent("series")
        try ProcessRunner().check(Command("git", ["-C", repo.path, "format-patch", "--quiet", "-o", patches.path, "\(commits[0])..\(commits[4])"]))
        let result = try SeriesBisect(tree: repo, base: commits[0], seriesDirectory: patches, evaluator: Stub(), context: context).run()
        #expect(result.commit == "0003-commit-3.patch")
        #expect(result.subject == "patch 3 of 4: 0003-commit-3.patch")
    }

    /// The documented `--status FAIL` parses (status names are upper case, other choices
    /// lower case), and a wrong one names the choices.
    @Test func choicesParseInAnyCase() throws {
        #expect(try parseChoice("FAIL", as: CellStatus.self, option: "--status") == .fail)
        #expect(try parseChoice("error", as: CellStatus.self, option: "--status") == .error)
        #expect(try parseChoice("TCG", as: AcceleratorChoice.self, option: "--accel") == .tcg)
        #expect(throws: ShootdownError.usage("--status FAILED: use one of FAIL, ERROR, MISS, PASS, DONE, SKIP")) {
            try parseChoice("FAILED", as: CellStatus.self, option: "--status")
        }
    }

    @Test func criteria() {
        let good = SweepAnalysisTests.result(gib: 1, syncPerOp: 1, cal: 6)
        let bad = SweepAnalysisTests.result(gib: 1, syncPerOp: 3, cal: 6)
        let metric = BisectCriterion.metric(name: "probe:tlb_remove_table_sync_one", above: 2)
        #expect(metric.isBad([good]) == false)
        #expect(metric.isBad([good, bad]) == true)
        #expect(metric.isBad([SweepAnalysisTests.result(gib: 1, syncPerOp: 3, cal: 6, status: .error)]) == nil)
        #expect(BisectCriterion.status(.fail).isBad([SweepAnalysisTests.result(gib: 1, syncPerOp: 1, cal: 1, status: .fail)]) == true)
        #expect(BisectCriterion.status(.fail).isBad([good]) == false)
        #expect(BisectCriterion.status(.fail).isBad([SweepAnalysisTests.result(gib: 1, syncPerOp: 1, cal: 1, status: .error)]) == nil)
    }
}
