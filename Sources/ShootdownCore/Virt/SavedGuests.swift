import Foundation

/// How a cell's guest comes to life.
public enum FreshGuest: String, Sendable, Codable, CaseIterable {
    /// Restore a guest saved at the agent's ready point (booted once per guest
    /// configuration, kept across runs), and hand it the plan over a port.
    case restore
    /// Boot the kernel for every guest.
    case boot
}

/// Why a guest could not be restored; the cell then boots, and says why.
struct RestoreUnavailable: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// A guest saved at the agent's ready point: the save file libvirt wrote, and the boot
/// console up to that point (a restored copy's console starts where the save was made).
/// A copy carries the saved guest's UUID (libvirt refuses any other), so two copies of one
/// save cannot run at once: each save is a slot, held while its copy runs.
struct SavedGuest {
    var folder: URL
    var saveFile: URL { folder.appendingPathComponent("guest.save") }
    var bootConsole: Data
    var spec: DomainSpec
    var slot: HeldLock
}

/// Fresh guests faster than a boot. A guest configuration (kernel, arch, accelerator,
/// paravirt, vCPUs, memory, the agent and modules of the initramfs, QEMU and libvirt) is
/// booted once to the agent's ready point, where it waits for its plan on a host→guest
/// port, and saved with virDomainSave; every cell then restores a copy with its own
/// channel files (virDomainRestoreFlags with a changed definition; libvirt insists on the
/// saved name and UUID) and sends it the plan, test programs and widening module. Anything that keeps this from working makes
/// the cell boot instead, with the reason in its result.
extension GuestLauncher {
    public func start(_ spec: DomainSpec, kernel: URL, image: GuestImage, timeout: Duration,
                      fresh: FreshGuest) throws -> GuestOutcome {
        func coldBoot(_ why: String?) throws -> GuestOutcome {
            var outcome = try boot(spec, kernel: kernel, initramfs: image.archive, timeout: timeout)
            outcome.start = why.map { "cold boot: \($0)" } ?? "cold boot"
            return outcome
        }
        guard fresh == .restore else { return try coldBoot(nil) }
        guard staging == .files else { return try coldBoot("restoring needs the hypervisor on this machine (files staging)") }
        do {
            let saved = try savedGuest(like: spec, kernel: kernel, base: image.baseArchive)
            return try restore(saved, as: spec, payload: image.payload, timeout: timeout)
        } catch let unavailable as RestoreUnavailable {
            context.log("  \(spec.name): \(unavailable.reason); booting instead")
            return try coldBoot(unavailable.reason)
        }
    }

    /// Saved guests, kept across runs: a folder per configuration, named by its key.
    var savedRoot: URL { context.paths.stage.appendingPathComponent("saved") }

    /// Everything a saved guest depends on; the spec's name and channel paths do not count.
    func savedKey(_ spec: DomainSpec, kernel: URL, base: Data) -> String {
        let attributes = (try? FileManager.default.attributesOfItem(atPath: kernel.path)) ?? [:]
        let kernelIdentity = "\(kernel.path)|\((attributes[.size] as? Int) ?? -1)|\((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        var hash = ContentHash()
        hash.update(base)
        for part in [kernelIdentity, spec.arch.rawValue, spec.accel.rawValue, spec.paravirt?.rawValue ?? "default",
                     String(spec.vcpus), String(spec.memoryMiB), "numa \(spec.numaNodes)", spec.commandLine, spec.emulatorWrapper ?? spec.emulator,
                     hypervisorIdentity] {
            hash.update(part + "\n")
        }
        return String(hash.hex.prefix(16))
    }

    /// Most saves of one configuration: one per guest of it running at once.
    static let savedSlots = 8

    /// A free saved guest for this configuration, held until its copy is gone: the first
    /// slot nobody holds, booted and saved first if it has no save yet.
    func savedGuest(like spec: DomainSpec, kernel: URL, base: Data) throws -> SavedGuest {
        let key = savedKey(spec, kernel: kernel, base: base)
        try FileManager.default.makeDirectory(savedRoot, mode: 0o755)
        for slot in 0..<Self.savedSlots {
            let folder = savedRoot.appendingPathComponent("\(key)-\(slot)")
            guard let held = HeldLock.tryTake(folder.appendingPathExtension("lock")) else { continue }
            var template = spec
            template.name = "shootdown-saved-\(key)-\(slot)"
            template.kernel = folder.appendingPathComponent("kernel").path
            template.initrd = folder.appendingPathComponent("initramfs.cpio").path
            template.consolePath = folder.appendingPathComponent("console.log").path
            template.resultPath = folder.appendingPathComponent("results.jsonl").path
            template.planSocketPath = folder.appendingPathComponent("plan.sock").path
            let uuidFile = folder.appendingPathComponent("uuid")
            if let uuid = (try? String(contentsOf: uuidFile, encoding: .utf8)).map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }),
               FileManager.default.fileExists(atPath: folder.appendingPathComponent("guest.save").path) {
                template.uuid = uuid
                // Its last use, for pruneSaved().
                utimes(uuidFile.path, nil)
            } else {
                Self.pruneSaved(in: savedRoot)
                template.uuid = UUID().uuidString.lowercased()
                context.log("  booting a guest to save (\(spec.arch) \(spec.accel) \(spec.vcpus) vCPUs \(spec.memoryMiB) MiB); cells restore it")
                do {
                    try makeSavedGuest(template, kernel: kernel, base: base, folder: folder)
                } catch {
                    held.release()
                    throw error
                }
                // Written last: a folder without it is remade by whoever takes the slot next.
                try Data((template.uuid! + "\n").utf8).write(to: uuidFile)
            }
            return SavedGuest(folder: folder, bootConsole: (try? Data(contentsOf: URL(fileURLWithPath: template.consolePath))) ?? Data(),
                              spec: template, slot: held)
        }
        throw RestoreUnavailable(reason: "all \(Self.savedSlots) saved guests of this configuration are in use")
    }

    /// Saves kept: each is about 100 MB, and a changed agent, kernel or QEMU makes new ones.
    static let keptSaves = 12
    static let savedMaxAge: TimeInterval = 7 * 24 * 3600

    /// Removes saves nobody used for a week, and the least recently used beyond
    /// `keptSaves`; never one a run holds (its slot's lock).
    static func pruneSaved(in savedRoot: URL, now: Date = Date()) {
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: savedRoot.path)) ?? []).map { savedRoot.appendingPathComponent($0) }
        let folders = entries.filter(isDirectory)
        // Locks of slots whose save was never made or is gone.
        for lock in entries where lock.pathExtension == "lock" && !isDirectory(lock.deletingPathExtension()) {
            guard let held = HeldLock.tryTake(lock) else { continue }
            unlink(lock.path)
            held.release()
        }
        func lastUse(_ folder: URL) -> Date {
            ((try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent("uuid").path))?[.modificationDate] as? Date) ?? .distantPast
        }
        let byUse = folders.map { ($0, lastUse($0)) }.sorted { $0.1 > $1.1 }
        for (index, (folder, used)) in byUse.enumerated() where index >= keptSaves || now.timeIntervalSince(used) > savedMaxAge {
            let lock = folder.appendingPathExtension("lock")
            guard let held = HeldLock.tryTake(lock) else { continue }
            try? FileManager.default.removeItem(at: folder)
            // Unlinked while held: a run that opens the path later locks a new file, for
            // a slot that no longer has a save.
            unlink(lock.path)
            held.release()
        }
    }

    private static func isDirectory(_ url: URL) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &directory) && directory.boolValue
    }

    /// Boots `template` to the agent's ready record and saves it.
    func makeSavedGuest(_ template: DomainSpec, kernel: URL, base: Data, folder: URL) throws {
        let registry = context.activeDomains
        // Its own lifetime bound; a restored copy raises it for itself (restore()).
        try prepareStage(folder, spec: template, kernel: kernel, initramfs: base, lifetime: Data("600\n".utf8))
        _ = connection.destroyDomain(named: template.name)
        let xml = try DomainXML.render(template)
        let domain: LibvirtDomain
        switch try startRegistered(cleanup: {}, { try connection.startTransient(xml: xml) }) {
        case .success(let started): domain = started
        case .failure(let error):
            try connection.checkAlive()
            try? FileManager.default.removeItem(at: folder)
            throw RestoreUnavailable(reason: "the guest to save did not start: \(error)")
        }
        defer { registry.unregister(domain) }
        let ready = Data(#"{"type":"ready""#.utf8)
        let deadline = ContinuousClock.now + .seconds(Self.saveBootSeconds)
        while !fileTail(template.resultPath).contains(ready) && domain.isActive && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        guard fileTail(template.resultPath).contains(ready) else {
            domain.destroy()
            let console = String(decoding: GuestStream.read(path: template.consolePath, limit: 1 << 20), as: UTF8.self)
            try? FileManager.default.removeItem(at: folder)
            throw RestoreUnavailable(reason: "the guest to save did not reach the agent's ready point within \(Self.saveBootSeconds) s"
                                     + (console.isEmpty ? "" : " (console: \(GuestText.excerpt(VerdictBuilder.lastLines(console, 3))))"))
        }
        do {
            try domain.save(to: folder.appendingPathComponent("guest.save").path)
        } catch {
            domain.destroy()
            try? FileManager.default.removeItem(at: folder)
            throw RestoreUnavailable(reason: "libvirt could not save the guest: \(error)")
        }
    }

    /// How long a guest booted to be saved may take to reach the agent.
    static let saveBootSeconds = 180

    /// Restores a copy of `saved` as `spec` (its name, channel files and owner), sends it
    /// the payload, and waits for its result like a booted guest.
    func restore(_ saved: SavedGuest, as spec: DomainSpec, payload: Data, timeout: Duration) throws -> GuestOutcome {
        // libvirt restores only under the saved guest's name and UUID. A domain of that
        // name now is a copy a killed run left: the slot is ours, so its owner is gone.
        var copy = saved.spec
        if connection.destroyDomain(named: copy.name) {
            context.log("destroyed a leftover domain \(copy.name) from an interrupted run")
        }
        let registry = context.activeDomains
        let folder = URL(fileURLWithPath: spec.consolePath).deletingLastPathComponent()
        copy.owner = spec.owner
        copy.consolePath = spec.consolePath
        copy.resultPath = spec.resultPath
        // UNIX socket paths hold 107 bytes; a cell's stage folder name can be longer.
        let socket = context.paths.stage.appendingPathComponent("sockets/\(ContentHash.of(spec.name).prefix(16)).sock")
        copy.planSocketPath = socket.path
        do {
            try prepareGuestFolder(folder, spec: copy)
            try FileManager.default.makeDirectory(socket.deletingLastPathComponent(), mode: 0o755)
            unlink(socket.path)
        } catch {
            saved.slot.release()
            throw error
        }
        // The emulator wrapper reads the lifetime beside the kernel, which is the saved one's.
        raiseLifetime(in: saved.folder, to: Int(timeout.seconds.rounded(.up)) + Self.lifetimeGrace)
        // The slot is free again once the copy is gone: its UUID is the saved guest's.
        let slot = saved.slot
        let cleanup: @Sendable () -> Void = {
            try? FileManager.default.removeItem(at: folder)
            unlink(socket.path)
            slot.release()
        }
        let xml = try DomainXML.render(copy)
        let clock = ContinuousClock(), started = clock.now
        let domain: LibvirtDomain
        switch try startRegistered(cleanup: cleanup, { try connection.restoreTransient(from: saved.saveFile.path, xml: xml, name: copy.name) }) {
        case .success(let restored): domain = restored
        case .failure(let error):
            try connection.checkAlive()
            // A save that does not restore is made again by the next cell that wants it.
            try? FileManager.default.removeItem(at: saved.saveFile)
            cleanup()
            throw RestoreUnavailable(reason: "libvirt could not restore the saved guest: \(error)")
        }
        let startLatency = clock.now - started
        // Held open until the guest is done: QEMU may drop what it has not yet passed
        // to the guest when the host end closes.
        let planSocket: Int32
        do {
            planSocket = try Self.send(payload, to: copy.planSocketPath!, deadline: started + .seconds(30))
        } catch {
            domain.destroy()
            registry.unregister(domain)
            cleanup()
            throw RestoreUnavailable(reason: "the restored guest took no plan: \(error)")
        }
        defer { close(planSocket) }
        let finished = try awaitResult(domain, spec: copy, deadline: started + timeout, cleanup: cleanup)
        let wall = clock.now - started
        let outcome = GuestOutcome(domainXML: xml, timedOut: finished == .timedOut, wall: wall, startLatency: startLatency,
                                   console: saved.bootConsole + collect(copy.consolePath, limit: Self.maxConsoleBytes),
                                   results: collect(copy.resultPath, limit: Self.maxResultBytes), startError: nil,
                                   start: "restored a saved guest (\(saved.folder.lastPathComponent))")
        teardowns.remove(domain, cleanup: cleanup)
        return outcome
    }

    func raiseLifetime(in folder: URL, to seconds: Int) {
        let file = folder.appendingPathComponent("lifetime")
        let current = (try? String(contentsOf: file, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        if seconds > current { try? writeAtomically(Data("\(seconds)\n".utf8), to: file) }
    }

    /// Connects to the guest's plan socket (QEMU listens once the restore returns) and
    /// writes the payload, which the agent reads to its end marker; returns the open socket.
    static func send(_ payload: Data, to path: String, deadline: ContinuousClock.Instant) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else { throw ShootdownError.io(path: path, message: "socket path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ShootdownError.io(path: path, message: String(cString: strerror(errno))) }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if connected == 0 {
                // A guest that never reads must not hold the run: writes give up after 60 s.
                var limit = timeval(tv_sec: 60, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                var offset = 0
                try payload.withUnsafeBytes { bytes in
                    while offset < bytes.count {
                        let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                        if written < 0 {
                            if errno == EINTR { continue }
                            let why = String(cString: strerror(errno))
                            close(fd)
                            throw ShootdownError.io(path: path, message: "payload: \(why)")
                        }
                        offset += written
                    }
                }
                return fd
            }
            let why = String(cString: strerror(errno))
            close(fd)
            guard ContinuousClock.now < deadline else { throw ShootdownError.io(path: path, message: "cannot connect: \(why)") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}
