/// A guest architecture and everything that differs by it.
public enum Arch: String, Sendable, Codable, CaseIterable, Comparable, CustomStringConvertible {
    case x86_64
    case aarch64

    public init(parsing text: String) throws {
        switch text.lowercased() {
        case "x86_64", "x86-64", "amd64", "x86": self = .x86_64
        case "aarch64", "arm64": self = .aarch64
        default:
            throw ShootdownError.usage("unknown arch '\(text)'; use x86_64 or aarch64")
        }
    }

    public var description: String { rawValue }

    /// The Debian architecture name (package suffixes, `dpkg --add-architecture`).
    public var debian: String {
        switch self {
        case .x86_64: return "amd64"
        case .aarch64: return "arm64"
        }
    }

    public var qemuBinary: String { "qemu-system-\(rawValue)" }

    /// The C compiler that builds static guest programs for this arch on an x86_64 host.
    public var compiler: String {
        switch self {
        case .x86_64: return "gcc"
        case .aarch64: return "aarch64-linux-gnu-gcc"
        }
    }

    public var machine: String {
        switch self {
        case .x86_64: return "q35"
        case .aarch64: return "virt"
        }
    }

    /// The kernel console the first serial port becomes.
    public var consoleDevice: String {
        switch self {
        case .x86_64: return "ttyS0"
        case .aarch64: return "ttyAMA0"
        }
    }

    /// The arch of the machine this process runs on.
    public static var host: Arch {
        #if arch(x86_64)
        return .x86_64
        #else
        return .aarch64
        #endif
    }

    public static func < (lhs: Arch, rhs: Arch) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// How the guest CPU is provided.
public enum Accelerator: String, Sendable, Codable, CustomStringConvertible {
    case kvm
    case tcg

    public var description: String { rawValue }
    /// The libvirt domain type.
    public var domainType: String { self == .kvm ? "kvm" : "qemu" }
}

/// Whether the guest keeps its hypervisor's paravirt features (x86: PV TLB flush,
/// PV IPIs, steal time; arm64: steal time).
public enum Paravirt: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case on
    case off

    public var description: String { rawValue }
}
