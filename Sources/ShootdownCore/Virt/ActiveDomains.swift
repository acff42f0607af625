import Foundation

/// Every domain this process started and has not seen stop, so an interruption
/// (Ctrl-C, SIGTERM) can destroy them all before the process exits.
public final class ActiveDomains: @unchecked Sendable {
    public static let shared = ActiveDomains()

    private let lock = NSLock()
    private var domains: [String: LibvirtDomain] = [:]
    private var signalSources: [DispatchSourceSignal] = []

    public func register(_ domain: LibvirtDomain) {
        lock.withLock { domains[domain.name] = domain }
    }

    public func unregister(_ domain: LibvirtDomain) {
        _ = lock.withLock { domains.removeValue(forKey: domain.name) }
    }

    public var names: [String] { lock.withLock { domains.keys.sorted() } }

    public func destroyAll() {
        let all = lock.withLock { () -> [LibvirtDomain] in
            defer { domains.removeAll() }
            return Array(domains.values)
        }
        all.forEach { $0.destroy() }
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
