import Foundation
import Testing
@testable import ShootdownCore

/// Matrices for real: the small CI spec, and a run interrupted mid-way and resumed.
@Suite(.serialized, .sharingTheHost) struct MatrixBootTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Both arches × paravirt on/off: under TCG the paravirt-on cells are SKIP with the
    /// reason, the others PASS; under KVM all four PASS with their evidence.
    @Test func smallMatrixRunsWithExpectations() throws {
        let context = BootTests.context()
        let spec = try MatrixSpec.load(Self.root.appendingPathComponent("ci/small-matrix.yaml"),
                                       catalog: TemplateCatalog(resources: context.paths.resources))
        let outcome = try RunPipeline(context: context).run(RunRequest(spec: spec))
        let statuses = outcome.results.map(\.status)
        #expect(outcome.results.count == 4)
        for result in outcome.results {
            let tcg = result.cell.accel == .tcg
            if tcg && result.cell.paravirt == "on" {
                #expect(result.status == .skip)
                #expect(result.reason?.hasPrefix("paravirt on needs KVM") == true)
            } else {
                #expect(result.status == .pass, "\(result.cell.id): \(result.reason ?? "")")
                #expect(result.expectations?.allSatisfy(\.met) == true)
                #expect(result.checks.contains { $0.name.hasPrefix("paravirt \(result.cell.paravirt)") && $0.passed })
            }
        }
        #expect(!outcome.report.failed, "\(statuses)")
        #expect(FileManager.default.fileExists(atPath: outcome.directory.url.appendingPathComponent("results.json").path))
    }

    /// Ctrl-C mid-run destroys the running guest and leaves a run that --resume finishes
    /// with exactly the planned cells, none run twice (a boot per cell, so that one is
    /// finished while the next runs; an interrupted batch: GuestBatchTests).
    @Test func interruptedRunResumes() throws {
        let binary = Self.root.appendingPathComponent(".build/debug/shootdown")
        // `swift test` builds every product; a nested `swift build` would wait on its lock.
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "no \(binary.path): build with swift build first")
        let results = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-resume-\(getpid())")
        defer { try? FileManager.default.removeItem(at: results) }
        let arguments = ["run", "--arch", "x86_64", "--param", "cycles=2,3,4", "--results", results.path, "--jobs", "1", "--isolation", "cell", "--fresh", "boot"]
        let run = results.appendingPathComponent("interrupted")

        let process = Process()
        process.executableURL = binary
        process.arguments = arguments + ["--run-id", "interrupted"]
        let stderrFile = results.appendingPathComponent("interrupted.stderr")
        try FileManager.default.createDirectory(at: results, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
        // Interrupt while the second cell's guest runs: the first result is on disk.
        let deadline = Date().addingTimeInterval(300)
        func finishedCells() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []).filter {
                FileManager.default.fileExists(atPath: run.appendingPathComponent("\($0)/result.json").path)
            }
        }
        while finishedCells().isEmpty && process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        Thread.sleep(forTimeInterval: 1.5)
        #expect(process.isRunning, "the run ended before it could be interrupted")
        process.interrupt()
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        let before = Set(finishedCells())
        #expect(before.count >= 1 && before.count < 3, "\(before)")
        let connection = try LibvirtConnection(uri: BootTests.context().libvirtURI)
        let left = try connection.domainNames(prefix: "shootdown-interrupted")
        let states = left.map { name in (try? ProcessRunner().run(Command("virsh", ["-c", connection.uri, "domstate", "--reason", name])).stdout) ?? "?" }
        #expect(left.isEmpty, "left behind: \(zip(left, states).map { "\($0) \($1)" }); the run said:\n\(tail((try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "", lines: 12))")

        let resumed = try ProcessRunner().run(Command(binary.path, arguments + ["--resume", "interrupted"]), timeout: .seconds(600))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("already done"))
        let after = Set(finishedCells())
        #expect(after.count == 3)
        #expect(after.isSuperset(of: before))
        let report = try #require(try RunDirectory(url: run).readReport())
        #expect(report.cells.map(\.status) == [.pass, .pass, .pass])
    }
}
