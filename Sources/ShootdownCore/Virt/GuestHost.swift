import Foundation

/// Where the pipeline's guests come from: libvirt (`LibvirtGuests`), or recordings
/// (`ReplayGuests`) so that runs, resume, sharding and interruption can be tested in
/// milliseconds. Injected through `ToolContext.guests`, like the command runner.
public protocol GuestHost: Sendable {
    /// Once per run, before any build: the hypervisor answers, and what dead runs left
    /// behind (domains, stage folders) is removed, each with a message.
    func prepare(context: ToolContext) throws
    /// A launcher for one worker; it boots one guest at a time.
    func launcher(context: ToolContext) throws -> any GuestLaunching
}

/// Boots guests one at a time: a spec with staged paths, then the boot itself.
public protocol GuestLaunching: Sendable {
    /// A spec whose file paths point where this launcher stages a guest's files.
    func stagedSpec(name: String, arch: Arch, accel: Accelerator, paravirt: Paravirt?, vcpus: Int,
                    memoryMiB: Int, tcgThreads: TCGThreads) throws -> DomainSpec
    /// Boots, waits at most `timeout`, and returns console, records and timings.
    /// Throws only on harness failures (e.g. the hypervisor connection is lost); a guest
    /// that does not start or does not report is an outcome, not an error.
    func boot(_ spec: DomainSpec, kernel: URL, initramfs: Data, timeout: Duration) throws -> GuestOutcome
    /// A fresh guest for one cell from its whole image: restored from a saved guest of
    /// the same configuration where `fresh` asks for it and that works, booted otherwise.
    func start(_ spec: DomainSpec, kernel: URL, image: GuestImage, timeout: Duration, fresh: FreshGuest) throws -> GuestOutcome
    /// Waits until every guest it booted is gone (background teardown).
    func waitForTeardowns()
    /// What a cached KVM verdict depends on, on the hypervisor side (URI and version).
    var hypervisorIdentity: String { get }
}

extension GuestLaunching {
    /// Launchers that cannot restore boot every guest.
    public func start(_ spec: DomainSpec, kernel: URL, image: GuestImage, timeout: Duration, fresh: FreshGuest) throws -> GuestOutcome {
        try boot(spec, kernel: kernel, initramfs: image.archive, timeout: timeout)
    }
}

/// A started guest, as the interruption registry sees it.
public protocol RunningGuest: AnyObject, Sendable {
    var name: String { get }
    /// Stops the guest; harmless when it has stopped already.
    func destroy()
    /// False once the hypervisor no longer lists it.
    var exists: Bool { get }
}

extension LibvirtDomain: RunningGuest {}

/// Guests under libvirt at `uri`, with files staged under the context's stage folder.
public struct LibvirtGuests: GuestHost {
    public let uri: String

    public init(uri: String) {
        self.uri = uri
    }

    public func prepare(context: ToolContext) throws {
        let connection = try LibvirtConnection(uri: uri)
        StaleGuests.sweep(connection: connection, stage: context.paths.stage, log: context.log)
    }

    public func launcher(context: ToolContext) throws -> any GuestLaunching {
        GuestLauncher(context: context, connection: try LibvirtConnection(uri: uri))
    }
}

/// Who started a guest: a process on a host, since a boot. A new run destroys guests and
/// removes stage folders whose owner is gone (SIGKILL, crash, power loss), and leaves
/// alone those of live runs, other hosts, and older versions that recorded no owner.
public struct GuestOwner: Sendable, Codable, Equatable {
    public var pid: Int32
    /// Process start time in clock ticks since boot (/proc/PID/stat field 22): a reused
    /// pid has a different one.
    public var started: UInt64
    /// /proc/sys/kernel/random/boot_id: after a reboot no owner is alive.
    public var boot: String
    public var host: String

    public static let current = GuestOwner(pid: getpid(), started: startTime(of: getpid()) ?? 0,
                                           boot: bootID(), host: ProcessInfo.processInfo.hostName)

    /// The XML namespace of the owner element in a domain's `<metadata>`.
    public static let namespace = "https://shootdown.invalid/owner/1"

    /// False only when the owner is certainly gone; an owner on another host may live.
    public var isAlive: Bool {
        guard host == Self.current.host else { return true }
        guard boot == Self.current.boot else { return false }
        guard let now = Self.startTime(of: pid) else { return false }
        return now == started
    }

    static func startTime(of pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3, starttime field 22.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z" else { return nil }
        return UInt64(fields[19])
    }

    static func bootID() -> String {
        ((try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var attributes: [(String, String)] {
        [("pid", String(pid)), ("started", String(started)), ("boot", boot), ("host", host)]
    }

    /// Parses the owner element libvirt hands back (`<owner pid="…" …/>`, any prefix).
    init?(element xml: String) {
        func value(_ name: String) -> String? {
            guard let start = xml.range(of: " \(name)=\"") ?? xml.range(of: " \(name)='") else { return nil }
            let rest = xml[start.upperBound...]
            guard let end = rest.firstIndex(where: { $0 == "\"" || $0 == "'" }) else { return nil }
            return String(rest[..<end])
        }
        guard let pid = value("pid").flatMap(Int32.init), let started = value("started").flatMap(UInt64.init),
              let boot = value("boot"), let host = value("host") else { return nil }
        self.init(pid: pid, started: started, boot: boot, host: host)
    }

    public init(pid: Int32, started: UInt64, boot: String, host: String) {
        self.pid = pid
        self.started = started
        self.boot = boot
        self.host = host
    }
}

/// Leftovers of dead runs: domains whose owner metadata names a dead process, and stage
/// folders whose `owner` file does.
public enum StaleGuests {
    /// The file in a stage folder that names its owner.
    static let ownerFile = "owner"

    /// Destroys stale domains and removes stale stage folders; returns what it removed.
    @discardableResult
    public static func sweep(connection: LibvirtConnection, stage: URL, log: @Sendable (String) -> Void) -> [String] {
        var removed: [String] = []
        for name in (try? connection.domainNames(prefix: "shootdown-")) ?? [] {
            guard let owner = connection.owner(ofDomain: name), !owner.isAlive else { continue }
            if connection.destroyDomain(named: name) {
                log("destroyed stale guest \(name): its run (pid \(owner.pid)) is gone")
                removed.append(name)
            }
        }
        for folder in staleStageFolders(stage) {
            try? FileManager.default.removeItem(at: folder)
            log("removed stale stage folder \(folder.path): its run is gone")
            removed.append(folder.path)
        }
        return removed
    }

    static func staleStageFolders(_ stage: URL) -> [URL] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: stage.path)) ?? []
        return entries.sorted().map { stage.appendingPathComponent($0) }.filter { folder in
            guard let data = try? Data(contentsOf: folder.appendingPathComponent(ownerFile)),
                  let owner = try? JSONDecoder().decode(GuestOwner.self, from: data) else { return false }
            return !owner.isAlive
        }
    }

    /// Stage folders this process owns: an interrupted run removes them before it exits.
    public static func removeOwnStageFolders(_ stage: URL) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: stage.path)) ?? []
        for entry in entries {
            let folder = stage.appendingPathComponent(entry)
            guard let data = try? Data(contentsOf: folder.appendingPathComponent(ownerFile)),
                  let owner = try? JSONDecoder().decode(GuestOwner.self, from: data), owner == .current else { continue }
            try? FileManager.default.removeItem(at: folder)
        }
    }
}
