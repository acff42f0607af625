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

/// How a program ended: its own exit, or a signal (a crash, the OOM killer, our teardown).
/// A shell reports a signal as 128+N; keeping the two apart tells "make failed" from
/// "make was killed".
public enum Termination: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exited with status \(code)"
        case .signaled(let signal): return "was killed by signal \(signal) (\(signalName(signal)))"
        }
    }
}

public struct CommandOutput: Sendable, Equatable {
    public var termination: Termination
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String = "", stderr: String = "") {
        self.init(termination: .exited(status), stdout: stdout, stderr: stderr)
    }

    public init(termination: Termination, stdout: String = "", stderr: String = "") {
        self.termination = termination
        self.stdout = stdout
        self.stderr = stderr
    }

    /// The exit status, or 128+N for a signal as a shell reports it (for messages and
    /// callers that only compare with 0; `termination` tells the two apart).
    public var status: Int32 {
        get {
            switch termination {
            case .exited(let code): return code
            case .signaled(let signal): return 128 + signal
            }
        }
        set { termination = .exited(newValue) }
    }

    public var succeeded: Bool { termination == .exited(0) }
}

public protocol CommandRunning: Sendable {
    /// Runs to completion; throws only when the program cannot be started or times out.
    /// A nil timeout means the default for that kind of command (`CommandTimeouts`), never
    /// "unbounded".
    func run(_ command: Command, timeout: Duration?) throws -> CommandOutput
}

extension CommandRunning {
    public func run(_ command: Command) throws -> CommandOutput {
        try run(command, timeout: nil)
    }

    /// Runs and throws `ShootdownError.commandFailed` (non-zero exit) or `.commandKilled`
    /// (a signal) with the output tail.
    @discardableResult
    public func check(_ command: Command, timeout: Duration? = nil) throws -> CommandOutput {
        let output = try run(command, timeout: timeout)
        let text = tail(output.stderr.isEmpty ? output.stdout : output.stderr)
        switch output.termination {
        case .exited(0):
            return output
        case .exited(let code):
            throw ShootdownError.commandFailed(command: command.description, status: code, output: text)
        case .signaled(let signal):
            throw ShootdownError.commandKilled(command: command.description, signal: signal, output: text)
        }
    }

    /// Whether a program is on PATH.
    public func which(_ program: String) -> String? {
        guard let output = try? run(Command("/bin/sh", ["-c", "command -v \(shellQuoted(program))"])),
              output.succeeded else { return nil }
        let path = output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return path.isEmpty ? nil : path
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
