import Foundation

/// What one guest boot produced, whatever happened to it.
public struct GuestOutcome: Sendable {
    public var domainXML: String
    public var timedOut: Bool
    /// Wall time from domain start until it stopped or was destroyed.
    public var wall: Duration
    /// How long libvirt took to create and start the domain (part of `wall`).
    public var startLatency: Duration = .zero
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
    let staging: Staging
    private let teardowns = Teardowns()

    /// Where guest files live while the guest runs.
    public enum Staging: String, Sendable {
        /// Plain files under the stage folder: the hypervisor is this machine.
        case files
        /// Volumes of a libvirt storage pool, uploaded and downloaded over libvirt streams:
        /// the hypervisor may be another machine (qemu+ssh, qemu+tls).
        case volumes
    }

    /// Remote URIs stage through volumes; the context (or the argument) can force a mode.
    public init(context: ToolContext, connection: LibvirtConnection, staging: Staging? = nil) {
        self.context = context
        self.connection = connection
        self.staging = staging ?? context.staging ?? (connection.isRemote ? .volumes : .files)
    }

    /// A spec whose file paths point into this guest's stage folder (or pool).
    public func stagedSpec(name: String, arch: Arch, accel: Accelerator, paravirt: Paravirt?, vcpus: Int,
                           memoryMiB: Int) throws -> DomainSpec {
        let local = context.runner.which(arch.qemuBinary)
        let folder: String, emulator: String
        switch staging {
        case .files:
            guard let local else {
                throw ShootdownError.toolMissing(tool: arch.qemuBinary, hint: "apt-get install \(arch == .x86_64 ? "qemu-system-x86" : "qemu-system-arm")")
            }
            folder = context.paths.stage.appendingPathComponent(name).path + "/"
            emulator = local
        case .volumes:
            folder = try connection.ensurePool() + "/\(name)-"
            guard let remote = connection.defaultEmulator(arch: arch, virtType: accel.domainType) ?? local else {
                throw ShootdownError.libvirt(operation: "find QEMU for \(arch) on \(connection.uri)", message: "the host offers none")
            }
            emulator = remote
        }
        var spec = DomainSpec(name: name, arch: arch, accel: accel, paravirt: paravirt, vcpus: vcpus, memoryMiB: memoryMiB,
                              emulator: emulator, kernel: folder + "kernel", initrd: folder + "initramfs.cpio",
                              consolePath: folder + "console.log", resultPath: folder + "results.jsonl")
        let suffixes = spec.qemuSuffixes
        if !suffixes.accel.isEmpty || !suffixes.cpu.isEmpty {
            spec.emulatorWrapper = try emulatorWrapper(for: emulator, accelSuffix: suffixes.accel, cpuSuffix: suffixes.cpu)
        }
        return spec
    }

    /// A wrapper around QEMU that appends to the `-accel` and `-cpu` values libvirt
    /// passes, for settings libvirt has no XML for. Written only when it changes, since
    /// libvirt re-probes an emulator whose file changed. Returns its path on the host.
    func emulatorWrapper(for emulator: String, accelSuffix: String, cpuSuffix: String) throws -> String {
        let tag = ContentHash.of(accelSuffix, cpuSuffix).prefix(8)
        let name = "\(URL(fileURLWithPath: emulator).lastPathComponent)-\(tag)"
        let script = Self.wrapperScript(emulator: emulator, accelSuffix: accelSuffix, cpuSuffix: cpuSuffix)
        // Never touch an unchanged wrapper: a new ctime invalidates libvirt's capabilities
        // cache, and every domain start then re-probes QEMU (4 s instead of 0.3 s).
        if staging == .volumes {
            let volume = "bin-\(name)"
            if connection.downloadVolume(name: volume, limit: 1 << 16) == Data(script.utf8) {
                return try connection.ensurePool() + "/" + volume
            }
            return try connection.uploadVolume(name: volume, data: Data(script.utf8), mode: "0755")
        }
        let url = context.paths.stage.appendingPathComponent("bin/\(name)")
        if (try? String(contentsOf: url, encoding: .utf8)) != script {
            try FileManager.default.makeDirectory(url.deletingLastPathComponent(), mode: 0o755)
            try writeAtomically(script, to: url)
            chmod(url.path, 0o755)
        }
        return url.path
    }

    static func wrapperScript(emulator: String, accelSuffix: String, cpuSuffix: String) -> String {
        """
            #!/bin/sh
            # Written by shootdown: QEMU with settings libvirt cannot express:
            # -accel …\(accelSuffix)  -cpu …\(cpuSuffix)
            prev=
            for arg do
                shift
                case "$prev" in
                -accel) arg="$arg\(accelSuffix)" ;;
                -cpu) arg="$arg\(cpuSuffix)" ;;
                esac
                set -- "$@" "$arg"
                prev=$arg
            done
            exec \(shellQuoted(emulator)) "$@"

            """
    }

    public func boot(_ spec: DomainSpec, kernel: URL, initramfs: Data, timeout: Duration) throws -> GuestOutcome {
        // A leftover of a killed run still uses these files: destroy it before restaging.
        if connection.destroyDomain(named: spec.name) {
            context.log("destroyed a leftover domain \(spec.name) from an interrupted run")
        }
        let cleanup = try stage(spec, kernel: kernel, initramfs: initramfs)
        let xml = try DomainXML.render(spec)
        let clock = ContinuousClock(), started = clock.now
        guard ActiveDomains.shared.beginStart() else {
            cleanup()
            throw ShootdownError.usage("interrupted: no new guest is started")
        }
        let domain: LibvirtDomain
        do {
            domain = try connection.startTransient(xml: xml)
        } catch {
            ActiveDomains.shared.endStart(nil)
            let console = collect(spec.consolePath, limit: Self.maxConsoleBytes)
            cleanup()
            return GuestOutcome(domainXML: xml, timedOut: false, wall: clock.now - started, console: console, results: Data(),
                                startError: "\(error)")
        }
        let startLatency = clock.now - started
        ActiveDomains.shared.endStart(domain)
        let finished = waitForResult(domain, spec: spec, deadline: started + timeout)
        let wall = clock.now - started
        if staging == .volumes && finished != .stopped {
            // Volumes are read through libvirt only once QEMU has let go of them.
            domain.destroy()
            _ = domain.waitForShutdown(deadline: .now + .seconds(60))
        }
        let outcome = GuestOutcome(domainXML: xml, timedOut: finished == .timedOut, wall: wall, startLatency: startLatency,
                                   console: collect(spec.consolePath, limit: Self.maxConsoleBytes),
                                   results: collect(spec.resultPath, limit: Self.maxResultBytes), startError: nil)
        // The result is complete; libvirt's teardown of the stopped guest (~2 s of QEMU
        // exit and cleanup) overlaps with whatever the caller does next.
        teardowns.remove(domain, cleanup: cleanup)
        return outcome
    }

    /// Puts kernel, initramfs and empty channel files where the domain's paths point;
    /// returns what removes them.
    func stage(_ spec: DomainSpec, kernel: URL, initramfs: Data) throws -> @Sendable () -> Void {
        switch staging {
        case .files:
            let folder = URL(fileURLWithPath: spec.kernel).deletingLastPathComponent()
            try prepareStage(folder, spec: spec, kernel: kernel, initramfs: initramfs)
            return { try? FileManager.default.removeItem(at: folder) }
        case .volumes:
            let names = [spec.kernel, spec.initrd, spec.consolePath, spec.resultPath].map { URL(fileURLWithPath: $0).lastPathComponent }
            guard let kernelData = try? Data(contentsOf: kernel) else {
                throw ShootdownError.io(path: kernel.path, message: "cannot read the kernel to upload it")
            }
            // libvirt opens file chardevs itself and passes QEMU the descriptor: 0644 is enough.
            for (name, data) in zip(names, [kernelData, initramfs, Data(), Data()]) {
                try connection.uploadVolume(name: name, data: data, mode: "0644")
            }
            let connection = connection
            return { names.forEach { connection.deleteVolume(name: $0) } }
        }
    }

    /// A channel file's contents, bounded: a guest must not exhaust host memory. Past the
    /// limit the stream keeps its head and tail around a marker line (GuestStream) that
    /// the verdict reports; a download has no tail, only the head and the marker.
    func collect(_ path: String, limit: Int) -> Data {
        switch staging {
        case .files: return GuestStream.read(path: path, limit: limit)
        case .volumes:
            let data = connection.downloadVolume(name: URL(fileURLWithPath: path).lastPathComponent, limit: limit + 1)
            return GuestStream.bounded(data, limit: limit, complete: data.count <= limit)
        }
    }

    enum Finish { case stopped, reported, timedOut }

    /// Waits until the guest stops, or until the agent's final record and the kernel's
    /// power-down line are both out (the guest has nothing more to say), or the deadline.
    /// The files are checked before libvirt: while libvirt handles a guest's power-off,
    /// a state query blocks for the whole teardown (over a second).
    func waitForResult(_ domain: LibvirtDomain, spec: DomainSpec, deadline: ContinuousClock.Instant) -> Finish {
        while true {
            if fileTail(spec.resultPath).contains(Self.doneMarker)
                && fileTail(spec.consolePath).contains(Self.powerDownMarker) {
                return .reported
            }
            if ContinuousClock.now >= deadline { return .timedOut }
            if !domain.isActive { return .stopped }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    static let doneMarker = Data(#"{"type":"done""#.utf8)
    static let powerDownMarker = Data("reboot: Power down".utf8)

    /// Waits for every guest this launcher handed to background teardown.
    public func waitForTeardowns() {
        teardowns.waitForAll()
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
            guard fileManager.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o666]) else {
                throw ShootdownError.io(path: path, message: "cannot create the guest's channel file")
            }
        }
    }
}

/// Reads at most `limit` bytes of a file; a guest must not be able to exhaust host memory.
func readBounded(_ path: String, limit: Int) -> Data {
    guard let handle = FileHandle(forReadingAtPath: path) else { return Data() }
    defer { try? handle.close() }
    return (try? handle.read(upToCount: limit)) ?? Data()
}

/// The last 4 KiB of a file: where the newest record or console line is.
func fileTail(_ path: String, bytes: Int = 4096) -> Data {
    guard let handle = FileHandle(forReadingAtPath: path) else { return Data() }
    defer { try? handle.close() }
    guard let size = try? handle.seekToEnd() else { return Data() }
    try? handle.seek(toOffset: size > UInt64(bytes) ? size - UInt64(bytes) : 0)
    return (try? handle.readToEnd()) ?? Data()
}

/// Destroys finished guests and removes their staged files off the caller's path.
final class Teardowns: @unchecked Sendable {
    private let group = DispatchGroup()
    private let queue = DispatchQueue(label: "shootdown.teardown", attributes: .concurrent)

    func remove(_ domain: LibvirtDomain, cleanup: @escaping @Sendable () -> Void) {
        group.enter()
        queue.async { [group] in
            domain.destroy()
            // Registered until libvirt has removed it: an interruption meanwhile waits for it.
            let deadline = Date().addingTimeInterval(60)
            while domain.exists && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            ActiveDomains.shared.unregister(domain)
            cleanup()
            group.leave()
        }
    }

    func waitForAll() {
        group.wait()
    }
}
