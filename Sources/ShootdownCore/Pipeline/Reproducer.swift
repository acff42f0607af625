import Foundation

/// reproduce.sh: the cell again, three ways.
enum Reproducer {
    /// A cell that shared its boot (`batch`) is reproduced alone: its folder's initramfs
    /// holds only its own test, and domain.xml is the shared boot's.
    static func script(cell: Cell, spec: DomainSpec, libvirtURI: String, batch: BatchPlacement? = nil) -> String {
        var local = spec
        local.kernel = cell.kernel.kernel.path
        local.initrd = "initramfs.cpio"
        local.consolePath = "repro-console.log"
        local.resultPath = "repro-records.jsonl"
        // A reproducer names the exact kernel, never "latest".
        let kernel = cell.kernel.spec.hasPrefix("debian") ? "debian:\(cell.kernel.version)" : cell.kernel.spec
        var rerun = ["shootdown", "run", "--arch", cell.arch.rawValue, "--kernel", kernel,
                     "--vcpus", String(cell.vcpus), "--memory", String(cell.memoryMiB), "--test", cell.instance.test,
                     "--accel", cell.accel.rawValue]
        if let paravirt = cell.paravirt { rerun += ["--paravirt", paravirt.rawValue] }
        rerun += cell.instance.parameters.flatMap { ["--param", "\($0.name)=\($0.value)"] }
        return """
        #!/bin/sh
        # Reproduces cell \(cell.id) without libvirt: the same kernel, initramfs and
        # command line as the domain in domain.xml. The console goes to repro-console.log,
        # the agent's records to repro-records.jsonl.\(batch.map { "\n# It ran as test \($0.position) of \($0.size) in one boot (\($0.boot)); this runs it alone." } ?? "")
        #   through shootdown: \(rerun.map(shellQuoted).joined(separator: " "))
        #   through libvirt:   virsh -c \(libvirtURI) create domain.xml  (after staging the files it names)
        set -e
        cd "$(dirname "$0")"
        : > repro-console.log
        : > repro-records.jsonl
        exec \(QemuCommandLine.shellLine(for: local))

        """
    }
}
