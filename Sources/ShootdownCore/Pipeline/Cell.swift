import Foundation

/// One point of a run: a kernel on an arch under an accelerator, with a vCPU count and
/// memory, running one test instance in its own guest boot.
public struct Cell: Sendable, Codable, Equatable {
    public var kernel: KernelImage
    public var accel: Accelerator
    /// Why this accelerator (e.g. "KVM probe boot hung; TCG").
    public var accelReason: String
    public var paravirt: Paravirt?
    public var vcpus: Int
    public var memoryMiB: Int
    public var instance: TestInstance
    /// Parameters that differ from the template's defaults, for the cell's name.
    public var sweptParameters: [String]
    public var timeoutSeconds: Int
    /// Which repeat (1-based) when the run repeats cells; nil otherwise.
    public var repeatIndex: Int?

    public init(kernel: KernelImage, accel: Accelerator, accelReason: String, paravirt: Paravirt?, vcpus: Int, memoryMiB: Int,
                instance: TestInstance, sweptParameters: [String], timeoutSeconds: Int, repeatIndex: Int? = nil) {
        self.kernel = kernel
        self.accel = accel
        self.accelReason = accelReason
        self.paravirt = paravirt
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.instance = instance
        self.sweptParameters = sweptParameters
        self.timeoutSeconds = timeoutSeconds
        self.repeatIndex = repeatIndex
    }

    public var arch: Arch { kernel.arch }

    /// Unique within a run, stable across runs of the same spec, safe as a folder name.
    public var id: String {
        var parts = [arch.rawValue, kernel.version, accel.rawValue]
        if let paravirt { parts.append("pv\(paravirt)") }
        parts += ["\(vcpus)cpu", instance.test]
        let values = instance.values
        parts += sweptParameters.compactMap { name in values[name].map { "\(name)\($0)" } }
        if let repeatIndex { parts.append("r\(repeatIndex)") }
        return parts.joined(separator: "-").map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }
            .reduce(into: "") { $0.append($1) }
    }

    public var descriptor: CellDescriptor {
        CellDescriptor(id: id, arch: arch, kernel: kernel.spec, kernelVersion: kernel.version,
                       kernelOrigin: kernel.origin, accel: accel, paravirt: paravirt?.rawValue ?? "default",
                       vcpus: vcpus, memoryMiB: memoryMiB, test: instance.test, parameters: instance.values)
    }

    /// Why this cell cannot run here, before any boot.
    public var skipReason: String? {
        CellPlanner.skipReason(accel: accel, paravirt: paravirt, accelReason: accelReason)
    }
}
