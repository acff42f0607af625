import Foundation
import Testing
@testable import ShootdownCore

@Suite struct KselftestPatchTests {
    static let makefile = """
        TEST_GEN_FILES = cow
        TEST_GEN_FILES += compaction_test
        TEST_GEN_FILES += write_to_hugetlbfs

        $(TEST_GEN_FILES): vm_util.c thp_settings.c

        """
    static let runVmtests = """
        #!/bin/bash
        CATEGORY="hugetlb" run_test ./hugepage-mmap
        CATEGORY="hugetlb" run_test ./hugetlb-read-hwpoison
        CATEGORY="thp" run_test ./khugepaged
        CATEGORY="cow" run_test ./cow

        """
    static let patch = KselftestPatch(tests: [
        .init(name: "hugetlb-share-fork-exit", source: "int main(void) { return 4; }\n", category: "hugetlb", summary: "fork/exit sharers"),
        .init(name: "madv-collapse", source: "int main(void) { return 0; }\n", category: "thp", summary: "collapse under GUP-fast"),
    ])

    @Test func patchMatchesGolden() throws {
        let text = try Self.patch.render(makefile: Self.makefile, runVmtests: Self.runVmtests, runner: ProcessRunner(),
                                         date: Date(timeIntervalSince1970: 1_800_000_000))
        GoldenFile.check(text, "kselftest.patch")
        #expect(text.contains("Signed-off-by: Your Name <you@example.com>"))
    }

    @Test func linesLandAfterTheirCategory() throws {
        let edits = try Self.patch.edits(makefile: Self.makefile, runVmtests: Self.runVmtests)
        let script = try #require(edits.first { $0.path.hasSuffix("run_vmtests.sh") }?.new)
        let lines = script.split(separator: "\n")
        let hugetlb = try #require(lines.firstIndex(of: "CATEGORY=\"hugetlb\" run_test ./hugetlb-share-fork-exit"))
        #expect(lines[hugetlb - 1] == "CATEGORY=\"hugetlb\" run_test ./hugetlb-read-hwpoison")
        let thp = try #require(lines.firstIndex(of: "CATEGORY=\"thp\" run_test ./madv-collapse"))
        #expect(lines[thp - 1] == "CATEGORY=\"thp\" run_test ./khugepaged")
        // Applying twice adds nothing twice.
        let again = try Self.patch.edits(makefile: edits.first { $0.path.hasSuffix("Makefile") }!.new, runVmtests: script)
        #expect(again.first { $0.path.hasSuffix("run_vmtests.sh") }?.new == script)
    }

    @Test func refusesTreesWithoutTheAnchors() {
        #expect(throws: ShootdownError.self) {
            try Self.patch.edits(makefile: "all:\n", runVmtests: Self.runVmtests)
        }
    }

    @Test func refusesSweeps() throws {
        let catalog = TemplateCatalog(resources: Repository.root)
        let rendered = try catalog.render([TestSelection(name: "hugetlb-share-fork-exit", parameters: ["gib=1,2"])], flavour: .kselftest)
        #expect(throws: ShootdownError.self) { try KselftestPatch(rendered: rendered) }
    }
}
