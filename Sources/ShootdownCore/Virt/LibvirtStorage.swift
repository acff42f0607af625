import CLibvirt
import Foundation
import XMLSupport

/// Guest files through libvirt's storage API: a `dir` pool on the hypervisor host, files
/// uploaded and downloaded as volumes over libvirt streams. Works over any transport
/// (qemu+ssh, qemu+tls), so remote hosts need nothing but libvirtd.
extension LibvirtConnection {
    public static let poolName = "shootdown"
    public static let poolPath = "/var/lib/libvirt/shootdown-volumes"

    /// The pool (started, built if needed); returns its target folder on the host.
    func ensurePool() throws -> String {
        try withHandle { handle in
            if let pool = virStoragePoolLookupByName(handle, Self.poolName) {
                defer { virStoragePoolFree(pool) }
                if virStoragePoolIsActive(pool) != 1 && virStoragePoolCreate(pool, 0) != 0 {
                    throw ShootdownError.libvirt(operation: "start pool \(Self.poolName)", message: Self.lastError())
                }
                return Self.poolPath
            }
            var pool = XMLElement("pool", [("type", "dir")])
            pool.append(XMLElement("name", text: Self.poolName))
            var target = XMLElement("target")
            target.append(XMLElement("path", text: Self.poolPath))
            pool.append(target)
            let xml = try pool.serialized()
            guard let created = virStoragePoolCreateXML(handle, xml, UInt32(VIR_STORAGE_POOL_CREATE_WITH_BUILD.rawValue)) else {
                throw ShootdownError.libvirt(operation: "create pool \(Self.poolName) at \(Self.poolPath)", message: Self.lastError())
            }
            virStoragePoolFree(created)
            return Self.poolPath
        }
    }

    private func withPool<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        try withHandle { handle in
            guard let pool = virStoragePoolLookupByName(handle, Self.poolName) else {
                throw ShootdownError.libvirt(operation: "find pool \(Self.poolName)", message: Self.lastError())
            }
            defer { virStoragePoolFree(pool) }
            return try body(pool)
        }
    }

    /// Creates (replacing) a raw volume with these contents and mode; returns its path.
    @discardableResult
    func uploadVolume(name: String, data: Data, mode: String) throws -> String {
        deleteVolume(name: name)
        return try withPool { pool in
            var volume = XMLElement("volume")
            volume.append(XMLElement("name", text: name))
            volume.append(XMLElement("capacity", [("unit", "bytes")], text: String(data.count)))
            var target = XMLElement("target")
            target.append(XMLElement("format", [("type", "raw")]))
            var permissions = XMLElement("permissions")
            permissions.append(XMLElement("mode", text: mode))
            target.append(permissions)
            volume.append(target)
            let xml = try volume.serialized()
            guard let created = virStorageVolCreateXML(pool, xml, 0) else {
                throw ShootdownError.libvirt(operation: "create volume \(name)", message: Self.lastError())
            }
            defer { virStorageVolFree(created) }
            if !data.isEmpty {
                guard let stream = virStreamNew(virStorageVolGetConnect(created), 0) else {
                    throw ShootdownError.libvirt(operation: "open a stream", message: Self.lastError())
                }
                defer { virStreamFree(stream) }
                guard virStorageVolUpload(created, stream, 0, UInt64(data.count), 0) == 0 else {
                    throw ShootdownError.libvirt(operation: "upload \(name)", message: Self.lastError())
                }
                try data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
                    var offset = 0
                    while offset < buffer.count {
                        let chunk = min(256 << 10, buffer.count - offset)
                        let sent = virStreamSend(stream, buffer.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self), chunk)
                        guard sent > 0 else {
                            virStreamAbort(stream)
                            throw ShootdownError.libvirt(operation: "upload \(name)", message: Self.lastError())
                        }
                        offset += Int(sent)
                    }
                }
                guard virStreamFinish(stream) == 0 else {
                    throw ShootdownError.libvirt(operation: "finish uploading \(name)", message: Self.lastError())
                }
            }
            guard let path = virStorageVolGetPath(created) else {
                throw ShootdownError.libvirt(operation: "path of \(name)", message: Self.lastError())
            }
            defer { free(path) }
            return String(cString: path)
        }
    }

    /// At most `limit` bytes of a volume; empty when it does not exist.
    func downloadVolume(name: String, limit: Int) -> Data {
        (try? withPool { pool -> Data in
            _ = virStoragePoolRefresh(pool, 0)
            guard let volume = virStorageVolLookupByName(pool, name) else { return Data() }
            defer { virStorageVolFree(volume) }
            guard let stream = virStreamNew(virStorageVolGetConnect(volume), 0) else { return Data() }
            defer { virStreamFree(stream) }
            guard virStorageVolDownload(volume, stream, 0, 0, 0) == 0 else { return Data() }
            var data = Data()
            var buffer = [CChar](repeating: 0, count: 256 << 10)
            while data.count < limit {
                let received = virStreamRecv(stream, &buffer, buffer.count)
                if received <= 0 { break }
                buffer.withUnsafeBytes { data.append(contentsOf: $0.prefix(Int(received))) }
            }
            if data.count >= limit { virStreamAbort(stream) } else { _ = virStreamFinish(stream) }
            return data.count > limit ? data.prefix(limit) : data
        }) ?? Data()
    }

    func deleteVolume(name: String) {
        _ = try? withPool { pool in
            if let volume = virStorageVolLookupByName(pool, name) {
                _ = virStorageVolDelete(volume, 0)
                virStorageVolFree(volume)
            }
        }
    }

    /// The hypervisor host's default QEMU for an arch (a remote host's path is not ours).
    func defaultEmulator(arch: Arch, virtType: String) -> String? {
        withHandle { handle -> String? in
            guard let xml = virConnectGetDomainCapabilities(handle, nil, arch.rawValue, arch.machine, virtType, 0) else { return nil }
            defer { free(xml) }
            let text = String(cString: xml)
            guard let open = text.range(of: "<path>"), let close = text.range(of: "</path>", range: open.upperBound..<text.endIndex) else {
                return nil
            }
            return String(text[open.upperBound..<close.lowerBound])
        }
    }
}
