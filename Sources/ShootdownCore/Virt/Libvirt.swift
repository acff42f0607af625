import CLibvirt
import Foundation

/// Owns one libvirt connection. libvirt handles are opaque C pointers; every call goes
/// through this class under a lock, and every handle it hands out is freed by it.
public final class LibvirtConnection: @unchecked Sendable {
    private let handle: OpaquePointer
    private let lock = NSLock()
    public let uri: String

    private static let silenceDefaultErrorPrinter: Void = {
        // libvirt prints every error to stderr by default; we report them ourselves.
        virSetErrorFunc(nil) { _, _ in }
    }()

    public init(uri: String) throws {
        _ = Self.silenceDefaultErrorPrinter
        guard let handle = virConnectOpen(uri) else {
            throw ShootdownError.libvirt(operation: "connect to \(uri)",
                                         message: Self.lastError() + " (is libvirtd running? sudo ci/setup-host starts it)")
        }
        self.handle = handle
        self.uri = uri
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

    /// The hypervisor version QEMU reports through libvirt, e.g. "7.2.22".
    public func hypervisorVersion() -> String? {
        locked {
            var version: UInt = 0
            guard virConnectGetVersion(handle, &version) == 0 else { return nil }
            return "\(version / 1_000_000).\(version / 1_000 % 1_000).\(version % 1_000)"
        }
    }

    fileprivate func withDomain<T>(_ body: () -> T) -> T { locked(body) }

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
