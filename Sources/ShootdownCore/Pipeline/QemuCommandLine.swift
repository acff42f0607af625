/// The raw QEMU command line equivalent to a domain: the reproducer a user can run
/// without libvirt, and the baseline the benchmark compares libvirt against.
public enum QemuCommandLine {
    public static func arguments(for spec: DomainSpec) -> [String] {
        var machine = spec.arch.machine
        if spec.arch == .aarch64 { machine += ",gic-version=3" }
        var cpu: String
        switch (spec.accel, spec.arch) {
        case (.kvm, _): cpu = "host"
        case (.tcg, .x86_64): cpu = "max"
        case (.tcg, .aarch64): cpu = "cortex-a72"
        }
        if spec.accel == .kvm && spec.paravirt == .off && spec.arch == .x86_64 {
            cpu += ",kvm-pv-tlb-flush=off,kvm-pv-ipi=off,kvm-hint-dedicated=on"
        }
        let accel = spec.accel.rawValue + spec.qemuSuffixes.accel
        cpu += spec.qemuSuffixes.cpu
        var numa: [String] = []
        for (node, cell) in spec.numaCells.enumerated() {
            numa += ["-object", "memory-backend-ram,id=ram-node\(node),size=\(cell.memoryMiB)M",
                     "-numa", "node,nodeid=\(node)" + (cell.cpus.isEmpty ? "" : ",cpus=\(cell.cpus.lowerBound)-\(cell.cpus.upperBound - 1)")
                        + ",memdev=ram-node\(node)"]
        }
        return [spec.emulator,
                "-machine", machine, "-accel", accel, "-cpu", cpu,
                "-smp", spec.numaSockets > 1 ? "\(spec.vcpus),sockets=\(spec.numaSockets),cores=\(spec.vcpus / spec.numaSockets),threads=1"
                    : String(spec.vcpus), "-m", "\(spec.memoryMiB)M"] + numa + [
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", spec.kernel, "-initrd", spec.initrd, "-append", spec.commandLine,
                "-serial", "file:\(spec.consolePath)",
                "-device", "virtio-serial-pci",
                "-chardev", "file,id=results,path=\(spec.resultPath)",
                "-device", "virtserialport,chardev=results,name=\(DomainSpec.resultChannel)"]
    }

    public static func shellLine(for spec: DomainSpec) -> String {
        arguments(for: spec).map(shellQuoted).joined(separator: " ")
    }
}
