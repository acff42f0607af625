import Foundation

/// Builds the widening module (Images/widen/shootdown_widen.c) for one kernel: against
/// Debian's linux-headers packages for `debian:` kernels, against the kept build folder
/// for `git:`/`dir:` kernels. Where neither is possible the cell runs unwidened and says
/// why, so the outcome is a value, not an error.
public struct WideningModuleBuilder: Sendable {
    let context: ToolContext

    public init(context: ToolContext) {
        self.context = context
    }

    public enum Outcome: Sendable, Equatable {
        case built(URL)
        case unavailable(String)

        public var module: URL? {
            if case .built(let url) = self { return url }
            return nil
        }

        public var unavailableReason: String? {
            if case .unavailable(let reason) = self { return reason }
            return nil
        }
    }

    public func module(for kernel: KernelImage) -> Outcome {
        do {
            let source = try moduleSource()
            if let build = kernel.buildDirectory {
                return .built(try buildAgainst(kernelBuild: build, kernel: kernel, source: source))
            }
            if let package = DebianKernelPackage(origin: kernel.origin, arch: kernel.arch) {
                return .built(try buildAgainstHeaders(package, kernel: kernel, source: source))
            }
            return .unavailable("no headers for \(kernel.spec): a file: image has no build folder to build the widening module against")
        } catch let error as ShootdownError {
            return .unavailable("the widening module did not build for \(kernel.spec) \(kernel.arch): \(error.description)")
        } catch {
            return .unavailable("the widening module did not build for \(kernel.spec) \(kernel.arch): \(error.localizedDescription)")
        }
    }

    /// Images/widen's files, read once: hashed for the cache key, written to each build.
    struct ModuleSource {
        var files: [(name: String, data: Data)]
        var hash: String
    }

    func moduleSource() throws -> ModuleSource {
        let directory = context.paths.resources.appendingPathComponent("Images/widen")
        var hash = ContentHash()
        var files: [(name: String, data: Data)] = []
        for name in ["Kbuild", "shootdown_widen.c"] {
            let url = directory.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw ShootdownError.io(path: url.path, message: "the widening module source is missing (set SHOOTDOWN_HOME to the checkout)")
            }
            hash.update(name)
            hash.update(data)
            files.append((name, data))
        }
        return ModuleSource(files: files, hash: hash.hex)
    }

    /// A kept build folder of a source-built kernel (`make O=…`): its Makefile knows the
    /// source tree, and Module.symvers comes from the `modules` step of the build.
    func buildAgainst(kernelBuild: URL, kernel: KernelImage, source: ModuleSource) throws -> URL {
        let key = ContentHash.of(kernel.kernel.path, kernel.version, source.hash)
        return try cached(key: "built-\(key.prefix(16))", arch: kernel.arch, source: source) { work in
            var variables = ["-C", kernelBuild.path, "M=\(work.path)"]
            if kernel.arch == .aarch64 { variables += ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"] }
            return variables
        }
    }

    /// Debian's headers for the package's ABI, unpacked into the cache with the amd64
    /// kbuild package's host tools (arm64 headers point at arm64 tools otherwise).
    func buildAgainstHeaders(_ package: DebianKernelPackage, kernel: KernelImage, source: ModuleSource) throws -> URL {
        let headers = try unpackHeaders(package)
        return try cached(key: "debian-\(package.name)_\(package.debianVersion)-\(source.hash.prefix(12))", arch: kernel.arch,
                          source: source) { work in
            // Module BTF needs pahole and serves only BPF: leave it out.
            var variables = ["-C", headers.path, "M=\(work.path)", "CONFIG_DEBUG_INFO_BTF_MODULES="]
            // 6.1's .kernelvariables derive an override of CROSS_COMPILE from dpkg's host
            // type, which only a Debian package build defines; 6.12's set it outright.
            if kernel.arch == .aarch64 {
                variables += ["CROSS_COMPILE=aarch64-linux-gnu-", "DEB_HOST_ARCH=arm64", "DEB_HOST_GNU_TYPE=aarch64-linux-gnu"]
            }
            return variables
        }
    }

    /// Builds into a private folder and moves the .ko into place, so two runs building
    /// the same module never see each other's half-written file.
    func cached(key: String, arch: Arch, source: ModuleSource, arguments: (URL) -> [String]) throws -> URL {
        let directory = context.paths.cache.appendingPathComponent("widen/\(key)")
        let module = directory.appendingPathComponent("shootdown_widen.ko")
        if FileManager.default.fileExists(atPath: module.path) { return module }
        let work = context.paths.cache.appendingPathComponent("widen/.build-\(UUID().uuidString)")
        try FileManager.default.makeDirectory(work)
        defer { try? FileManager.default.removeItem(at: work) }
        for file in source.files {
            try file.data.write(to: work.appendingPathComponent(file.name))
        }
        let make = Command("make", arguments(work) + ["modules"])
        let output = try context.runner.run(make, timeout: .seconds(600))
        let built = work.appendingPathComponent("shootdown_widen.ko")
        guard output.succeeded, FileManager.default.fileExists(atPath: built.path) else {
            let lines = (output.stderr + output.stdout).lines().filter { $0.contains("error") || $0.contains("Error") }
            throw ShootdownError.io(path: work.path, message: "make modules failed: " + (lines.prefix(3).joined(separator: "; ")))
        }
        // Debug info makes the module ~10x larger, and every initramfs carries it.
        let strip = Command(arch == .aarch64 ? "aarch64-linux-gnu-objcopy" : "objcopy", ["--strip-debug", built.path])
        _ = try? context.runner.run(strip, timeout: .seconds(60))
        try FileManager.default.makeDirectory(directory)
        let staged = directory.appendingPathComponent(".shootdown_widen.ko.\(UUID().uuidString)")
        try FileManager.default.moveItem(at: built, to: staged)
        if rename(staged.path, module.path) != 0 {
            throw ShootdownError.io(path: module.path, message: String(cString: strerror(errno)))
        }
        return module
    }

    /// linux-headers-<abi>-<flavour>, -common and linux-kbuild, unpacked once per ABI.
    func unpackHeaders(_ package: DebianKernelPackage) throws -> URL {
        let flavour = package.arch.debian
        let abi = package.abi
        let root = context.paths.cache.appendingPathComponent("headers/\(abi)-\(flavour)_\(package.debianVersion)")
        let headers = root.appendingPathComponent("usr/src/linux-headers-\(abi)-\(flavour)")
        if FileManager.default.fileExists(atPath: root.appendingPathComponent(".complete").path) { return headers }
        let work = root.deletingLastPathComponent().appendingPathComponent(".download-\(UUID().uuidString)")
        try FileManager.default.makeDirectory(work)
        defer { try? FileManager.default.removeItem(at: work) }
        let headersPackage = "linux-headers-\(abi)-\(flavour)" + (package.arch == Arch.host ? "" : ":\(flavour)")
        // 6.12 backports name kbuild per ABI; 6.1 per major.minor.
        let series = abi.split(separator: ".").prefix(2).joined(separator: ".")
        var downloaded = false
        for kbuild in ["linux-kbuild-\(abi)", "linux-kbuild-\(series)"] {
            let names = [headersPackage, "linux-headers-\(abi)-common", kbuild].map { "\($0)=\(package.debianVersion)" }
            let output = try context.runner.run(Command("apt-get", ["download", "-q"] + names, workingDirectory: work.path),
                                                timeout: .seconds(300))
            if output.succeeded { downloaded = true; break }
        }
        guard downloaded else {
            throw ShootdownError.io(path: work.path, message: "apt-get download of linux-headers-\(abi)-\(flavour) \(package.debianVersion) failed (run apt-get update)")
        }
        let unpacked = work.appendingPathComponent("root")
        for deb in (try FileManager.default.contentsOfDirectory(atPath: work.path)).filter({ $0.hasSuffix(".deb") }) {
            try context.runner.check(Command("dpkg-deb", ["-x", work.appendingPathComponent(deb).path, unpacked.path]),
                                     timeout: .seconds(300))
        }
        // The flavour's Makefile includes the common tree by its absolute /usr/src path.
        let makefile = unpacked.appendingPathComponent("usr/src/linux-headers-\(abi)-\(flavour)/Makefile")
        guard var text = try? String(contentsOf: makefile, encoding: .utf8) else {
            throw ShootdownError.io(path: makefile.path, message: "the headers package has no Makefile")
        }
        text = text.replacingOccurrences(of: "include /usr/src/", with: "include \(root.path)/usr/src/")
        try text.write(to: makefile, atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: unpacked.appendingPathComponent(".complete").path, contents: nil)
        try FileManager.default.makeDirectory(root.deletingLastPathComponent())
        if rename(unpacked.path, root.path) != 0 && !FileManager.default.fileExists(atPath: root.appendingPathComponent(".complete").path) {
            throw ShootdownError.io(path: root.path, message: String(cString: strerror(errno)))
        }
        return headers
    }
}

extension DebianKernelPackage {
    /// The package a `debian:` kernel came from, read back from its origin
    /// (`linux-image-6.12.118+deb12-amd64 6.12.118-1~deb12u1`); nil for other kernels.
    init?(origin: String, arch: Arch) {
        let words = origin.split(separator: " ")
        guard words.count == 2, words[0].hasPrefix("linux-image-"), words[0].hasSuffix("-\(arch.debian)") else { return nil }
        self.init(name: String(words[0]), debianVersion: String(words[1]), arch: arch)
    }
}
