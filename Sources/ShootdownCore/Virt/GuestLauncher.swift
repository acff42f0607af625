import Foundation

/// What one guest boot produced, whatever happened to it.
public struct GuestOutcome: Sendable {
    public var domainXML: String
    public var timedOut: Bool
    /// Wall time from domain start until it stopped or was destroyed.
    public var wall: Duration
    public var console: Data
    public var results: Data
    /// Set when the domain could not be started at all.
    public var startError: String?
}

/// Boots one guest through libvirt: stages its files where QEMU can read them, starts a
/// transient domain, waits with a timeout, destroys it when needed and always cleans up.
public struct GuestLauncher: Sendable {
    /// Limits on what the host reads back from a guest.
    public static let maxConsoleBytes = 16 << 20
    public static let maxResultBytes = 64 << 20

    let context: ToolContext
    let connection: LibvirtConnection

    public init(context: ToolContext, connection: LibvirtConnection) {
        self.context = context
        self.connection = connection
    }

    /// A spec whose file paths point into this guest's stage directory.
    public func stagedSpec(name: String, arch: Arch, accel: Accelerator, paravirt: Paravirt?, vcpus: Int,
                           memoryMiB: Int) throws -> DomainSpec {
        guard let emulator = context.runner.which(arch.qemuBinary) else {
            throw ShootdownError.toolMissing(tool: arch.qemuBinary, hint: "apt-get install \(arch == .x86_64 ? "qemu-system-x86" : "qemu-system-arm")")
        }
        let stage = context.paths.stage.appendingPathComponent(name)
        return DomainSpec(name: name, arch: arch, accel: accel, paravirt: paravirt, vcpus: vcpus, memoryMiB: memoryMiB,
                          emulator: emulator, kernel: stage.appendingPathComponent("kernel").path,
                          initrd: stage.appendingPathComponent("initramfs.cpio").path,
                          consolePath: stage.appendingPathComponent("console.log").path,
                          resultPath: stage.appendingPathComponent("results.jsonl").path)
    }

    public func boot(_ spec: DomainSpec, kernel: URL, initramfs: Data, timeout: Duration) throws -> GuestOutcome {
        let stage = URL(fileURLWithPath: spec.kernel).deletingLastPathComponent()
        try prepareStage(stage, spec: spec, kernel: kernel, initramfs: initramfs)
        defer { try? FileManager.default.removeItem(at: stage) }

        let xml = try DomainXML.render(spec)
        let clock = ContinuousClock(), started = clock.now
        let domain: LibvirtDomain
        do {
            domain = try connection.startTransient(xml: xml)
        } catch {
            return GuestOutcome(domainXML: xml, timedOut: false, wall: clock.now - started,
                                console: readBounded(spec.consolePath, limit: Self.maxConsoleBytes), results: Data(),
                                startError: "\(error)")
        }
        ActiveDomains.shared.register(domain)
        defer { ActiveDomains.shared.unregister(domain) }
        let stopped = domain.waitForShutdown(deadline: started + timeout)
        if !stopped { domain.destroy() }
        let wall = clock.now - started
        return GuestOutcome(domainXML: xml, timedOut: !stopped, wall: wall,
                            console: readBounded(spec.consolePath, limit: Self.maxConsoleBytes),
                            results: readBounded(spec.resultPath, limit: Self.maxResultBytes), startError: nil)
    }

    /// Under qemu:///system QEMU runs as libvirt-qemu: the stage directory must be
    /// traversable and its files readable (and the channel files writable) by others.
    private func prepareStage(_ stage: URL, spec: DomainSpec, kernel: URL, initramfs: Data) throws {
        let fileManager = FileManager.default
        try? fileManager.removeItem(at: stage)
        try fileManager.makeDirectory(stage.deletingLastPathComponent(), mode: 0o755)
        try fileManager.makeDirectory(stage, mode: 0o755)
        let kernelCopy = URL(fileURLWithPath: spec.kernel)
        // A hard link costs nothing; across file systems fall back to a copy.
        if link(kernel.path, kernelCopy.path) != 0 {
            do {
                try fileManager.copyItem(at: kernel, to: kernelCopy)
            } catch {
                throw ShootdownError.io(path: kernel.path, message: "cannot stage the kernel: \(error.localizedDescription)")
            }
        }
        chmod(kernelCopy.path, 0o644)
        try writeAtomically(initramfs, to: URL(fileURLWithPath: spec.initrd))
        chmod(spec.initrd, 0o644)
        for path in [spec.consolePath, spec.resultPath] {
            fileManager.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o666])
        }
    }
}

/// Reads at most `limit` bytes of a file; a guest must not be able to exhaust host memory.
func readBounded(_ path: String, limit: Int) -> Data {
    guard let handle = FileHandle(forReadingAtPath: path) else { return Data() }
    defer { try? handle.close() }
    return (try? handle.read(upToCount: limit)) ?? Data()
}
