import Foundation

/// One external program invocation (gcc, apt-get, dpkg, ...), described once so that
/// every call looks alike, can be printed as a reproducer and swapped in tests.
public struct Command: Sendable, Equatable, CustomStringConvertible {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?

    public init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
                workingDirectory: String? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
    }

    /// A shell line that runs the same command.
    public var description: String {
        let env = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\(shellQuoted($0.value))" }
        let line = (env + [executable] + arguments.map(shellQuoted)).joined(separator: " ")
        if let workingDirectory { return "(cd \(shellQuoted(workingDirectory)) && \(line))" }
        return line
    }
}

public struct CommandOutput: Sendable, Equatable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String = "", stderr: String = "") {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }

    public var succeeded: Bool { status == 0 }
}

public protocol CommandRunning: Sendable {
    /// Runs to completion; throws only when the program cannot be started or times out.
    func run(_ command: Command, timeout: Duration?) throws -> CommandOutput
}

extension CommandRunning {
    public func run(_ command: Command) throws -> CommandOutput {
        try run(command, timeout: nil)
    }

    /// Runs and throws `ShootdownError.commandFailed` with the output tail on a non-zero exit.
    @discardableResult
    public func check(_ command: Command, timeout: Duration? = nil) throws -> CommandOutput {
        let output = try run(command, timeout: timeout)
        guard output.succeeded else {
            throw ShootdownError.commandFailed(command: command.description, status: output.status,
                                               output: tail(output.stderr.isEmpty ? output.stdout : output.stderr))
        }
        return output
    }

    /// Whether a program is on PATH.
    public func which(_ program: String) -> String? {
        guard let output = try? run(Command("/bin/sh", ["-c", "command -v \(shellQuoted(program))"])),
              output.succeeded else { return nil }
        let path = output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return path.isEmpty ? nil : path
    }
}

/// Runs programs with Foundation.Process. Output goes to temporary files rather than
/// pipes: a pipe that fills before the parent reads it deadlocks Process.
public struct ProcessRunner: CommandRunning {
    public init() {}

    public func run(_ command: Command, timeout: Duration?) throws -> CommandOutput {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("shootdown-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("out"), errURL = scratch.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let outHandle = try FileHandle(forWritingTo: outURL), errHandle = try FileHandle(forWritingTo: errURL)
        defer { try? outHandle.close(); try? errHandle.close() }

        let process = Process()
        if command.executable.contains("/") {
            process.executableURL = URL(fileURLWithPath: command.executable)
            process.arguments = command.arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [command.executable] + command.arguments
        }
        if !command.environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(command.environment) { $1 }
        }
        if let directory = command.workingDirectory {
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = outHandle
        process.standardError = errHandle

        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            throw ShootdownError.toolMissing(tool: command.executable, hint: "\(error.localizedDescription)")
        }
        if let timeout {
            if finished.wait(timeout: .now() + timeout.timeInterval) == .timedOut {
                process.terminate()
                finished.wait()
                throw ShootdownError.commandTimedOut(command: command.description, seconds: timeout.seconds)
            }
        } else {
            finished.wait()
        }
        let stdout = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return CommandOutput(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }
}

/// Quotes a word for POSIX sh when it needs it.
public func shellQuoted(_ word: String) -> String {
    let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
    if !word.isEmpty && word.unicodeScalars.allSatisfy(safe.contains) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// The last lines of a text, for error messages.
public func tail(_ text: String, lines count: Int = 20) -> String {
    text.lines(omittingEmpty: false).suffix(count).joined(separator: "\n")
}

extension Duration {
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }

    public var seconds: Double { timeInterval }
}

extension StringProtocol {
    /// Lines split at any newline, CRLF included: a serial console writes CRLF, and Swift
    /// treats "\r\n" as one Character, which a split at "\n" never finds.
    public func lines(omittingEmpty: Bool = true) -> [SubSequence] {
        // A closure, not the key path \.isNewline: key-path reads dominate debug builds.
        split(omittingEmptySubsequences: omittingEmpty, whereSeparator: { $0.isNewline })
    }
}
