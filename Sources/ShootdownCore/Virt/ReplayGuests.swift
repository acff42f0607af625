import Foundation

/// What one guest said: a console and a record stream (recorded, or generated).
public struct GuestRecording: Sendable {
    public var console: Data
    public var records: Data
    public var timedOut: Bool
    public var startError: String?
    public var wall: Duration

    public init(console: Data = Data(), records: Data = Data(), timedOut: Bool = false, startError: String? = nil,
                wall: Duration = .seconds(1)) {
        self.console = console
        self.records = records
        self.timedOut = timedOut
        self.startError = startError
        self.wall = wall
    }
}

/// Guests that replay recordings instead of booting: the pipeline runs end to end
/// (render, build, image, judge, persist) with no libvirt, in milliseconds. The source
/// sees each boot's spec (its name holds the run id and cell id) and initramfs.
public final class ReplayGuests: GuestHost, @unchecked Sendable {
    public struct Boot: Sendable {
        public var spec: DomainSpec
        public var initramfs: Data

        /// The ids of the tests the boot's plan holds, in order: one for a single cell,
        /// several for a batch.
        public var testIDs: [String] {
            let plan = CPIOArchive.file("/shootdown/plan", in: initramfs).map { String(decoding: $0, as: UTF8.self) } ?? ""
            return plan.split(separator: "\n").compactMap { line in
                let fields = line.split(separator: " ")
                return fields.count == 4 && fields[0] == "test" ? String(fields[1]) : nil
            }
        }
    }

    public typealias Source = @Sendable (Boot) throws -> GuestRecording

    private let source: Source
    private let lock = NSLock()
    private var served: [Boot] = []
    private var destroyedNames: [String] = []
    private var preparedCount = 0

    public init(_ source: @escaping Source) {
        self.source = source
    }

    /// Replays the cells of an earlier run (its console.log and records.jsonl), matched
    /// by cell id: a recorded run re-judged by today's parsers. Both runs boot a guest per
    /// cell (`--isolation cell`): a batch boot is named after its first cell only.
    public static func recordedRun(_ directory: URL) -> ReplayGuests {
        ReplayGuests { boot in
            let cells = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            guard let cell = cells.first(where: { boot.spec.name.hasSuffix("-" + domainSafe($0)) }) else {
                return GuestRecording(startError: "replay: no recorded cell for \(boot.spec.name) in \(directory.path)")
            }
            let folder = directory.appendingPathComponent(cell)
            return GuestRecording(console: (try? Data(contentsOf: folder.appendingPathComponent("console.log"))) ?? Data(),
                                  records: (try? Data(contentsOf: folder.appendingPathComponent("records.jsonl"))) ?? Data())
        }
    }

    /// Every boot served so far, in order.
    public var boots: [Boot] { lock.withLock { served } }
    /// Guests destroyed before their recording ended (an interruption).
    public var destroyed: [String] { lock.withLock { destroyedNames } }
    public var prepared: Int { lock.withLock { preparedCount } }

    public func prepare(context: ToolContext) throws {
        lock.withLock { preparedCount += 1 }
    }

    public func launcher(context: ToolContext) throws -> any GuestLaunching {
        ReplayLauncher(guests: self, registry: context.activeDomains)
    }

    fileprivate func serve(_ boot: Boot) throws -> GuestRecording {
        lock.withLock { served.append(boot) }
        return try source(boot)
    }

    fileprivate func noteDestroyed(_ name: String) {
        lock.withLock { destroyedNames.append(name) }
    }
}

/// Domain names turn dots into underscores (see RunPipeline.domainName).
func domainSafe(_ text: String) -> String {
    String(text.map { $0 == "." ? "_" : $0 })
}

struct ReplayLauncher: GuestLaunching {
    let guests: ReplayGuests
    let registry: ActiveDomains

    var hypervisorIdentity: String { "replay" }

    func stagedSpec(name: String, arch: Arch, accel: Accelerator, paravirt: Paravirt?, vcpus: Int,
                    memoryMiB: Int, tcgThreads: TCGThreads) throws -> DomainSpec {
        let folder = "/replay/\(name)/"
        var spec = DomainSpec(name: name, arch: arch, accel: accel, paravirt: paravirt, vcpus: vcpus, memoryMiB: memoryMiB,
                              emulator: arch.qemuBinary, kernel: folder + "kernel", initrd: folder + "initramfs.cpio",
                              consolePath: folder + "console.log", resultPath: folder + "results.jsonl")
        spec.owner = .current
        spec.tcgThreads = tcgThreads
        return spec
    }

    func boot(_ spec: DomainSpec, kernel: URL, initramfs: Data, timeout: Duration) throws -> GuestOutcome {
        guard registry.beginStart() else { throw RunInterrupted(signal: registry.interruptingSignal ?? SIGINT) }
        let guest = ReplayDomain(name: spec.name, guests: guests)
        registry.endStart(guest)
        defer { registry.unregister(guest) }
        let recording = try guests.serve(.init(spec: spec, initramfs: initramfs))
        return GuestOutcome(domainXML: (try? DomainXML.render(spec)) ?? "", timedOut: recording.timedOut, wall: recording.wall,
                            console: recording.console, results: recording.records, startError: recording.startError)
    }

    func waitForTeardowns() {}
}

final class ReplayDomain: RunningGuest, @unchecked Sendable {
    let name: String
    private let guests: ReplayGuests
    private let lock = NSLock()
    private var gone = false

    init(name: String, guests: ReplayGuests) {
        self.name = name
        self.guests = guests
    }

    func destroy() {
        let first = lock.withLock { () -> Bool in
            defer { gone = true }
            return !gone
        }
        if first { guests.noteDestroyed(name) }
    }

    var exists: Bool { lock.withLock { !gone } }
}

/// A run stopped by SIGINT, SIGTERM or SIGHUP (or a test's in-process interruption):
/// running guests were destroyed, finished cells are on disk, `--resume` continues.
public struct RunInterrupted: Error, CustomStringConvertible {
    public var signal: Int32
    public var description: String { "interrupted by \(ActiveDomains.signalName(signal)): no new guest is started" }
}
