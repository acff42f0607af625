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
        try FileManager.default.makeDirectory(root)
        try? FileManager.default.removeItem(at: tree)
        try context.runner.check(Command("tar", ["-xJf", tarball.path], workingDirectory: root.path))
        guard FileManager.default.fileExists(atPath: tree.appendingPathComponent("Makefile").path) else {
            throw ShootdownError.io(path: tarball.path, message: "did not unpack into \(tree.path)")
        }
        FileManager.default.createFile(atPath: marker.path, contents: nil)
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
