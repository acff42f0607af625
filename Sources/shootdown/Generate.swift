import ArgumentParser
import Foundation
import ShootdownCore

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render test templates to C with a Makefile, or describe them."
    )

    @Option(name: .long, help: "Folder to write the C sources and Makefile to.")
    var out: String?

    @Option(name: .long, help: "Test template (repeatable; default all).")
    var test: [String] = []

    @Option(name: .long, help: "Template parameter key=value; lists and lo..hi ranges give one program each.")
    var param: [String] = []

    @Flag(name: .long, help: "List the templates.")
    var list = false

    @Option(name: .long, help: "Describe one template's parameters.")
    var describe: String?

    func run() throws {
        let context = ToolContext(paths: .standard())
        let catalog = TemplateCatalog(resources: context.paths.resources)
        try reportingErrors {
            if list {
                for name in catalog.names() {
                    print("\(name)  \(try catalog.template(named: name).manifest.summary)")
                }
                return
            }
            if let describe {
                let manifest = try catalog.template(named: describe).manifest
                print("\(manifest.name): \(manifest.summary)\n")
                print(manifest.description.trimmingCharacters(in: .whitespacesAndNewlines) + "\n")
                print("operation: \(manifest.operation)   hugepages: \(manifest.hugepages)\nparameters:")
                manifest.parameters.forEach { print("  " + $0.summary) }
                return
            }
            guard let out else {
                throw ShootdownError.usage("say where to write: shootdown generate --out DIR (or --list, --describe TEST)")
            }
            let names = test.isEmpty ? catalog.names() : test
            var rendered: [RenderedTest] = []
            for name in names {
                let template = try catalog.template(named: name)
                let own = param.filter { template.manifest.parameter(String($0.split(separator: "=").first ?? "")) != nil }
                rendered += try template.instances(overrides: names.count == 1 ? param : own)
                    .map { try TemplateRenderer.render(template, $0) }
            }
            let multiple = Dictionary(grouping: rendered, by: \.instance.test).values.contains { $0.count > 1 }
            let files = try SuiteExport(tests: rendered, multipleInstances: multiple)
                .write(to: URL(fileURLWithPath: out))
            files.forEach { print($0.path) }
        }
    }
}
