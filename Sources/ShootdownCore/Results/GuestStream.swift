import Foundation

/// Bounded reading of what a guest wrote (console, records). A guest can write without
/// end, so the host keeps a head and a tail of each stream and puts one marker line
/// where it cut: the final records and a late splat sit in the tail, and every reader
/// (records parser, verdict, the saved console.log) sees that the stream is incomplete.
/// A guest that prints the marker itself only makes its own cell an ERROR.
public enum GuestStream {
    public static let truncationMarker = "@@SHOOTDOWN-HOST-TRUNCATED@@"

    /// The share of the limit kept from the end of the stream.
    static func tailBytes(limit: Int) -> Int { limit / 4 }

    /// At most about `limit` bytes of a file: the whole file, or its head and tail around
    /// a marker line. Cuts are made at line ends so no record line is split.
    public static func read(path: String, limit: Int) -> Data {
        guard let handle = FileHandle(forReadingAtPath: path) else { return Data() }
        defer { try? handle.close() }
        guard let end = try? handle.seekToEnd(), (try? handle.seek(toOffset: 0)) != nil else { return Data() }
        let size = Int(clamping: end)
        if size <= limit { return (try? handle.read(upToCount: size)) ?? Data() }
        let tailLength = tailBytes(limit: limit)
        let head = (try? handle.read(upToCount: limit - tailLength)) ?? Data()
        guard (try? handle.seek(toOffset: UInt64(size - tailLength))) != nil else { return truncated(head: head, tail: Data(), size: size) }
        let tail = (try? handle.read(upToCount: tailLength)) ?? Data()
        return truncated(head: head, tail: tail, size: size)
    }

    /// The same bound on a stream already read, of which `data` may be only the start
    /// (`complete: false`: the reader stopped at its limit and the size is unknown).
    public static func bounded(_ data: Data, limit: Int, complete: Bool = true) -> Data {
        if data.count <= limit && complete { return data }
        if !complete {
            return truncated(head: data.prefix(limit), tail: Data(), size: nil)
        }
        let tailLength = tailBytes(limit: limit)
        return truncated(head: data.prefix(limit - tailLength), tail: data.suffix(tailLength), size: data.count)
    }

    /// Head up to its last newline, the marker line, tail from after its first newline.
    static func truncated(head: Data, tail: Data, size: Int?) -> Data {
        let newline = UInt8(ascii: "\n")
        let keptHead = head.lastIndex(of: newline).map { head[...$0] } ?? Data()
        let keptTail = tail.firstIndex(of: newline).map { tail[tail.index(after: $0)...] } ?? Data()
        var out = Data(keptHead)
        let skipped = size.map { "\($0 - keptHead.count - keptTail.count)" } ?? "unknown"
        out.append(contentsOf: "\(truncationMarker) skipped=\(skipped) size=\(size.map(String.init) ?? "unknown")\n".utf8)
        out.append(keptTail)
        return out
    }

    /// What the marker says, if the stream holds one at a line start.
    public static func truncation(in text: String) -> Truncation? {
        var text = text
        return text.withUTF8 { bytes in truncation(in: UnsafeRawBufferPointer(bytes)) }
    }

    public static func truncation(in data: Data) -> Truncation? {
        data.withUnsafeBytes { truncation(in: $0) }
    }

    /// The marker at the start of a line; memchr for its first byte keeps a 64 MiB
    /// stream cheap.
    static func truncation(in bytes: UnsafeRawBufferPointer) -> Truncation? {
        guard let base = bytes.baseAddress else { return nil }
        let marker = Array(truncationMarker.utf8)
        var offset = 0
        while offset < bytes.count {
            guard let hit = memchr(base + offset, Int32(marker[0]), bytes.count - offset) else { return nil }
            let start = base.distance(to: UnsafeRawPointer(hit))
            if start == 0 || bytes[start - 1] == UInt8(ascii: "\n"),
               UnsafeRawBufferPointer(rebasing: bytes[start...]).starts(with: marker) {
                let end = memchr(hit, Int32(UInt8(ascii: "\n")), bytes.count - start).map { base.distance(to: UnsafeRawPointer($0)) } ?? bytes.count
                return Truncation(line: Substring(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
            }
            offset = start + 1
        }
        return nil
    }

    /// The number of non-empty-terminated lines, as `forEachLine` would number them.
    static func countLines(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
        var lines = 0, offset = 0
        while offset < bytes.count, let newline = memchr(base + offset, Int32(UInt8(ascii: "\n")), bytes.count - offset) {
            lines += 1
            offset = base.distance(to: UnsafeRawPointer(newline)) + 1
        }
        return lines + (offset < bytes.count ? 1 : 0)
    }

    /// Calls `body` with each line (without its "\n" and a trailing "\r"), its 1-based
    /// number and whether a "\n" ended it, in one pass; `body` returns false to stop. memchr keeps a stream of
    /// millions of short lines cheap.
    static func forEachLine(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, Int, Bool) -> Bool) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        var offset = 0, number = 0
        while offset <= bytes.count {
            let rest = bytes.count - offset
            let newline = rest > 0 ? memchr(base + offset, Int32(UInt8(ascii: "\n")), rest) : nil
            let end = newline.map { base.distance(to: UnsafeRawPointer($0)) } ?? bytes.count
            var lineEnd = end
            if lineEnd > offset && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            number += 1
            // A final line is only a line if it holds something (no "\n" after the last one).
            if newline != nil || end > offset {
                if !body(UnsafeRawBufferPointer(rebasing: bytes[offset..<lineEnd]), number, newline != nil) { return }
            }
            guard newline != nil else { return }
            offset = end + 1
        }
    }

    public struct Truncation: Sendable, Equatable {
        /// Bytes the host did not read; nil when unknown.
        public var skippedBytes: Int?

        init(line: Substring) {
            let field = line.split(separator: " ").first { $0.hasPrefix("skipped=") }
            skippedBytes = field.flatMap { Int($0.dropFirst("skipped=".count)) }.flatMap { $0 >= 0 ? $0 : nil }
        }

        init(skippedBytes: Int?) { self.skippedBytes = skippedBytes }

        public var summary: String {
            skippedBytes.map { "\(ByteCount.describe($0)) in the middle were not read" } ?? "the rest was not read"
        }
    }
}

enum ByteCount {
    static func describe(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? String(format: "%.1f MiB", Double(bytes) / Double(1 << 20)) : "\(bytes) bytes"
    }
}
