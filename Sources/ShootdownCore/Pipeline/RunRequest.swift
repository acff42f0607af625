/// What `shootdown run` was asked to do; recorded in run.json.
public struct RunRequest: Sendable, Codable, Equatable {
    public var kernels: [KernelSpec]
    /// nil: every arch the kernels serve.
    public var arches: [Arch]?
    public var vcpus: [Int]
    public var memoryMiB: Int
    public var tests: [String]
    public var parameters: [String]
    public var accel: AcceleratorChoice
    public var paravirt: Paravirt?
    public var timeoutSeconds: Int

    public static let defaultTest = "hugetlb-share-fork-exit"

    public init(kernels: [KernelSpec] = [.debian(version: nil)], arches: [Arch]? = nil, vcpus: [Int] = [4],
                memoryMiB: Int = 1024, tests: [String] = [RunRequest.defaultTest], parameters: [String] = [],
                accel: AcceleratorChoice = .auto, paravirt: Paravirt? = nil, timeoutSeconds: Int = 300) {
        self.kernels = kernels
        self.arches = arches
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.tests = tests
        self.parameters = parameters
        self.accel = accel
        self.paravirt = paravirt
        self.timeoutSeconds = timeoutSeconds
    }

    /// Rejects requests that cannot work before anything is downloaded or booted.
    public func validate() throws {
        guard !kernels.isEmpty else { throw ShootdownError.usage("no kernel given") }
        guard !tests.isEmpty else { throw ShootdownError.usage("no test given") }
        for count in vcpus where !(1...256).contains(count) {
            throw ShootdownError.usage("--vcpus \(count): use 1 to 256")
        }
        guard (128...65536).contains(memoryMiB) else {
            throw ShootdownError.usage("--memory \(memoryMiB): use 128 to 65536 MiB")
        }
        guard (10...86400).contains(timeoutSeconds) else {
            throw ShootdownError.usage("--timeout \(timeoutSeconds): use 10 to 86400 seconds")
        }
    }
}
