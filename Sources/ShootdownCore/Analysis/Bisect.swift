import Foundation

/// What makes a step "bad" (or, with --find-fix, still broken).
public enum BisectCriterion: Sendable, Codable, Equatable, CustomStringConvertible {
    /// Any cell with this status.
    case status(CellStatus)
    /// Any cell whose per-operation figure is above the threshold.
    case metric(name: String, above: Double)

    public var description: String {
        switch self {
        case .status(let status): return "status \(status.rawValue)"
        case .metric(let name, let above): return "\(name) per op > \(format(above))"
        }
    }

    /// true: bad, false: good, nil: the step cannot tell (no usable cell): skip it.
    public func isBad(_ results: [CellResult]) -> Bool? {
        switch self {
        case .status(let status):
            guard results.contains(where: { $0.status != .error && $0.status != .skip }) || status == .error else { return nil }
            return results.contains { $0.status == status }
        case .metric(let name, let above):
            let values = results.filter { $0.status == .pass }.compactMap { SweepAnalysis.value(of: name, in: $0) }
            guard !values.isEmpty else { return nil }
            return values.contains { $0 > above }
        }
    }
}

public enum StepOutcome: String, Sendable, Codable, Equatable {
    case bad, good, skip
}

/// Judges one commit (or one prefix of a patch series) checked out at `tree`.
public protocol BisectStepEvaluator: Sendable {
    func evaluate(commit: String, tree: URL) throws -> (outcome: StepOutcome, summary: String)
}

public struct BisectStep: Sendable, Codable, Equatable {
    public var commit: String
    public var outcome: StepOutcome
    public var summary: String
}

public struct BisectResult: Sendable, Codable, Equatable {
    /// The first bad commit (or first fixed one with --find-fix), or the first patch.
    public var commit: String
    public var subject: String
    public var steps: [BisectStep]
    public var measurement: String
}

/// Drives `git bisect` in shootdown's own worktree of the user's tree. Every judged
/// commit is kept in a state file, so an interrupted bisect continues where it stopped.
public struct BisectDriver: Sendable {
    public var tree: URL
    public var good: String
    public var bad: String
    /// Look for the commit that fixed the problem instead of the one that caused it.
    public var findFix: Bool
    /// Judge each step this many times; a step whose runs disagree is skipped as flaky.
    public var confirm: Int
    public var evaluator: any BisectStepEvaluator
    public var context: ToolContext

    public init(tree: URL, good: String, bad: String, findFix: Bool = false, confirm: Int = 1,
                evaluator: any BisectStepEvaluator, context: ToolContext) {
        self.tree = tree
        self.good = good
        self.bad = bad
        self.findFix = findFix
        self.confirm = max(1, confirm)
        self.evaluator = evaluator
        self.context = context
    }

    var key: String { ContentHash.of(tree.path, good, bad, String(findFix)) }
    var worktree: URL { context.paths.cache.appendingPathComponent("bisect/\(tree.lastPathComponent)-\(key.prefix(10))") }
    var stateFile: URL { context.paths.cache.appendingPathComponent("bisect/\(key.prefix(10)).json") }

    /// git's terms: the older state and the newer one.
    var terms: (old: String, new: String) { findFix ? ("broken", "fixed") : ("good", "bad") }

    func git(_ arguments: [String], in directory: URL? = nil) throws -> String {
        try context.runner.check(Command("git", ["-C", (directory ?? worktree).path] + arguments)).stdout
    }

    public func run() throws -> BisectResult {
        var steps = loadState()
        try prepareWorktree(resuming: !steps.isEmpty)
        while true {
            let head = try git(["rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let step: BisectStep
            if let known = steps.last(where: { $0.commit == head }) {
                step = known
            } else {
                step = try judge(head)
                steps.append(step)
                try saveState(steps)
            }
            let term: String
            switch step.outcome {
            case .skip: term = "skip"
            case .bad: term = findFix ? terms.old : terms.new
            case .good: term = findFix ? terms.new : terms.old
            }
            context.log("bisect: \(head.prefix(12)) \(step.outcome.rawValue): \(step.summary)")
            let output = try context.runner.run(Command("git", ["-C", worktree.path, "bisect", term]))
            if let first = Self.firstCommit(in: output.stdout, term: terms.new) {
                let subject = try git(["log", "-1", "--format=%h %s", first]).trimmingCharacters(in: .whitespacesAndNewlines)
                _ = try? git(["bisect", "reset", "--quiet"])
                try? FileManager.default.removeItem(at: stateFile)
                let measurement = steps.last { $0.commit == first }?.summary ?? "not measured (identified by git)"
                return BisectResult(commit: first, subject: subject, steps: steps, measurement: measurement)
            }
            if output.stdout.contains("could be any of") {
                throw ShootdownError.usage("bisect cannot decide between skipped (unbuildable or flaky) commits; the first "
                                           + "\(terms.new) commit is one of:\n" + tail(output.stdout, lines: 10))
            }
            guard output.succeeded else {
                throw ShootdownError.commandFailed(command: "git bisect \(term)", status: output.status,
                                                   output: tail(output.stdout + output.stderr, lines: 8))
            }
        }
    }

    /// "<sha> is the first bad commit" (or "first fixed commit").
    static func firstCommit(in output: String, term: String) -> String? {
        for line in output.lines() where line.hasSuffix(" is the first \(term) commit") {
            return String(line.split(separator: " ")[0])
        }
        return nil
    }

    /// Runs the evaluator `confirm` times; disagreeing runs make the step a skip.
    func judge(_ commit: String) throws -> BisectStep {
        var outcomes: [StepOutcome] = [], summaries: [String] = []
        for _ in 0..<confirm {
            let (outcome, summary) = try evaluator.evaluate(commit: commit, tree: worktree)
            outcomes.append(outcome)
            summaries.append(summary)
            if outcome == .skip { break }
        }
        if Set(outcomes).count > 1 {
            return BisectStep(commit: commit, outcome: .skip,
                              summary: "flaky over \(outcomes.count) runs (\(outcomes.map(\.rawValue).joined(separator: ", "))): " + summaries.joined(separator: " | "))
        }
        return BisectStep(commit: commit, outcome: outcomes[0], summary: summaries.last ?? "")
    }

    func prepareWorktree(resuming: Bool) throws {
        if resuming, FileManager.default.fileExists(atPath: worktree.appendingPathComponent(".git").path),
           (try? git(["bisect", "log"])) != nil {
            context.log("bisect: continuing the interrupted bisect in \(worktree.path)")
            return
        }
        try FileManager.default.makeDirectory(worktree.deletingLastPathComponent())
        if !FileManager.default.fileExists(atPath: worktree.appendingPathComponent(".git").path) {
            try? FileManager.default.removeItem(at: worktree)
            _ = try? git(["worktree", "prune"], in: tree)
            _ = try git(["worktree", "add", "--detach", worktree.path, bad], in: tree)
        }
        _ = try? git(["bisect", "reset", "--quiet"])
        // git wants the newer state first: bad (or, finding a fix, the fixed "good" one).
        let (newer, older) = findFix ? (good, bad) : (bad, good)
        _ = try git(["bisect", "start", "--term-old=\(terms.old)", "--term-new=\(terms.new)", newer, older])
    }

    func loadState() -> [BisectStep] {
        guard let data = try? Data(contentsOf: stateFile) else { return [] }
        return (try? JSONDecoder().decode([BisectStep].self, from: data)) ?? []
    }

    func saveState(_ steps: [BisectStep]) throws {
        try writeAtomically(try JSONEncoder().encode(steps), to: stateFile)
    }
}

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

    /// The base with the first `count` patches applied, checked out in the worktree.
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
            let (outcome, summary) = try evaluator.evaluate(commit: commit, tree: worktree)
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

/// The real step: build the checked-out tree for each arch, run the cell spec on it and
/// apply the criterion. An unbuildable tree is a skip.
public struct BuildAndRunEvaluator: BisectStepEvaluator {
    public var request: RunRequest
    public var arches: [Arch]
    public var criterion: BisectCriterion
    public var configFragments: [URL]
    public var context: ToolContext

    public init(request: RunRequest, arches: [Arch], criterion: BisectCriterion, configFragments: [URL], context: ToolContext) {
        self.request = request
        self.arches = arches
        self.criterion = criterion
        self.configFragments = configFragments
        self.context = context
    }

    public func evaluate(commit: String, tree: URL) throws -> (outcome: StepOutcome, summary: String) {
        let builder = KernelBuilder(context: context, extraFragments: configFragments)
        let source = KernelBuilder.Source(path: tree, commit: commit, origin: "\(tree.path) (\(commit.prefix(12)))",
                                          treeKey: ContentHash.of(tree.path))
        var kernels: [KernelSpec] = []
        for arch in arches {
            do {
                let image = try builder.build(source: source, arch: arch, spec: .dir(path: tree.path))
                kernels.append(.file(path: image.kernel.path))
            } catch let error as ShootdownError {
                return (.skip, "unbuildable: \(error.description.prefix(300))")
            }
        }
        var request = self.request
        request.kernels = kernels
        request.arches = nil
        let report = try RunPipeline(context: context).run(request, options: ExecutionOptions(runID: "bisect-\(commit.prefix(12))-\(UUID().uuidString.prefix(4))")).report
        let summary = report.cells.map { cell -> String in
            switch criterion {
            case .status: return "\(cell.cell.arch) \(cell.status.rawValue)"
            case .metric(let name, _):
                return "\(cell.cell.arch) \(SweepAnalysis.value(of: name, in: cell).map { String(format: "%.2f", $0) } ?? cell.status.rawValue)"
            }
        }.joined(separator: ", ")
        guard let bad = criterion.isBad(report.cells) else { return (.skip, "no usable cell: \(summary)") }
        return (bad ? .bad : .good, "\(criterion): \(summary)")
    }
}
