import Foundation

/// Compiles guest programs (the agent and rendered tests) into static binaries for an
/// arch, caching them by content so an unchanged program is never rebuilt.
public struct ProgramBuilder: Sendable {
    /// Warnings are errors: a template that warns is a template bug.
    public static let flags = ["-static", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-pthread"]

    let context: ToolContext

    public init(context: ToolContext) {
        self.context = context
    }

    /// Returns the path of the static binary built from `source`.
    public func build(source: String, name: String, arch: Arch) throws -> URL {
        let key = ContentHash.of(source, arch.compiler, Self.flags.joined(separator: " "))
        let directory = context.paths.cache.appendingPathComponent("programs/\(arch)")
        let binary = directory.appendingPathComponent("\(name)-\(key)")
        if FileManager.default.isExecutableFile(atPath: binary.path) { return binary }

        try FileManager.default.makeDirectory(directory)
        let sourceURL = directory.appendingPathComponent("\(name)-\(key).c")
        try writeAtomically(source, to: sourceURL)
        guard context.runner.which(arch.compiler) != nil else {
            throw ShootdownError.toolMissing(tool: arch.compiler, hint: "the \(arch) cross compiler; apt-get install \(arch == .x86_64 ? "gcc" : "gcc-aarch64-linux-gnu libc6-dev-arm64-cross")")
        }
        // A name of its own per build, renamed over the final one: two runs compiling the
        // same program both succeed, and a reader sees a whole binary or none. The key says
        // both have the same content, so the last rename winning is harmless.
        let partial = directory.appendingPathComponent(".\(name)-\(key).\(UUID().uuidString).partial")
        defer { unlink(partial.path) }
        let output = try context.runner.run(Command(arch.compiler, Self.flags + ["-o", partial.path, sourceURL.path]))
        guard output.succeeded else {
            throw ShootdownError.commandFailed(command: "\(arch.compiler) … \(sourceURL.path)", status: output.status,
                                               output: tail(output.stderr, lines: 30))
        }
        guard rename(partial.path, binary.path) == 0 else {
            throw ShootdownError.io(path: binary.path, message: String(cString: strerror(errno)))
        }
        return binary
    }
}
