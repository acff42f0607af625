import Foundation

/// What the agent does in one boot (Images/agent/PROTOCOL.md, "Plan").
public struct GuestPlan: Sendable, Equatable {
    public struct TestStep: Sendable, Equatable {
        public var id: String
        public var timeoutSeconds: Int
        public var path: String
    }

    public var hugepages: Int
    public var probes: [String]
    public var tests: [TestStep]
    /// Points for the widening module; nil leaves it unloaded.
    public var widening: WideningPlan?
    /// The tests are several cells sharing this boot: the agent restores global knobs
    /// after each, ends the boot after a failure or splat, and logs each start on the console.
    public var batch: Bool

    public init(hugepages: Int, probes: [String], tests: [TestStep], widening: WideningPlan? = nil, batch: Bool = false) {
        self.hugepages = hugepages
        self.probes = probes
        self.tests = tests
        self.widening = widening
        self.batch = batch
    }

    public var text: String {
        var lines = ["version 1", "hugepages \(hugepages)"]
        lines += probes.map { "probe \($0)" }
        lines += widening?.planLines ?? []
        if batch { lines.append("isolation batch") }
        lines += tests.map { "test \($0.id) \($0.timeoutSeconds) \($0.path)" }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The initramfs of one guest: the agent as /init, the plan and the test programs.
public struct GuestImage: Sendable {
    public var entries: [CPIOEntry]

    public init(agent: Data, plan: GuestPlan, programs: [(id: String, binary: Data)],
                modules: [(name: String, data: Data)] = [], wideningModule: Data? = nil) {
        var entries: [CPIOEntry] = ["/dev", "/proc", "/sys", "/tmp", "/mnt", "/shootdown", "/shootdown/tests"]
            .map(CPIOEntry.directory)
        entries.append(CPIOEntry(path: "/dev/console", kind: .characterDevice(major: 5, minor: 1), permissions: 0o600))
        entries.append(.file("/init", agent, executable: true))
        entries.append(.file("/shootdown/plan", Data(plan.text.utf8)))
        for program in programs {
            entries.append(.file("/shootdown/tests/\(program.id)", program.binary, executable: true))
        }
        if !modules.isEmpty {
            entries.append(.directory("/shootdown/modules"))
            entries += modules.map { .file("/shootdown/modules/\($0.name)", $0.data) }
            entries.append(.file("/shootdown/modules/order", Data(modules.map { $0.name + "\n" }.joined().utf8)))
        }
        if let wideningModule {
            entries.append(.directory("/shootdown/widen"))
            entries.append(.file("/shootdown/widen/shootdown_widen.ko", wideningModule))
        }
        self.entries = entries
    }

    public var archive: Data { CPIOArchive.newc(entries) }

    /// Files a restored guest receives over its plan port instead of the initramfs: what
    /// differs from cell to cell (plan, test programs, widening module).
    static func isPayload(_ entry: CPIOEntry) -> Bool {
        guard case .file = entry.kind else { return false }
        return entry.path == "/shootdown/plan" || entry.path.hasPrefix("/shootdown/tests/") || entry.path.hasPrefix("/shootdown/widen/")
    }

    /// The initramfs of a guest booted to be saved: everything but the payload. The agent
    /// finds no plan and waits on the plan port (Images/agent/PROTOCOL.md).
    public var baseArchive: Data { CPIOArchive.newc(entries.filter { !Self.isPayload($0) }) }

    /// The payload as the agent reads it from the plan port.
    public var payload: Data {
        var data = Data("shootdown-payload 1\n".utf8)
        for entry in entries where Self.isPayload(entry) {
            guard case .file(let contents) = entry.kind else { continue }
            data.append(Data("file \(entry.path) \(contents.count)\n".utf8))
            data.append(contents)
        }
        data.append(Data("end\n".utf8))
        return data
    }

    public var listing: String { entries.map(\.listingLine).joined(separator: "\n") + "\n" }
}
