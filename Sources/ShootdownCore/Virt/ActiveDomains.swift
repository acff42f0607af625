import Foundation

/// Every domain this process started and has not seen stop, so an interruption
/// (Ctrl-C, SIGTERM) can destroy them all before the process exits.
public final class ActiveDomains: @unchecked Sendable {
    public static let shared = ActiveDomains()

    private let lock = NSLock()
    private var domains: [String: LibvirtDomain] = [:]
    private var signalSources: [DispatchSourceSignal] = []
    /// Domain starts in flight: created by libvirt but not registered yet.
    private var starting = 0
    private var interrupted = false

    /// True once Ctrl-C (or SIGTERM) began: guests then die by our hand, so what they
    /// produced is no result and must not be recorded.
    public var isInterrupted: Bool { lock.withLock { interrupted } }

    /// Call before creating a domain; false once an interruption began (start nothing).
    public func beginStart() -> Bool {
        lock.withLock {
            guard !interrupted else { return false }
            starting += 1
            return true
        }
    }

    /// Call after the creation attempt. A domain that came up while an interruption was
    /// under way is destroyed at once, and counts as in flight until libvirt has removed
    /// it, so the interrupted process does not exit while it is still listed.
    public func endStart(_ domain: LibvirtDomain?) {
        let destroyNow = lock.withLock { () -> Bool in
            guard let domain, interrupted else {
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
    func stopStarting(timeout: TimeInterval = 30) {
        lock.withLock { interrupted = true }
        let deadline = Date().addingTimeInterval(timeout)
        while lock.withLock({ starting > 0 }) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }

    public func unregister(_ domain: LibvirtDomain) {
        _ = lock.withLock { domains.removeValue(forKey: domain.name) }
    }

    public var names: [String] { lock.withLock { domains.keys.sorted() } }

    /// Destroys every registered domain and waits (bounded) until libvirt has removed
    /// them, so none is still listed when the process exits.
    public func destroyAll(timeout: TimeInterval = 10) {
        let all = lock.withLock { () -> [LibvirtDomain] in
            defer { domains.removeAll() }
            return Array(domains.values)
        }
        all.forEach { $0.destroy() }
        let deadline = Date().addingTimeInterval(timeout)
        while all.contains(where: \.exists) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let left = all.filter(\.exists).map(\.name)
        FileHandle.standardError.write(Data("destroyed \(all.count) guest(s)\(left.isEmpty ? "" : "; still listed: \(left.joined(separator: ", "))")\n".utf8))
    }

    /// On SIGINT/SIGTERM: destroy every registered domain, run `cleanup`, exit 130.
    public func destroyOnInterrupt(cleanup: @escaping @Sendable () -> Void = {}) {
        lock.withLock {
            guard signalSources.isEmpty else { return }
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { [weak self] in
                    FileHandle.standardError.write(Data("\ninterrupted: destroying running guests\n".utf8))
                    // A domain libvirt is creating right now is not registered yet.
                    self?.stopStarting()
                    self?.destroyAll()
                    cleanup()
                    exit(130)
                }
                source.resume()
                signalSources.append(source)
            }
        }
    }
}
