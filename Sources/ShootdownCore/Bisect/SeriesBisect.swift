import Foundation

/// Bisects a patch series (a format-patch or quilt folder) applied in order on a base:
/// finds the first patch that changes the outcome from good to bad (or, with
/// `findFix`, from bad to good).
public struct SeriesBisect: Sendable {
    public var tree: URL
    public var base: String
    public var patches: [URL]
    public var findFix: Bool
    public var evaluator: any BisectStepEvaluator
    public var context: ToolContext

    public init(tree: URL, base: String, seriesDirectory: URL, findFix: Bool = false, evaluator: any BisectStepEvaluator,
                context: ToolContext) throws {
        self.tree = tree
        self.base = base
        self.findFix = findFix
        self.evaluator = evaluator
        self.context = context
        patches = try Self.patches(in: seriesDirectory)
    }

    /// A quilt `series` file's order, else the *.patch files sorted (format-patch numbers them).
    static func patches(in directory: URL) throws -> [URL] {
        let series = directory.appendingPathComponent("series")
        var names: [String]
        if let text = try? String(contentsOf: series, encoding: .utf8) {
            names = text.lines().map { $0.split(separator: "#")[0].trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        } else {
            names = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
                .filter { $0.hasSuffix(".patch") || $0.hasSuffix(".diff") }.sorted()
        }
        guard !names.isEmpty else { throw ShootdownError.usage("\(directory.path) holds no patches (*.patch, or a quilt series file)") }
        return names.map { directory.appendingPathComponent($0) }
    }

    var worktree: URL {
        context.paths.cache.appendingPathComponent("bisect/series-\(ContentHash.of(tree.path, base).prefix(10))")
    }

    func git(_ arguments: [String], in directory: URL? = nil) throws {
        try context.runner.check(Command("git", ["-C", (directory ?? worktree).path, "-c", "user.name=shootdown",
                                                 "-c", "user.email=shootdown@localhost"] + arguments))
    }

    /// The base with the first `count` patches applied, committed in the series' own
    /// worktree (`git am` needs files); the commit lives in the tree's object store, so the
    /// evaluator builds it as `git:TREE@COMMIT` like any other.
    func checkout(first count: Int) throws -> String {
        if !FileManager.default.fileExists(atPath: worktree.appendingPathComponent(".git").path) {
            try FileManager.default.makeDirectory(worktree.deletingLastPathComponent())
            try? FileManager.default.removeItem(at: worktree)
            try git(["worktree", "add", "--detach", worktree.path, base], in: tree)
        }
        _ = try? git(["am", "--abort"])
        try git(["checkout", "--quiet", "--detach", "--force", base])
        if count > 0 {
            do {
                try git(["am", "--quiet", "--3way"] + patches.prefix(count).map(\.path))
            } catch {
                throw ShootdownError.usage("the series does not apply on \(base) up to \(patches[count - 1].lastPathComponent): \(error)")
            }
        }
        return try context.runner.check(Command("git", ["-C", worktree.path, "rev-parse", "HEAD"])).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func run() throws -> BisectResult {
        var steps: [BisectStep] = []
        func outcome(_ count: Int) throws -> StepOutcome {
            let commit = try checkout(first: count)
            let (outcome, summary) = try evaluator.evaluate(commit: commit, tree: tree)
            steps.append(BisectStep(commit: count == 0 ? "base" : patches[count - 1].lastPathComponent, outcome: outcome, summary: summary))
            context.log("series: \(count) of \(patches.count) patches: \(outcome.rawValue): \(summary)")
            guard outcome != .skip else {
                throw ShootdownError.usage("the tree with \(count) patches cannot be judged (\(summary)); fix that step or bisect commits instead")
            }
            return outcome
        }
        let before: StepOutcome = findFix ? .bad : .good, after: StepOutcome = findFix ? .good : .bad
        guard try outcome(0) == before else {
            throw ShootdownError.usage("the base \(base) is already \(after.rawValue); nothing in the series changes the outcome")
        }
        guard try outcome(patches.count) == after else {
            throw ShootdownError.usage("the whole series still gives \(before.rawValue); no patch changes the outcome")
        }
        var low = 0, high = patches.count
        while high - low > 1 {
            let middle = (low + high) / 2
            if try outcome(middle) == after { high = middle } else { low = middle }
        }
        let patch = patches[high - 1]
        return BisectResult(commit: patch.lastPathComponent, subject: "patch \(high) of \(patches.count): \(patch.lastPathComponent)",
                            steps: steps, measurement: steps.last { $0.commit == patch.lastPathComponent }?.summary ?? "")
    }
}
