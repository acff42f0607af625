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

    @Option(name: .customLong("kselftest-patch"), help: "Write a format-patch that adds the tests to tools/testing/selftests/mm.")
    var kselftestPatch: String?

    @Option(name: .long, help: "Kernel tree or source tarball the patch applies to (default: the newest /usr/src/linux-source-*.tar.xz).")
    var tree: String?

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
            let names = test.isEmpty ? catalog.names() : test
            let selections = try RunRequest.selections(tests: names, parameters: param, catalog: catalog)
            if let kselftestPatch {
                let rendered = try catalog.render(selections, flavour: .kselftest)
                try writePatch(KselftestPatch(rendered: rendered), to: kselftestPatch, context: context)
                return
            }
            // A folder of plain C that builds anywhere, so no kselftest tree: the guest flavour.
            let rendered = try catalog.render(selections)
            guard let out else {
                throw ShootdownError.usage("say where to write: shootdown generate --out DIR, or --kselftest-patch FILE (or --list, --describe TEST)")
            }
            let multiple = Dictionary(grouping: rendered, by: \.instance.test).values.contains { $0.count > 1 }
            let files = try SuiteExport(tests: rendered, multipleInstances: multiple)
                .write(to: URL(fileURLWithPath: out))
            files.forEach { print($0.path) }
        }
    }

    func writePatch(_ patch: KselftestPatch, to path: String, context: ToolContext) throws {
        guard let location = tree.map({ URL(fileURLWithPath: $0) }) ?? KernelTreeFiles.debianSourceTarball() else {
            throw ShootdownError.usage("no kernel tree to patch: pass --tree DIR (or a source tarball), or apt-get install linux-source-6.12")
        }
        let files = KernelTreeFiles(location: location, runner: context.runner)
        let text = try patch.render(makefile: try files.read("\(KselftestPatch.directory)/Makefile"),
                                    runVmtests: try files.read("\(KselftestPatch.directory)/run_vmtests.sh"),
                                    runner: context.runner)
        try writeAtomically(text, to: URL(fileURLWithPath: path))
        print("\(path): \(patch.tests.map(\.name).joined(separator: ", ")) for \(location.path)")
    }
}
