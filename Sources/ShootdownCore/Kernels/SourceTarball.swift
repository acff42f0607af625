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
        // The marker inside the tree arrives with the tree's one rename; the one beside it
        // is what older versions wrote after theirs.
        let inner = ".shootdown-complete"
        func isComplete(_ url: URL) -> Bool {
            FileManager.default.fileExists(atPath: url.appendingPathComponent(inner).path)
                || FileManager.default.fileExists(atPath: root.appendingPathComponent(".\(name).complete").path)
        }
        if isComplete(tree) { return tree }
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
        _ = FileManager.default.createFile(atPath: unpacked.appendingPathComponent(inner).path, contents: nil)
        // A complete tree another run unpacked meanwhile stays: it may be building from it.
        return try publishDirectory(unpacked, at: tree, isComplete: isComplete)
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
