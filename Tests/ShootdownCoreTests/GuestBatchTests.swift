import Foundation
import Testing
@testable import ShootdownCore

/// Batches: how one boot's output is split between its cells, and that a batch gives
/// every cell the verdict a boot of its own gives it.
@Suite struct GuestBatchTests {
    static let bootConsole = "[    0.000000] Linux version 6.12.117\r\n[    1.000000] Run /init as init process\r\n"

    static func start(_ id: String) -> String { "[    2.000000] \(GuestBatch.startLine(id)) (timeout 45s)\r\n" }

    static func records(_ ids: [String], done: Bool = true) -> GuestRecords {
        GuestRecords.parse(Data(([SyntheticGuest.boot()] + ids.map { SyntheticGuest.test(id: $0) } + (done ? [SyntheticGuest.done] : []))
            .joined(separator: "\n").utf8))
    }

    @Test func everyTestGetsTheBootAndItsOwnLines() {
        let console = Self.bootConsole + Self.start("t1") + "one\r\n" + Self.start("t2") + "two\r\n" + Self.start("t3") + "three\r\n"
        let split = GuestBatch.split(console: console, records: Self.records(["t1", "t2", "t3"]), testIDs: ["t1", "t2", "t3"], timedOut: false)
        #expect(split.notRun.isEmpty)
        #expect(split.parts.map(\.console) == [Self.bootConsole + Self.start("t1") + "one\r\n",
                                              Self.bootConsole + Self.start("t2") + "two\r\n",
                                              Self.bootConsole + Self.start("t3") + "three\r\n"])
        #expect(split.parts.map { $0.records.tests.map(\.id) } == [["t1"], ["t2"], ["t3"]])
        #expect(split.parts.allSatisfy { $0.records.finished && $0.records.boot != nil && !$0.timedOut })
    }

    /// The agent ended the boot after t2 (a splat): t3 never started and goes to a fresh boot.
    @Test func testsAfterTheBatchEndAreNotRun() {
        let console = Self.bootConsole + Self.start("t1") + Self.start("t2") + "WARNING: here\r\n"
        let split = GuestBatch.split(console: console, records: Self.records(["t1", "t2"]), testIDs: ["t1", "t2", "t3"], timedOut: false)
        #expect(split.parts.count == 2)
        #expect(split.notRun == [2])
        #expect(!split.parts[0].console.contains("WARNING") && split.parts[1].console.contains("WARNING"))
    }

    /// A panic inside t2: its start line, no record. t2 is judged (the console has the
    /// panic), t1 ended in order, t3 goes to a fresh boot; the timeout is t2's alone.
    @Test func aTestThatStartedWithoutARecordIsJudgedTheRestRunAgain() {
        let console = Self.bootConsole + Self.start("t1") + Self.start("t2") + "Kernel panic - not syncing\r\n"
        let split = GuestBatch.split(console: console, records: Self.records(["t1"], done: false), testIDs: ["t1", "t2", "t3"],
                                     timedOut: true)
        #expect(split.parts.count == 2 && split.notRun == [2])
        #expect(split.parts[0].records.finished && !split.parts[0].timedOut)
        #expect(!split.parts[1].records.finished && split.parts[1].timedOut && split.parts[1].records.tests.isEmpty)
    }

    /// A guest that never reached the agent: the first cell takes the outcome, so a
    /// broken guest costs one boot per cell, as with boots of their own, and never loops.
    @Test func aBootThatRanNothingJudgesItsFirstCell() {
        let split = GuestBatch.split(console: "", records: GuestRecords(), testIDs: ["t1", "t2"], timedOut: false)
        #expect(split.parts.count == 1 && split.notRun == [1])
    }

    @Test func recordsOfTestsThePlanDoesNotHoldAreDisallowedEverywhere() {
        let split = GuestBatch.split(console: "", records: Self.records(["t1", "t9", "t2"]), testIDs: ["t1", "t2"], timedOut: false)
        #expect(split.parts.count == 2)
        #expect(split.parts.allSatisfy { $0.records.disallowed.contains { $0.contains("'t9'") } })
    }

    @Test func startLinesMatchWholeIDs() {
        let console = Self.bootConsole + Self.start("t10") + "ten\r\n"
        #expect(GuestBatch.startOffsets(console, testIDs: ["t1", "t10"]) == [nil, Self.bootConsole.utf8.count])
    }

    @Test func aCellKeepsOnlyItsOwnTestRecord() {
        let stream = Data(([SyntheticGuest.boot(), SyntheticGuest.test(id: "t1"), SyntheticGuest.test(id: "t2"), "junk", SyntheticGuest.done]
            .joined(separator: "\n") + "\n").utf8)
        let kept = GuestRecords.parse(GuestBatch.streams(stream, ids: ["t1", "t2"])["t2"]!)
        #expect(kept.tests.map(\.id) == ["t2"] && kept.boot != nil && kept.finished && kept.rejectedCount == 1)
    }

    @Test func cellsThatNeedTheSameGuestShareABoot() {
        let keys: [String?] = ["a", "b", "a", nil, "a", "b"]
        #expect(CellPlanner.batches(keys: keys, isolation: .batch) == [[0, 2, 4], [1, 5], [3]])
        #expect(CellPlanner.batches(keys: keys, isolation: .cell) == [[0], [1], [2], [3], [4], [5]])
        // At most maxSize a boot, and enough boots for every worker.
        #expect(CellPlanner.batches(keys: Array(repeating: "a", count: 5), isolation: .batch, maxSize: 2) == [[0, 1], [2, 3], [4]])
        #expect(CellPlanner.batches(keys: Array(repeating: "a", count: 6), isolation: .batch, jobs: 2) == [[0, 1, 2], [3, 4, 5]])
    }

    /// The agent's rules, replayed: tests run in plan order, each logs its start on the
    /// console; the one built with `cycles=3` splats (a WARNING, which taints the
    /// kernel), and the agent ends the boot after it.
    static let splatsAtCyclesThree: ReplayGuests.Source = { boot in
        let warning = try String(contentsOf: ReplayWorld.fixture("console/x86_64-warning-6.12.log"), encoding: .utf8)
            .split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).dropFirst(380).prefix(43).joined(separator: "\n") + "\n"
        var console = try String(contentsOf: ReplayWorld.fixture("console/x86_64-clean-boot-6.12.log"), encoding: .utf8)
        var records = [SyntheticGuest.boot()]
        for id in boot.testIDs {
            if boot.testIDs.count > 1 { console += start(id) }
            let program = CPIOArchive.file("/shootdown/tests/\(id)", in: boot.initramfs).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let splats = program.contains("#define CYCLES 3UL")
            if splats { console += warning }
            records.append(SyntheticGuest.test(kmsg: splats ? warning : "", id: id))
            if splats && boot.testIDs.count > 1 {
                console += "[    3.000000] shootdown-agent: batch ends after test \(id): the kernel's taint flags changed (a splat)\r\n"
                break
            }
        }
        records.append(SyntheticGuest.done)
        return GuestRecording(console: Data(console.utf8), records: Data((records.joined(separator: "\n") + "\n").utf8))
    }

    /// The bar: a batch that meets a splat gives every cell the verdict
    /// `--isolation cell` gives it, and the cells after the splat run in a fresh boot.
    @Test func aSplatInABatchGivesTheVerdictsOfBootsOfTheirOwn() throws {
        let world = try ReplayWorld(Self.splatsAtCyclesThree)
        let request = world.request(cycles: "2,3,4,5")
        let batched = try world.run(request, ExecutionOptions(jobs: 1))
        let bootsOfBatch = world.guests.boots.map(\.testIDs)
        let isolated = try world.run(request, ExecutionOptions(jobs: 1, isolation: .cell))

        #expect(batched.results.map(\.cell.id) == isolated.results.map(\.cell.id))
        #expect(batched.results.map(\.status) == [.pass, .fail, .pass, .pass])
        #expect(batched.results.map(\.status) == isolated.results.map(\.status))
        #expect(batched.results.map(\.reason) == isolated.results.map(\.reason))
        // One boot for all four, which ended after the splat; one more for the two left.
        #expect(bootsOfBatch == [["t1", "t2", "t3", "t4"], ["t1", "t2"]])
        #expect(world.log.contains { $0.contains("the boot ended after 2 of 4 cell(s); 2 go to a fresh boot") })
        // The first cell's console holds no trace of the splat that came after it.
        let first = try String(contentsOf: batched.directory.cellDirectory(batched.results[0].cell.id)
            .appendingPathComponent("console.log"), encoding: .utf8)
        #expect(!first.contains("WARNING:"))
    }

    /// Interrupted inside a batch: nothing of that boot is kept, and --resume runs
    /// exactly the cells without a result, in one boot.
    @Test func resumeAfterAnInterruptedBatchRunsExactlyTheMissingCells() throws {
        let registry = ActiveDomains()
        let counter = Counter()
        let world = try ReplayWorld { boot in
            if counter.next() == 2 { registry.interrupt(signal: SIGINT) }
            return try ReplayWorld.passing(boot)
        }
        var context = world.context
        context.activeDomains = registry
        // Two vCPU counts: two guests, each a boot of the two cycles values.
        let request = world.request(cycles: "2,3", vcpus: [2, 4])
        #expect(throws: RunInterrupted.self) {
            try RunPipeline(context: context).run(request, options: ExecutionOptions(jobs: 1, runID: "cut"))
        }
        let directory = RunDirectory(url: world.results.appendingPathComponent("cut"))
        let before = try directory.results().map(\.cell.id)
        #expect(before.count == 2 && before.allSatisfy { $0.contains("-2cpu-") })
        #expect(world.guests.destroyed.count == 1)

        let resumed = try world.run(request, ExecutionOptions(jobs: 1, resume: "cut"))
        #expect(resumed.results.count == 4 && resumed.results.allSatisfy { $0.status == .pass })
        let rebooted = world.guests.boots.dropFirst(2)
        #expect(rebooted.map(\.testIDs) == [["t1", "t2"]])
        #expect(rebooted.allSatisfy { $0.spec.vcpus == 4 })
    }
}

@Suite struct WorkBoardTests {
    /// On two cores an arm64 guest's four vCPU threads run alone; single-threaded guests
    /// then run side by side.
    @Test func multiThreadedGuestsRunAloneOnASmallHost() {
        let board = WorkBoard(batches: [[0], [1], [2]], alreadyDone: 0, total: 3, threads: 2) { $0[0] == 0 ? 4 : 1 }
        #expect(board.next()?.cells == [0])
        let second = Locked<[Int]?>(nil)
        let worker = Thread { let cells = board.next()?.cells; second.update { $0 = cells } }
        worker.start()
        usleep(300_000)
        #expect(second.value == nil, "a guest started beside the multi-threaded one")
        board.settle([0], notRun: [])
        let deadline = Date().addingTimeInterval(5)
        while second.value == nil && Date() < deadline { usleep(10_000) }
        #expect(second.value == [1])
        #expect(board.next()?.cells == [2])
    }

    /// Without a multi-threaded guest, --jobs alone decides: four single-threaded guests
    /// on two cores start at once.
    @Test func singleThreadedGuestsFollowJobs() {
        let board = WorkBoard(batches: [[0], [1], [2], [3]], alreadyDone: 0, total: 4, threads: 2) { _ in 1 }
        #expect((0..<4).compactMap { _ in board.next()?.cells } == [[0], [1], [2], [3]])
    }
}

@Suite struct SavedGuestPruningTests {
    /// Saves go when unused for a week or beyond the twelve most recently used; a held
    /// slot stays whatever its age, and locks of slots without a save go.
    @Test func oldAndSurplusSavesGoHeldOnesStay() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("saved-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let now = Date()
        func save(_ name: String, usedDaysAgo days: Double) throws {
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let uuid = folder.appendingPathComponent("uuid")
            try Data("u\n".utf8).write(to: uuid)
            try FileManager.default.setAttributes([.modificationDate: now.addingTimeInterval(-days * 86400)], ofItemAtPath: uuid.path)
            FileManager.default.createFile(atPath: folder.path + ".lock", contents: nil)
        }
        for index in 0..<13 { try save("recent-\(index)", usedDaysAgo: Double(index) / 10) }
        try save("old-held", usedDaysAgo: 30)
        try save("old", usedDaysAgo: 8)
        FileManager.default.createFile(atPath: root.appendingPathComponent("gone-0.lock").path, contents: nil)
        let held = try #require(HeldLock.tryTake(root.appendingPathComponent("old-held.lock")))
        defer { held.release() }
        GuestLauncher.pruneSaved(in: root, now: now)
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: root.path))
        #expect(left.contains("old-held") && left.contains("old-held.lock"))
        #expect(!left.contains("old") && !left.contains("old.lock"))
        #expect(!left.contains("gone-0.lock"))
        #expect((0..<12).allSatisfy { left.contains("recent-\($0)") })
        #expect(!left.contains("recent-12"), "the thirteenth most recent save was kept")
    }
}
