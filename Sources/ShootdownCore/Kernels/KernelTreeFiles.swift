import Foundation

/// Reads files of a kernel source tree: a directory, or a source tarball such as
/// Debian's /usr/src/linux-source-6.12.tar.xz (read in place, nothing extracted).
public struct KernelTreeFiles: Sendable {
    public let location: URL
    let runner: any CommandRunning

    public init(location: URL, runner: any CommandRunning) {
        self.location = location
        self.runner = runner
    }

    /// The newest Debian linux-source tarball, if one is installed.
    public static func debianSourceTarball() -> URL? {
        let directory = URL(fileURLWithPath: "/usr/src")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasPrefix("linux-source-") && $0.hasSuffix(".tar.xz") }
            .sorted { DebianKernelPackage.versionKey($0).lexicographicallyPrecedes(DebianKernelPackage.versionKey($1)) }
            .last.map { directory.appendingPathComponent($0) }
    }

    public func read(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: location.path, isDirectory: &isDirectory) else {
            throw ShootdownError.io(path: location.path, message: "no such kernel tree or tarball")
        }
        if isDirectory.boolValue {
            let url = location.appendingPathComponent(path)
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw ShootdownError.io(path: url.path, message: "missing: is \(location.path) a kernel source tree?")
            }
            return text
        }
        let output = try runner.check(Command("tar", ["-xJOf", location.path, "--wildcards", "--no-anchored", "*/\(path)"]))
        guard !output.stdout.isEmpty else {
            throw ShootdownError.io(path: location.path, message: "\(path) is not in this tarball")
        }
        return output.stdout
    }
}
