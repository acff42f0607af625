import Foundation

/// Time limits per kind of command, so that nothing shootdown starts can run unbounded.
/// The kind is the program's base name (for `sh -c "xz -dc …"`, the script's first word).
/// `SHOOTDOWN_COMMAND_TIMEOUTS="git=3600,make=600,*=900"` (seconds) overrides entries;
/// a caller that knows better (a kernel build) passes its own limit.
public struct CommandTimeouts: Sendable, Equatable {
    public var byKind: [String: Duration]
    public var fallback: Duration

    public init(byKind: [String: Duration], fallback: Duration) {
        self.byKind = byKind
        self.fallback = fallback
    }

    /// Generous for this 2-core host under load, yet bounded: a hung mirror or a stuck
    /// lock shows up as an error instead of a run that never ends.
    public static let defaults = CommandTimeouts(byKind: [
        "apt-cache": .seconds(120), "apt-get": .seconds(1800), "dpkg": .seconds(60), "dpkg-deb": .seconds(600),
        "git": .seconds(1800), "make": .seconds(600), "tar": .seconds(1800), "cp": .seconds(1800),
        "gcc": .seconds(600), "cc": .seconds(600), "aarch64-linux-gnu-gcc": .seconds(600),
        "xz": .seconds(600), "zstd": .seconds(600), "gzip": .seconds(600), "cpio": .seconds(600),
        "diff": .seconds(60), "file": .seconds(60), "command": .seconds(30), "virsh": .seconds(120),
        "patch": .seconds(300),
    ], fallback: .seconds(1800))

    /// The defaults with `SHOOTDOWN_COMMAND_TIMEOUTS` applied.
    public static var standard: CommandTimeouts {
        defaults.overridden(by: ProcessInfo.processInfo.environment["SHOOTDOWN_COMMAND_TIMEOUTS"] ?? "")
    }

    /// `kind=seconds` pairs separated by commas; `*` sets the fallback. Malformed pairs are
    /// ignored rather than fatal: a typo must not make every command unbounded or refused.
    public func overridden(by text: String) -> CommandTimeouts {
        var result = self
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let seconds = Double(parts[1]), seconds > 0 else { continue }
            if parts[0] == "*" { result.fallback = .milliseconds(Int64(seconds * 1000)) }
            else { result.byKind[parts[0]] = .milliseconds(Int64(seconds * 1000)) }
        }
        return result
    }

    public func limit(for command: Command) -> Duration {
        byKind[Self.kind(of: command)] ?? fallback
    }

    static func kind(of command: Command) -> String {
        let name = URL(fileURLWithPath: command.executable).lastPathComponent
        if ["sh", "bash", "dash"].contains(name), let flag = command.arguments.firstIndex(of: "-c"),
           flag + 1 < command.arguments.count,
           let first = command.arguments[flag + 1].split(whereSeparator: \.isWhitespace).first {
            return URL(fileURLWithPath: String(first)).lastPathComponent
        }
        return name
    }
}

/// Runs programs with posix_spawn, each in its own process group, so that a timeout or an
/// interruption reaches everything it started (`sh` → `make` → `gcc`), not only the
/// direct child. Output goes to temporary files rather than pipes: a grandchild that keeps
/// a pipe open would otherwise hold the caller until it exits.
///
/// Not swift-subprocess 1.0.2: its teardown stops as soon as the direct child exits, so a
/// grandchild that ignores SIGTERM survives the group SIGKILL it never sends (measured), and
/// its API is async only, while every caller here is synchronous.
public struct ProcessRunner: CommandRunning {
    public var timeouts: CommandTimeouts
    /// How long a process group has between SIGTERM and SIGKILL.
    public var grace: Duration
    /// Where running groups are registered for `terminateRunning`; tests use their own.
    let groups: ProcessGroups

    public init(timeouts: CommandTimeouts = .standard, grace: Duration = .seconds(5)) {
        self.init(timeouts: timeouts, grace: grace, groups: .shared)
    }

    init(timeouts: CommandTimeouts = .standard, grace: Duration = .seconds(5), groups: ProcessGroups) {
        self.timeouts = timeouts
        self.grace = grace
        self.groups = groups
    }

    public func run(_ command: Command, timeout: Duration?) throws -> CommandOutput {
        let limit = timeout ?? timeouts.limit(for: command)
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("shootdown-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outPath = scratch.appendingPathComponent("out").path, errPath = scratch.appendingPathComponent("err").path

        let child = try groups.spawn(command, stdout: outPath, stderr: errPath)
        let clock = ContinuousClock(), deadline = clock.now + limit
        guard let termination = child.waitForExit(until: deadline) else {
            _ = child.tearDown(grace: grace)
            throw ShootdownError.commandTimedOut(command: command.description, seconds: limit.seconds)
        }
        let stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return CommandOutput(termination: termination, stdout: stdout, stderr: stderr)
    }

    /// For an interrupt handler: SIGTERM every running command's process group, SIGKILL
    /// what is left after `grace`, and wait (bounded) until they are gone. Commands started
    /// afterwards are refused, so nothing outlives the exiting tool.
    public static func terminateRunning(grace: Duration = .seconds(2)) {
        ProcessGroups.shared.terminateAll(grace: grace)
    }
}

/// The process groups of running commands. A leader stays unreaped while registered, so its
/// pid (the group id) cannot be reused and a signal to the group never hits a stranger.
final class ProcessGroups: @unchecked Sendable {
    static let shared = ProcessGroups()

    final class Child: @unchecked Sendable {
        let pid: pid_t
        let command: String
        fileprivate(set) var tearingDown = false
        fileprivate(set) var reaped = false
        unowned let owner: ProcessGroups

        init(pid: pid_t, command: String, owner: ProcessGroups) {
            self.pid = pid
            self.command = command
            self.owner = owner
        }

        /// Polls until the leader exits (then reaps it) or the deadline passes (nil).
        func waitForExit(until deadline: ContinuousClock.Instant) -> Termination? {
            var pause = 1
            while ContinuousClock.now < deadline {
                if hasExited() { return reap() }
                usleep(useconds_t(pause * 1000))
                pause = min(pause * 2, 50)
            }
            return hasExited() ? reap() : nil
        }

        /// SIGTERM to the group, SIGKILL to the group after `grace` (even when the leader
        /// left: its children may not have), then a bounded wait for the leader.
        func tearDown(grace: Duration) -> Termination? {
            owner.lock.withLock {
                tearingDown = true
                if !reaped { kill(-pid, SIGTERM) }
            }
            let clock = ContinuousClock(), termEnds = clock.now + grace
            while clock.now < termEnds && !hasExited() { usleep(10_000) }
            owner.lock.withLock { if !reaped { kill(-pid, SIGKILL) } }
            if let status = waitForExit(until: clock.now + .seconds(5)) { return status }
            // Stuck in the kernel (D state): reap it whenever it goes, off this thread.
            let stuck = pid
            owner.lock.withLock { owner.children[stuck] = nil; reaped = true }
            Thread.detachNewThread { var status: Int32 = 0; waitpid(stuck, &status, 0) }
            return nil
        }

        /// Whether the leader has exited, without reaping it.
        func hasExited() -> Bool {
            var info = siginfo_t()
            let result = waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT)
            if result != 0 { return errno == ECHILD }
            return info.si_signo == SIGCHLD
        }

        /// Reaps the exited leader; a group being torn down is SIGKILLed first, under the
        /// lock and while the pid is still ours, so no straggler survives.
        func reap() -> Termination {
            owner.lock.withLock {
                if tearingDown { kill(-pid, SIGKILL) }
                owner.children[pid] = nil
                reaped = true
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let signal = status & 0x7f
            return signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
        }
    }

    let lock = NSLock()
    private var children: [pid_t: Child] = [:]
    private var shuttingDown = false

    func spawn(_ command: Command, stdout: String, stderr: String) throws -> Child {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // Descriptors this process opened without O_CLOEXEC must not leak into the command.
        if let closeFrom = SpawnExtensions.closeFrom { _ = closeFrom(&actions, 3) }
        if let directory = command.workingDirectory {
            guard let chdir = SpawnExtensions.chdir else {
                throw ShootdownError.toolMissing(tool: command.executable, hint: "posix_spawn cannot change directory on this libc")
            }
            _ = chdir(&actions, directory)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own group (pgid = pid); signals the tool ignores (an interrupt handler sets
        // SIG_IGN) back to default, and nothing blocked, so SIGTERM can work.
        var defaults = sigset_t(), empty = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let environment = ProcessInfo.processInfo.environment.merging(command.environment) { $1 }
            .map { "\($0.key)=\($0.value)" }
        let argv = [command.executable] + command.arguments
        var pid: pid_t = 0
        // Registered under the lock in the same step as the spawn, so an interrupt either
        // refuses this command or sees its group.
        let result: Int32 = try lock.withLock {
            guard !shuttingDown else {
                throw ShootdownError.commandKilled(command: command.description, signal: SIGTERM,
                                                   output: "not started: shootdown is being interrupted")
            }
            let code = withCStrings(argv) { argvPointer in
                withCStrings(environment) { environmentPointer in
                    command.executable.contains("/")
                        ? posix_spawn(&pid, command.executable, &actions, &attributes, argvPointer, environmentPointer)
                        : posix_spawnp(&pid, command.executable, &actions, &attributes, argvPointer, environmentPointer)
                }
            }
            if code == 0 { children[pid] = Child(pid: pid, command: command.description, owner: self) }
            return code
        }
        guard result == 0 else {
            throw ShootdownError.toolMissing(tool: command.executable, hint: String(cString: strerror(result)))
        }
        return lock.withLock { children[pid]! }
    }

    func terminateAll(grace: Duration) {
        let running = lock.withLock { () -> [Child] in
            shuttingDown = true
            let all = Array(children.values)
            for child in all {
                child.tearingDown = true
                kill(-child.pid, SIGTERM)
            }
            return all
        }
        let clock = ContinuousClock(), termEnds = clock.now + grace
        while clock.now < termEnds && running.contains(where: { !$0.hasExited() }) { usleep(10_000) }
        lock.withLock { for child in children.values { kill(-child.pid, SIGKILL) } }
        // The runs that own them reap them; wait (bounded) so none outlives the exit.
        let waitEnds = clock.now + .seconds(2)
        while clock.now < waitEnds && lock.withLock({ !children.isEmpty }) { usleep(10_000) }
    }

    /// For tests: allow spawns again after `terminateAll`.
    func resume() { lock.withLock { shuttingDown = false } }

    var runningPIDs: [pid_t] { lock.withLock { Array(children.keys) } }
}

/// glibc's `_np` spawn actions, which Swift's Glibc module does not import (they need
/// _GNU_SOURCE): looked up at run time.
private enum SpawnExtensions {
    typealias ChdirFunction = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    typealias CloseFromFunction = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    static let chdir: ChdirFunction? = symbol("posix_spawn_file_actions_addchdir_np")
    static let closeFrom: CloseFromFunction? = symbol("posix_spawn_file_actions_addclosefrom_np")

    private static func symbol<T>(_ name: String) -> T? {
        #if canImport(Glibc)
        let handle = dlopen(nil, RTLD_NOW)
        #else
        let handle = UnsafeMutableRawPointer(bitPattern: -2) // RTLD_DEFAULT
        #endif
        guard let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: T.self)
    }
}

/// A NULL-terminated C string array for the duration of `body`.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// SIGKILL, SIGTERM, … for messages.
func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL",
                                  SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL",
                                  SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM"]
    return names[signal] ?? "signal \(signal)"
}
