import ArgumentParser
import ShootdownCore

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check this host: libvirt, QEMU, cross compilers, /dev/kvm and whether KVM really works."
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Probe KVM with a short boot when no cached verdict exists.")
    var probe = false

    @Flag(name: .long, help: "Forget the cached KVM verdict and probe again.")
    var reprobe = false

    func run() throws {
        let findings = HostDoctor(context: global.makeContext()).findings(probeKVM: probe || reprobe, reprobe: reprobe)
        let width = findings.map(\.subject.count).max() ?? 0
        for finding in findings {
            print("\(finding.level.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0)) \(finding.subject.padding(toLength: width, withPad: " ", startingAt: 0))  \(finding.detail)")
            if let fix = finding.fix { print("     \(String(repeating: " ", count: width))  fix: \(fix)") }
        }
        if findings.contains(where: { $0.level == .fail }) { throw ExitCode(1) }
    }
}
