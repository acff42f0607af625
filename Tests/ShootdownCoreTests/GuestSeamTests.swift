import Foundation
import Testing
@testable import ShootdownCore

/// A whole world for RunPipeline without libvirt or compilers: a fake x86 kernel file,
/// a runner that "compiles" by writing a file and records every command, replayed guests.
final class ReplayWorld: @unchecked Sendable {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-seam-\(UUID().uuidString)")
    let runner = RecordingRunner()
    let registry = ActiveDomains()
    let guests: ReplayGuests
    private let lock = NSLock()
    private var logLines: [String] = []

    var results: URL { root.appendingPathComponent("results") }
    var stage: URL { root.appendingPathComponent("stage") }
    var kernel: URL { root.appendingPathComponent("bzImage") }
    var log: [String] { lock.withLock { logLines } }

    init(_ source: @escaping ReplayGuests.Source = ReplayWorld.passing) throws {
        guests = ReplayGuests(source)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        // Enough of a bzImage for KernelFormat: the "HdrS" boot-protocol magic at 0x202.
        var header = Data(count: 0x210)
        header.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        try header.write(to: kernel)
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    var context: ToolContext {
        let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var context = ToolContext(paths: ToolPaths(cache: root.appendingPathComponent("cache"), results: results, resources: resources,
                                                   stage: stage),
                                  runner: runner, libvirtURI: "test:///default", log: { [weak self] line in
                                      self?.lock.withLock { self?.logLines.append(line) }
                                  })
        context.guests = guests
        context.activeDomains = registry
        return context
    }

    /// Three cells (a `cycles` sweep) on x86_64 under TCG.
    func request(cycles: String = "2,3,4", vcpus: [Int] = [4]) -> RunRequest {
        RunRequest(kernels: [.file(path: kernel.path)], arches: [.x86_64], vcpus: vcpus,
                   tests: [TestSelection(name: RunRequest.defaultTest, parameters: ["cycles=\(cycles)"])], accel: .tcg,
                   timeoutSeconds: 60)
    }

    func run(_ request: RunRequest? = nil, _ options: ExecutionOptions = ExecutionOptions(jobs: 1)) throws -> RunPipeline.Outcome {
        try RunPipeline(context: context).run(request ?? self.request(), options: options)
    }

    /// The cell id a boot was for (domain names are shootdown-<run>-<cell>).
    static func cell(of boot: ReplayGuests.Boot, run: String) -> String {
        String(boot.spec.name.dropFirst("shootdown-\(domainSafe(run))-".count))
    }

    /// A guest that passes every test of its plan: a real console capture with the
    /// agent's start line for each test of a batch, and the records the agent would send.
    static let passing: ReplayGuests.Source = { boot in
        let ids = boot.testIDs
        var console = try String(contentsOf: fixture("console/x86_64-clean-boot-6.12.log"), encoding: .utf8)
        if ids.count > 1 { console += ids.map { "[    2.000000] \(GuestBatch.startLine($0)) (timeout 45s)\r\n" }.joined() }
        return GuestRecording(console: Data(console.utf8), records: Data(SyntheticGuest.passingStream(ids: ids).utf8))
    }

    static func fixture(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    }
}

extension SyntheticGuest {
    /// boot, test and done records of passing hugetlb-share-fork-exit cells.
    static func passingStream(ids: [String] = ["test"]) -> String {
        ([boot()] + ids.map { test(id: $0) } + [done]).joined(separator: "\n") + "\n"
    }
}

/// Records every command; "compiles" (`-o FILE`) by writing an executable file and
/// answers `command -v`, so a run needs no compiler and a test can see what was built.
final class RecordingRunner: CommandRunning, @unchecked Sendable {
    private let lock = NSLock()
    private var calls: [Command] = []

    var commands: [Command] { lock.withLock { calls } }
    var builds: [Command] { commands.filter { $0.arguments.contains("-o") } }

    func run(_ command: Command, timeout: Duration?) throws -> CommandOutput {
        lock.withLock { calls.append(command) }
        if command.executable == "/bin/sh", command.arguments.count == 2, command.arguments[1].hasPrefix("command -v ") {
            return CommandOutput(status: 0, stdout: "/usr/bin/\(command.arguments[1].split(separator: " ").last!)\n")
        }
        if let flag = command.arguments.firstIndex(of: "-o"), flag + 1 < command.arguments.count {
            let output = command.arguments[flag + 1]
            // The source rides along, so a replayed guest can tell which test it runs.
            let source = command.arguments.last.flatMap { $0.hasSuffix(".c") ? FileManager.default.contents(atPath: $0) : nil }
            _ = FileManager.default.createFile(atPath: output, contents: Data("#!/bin/sh\n".utf8) + (source ?? Data()),
                                               attributes: [.posixPermissions: 0o755])
            return CommandOutput(status: 0)
        }
        return CommandOutput(status: 127, stderr: "RecordingRunner does not fake \(command)")
    }
}

@Suite struct GuestSeamTests {
    /// The seam end to end: every stage runs, no libvirt, and fast.
    @Test func aReplayedRunPassesWithoutLibvirt() throws {
        let world = try ReplayWorld()
        let clock = ContinuousClock(), started = clock.now
        let outcome = try world.run()
        #expect(clock.now - started < .seconds(10))
        #expect(outcome.results.count == 3)
        #expect(outcome.results.allSatisfy { $0.status == .pass }, "\(outcome.results.map { "\($0.status) \($0.reason ?? "")" })")
        // One guest for the three cells: same kernel, machine and template.
        #expect(world.guests.boots.count == 1)
        #expect(outcome.results.map { $0.batch?.position } == [1, 2, 3])
        #expect(Set(outcome.results.compactMap { $0.batch?.boot }).count == 1)
        #expect(world.guests.prepared == 1)
        // The agent and the test program, per cycles value: built once each.
        #expect(world.runner.builds.count == 4)
        for result in outcome.results {
            let folder = outcome.directory.cellDirectory(result.cell.id)
            for file in ["result.json", "console.log", "records.jsonl", "domain.xml", "reproduce.sh", "initramfs.cpio"] {
                #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file)")
            }
        }
        // The owner is in the domain XML, for the sweep of a later run.
        let xml = try String(contentsOf: outcome.directory.cellDirectory(outcome.results[0].cell.id).appendingPathComponent("domain.xml"), encoding: .utf8)
        #expect(xml.contains("pid=\"\(getpid())\""))
        // Each cell keeps only its own test record, and an image that runs it alone.
        for (position, result) in outcome.results.enumerated() {
            let folder = outcome.directory.cellDirectory(result.cell.id)
            let records = GuestRecords.parse(try Data(contentsOf: folder.appendingPathComponent("records.jsonl")))
            #expect(records.tests.map(\.id) == ["t\(position + 1)"] && records.boot != nil && records.finished)
            let image = try Data(contentsOf: folder.appendingPathComponent("initramfs.cpio"))
            #expect(ReplayGuests.Boot(spec: world.guests.boots[0].spec, initramfs: image).testIDs == ["test"])
            #expect(try String(contentsOf: folder.appendingPathComponent("reproduce.sh"), encoding: .utf8)
                .contains("It ran as test \(position + 1) of 3 in one boot"))
        }

        // --isolation cell: a boot per cell, as before batches.
        let isolated = try world.run(nil, ExecutionOptions(jobs: 1, isolation: .cell))
        #expect(world.guests.boots.count == 1 + 3)
        #expect(isolated.results.allSatisfy { $0.status == .pass && $0.batch == nil })
    }

    /// `--jobs 4` runs four guests at once, whatever the host's core count: each replayed
    /// guest waits until four are up (or 5 s), as guests that wait on QEMU would.
    @Test func jobsAboveTheCoreCountRunThatManyGuests() throws {
        let lock = NSLock()
        nonisolated(unsafe) var active = 0, most = 0
        let world = try ReplayWorld { boot in
            lock.withLock { active += 1; most = max(most, active) }
            defer { lock.withLock { active -= 1 } }
            let deadline = ContinuousClock.now + .seconds(5)
            while lock.withLock({ most < 4 }) && ContinuousClock.now < deadline { usleep(1000) }
            return try ReplayWorld.passing(boot)
        }
        let outcome = try world.run(world.request(cycles: "2,3,4,5"), ExecutionOptions(jobs: 4))
        #expect(outcome.results.count == 4 && outcome.results.allSatisfy { $0.status == .pass })
        #expect(lock.withLock { most } == 4, "at most \(lock.withLock { most }) guests ran at once with --jobs 4 on \(ProcessInfo.processInfo.activeProcessorCount) cores")
    }

    /// A shard resolves only the kernels of its own cells: the slices are contiguous in
    /// the expansion order, which is kernel first.
    @Test func aShardResolvesOnlyItsOwnKernels() throws {
        let world = try ReplayWorld()
        let second = world.root.appendingPathComponent("bzImage-b")
        try FileManager.default.copyItem(at: world.kernel, to: second)
        var request = world.request(cycles: "2,3")
        request.kernels = [.file(path: world.kernel.path), .file(path: second.path)]
        for index in 1...2 {
            let before = world.log.count
            let outcome = try world.run(request, ExecutionOptions(jobs: 1, shard: (index, 2)))
            let resolved = world.log.dropFirst(before).filter { $0.hasPrefix("kernel x86_64: ") }
            #expect(resolved.count == 1, "\(resolved)")
            #expect(resolved.first?.contains(index == 1 ? "file:\(world.kernel.path) " : "file:\(second.path) ") == true, "\(resolved)")
            #expect(outcome.results.count == 2)
        }
    }

    /// A recorded run replays: the same consoles and records judged again, cell by cell
    /// (recordings are matched by cell, so both runs boot a guest per cell).
    @Test func aRecordedRunReplaysCellByCell() throws {
        let recorded = try ReplayWorld()
        let original = try recorded.run(nil, ExecutionOptions(jobs: 1, isolation: .cell))
        let world = try ReplayWorld()
        var context = world.context
        context.guests = ReplayGuests.recordedRun(original.directory.url)
        var request = world.request()
        request.kernels = [.file(path: recorded.kernel.path)]
        let replayed = try RunPipeline(context: context).run(request, options: ExecutionOptions(jobs: 1, isolation: .cell))
        #expect(replayed.results.map(\.cell.id) == original.results.map(\.cell.id))
        #expect(replayed.results.map(\.status) == original.results.map(\.status))
        for result in replayed.results {
            let console = try Data(contentsOf: replayed.directory.cellDirectory(result.cell.id).appendingPathComponent("console.log"))
            #expect(console == (try Data(contentsOf: original.directory.cellDirectory(result.cell.id).appendingPathComponent("console.log"))))
        }
    }

    /// A run interrupted at its second guest destroys that guest, records nothing for
    /// it, and `--resume` boots exactly the two missing cells.
    @Test func interruptedRunResumesExactlyTheMissingCells() throws {
        let registry = ActiveDomains()
        let counter = Counter()
        let world = try ReplayWorld { boot in
            if counter.next() == 2 { registry.interrupt(signal: SIGTERM) }
            return try ReplayWorld.passing(boot)
        }
        var context = world.context
        context.activeDomains = registry
        let request = world.request()
        #expect(throws: RunInterrupted.self) {
            try RunPipeline(context: context).run(request, options: ExecutionOptions(jobs: 1, runID: "cut", isolation: .cell))
        }
        let directory = RunDirectory(url: world.results.appendingPathComponent("cut"))
        let before = try directory.results().map(\.cell.id)
        #expect(before.count == 1)
        #expect(world.guests.destroyed.count == 1)
        let interrupted = ReplayWorld.cell(of: world.guests.boots[1], run: "cut")

        let resumed = try world.run(request, ExecutionOptions(jobs: 1, resume: "cut", isolation: .cell))
        let rebooted = world.guests.boots.dropFirst(2).map { ReplayWorld.cell(of: $0, run: "cut") }
        let all = resumed.results.map(\.cell.id)
        #expect(all.count == 3)
        #expect(Set(rebooted) == Set(Set(all).subtracting(before).map(domainSafe)))
        #expect(rebooted.count == 2)
        #expect(rebooted.contains(interrupted))
        #expect(world.log.contains { $0.contains("1 already done") })
    }

    /// --resume rebuilds the request from today's flags: a different one is refused,
    /// naming the difference, before anything is built or booted.
    @Test func resumeWithADifferentRequestIsRefused() throws {
        let world = try ReplayWorld()
        _ = try world.run(world.request(), ExecutionOptions(jobs: 1, runID: "first"))
        let manifest = try Data(contentsOf: world.results.appendingPathComponent("first/run.json"))
        let builds = world.runner.builds.count, boots = world.guests.boots.count
        do {
            _ = try world.run(world.request(vcpus: [2]), ExecutionOptions(jobs: 1, resume: "first"))
            Issue.record("a different request was resumed")
        } catch let error as ShootdownError {
            #expect("\(error)".contains("vcpus: [4] in run.json, [2] now"), "\(error)")
        }
        do {
            _ = try world.run(world.request(), ExecutionOptions(jobs: 1, shard: (1, 2), resume: "first"))
            Issue.record("another shard was resumed")
        } catch let error as ShootdownError {
            #expect("\(error)".contains("shard: none in run.json, 1/2 now"), "\(error)")
        }
        #expect(world.runner.builds.count == builds)
        #expect(world.guests.boots.count == boots)
        #expect(try Data(contentsOf: world.results.appendingPathComponent("first/run.json")) == manifest)
        // The same request resumes, with nothing left to do.
        let again = try world.run(world.request(), ExecutionOptions(jobs: 1, resume: "first"))
        #expect(again.results.count == 3)
        #expect(world.guests.boots.count == boots)
    }

    /// Run ids name one folder under the results root; an existing one is not merged into.
    @Test func runIDsAreValidatedAndNotReused() throws {
        let world = try ReplayWorld()
        for bad in ["../escape", "a/b", "..", ".hidden", "", "x y", String(repeating: "a", count: 101)] {
            #expect(throws: ShootdownError.self, "\(bad)") { try world.run(nil, ExecutionOptions(jobs: 1, runID: bad)) }
        }
        #expect(!FileManager.default.fileExists(atPath: world.root.appendingPathComponent("escape").path))
        #expect(world.guests.boots.isEmpty && world.runner.builds.isEmpty)
        _ = try world.run(nil, ExecutionOptions(jobs: 1, runID: "nightly-1.2_x"))
        let boots = world.guests.boots.count
        do {
            _ = try world.run(nil, ExecutionOptions(jobs: 1, runID: "nightly-1.2_x"))
            Issue.record("a run id was reused")
        } catch let error as ShootdownError {
            #expect("\(error)".contains("--resume nightly-1.2_x"), "\(error)")
        }
        #expect(world.guests.boots.count == boots)
    }

    /// Two runs that start in the same second and draw the same 16-bit suffix must not
    /// share a folder: the second one draws again.
    @Test func runsThatDrawTheSameIDGetTheirOwnFolders() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-ids-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let draws = Locked(["20261202-101010-abcd", "20261202-101010-abcd", "20261202-101010-beef"])
        func draw() -> String {
            var next = ""
            draws.update { next = $0.removeFirst() }
            return next
        }
        let first = try RunDirectory.create(root: root, newID: draw)
        let second = try RunDirectory.create(root: root, newID: draw)
        #expect(first.runID == "20261202-101010-abcd")
        #expect(second.runID == "20261202-101010-beef")
        // And many at once, with real ids.
        let urls = Locked<[URL]>([])
        DispatchQueue.concurrentPerform(iterations: 500) { _ in
            if let directory = try? RunDirectory.create(root: root) { urls.update { $0.append(directory.url) } }
        }
        #expect(Set(urls.value).count == 500)
    }

    /// Two whole runs at once on one results root and one cache: both complete, apart.
    @Test func twoConcurrentRunsOnOneResultsRootAreBothCorrect() throws {
        let world = try ReplayWorld()
        let outcomes = Locked<[RunPipeline.Outcome]>([])
        let errors = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { index in
            do {
                let outcome = try world.run(world.request(cycles: index == 0 ? "2,3" : "5,6,7"), ExecutionOptions(jobs: 2))
                outcomes.update { $0.append(outcome) }
            } catch {
                errors.update { $0.append("\(error)") }
            }
        }
        #expect(errors.value.isEmpty, "\(errors.value)")
        let counts = outcomes.value.map { try! $0.directory.results().count }.sorted()
        #expect(counts == [2, 3])
        #expect(Set(outcomes.value.map(\.directory.runID)).count == 2)
        #expect(outcomes.value.allSatisfy { $0.results.allSatisfy { $0.status == .pass } })
    }

    /// A results folder that takes no files is refused before any build or boot.
    @Test func readOnlyResultsFolderIsRefusedBeforeAnyBuild() throws {
        let world = try ReplayWorld()
        try FileManager.default.createDirectory(at: world.results, withIntermediateDirectories: true)
        // Root ignores file modes: only a read-only mount makes a folder read-only here.
        try #require(Self.mount(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", world.results.path]))
        defer { _ = Self.mount(["umount", world.results.path]) }
        do {
            _ = try world.run()
            Issue.record("a read-only results folder was accepted")
        } catch let error as ShootdownError {
            #expect("\(error)".contains(world.results.path), "\(error)")
        }
        #expect(world.runner.builds.isEmpty, "\(world.runner.builds)")
        #expect(world.guests.boots.isEmpty)
    }

    /// A results folder with almost no space is refused before any build or boot.
    @Test func fullResultsFolderIsRefusedBeforeAnyBuild() throws {
        let world = try ReplayWorld()
        try FileManager.default.createDirectory(at: world.results, withIntermediateDirectories: true)
        try #require(Self.mount(["-t", "tmpfs", "-o", "size=4m", "tmpfs", world.results.path]))
        defer { _ = Self.mount(["umount", world.results.path]) }
        do {
            _ = try world.run()
            Issue.record("a full results folder was accepted")
        } catch let error as ShootdownError {
            #expect("\(error)".contains("MiB free"), "\(error)")
        }
        #expect(world.runner.builds.isEmpty, "\(world.runner.builds)")
        #expect(world.guests.boots.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.results.path).isEmpty, "no empty run folder left")
    }

    /// A hypervisor that is not there is one clear error before any build.
    @Test func unreachableLibvirtIsOneErrorBeforeAnyBuild() throws {
        let world = try ReplayWorld()
        var context = world.context
        let socket = world.root.appendingPathComponent("no-libvirtd.sock").path
        context.guests = LibvirtGuests(uri: "qemu+unix:///system?socket=\(socket)")
        do {
            _ = try RunPipeline(context: context).run(world.request(), options: ExecutionOptions(jobs: 1))
            Issue.record("a run started without libvirt")
        } catch let error as ShootdownError {
            #expect("\(error)".contains("is libvirtd running? sudo ci/setup-host starts it"), "\(error)")
        }
        #expect(world.runner.builds.isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: world.results.path)) ?? []).isEmpty)
    }

    /// A daemon that accepts the connection and never answers: bounded, one clear error.
    @Test func libvirtThatNeverAnswersTimesOut() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-mute-\(UUID().uuidString).sock").path
        let listener = try UnixListener(path: path)
        defer { listener.close() }
        let clock = ContinuousClock(), started = clock.now
        #expect {
            _ = try LibvirtConnection(uri: "qemu+unix:///system?socket=\(path)", timeout: .seconds(2))
        } throws: { error in
            "\(error)".contains("no answer within 2 s")
        }
        #expect(clock.now - started < .seconds(5))
    }

    /// The hypervisor going away mid-run stops the run with one error that says where
    /// the finished cells are and how to continue; nothing is recorded for the lost cell.
    @Test func lostHypervisorStopsTheRunAndKeepsFinishedCells() throws {
        let counter = Counter()
        let world = try ReplayWorld { boot in
            if counter.next() == 2 {
                throw ShootdownError.libvirt(operation: "connection to test:///x", message: "lost: libvirtd stopped")
            }
            return try ReplayWorld.passing(boot)
        }
        do {
            _ = try world.run(nil, ExecutionOptions(jobs: 1, runID: "lost", isolation: .cell))
            Issue.record("the run went on without its hypervisor")
        } catch let error as RunStopped {
            #expect("\(error)".contains("lost: libvirtd stopped"))
            #expect("\(error)".contains("1 of 3 cell(s) finished"), "\(error)")
            #expect("\(error)".contains("--resume lost"))
        }
        #expect(world.guests.boots.count == 2)
        #expect(try RunDirectory(url: world.results.appendingPathComponent("lost")).results().count == 1)
    }
}

/// The sweep: leftovers of dead runs go, those of live runs and of other hosts stay.
@Suite struct StaleGuestTests {
    /// An owner whose process has exited (a child we started and reaped).
    static func deadOwner() throws -> GuestOwner {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        let pid = process.processIdentifier
        let started = GuestOwner.startTime(of: pid) ?? 1
        process.waitUntilExit()
        return GuestOwner(pid: pid, started: started, boot: GuestOwner.current.boot, host: GuestOwner.current.host)
    }

    @Test func ownersAreAliveOnlyWhileTheirProcessIs() throws {
        #expect(GuestOwner.current.isAlive)
        #expect(try !Self.deadOwner().isAlive)
        var reused = GuestOwner.current
        reused.started += 1
        #expect(!reused.isAlive, "a reused pid is another process")
        var rebooted = GuestOwner.current
        rebooted.boot = "another-boot"
        #expect(!rebooted.isAlive)
        var elsewhere = try Self.deadOwner()
        elsewhere.host = "some-other-host"
        #expect(elsewhere.isAlive, "another host's process cannot be judged from here")
        #expect(GuestOwner(element: "<shootdown:owner xmlns:shootdown=\"x\" pid=\"12\" started=\"34\" boot=\"b\" host=\"h\"/>")
                == GuestOwner(pid: 12, started: 34, boot: "b", host: "h"))
    }

    @Test func sweepDestroysOnlyDomainsAndFoldersOfDeadRuns() throws {
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-sweep-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: stage) }
        let dead = try Self.deadOwner()
        func folder(_ name: String, owner: GuestOwner?) throws {
            let url = stage.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            if let owner { try JSONEncoder().encode(owner).write(to: url.appendingPathComponent("owner")) }
        }
        try folder("shootdown-dead-cell", owner: dead)
        try folder("shootdown-live-cell", owner: .current)
        try folder("shootdown-old-version", owner: nil)
        try folder("bin", owner: nil)

        let connection = try LibvirtConnection(uri: "test:///default")
        let tag = UUID().uuidString.prefix(8)
        func start(_ name: String, owner: GuestOwner?) throws -> LibvirtDomain {
            var spec = DomainSpec(name: "shootdown-\(tag)-\(name)", arch: .x86_64, accel: .tcg, paravirt: nil, vcpus: 1, memoryMiB: 128,
                                  emulator: "/usr/bin/qemu-system-x86_64", kernel: "/k", initrd: "/i", consolePath: "/c", resultPath: "/r")
            spec.owner = owner
            // The test driver takes its own domain type; the metadata is what matters.
            let xml = try DomainXML.render(spec).replacingOccurrences(of: "<domain type=\"qemu\">", with: "<domain type=\"test\">")
            return try connection.startTransient(xml: xml)
        }
        let deadDomain = try start("dead", owner: dead)
        let liveDomain = try start("live", owner: .current)
        let unowned = try start("unowned", owner: nil)
        defer { [liveDomain, unowned].forEach { $0.destroy() } }
        #expect(connection.owner(ofDomain: deadDomain.name) == dead)

        let lines = Locked<[String]>([])
        let removed = StaleGuests.sweep(connection: connection, stage: stage) { line in lines.update { $0.append(line) } }
        #expect(removed.contains(deadDomain.name))
        #expect(!deadDomain.isActive)
        #expect(liveDomain.isActive && unowned.isActive)
        #expect(lines.value.contains { $0.contains("destroyed stale guest \(deadDomain.name)") && $0.contains("pid \(dead.pid)") })
        let left = try FileManager.default.contentsOfDirectory(atPath: stage.path).sorted()
        #expect(left == ["bin", "shootdown-live-cell", "shootdown-old-version"])
        #expect(lines.value.contains { $0.contains("removed stale stage folder") && $0.contains("shootdown-dead-cell") })

        // An interruption removes this process's own folders, and only those.
        StaleGuests.removeOwnStageFolders(stage)
        #expect(try FileManager.default.contentsOfDirectory(atPath: stage.path).sorted() == ["bin", "shootdown-old-version"])
    }
}

/// What the launcher does to the user's files and to guests nobody waits for.
@Suite struct GuestLifecycleTests {
    /// The stage used to hard-link the kernel and chmod the link 0644: the user's private
    /// kernel became world-readable. A copy leaves the user's file as it was.
    @Test func stagedKernelIsACopyAndTheUsersFileKeepsItsMode() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-kernel-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let kernel = folder.appendingPathComponent("bzImage"), staged = folder.appendingPathComponent("kernel")
        try Data(repeating: 0x5a, count: 1 << 20).write(to: kernel)
        chmod(kernel.path, 0o600)
        try GuestLauncher.stageKernel(kernel, at: staged)
        var user = stat(), copy = stat()
        stat(kernel.path, &user)
        stat(staged.path, &copy)
        #expect(user.st_mode & 0o777 == 0o600)
        #expect(user.st_nlink == 1)
        #expect(copy.st_ino != user.st_ino)
        #expect(copy.st_mode & 0o007 == 0, "a private kernel's copy is not world-readable")
        #expect(copy.st_mode & 0o040 != 0, "but QEMU's group reads it")
        #expect(try Data(contentsOf: staged) == Data(contentsOf: kernel))
        // Even when its folder is shootdown's cache, a private file is copied.
        try GuestLauncher.stageKernel(kernel, at: staged, ownCache: folder)
        stat(staged.path, &copy)
        #expect(copy.st_ino != user.st_ino && copy.st_mode & 0o007 == 0)
        chmod(kernel.path, 0o644)
        try GuestLauncher.stageKernel(kernel, at: staged)
        stat(staged.path, &copy)
        #expect(copy.st_mode & 0o777 == 0o644 && copy.st_ino != user.st_ino)
        // shootdown's own cached kernels (world-readable) are linked: no copy per cell.
        try GuestLauncher.stageKernel(kernel, at: staged, ownCache: folder)
        stat(staged.path, &copy)
        #expect(copy.st_ino == user.st_ino)
        stat(kernel.path, &user)
        #expect(user.st_mode & 0o777 == 0o644)
    }

    /// A guest whose run is gone is killed by its emulator wrapper at the end of its
    /// lifetime (the `lifetime` file beside its kernel); without one it runs on.
    @Test func wrapperKillsTheEmulatorAtTheEndOfItsLifetime() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-lifetime-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let context = ToolContext(paths: ToolPaths(cache: folder, results: folder, resources: folder, stage: folder))
        let launcher = GuestLauncher(context: context, connection: try LibvirtConnection(uri: "test:///default"), staging: .files)
        let fakeQemu = folder.appendingPathComponent("fake-qemu")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("guest"), withIntermediateDirectories: true)
        try "#!/bin/sh\nexec sleep 30\n".write(to: fakeQemu, atomically: true, encoding: .utf8)
        chmod(fakeQemu.path, 0o755)
        let wrapper = try launcher.emulatorWrapper(for: fakeQemu.path, accelSuffix: "", cpuSuffix: "")
        func start(_ guest: String) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: wrapper)
            process.arguments = ["-name", "guest=x", "-kernel", folder.appendingPathComponent("\(guest)/kernel").path]
            try process.run()
            return process
        }
        try "1\n".write(to: folder.appendingPathComponent("guest/lifetime"), atomically: true, encoding: .utf8)
        let unbounded = try start("other")
        let bounded = try start("guest")
        let clock = ContinuousClock(), started = clock.now
        while bounded.isRunning && clock.now - started < .seconds(15) { Thread.sleep(forTimeInterval: 0.1) }
        #expect(!bounded.isRunning)
        #expect(clock.now - started < .seconds(8))
        #expect(bounded.terminationReason == .uncaughtSignal && bounded.terminationStatus == SIGKILL)
        #expect(unbounded.isRunning, "no lifetime file: no bound")
        // SIGKILL: a child of a test thread inherits its blocked signal mask, SIGTERM included.
        kill(unbounded.processIdentifier, SIGKILL)
        unbounded.waitUntilExit()

        // An emulator that ends first takes its watcher with it at once: the watcher shares
        // its cgroup, and libvirt's teardown waits for that cgroup to empty.
        try "30\n".write(to: folder.appendingPathComponent("guest/lifetime"), atomically: true, encoding: .utf8)
        try "#!/bin/sh\nexec sleep 0.5\n".write(to: fakeQemu, atomically: true, encoding: .utf8)
        let short = try start("guest")
        // Foundation learns of the exit only once every holder of the child's status socket
        // is gone, the watcher included: a prompt return is a watcher that left.
        let exitStarted = clock.now
        short.waitUntilExit()
        #expect(clock.now - exitStarted < .seconds(1.5), "the watcher outlived the emulator (0.5 s) by more than its 0.2 s poll")
    }
}

/// Signal handling that must not leak into the programs shootdown runs.
@Suite struct StopSignalTests {
    /// SIGPIPE is survived by shootdown but not ignored: children (make, gcc, tar) inherit
    /// an ignored signal across exec and would no longer die of a broken pipe.
    @Test func childrenDoNotInheritAnIgnoredSIGPIPE() throws {
        ActiveDomains.shared.handleStopSignals()
        let output = try ProcessRunner().check(Command("/bin/sh", ["-c", "grep SigIgn /proc/self/status"]))
        let mask = UInt64(output.stdout.split(separator: "\t").last!.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16)!
        #expect(mask & (1 << (UInt64(SIGPIPE) - 1)) == 0, "\(output.stdout)")
        // And this process survives a write to a closed pipe.
        let pipe = Pipe()
        try pipe.fileHandleForReading.close()
        #expect(throws: (any Error).self) { try pipe.fileHandleForWriting.write(contentsOf: Data("x".utf8)) }
    }
}

extension GuestSeamTests {
    static func mount(_ arguments: [String]) -> Bool {
        let command = arguments.first == "umount" ? Command("/bin/umount", Array(arguments.dropFirst())) : Command("/bin/mount", arguments)
        return (try? ProcessRunner().run(command).succeeded) ?? false
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func next() -> Int { lock.withLock { count += 1; return count } }
}

/// A Unix socket that accepts connections and never answers: a hung daemon.
final class UnixListener: @unchecked Sendable {
    let fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() where index < buffer.count - 1 { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw ShootdownError.io(path: path, message: "cannot listen") }
    }

    func close() {
        _ = Glibc.close(fd)
        unlink(path)
    }
}
