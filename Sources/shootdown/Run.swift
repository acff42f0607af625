import ArgumentParser
import Foundation
import ShootdownCore

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build, boot and measure tests; with no options the embedded default run.",
        discussion: """
        Default: the newest Debian kernel on x86_64 and aarch64, 4 vCPUs, 1024 MiB, the
        hugetlb-share-fork-exit test at its default parameters, KVM where a probe boot
        proves it works and TCG otherwise. Results go to results/<run-id>/<cell>/.
        """
    )

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: "Kernel: debian[:VERSION] or file:PATH (repeatable).")
    var kernel: [String] = []

    @Option(name: .long, help: "Guest arch: x86_64 or aarch64 (repeatable; default: all the kernel serves).")
    var arch: [String] = []

    @Option(name: .long, help: "vCPU count (repeatable).")
    var vcpus: [Int] = []

    @Option(name: .long, help: "Guest memory in MiB.")
    var memory: Int = 1024

    @Option(name: .long, help: "Test template (repeatable; shootdown generate --list).")
    var test: [String] = []

    @Option(name: .long, help: "Template parameter key=value; key=a,b,c or key=lo..hi sweeps (repeatable).")
    var param: [String] = []

    @Option(name: .long, help: "Accelerator: auto (probe KVM), kvm or tcg.")
    var accel: String = "auto"

    @Option(name: .long, help: "Paravirt features: on, off (default: the hypervisor's defaults).")
    var paravirt: String?

    @Option(name: .long, help: "Per-cell timeout in seconds (boot + test + power-off).")
    var timeout: Int = 300

    @Option(name: .long, help: "Name of the run folder (default: a timestamp).")
    var runID: String?

    @Flag(name: .long, help: "Print result.json paths instead of the table.")
    var quiet = false

    func run() throws {
        let context = global.makeContext()
        let outcome = try reportingErrors { () -> RunPipeline.Outcome in
            let request = RunRequest(
                kernels: try (kernel.isEmpty ? ["debian"] : kernel).map(KernelSpec.init(parsing:)),
                arches: arch.isEmpty ? nil : try arch.map(Arch.init(parsing:)),
                vcpus: vcpus.isEmpty ? [4] : vcpus, memoryMiB: memory,
                tests: test.isEmpty ? [RunRequest.defaultTest] : test, parameters: param,
                accel: try parseChoice(accel, as: AcceleratorChoice.self, option: "--accel"),
                paravirt: try paravirt.map { try parseChoice($0, as: Paravirt.self, option: "--paravirt") },
                timeoutSeconds: timeout)
            return try RunPipeline(context: context).run(request, runID: runID) { result, directory in
                let line = "  \(result.status.rawValue) \(result.cell.id)" + (result.reason.map { ": \($0)" } ?? "")
                context.log(line + " (\(String(format: "%.1f", result.timings.totalSeconds)) s, \(directory.path))")
            }
        }
        if quiet {
            outcome.results.forEach { print(outcome.directory.cellDirectory($0.cell.id).appendingPathComponent("result.json").path) }
        } else {
            print(TerminalReport.render(outcome.results, sweeps: outcome.sweeps), terminator: "")
            print("results: \(outcome.directory.url.path)")
        }
        if outcome.results.contains(where: { $0.status == .fail || $0.status == .error }) {
            throw ExitCode(1)
        }
    }
}

func parseChoice<T: RawRepresentable & CaseIterable>(_ text: String, as type: T.Type, option: String) throws -> T
    where T.RawValue == String {
    guard let value = T(rawValue: text.lowercased()) else {
        throw ShootdownError.usage("\(option) \(text): use one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return value
}
