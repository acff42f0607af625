import Foundation

/// Turns kernel specs into bootable images, one provider per spec kind.
public struct KernelResolver: Sendable {
    let context: ToolContext
    /// Kconfig fragments users add to source builds.
    let configFragments: [URL]

    public init(context: ToolContext, configFragments: [URL] = []) {
        self.context = context
        self.configFragments = configFragments
    }

    public func resolve(_ spec: KernelSpec, arch: Arch) throws -> KernelImage {
        switch spec {
        case .debian(let version):
            return try DebianKernels(context: context).image(version: version, arch: arch)
        case .file(let path):
            return try fileImage(path: path, arch: arch)
        case .git, .dir:
            return try KernelBuilder(context: context, extraFragments: configFragments).build(spec, arch: arch)
        }
    }

    /// The arches a spec can serve, when the user did not choose: a file is one arch.
    public func naturalArches(_ spec: KernelSpec) throws -> [Arch] {
        switch spec {
        case .debian, .git, .dir: return Arch.allCases
        case .file(let path): return [try KernelFormat.arch(ofImageAt: URL(fileURLWithPath: path))]
        }
    }

    func fileImage(path: String, arch: Arch) throws -> KernelImage {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ShootdownError.kernelUnusable(spec: "file:\(path)", reason: "no such file")
        }
        let found = try KernelFormat.arch(ofImageAt: url)
        guard found == arch else {
            throw ShootdownError.kernelUnusable(spec: "file:\(path)", reason: "it is an \(found) kernel; run it with --arch \(found)")
        }
        let directory = url.deletingLastPathComponent(), name = url.lastPathComponent
        // vmlinuz-6.12.0 → config-6.12.0 (Debian /boot layout), else .config or config beside it.
        let suffix = name.hasPrefix("vmlinuz-") ? String(name.dropFirst("vmlinuz-".count)) : nil
        let configCandidates = [suffix.map { "config-\($0)" }, "\(name).config", ".config", "config"].compactMap { $0 }
        let config = configCandidates.map { directory.appendingPathComponent($0) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
        let systemMap = [suffix.map { "System.map-\($0)" }, "System.map"].compactMap { $0 }
            .map { directory.appendingPathComponent($0) }.first { FileManager.default.fileExists(atPath: $0.path) }
        var version = suffix ?? name
        if let config, let text = try? String(contentsOf: config, encoding: .utf8),
           let line = text.lines().first(where: { $0.contains(" Kernel Configuration") }) {
            // "# Linux/x86 6.12.117 Kernel Configuration"
            let words = line.split(separator: " ")
            if words.count >= 3 { version = String(words[2]) }
        }
        let image = KernelImage(spec: "file:\(path)", arch: arch, version: version, origin: url.path,
                                kernel: url, config: config, systemMap: systemMap)
        // Without a config there is nothing to check; the agent then falls back to the console.
        if config != nil, try GuestModules.needed(config: { image.configValue($0) }, spec: image.spec) != nil {
            throw ShootdownError.kernelUnusable(spec: image.spec, reason: "it builds virtio, virtio_pci or virtio_console as modules; build them in (=y) for file: kernels")
        }
        return image
    }
}
