import Foundation
import Testing
@testable import ShootdownCore

@Suite struct TemplateTests {
    static let catalog = TemplateCatalog(resources: Repository.root)
    static let forkExit = "hugetlb-share-fork-exit"

    @Test func catalogListsTheForkExitTemplate() throws {
        #expect(Self.catalog.names().contains(Self.forkExit))
        let manifest = try Self.catalog.template(named: Self.forkExit).manifest
        #expect(Set(manifest.parameters.map(\.name)).isSuperset(of: ["gib", "touch", "children", "cycles", "fault"]))
        #expect(manifest.probes.contains("tlb_remove_table_sync_one"))
    }

    @Test(arguments: TemplateCatalog(resources: Repository.root).names())
    func defaultRenderingMatchesGolden(name: String) throws {
        let template = try Self.catalog.template(named: name)
        let rendered = try TemplateRenderer.render(template, template.defaultInstance)
        GoldenFile.check(rendered.source, "\(name)-default.c")
        #expect(!rendered.source.contains("{{"))
        #expect(rendered.source.hasPrefix("// SPDX-License-Identifier: GPL-2.0"))
    }

    /// The export's flavour (kselftest.h, vm_util.c, thp_settings.c): a hugetlb and a THP test.
    @Test(arguments: ["hugetlb-share-fork-exit", "madv-collapse"])
    func kselftestRenderingMatchesGolden(name: String) throws {
        let template = try Self.catalog.template(named: name)
        let rendered = try TemplateRenderer.render(template, template.defaultInstance, flavour: .kselftest)
        GoldenFile.check(rendered.source, "\(name)-kselftest.c")
        #expect(rendered.flavour == .kselftest)
        #expect(rendered.source.contains("#include \"../kselftest.h\""))
        #expect(!rendered.source.contains("printf(\"TAP version"))
    }

    @Test func guestsAndThePatchGetTheirOwnFlavour() throws {
        let guest = try Self.catalog.render([TestSelection(name: Self.forkExit)])
        #expect(guest.map(\.flavour) == [.shootdown])
        #expect(!guest[0].source.contains("#include \"../kselftest.h\""))
        #expect(throws: ShootdownError.self) { try KselftestPatch(rendered: guest) }
        let exported = try KselftestPatch(rendered: try Self.catalog.render([TestSelection(name: Self.forkExit)], flavour: .kselftest))
        #expect(exported.tests.map(\.name) == [Self.forkExit])
    }

    /// The race test's other pin method and unshare path: their own references.
    @Test(arguments: [("gup-fast-unshare-race", "pin=iouring", "gup-fast-unshare-race-iouring.c"),
                      ("gup-fast-unshare-race", "unshare=mprotect", "gup-fast-unshare-race-mprotect.c")])
    func variantRenderingsMatchGolden(name: String, override: String, golden: String) throws {
        let template = try Self.catalog.template(named: name)
        let instance = try #require(try template.instances(overrides: [override]).first)
        GoldenFile.check(try TemplateRenderer.render(template, instance).source, golden)
    }

    /// Every unshare path renders the default golden but for its one `#define PATH` line:
    /// the paths are one program, so the golden covers them all.
    @Test func everyUnsharePathIsTheGoldenButForItsPath() throws {
        let template = try Self.catalog.template(named: "hugetlb-unshare-paths")
        let golden = try String(contentsOf: GoldenFile.directory.appendingPathComponent("hugetlb-unshare-paths-default.c"), encoding: .utf8)
        let paths = try #require(template.manifest.parameter("path")?.choices)
        #expect(paths.count == 7)
        for path in paths {
            let instance = try #require(try template.instances(overrides: ["path=\(path)"]).first)
            let source = try TemplateRenderer.render(template, instance).source
            let differing = zip(source.split(separator: "\n", omittingEmptySubsequences: false),
                                golden.split(separator: "\n", omittingEmptySubsequences: false)).filter { $0 != $1 }
            #expect(differing.allSatisfy { $0.0.hasPrefix("#define PATH \"\(path)\"") }, "\(path): \(differing.prefix(2))")
            #expect(source.split(separator: "\n").count == golden.split(separator: "\n").count)
        }
    }

    @Test func poolSizeFollowsTheParameters() throws {
        let template = try Self.catalog.template(named: Self.forkExit)
        #expect(try TemplateRenderer.render(template, template.defaultInstance).hugepages == 2 * 8 + 8)
        #expect(try Self.catalog.template(named: "madv-collapse").manifest.kselftestCategory == "thp")
        #expect(template.manifest.kselftestCategory == "hugetlb")
    }

    @Test func overridesReachTheSource() throws {
        let template = try Self.catalog.template(named: Self.forkExit)
        let instance = try #require(try template.instances(overrides: ["gib=3", "fault=corrupt"]).first)
        let rendered = try TemplateRenderer.render(template, instance)
        #expect(instance.values["gib"] == .int(3))
        #expect(rendered.source != (try TemplateRenderer.render(template, template.defaultInstance)).source)
        #expect(rendered.hugepages == 3 * 8 + 8)
    }

    @Test func sweepsExpandToOneInstanceEach() throws {
        let template = try Self.catalog.template(named: Self.forkExit)
        let instances = try template.instances(overrides: ["gib=1,4", "children=1..3"])
        #expect(instances.count == 6)
        #expect(Set(instances.compactMap { $0.values["gib"]?.intValue }) == [1, 4])
        #expect(Set(instances.compactMap { $0.values["children"]?.intValue }) == [1, 2, 3])
    }

    @Test(arguments: [
        ("gigs=2", "unknown parameter 'gigs'; it takes gib, touch, children, cycles, fault"),
        ("gib=0", "gib=0 is below the minimum 1 GiB"),
        ("gib=two", "gib takes a whole number, not 'two'"),
        ("fault=explode", "fault must be one of none, corrupt, not 'explode'"),
        ("gib", "--param takes key=value, not 'gib'"),
        ("gib=3..1", "gib: '3..1' is not a range low..high"),
    ])
    func invalidParametersSayWhatIsAllowed(override: String, message: String) throws {
        let template = try Self.catalog.template(named: Self.forkExit)
        #expect(throws: ShootdownError.invalidParameter(test: Self.forkExit, message: message)) {
            try template.instances(overrides: [override])
        }
    }

    @Test func unknownTestListsTheAvailableOnes() {
        #expect(throws: ShootdownError.unknownTest("nope", available: Self.catalog.names())) {
            try Self.catalog.template(named: "nope")
        }
    }

    @Test func templateTagsMustNameParameters() throws {
        var template = try Self.catalog.template(named: Self.forkExit)
        template.source += "\n/* {{gibs}} */\n"
        #expect(throws: ShootdownError.self) { try TemplateRenderer.render(template, template.defaultInstance) }
        #expect(TemplateRenderer.referencedNames(in: "{{% CONTENT_TYPE: TEXT}}{{a}} {{#b}}x{{/b}} {{^c}}{{/c}} {{{d}}}") == ["a", "b", "c", "d"])
    }

    @Test func sharedPartialsAreIncludedAndMissingOnesNamed() throws {
        let template = try Self.catalog.template(named: Self.forkExit)
        #expect(Set(template.partials.keys).isSuperset(of: ["tap", "clock", "hugetlb"]))
        let rendered = try TemplateRenderer.render(template, template.defaultInstance).source
        #expect(rendered.contains("static void tap_result(") && !rendered.contains("{{>"))
        var broken = template
        broken.source += "\n{{> no_such_partial}}\n"
        #expect(throws: ShootdownError.templateInvalid(path: template.directory.path,
                                                       message: "test.c.mustache includes {{> no_such_partial}}, but Templates/_common has no no_such_partial.c.mustache")) {
            try TemplateRenderer.render(broken, broken.defaultInstance)
        }
    }

    @Test func poolExpressionsAreCheckedAndEvaluated() throws {
        let expression = try PoolExpression("gib*touch + 8", known: ["gib", "touch"])
        #expect(expression.evaluate(["gib": .int(4), "touch": .int(16)]) == 72)
        #expect(throws: ShootdownError.self) { try PoolExpression("gib*pages", known: ["gib"]) }
    }

    @Test func exportWritesSourcesAndAMakefile() throws {
        let template = try Self.catalog.template(named: Self.forkExit)
        let rendered = try template.instances(overrides: ["gib=1,2"]).map { try TemplateRenderer.render(template, $0) }
        let export = SuiteExport(tests: rendered, multipleInstances: true)
        #expect(export.files.keys.sorted() == ["Makefile", "\(Self.forkExit)-gib1-touch8-children1-cycles20-faultnone.c",
                                               "\(Self.forkExit)-gib2-touch8-children1-cycles20-faultnone.c"])
        GoldenFile.check(export.files["Makefile"]!, "export-Makefile")
    }
}

/// Every template must compile cleanly for both arches with warnings as errors.
@Suite struct TemplateCompileTests {
    @Test(arguments: Arch.allCases)
    func templatesAndAgentCompile(arch: Arch) throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-compile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: cache) }
        let context = ToolContext(paths: ToolPaths(cache: cache, results: cache, resources: Repository.root, stage: cache))
        let builder = ProgramBuilder(context: context)
        let catalog = TemplateCatalog(resources: Repository.root)
        for name in catalog.names() {
            let template = try catalog.template(named: name)
            // Both sides of a deliberate fault, where the template has one.
            let faults = template.manifest.parameter("fault") == nil ? [] : ["fault=none,corrupt"]
            for instance in try template.instances(overrides: faults) {
                let binary = try builder.build(source: try TemplateRenderer.render(template, instance).source, name: name, arch: arch)
                #expect(FileManager.default.isExecutableFile(atPath: binary.path))
            }
        }
        let agent = try String(contentsOf: Repository.root.appendingPathComponent("Images/agent/agent.c"), encoding: .utf8)
        let binary = try builder.build(source: agent, name: "agent", arch: arch)
        let file = try ProcessRunner().check(Command("file", [binary.path])).stdout
        #expect(file.contains("statically linked"))
        #expect(file.contains(arch == .x86_64 ? "x86-64" : "aarch64"))
    }

    /// `shootdown generate --out DIR` must build with plain make on a normal Linux host.
    @Test func exportedSuiteBuildsWithMake() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-export-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let catalog = TemplateCatalog(resources: Repository.root)
        let rendered = try catalog.names().map { name -> RenderedTest in
            let template = try catalog.template(named: name)
            return try TemplateRenderer.render(template, template.defaultInstance)
        }
        _ = try SuiteExport(tests: rendered, multipleInstances: false).write(to: directory)
        try ProcessRunner().check(Command("make", ["-s"], workingDirectory: directory.path))
        for name in catalog.names() {
            #expect(FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent(name).path))
        }
    }

    @Test func compilerErrorsNameTheSource() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-compile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: cache) }
        let context = ToolContext(paths: ToolPaths(cache: cache, results: cache, resources: Repository.root, stage: cache))
        do {
            _ = try ProgramBuilder(context: context).build(source: "int main(void) { int unused; return 0; }\n", name: "bad", arch: .x86_64)
            Issue.record("a warning must fail the build")
        } catch let ShootdownError.commandFailed(_, _, output) {
            #expect(output.contains("unused"))
        }
    }
}

/// The guest flavour of Templates/_common/tap.c.mustache prints exactly the lines the host
/// parses (TAPReport, Verdict): built and run on the host.
@Suite struct TAPPartialTests {
    static let source = """
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
        \tif (!strcmp(mode, "trailing-plan")) {
        \t\ttap_result(1, true, "a");
        \t\ttap_plan(1);
        \t\treturn tap_finish();
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

    /// The partial alone in a program, rendered with fork-exit's manifest (any would do).
    static func build(in directory: URL) throws -> URL {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var template = try TemplateCatalog(resources: Repository.root).template(named: "hugetlb-share-fork-exit")
        template.source = source
        let rendered = try TemplateRenderer.render(template, template.defaultInstance)
        let sourceURL = directory.appendingPathComponent("tap.c"), binary = directory.appendingPathComponent("tap")
        try rendered.source.write(to: sourceURL, atomically: true, encoding: .utf8)
        try ProcessRunner().check(Command("gcc", ["-static", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                                                   "-o", binary.path, sourceURL.path]))
        return binary
    }

    @Test(arguments: [
        ("", 1, "TAP version 13\n1..2\nok 1 a\nnot ok 2 b\n# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0\n"),
        ("skip", 0, "TAP version 13\n1..2\nok 1 a\nok 2 b # SKIP not on this kernel\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n"),
        ("skip-all", 4, "TAP version 13\n1..0 # SKIP no pool\n"),
        ("bail", 1, "TAP version 13\nBail out! open: No such file or directory\n"),
        // The race templates plan last, and their records have no totals line.
        ("trailing-plan", 0, "TAP version 13\nok 1 a\n1..1\n"),
    ])
    func guestFlavourPrintsTheSameTAP(mode: String, status: Int32, stdout: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-tap-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = try ProcessRunner().run(Command(try Self.build(in: directory).path, [mode]))
        #expect(output.stdout == stdout)
        #expect(output.status == status)
    }
}
