import Foundation
import Testing

/// Reference-file comparison in the swift-openapi-generator manner: the expected text is
/// a committed file; a mismatch prints a unified diff. SHOOTDOWN_UPDATE_GOLDEN=1 rewrites
/// the references instead (review the git diff before committing it).
enum GoldenFile {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    static func check(_ actual: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let url = directory.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["SHOOTDOWN_UPDATE_GOLDEN"] == "1" {
            try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? actual.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
            Issue.record("missing golden file \(name); run with SHOOTDOWN_UPDATE_GOLDEN=1 to create it", sourceLocation: sourceLocation)
            return
        }
        if expected != actual {
            Issue.record("\(name) differs from its golden file:\n\(diff(expected: url, actual: actual))", sourceLocation: sourceLocation)
        }
    }

    static func diff(expected: URL, actual: String) -> String {
        let actualURL = FileManager.default.temporaryDirectory.appendingPathComponent("actual-\(UUID().uuidString)-\(expected.lastPathComponent)")
        try? actual.write(to: actualURL, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: actualURL) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/diff")
        process.arguments = ["-u", expected.path, actualURL.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try? process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

/// Captured real samples under Fixtures/.
enum Fixture {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func text(_ name: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
    }
}

/// The repository root, for templates and agent sources.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
