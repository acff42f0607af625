import Foundation
import Testing
@testable import ShootdownCore

/// The exported patch must apply to Debian's linux-source-6.12 and build with the tree's
/// own selftest Makefile (after `make headers`). Needs `ci/setup-host` (linux-source-6.12).
@Suite struct KselftestTreeTests {
    @Test func patchAppliesAndBuildsInTheDebianTree() throws {
        let context = BootTests.context()
        let tarball = try #require(KernelTreeFiles.debianSourceTarball(), "no /usr/src/linux-source-*.tar.xz: run ci/setup-host")
        let catalog = TemplateCatalog(resources: context.paths.resources)
        let patch = try KselftestPatch(rendered: try catalog.render(catalog.names().map { TestSelection(name: $0) }, flavour: .kselftest))
        let files = KernelTreeFiles(location: tarball, runner: context.runner)
        let text = try patch.render(makefile: try files.read("\(KselftestPatch.directory)/Makefile"),
                                    runVmtests: try files.read("\(KselftestPatch.directory)/run_vmtests.sh"),
                                    runner: context.runner)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-kselftest-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let tree = try SourceTarball(tarball: tarball, context: context).scratchCopy(at: scratch.appendingPathComponent("tree"))
        let patchFile = scratch.appendingPathComponent("tests.patch")
        try text.write(to: patchFile, atomically: true, encoding: .utf8)

        let runner = ProcessRunner()
        try runner.check(Command("/bin/sh", ["-c", "patch -p1 --quiet < \(patchFile.path)"], workingDirectory: tree.path))
        try runner.check(Command("make", ["-s", "-j2", "headers"], workingDirectory: tree.path), timeout: .seconds(600))
        let mm = tree.appendingPathComponent(KselftestPatch.directory)
        let targets = patch.tests.map { mm.appendingPathComponent($0.name).path }
        try runner.check(Command("make", ["-s", "-C", mm.path] + targets), timeout: .seconds(300))
        for target in targets {
            #expect(FileManager.default.isExecutableFile(atPath: target), "\(target) was not built")
        }
        let script = try String(contentsOf: mm.appendingPathComponent("run_vmtests.sh"), encoding: .utf8)
        for test in patch.tests {
            #expect(script.contains("CATEGORY=\"\(test.category)\" run_test ./\(test.name)"))
        }
    }
}
