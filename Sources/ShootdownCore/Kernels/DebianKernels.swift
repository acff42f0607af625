import Foundation

/// A linux-image package in the configured Debian archive.
public struct DebianKernelPackage: Sendable, Codable, Equatable, Comparable {
    public var name: String
    public var debianVersion: String
    public var arch: Arch

    /// Upstream version: 6.12.117-1~deb12u1 → 6.12.117, 1:6.1.192-2 → 6.1.192.
    public var version: String {
        var text = debianVersion
        if let colon = text.firstIndex(of: ":") { text = String(text[text.index(after: colon)...]) }
        if let dash = text.lastIndex(of: "-") { text = String(text[..<dash]) }
        return text
    }

    /// The ABI part of the name: linux-image-6.1.0-56-amd64 → 6.1.0-56.
    public var abi: String {
        String(name.dropFirst("linux-image-".count).dropLast(arch.debian.count + 1))
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        let left = versionKey(lhs.version), right = versionKey(rhs.version)
        return left == right ? lhs.debianVersion < rhs.debianVersion : left.lexicographicallyPrecedes(right)
    }

    static func versionKey(_ version: String) -> [Int] {
        version.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    }
}

/// The `debian:` kernel provider: finds linux-image packages with apt, downloads and
/// extracts vmlinuz, config and System.map once into the cache.
public struct DebianKernels: Sendable {
    let context: ToolContext

    public init(context: ToolContext) {
        self.context = context
    }

    /// Every plain linux-image package for the arch (no -rt, -cloud, -dbg or -unsigned).
    /// The two apt-cache calls take 1–1.5 s each, per arch, on every run: the answer is
    /// kept until apt's package lists or dpkg's architectures change.
    public func available(arch: Arch) throws -> [DebianKernelPackage] {
        struct Index: Codable { var aptState: String; var packages: [DebianKernelPackage] }
        let file = context.paths.cache.appendingPathComponent("kernels/debian/index-\(arch.rawValue).json")
        let state = Self.aptState()
        if let data = try? Data(contentsOf: file), let index = try? JSONDecoder().decode(Index.self, from: data),
           index.aptState == state, !index.packages.isEmpty {
            return index.packages
        }
        let packages = try query(arch: arch)
        try? FileManager.default.makeDirectory(file.deletingLastPathComponent())
        try? writeAtomically(try JSONEncoder().encode(Index(aptState: state, packages: packages)), to: file)
        return packages
    }

    /// What apt's answers depend on: the package lists (`apt-get update` renames new ones
    /// into the folder, which changes its time) and dpkg's foreign architectures.
    static func aptState(lists: String = "/var/lib/apt/lists", dpkgArch: String = "/var/lib/dpkg/arch") -> String {
        let modified = (try? FileManager.default.attributesOfItem(atPath: lists))?[.modificationDate] as? Date
        let arches = ((try? String(contentsOfFile: dpkgArch, encoding: .utf8)) ?? "").split(whereSeparator: \.isNewline)
        return "\(modified?.timeIntervalSince1970 ?? 0)|\(arches.joined(separator: ","))"
    }

    func query(arch: Arch) throws -> [DebianKernelPackage] {
        let search = try context.runner.check(Command("apt-cache", ["search", "--names-only", "^linux-image-[0-9]"]))
        let names = Self.packageNames(inSearchOutput: search.stdout, arch: arch)
        guard !names.isEmpty else { return [] }
        let qualified = names.map { arch == Arch.host ? $0 : "\($0):\(arch.debian)" }
        let show = try context.runner.run(Command("apt-cache", ["show", "--no-all-versions"] + qualified))
        return Self.packages(inShowOutput: show.stdout, arch: arch).sorted()
    }

    static func packageNames(inSearchOutput output: String, arch: Arch) -> [String] {
        let suffix = "-\(arch.debian)"
        return output.lines().compactMap { line -> String? in
            let name = String(line.split(separator: " ", maxSplits: 1).first ?? "")
            guard name.hasSuffix(suffix), let first = name.dropFirst("linux-image-".count).first, first.isNumber else { return nil }
            let flavourFree = name.dropLast(suffix.count)
            // Meta packages (linux-image-6.12-amd64) name no full version: x.y.z needs two dots.
            guard flavourFree.filter({ $0 == "." }).count >= 2 else { return nil }
            for marker in ["-rt", "-cloud", "-dbg", "-unsigned"] where flavourFree.contains(marker) { return nil }
            return name
        }
    }

    static func packages(inShowOutput output: String, arch: Arch) -> [DebianKernelPackage] {
        output.components(separatedBy: "\n\n").compactMap { stanza -> DebianKernelPackage? in
            var fields: [String: String] = [:]
            for line in stanza.lines() {
                guard let colon = line.firstIndex(of: ":"), !line.hasPrefix(" ") else { continue }
                fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            guard let name = fields["Package"], let version = fields["Version"],
                  fields["Architecture"] == arch.debian else { return nil }
            return DebianKernelPackage(name: name, debianVersion: version, arch: arch)
        }
    }

    /// Picks the package for a version (upstream 6.12.117, ABI 6.1.0-56 or the newest).
    public func package(version: String?, arch: Arch) throws -> DebianKernelPackage {
        let packages = try available(arch: arch)
        let spec = "debian:\(version ?? "latest")"
        guard let newest = packages.last else {
            let hint = arch == Arch.host ? "run `apt-get update`" : "run `sudo ci/setup-host` (enables the \(arch.debian) dpkg architecture)"
            throw ShootdownError.kernelUnusable(spec: spec, reason: "apt knows no linux-image packages for \(arch.debian); \(hint)")
        }
        guard let version else { return newest }
        if let match = packages.last(where: { $0.version == version || $0.abi == version || $0.name == version }) {
            return match
        }
        var seen = Set<String>()
        let versions = packages.reversed().map(\.version).filter { seen.insert($0).inserted }
        throw ShootdownError.kernelNotFound(spec: spec, available: Array(versions.prefix(12)))
    }

    public func image(version: String?, arch: Arch) throws -> KernelImage {
        // A pinned version already in the cache needs no apt at all (offline reruns).
        if let version, let cached = cachedImage(matching: version, arch: arch) { return cached }
        let package = try package(version: version, arch: arch)
        let directory = cacheDirectory(for: package)
        if let cached = Self.loadMetadata(in: directory) { return cached }
        return try download(package, into: directory, spec: "debian:\(version ?? "latest")")
    }

    func cacheDirectory(for package: DebianKernelPackage) -> URL {
        context.paths.cache.appendingPathComponent("kernels/debian/\(package.name)_\(package.debianVersion)")
    }

    func cachedImage(matching version: String, arch: Arch) -> KernelImage? {
        let root = context.paths.cache.appendingPathComponent("kernels/debian")
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        // Dot folders are downloads in progress and leftovers being removed.
        return entries.filter { !$0.hasPrefix(".") }.sorted().reversed().compactMap { Self.loadMetadata(in: root.appendingPathComponent($0)) }
            .first { $0.arch == arch && ($0.version == version || $0.origin.contains("linux-image-\(version)-")) }
    }

    static func loadMetadata(in directory: URL) -> KernelImage? {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("kernel.json")),
              let image = try? JSONDecoder().decode(KernelImage.self, from: data),
              FileManager.default.fileExists(atPath: image.kernel.path) else { return nil }
        return image
    }

    func download(_ package: DebianKernelPackage, into directory: URL, spec: String) throws -> KernelImage {
        context.log("kernel: downloading \(package.name) \(package.debianVersion) (\(package.arch.debian))")
        let work = directory.deletingLastPathComponent().appendingPathComponent(".download-\(UUID().uuidString)")
        try FileManager.default.makeDirectory(work)
        defer { try? FileManager.default.removeItem(at: work) }
        let qualified = package.arch == Arch.host ? package.name : "\(package.name):\(package.arch.debian)"
        try context.runner.check(Command("apt-get", ["download", "-q", "\(qualified)=\(package.debianVersion)"],
                                         workingDirectory: work.path))
        let debs = (try? FileManager.default.contentsOfDirectory(atPath: work.path))?.filter { $0.hasSuffix(".deb") } ?? []
        guard let deb = debs.first else {
            throw ShootdownError.kernelUnusable(spec: spec, reason: "apt-get download produced no .deb")
        }
        let extracted = work.appendingPathComponent("root")
        try context.runner.check(Command("dpkg-deb", ["-x", work.appendingPathComponent(deb).path, extracted.path]))
        let boot = extracted.appendingPathComponent("boot")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: boot.path)) ?? []
        guard let vmlinuz = files.first(where: { $0.hasPrefix("vmlinuz-") }) else {
            throw ShootdownError.kernelUnusable(spec: spec, reason: "\(deb) has no /boot/vmlinuz-*")
        }
        let release = String(vmlinuz.dropFirst("vmlinuz-".count))

        // The boot files are kept, and of the ~400 MB of modules only those the result
        // channel needs when the kernel does not build them in (Debian 6.1).
        let staging = work.appendingPathComponent("keep")
        try FileManager.default.makeDirectory(staging)
        for name in [vmlinuz, "config-\(release)", "System.map-\(release)"] where files.contains(name) {
            try FileManager.default.moveItem(at: boot.appendingPathComponent(name), to: staging.appendingPathComponent(name))
        }
        func kept(_ name: String) -> URL? {
            files.contains(name) ? directory.appendingPathComponent(name) : nil
        }
        let configText = (try? String(contentsOf: staging.appendingPathComponent("config-\(release)"), encoding: .utf8)) ?? ""
        var modules: [URL]?
        if let wanted = try GuestModules.needed(config: { KernelImage.value(of: $0, inConfig: configText) }, spec: spec) {
            let names = try GuestModules.collect(wanted, from: extracted.appendingPathComponent("lib/modules/\(release)"),
                                                 into: staging.appendingPathComponent("modules"), runner: context.runner, spec: spec)
            modules = names.map { directory.appendingPathComponent("modules/\($0)") }
        }
        let image = KernelImage(spec: spec, arch: package.arch, version: package.version,
                                origin: "\(package.name) \(package.debianVersion)",
                                kernel: directory.appendingPathComponent(vmlinuz),
                                config: kept("config-\(release)"), systemMap: kept("System.map-\(release)"),
                                modules: modules)
        let metadata = JSONEncoder()
        metadata.outputFormatting = [.prettyPrinted, .sortedKeys]
        try metadata.encode(image).write(to: staging.appendingPathComponent("kernel.json"))
        // One rename publishes the whole folder, and a complete one (another run was
        // quicker) is never replaced: a run may be hard-linking its kernel right now.
        let published = try publishDirectory(staging, at: directory) { Self.loadMetadata(in: $0) != nil }
        return Self.loadMetadata(in: published) ?? image
    }
}
