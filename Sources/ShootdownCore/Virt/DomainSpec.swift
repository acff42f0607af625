import Foundation

/// How QEMU's TCG runs a guest's vCPUs: one host thread for all of them in turn, or a
/// thread each (MTTCG).
public enum TCGThreads: String, Sendable, Codable {
    case single, multi

    /// x86 guests under multi-threaded TCG crash at random (`Oops: int3` at static-key
    /// patch sites: QEMU 7.2's MTTCG races on cross-modifying code), seen in ~3% of boots
    /// here and more under load: always one thread. An arm64 guest gets a thread per vCPU
    /// for a race test (`races`: one thread switches vCPUs only at QEMU's 100 ms kick, so
    /// a 20 ms widened window would never see another vCPU run), and otherwise only while
    /// the host has a core for each vCPU and one to spare. Overcommitted, its vCPUs spin
    /// in IPI waits for vCPU threads the host has descheduled: measured on 2 cores, a
    /// 4-vCPU guest's counting test took 0.3 s to 7.5 s at random (`hrtimer: interrupt
    /// took 15981120 ns`), two such guests at once stalled RCU, and 9 cells took 26-34 s
    /// against 6.4-6.8 s with one thread each (two guests at once).
    public static func choose(arch: Arch, vcpus: Int, hostCPUs: Int, races: Bool) -> TCGThreads {
        if arch == .x86_64 { return .single }
        return races || vcpus < hostCPUs ? .multi : .single
    }
}

/// Everything that defines one guest boot, independent of how it is started
/// (libvirt domain XML or a raw QEMU command line for reproducers).
public struct DomainSpec: Sendable, Equatable {
    public var name: String
    public var arch: Arch
    public var accel: Accelerator
    /// nil: leave the hypervisor's defaults alone.
    public var paravirt: Paravirt?
    public var vcpus: Int
    public var memoryMiB: Int
    public var emulator: String
    /// Set for x86_64 under TCG: a wrapper that runs `emulator` single-threaded (see
    /// `singleThreadedTCG`), because libvirt has no knob for TCG threading.
    public var emulatorWrapper: String?
    public var kernel: String
    public var initrd: String
    public var consolePath: String
    public var resultPath: String
    /// Recorded in the domain's metadata, so a later run can tell a leftover of a dead
    /// run (destroy it) from a guest of a live one (leave it alone).
    public var owner: GuestOwner?
    /// A guest booted to be saved and restored: the host→guest port its copies get their
    /// plan and programs on (a UNIX socket the host connects to).
    public var planSocketPath: String?
    /// Set for saved guests and their restored copies, which must carry the saved one's.
    public var uuid: String?
    /// How QEMU runs the vCPUs under TCG (ignored under KVM): the caller's choice for the
    /// test and host (`TCGThreads.choose`); the default assumes a core per vCPU.
    public var tcgThreads: TCGThreads
    /// NUMA nodes the guest sees (1: none declared). vCPUs and memory are split evenly, in
    /// order; a node left without a vCPU is memory only.
    public var numaNodes = 1

    /// Sockets: one per NUMA node where the vCPUs split evenly, else one.
    public var numaSockets: Int { numaNodes > 1 && vcpus % numaNodes == 0 ? numaNodes : 1 }

    /// Each NUMA node's vCPUs (a range, empty for a memory-only node) and memory.
    public var numaCells: [(cpus: Range<Int>, memoryMiB: Int)] {
        guard numaNodes > 1 else { return [] }
        return (0..<numaNodes).map { node in
            let cpus = (node * vcpus / numaNodes)..<((node + 1) * vcpus / numaNodes)
            let memory = memoryMiB / numaNodes + (node == numaNodes - 1 ? memoryMiB % numaNodes : 0)
            return (cpus, memory)
        }
    }

    public init(name: String, arch: Arch, accel: Accelerator, paravirt: Paravirt?, vcpus: Int, memoryMiB: Int,
                emulator: String, kernel: String, initrd: String, consolePath: String, resultPath: String) {
        self.name = name
        self.arch = arch
        self.accel = accel
        self.paravirt = paravirt
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.emulator = emulator
        self.kernel = kernel
        self.initrd = initrd
        self.consolePath = consolePath
        self.resultPath = resultPath
        tcgThreads = TCGThreads.choose(arch: arch, vcpus: vcpus, hostCPUs: .max, races: false)
    }

    /// One TCG thread for all vCPUs (`TCGThreads`).
    public var singleThreadedTCG: Bool { accel == .tcg && tcgThreads == .single }

    /// Suffixes for QEMU's `-accel` and `-cpu` values that libvirt cannot express: single-
    /// threaded TCG (above), and arm64 stolen time off under KVM (libvirt has no knob for
    /// it, and `no-steal-acc` alone still lets the guest set it up).
    public var qemuSuffixes: (accel: String, cpu: String) {
        (singleThreadedTCG ? ",thread=single" : "",
         accel == .kvm && arch == .aarch64 && paravirt == .off ? ",kvm-steal-time=off" : "")
    }

    /// The virtio-serial port the agent writes its records to.
    public static let resultChannel = "org.shootdown.results"
    public static let planChannel = "org.shootdown.plan"

    /// Kernel command line: console on the first serial port, warnings and worse on it
    /// (the agent captures the full log itself), and an immediate reset on panic so a
    /// crashed guest ends at once instead of at the timeout. An oops panics: the task
    /// it kills may hold locks or an RCU read section, and the wounded kernel then
    /// hangs until the timeout (measured: a GUP-fast oops held a cell for 300 s).
    public var commandLine: String {
        var words = ["console=\(arch.consoleDevice)", "loglevel=5", "oops=panic", "panic=-1", "rdinit=/init"]
        if paravirt == .off {
            // x86: no PV TLB flush, PV IPIs or PV spinlocks; both arches: no steal time.
            if arch == .x86_64 { words.append("nopv") }
            words.append("no-steal-acc")
        }
        return words.joined(separator: " ")
    }

    /// The CPU model: the host's under KVM; under TCG x86 `max`, and for aarch64 a
    /// Cortex-A72 (`max` adds pointer authentication, which TCG emulates slowly).
    var cpuModel: (mode: String, model: String?) {
        switch (accel, arch) {
        case (.kvm, _): return ("host-passthrough", nil)
        case (.tcg, .x86_64): return ("maximum", nil)
        case (.tcg, .aarch64): return ("custom", "cortex-a72")
        }
    }
}
