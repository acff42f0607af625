import Foundation

/// A kernel source tarball (Debian's linux-source-*.tar.xz) unpacked once into the cache.
public struct SourceTarball: Sendable {
    public let tarball: URL
    let context: ToolContext

    public init(tarball: URL, context: ToolContext) {
        self.tarball = tarball
        self.context = context
    }

    /// The unpacked tree (`<cache>/sources/linux-source-6.12`), unpacking it on first use.
    /// Callers that modify a tree work on a `cp -al` copy, never on this one.
    public func tree() throws -> URL {
        let name = tarball.lastPathComponent.replacingOccurrences(of: ".tar.xz", with: "")
        let root = context.paths.cache.appendingPathComponent("sources")
        let tree = root.appendingPathComponent(name)
        let marker = root.appendingPathComponent(".\(name).complete")
        if FileManager.default.fileExists(atPath: marker.path) { return tree }
        context.log("sources: unpacking \(tarball.path) (once)")
        // Unpack beside the final place and rename: a tree another process is building
        // from is never deleted or half-written under it.
        let partial = root.appendingPathComponent(".unpack-\(UUID().uuidString)")
        try FileManager.default.makeDirectory(partial)
        defer { try? FileManager.default.removeItem(at: partial) }
        try context.runner.check(Command("tar", ["-xJf", tarball.path], workingDirectory: partial.path))
        let unpacked = partial.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: unpacked.appendingPathComponent("Makefile").path) else {
            throw ShootdownError.io(path: tarball.path, message: "did not unpack into \(name)/")
        }
        if FileManager.default.fileExists(atPath: tree.path) {
            try FileManager.default.moveItem(at: tree, to: partial.appendingPathComponent("stale"))
        }
        try FileManager.default.moveItem(at: unpacked, to: tree)
        _ = FileManager.default.createFile(atPath: marker.path, contents: nil)
        return tree
    }

    /// A writable copy that shares file contents with the cached tree (hard links);
    /// tools that rewrite files (patch, make) replace them instead of editing in place.
    public func scratchCopy(at destination: URL) throws -> URL {
        let source = try tree()
        try? FileManager.default.removeItem(at: destination)
        try FileManager.default.makeDirectory(destination.deletingLastPathComponent())
        try context.runner.check(Command("cp", ["-al", source.path, destination.path]))
        return destination
    }
}
