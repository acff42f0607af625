import Foundation

public enum AcceleratorChoice: String, Sendable, Codable, CaseIterable {
    case auto, kvm, tcg
}

public struct AccelDecision: Sendable, Codable, Equatable {
    public var accel: Accelerator
    public var reason: String
    /// What the cached verdict depends on; a change triggers a new probe.
    public var hostKey: String?
}

/// Decides KVM or TCG per arch. /dev/kvm existing proves nothing (a nested host can
/// have one whose guests hang at "Booting from ROM"), so KVM counts only after a short
/// probe boot reaches the agent. The verdict is cached per host configuration.
public struct AccelProbe: Sendable {
    public static let probeTimeout: Duration = .seconds(20)

    let context: ToolContext
    /// The probe boots through the context's guests, like every cell.
    let launcher: any GuestLaunching

    public init(context: ToolContext) throws {
        self.context = context
        launcher = try context.guests.launcher(context: context)
    }

    /// A decision that needs no boot, or nil when only a probe can tell.
    public func decisionWithoutProbe(arch: Arch, choice: AcceleratorChoice) -> AccelDecision? {
        switch choice {
        case .tcg: return AccelDecision(accel: .tcg, reason: "TCG requested")
        case .kvm: return AccelDecision(accel: .kvm, reason: "KVM requested")
        case .auto: break
        }
        guard arch == .host else {
            return AccelDecision(accel: .tcg, reason: "TCG: \(arch) guest on a \(Arch.host) host")
        }
        guard FileManager.default.fileExists(atPath: "/dev/kvm") else {
            return AccelDecision(accel: .tcg, reason: "TCG: no /dev/kvm")
        }
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            return AccelDecision(accel: .tcg, reason: "TCG: /dev/kvm is not accessible to this user")
        }
        if let cached = cached(arch: arch), cached.hostKey == hostKey() { return cached }
        return nil
    }

    public func decide(arch: Arch, choice: AcceleratorChoice, kernel: KernelImage, agent: Data) throws -> AccelDecision {
        if let decision = decisionWithoutProbe(arch: arch, choice: choice) { return decision }
        context.log("accel \(arch): probing KVM with a \(Int(Self.probeTimeout.seconds)) s boot of \(kernel.version)")
        let name = "shootdown-kvm-probe-\(getpid())"
        let spec = try launcher.stagedSpec(name: name, arch: arch, accel: .kvm, paravirt: nil, vcpus: 1, memoryMiB: 256,
                                           tcgThreads: .single)
        let image = GuestImage(agent: agent, plan: GuestPlan(hugepages: 0, probes: [], tests: []), programs: [],
                               modules: try kernel.moduleFiles())
        let outcome = try launcher.boot(spec, kernel: kernel.kernel, initramfs: image.archive, timeout: Self.probeTimeout)
        launcher.waitForTeardowns()
        let records = GuestRecords.parse(outcome.results)
        let decision: AccelDecision
        if let error = outcome.startError {
            decision = AccelDecision(accel: .tcg, reason: "TCG: a KVM domain would not start (\(Self.firstLine(error)))", hostKey: hostKey())
        } else if records.boot != nil {
            decision = AccelDecision(accel: .kvm, reason: String(format: "KVM: probe boot reached the agent in %.1f s", outcome.wall.seconds), hostKey: hostKey())
        } else {
            decision = AccelDecision(accel: .tcg, reason: "TCG: the KVM probe boot did not reach the agent within \(Int(Self.probeTimeout.seconds)) s", hostKey: hostKey())
        }
        try? writeAtomically(try JSONEncoder().encode(decision), to: cacheFile(arch))
        return decision
    }

    /// QEMU's start errors can be long; the first line, shortened, says enough.
    static func firstLine(_ text: String, limit: Int = 160) -> String {
        let line = text.lines().first.map(String.init) ?? text
        return line.count > limit ? String(line.prefix(limit)) + "…" : line
    }

    func cacheFile(_ arch: Arch) -> URL {
        context.paths.cache.appendingPathComponent("accel-\(arch).json")
    }

    func cached(arch: Arch) -> AccelDecision? {
        guard let data = try? Data(contentsOf: cacheFile(arch)) else { return nil }
        return try? JSONDecoder().decode(AccelDecision.self, from: data)
    }

    /// Host kernel, KVM device identity and hypervisor version: what a KVM verdict rests on.
    func hostKey() -> String {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var status = stat()
        let device = stat("/dev/kvm", &status) == 0 ? "\(status.st_rdev)" : "none"
        return [release, device, launcher.hypervisorIdentity].joined(separator: "|")
    }
}
