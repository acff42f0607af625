import Foundation
import Testing
@testable import ShootdownCore

/// Answers commands from a table; records what was asked.
final class ScriptedRunner: CommandRunning, @unchecked Sendable {
    var answers: [(prefix: [String], output: CommandOutput)]
    private(set) var commands: [Command] = []

    init(_ answers: [(prefix: [String], output: CommandOutput)]) {
        self.answers = answers
    }

    func run(_ command: Command, timeout: Duration?) throws -> CommandOutput {
        commands.append(command)
        let words = [command.executable] + command.arguments
        guard let answer = answers.first(where: { words.starts(with: $0.prefix) }) else {
            return CommandOutput(status: 127, stderr: "not scripted: \(words.joined(separator: " "))")
        }
        return answer.output
    }
}

@Suite struct DebianKernelTests {
    static let search = """
        linux-image-6.1.0-55-amd64 - Linux 6.1 for 64-bit PCs (signed)
        linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)
        linux-image-6.1.0-56-amd64-dbg - Debug symbols for linux-image-6.1.0-56-amd64
        linux-image-6.1.0-56-rt-amd64 - Linux 6.1 for 64-bit PCs, PREEMPT_RT (signed)
        linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
        linux-image-6.12-amd64 - Linux for 64-bit PCs (meta-package)
        linux-image-6.12.115+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
        linux-image-6.12.117+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
        linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
        linux-image-6.12.117+deb12-arm64 - Linux 6.12 for 64-bit ARMv8 machines (signed)
        """
    static let show = """
        Package: linux-image-6.1.0-55-amd64
        Architecture: amd64
        Version: 6.1.190-1

        Package: linux-image-6.1.0-56-amd64
        Architecture: amd64
        Version: 6.1.192-2
        Description: Linux 6.1 for 64-bit PCs (signed)
         The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or VIA Nano processors.

        Package: linux-image-6.12.115+deb12-amd64
        Architecture: amd64
        Version: 6.12.115-2~deb12u1

        Package: linux-image-6.12.117+deb12-amd64
        Architecture: amd64
        Version: 6.12.117-1~deb12u1
        """

    static func kernels() -> DebianKernels {
        let runner = ScriptedRunner([(["apt-cache", "search"], CommandOutput(status: 0, stdout: search)),
                                     (["apt-cache", "show"], CommandOutput(status: 0, stdout: show))])
        let cache = URL(fileURLWithPath: "/nonexistent-shootdown-cache")
        return DebianKernels(context: ToolContext(paths: ToolPaths(cache: cache, results: cache, resources: cache, stage: cache),
                                                  runner: runner, log: { _ in }))
    }

    @Test func listsPlainKernelsOnlyOrderedByVersion() throws {
        let names = DebianKernels.packageNames(inSearchOutput: Self.search, arch: .x86_64)
        #expect(names == ["linux-image-6.1.0-55-amd64", "linux-image-6.1.0-56-amd64",
                          "linux-image-6.12.115+deb12-amd64", "linux-image-6.12.117+deb12-amd64"])
        let packages = try Self.kernels().available(arch: .x86_64)
        #expect(packages.map(\.version) == ["6.1.190", "6.1.192", "6.12.115", "6.12.117"])
    }

    /// apt-cache takes over a second a call: its answer is kept until apt's lists or
    /// dpkg's architectures change.
    @Test func theAptAnswerIsKeptUntilAptChanges() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("debian-index-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: cache) }
        let runner = ScriptedRunner([(["apt-cache", "search"], CommandOutput(status: 0, stdout: Self.search)),
                                     (["apt-cache", "show"], CommandOutput(status: 0, stdout: Self.show))])
        let kernels = DebianKernels(context: ToolContext(paths: ToolPaths(cache: cache, results: cache, resources: cache, stage: cache),
                                                         runner: runner, log: { _ in }))
        let first = try kernels.available(arch: .x86_64)
        #expect(runner.commands.count == 2)
        #expect(try kernels.available(arch: .x86_64) == first)
        #expect(runner.commands.count == 2, "apt was asked again with nothing changed")
        // Another apt state: the kept answer is stale.
        let index = cache.appendingPathComponent("kernels/debian/index-x86_64.json")
        let stale = try String(contentsOf: index, encoding: .utf8).replacingOccurrences(of: DebianKernels.aptState(), with: "before an update")
        try stale.write(to: index, atomically: true, encoding: .utf8)
        #expect(try kernels.available(arch: .x86_64) == first)
        #expect(runner.commands.count == 4)
    }

    @Test func resolvesNewestUpstreamAndABIVersions() throws {
        let kernels = Self.kernels()
        #expect(try kernels.package(version: nil, arch: .x86_64).name == "linux-image-6.12.117+deb12-amd64")
        #expect(try kernels.package(version: "6.1.192", arch: .x86_64).name == "linux-image-6.1.0-56-amd64")
        #expect(try kernels.package(version: "6.1.0-55", arch: .x86_64).debianVersion == "6.1.190-1")
    }

    @Test func unknownVersionListsWhatIsAvailable() {
        #expect(throws: ShootdownError.kernelNotFound(spec: "debian:6.12.999",
                                                      available: ["6.12.117", "6.12.115", "6.1.192", "6.1.190"])) {
            try Self.kernels().package(version: "6.12.999", arch: .x86_64)
        }
    }

    @Test func specsParseAndExplainMistakes() throws {
        #expect(try KernelSpec(parsing: "debian") == .debian(version: nil))
        #expect(try KernelSpec(parsing: "debian:6.1.192") == .debian(version: "6.1.192"))
        #expect(try KernelSpec(parsing: "file:/boot/vmlinuz") == .file(path: "/boot/vmlinuz"))
        #expect(try KernelSpec(parsing: "git:/src/linux@v6.12") == .git(tree: "/src/linux", ref: "v6.12"))
        #expect(try KernelSpec(parsing: "git:/src/linux") == .git(tree: "/src/linux", ref: "HEAD"))
        #expect(try KernelSpec(parsing: "git:/src/a@b/linux@HEAD~3") == .git(tree: "/src/a@b/linux", ref: "HEAD~3"))
        #expect(try KernelSpec(parsing: "dir:/usr/src/linux-source-6.12") == .dir(path: "/usr/src/linux-source-6.12"))
        #expect(throws: ShootdownError.self) { try KernelSpec(parsing: "svn:linux@v6.12") }
        #expect(throws: ShootdownError.self) { try KernelSpec(parsing: "git:@v6.12") }
        #expect(throws: ShootdownError.self) { try KernelSpec(parsing: "file:") }
    }

    @Test func imageFormatTellsTheArch() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var bzImage = Data(count: 0x400)
        bzImage.replaceSubrange(0x202..<0x206, with: Data("HdrS".utf8))
        var image = Data(count: 0x400)
        image.replaceSubrange(0x38..<0x3c, with: Data([0x41, 0x52, 0x4d, 0x64]))
        let x86 = directory.appendingPathComponent("vmlinuz-6.12.0-test"), arm = directory.appendingPathComponent("Image")
        try bzImage.write(to: x86)
        try image.write(to: arm)
        let config = "# Linux/x86 6.12.0 Kernel Configuration\nCONFIG_HUGETLBFS=y\nCONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\n"
        try config.write(to: directory.appendingPathComponent("config-6.12.0-test"), atomically: true, encoding: .utf8)
        #expect(try KernelFormat.arch(ofImageAt: x86) == .x86_64)
        #expect(try KernelFormat.arch(ofImageAt: arm) == .aarch64)
        #expect(throws: ShootdownError.self) { try KernelFormat.arch(ofImageAt: directory.appendingPathComponent("config-6.12.0-test")) }

        let cache = directory.appendingPathComponent("cache")
        let resolver = KernelResolver(context: ToolContext(paths: ToolPaths(cache: cache, results: cache, resources: cache, stage: cache)))
        let resolved = try resolver.resolve(.file(path: x86.path), arch: .x86_64)
        #expect(resolved.version == "6.12.0")
        #expect(resolved.configValue("CONFIG_HUGETLBFS") == "y")
        #expect(try resolver.naturalArches(.file(path: arm.path)) == [.aarch64])
        #expect(throws: ShootdownError.kernelUnusable(spec: "file:\(arm.path)", reason: "it is an aarch64 kernel; run it with --arch aarch64")) {
            try resolver.resolve(.file(path: arm.path), arch: .x86_64)
        }
        // A file: kernel whose result channel drivers are modules cannot work: say so up front.
        try config.replacingOccurrences(of: "CONFIG_VIRTIO_CONSOLE=y", with: "CONFIG_VIRTIO_CONSOLE=m")
            .write(to: directory.appendingPathComponent("config-6.12.0-test"), atomically: true, encoding: .utf8)
        #expect(throws: ShootdownError.self) { try resolver.resolve(.file(path: x86.path), arch: .x86_64) }
    }
}
