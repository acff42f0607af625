import Foundation

/// The kernel modules a guest needs when its kernel builds the result channel's
/// drivers as modules (Debian 6.1: virtio, virtio_pci and virtio_console are `=m`).
public enum GuestModules {
    /// Config options the agent's result channel depends on, and their module names.
    static let required: [(option: String, module: String)] = [
        ("CONFIG_VIRTIO", "virtio"),
        ("CONFIG_VIRTIO_PCI", "virtio_pci"),
        ("CONFIG_VIRTIO_CONSOLE", "virtio_console"),
    ]

    /// The modules to load, or nil when everything is built in. Throws when the kernel
    /// has no virtio console at all.
    public static func needed(config: (String) -> String?, spec: String) throws -> [String]? {
        var modules: [String] = []
        for (option, module) in required {
            switch config(option) {
            case "y": continue
            case "m": modules.append(module)
            default:
                throw ShootdownError.kernelUnusable(spec: spec, reason: "\(option) is not set; the result channel needs virtio-serial (=y, or =m with modules)")
            }
        }
        return modules.isEmpty ? nil : modules
    }

    /// The `depends=` list from a module's .modinfo section.
    static func dependencies(ofModule data: Data) -> [String] {
        let marker = Data("\0depends=".utf8)
        guard let range = data.range(of: marker) else { return [] }
        let rest = data[range.upperBound...]
        let end = rest.firstIndex(of: 0) ?? rest.endIndex
        return String(decoding: rest[..<end], as: UTF8.self).split(separator: ",").map(String.init)
    }

    /// Module files by name (`virtio_pci` → path) under a `lib/modules/<release>` tree.
    static func index(modulesRoot: URL) -> [String: URL] {
        var found: [String: URL] = [:]
        guard let walker = FileManager.default.enumerator(at: modulesRoot, includingPropertiesForKeys: nil) else { return found }
        for case let url as URL in walker {
            let name = url.lastPathComponent
            for suffix in [".ko", ".ko.xz", ".ko.zst", ".ko.gz"] where name.hasSuffix(suffix) {
                // Module names use '_' where file names may use '-'.
                found[String(name.dropLast(suffix.count)).replacingOccurrences(of: "-", with: "_")] = url
            }
        }
        return found
    }

    /// Copies `wanted` and everything they depend on into `destination`, uncompressed,
    /// and returns the file names in load order (dependencies first).
    static func collect(_ wanted: [String], from modulesRoot: URL, into destination: URL, runner: any CommandRunning,
                        spec: String) throws -> [String] {
        let files = index(modulesRoot: modulesRoot)
        var order: [String] = [], visiting = Set<String>()
        func visit(_ name: String) throws {
            if order.contains(name) || visiting.contains(name) { return }
            guard let url = files[name] else {
                throw ShootdownError.kernelUnusable(spec: spec, reason: "module \(name) is missing from the package")
            }
            visiting.insert(name)
            let data = try uncompressed(url, runner: runner)
            for dependency in dependencies(ofModule: data) { try visit(dependency) }
            try writeAtomically(data, to: destination.appendingPathComponent("\(name).ko"))
            order.append(name)
        }
        try wanted.forEach(visit)
        return order.map { "\($0).ko" }
    }

    static func uncompressed(_ url: URL, runner: any CommandRunning) throws -> Data {
        let tool: String
        switch url.pathExtension {
        case "xz": tool = "xz"
        case "zst": tool = "zstd"
        case "gz": tool = "gzip"
        default: return try Data(contentsOf: url)
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-ko-\(UUID().uuidString).ko")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try runner.check(Command("/bin/sh", ["-c", "\(tool) -dc \(shellQuoted(url.path)) > \(shellQuoted(scratch.path))"]))
        return try Data(contentsOf: scratch)
    }
}
