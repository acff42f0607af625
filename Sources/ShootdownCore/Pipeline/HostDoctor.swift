import Foundation

/// One line of `shootdown doctor`: what was checked, what was found, and the fix.
public struct DoctorFinding: Sendable, Equatable {
    public enum Level: String, Sendable { case ok = "ok", warn = "warn", fail = "FAIL" }

    public var level: Level
    public var subject: String
    public var detail: String
    public var fix: String?
}

/// Checks that this host can generate, build and boot: libvirt, QEMU, compilers,
/// arm64 packages, /dev/kvm and whether KVM really works.
public struct HostDoctor: Sendable {
    let context: ToolContext

    public init(context: ToolContext) {
        self.context = context
    }

    public func findings(probeKVM: Bool, reprobe: Bool) -> [DoctorFinding] {
        var findings: [DoctorFinding] = []
        let setup = "sudo ci/setup-host"

        var connection: LibvirtConnection?
        do {
            let opened = try LibvirtConnection(uri: context.libvirtURI)
            connection = opened
            findings.append(.init(level: .ok, subject: "libvirt", detail: "\(context.libvirtURI) (QEMU \(opened.hypervisorVersion() ?? "?"))"))
        } catch {
            findings.append(.init(level: .fail, subject: "libvirt", detail: "\(error)",
                                  fix: "\(setup) (installs libvirt and starts virtlogd/libvirtd), or --libvirt-uri qemu:///session"))
        }

        for arch in Arch.allCases {
            if let path = context.runner.which(arch.qemuBinary) {
                findings.append(.init(level: .ok, subject: arch.qemuBinary, detail: path))
            } else {
                findings.append(.init(level: .fail, subject: arch.qemuBinary, detail: "not found",
                                      fix: "apt-get install \(arch == .x86_64 ? "qemu-system-x86" : "qemu-system-arm")"))
            }
            findings.append(compilerFinding(arch))
        }

        let foreign = (try? context.runner.run(Command("dpkg", ["--print-foreign-architectures"])))?.stdout ?? ""
        findings.append(foreign.lines().contains("arm64")
            ? .init(level: .ok, subject: "dpkg arm64", detail: "arm64 packages (debian: kernels for aarch64) available")
            : .init(level: .warn, subject: "dpkg arm64", detail: "arm64 architecture not enabled",
                    fix: "dpkg --add-architecture arm64 && apt-get update (\(setup) does it)"))

        findings.append(kvmDeviceFinding())
        if let connection {
            findings.append(accelFinding(connection: connection, probe: probeKVM, reprobe: reprobe))
        }
        return findings
    }

    func compilerFinding(_ arch: Arch) -> DoctorFinding {
        guard context.runner.which(arch.compiler) != nil else {
            return .init(level: .fail, subject: arch.compiler, detail: "not found",
                         fix: arch == .x86_64 ? "apt-get install gcc libc6-dev" : "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross")
        }
        // Static linking needs the arch's libc.a, which the compiler package alone lacks.
        let source = "int main(void) { return 0; }\n"
        do {
            _ = try ProgramBuilder(context: context).build(source: source, name: "doctor", arch: arch)
            return .init(level: .ok, subject: arch.compiler, detail: "builds static \(arch) programs")
        } catch {
            return .init(level: .fail, subject: arch.compiler, detail: "cannot build a static program: \(error)",
                         fix: arch == .x86_64 ? "apt-get install libc6-dev" : "apt-get install libc6-dev-arm64-cross")
        }
    }

    func kvmDeviceFinding() -> DoctorFinding {
        var status = stat()
        guard stat("/dev/kvm", &status) == 0 else {
            return .init(level: .warn, subject: "/dev/kvm", detail: "absent: guests run under TCG (slower, no paravirt)")
        }
        let mode = String(status.st_mode & 0o777, radix: 8)
        let group = getgrgid(status.st_gid).map { String(cString: $0.pointee.gr_name) } ?? String(status.st_gid)
        if group != "kvm" || status.st_mode & 0o060 != 0o060 {
            return .init(level: .warn, subject: "/dev/kvm", detail: "mode \(mode) group \(group): libvirtd then re-probes QEMU on every start (~44 s)",
                         fix: "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm (sudo ci/setup-host does it)")
        }
        return .init(level: .ok, subject: "/dev/kvm", detail: "mode \(mode) group \(group)")
    }

    func accelFinding(connection: LibvirtConnection, probe: Bool, reprobe: Bool) -> DoctorFinding {
        // The probe opens its own connection through the context's guests.
        guard let accelProbe = try? AccelProbe(context: context) else {
            return .init(level: .fail, subject: "accelerator \(Arch.host)", detail: "libvirt at \(connection.uri) went away",
                         fix: "sudo ci/setup-host")
        }
        if reprobe { try? FileManager.default.removeItem(at: accelProbe.cacheFile(.host)) }
        if let decision = accelProbe.decisionWithoutProbe(arch: .host, choice: .auto) {
            return .init(level: decision.accel == .kvm ? .ok : .warn, subject: "accelerator \(Arch.host)", detail: decision.reason)
        }
        guard probe else {
            return .init(level: .warn, subject: "accelerator \(Arch.host)", detail: "KVM not probed yet",
                         fix: "shootdown doctor --probe (boots the newest Debian kernel once, up to \(Int(AccelProbe.probeTimeout.seconds)) s)")
        }
        do {
            let kernel = try KernelResolver(context: context).resolve(.debian(version: nil), arch: .host)
            let agentSource = try String(contentsOf: context.paths.resources.appendingPathComponent("Images/agent/agent.c"), encoding: .utf8)
            let agent = try Data(contentsOf: ProgramBuilder(context: context).build(source: agentSource, name: "agent", arch: .host))
            let decision = try accelProbe.decide(arch: .host, choice: .auto, kernel: kernel, agent: agent)
            return .init(level: decision.accel == .kvm ? .ok : .warn, subject: "accelerator \(Arch.host)", detail: decision.reason)
        } catch {
            return .init(level: .fail, subject: "accelerator \(Arch.host)", detail: "probe failed: \(error)")
        }
    }
}
