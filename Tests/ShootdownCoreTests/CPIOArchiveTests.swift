import Foundation
import Testing
@testable import ShootdownCore

@Suite struct CPIOArchiveTests {
    static let plan = GuestPlan(hugepages: 24, probes: ["tlb_remove_table_sync_one", "huge_pmd_share"],
                                tests: [.init(id: "test", timeoutSeconds: 225, path: "/shootdown/tests/test")])

    static var image: GuestImage {
        GuestImage(agent: Data("agent-binary".utf8), plan: plan, programs: [("test", Data("test-binary!".utf8))])
    }

    @Test func listingMatchesGolden() {
        GoldenFile.check(Self.image.listing, "initramfs-listing.txt")
        GoldenFile.check(Self.plan.text, "plan.txt")
        var batch = Self.plan
        batch.batch = true
        batch.tests = ["t1", "t2"].map { .init(id: $0, timeoutSeconds: 225, path: "/shootdown/tests/\($0)") }
        GoldenFile.check(batch.text, "plan-batch.txt")
    }

    /// A saved guest boots without the plan, programs and widening module; its restored
    /// copies get them over the plan port, in the framing the agent reads.
    @Test func savedGuestsBootWithoutTheirPayload() {
        let image = GuestImage(agent: Data("agent-binary".utf8), plan: Self.plan, programs: [("test", Data("test-binary!".utf8))],
                               wideningModule: Data("ko".utf8))
        let base = image.baseArchive
        #expect(CPIOArchive.file("/init", in: base) == Data("agent-binary".utf8))
        #expect(CPIOArchive.file("/shootdown/plan", in: base) == nil)
        #expect(CPIOArchive.file("/shootdown/tests/test", in: base) == nil)
        #expect(CPIOArchive.file("/shootdown/widen/shootdown_widen.ko", in: base) == nil)
        let plan = Self.plan.text
        #expect(String(decoding: image.payload, as: UTF8.self) == "shootdown-payload 1\n"
            + "file /shootdown/plan \(plan.utf8.count)\n\(plan)"
            + "file /shootdown/tests/test 12\ntest-binary!"
            + "file /shootdown/widen/shootdown_widen.ko 2\nko"
            + "end\n")
    }

    /// Replayed guests read a boot's plan and programs back out of its archive.
    @Test func filesReadBackFromTheArchive() {
        let archive = Self.image.archive
        #expect(CPIOArchive.file("/shootdown/plan", in: archive) == Data(Self.plan.text.utf8))
        #expect(CPIOArchive.file("shootdown/tests/test", in: archive) == Data("test-binary!".utf8))
        #expect(CPIOArchive.file("/shootdown/tests/none", in: archive) == nil)
        #expect(CPIOArchive.file("/init", in: archive.prefix(200)) == nil)
    }

    /// The archive must be what the kernel's unpacker and GNU cpio read: list it with cpio.
    @Test func gnuCpioReadsTheArchive() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cpio-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let archive = directory.appendingPathComponent("initramfs.cpio")
        try Self.image.archive.write(to: archive)
        let output = try ProcessRunner().check(Command("/bin/sh", ["-c", "cpio -itv --quiet < \(archive.path)"]))
        let lines = output.stdout.split(separator: "\n")
        #expect(lines.count == Self.image.entries.count)
        #expect(lines.contains { $0.hasPrefix("crw-------") && $0.hasSuffix("dev/console") })
        #expect(lines.contains { $0.hasPrefix("-rwxr-xr-x") && $0.hasSuffix(" init") })
        let extracted = directory.appendingPathComponent("root")
        try FileManager.default.createDirectory(at: extracted, withIntermediateDirectories: true)
        _ = try ProcessRunner().check(Command("/bin/sh", ["-c", "cpio -id --quiet --no-absolute-filenames --nonmatching 'dev/console' < \(archive.path)"],
                                              workingDirectory: extracted.path))
        #expect(try String(contentsOf: extracted.appendingPathComponent("shootdown/plan"), encoding: .utf8) == Self.plan.text)
        #expect(try Data(contentsOf: extracted.appendingPathComponent("init")) == Data("agent-binary".utf8))
    }

    @Test func archivesAreReproducible() {
        #expect(Self.image.archive == Self.image.archive)
        #expect(Self.image.archive.count % 4 == 0)
    }
}
