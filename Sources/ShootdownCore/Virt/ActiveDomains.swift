import Foundation

/// Every guest this process started and has not seen stop, so an interruption (Ctrl-C,
/// SIGTERM, SIGHUP) can destroy them all before the process exits.
public final class ActiveDomains: @unchecked Sendable {
    public static let shared = ActiveDomains()

    /// Signals that stop a run the way Ctrl-C does; the exit status is 128 + the signal.
    public static let stopSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    private let lock = NSLock()
    private var domains: [String: any RunningGuest] = [:]
    private var signalSources: [DispatchSourceSignal] = []
    private var cleanups: [String: @Sendable () -> Void] = [:]
    /// Domain starts in flight: created by libvirt but not registered yet.
    private var starting = 0
    private var interruption: Int32?

    public init() {}

    /// True once an interruption began: guests then die by our hand, so what they
    /// produced is no result and must not be recorded.
    public var isInterrupted: Bool { lock.withLock { interruption != nil } }

    /// The signal that interrupted the run, if one did.
    public var interruptingSignal: Int32? { lock.withLock { interruption } }

    /// Call before creating a domain; false once an interruption began (start nothing).
    public func beginStart() -> Bool {
        lock.withLock {
            guard interruption == nil else { return false }
            starting += 1
            return true
        }
    }

    /// Call after the creation attempt. A domain that came up while an interruption was
    /// under way is destroyed at once, and counts as in flight until libvirt has removed
    /// it, so the interrupted process does not exit while it is still listed.
    public func endStart(_ domain: (any RunningGuest)?) {
        let destroyNow = lock.withLock { () -> Bool in
            guard let domain, interruption != nil else {
                if let domain { domains[domain.name] = domain }
                starting -= 1
                return false
            }
            return true
        }
        guard destroyNow, let domain else { return }
        domain.destroy()
        let deadline = Date().addingTimeInterval(10)
        while domain.exists && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        lock.withLock { starting -= 1 }
    }

    /// Blocks new starts and waits (bounded) for those in flight to finish.
    func stopStarting(signal: Int32 = SIGINT, timeout: TimeInterval = 30) {
        lock.withLock { if interruption == nil { interruption = signal } }
        let deadline = Date().addingTimeInterval(timeout)
        while lock.withLock({ starting > 0 }) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }

    public func unregister(_ domain: any RunningGuest) {
        _ = lock.withLock { domains.removeValue(forKey: domain.name) }
    }

    public var names: [String] { lock.withLock { domains.keys.sorted() } }

    /// Work an interruption does after the guests are gone (removing stage folders), by
    /// key so a long-lived process that runs many pipelines registers each once.
    public func onInterrupt(_ key: String, _ cleanup: @escaping @Sendable () -> Void) {
        lock.withLock { cleanups[key] = cleanup }
    }

    /// Destroys every registered domain and waits (bounded) until libvirt has removed
    /// them, so none is still listed when the process exits.
    public func destroyAll(timeout: TimeInterval = 10) {
        let all = lock.withLock { () -> [any RunningGuest] in
            defer { domains.removeAll() }
            return Array(domains.values)
        }
        all.forEach { $0.destroy() }
        let deadline = Date().addingTimeInterval(timeout)
        while all.contains(where: \.exists) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let left = all.filter(\.exists).map(\.name)
        writeToStandardError("destroyed \(all.count) guest(s)\(left.isEmpty ? "" : "; still listed: \(left.joined(separator: ", "))")\n")
    }

    /// What a stop signal does, short of exiting: no new guest starts, every running one
    /// is destroyed, then the cleanups run. Tests call it to interrupt a run in-process.
    public func interrupt(signal: Int32) {
        // A domain libvirt is creating right now is not registered yet.
        stopStarting(signal: signal)
        // Commands run in their own process groups, out of the terminal's reach: a build's
        // make and compilers are stopped here (after the interruption is marked, so the run
        // that sees its command die knows why).
        if self === ActiveDomains.shared { ProcessRunner.terminateRunning() }
        destroyAll()
        lock.withLock { Array(cleanups.values) }.forEach { $0() }
    }

    /// From the start of a run: SIGINT, SIGTERM and SIGHUP interrupt (guests destroyed,
    /// stage folders removed, the run left for --resume) and exit with 128 + the signal.
    /// SIGPIPE is swallowed: a closed terminal or pipe must not kill the run with its guests
    /// still running; writes to it fail and the run finishes, its results on disk.
    public func handleStopSignals() {
        lock.withLock {
            guard signalSources.isEmpty else { return }
            // Caught by a no-op, not SIG_IGN: an ignored signal stays ignored across exec,
            // and make, gcc and tar must still die of a broken pipe in their own pipelines.
            signal(SIGPIPE, swallowSignal)
            for signalNumber in Self.stopSignals {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { [weak self] in
                    writeToStandardError("\ninterrupted (\(Self.signalName(signalNumber))): destroying running guests\n")
                    self?.interrupt(signal: signalNumber)
                    exit(128 + signalNumber)
                }
                source.resume()
                signalSources.append(source)
            }
        }
    }

    /// For the main thread once a run returned interrupted: the handler thread exits the
    /// process when every guest is gone; returning first would leave them running.
    public func awaitInterruption(_ signal: Int32, timeout: TimeInterval = 120) -> Never {
        Thread.sleep(forTimeInterval: timeout)
        exit(128 + signal)
    }

    static func signalName(_ number: Int32) -> String {
        switch number {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(number)"
        }
    }
}

/// A handler that does nothing: the signal is survived, and exec resets it to default.
private func swallowSignal(_: Int32) {}

/// Writes to stderr without trapping when it is closed (SIGPIPE is ignored, so a write
/// to a closed pipe fails with EPIPE; FileHandle.write(_:) would crash on that).
public func writeToStandardError(_ text: String) {
    try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
}
