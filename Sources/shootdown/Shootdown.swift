import ArgumentParser
import ShootdownCore

@main
struct Shootdown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shootdown",
        abstract: "Generate, boot and measure Linux mm selftests (hugetlb PMD sharing, TLB-flush IPIs) across kernels and arches.",
        subcommands: [Run.self, Matrix.self, Compare.self, Bisect.self, Report.self, Merge.self, Generate.self, Doctor.self, Kernels.self],
        defaultSubcommand: nil
    )
}

/// Options every subcommand that touches guests or results shares.
struct GlobalOptions: ParsableArguments {
    init() {}

    init(libvirtURI: String?, results: String?) {
        self.libvirtURI = libvirtURI
        self.results = results
    }

    @Option(name: .customLong("libvirt-uri"), help: "libvirt connection (default qemu:///system for root, qemu:///session otherwise).")
    var libvirtURI: String?

    @Option(help: "Folder for run results.")
    var results: String?

    func makeContext() -> ToolContext {
        let uri = libvirtURI ?? ToolContext.defaultLibvirtURI
        return ToolContext(paths: .standard(results: results, libvirtURI: uri), libvirtURI: uri)
    }
}

/// Turns core errors into one clear line and a non-zero exit instead of a trace.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch _ where ActiveDomains.shared.interruptingSignal != nil {
        // A command the stop signal killed: the handler exits 128 + signal once guests are gone.
        ActiveDomains.shared.awaitInterruption(ActiveDomains.shared.interruptingSignal!)
    } catch let error as ShootdownError {
        throw ValidationOrRuntimeError(message: error.description)
    } catch let error as RunStopped {
        throw ValidationOrRuntimeError(message: error.description)
    }
}

struct ValidationOrRuntimeError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
