import Foundation

/// Errors a user can act on: each says what failed and what to do.
public enum ShootdownError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case usage(String)
    case toolMissing(tool: String, hint: String)
    case commandFailed(command: String, status: Int32, output: String)
    case commandTimedOut(command: String, seconds: Double)
    case commandKilled(command: String, signal: Int32, output: String)
    case kernelNotFound(spec: String, available: [String])
    case kernelUnusable(spec: String, reason: String)
    case unknownTest(String, available: [String])
    case invalidParameter(test: String, message: String)
    case templateInvalid(path: String, message: String)
    case libvirt(operation: String, message: String)
    case io(path: String, message: String)
    case specInvalid(location: String, message: String)

    public var description: String {
        switch self {
        case .usage(let message):
            return message
        case .toolMissing(let tool, let hint):
            return "\(tool) is not available (\(hint)); run `sudo ci/setup-host` or `shootdown doctor`"
        case .commandFailed(let command, let status, let output):
            return "`\(command)` exited with status \(status)" + (output.isEmpty ? "" : ":\n\(output)")
        case .commandTimedOut(let command, let seconds):
            return "`\(command)` did not finish within \(Int(seconds)) s; its process group was killed"
        case .commandKilled(let command, let signal, let output):
            return "`\(command)` \(Termination.signaled(signal))" + (output.isEmpty ? "" : ":\n\(output)")
        case .kernelNotFound(let spec, let available):
            let list = available.isEmpty ? "none found: run `apt-get update`" : available.joined(separator: ", ")
            return "kernel \(spec) not found; available: \(list) (shootdown kernels list)"
        case .kernelUnusable(let spec, let reason):
            return "kernel \(spec) cannot be used: \(reason)"
        case .unknownTest(let name, let available):
            return "unknown test '\(name)'; available: \(available.joined(separator: ", ")) (shootdown generate --list)"
        case .invalidParameter(let test, let message):
            return "\(test): \(message) (shootdown generate --describe \(test))"
        case .templateInvalid(let path, let message):
            return "template \(path): \(message)"
        case .libvirt(let operation, let message):
            return "libvirt \(operation) failed: \(message)"
        case .io(let path, let message):
            return "\(path): \(message)"
        case .specInvalid(let location, let message):
            return "\(location): \(message)"
        }
    }

    public var errorDescription: String? { description }
}

/// A command-line choice by its name, in any case: `--status FAIL` and `--status fail`,
/// `--accel TCG` and `--accel tcg` alike; anything else names the choices.
public func parseChoice<T: RawRepresentable & CaseIterable>(_ text: String, as type: T.Type, option: String) throws -> T
    where T.RawValue == String {
    guard let value = T.allCases.first(where: { $0.rawValue.lowercased() == text.lowercased() }) else {
        throw ShootdownError.usage("\(option) \(text): use one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return value
}
