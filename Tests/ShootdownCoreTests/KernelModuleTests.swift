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
