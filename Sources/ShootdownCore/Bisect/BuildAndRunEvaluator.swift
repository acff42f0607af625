import Foundation

/// The real step: run the cell spec on the commit built for each arch (through the run's
/// own kernel resolution, so the widening module is built against the same folder) and
/// apply the criterion. An unbuildable commit is a skip.
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

    /// The step's run: the cell spec on `git:TREE@COMMIT` for each arch.
    func request(commit: String, tree: URL) -> RunRequest {
        var request = self.request
        request.kernels = [.git(tree: tree.path, ref: commit)]
        request.arches = arches
        request.configFragments += configFragments.map(\.path).filter { !request.configFragments.contains($0) }
        return request
    }

    public func evaluate(commit: String, tree: URL) throws -> (outcome: StepOutcome, summary: String) {
        let report: RunReport
        do {
            // Booted, not restored: each step's kernel is new, and a saved guest of it would
            // cost a boot and a save to be restored once.
            report = try RunPipeline(context: context).run(request(commit: commit, tree: tree),
                                                           options: ExecutionOptions(runID: "bisect-\(commit.prefix(12))-\(UUID().uuidString.prefix(4))",
                                                                                     fresh: .boot)).report
        } catch let error as ShootdownError {
            guard case .kernelUnusable = error else { throw error }
            return (.skip, "unbuildable: \(error.description.prefix(300))")
        }
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
