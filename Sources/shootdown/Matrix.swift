import ArgumentParser
import Foundation
import ShootdownCore

struct Matrix: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a matrix spec (kernels × arches × paravirt × vCPUs × tests) and check its expectations.",
        discussion: "Specs ship in ci/: nightly.yaml, repro-hugetlb-ipi-storm.yaml. A bad spec is rejected before any work, with file:line:column."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The matrix spec (YAML).")
    var spec: String

    @Flag(name: .long, help: "Print the expanded cells and the estimated time; run nothing.")
    var plan = false

    @OptionGroup var execution: ExecutionFlags

    func run() throws {
        ActiveDomains.shared.handleStopSignals()
        var context = global.makeContext()
        try reportingErrors {
            let catalog = TemplateCatalog(resources: context.paths.resources)
            let matrix = try MatrixSpec.load(URL(fileURLWithPath: spec), catalog: catalog)
            if let uri = matrix.libvirtURI, global.libvirtURI == nil {
                context = GlobalOptions(libvirtURI: uri, results: global.results).makeContext()
            }
            let request = RunRequest(spec: matrix)
            if plan {
                print(try MatrixPlan(request: request, options: try execution.options(), context: context, catalog: catalog).text,
                      terminator: "")
                return
            }
            try runAndReport(request, context: context, execution: try execution.options(), quiet: false)
        }
    }
}
