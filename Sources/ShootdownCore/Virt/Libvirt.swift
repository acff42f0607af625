import CLibvirt
import Foundation

/// Owns one libvirt connection. libvirt handles are opaque C pointers; every call goes
/// through this class under a lock, and every handle it hands out is freed by it.
public final class LibvirtConnection: @unchecked Sendable {
    private let handle: OpaquePointer
    private let lock = NSLock()
    public let uri: String

    private static let setUp: Void = {
        // libvirt prints every error to stderr by default; we report them ourselves.
        virSetErrorFunc(nil) { _, _ in }
        // Keepalive needs an event loop; without one a hung daemon blocks every call forever.
        if virEventRegisterDefaultImpl() == 0 {
            let thread = Thread {
                while true { _ = virEventRunDefaultImpl() }
            }
            thread.name = "libvirt-events"
            thread.start()
        }
    }()

    /// How long opening a connection may take: a daemon that accepts but never answers
    /// (hung, or stopping) would otherwise block the run before it starts.
    public static let openTimeout: Duration = .seconds(15)
    /// Keepalive: a connection whose daemon misses this many 5 s probes is closed, and the
    /// call waiting on it fails instead of blocking forever.
    static let keepAlive = (interval: Int32(5), count: UInt32(3))

    public init(uri: String, timeout: Duration = LibvirtConnection.openTimeout) throws {
        _ = Self.setUp
        let opened = Self.open(uri, timeout: timeout)
        guard let handle = opened.handle else {
            throw ShootdownError.libvirt(operation: "connect to \(uri)",
                                         message: opened.error + " (is libvirtd running? sudo ci/setup-host starts it)")
        }
        _ = virConnectSetKeepAlive(handle, Self.keepAlive.interval, Self.keepAlive.count)
        self.handle = handle
        self.uri = uri
    }

    /// virConnectOpen on its own thread, bounded: a late success is closed again.
    private static func open(_ uri: String, timeout: Duration) -> (handle: OpaquePointer?, error: String) {
        final class Box: @unchecked Sendable {
            let lock = NSLock()
            var handle: OpaquePointer?
            var error = ""
            var abandoned = false
        }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let handle = virConnectOpen(uri)
            let error = handle == nil ? lastError() : ""
            let keep = box.lock.withLock { () -> Bool in
                box.handle = handle
                box.error = error
                return !box.abandoned
            }
            if !keep, let handle { virConnectClose(handle) }
            done.signal()
        }
        if done.wait(timeout: .now() + timeout.timeInterval) == .timedOut {
            let late = box.lock.withLock { () -> OpaquePointer? in
                box.abandoned = true
                return box.handle
            }
            if let late { return (late, "") }
            return (nil, "no answer within \(Int(timeout.seconds)) s (libvirtd hung or stopping?)")
        }
        return box.lock.withLock { (box.handle, box.error) }
    }

    /// False once the daemon went away (stopped, or missed its keepalives).
    public var isAlive: Bool {
        locked { virConnectIsAlive(handle) == 1 }
    }

    /// Throws the run-stopping error when the daemon went away: every guest call after
    /// that fails, and its failures must not be recorded as the guest's.
    func checkAlive() throws {
        guard isAlive else {
            throw ShootdownError.libvirt(operation: "connection to \(uri)",
                                         message: "lost: libvirtd stopped or stopped answering; start it again (sudo ci/setup-host)")
        }
    }

    deinit {
        virConnectClose(handle)
    }

    static func lastError() -> String {
        guard let message = virGetLastErrorMessage() else { return "unknown error" }
        return String(cString: message)
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Creates and starts a transient domain (gone from libvirt once it stops).
    public func startTransient(xml: String) throws -> LibvirtDomain {
        try locked {
            guard let domain = virDomainCreateXML(handle, xml, 0) else {
                throw ShootdownError.libvirt(operation: "domain start", message: Self.lastError())
            }
            let name = virDomainGetName(domain).map { String(cString: $0) } ?? "?"
            return LibvirtDomain(handle: domain, name: name, connection: self)
        }
    }

    /// Starts a transient domain from a saved state (virDomainSave), running, with `xml`
    /// for its definition: the saved one with host-side paths and the name changed.
    public func restoreTransient(from path: String, xml: String, name: String) throws -> LibvirtDomain {
        try locked {
            guard virDomainRestoreFlags(handle, path, xml, UInt32(VIR_DOMAIN_SAVE_RUNNING.rawValue)) == 0 else {
                throw ShootdownError.libvirt(operation: "domain restore from \(path)", message: Self.lastError())
            }
            guard let domain = virDomainLookupByName(handle, name) else {
                throw ShootdownError.libvirt(operation: "domain restore from \(path)", message: "no domain \(name) after the restore")
            }
            return LibvirtDomain(handle: domain, name: name, connection: self)
        }
    }

    /// Names of the domains, running or merely defined, whose names start with `prefix`.
    public func domainNames(prefix: String = "") throws -> [String] {
        try locked {
            var domains: UnsafeMutablePointer<virDomainPtr?>?
            let count = virConnectListAllDomains(handle, &domains, 0)
            guard count >= 0, let domains else {
                throw ShootdownError.libvirt(operation: "list domains", message: Self.lastError())
            }
            defer { free(domains) }
            var names: [String] = []
            for index in 0..<Int(count) {
                guard let domain = domains[index] else { continue }
                if let name = virDomainGetName(domain) { names.append(String(cString: name)) }
                virDomainFree(domain)
            }
            return names.filter { $0.hasPrefix(prefix) }.sorted()
        }
    }

    /// Destroys a running domain by name, if there is one (a leftover of a run killed
    /// with SIGKILL, whose cell is now started again). Returns whether one was found.
    @discardableResult
    public func destroyDomain(named name: String) -> Bool {
        locked {
            guard let domain = virDomainLookupByName(handle, name) else { return false }
            defer { virDomainFree(domain) }
            if virDomainIsActive(domain) == 1 { _ = virDomainDestroy(domain) }
            return true
        }
    }

    /// The owner a domain's metadata names, if it names one.
    func owner(ofDomain name: String) -> GuestOwner? {
        locked {
            guard let domain = virDomainLookupByName(handle, name) else { return nil }
            defer { virDomainFree(domain) }
            guard let xml = virDomainGetMetadata(domain, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue), GuestOwner.namespace, 0) else {
                return nil
            }
            defer { free(xml) }
            return GuestOwner(element: String(cString: xml))
        }
    }

    /// The hypervisor version QEMU reports through libvirt, e.g. "7.2.22".
    public func hypervisorVersion() -> String? {
        locked {
            var version: UInt = 0
            guard virConnectGetVersion(handle, &version) == 0 else { return nil }
            return "\(version / 1_000_000).\(version / 1_000 % 1_000).\(version % 1_000)"
        }
    }

    fileprivate func withDomain<T>(_ body: () throws -> T) rethrows -> T { try locked(body) }

    /// The raw handle under the connection's lock, for the storage extension.
    func withHandle<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try locked { try body(handle) }
    }

    /// Whether the hypervisor is on another machine (qemu+ssh://host/…, qemu+tls://…).
    public var isRemote: Bool {
        guard let components = URLComponents(string: uri) else { return false }
        return !(components.host ?? "").isEmpty
    }
}

/// A running (or finished) transient domain.
public final class LibvirtDomain: @unchecked Sendable {
    private var handle: OpaquePointer?
    public let name: String
    private let connection: LibvirtConnection

    fileprivate init(handle: OpaquePointer, name: String, connection: LibvirtConnection) {
        self.handle = handle
        self.name = name
        self.connection = connection
    }

    deinit {
        if let handle { virDomainFree(handle) }
    }

    /// False once the guest has stopped (a transient domain then no longer exists).
    public var isActive: Bool {
        connection.withDomain {
            guard let handle else { return false }
            return virDomainIsActive(handle) == 1
        }
    }

    /// Stops the guest at once; harmless when it has already stopped. Retries briefly:
    /// destroy can fail while another call holds the domain's job.
    public func destroy() {
        for _ in 0..<10 {
            let stopped = connection.withDomain { () -> Bool in
                guard let handle else { return true }
                return virDomainIsActive(handle) != 1 || virDomainDestroy(handle) == 0
            }
            if stopped { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    /// Saves the guest's memory and device state to `path` (a file libvirtd writes) and
    /// stops it; a transient domain is then gone.
    public func save(to path: String) throws {
        try connection.withDomain {
            guard let handle, virDomainSave(handle, path) == 0 else {
                throw ShootdownError.libvirt(operation: "domain save to \(path)", message: LibvirtConnection.lastError())
            }
        }
    }

    /// False once libvirt has removed the (transient) domain, which can come a little
    /// after destroy returns.
    public var exists: Bool {
        connection.withDomain {
            guard let handle else { return false }
            var state: Int32 = 0, reason: Int32 = 0
            return virDomainGetState(handle, &state, &reason, 0) == 0
        }
    }

    /// Polls until the guest stops or the deadline passes; true when it stopped by itself.
    public func waitForShutdown(deadline: ContinuousClock.Instant, poll: Duration = .milliseconds(50)) -> Bool {
        while isActive {
            if ContinuousClock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: poll.timeInterval)
        }
        return true
    }
}
