import Foundation
import Testing
@testable import ShootdownCore

/// The built executable under faults that only a real process and real guests show:
/// SIGKILL mid-run, stop signals, a closed pipe, and libvirt going away mid-run.
@Suite(.serialized, .sharingTheHost) struct LifecycleBootTests {
    static let root = MatrixBootTests.root
    static let binary = root.appendingPathComponent(".build/debug/shootdown")
    static let stage = URL(fileURLWithPath: "/var/lib/libvirt/shootdown")

    /// A `shootdown run` in the background, its stderr in a file.
    final class Launched {
        let process = Process()
        let results: URL
        let runID: String
        let stderrFile: URL

        init(_ arguments: [String], results: URL, runID: String, environment: [String: String] = [:],
             stdout: FileHandle? = FileHandle.nullDevice, stderr: FileHandle? = nil) throws {
            self.results = results
            self.runID = runID
            stderrFile = results.appendingPathComponent("\(runID).stderr")
            try FileManager.default.createDirectory(at: results, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
            process.executableURL = LifecycleBootTests.binary
            process.arguments = ["run", "--results", results.path] + arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = stdout
            process.standardError = try stderr ?? FileHandle(forWritingTo: stderrFile)
            try process.run()
        }

        var run: URL { results.appendingPathComponent(runID) }
        var said: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

        func finishedCells() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []).filter {
                FileManager.default.fileExists(atPath: run.appendingPathComponent("\($0)/result.json").path)
            }.sorted()
        }

        /// Until the first cell is on disk and the next guest has had time to start.
        func waitForFirstCell(timeout: TimeInterval = 400) {
            let deadline = Date().addingTimeInterval(timeout)
            while finishedCells().isEmpty && process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
            Thread.sleep(forTimeInterval: 2)
        }

        func wait(timeout: TimeInterval = 120) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return Date() < deadline
        }
    }

    static func require() throws {
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "no \(binary.path): build with swift build first")
    }

    static func domains(_ prefix: String) throws -> [String] {
        try LibvirtConnection(uri: BootTests.context().libvirtURI).domainNames(prefix: prefix)
    }

    static func stageFolders(_ prefix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: stage.path)) ?? []).filter { $0.hasPrefix(prefix) }
    }

    static func resume(_ launched: Launched, _ arguments: [String]) throws -> CommandOutput {
        try ProcessRunner().run(Command(binary.path, ["run", "--results", launched.results.path] + arguments + ["--resume", launched.runID]),
                                timeout: .seconds(600))
    }

    /// What a failed cell's guest left: the end of its console and the size and end of
    /// its records, for a failure that the results folder's removal would hide.
    static func failedCellDetails(_ launched: Launched) -> String {
        launched.finishedCells().compactMap { cell -> String? in
            let folder = launched.run.appendingPathComponent(cell)
            guard let result = try? String(contentsOf: folder.appendingPathComponent("result.json"), encoding: .utf8),
                  !result.contains(#""status" : "PASS""#) && !result.contains(#""status":"PASS""#) else { return nil }
            let console = (try? String(contentsOf: folder.appendingPathComponent("console.log"), encoding: .utf8)) ?? ""
            let records = (try? Data(contentsOf: folder.appendingPathComponent("records.jsonl"))) ?? Data()
            return "\(cell): console tail:\n\(tail(console, lines: 25))\nrecords: \(records.count) bytes, ending "
                + String(decoding: records.suffix(300), as: UTF8.self)
        }.joined(separator: "\n")
    }

    static func temporary(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-\(name)-\(getpid())-\(UUID().uuidString.prefix(6))")
    }

    /// SIGKILL runs no clean-up: the guest and its stage folder stay. (A boot per cell, so
    /// that a cell is finished while the next one's guest runs; batches: GuestBatchTests.) The next run names
    /// and destroys them (their owner is gone), and the killed run resumes to the end.
    @Test func sigkillMidRunThenTheNextRunSweepsAndResumes() throws {
        try Self.require()
        let results = Self.temporary("sigkill")
        defer { try? FileManager.default.removeItem(at: results) }
        let arguments = ["--arch", "x86_64", "--param", "cycles=2,3", "--jobs", "1", "--timeout", "150", "--isolation", "cell", "--fresh", "boot"]
        let runID = "killed-\(getpid())"
        let launched = try Launched(arguments + ["--run-id", runID], results: results, runID: runID)
        launched.waitForFirstCell()
        try #require(launched.process.isRunning, "the run ended before it could be killed:\n\(tail(launched.said, lines: 12))")
        kill(launched.process.processIdentifier, SIGKILL)
        launched.process.waitUntilExit()
        let prefix = "shootdown-\(runID)"
        let leftDomains = try Self.domains(prefix), leftFolders = Self.stageFolders(prefix)
        #expect(!leftFolders.isEmpty, "SIGKILL left no stage folder: the test did not kill mid-cell")
        // An orphaned guest still finishes its test and powers off, and a transient domain
        // then vanishes by itself; paused, it waits for the sweep (CI lost that race once).
        let uri = try BootTests.context().libvirtURI
        for domain in leftDomains {
            _ = try? ProcessRunner().run(Command("virsh", ["-c", uri, "suspend", domain]), timeout: .seconds(30))
        }
        let pausedDomains = try Self.domains(prefix).filter(leftDomains.contains)

        let resumed = try Self.resume(launched, arguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        for domain in pausedDomains {
            #expect(resumed.stderr.contains("destroyed stale guest \(domain)"), "\(resumed.stderr)")
        }
        #expect(resumed.stderr.contains("removed stale stage folder"), "\(resumed.stderr)")
        #expect(resumed.stderr.contains("1 already done"))
        #expect(launched.finishedCells().count == 2)
        #expect(try Self.domains(prefix).isEmpty)
        #expect(Self.stageFolders(prefix).isEmpty)
    }

    /// SIGTERM and SIGHUP do what Ctrl-C does: guests destroyed, stage folders removed,
    /// exit 128 + signal, and the run resumes. Booted guests and restored ones alike: a
    /// restored copy's slot is free again, so the resumed run restores too. The second cell
    /// runs long enough (400 cycles) to be interrupted even when restored.
    @Test(arguments: [(SIGTERM, FreshGuest.boot), (SIGHUP, .boot), (SIGTERM, .restore)])
    func stopSignalsBehaveLikeCtrlC(_ signalNumber: Int32, _ fresh: FreshGuest) throws {
        try Self.require()
        let results = Self.temporary("signal\(signalNumber)-\(fresh)")
        defer { try? FileManager.default.removeItem(at: results) }
        let arguments = ["--arch", "x86_64", "--param", "cycles=2,400", "--jobs", "1", "--timeout", "200", "--isolation", "cell",
                         "--fresh", fresh.rawValue]
        let runID = "signal\(signalNumber)-\(fresh)-\(getpid())"
        let launched = try Launched(arguments + ["--run-id", runID], results: results, runID: runID)
        launched.waitForFirstCell()
        try #require(launched.process.isRunning, "the run ended before the signal:\n\(tail(launched.said, lines: 12))")
        kill(launched.process.processIdentifier, signalNumber)
        #expect(launched.wait(timeout: 60))
        #expect(launched.process.terminationReason == .exit)
        #expect(launched.process.terminationStatus == 128 + signalNumber, "\(tail(launched.said, lines: 12))")
        let prefix = "shootdown-\(runID)"
        #expect(try Self.domains(prefix).isEmpty)
        #expect(Self.stageFolders(prefix).isEmpty, "\(Self.stageFolders(prefix))")
        #expect(launched.finishedCells().count == 1)

        let resumed = try Self.resume(launched, arguments)
        #expect(resumed.status == 0, "\(resumed.stderr)\n\(Self.failedCellDetails(launched))")
        #expect(launched.finishedCells().count == 2)
        guard fresh == .restore else { return }
        let report = try #require(try RunDirectory(url: results.appendingPathComponent(runID)).readReport())
        #expect(report.cells.allSatisfy { $0.status == .pass && $0.guestStart?.hasPrefix("restored a saved guest") == true },
                "\(report.cells.map { "\($0.status) \($0.guestStart ?? "")" })")
    }

    /// From the very start: a signal while programs are still being built (before any
    /// guest) exits 143, not by the default action.
    @Test func sigtermBeforeAnyGuestExitsCleanly() throws {
        try Self.require()
        let results = Self.temporary("early")
        defer { try? FileManager.default.removeItem(at: results) }
        let kernel = try Self.fakeKernel(in: results)
        // A fresh cache: the agent and test are compiled, which takes seconds.
        let launched = try Launched(["--kernel", "file:\(kernel.path)", "--accel", "tcg", "--run-id", "early"], results: results,
                                    runID: "early", environment: ["SHOOTDOWN_CACHE": results.appendingPathComponent("cache").path])
        Thread.sleep(forTimeInterval: 0.6)
        try #require(launched.process.isRunning)
        kill(launched.process.processIdentifier, SIGTERM)
        #expect(launched.wait(timeout: 60))
        #expect(launched.process.terminationReason == .exit, "killed by the default action: no handler yet")
        #expect(launched.process.terminationStatus == 143, "\(launched.said)")
    }

    /// A closed stdout and stderr (`shootdown run | head -1`, a closed terminal) must not
    /// kill the run by SIGPIPE with its guests running: it finishes, results on disk.
    @Test func closedPipeDoesNotKillTheRun() throws {
        try Self.require()
        let results = Self.temporary("sigpipe")
        defer { try? FileManager.default.removeItem(at: results) }
        let kernel = try Self.fakeKernel(in: results)
        let pipe = Pipe()
        try pipe.fileHandleForReading.close()
        let launched = try Launched(["--kernel", "file:\(kernel.path)", "--accel", "tcg", "--timeout", "20", "--run-id", "piped"],
                                    results: results, runID: "piped", stdout: pipe.fileHandleForWriting, stderr: pipe.fileHandleForWriting)
        try pipe.fileHandleForWriting.close()
        #expect(launched.wait(timeout: 120))
        #expect(launched.process.terminationReason == .exit, "killed by signal \(launched.process.terminationStatus)")
        // The fake kernel does not boot: one ERROR cell, so exit status 1.
        #expect(launched.process.terminationStatus == 1)
        #expect(launched.finishedCells().count == 1)
        #expect(try Self.domains("shootdown-piped").isEmpty)
    }

    /// libvirtd going away mid-run (here: the socket proxy the run talks through dies):
    /// one clear error, the finished cell kept; the next run sweeps the guest left running
    /// and resumes.
    @Test func libvirtGoneMidRunIsOneErrorAndTheRunResumes() throws {
        try Self.require()
        let results = Self.temporary("lost")
        defer { try? FileManager.default.removeItem(at: results) }
        let socket = results.appendingPathComponent("proxy.sock").path
        try FileManager.default.createDirectory(at: results, withIntermediateDirectories: true)
        let proxy = try Self.socketProxy(listen: socket, to: "/var/run/libvirt/libvirt-sock")
        defer { if proxy.isRunning { kill(proxy.processIdentifier, SIGKILL) } }
        // TCG: a new URI has no cached probe verdict, and the probe would boot for 20 s.
        let arguments = ["--arch", "x86_64", "--param", "cycles=2,3,4", "--jobs", "1", "--timeout", "150", "--accel", "tcg", "--isolation", "cell", "--fresh", "boot"]
        let runID = "lost-\(getpid())"
        let launched = try Launched(arguments + ["--run-id", runID, "--libvirt-uri", "qemu+unix:///system?socket=\(socket)"],
                                    results: results, runID: runID, environment: ["SHOOTDOWN_STAGE": Self.stage.path])
        launched.waitForFirstCell()
        try #require(launched.process.isRunning, "the run ended early:\n\(tail(launched.said, lines: 12))")
        kill(proxy.processIdentifier, SIGKILL)
        proxy.waitUntilExit()
        #expect(launched.wait(timeout: 90), "the run hung after libvirt went away")
        #expect(launched.process.terminationStatus != 0)
        let said = launched.said
        #expect(said.contains("lost: libvirtd stopped"), "\(tail(said, lines: 12))")
        #expect(said.contains("--resume \(runID)"), "\(tail(said, lines: 12))")
        #expect(said.components(separatedBy: "Error:").count == 2, "one error, not one per cell:\n\(tail(said, lines: 12))")
        let kept = launched.finishedCells()
        #expect(kept.count >= 1 && kept.count < 3)

        let resumed = try Self.resume(launched, arguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(launched.finishedCells().count == 3)
        #expect(try Self.domains("shootdown-\(runID)").isEmpty)
        #expect(Self.stageFolders("shootdown-\(runID)").isEmpty)
    }

    /// A file with the bzImage magic and nothing bootable: QEMU refuses it at once.
    static func fakeKernel(in folder: URL) throws -> URL {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var header = Data(count: 0x1000)
        header.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        let url = folder.appendingPathComponent("bzImage")
        try header.write(to: url)
        return url
    }

    /// A Unix socket forwarder: killing it is libvirtd vanishing, from the client's side.
    static func socketProxy(listen: String, to target: String) throws -> Process {
        let script = """
            import os, socket, sys, threading
            listen, target = sys.argv[1], sys.argv[2]
            server = socket.socket(socket.AF_UNIX); server.bind(listen); server.listen(16)
            def pump(a, b):
                try:
                    while True:
                        data = a.recv(65536)
                        if not data: break
                        b.sendall(data)
                except OSError: pass
                for s in (a, b):
                    try: s.shutdown(socket.SHUT_RDWR)
                    except OSError: pass
            while True:
                client, _ = server.accept()
                upstream = socket.socket(socket.AF_UNIX); upstream.connect(target)
                threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, listen, target]
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: listen) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return process
    }
}
