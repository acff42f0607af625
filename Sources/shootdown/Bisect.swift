import ArgumentParser
import Foundation
import ShootdownCore

struct Bisect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find the commit (or the patch of a series) that changes a test's outcome.",
        discussion: """
        shootdown bisect --tree ~/linux --good v6.11 --bad v6.12 --spec cell.yaml --metric probe:tlb_remove_table_sync_one --above 2
        shootdown bisect --tree ~/linux --good FIXED --bad BROKEN --find-fix --spec cell.yaml --status FAIL
        shootdown bisect --tree ~/linux --series patches/ --base v6.12 --spec cell.yaml --status FAIL
        Each step builds the tree (kept build folders, ccache) and runs the spec's cells on it;
        unbuildable commits are skipped; an interrupted bisect continues where it stopped.
        """
    )

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: "The git tree (your working tree is never touched).")
    var tree: String

    @Option(name: .long, help: "A commit without the problem (with --find-fix: one with the fix).")
    var good: String?

    @Option(name: .long, help: "A commit with the problem.")
    var bad: String?

    @Option(name: .long, help: "A matrix spec for the cells of each step (its kernels: list is replaced).")
    var spec: String

    @Option(name: .long, help: "Bad when a cell has this status (FAIL, ERROR, PASS, ...).")
    var status: String?

    @Option(name: .long, help: "Bad when a cell's per-op figure (probe:NAME or ipi:ROW) is above --above.")
    var metric: String?

    @Option(name: .long, help: "The threshold for --metric.")
    var above: Double?

    @Option(name: .long, help: "Judge each step this many times; disagreeing runs skip the step as flaky.")
    var confirm: Int = 1

    @Flag(name: .customLong("find-fix"), help: "Find the first good commit (the fix) instead of the first bad one.")
    var findFix = false

    @Option(name: .long, help: "A patch series folder (format-patch files or a quilt series) to bisect instead of commits.")
    var series: String?

    @Option(name: .long, help: "The commit the series applies on (with --series).")
    var base: String?

    @Option(name: .long, help: "Arch to build and run (repeatable; default: the spec's arches, else x86_64).")
    var arch: [String] = []

    @Option(name: .customLong("config-fragment"), help: "Extra Kconfig fragment for the builds (repeatable).")
    var configFragment: [String] = []

    func run() throws {
        let context = global.makeContext()
        try reportingErrors {
            let criterion: BisectCriterion
            switch (status, metric, above) {
            case (let status?, nil, nil): criterion = .status(try parseChoice(status, as: CellStatus.self, option: "--status"))
            case (nil, let metric?, let above?): criterion = .metric(name: metric, above: above)
            default: throw ShootdownError.usage("give one criterion: --status STATUS, or --metric NAME --above X")
            }
            let matrix = try MatrixSpec.load(URL(fileURLWithPath: spec), catalog: TemplateCatalog(resources: context.paths.resources))
            let arches = arch.isEmpty ? (matrix.arches ?? [.x86_64]) : try arch.map(Arch.init(parsing:))
            let evaluator = BuildAndRunEvaluator(request: RunRequest(spec: matrix), arches: arches, criterion: criterion,
                                                 configFragments: configFragment.map { URL(fileURLWithPath: $0) }, context: context)
            let treeURL = URL(fileURLWithPath: (tree as NSString).expandingTildeInPath).standardizedFileURL
            let result: BisectResult
            if let series {
                guard let base = base ?? good else { throw ShootdownError.usage("--series needs --base REF (the commit it applies on)") }
                result = try SeriesBisect(tree: treeURL, base: base, seriesDirectory: URL(fileURLWithPath: series), findFix: findFix,
                                          evaluator: evaluator, context: context).run()
            } else {
                guard let good, let bad else { throw ShootdownError.usage("give --good and --bad commits (or --series with --base)") }
                result = try BisectDriver(tree: treeURL, good: good, bad: bad, findFix: findFix, confirm: confirm,
                                          evaluator: evaluator, context: context).run()
            }
            print("\(findFix ? "first fixed" : "first bad"): \(result.subject)")
            print("measured: \(result.measurement)")
            print("steps:")
            for step in result.steps { print("  \(step.commit.prefix(40))  \(step.outcome.rawValue)  \(step.summary)") }
        }
    }
}
