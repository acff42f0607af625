import Foundation
import Testing
@testable import ShootdownCore

/// The runner's promises: every command is bounded, a timeout or an interrupt takes the
/// whole process group (a child that ignores SIGTERM, a grandchild that outlives its
/// parent), and a signal is reported as a signal.
@Suite struct ProcessRunnerTests {
    static func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-runner-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Alive means listed and not a zombie (a reparented zombie may wait for a reaper).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    static func pid(in file: URL, within seconds: Double = 10) -> pid_t? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let text = try? String(contentsOf: file, encoding: .utf8), text.hasSuffix("\n"),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) { return pid }
            usleep(10_000)
        }
        return nil
    }

    static func gone(_ pid: pid_t, within seconds: Double = 3) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if !isAlive(pid) { return true }
            usleep(20_000)
        }
        return !isAlive(pid)
    }

    /// Runs `body` on a thread and gives up after `seconds`, so a runner that hangs fails
    /// the test instead of hanging the suite.
    static func bounded<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> T) -> T? {
        let done = DispatchSemaphore(value: 0)
        let box = Box<T>()
        Thread.detachNewThread { box.value = body(); done.signal() }
        return done.wait(timeout: .now() + seconds) == .success ? box.value : nil
    }

    final class Box<T>: @unchecked Sendable { var value: T? }

    @Test func aCommandThatIgnoresSIGTERMIsKilledWithinItsTimeout() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pidFile = directory.appendingPathComponent("pid")
        let runner = ProcessRunner(grace: .milliseconds(500), groups: ProcessGroups())
        let command = Command("/bin/sh", ["-c", "trap '' TERM; echo $$ > \(pidFile.path); while :; do sleep 1; done"])
        let started = Date()
        let outcome = Self.bounded(15) { () -> String in
            do { _ = try runner.run(command, timeout: .seconds(1)); return "returned" } catch { return "\(error)" }
        }
        #expect(outcome?.contains("did not finish within 1 s") == true, "runner hung or did not time out: \(outcome ?? "hung")")
        #expect(Date().timeIntervalSince(started) < 8)
        let pid = try #require(Self.pid(in: pidFile))
        #expect(Self.gone(pid), "the shell that ignored SIGTERM is still running")
    }

    @Test func aGrandchildThatOutlivesItsParentDiesWithTheGroup() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pidFile = directory.appendingPathComponent("grandchild")
        // The parent dies of SIGTERM at once; the grandchild ignores it, as `make` children
        // in the middle of a job can, and only a SIGKILL to the whole group stops it.
        let script = "sh -c \"trap '' TERM; echo \\$\\$ > \(pidFile.path); exec sleep 300\" & wait"
        let runner = ProcessRunner(grace: .milliseconds(500), groups: ProcessGroups())
        let outcome = Self.bounded(15) { () -> String in
            do { _ = try runner.run(Command("/bin/sh", ["-c", script]), timeout: .seconds(1)); return "returned" }
            catch { return "\(error)" }
        }
        #expect(outcome?.contains("did not finish") == true, "\(outcome ?? "hung")")
        let pid = try #require(Self.pid(in: pidFile))
        let survived = !Self.gone(pid)
        if survived { kill(pid, SIGKILL) }
        #expect(!survived, "grandchild \(pid) survived the timeout")
    }

    @Test func exitBySignalIsReportedAsASignal() throws {
        let runner = ProcessRunner(groups: ProcessGroups())
        let killed = try runner.run(Command("/bin/sh", ["-c", "kill -SEGV $$"]))
        #expect(killed.termination == .signaled(SIGSEGV))
        #expect(!killed.succeeded)
        let exited = try runner.run(Command("/bin/sh", ["-c", "exit 139"]))
        #expect(exited.termination == .exited(139))
        #expect(throws: ShootdownError.commandKilled(command: "/bin/sh -c 'kill -KILL $$'", signal: SIGKILL, output: "")) {
            try runner.check(Command("/bin/sh", ["-c", "kill -KILL $$"]))
        }
        #expect("\(ShootdownError.commandKilled(command: "make", signal: SIGKILL, output: ""))" == "`make` was killed by signal 9 (SIGKILL)")
    }

    @Test func noTimeoutMeansTheDefaultForTheKindNeverUnbounded() throws {
        let timeouts = CommandTimeouts(byKind: ["sleep": .milliseconds(300)], fallback: .seconds(3600))
        let runner = ProcessRunner(timeouts: timeouts, grace: .milliseconds(200), groups: ProcessGroups())
        let started = Date()
        #expect(throws: ShootdownError.self) { try runner.run(Command("sleep", ["30"])) }
        #expect(Date().timeIntervalSince(started) < 5)

        #expect(CommandTimeouts.kind(of: Command("/usr/bin/git", ["status"])) == "git")
        #expect(CommandTimeouts.kind(of: Command("/bin/sh", ["-c", "xz -dc a.ko.xz > b"])) == "xz")
        let overridden = CommandTimeouts.defaults.overridden(by: "git=7200, *=60,bogus,make=x")
        #expect(overridden.limit(for: Command("git")) == .seconds(7200))
        #expect(overridden.limit(for: Command("unknown-tool")) == .seconds(60))
        #expect(overridden.limit(for: Command("make")) == CommandTimeouts.defaults.limit(for: Command("make")))
    }

    @Test func interruptTerminatesEveryRunningGroupAndRefusesNewOnes() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pidFile = directory.appendingPathComponent("grandchild")
        let groups = ProcessGroups()
        let runner = ProcessRunner(grace: .seconds(1), groups: groups)
        let script = "sh -c \"trap '' TERM; echo \\$\\$ > \(pidFile.path); exec sleep 300\" & wait"
        let done = DispatchSemaphore(value: 0), box = Box<String>()
        Thread.detachNewThread {
            do { box.value = "\(try runner.run(Command("/bin/sh", ["-c", script]), timeout: .seconds(600)).termination)" }
            catch { box.value = "\(error)" }
            done.signal()
        }
        let pid = try #require(Self.pid(in: pidFile))
        let started = Date()
        groups.terminateAll(grace: .milliseconds(500))
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(box.value == "\(Termination.signaled(SIGTERM))")
        #expect(Self.gone(pid), "grandchild survived the interrupt")
        #expect(groups.runningPIDs.isEmpty)
        #expect(throws: ShootdownError.self) { try runner.run(Command("true")) }
    }

    @Test func workingDirectoryEnvironmentAndOutput() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let runner = ProcessRunner(groups: ProcessGroups())
        let output = try runner.check(Command("/bin/sh", ["-c", "pwd; echo \"$SHOOTDOWN_PROBE\"; echo err >&2"],
                                              environment: ["SHOOTDOWN_PROBE": "x y"], workingDirectory: directory.path))
        #expect(output.stdout == "\(directory.resolvingSymlinksInPath().path)\n" + "x y\n" || output.stdout == "\(directory.path)\nx y\n")
        #expect(output.stderr == "err\n")
        // PATH lookup, and a missing program is an error that names it.
        #expect(try runner.run(Command("true")).succeeded)
        #expect(throws: ShootdownError.self) { try runner.run(Command("shootdown-no-such-program")) }
    }
}
