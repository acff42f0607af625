import Foundation

/// Which kernel to boot, as the user writes it.
public enum KernelSpec: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A Debian linux-image package; nil is the newest the archive has.
    case debian(version: String?)
    /// A local bzImage or arm64 Image, with an optional config beside it.
    case file(path: String)
    /// A commit, tag or branch of a local git tree, built by shootdown.
    case git(tree: String, ref: String)
    /// A kernel source folder without git (e.g. Debian's linux-source-6.12), built as is.
    case dir(path: String)

    public init(parsing text: String) throws {
        if text == "debian" || text == "debian:latest" || text == "debian:" {
            self = .debian(version: nil)
        } else if text.hasPrefix("debian:") {
            self = .debian(version: String(text.dropFirst("debian:".count)))
        } else if text.hasPrefix("file:") {
            let path = String(text.dropFirst("file:".count))
            guard !path.isEmpty else { throw ShootdownError.usage("file: needs a path, e.g. file:/boot/vmlinuz-6.12.0") }
            self = .file(path: path)
        } else if text.hasPrefix("git:") {
            let body = text.dropFirst("git:".count)
            // The ref follows the last '@' (paths rarely hold one; refs cannot start with one).
            let tree = body.lastIndex(of: "@").map { String(body[..<$0]) } ?? String(body)
            let ref = body.lastIndex(of: "@").map { String(body[body.index(after: $0)...]) } ?? "HEAD"
            guard !tree.isEmpty, !ref.isEmpty else {
                throw ShootdownError.usage("git: takes TREE@REF, e.g. git:~/linux@v6.12 or git:.@HEAD~3")
            }
            self = .git(tree: tree, ref: ref)
        } else if text.hasPrefix("dir:") {
            let path = String(text.dropFirst("dir:".count))
            guard !path.isEmpty else { throw ShootdownError.usage("dir: needs a kernel source folder, e.g. dir:/usr/src/linux-source-6.12") }
            self = .dir(path: path)
        } else {
            throw ShootdownError.usage("unknown kernel '\(text)'; use debian[:VERSION] (e.g. debian:6.12.117), file:PATH, git:TREE@REF or dir:PATH")
        }
    }

    public var description: String {
        switch self {
        case .debian(let version): return "debian:\(version ?? "latest")"
        case .file(let path): return "file:\(path)"
        case .git(let tree, let ref): return "git:\(tree)@\(ref)"
        case .dir(let path): return "dir:\(path)"
        }
    }

    public init(from decoder: Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A kernel ready to boot for one arch.
public struct KernelImage: Sendable, Codable, Equatable {
    public var spec: String
    public var arch: Arch
    /// Upstream version, e.g. 6.12.117 (for tables and cell names).
    public var version: String
    /// Where it came from: package name and version, or the file path.
    public var origin: String
    public var kernel: URL
    public var config: URL?
    public var systemMap: URL?
    /// Modules the guest must load for its result channel, in load order (nil: built in).
    public var modules: [URL]?
    /// The kept `O=` build folder of a source-built kernel, for out-of-tree modules.
    public var buildDirectory: URL?
    /// The widening module built for this kernel, when a run's tests need it.
    public var wideningModule: URL?
    /// Why no widening module could be built for it.
    public var wideningUnavailable: String?

    /// Whether the kernel config sets an option (`CONFIG_X=y`); nil when no config is known.
    public func configValue(_ option: String) -> String? {
        guard let config, let text = try? String(contentsOf: config, encoding: .utf8) else { return nil }
        return Self.value(of: option, inConfig: text)
    }

    /// The modules' names and contents, for the initramfs.
    public func moduleFiles() throws -> [(name: String, data: Data)] {
        try (modules ?? []).map { url in
            do {
                return (url.lastPathComponent, try Data(contentsOf: url))
            } catch {
                throw ShootdownError.kernelUnusable(spec: spec, reason: "cached module \(url.path) is unreadable; remove \(url.deletingLastPathComponent().deletingLastPathComponent().path) to download it again")
            }
        }
    }

    static func value(of option: String, inConfig text: String) -> String? {
        let prefix = option + "="
        for line in text.lines() where line.hasPrefix(prefix) {
            return String(line.dropFirst(prefix.count))
        }
        return nil
    }
}

/// Tells a bzImage from an arm64 Image by their boot-protocol magic numbers.
public enum KernelFormat {
    public static func arch(ofImageAt url: URL) throws -> Arch {
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw ShootdownError.kernelUnusable(spec: "file:\(url.path)", reason: "cannot read the file")
        }
        defer { try? handle.close() }
        let header = (try? handle.read(upToCount: 0x210)) ?? Data()
        func bytes(_ offset: Int, _ count: Int) -> [UInt8] {
            guard header.count >= offset + count else { return [] }
            return Array(header[offset..<offset + count])
        }
        if bytes(0x202, 4) == Array("HdrS".utf8) { return .x86_64 }
        if bytes(0x38, 4) == [0x41, 0x52, 0x4d, 0x64] { return .aarch64 }
        if bytes(0, 2) == [0x1f, 0x8b] {
            throw ShootdownError.kernelUnusable(spec: "file:\(url.path)", reason: "it is gzip-compressed; pass the uncompressed arm64 Image (gunzip it)")
        }
        throw ShootdownError.kernelUnusable(spec: "file:\(url.path)", reason: "not an x86 bzImage or an arm64 Image (no boot header magic)")
    }
}
