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

/// Judges one commit (or one prefix of a patch series, committed) of the user's `tree`.
/// The commit is not checked out anywhere for it: a real step builds it as `git:TREE@COMMIT`,
/// in the one worktree and build folder every run of that tree uses (KernelBuilder).
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

/// Drives `git bisect --no-checkout` in a worktree of the user's tree that holds only
/// the bisect's state (no files are checked out there): each step's commit is BISECT_HEAD,
/// and the evaluator builds it where `run --kernel git:TREE@REF` builds, so a run right
/// after a bisect finds the build folder warm. Every judged commit is kept in a state
/// file, so an interrupted bisect continues where it stopped.
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
            let head = try git(["rev-parse", "BISECT_HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
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
            let (outcome, summary) = try evaluator.evaluate(commit: commit, tree: tree)
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
           (try? git(["bisect", "log"])) != nil, (try? git(["rev-parse", "--verify", "BISECT_HEAD"])) != nil {
            context.log("bisect: continuing the interrupted bisect in \(worktree.path)")
            return
        }
        try FileManager.default.makeDirectory(worktree.deletingLastPathComponent())
        if !FileManager.default.fileExists(atPath: worktree.appendingPathComponent(".git").path) {
            try? FileManager.default.removeItem(at: worktree)
            _ = try? git(["worktree", "prune"], in: tree)
            _ = try git(["worktree", "add", "--no-checkout", "--detach", worktree.path, bad], in: tree)
        }
        _ = try? git(["bisect", "reset", "--quiet"])
        // git wants the newer state first: bad (or, finding a fix, the fixed "good" one).
        let (newer, older) = findFix ? (good, bad) : (bad, good)
        _ = try git(["bisect", "start", "--no-checkout", "--term-old=\(terms.old)", "--term-new=\(terms.new)", newer, older])
    }

    func loadState() -> [BisectStep] {
        guard let data = try? Data(contentsOf: stateFile) else { return [] }
        return (try? JSONDecoder().decode([BisectStep].self, from: data)) ?? []
    }

    func saveState(_ steps: [BisectStep]) throws {
        try writeAtomically(try JSONEncoder().encode(steps), to: stateFile)
    }
}
