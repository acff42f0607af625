import Foundation

/// Everything a command touches in the outside world, injected so tests can swap it:
/// where files live, how programs run, where messages go.
public struct ToolContext: Sendable {
    public var paths: ToolPaths
    public var runner: any CommandRunning
    /// Progress and status lines for a person (stderr in the CLI).
    public var log: @Sendable (String) -> Void
    public var libvirtURI: String
    /// How guest files reach the hypervisor; nil: files locally, volumes for remote URIs
    /// (`SHOOTDOWN_STAGING=files|volumes` overrides).
    public var staging: GuestLauncher.Staging?
    /// Where guests come from: libvirt at `libvirtURI` unless a test sets recordings
    /// (`ReplayGuests`) or another host.
    public var guests: any GuestHost {
        get { guestHost ?? LibvirtGuests(uri: libvirtURI) }
        set { guestHost = newValue }
    }
    private var guestHost: (any GuestHost)?
    /// The guests this process runs, for interruption; a test gives a run its own.
    public var activeDomains: ActiveDomains = .shared
    /// The host's CPUs: how many guests run at once and how TCG runs their vCPUs.
    public var hostCPUs = ProcessInfo.processInfo.activeProcessorCount

    public init(paths: ToolPaths, runner: any CommandRunning = ProcessRunner(),
                libvirtURI: String = ToolContext.defaultLibvirtURI,
                log: @escaping @Sendable (String) -> Void = { writeToStandardError($0 + "\n") }) {
        self.paths = paths
        self.runner = runner
        self.libvirtURI = libvirtURI
        self.log = log
        staging = ProcessInfo.processInfo.environment["SHOOTDOWN_STAGING"].flatMap(GuestLauncher.Staging.init(rawValue:))
    }

    /// qemu:///system for root (the Debian default), qemu:///session for everyone else.
    public static var defaultLibvirtURI: String {
        if let uri = ProcessInfo.processInfo.environment["SHOOTDOWN_LIBVIRT_URI"], !uri.isEmpty { return uri }
        return getuid() == 0 ? "qemu:///system" : "qemu:///session"
    }
}

public struct ToolPaths: Sendable {
    /// Downloaded kernels, compiled programs, the accelerator probe verdict.
    public var cache: URL
    /// Where runs are written: `<results>/<run-id>/<cell>/`.
    public var results: URL
    /// The repository data: `Templates/` and `Images/`.
    public var resources: URL
    /// Kernels, initramfs and channel files of running guests. Under qemu:///system QEMU
    /// runs as libvirt-qemu and cannot enter root's home, so this must be world-traversable.
    public var stage: URL

    public init(cache: URL, results: URL, resources: URL, stage: URL) {
        self.cache = cache
        self.results = results
        self.resources = resources
        self.stage = stage
    }

    public static func standard(results: String? = nil, libvirtURI: String = ToolContext.defaultLibvirtURI) -> ToolPaths {
        let env = ProcessInfo.processInfo.environment
        let cache: URL
        if let explicit = env["SHOOTDOWN_CACHE"], !explicit.isEmpty {
            cache = URL(fileURLWithPath: explicit)
        } else if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty {
            cache = URL(fileURLWithPath: xdg).appendingPathComponent("shootdown")
        } else {
            cache = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/shootdown")
        }
        let stage: URL
        if let explicit = env["SHOOTDOWN_STAGE"], !explicit.isEmpty {
            stage = URL(fileURLWithPath: explicit)
        } else if libvirtURI.hasPrefix("qemu:///system") {
            stage = URL(fileURLWithPath: "/var/lib/libvirt/shootdown")
        } else {
            stage = cache.appendingPathComponent("stage")
        }
        let resultsURL = URL(fileURLWithPath: results ?? env["SHOOTDOWN_RESULTS"] ?? "results",
                             relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        return ToolPaths(cache: cache, results: resultsURL.standardizedFileURL,
                         resources: ResourceLocator.locate(), stage: stage)
    }
}

/// Finds the `Templates/` and `Images/` folders: $SHOOTDOWN_HOME, then upwards from the
/// executable (a build inside the checkout), then the checkout this file was compiled in.
public enum ResourceLocator {
    public static func locate() -> URL {
        let fileManager = FileManager.default
        func isRoot(_ url: URL) -> Bool {
            fileManager.fileExists(atPath: url.appendingPathComponent("Templates").path)
                && fileManager.fileExists(atPath: url.appendingPathComponent("Images/agent").path)
        }
        if let home = ProcessInfo.processInfo.environment["SHOOTDOWN_HOME"], !home.isEmpty {
            return URL(fileURLWithPath: home)
        }
        var candidates: [URL] = []
        if let executable = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            var directory = executable.deletingLastPathComponent()
            for _ in 0..<6 {
                candidates.append(directory)
                directory = directory.deletingLastPathComponent()
            }
        }
        candidates.append(contentsOf: [URL(fileURLWithPath: "/usr/local/share/shootdown"),
                                       URL(fileURLWithPath: "/usr/share/shootdown")])
        // Sources/ShootdownCore/Support/ToolContext.swift → the checkout.
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent())
        return candidates.first(where: isRoot) ?? candidates.last!
    }
}

extension FileManager {
    /// Creates a directory (and parents) with the given permissions, tolerating existence.
    func makeDirectory(_ url: URL, mode: Int = 0o755) throws {
        do {
            try createDirectory(at: url, withIntermediateDirectories: true,
                                attributes: [.posixPermissions: mode])
        } catch {
            throw ShootdownError.io(path: url.path, message: error.localizedDescription)
        }
    }
}

/// Writes a file atomically (write to a temporary sibling, then rename), so a result
/// on disk is either complete or absent. The descriptor is close-on-exec: a process forked
/// meanwhile must not inherit it, or executing the file (a wrapper script) fails with
/// ETXTBSY while that child lives.
public func writeAtomically(_ data: Data, to url: URL) throws {
    try FileManager.default.makeDirectory(url.deletingLastPathComponent())
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString)")
    let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ShootdownError.io(path: url.path, message: String(cString: strerror(errno))) }
    let written = data.withUnsafeBytes { buffer -> Bool in
        var offset = 0
        while offset < buffer.count {
            let count = write(fd, buffer.baseAddress!.advanced(by: offset), buffer.count - offset)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            offset += count
        }
        return true
    }
    let error = errno
    close(fd)
    guard written, rename(temporary.path, url.path) == 0 else {
        unlink(temporary.path)
        throw ShootdownError.io(path: url.path, message: String(cString: strerror(written ? errno : error)))
    }
}

public func writeAtomically(_ text: String, to url: URL) throws {
    try writeAtomically(Data(text.utf8), to: url)
}

/// FNV-1a, 64 bit: a stable content key for caches (not for security).
public struct ContentHash: Sendable {
    private var state: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func update(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            state ^= UInt64(byte)
            state = state &* 0x0000_0100_0000_01b3
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        state ^= 0xff
        state = state &* 0x0000_0100_0000_01b3
    }

    public mutating func update(_ string: String) { update(string.utf8) }

    public var hex: String { String(format: "%016llx", state) }

    public static func of(_ parts: String...) -> String {
        var hash = ContentHash()
        parts.forEach { hash.update($0) }
        return hash.hex
    }
}
