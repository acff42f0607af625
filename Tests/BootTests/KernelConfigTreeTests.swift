import Foundation
import Testing
@testable import ShootdownCore

/// shootdown's fragments on the real Debian linux-source-6.12 Kconfig, both arches:
/// everything they set survives mod2noconfig, and a setting Kconfig cannot honour is
/// reported by name. Configures only (no compile): seconds, not minutes.
@Suite(.serialized, .sharingTheHost) struct KernelConfigTreeTests {
    static func tree(_ context: ToolContext) throws -> KernelBuilder.Source {
        let tarball = try #require(KernelTreeFiles.debianSourceTarball(), "no /usr/src/linux-source-*.tar.xz: run ci/setup-host")
        let path = try SourceTarball(tarball: tarball, context: context).tree()
        return KernelBuilder.Source(path: path, commit: nil, origin: path.path, treeKey: ContentHash.of(path.path))
    }

    @Test(arguments: Arch.allCases)
    func shippedFragmentsSurviveOlddefconfig(arch: Arch) throws {
        let context = BootTests.context()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-config-\(arch)-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let builder = KernelBuilder(context: context)
        try builder.configure(source: try Self.tree(context), arch: arch, output: scratch, log: scratch.appendingPathComponent("log"),
                              spec: .dir(path: "linux-source-6.12"))
        let config = KernelConfigFragment.parse(try String(contentsOf: scratch.appendingPathComponent(".config"), encoding: .utf8))
        #expect(config["CONFIG_VIRTIO_CONSOLE"] == "y")
        #expect(config["CONFIG_HUGETLB_PMD_PAGE_TABLE_SHARING"] == "y")
        #expect(config["CONFIG_MODULES"] == "y")
        // mod2noconfig left no module to build: drivers are built in or off.
        #expect(!config.values.contains("m"))
    }

    /// --flavour debug and debug-kasan: every setting of their fragments survives too.
    @Test(arguments: [(Arch.x86_64, KernelFlavour.debugKasan), (Arch.aarch64, KernelFlavour.debug)])
    func debugFlavoursSurvive(arch: Arch, flavour: KernelFlavour) throws {
        let context = BootTests.context()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-config-\(flavour.rawValue)-\(arch)-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        var request = RunRequest()
        request.flavour = flavour
        let builder = KernelBuilder(context: context, extraFragments: request.kernelFragments(resources: context.paths.resources))
        try builder.configure(source: try Self.tree(context), arch: arch, output: scratch, log: scratch.appendingPathComponent("log"),
                              spec: .dir(path: "linux-source-6.12"))
        let config = KernelConfigFragment.parse(try String(contentsOf: scratch.appendingPathComponent(".config"), encoding: .utf8))
        #expect(config["CONFIG_PAGE_TABLE_CHECK_ENFORCED"] == "y")
        #expect(config["CONFIG_DEBUG_VM"] == "y")
        #expect(config["CONFIG_KASAN"] == (flavour == .debugKasan ? "y" : "n"))
    }

    @Test func impossibleSettingsAreListed() throws {
        let context = BootTests.context()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-config-bad-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        // KVM_GUEST is x86-only, and HUGETLBFS cannot be off while HUGETLB_PAGE is wanted.
        let fragment = scratch.appendingPathComponent("user.config")
        try "CONFIG_KVM_GUEST=y\nCONFIG_NO_SUCH_OPTION_SHOOTDOWN=y\n".write(to: fragment, atomically: true, encoding: .utf8)
        let builder = KernelBuilder(context: context, extraFragments: [fragment])
        do {
            try builder.configure(source: try Self.tree(context), arch: .aarch64, output: scratch.appendingPathComponent("out"),
                                  log: scratch.appendingPathComponent("log"), spec: .dir(path: "linux-source-6.12"))
            Issue.record("impossible settings were accepted")
        } catch let error as ShootdownError {
            #expect(error.description.contains("CONFIG_KVM_GUEST=y (got n, from user.config)"))
            #expect(error.description.contains("CONFIG_NO_SUCH_OPTION_SHOOTDOWN=y (got n, from user.config)"))
        }
    }
}
