import ArgumentParser
import Foundation
import ShootdownCore

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two runs (A is the baseline), or two kernels over a matrix spec.",
        discussion: """
        shootdown compare RUN_A RUN_B                  two finished runs (ids or folders)
        shootdown compare KERNEL_A KERNEL_B --spec S   runs the spec on both kernels first
        Per cell: status changes and per-op IPI/probe figures with a verdict that accounts
        for repeat spread; a figure the test's manifest requires for correctness (probe_checks
        with required_for: correctness) below its floor is a correctness regression. Per sweep:
        scaling-class changes (constant → linear is a regression; undecided, with fewer than
        three swept values or too much noise, never gates).
        """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Baseline: a run, or a kernel spec with --spec.")
    var a: String

    @Argument(help: "Candidate: a run, or a kernel spec with --spec.")
    var b: String

    @Option(name: .long, help: "A matrix spec to run on both kernels (its kernels: list is replaced).")
    var spec: String?

    @Flag(name: .long, help: "Exit 1 on any (correctness) regression or new FAIL/ERROR.")
    var gate = false

    @OptionGroup var execution: ExecutionFlags

    func run() throws {
        let context = global.makeContext()
        let comparison = try reportingErrors { () -> Comparison in
            let reports: [RunReport]
            if let spec {
                let matrix = try MatrixSpec.load(URL(fileURLWithPath: spec), catalog: TemplateCatalog(resources: context.paths.resources))
                reports = try [a, b].map { kernel in
                    var request = RunRequest(spec: matrix)
                    request.kernels = [try KernelSpec(parsing: kernel)]
                    context.log("compare: running \(matrix.name) on \(kernel)")
                    var options = try execution.options()
                    options.runID = options.runID.map { "\($0)-\(kernel == a ? "a" : "b")" }
                    return try RunPipeline(context: context).run(request, options: options).report
                }
            } else {
                reports = try [a, b].map { run in
                    try RunDirectory.locate(run, resultsRoot: context.paths.results).rebuildReport()
                }
            }
            // The manifests say which figures a fix requires; a fall below their floors is a correctness regression.
            let required = Comparison.requiredChecks(TemplateCatalog(resources: context.paths.resources),
                                                     tests: Set(reports.flatMap { $0.cells.map(\.cell.test) }))
            let comparison = Comparison(a: reports[0], b: reports[1], required: required)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let file = context.paths.results.appendingPathComponent("compare-\(reports[0].runID)-vs-\(reports[1].runID).json")
            try writeAtomically(try encoder.encode(comparison), to: file)
            context.log("comparison: \(file.path)")
            return comparison
        }
        print(comparison.text, terminator: "")
        if gate && comparison.regressions > 0 { throw ExitCode(1) }
    }
}
