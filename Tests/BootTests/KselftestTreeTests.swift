import Foundation
import Testing
@testable import ShootdownCore

/// The exported patch must apply to Debian's linux-source-6.12 and build with the tree's
/// own selftest Makefile (after `make headers`). Needs `ci/setup-host` (linux-source-6.12).
@Suite(.serialized, .sharingTheHost) struct KselftestTreeTests {
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
        // Warnings as errors (lib.mk's USERCFLAGS): the exported code is as clean as the guests'.
        try runner.check(Command("make", ["-s", "-C", mm.path, "USERCFLAGS=-Werror"] + targets), timeout: .seconds(300))
        for target in targets {
            #expect(FileManager.default.isExecutableFile(atPath: target), "\(target) was not built")
        }
        let script = try String(contentsOf: mm.appendingPathComponent("run_vmtests.sh"), encoding: .utf8)
        for test in patch.tests {
            #expect(script.contains("CATEGORY=\"\(test.category)\" run_test ./\(test.name)"))
        }
        try kselftestFlavourPrintsTheGuestsTAP(mm: mm, catalog: catalog)
    }

    /// The export's TAP functions on the tree's kselftest.h print what the guest flavour
    /// prints (TAPPartialTests has the guest side), but for kselftest's own bail-out.
    func kselftestFlavourPrintsTheGuestsTAP(mm: URL, catalog: TemplateCatalog) throws {
        var template = try catalog.template(named: "hugetlb-share-fork-exit")
        template.source = """
            {{% CONTENT_TYPE: TEXT}}
            #define _GNU_SOURCE
            #include <errno.h>
            #include <stdarg.h>
            #include <stdbool.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>

            {{> tap}}

            int main(int argc, char **argv)
            {
            \tconst char *mode = argc > 1 ? argv[1] : "";

            \ttap_header();
            \tif (!strcmp(mode, "skip-all"))
            \t\ttap_skip_all("no pool");
            \tif (!strcmp(mode, "bail")) {
            \t\terrno = ENOENT;
            \t\ttap_bail("open");
            \t}
            \ttap_plan(2);
            \ttap_result(1, true, "%s", "a");
            \tif (!strcmp(mode, "skip"))
            \t\ttap_skip(2, "b", "not on this kernel");
            \telse
            \t\ttap_result(2, false, "b");
            \treturn tap_finish();
            }

            """
        let source = mm.appendingPathComponent("shootdown-tap-api.c"), binary = mm.appendingPathComponent("shootdown-tap-api")
        try TemplateRenderer.render(template, template.defaultInstance, flavour: .kselftest).source
            .write(to: source, atomically: true, encoding: .utf8)
        let runner = ProcessRunner()
        try runner.check(Command("gcc", ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o", binary.path, source.path],
                                 workingDirectory: mm.path))
        for (mode, status, stdout) in [
            ("", Int32(1), "TAP version 13\n1..2\nok 1 a\nnot ok 2 b\n# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0\n"),
            ("skip", 0, "TAP version 13\n1..2\nok 1 a\nok 2 b # SKIP not on this kernel\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n"),
            ("skip-all", 4, "TAP version 13\n1..0 # SKIP no pool\n"),
            // kselftest's own bail-out: errno's number, and the totals.
            ("bail", 1, "TAP version 13\nBail out! open: No such file or directory (2)\n# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:0 error:0\n"),
        ] {
            let output = try runner.run(Command(binary.path, [mode]))
            #expect(output.stdout == stdout, "mode '\(mode)'")
            #expect(output.status == status, "mode '\(mode)'")
        }
    }
}
