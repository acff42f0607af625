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

    @Option(name: .long, help: "Paravirt features: on, off (repeatable; default: the hypervisor's defaults).")
    var paravirt: [String] = []

    @Option(name: .long, help: "Per-cell timeout in seconds (boot + test + power-off).")
    var timeout: Int = 300

    @Option(name: .long, help: "Run every cell this many times (median and spread are reported).")
    var repeats: Int = 1

    @Option(name: .customLong("config-fragment"), help: "Extra Kconfig fragment for git:/dir: kernels (repeatable).")
    var configFragment: [String] = []

    @Option(name: .long, help: "Race tests' widening module: on (default) or off.")
    var widen: String = "on"

    @Option(name: .long, help: "Shipped config flavour for git:/dir: kernels: debug (DEBUG_VM, PAGE_TABLE_CHECK, DEBUG_PAGEALLOC) or debug-kasan.")
    var flavour: String?

    @OptionGroup var execution: ExecutionFlags

    @Flag(name: .long, help: "Print result.json paths instead of the table.")
    var quiet = false

    func run() throws {
        ActiveDomains.shared.handleStopSignals()
        let context = global.makeContext()
        try reportingErrors {
            let catalog = TemplateCatalog(resources: context.paths.resources)
            let request = RunRequest(
                kernels: try (kernel.isEmpty ? ["debian"] : kernel).map(KernelSpec.init(parsing:)),
                arches: arch.isEmpty ? nil : try arch.map(Arch.init(parsing:)),
                paravirt: paravirt.isEmpty ? [nil] : try paravirt.map { try parseChoice($0, as: Paravirt.self, option: "--paravirt") },
                vcpus: vcpus.isEmpty ? [4] : vcpus, memoryMiB: memory,
                tests: try RunRequest.selections(tests: test.isEmpty ? [RunRequest.defaultTest] : test, parameters: param, catalog: catalog),
                accel: try parseChoice(accel, as: AcceleratorChoice.self, option: "--accel"),
                timeoutSeconds: timeout, repeats: repeats)
            var withFragments = request
            guard ["on", "off"].contains(widen) else { throw ShootdownError.usage("--widen \(widen): use on or off") }
            withFragments.widen = widen == "on" ? nil : false
            withFragments.flavour = try flavour.map { try parseChoice($0, as: KernelFlavour.self, option: "--flavour") }
            withFragments.configFragments = try configFragment.map { path in
                guard FileManager.default.fileExists(atPath: path) else { throw ShootdownError.usage("--config-fragment \(path): no such file") }
                return URL(fileURLWithPath: path).standardizedFileURL.path
            }
            try runAndReport(withFragments, context: context, execution: try execution.options(), quiet: quiet)
        }
    }
}

/// Parallelism, sharding and resuming, shared by `run` and `matrix`.
struct ExecutionFlags: ParsableArguments {
    @Option(name: .long, help: "Guests booted at once (default: from host CPUs and memory).")
    var jobs: Int?

    @Option(name: .long, help: "Run only slice I of N of the cells, e.g. 2/4 (merge the slices with shootdown merge).")
    var shard: String?

    @Option(name: .long, help: "Continue an interrupted run (its id or folder), skipping finished cells.")
    var resume: String?

    @Option(name: .long, help: "Name of the run folder (default: a timestamp).")
    var runID: String?

    @Option(name: .long, help: "batch (default): cells that need the same guest run one after another in one boot; a failure, splat or changed global setting sends the rest to a fresh boot. cell: one boot per cell.")
    var isolation: String = "batch"

    @Option(name: .long, help: "restore (default): each boot restores a guest saved at the agent's ready point (booted once per guest configuration and kept), falling back to a boot with the reason in the result. boot: boot the kernel every time.")
    var fresh: String = "restore"

    func options() throws -> ExecutionOptions {
        if let jobs, jobs < 1 { throw ShootdownError.usage("--jobs \(jobs): use 1 or more") }
        return ExecutionOptions(jobs: jobs, shard: try shard.map(ExecutionOptions.parseShard), resume: resume, runID: runID,
                                isolation: try parseChoice(isolation, as: Isolation.self, option: "--isolation"),
                                fresh: try parseChoice(fresh, as: FreshGuest.self, option: "--fresh"))
    }
}

/// Runs a request with a progress line per cell, then prints the report; exits 1 when a
/// cell failed or erred or an expectation was not met.
func runAndReport(_ request: RunRequest, context: ToolContext, execution: ExecutionOptions, quiet: Bool) throws {
    let outcome: RunPipeline.Outcome
    do {
        outcome = try RunPipeline(context: context).run(request, options: execution) { result, _, progress in
            var line = "  \(result.status.rawValue) \(result.cell.id)" + (result.reason.map { ": \($0)" } ?? "")
            line += String(format: " (%.1f s) · %d/%d done", result.timings.totalSeconds, progress.done, progress.total)
            if progress.failures > 0 { line += ", \(progress.failures) failed" }
            if let remaining = progress.remainingSeconds, progress.done < progress.total { line += String(format: ", ETA %.0f s", remaining) }
            context.log(line)
        }
    } catch let interrupted as RunInterrupted {
        // The signal handler is still destroying guests; it exits the process when done.
        ActiveDomains.shared.awaitInterruption(interrupted.signal)
    }
    if quiet {
        outcome.results.forEach { print(outcome.directory.cellDirectory($0.cell.id).appendingPathComponent("result.json").path) }
    } else {
        print(TerminalReport.render(outcome.report), terminator: "")
        print("results: \(outcome.directory.url.path) (results.json, report.html, junit.xml, kcidb.json)")
    }
    if outcome.report.failed { throw ExitCode(1) }
}

