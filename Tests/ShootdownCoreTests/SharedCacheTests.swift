import Foundation
import Testing
@testable import ShootdownCore

/// Stands in for the kernel build system, apt and the compiler; git runs for real.
/// `make <image>` reads the tree's Kconfig at the start and again at the end (a build reads
/// sources throughout), so a checkout of another ref in between shows in the image.
final class FakeToolchain: CommandRunning, @unchecked Sendable {
    let real = ProcessRunner()
    let buildTime: TimeInterval
    let lock = NSLock()
    private(set) var compiles = 0
    private(set) var downloads = 0

    init(buildTime: TimeInterval = 0.4) { self.buildTime = buildTime }

    static let config = "CONFIG_SHOOTDOWN_TEST=y\nCONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\n"

    func run(_ command: Command, timeout: Duration?) throws -> CommandOutput {
        let words = [command.executable] + command.arguments
        func value(_ prefix: String) -> String? {
            words.flatMap { $0.split(separator: " ").map(String.init) }.first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        }
        switch command.executable {
        case "git": return try real.run(command, timeout: timeout)
        case "/bin/sh" where words.joined(separator: " ").contains("command -v"):
            return CommandOutput(status: 0, stdout: "/usr/bin/fake\n")
        case "/bin/sh":
            let line = command.arguments.last ?? ""
            if line.contains("merge_config.sh") { return CommandOutput(status: 0) }
            guard let output = value("O=").map(URL.init(fileURLWithPath:)) else { return try real.run(command, timeout: timeout) }
            let source = URL(fileURLWithPath: line.split(separator: " ").drop { $0 != "-C" }.dropFirst().first.map(String.init) ?? "/")
            if line.contains("mod2noconfig") {
                try Self.config.write(to: output.appendingPathComponent(".config"), atomically: true, encoding: .utf8)
            } else if line.contains(" bzImage") {
                let before = try String(contentsOf: source.appendingPathComponent("Kconfig"), encoding: .utf8)
                Thread.sleep(forTimeInterval: buildTime)
                let after = try String(contentsOf: source.appendingPathComponent("Kconfig"), encoding: .utf8)
                let boot = output.appendingPathComponent("arch/x86/boot")
                try FileManager.default.createDirectory(at: boot, withIntermediateDirectories: true)
                try "image of \(before == after ? after : "a mix of \(before) and \(after)")"
                    .write(to: boot.appendingPathComponent("bzImage"), atomically: true, encoding: .utf8)
                try "map\n".write(to: output.appendingPathComponent("System.map"), atomically: true, encoding: .utf8)
            }
            return CommandOutput(status: 0)
        case "make":
            return CommandOutput(status: 0, stdout: "6.12.0-test\n")
        case "apt-get":
            lock.withLock { downloads += 1 }
            let directory = URL(fileURLWithPath: command.workingDirectory!)
            try Data("deb".utf8).write(to: directory.appendingPathComponent("linux-image.deb"))
            return CommandOutput(status: 0)
        case "dpkg-deb":
            let boot = URL(fileURLWithPath: command.arguments[2]).appendingPathComponent("boot")
            try FileManager.default.createDirectory(at: boot, withIntermediateDirectories: true)
            let release = "6.12.117+deb12-amd64"
            Thread.sleep(forTimeInterval: buildTime / 4)
            try Data(count: 1 << 20).write(to: boot.appendingPathComponent("vmlinuz-\(release)"))
            try Self.config.write(to: boot.appendingPathComponent("config-\(release)"), atomically: true, encoding: .utf8)
            try "map\n".write(to: boot.appendingPathComponent("System.map-\(release)"), atomically: true, encoding: .utf8)
            return CommandOutput(status: 0)
        default:
            if command.executable == Arch.host.compiler, let index = command.arguments.firstIndex(of: "-o") {
                lock.withLock { compiles += 1 }
                // Like gcc: the output is created at the start and written at the end.
                let fd = open(command.arguments[index + 1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
                guard fd >= 0 else { return CommandOutput(status: 1, stderr: "cannot open output") }
                Thread.sleep(forTimeInterval: buildTime / 2)
                let text = Array("#!/bin/sh\necho built\n".utf8)
                _ = write(fd, text, text.count)
                close(fd)
                return CommandOutput(status: 0)
            }
            return CommandOutput(status: 127, stderr: "not faked: \(words.joined(separator: " "))")
        }
    }
}

@Suite struct SharedCacheTests {
    /// A scratch world: a git tree with tags v1 and v2 (Kconfig says which), a cache, and
    /// resources with one config fragment.
    static func world(buildTime: TimeInterval = 0.4) throws -> (root: URL, tree: URL, context: ToolContext, runner: FakeToolchain) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("shared-\(UUID().uuidString)")
        let tree = root.appendingPathComponent("linux"), resources = root.appendingPathComponent("resources")
        try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: resources.appendingPathComponent("Images/config"), withIntermediateDirectories: true)
        for name in ["common", "x86_64", "aarch64"] {
            try "CONFIG_SHOOTDOWN_TEST=y\n".write(to: resources.appendingPathComponent("Images/config/\(name).config"), atomically: true, encoding: .utf8)
        }
        func git(_ arguments: [String]) throws {
            try ProcessRunner().check(Command("git", ["-C", tree.path, "-c", "user.name=t", "-c", "user.email=t@t"] + arguments))
        }
        try git(["init", "--quiet"])
        for version in ["v1", "v2"] {
            try "\(version)\n".write(to: tree.appendingPathComponent("Kconfig"), atomically: true, encoding: .utf8)
            try git(["add", "Kconfig"])
            try git(["commit", "--quiet", "-m", version])
            try git(["tag", version])
        }
        let runner = FakeToolchain(buildTime: buildTime)
        let context = ToolContext(paths: ToolPaths(cache: root.appendingPathComponent("cache"), results: root, resources: resources, stage: root),
                                  runner: runner, log: { _ in })
        return (root, tree, context, runner)
    }

    static func concurrently<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> T) -> [Result<T, any Error>] {
        let results = Locked<[Int: Result<T, any Error>]>([:])
        DispatchQueue.concurrentPerform(iterations: count) { index in
            let result = Result { try body(index) }
            results.withLock { $0[index] = result }
        }
        return results.withLock { dict in (0..<count).map { dict[$0]! } }
    }

    static func text(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "missing \(url.path)" }

    @Test func twoRunsOnOneTreeWithDifferentRefsEachGetTheirOwnCommit() throws {
        let world = try Self.world()
        defer { try? FileManager.default.removeItem(at: world.root) }
        let refs = ["v1", "v2", "v1", "v2"]
        let results = Self.concurrently(refs.count) { index in
            try KernelBuilder(context: world.context).build(.git(tree: world.tree.path, ref: refs[index]), arch: .x86_64)
        }
        for (ref, result) in zip(refs, results) {
            let image = try result.get()
            #expect(Self.text(image.kernel) == "image of \(ref)\n", "\(ref) got \(Self.text(image.kernel))")
            let commit = try ProcessRunner().check(Command("git", ["-C", world.tree.path, "rev-parse", ref])).stdout
            #expect(image.kernel.path.contains("/kernels/built/\(commit.prefix(16))-x86_64-"))
        }
    }

    @Test func aDirTreeEditedAndRebuiltKeepsTheEarlierImage() throws {
        let world = try Self.world(buildTime: 0)
        defer { try? FileManager.default.removeItem(at: world.root) }
        let builder = KernelBuilder(context: world.context)
        try "one\n".write(to: world.tree.appendingPathComponent("Kconfig"), atomically: true, encoding: .utf8)
        let first = try builder.build(.dir(path: world.tree.path), arch: .x86_64)
        try "two\n".write(to: world.tree.appendingPathComponent("Kconfig"), atomically: true, encoding: .utf8)
        let second = try builder.build(.dir(path: world.tree.path), arch: .x86_64)
        #expect(Self.text(second.kernel) == "image of two\n")
        #expect(Self.text(first.kernel) == "image of one\n", "the rebuild overwrote the image an earlier result points at")
        #expect(first.kernel != second.kernel)
        // Unchanged content, same key: a rebuild of the same tree reuses the folder.
        try "one\n".write(to: world.tree.appendingPathComponent("Kconfig"), atomically: true, encoding: .utf8)
        #expect(try builder.build(.dir(path: world.tree.path), arch: .x86_64).kernel == first.kernel)
    }

    @Test func twoBuildsOfTheSameProgramBothSucceed() throws {
        let world = try Self.world()
        defer { try? FileManager.default.removeItem(at: world.root) }
        let results = Self.concurrently(4) { _ in
            try ProgramBuilder(context: world.context).build(source: "int main(void) { return 0; }\n", name: "same", arch: .host)
        }
        let paths = try results.map { try $0.get() }
        #expect(Set(paths).count == 1)
        #expect(Self.text(paths[0]) == "#!/bin/sh\necho built\n")
        let left = try FileManager.default.contentsOfDirectory(atPath: paths[0].deletingLastPathComponent().path)
        #expect(!left.contains { $0.hasSuffix(".partial") }, "left behind: \(left)")
    }

    @Test func aDebianKernelFolderIsNeverReplacedUnderAReader() throws {
        let world = try Self.world(buildTime: 0.2)
        defer { try? FileManager.default.removeItem(at: world.root) }
        let kernels = DebianKernels(context: world.context)
        let package = DebianKernelPackage(name: "linux-image-6.12.117+deb12-amd64", debianVersion: "6.12.117-1~deb12u1", arch: .x86_64)
        let directory = kernels.cacheDirectory(for: package)
        let first = try kernels.download(package, into: directory, spec: "debian:6.12.117")
        let inode = try FileManager.default.attributesOfItem(atPath: first.kernel.path)[.systemFileNumber] as? UInt64

        // A reader stages (hard-links) the kernel over and over while two more runs download
        // the same package into the same cache.
        let stop = Locked(false), failures = Locked(0)
        let reader = Thread {
            var count = 0
            while !stop.withLock({ $0 }) {
                let staged = world.root.appendingPathComponent("stage-\(count)")
                if link(first.kernel.path, staged.path) != 0 { failures.withLock { $0 += 1 } }
                unlink(staged.path)
                count += 1
            }
        }
        reader.start()
        let downloads = Self.concurrently(2) { _ in try kernels.download(package, into: directory, spec: "debian:6.12.117") }
        stop.withLock { $0 = true }
        Thread.sleep(forTimeInterval: 0.05)
        for result in downloads { #expect(try result.get().kernel == first.kernel) }
        #expect(failures.withLock { $0 } == 0, "a reader found the kernel missing")
        #expect(try FileManager.default.attributesOfItem(atPath: first.kernel.path)[.systemFileNumber] as? UInt64 == inode,
                "the complete folder was replaced")
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.deletingLastPathComponent().path)
        #expect(left == [directory.lastPathComponent], "left behind: \(left)")
    }

    @Test func anIncompleteLeftoverIsReplaced() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("publish-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let final = root.appendingPathComponent("kernel"), staging = root.appendingPathComponent(".staging")
        try FileManager.default.createDirectory(at: final, withIntermediateDirectories: true)
        try "half".write(to: final.appendingPathComponent("vmlinuz"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        try "whole".write(to: staging.appendingPathComponent("done"), atomically: true, encoding: .utf8)
        let complete: (URL) -> Bool = { FileManager.default.fileExists(atPath: $0.appendingPathComponent("done").path) }
        #expect(try publishDirectory(staging, at: final, isComplete: complete) == final)
        #expect(complete(final))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path) == ["kernel"])
    }

    /// Two runs sharing one cache and one git tree, each with its own ref: kernel, program
    /// and Debian kernel all come out right for both.
    @Test func twoConcurrentUsersOfOneCacheAndOneTree() throws {
        let world = try Self.world()
        defer { try? FileManager.default.removeItem(at: world.root) }
        let package = DebianKernelPackage(name: "linux-image-6.12.117+deb12-amd64", debianVersion: "6.12.117-1~deb12u1", arch: .x86_64)
        let refs = ["v1", "v2"]
        let results = Self.concurrently(2) { index -> (KernelImage, URL, KernelImage) in
            let kernel = try KernelBuilder(context: world.context).build(.git(tree: world.tree.path, ref: refs[index]), arch: .x86_64)
            let program = try ProgramBuilder(context: world.context).build(source: "int main(void) { return 1; }\n", name: "t", arch: .host)
            let kernels = DebianKernels(context: world.context)
            let debian = try kernels.download(package, into: kernels.cacheDirectory(for: package), spec: "debian:6.12.117")
            return (kernel, program, debian)
        }
        for (ref, result) in zip(refs, results) {
            let (kernel, program, debian) = try result.get()
            #expect(Self.text(kernel.kernel) == "image of \(ref)\n")
            #expect(FileManager.default.isExecutableFile(atPath: program.path))
            #expect(FileManager.default.fileExists(atPath: debian.kernel.path))
        }
    }

    /// Runs unpacking one source tarball at once all use one tree, which none replaces
    /// under another (a kernel build may be reading it).
    @Test func aSourceTreeUnpackedByConcurrentRunsIsNeverReplaced() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tarball-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let content = root.appendingPathComponent("content/linux-source-9.9")
        try FileManager.default.createDirectory(at: content, withIntermediateDirectories: true)
        try "all:\n".write(to: content.appendingPathComponent("Makefile"), atomically: true, encoding: .utf8)
        let tarball = root.appendingPathComponent("linux-source-9.9.tar.xz")
        try ProcessRunner().check(Command("tar", ["-cJf", tarball.path, "-C", content.deletingLastPathComponent().path, "linux-source-9.9"]))
        let context = ToolContext(paths: ToolPaths(cache: root.appendingPathComponent("cache"), results: root, resources: root, stage: root),
                                  log: { _ in })
        let inodes = Self.concurrently(6) { _ -> UInt64? in
            let tree = try SourceTarball(tarball: tarball, context: context).tree()
            return try FileManager.default.attributesOfItem(atPath: tree.appendingPathComponent("Makefile").path)[.systemFileNumber] as? UInt64
        }
        let tree = try SourceTarball(tarball: tarball, context: context).tree()
        let now = try FileManager.default.attributesOfItem(atPath: tree.appendingPathComponent("Makefile").path)[.systemFileNumber] as? UInt64
        for inode in inodes { #expect(try inode.get() == now, "a run's tree was replaced after it was handed out") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: tree.deletingLastPathComponent().path).filter { !$0.hasPrefix(".") }
                == ["linux-source-9.9"])
    }
}
