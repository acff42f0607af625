import Foundation
import Testing
@testable import ShootdownCore

@Suite struct KernelModuleTests {
    /// A fake module: some ELF-ish bytes, then a .modinfo-like run of NUL-separated pairs.
    static func module(_ name: String, depends: [String]) -> Data {
        Data([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2]) + Data("\0license=GPL\0depends=\(depends.joined(separator: ","))\0name=\(name)\0".utf8)
    }

    @Test func readsDependsFromModinfo() {
        #expect(GuestModules.dependencies(ofModule: Self.module("virtio_pci", depends: ["virtio", "virtio_ring"])) == ["virtio", "virtio_ring"])
        #expect(GuestModules.dependencies(ofModule: Self.module("virtio", depends: [])) == [])
        #expect(GuestModules.dependencies(ofModule: Data("no modinfo here".utf8)) == [])
    }

    @Test func neededFollowsTheConfig() throws {
        let debian61 = ["CONFIG_VIRTIO": "m", "CONFIG_VIRTIO_PCI": "m", "CONFIG_VIRTIO_CONSOLE": "m"]
        #expect(try GuestModules.needed(config: { debian61[$0] }, spec: "k") == ["virtio", "virtio_pci", "virtio_console"])
        let debian612 = ["CONFIG_VIRTIO": "y", "CONFIG_VIRTIO_PCI": "y", "CONFIG_VIRTIO_CONSOLE": "y"]
        #expect(try GuestModules.needed(config: { debian612[$0] }, spec: "k") == nil)
        #expect(throws: ShootdownError.self) {
            try GuestModules.needed(config: { $0 == "CONFIG_VIRTIO_CONSOLE" ? nil : "y" }, spec: "k")
        }
    }

    @Test func collectsTheClosureDependenciesFirst() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("modules-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let tree = root.appendingPathComponent("lib/modules/6.1.0-56-amd64/kernel/drivers")
        let files: [(String, String, [String])] = [
            ("virtio/virtio.ko", "virtio", []),
            ("virtio/virtio_ring.ko", "virtio_ring", []),
            ("virtio/virtio_pci_modern_dev.ko", "virtio_pci_modern_dev", []),
            ("virtio/virtio_pci_legacy_dev.ko", "virtio_pci_legacy_dev", []),
            ("virtio/virtio_pci.ko", "virtio_pci", ["virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_ring", "virtio"]),
            ("char/virtio_console.ko", "virtio_console", ["virtio_ring", "virtio"]),
            ("net/unrelated.ko", "unrelated", []),
        ]
        for (path, name, depends) in files {
            let url = tree.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Self.module(name, depends: depends).write(to: url)
        }
        let destination = root.appendingPathComponent("out")
        let order = try GuestModules.collect(["virtio", "virtio_pci", "virtio_console"],
                                             from: root.appendingPathComponent("lib/modules/6.1.0-56-amd64"),
                                             into: destination, runner: ProcessRunner(), spec: "k")
        #expect(order == ["virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci_legacy_dev.ko", "virtio_ring.ko",
                          "virtio_pci.ko", "virtio_console.ko"])
        #expect(!FileManager.default.fileExists(atPath: destination.appendingPathComponent("unrelated.ko").path))
        #expect(throws: ShootdownError.kernelUnusable(spec: "k", reason: "module missing_one is missing from the package")) {
            try GuestModules.collect(["missing_one"], from: tree, into: destination, runner: ProcessRunner(), spec: "k")
        }
    }

    @Test func imageCarriesModulesAndTheirOrder() {
        let image = GuestImage(agent: Data("a".utf8), plan: GuestPlan(hugepages: 0, probes: [], tests: []), programs: [],
                               modules: [("virtio.ko", Data("1".utf8)), ("virtio_console.ko", Data("2".utf8))])
        GoldenFile.check(image.listing, "initramfs-listing-modules.txt")
        guard case .file(let order)? = image.entries.first(where: { $0.path == "/shootdown/modules/order" })?.kind else {
            Issue.record("no order file")
            return
        }
        #expect(String(decoding: order, as: UTF8.self) == "virtio.ko\nvirtio_console.ko\n")
    }
}

@Suite struct KernelBuildKeyTests {
    @Test func buildFoldersAreKeyedByTreeArchAndConfig() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let context = ToolContext(paths: ToolPaths(cache: scratch, results: scratch, resources: Repository.root, stage: scratch))
        let tree = KernelBuilder.Source(path: scratch, commit: "abc", origin: "t", treeKey: "1111111111")
        let other = KernelBuilder.Source(path: scratch, commit: "def", origin: "t", treeKey: "1111111111")
        let plain = KernelBuilder(context: context)
        // Another commit of the same tree reuses the folder: that is what makes it incremental.
        #expect(try plain.buildDirectory(source: tree, arch: .x86_64) == plain.buildDirectory(source: other, arch: .x86_64))
        #expect(try plain.buildDirectory(source: tree, arch: .x86_64) != plain.buildDirectory(source: tree, arch: .aarch64))
        let fragment = scratch.appendingPathComponent("extra.config")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        try "CONFIG_KASAN=y\n".write(to: fragment, atomically: true, encoding: .utf8)
        #expect(try KernelBuilder(context: context, extraFragments: [fragment]).buildDirectory(source: tree, arch: .x86_64)
                != plain.buildDirectory(source: tree, arch: .x86_64))
    }

    @Test func lostSettingsAreNamedWithTheirFragment() {
        let fragment = KernelConfigFragment(path: "/x/common.config", text: "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"s\"\n")
        #expect(KernelConfigFragment.lost([fragment], finalConfig: "CONFIG_A=y\nCONFIG_C=\"s\"\n").isEmpty)
        #expect(KernelConfigFragment.lost([fragment], finalConfig: "CONFIG_A=m\nCONFIG_B=y\n")
                == ["CONFIG_A=y (got m, from common.config)", "CONFIG_B=n (got y, from common.config)", "CONFIG_C=\"s\" (got n, from common.config)"])
    }

    @Test func firstBuildErrorIsFound() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: log) }
        try "*** Default configuration is based on 'x86_64_defconfig'\n  CC      mm/a.o\nmake[2]: *** [mm/hugetlb.o] Error 1\nmm/hugetlb.c:12:5: error: 'x' undeclared\n"
            .write(to: log, atomically: true, encoding: .utf8)
        #expect(KernelBuilder.firstError(inLog: log) == "mm/hugetlb.c:12:5: error: 'x' undeclared (\(log.path):4)")
        try "*** Default configuration is based on 'x86_64_defconfig'\nmake[1]: *** [Makefile:1] Error 2\n".write(to: log, atomically: true, encoding: .utf8)
        #expect(KernelBuilder.firstError(inLog: log) == "make[1]: *** [Makefile:1] Error 2 (\(log.path):2)")
    }
}

@Suite struct GitCheckoutTests {
    /// git: specs build from shootdown's own worktree: the user's working tree, branch and
    /// uncommitted changes stay as they are, and a second ref reuses the worktree.
    @Test func refsAreCheckedOutInOurOwnWorktree() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("gitsrc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let tree = root.appendingPathComponent("linux")
        try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        let runner = ProcessRunner()
        func git(_ arguments: [String]) throws -> String {
            try runner.check(Command("git", ["-C", tree.path, "-c", "user.name=t", "-c", "user.email=t@t"] + arguments)).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        _ = try git(["init", "--quiet"])
        try "v1\n".write(to: tree.appendingPathComponent("Kconfig"), atomically: true, encoding: .utf8)
        _ = try git(["add", "Kconfig"])
        _ = try git(["commit", "--quiet", "-m", "one"])
        _ = try git(["tag", "v1"])
        try "v2\n".write(to: tree.appendingPathComponent("Kconfig"), atomically: true, encoding: .utf8)
        _ = try git(["commit", "--quiet", "-am", "two"])
        try "uncommitted\n".write(to: tree.appendingPathComponent("Kconfig"), atomically: true, encoding: .utf8)

        let context = ToolContext(paths: ToolPaths(cache: root.appendingPathComponent("cache"), results: root, resources: root, stage: root),
                                  log: { _ in })
        let builder = KernelBuilder(context: context)
        let first = try builder.source(for: .git(tree: tree.path, ref: "v1"))
        #expect(try String(contentsOf: first.path.appendingPathComponent("Kconfig"), encoding: .utf8) == "v1\n")
        #expect(first.commit == (try git(["rev-parse", "v1"])))
        #expect(first.origin.hasPrefix("\(tree.path)@v1 ("))
        let second = try builder.source(for: .git(tree: tree.path, ref: "HEAD"))
        #expect(second.path.standardizedFileURL.path == first.path.standardizedFileURL.path)
        #expect(try String(contentsOf: second.path.appendingPathComponent("Kconfig"), encoding: .utf8) == "v2\n")
        #expect(try String(contentsOf: tree.appendingPathComponent("Kconfig"), encoding: .utf8) == "uncommitted\n")
        #expect(try git(["rev-parse", "--abbrev-ref", "HEAD"]) != "HEAD")
        #expect(throws: ShootdownError.self) { try builder.source(for: .git(tree: tree.path, ref: "no-such-ref")) }
    }
}
