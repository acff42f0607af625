import Foundation

/// One entry of a newc cpio archive. Built in memory so nodes like /dev/console need no
/// root privileges and archives are byte-for-byte reproducible (fixed owners and times).
public struct CPIOEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case directory
        case file(Data)
        case characterDevice(major: UInt32, minor: UInt32)
    }

    public var path: String
    public var kind: Kind
    public var permissions: UInt32

    public init(path: String, kind: Kind, permissions: UInt32) {
        self.path = path
        self.kind = kind
        self.permissions = permissions
    }

    public static func directory(_ path: String) -> CPIOEntry {
        CPIOEntry(path: path, kind: .directory, permissions: 0o755)
    }

    public static func file(_ path: String, _ data: Data, executable: Bool = false) -> CPIOEntry {
        CPIOEntry(path: path, kind: .file(data), permissions: executable ? 0o755 : 0o644)
    }

    var modeBits: UInt32 {
        switch kind {
        case .directory: return 0o040000 | permissions
        case .file: return 0o100000 | permissions
        case .characterDevice: return 0o020000 | permissions
        }
    }

    /// `ls -l`-like line for listings and golden files.
    public var listingLine: String {
        let type: String, detail: String
        switch kind {
        case .directory: type = "d"; detail = "-"
        case .file(let data): type = "-"; detail = String(data.count)
        case .characterDevice(let major, let minor): type = "c"; detail = "\(major),\(minor)"
        }
        let rwx = (0..<3).reversed().map { shift -> String in
            let bits = (permissions >> (UInt32(shift) * 3)) & 7
            return (bits & 4 != 0 ? "r" : "-") + (bits & 2 != 0 ? "w" : "-") + (bits & 1 != 0 ? "x" : "-")
        }.joined()
        return "\(type)\(rwx) \(detail) \(path)"
    }
}

public enum CPIOArchive {
    /// Serialises entries in order as a newc ("070701") archive with its trailer.
    public static func newc(_ entries: [CPIOEntry]) -> Data {
        var archive = Data()
        for (index, entry) in entries.enumerated() {
            var contents = Data(), rdevMajor: UInt32 = 0, rdevMinor: UInt32 = 0
            switch entry.kind {
            case .file(let data): contents = data
            case .characterDevice(let major, let minor): (rdevMajor, rdevMinor) = (major, minor)
            case .directory: break
            }
            let name = entry.path.hasPrefix("/") ? String(entry.path.dropFirst()) : entry.path
            append(header: [UInt32(index + 1), entry.modeBits, 0, 0, entry.kind == .directory ? 2 : 1, 0,
                            UInt32(contents.count), 0, 0, rdevMajor, rdevMinor],
                   name: name, contents: contents, to: &archive)
        }
        append(header: [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], name: "TRAILER!!!", contents: Data(), to: &archive)
        return archive
    }

    /// The contents of the regular file at `path` in a newc archive this type wrote, or nil.
    /// For replayed guests, which read the plan a boot was given.
    public static func file(_ path: String, in archive: Data) -> Data? {
        let bytes = [UInt8](archive), want = path.hasPrefix("/") ? String(path.dropFirst()) : path
        var offset = 0
        func field(_ index: Int) -> Int? {
            let start = offset + 6 + index * 8
            guard start + 8 <= bytes.count else { return nil }
            return Int(String(decoding: bytes[start..<start + 8], as: UTF8.self), radix: 16)
        }
        func aligned(_ value: Int) -> Int { (value + 3) & ~3 }
        while offset + 110 <= bytes.count, bytes[offset..<offset + 6].elementsEqual("070701".utf8) {
            guard let size = field(6), let nameSize = field(11), nameSize > 0 else { return nil }
            let nameStart = offset + 110, dataStart = aligned(nameStart + nameSize)
            guard dataStart + size <= bytes.count else { return nil }
            let name = String(decoding: bytes[nameStart..<nameStart + nameSize - 1], as: UTF8.self)
            if name == "TRAILER!!!" { return nil }
            if name == want { return Data(bytes[dataStart..<dataStart + size]) }
            offset = aligned(dataStart + size)
        }
        return nil
    }

    private static func append(header fields: [UInt32], name: String, contents: Data, to archive: inout Data) {
        let nameBytes = Data(name.utf8) + Data([0])
        var header = "070701"
        for field in fields + [UInt32(nameBytes.count), 0] {
            header += String(format: "%08X", field)
        }
        archive.append(Data(header.utf8))
        archive.append(nameBytes)
        pad(&archive)
        archive.append(contents)
        pad(&archive)
    }

    private static func pad(_ data: inout Data) {
        let remainder = data.count % 4
        if remainder != 0 { data.append(Data(count: 4 - remainder)) }
    }
}
