import Foundation

/// Kconfig fragments and the check that their settings survived the configure step (`mod2noconfig`).
public struct KernelConfigFragment: Sendable, Equatable {
    public var path: String
    /// Option → wanted value ("y", "m", a string or number, or "n" for `# … is not set`).
    public var settings: [(option: String, value: String)]

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.path == rhs.path && lhs.settings.map(\.option) == rhs.settings.map(\.option)
            && lhs.settings.map(\.value) == rhs.settings.map(\.value)
    }

    public init(path: String, text: String) {
        self.path = path
        settings = Self.parse(text).map { (option: $0.key, value: $0.value) }.sorted { $0.option < $1.option }
    }

    public static func load(_ url: URL) throws -> KernelConfigFragment {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw ShootdownError.io(path: url.path, message: "cannot read the config fragment")
        }
        return KernelConfigFragment(path: url.path, text: text)
    }

    /// `CONFIG_X=v` lines and `# CONFIG_X is not set` lines of a .config or fragment.
    public static func parse(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in text.lines() {
            if line.hasPrefix("CONFIG_"), let equals = line.firstIndex(of: "=") {
                values[String(line[..<equals])] = String(line[line.index(after: equals)...])
            } else if line.hasPrefix("# CONFIG_") && line.hasSuffix(" is not set") {
                values[String(line.dropFirst(2).dropLast(" is not set".count))] = "n"
            }
        }
        return values
    }

    /// The settings the final .config does not have, as `CONFIG_X=y (got n)` lines.
    public static func lost(_ fragments: [KernelConfigFragment], finalConfig: String) -> [String] {
        let final = parse(finalConfig)
        return fragments.flatMap { fragment in
            fragment.settings.compactMap { option, wanted -> String? in
                let got = final[option] ?? "n"
                return got == wanted ? nil : "\(option)=\(wanted) (got \(got), from \(URL(fileURLWithPath: fragment.path).lastPathComponent))"
            }
        }
    }

    /// A shipped flavour's fragments (Images/config/<name>.config), in order.
    public static func flavour(_ flavour: KernelFlavour, resources: URL) -> [URL] {
        flavour.fragmentNames.map { resources.appendingPathComponent("Images/config/\($0).config") }
    }

    /// shootdown's own fragments for an arch: Images/config/common.config and <arch>.config.
    public static func shipped(resources: URL, arch: Arch) throws -> [KernelConfigFragment] {
        try ["common", arch.rawValue].map {
            try load(resources.appendingPathComponent("Images/config/\($0).config"))
        }
    }
}

/// Shipped config flavours for kernels built from source.
public enum KernelFlavour: String, Sendable, Codable, CaseIterable {
    /// DEBUG_VM, DEBUG_VM_PGTABLE, PAGE_TABLE_CHECK (enforced), DEBUG_PAGEALLOC.
    case debug
    /// The debug flavour plus generic KASAN.
    case debugKasan = "debug-kasan"

    var fragmentNames: [String] {
        switch self {
        case .debug: ["debug"]
        case .debugKasan: ["debug", "debug-kasan"]
        }
    }
}
