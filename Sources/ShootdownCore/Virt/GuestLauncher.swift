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
    /// How the guest came to life, where there was a choice: restored from a saved guest,
    /// or booted (and why it was not restored).
    public var start: String? = nil
}

/// Boots one guest through libvirt: stages its files where QEMU can read them, starts a
/// transient domain, waits with a timeout, destroys it when needed and always cleans up.
public struct GuestLauncher: GuestLaunching {
    /// Limits on what the host reads back from a guest.
    public static let maxConsoleBytes = 16 << 20
    public static let maxResultBytes = 64 << 20

    let context: ToolContext
    let connection: LibvirtConnection
    let staging: Staging
    let teardowns: Teardowns
    /// A guest is killed this long after its own timeout even if no run is left to do it
    /// (the run was SIGKILLed): the emulator wrapper enforces it.
    public static let lifetimeGrace = 60

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
        teardowns = Teardowns(registry: context.activeDomains)
    }

    public var hypervisorIdentity: String {
        connection.uri + "|" + (connection.hypervisorVersion() ?? "?")
    }

    /// A spec whose file paths point into this guest's stage folder (or pool).
    public func stagedSpec(name: String, arch: Arch, accel: Accelerator, paravirt: Paravirt?, vcpus: Int,
                           memoryMiB: Int, tcgThreads: TCGThreads) throws -> DomainSpec {
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
        spec.owner = .current
        spec.tcgThreads = tcgThreads
        // Every guest runs through the wrapper: it also enforces the guest's lifetime.
        let suffixes = spec.qemuSuffixes
        spec.emulatorWrapper = try emulatorWrapper(for: emulator, accelSuffix: suffixes.accel, cpuSuffix: suffixes.cpu)
        return spec
    }

    public func boot(_ spec: DomainSpec, kernel: URL, initramfs: Data, timeout: Duration) throws -> GuestOutcome {
        // A leftover of a killed run still uses these files: destroy it before restaging.
        if connection.destroyDomain(named: spec.name) {
            context.log("destroyed a leftover domain \(spec.name) from an interrupted run")
        }
        let registry = context.activeDomains
        let lifetime = Int(timeout.seconds.rounded(.up)) + Self.lifetimeGrace
        let cleanup = try stage(spec, kernel: kernel, initramfs: initramfs, lifetimeSeconds: lifetime)
        let xml = try DomainXML.render(spec)
        let clock = ContinuousClock(), started = clock.now
        let domain: LibvirtDomain
        switch try startRegistered(cleanup: cleanup, { try connection.startTransient(xml: xml) }) {
        case .success(let started): domain = started
        case .failure(let error):
            let console = collect(spec.consolePath, limit: Self.maxConsoleBytes)
            cleanup()
            // A dead daemon is the run's problem, not this guest's.
            try connection.checkAlive()
            return GuestOutcome(domainXML: xml, timedOut: false, wall: clock.now - started, console: console, results: Data(),
                                startError: "\(error)")
        }
        let startLatency = clock.now - started
        let finished = try awaitResult(domain, spec: spec, deadline: started + timeout, cleanup: cleanup)
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

    /// Starts a domain through `start` under the interruption registry: a stop signal
    /// already given refuses the start (after `cleanup`); one that fails is returned.
    func startRegistered(cleanup: () -> Void, _ start: () throws -> LibvirtDomain) throws -> Result<LibvirtDomain, Error> {
        let registry = context.activeDomains
        guard registry.beginStart() else {
            cleanup()
            throw RunInterrupted(signal: registry.interruptingSignal ?? SIGINT)
        }
        do {
            let domain = try start()
            registry.endStart(domain)
            return .success(domain)
        } catch {
            registry.endStart(nil)
            return .failure(error)
        }
    }

    /// Waits for the guest's result. "Not active" because the daemon is gone stops the
    /// run: the guest may still run, and its lifetime bound ends it.
    func awaitResult(_ domain: LibvirtDomain, spec: DomainSpec, deadline: ContinuousClock.Instant,
                     cleanup: () -> Void) throws -> Finish {
        let finished = waitForResult(domain, spec: spec, deadline: deadline)
        if finished == .stopped, !connection.isAlive {
            context.activeDomains.unregister(domain)
            cleanup()
            try connection.checkAlive()
        }
        return finished
    }

    /// Puts kernel, initramfs and empty channel files where the domain's paths point;
    /// returns what removes them.
    func stage(_ spec: DomainSpec, kernel: URL, initramfs: Data, lifetimeSeconds: Int) throws -> @Sendable () -> Void {
        let lifetime = Data("\(lifetimeSeconds)\n".utf8)
        switch staging {
        case .files:
            let folder = URL(fileURLWithPath: spec.kernel).deletingLastPathComponent()
            try prepareStage(folder, spec: spec, kernel: kernel, initramfs: initramfs, lifetime: lifetime)
            return { try? FileManager.default.removeItem(at: folder) }
        case .volumes:
            let lifetimePath = String(spec.kernel.dropLast("kernel".count)) + "lifetime"
            let names = [spec.kernel, spec.initrd, spec.consolePath, spec.resultPath, lifetimePath]
                .map { URL(fileURLWithPath: $0).lastPathComponent }
            guard let kernelData = try? Data(contentsOf: kernel) else {
                throw ShootdownError.io(path: kernel.path, message: "cannot read the kernel to upload it")
            }
            // libvirt opens file chardevs itself and passes QEMU the descriptor: 0644 is enough.
            for (name, data) in zip(names, [kernelData, initramfs, Data(), Data(), lifetime]) {
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
    func prepareStage(_ stage: URL, spec: DomainSpec, kernel: URL, initramfs: Data, lifetime: Data) throws {
        try prepareGuestFolder(stage, spec: spec)
        try writeAtomically(lifetime, to: stage.appendingPathComponent("lifetime"))
        try Self.stageKernel(kernel, at: URL(fileURLWithPath: spec.kernel), ownCache: context.paths.cache)
        try writeAtomically(initramfs, to: URL(fileURLWithPath: spec.initrd))
        chmod(spec.initrd, 0o644)
    }

    /// A guest's fresh folder with its owner and empty channel files: all a restored copy
    /// needs (its kernel and initramfs are the saved guest's), and where a boot stages more.
    func prepareGuestFolder(_ folder: URL, spec: DomainSpec) throws {
        let fileManager = FileManager.default
        try? fileManager.removeItem(at: folder)
        try fileManager.makeDirectory(folder.deletingLastPathComponent(), mode: 0o755)
        try fileManager.makeDirectory(folder, mode: 0o755)
        // First, so a run killed while staging still leaves a folder the next run removes.
        try writeAtomically(try JSONEncoder().encode(spec.owner ?? .current), to: folder.appendingPathComponent(StaleGuests.ownerFile))
        for path in [spec.consolePath, spec.resultPath] {
            guard fileManager.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o666]) else {
                throw ShootdownError.io(path: path, message: "cannot create the guest's channel file")
            }
        }
    }
}

extension GuestLauncher {
    /// The kernel where the domain reads it. A hard link shares the inode, so its mode
    /// (and the owner libvirt's DAC driver sets while the guest runs) would be the
    /// original's: only shootdown's own cache, already world-readable, is linked (free,
    /// and immune to the cache entry being replaced meanwhile). Anything else, a user's
    /// `file:` kernel or a build folder, is copied (measured: 30 ms for a 12 MiB x86
    /// bzImage, 120 ms for a 44 MiB arm64 Image, against boots of seconds). The copy is
    /// 0644 when the original is world-readable; otherwise 0640 in QEMU's group (kvm), so
    /// a private kernel stays private.
    static func stageKernel(_ kernel: URL, at destination: URL, ownCache: URL? = nil) throws {
        var source = stat()
        guard stat(kernel.path, &source) == 0 else {
            throw ShootdownError.io(path: kernel.path, message: "cannot stage the kernel: \(String(cString: strerror(errno)))")
        }
        try? FileManager.default.removeItem(at: destination)
        let worldReadable = source.st_mode & S_IROTH != 0
        if let ownCache, worldReadable, kernel.standardizedFileURL.path.hasPrefix(ownCache.standardizedFileURL.path + "/"),
           link(kernel.path, destination.path) == 0 {
            return
        }
        do {
            try FileManager.default.copyItem(at: kernel, to: destination)
        } catch {
            throw ShootdownError.io(path: kernel.path, message: "cannot stage the kernel: \(error.localizedDescription)")
        }
        if worldReadable {
            chmod(destination.path, 0o644)
        } else if let group = getgrnam("kvm") {
            chown(destination.path, getuid(), group.pointee.gr_gid)
            chmod(destination.path, 0o640)
        } else {
            chmod(destination.path, 0o644)
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
    private let registry: ActiveDomains

    init(registry: ActiveDomains) {
        self.registry = registry
    }

    func remove(_ domain: LibvirtDomain, cleanup: @escaping @Sendable () -> Void) {
        group.enter()
        queue.async { [group, registry] in
            domain.destroy()
            // Registered until libvirt has removed it: an interruption meanwhile waits for it.
            let deadline = Date().addingTimeInterval(60)
            while domain.exists && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            registry.unregister(domain)
            cleanup()
            group.leave()
        }
    }

    func waitForAll() {
        group.wait()
    }
}
