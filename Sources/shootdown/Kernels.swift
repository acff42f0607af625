import ArgumentParser
import ShootdownCore

struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List and fetch kernels.",
        subcommands: [List.self, Fetch.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the Debian kernel versions apt offers (newest first).")

        @Option(name: .long, help: "x86_64 or aarch64 (default both).")
        var arch: [String] = []

        func run() throws {
            let context = ToolContext(paths: .standard())
            try reportingErrors {
                let arches = arch.isEmpty ? Arch.allCases : try arch.map(Arch.init(parsing:))
                for arch in arches {
                    let packages = try DebianKernels(context: context).available(arch: arch)
                    print("\(arch): " + (packages.isEmpty ? "none (run sudo ci/setup-host)" : ""))
                    for package in packages.reversed() {
                        print("  debian:\(package.version)  \(package.name) \(package.debianVersion)")
                    }
                }
            }
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Download and cache a kernel (for offline runs).")

        @Argument(help: "Kernel spec: debian[:VERSION], file:PATH, git:TREE@REF or dir:PATH (built, and kept for runs).")
        var spec: String = "debian"

        @Option(name: .long, help: "x86_64 or aarch64 (default both).")
        var arch: [String] = []

        func run() throws {
            let context = ToolContext(paths: .standard())
            try reportingErrors {
                let kernelSpec = try KernelSpec(parsing: spec)
                let resolver = KernelResolver(context: context)
                let arches = arch.isEmpty ? try resolver.naturalArches(kernelSpec) : try arch.map(Arch.init(parsing:))
                for arch in arches {
                    let image = try resolver.resolve(kernelSpec, arch: arch)
                    print("\(arch) \(image.version) \(image.kernel.path)")
                }
            }
        }
    }
}
