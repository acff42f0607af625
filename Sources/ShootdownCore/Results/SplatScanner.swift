/// A kernel complaint found in a log: BUG, WARNING, Oops, panic, KASAN, bad page state...
public struct Splat: Sendable, Codable, Equatable {
    public var kind: String
    /// The headline, without its timestamp.
    public var title: String
    /// The headline and the lines that follow it, up to the end of the report.
    public var excerpt: String
}

/// Finds splats in console output or /dev/kmsg text.
public enum SplatScanner {
    /// Headline patterns, matched at the start of the message (after the timestamp).
    static let headlines: [(kind: String, prefix: String)] = [
        ("bug", "BUG: kernel NULL pointer dereference"),
        ("bad-page", "BUG: Bad page"),
        ("kasan", "BUG: KASAN:"),
        ("kfence", "BUG: KFENCE:"),
        ("bug", "kernel BUG at"),
        ("bug", "BUG:"),
        ("warning", "WARNING:"),
        ("oops", "Oops"),
        ("oops", "Internal error:"),
        ("oops", "general protection fault"),
        ("oops", "Unable to handle kernel"),
        ("ubsan", "UBSAN:"),
        ("panic", "Kernel panic - not syncing"),
        ("lockup", "watchdog: BUG: soft lockup"),
        ("rcu-stall", "rcu: INFO: rcu_sched detected stalls"),
        ("rcu-stall", "rcu: INFO: rcu_preempt detected stalls"),
        ("hung-task", "INFO: task"),
    ]

    /// Reports that begin with the task name (`bigmod: vmalloc error: …`), matched anywhere.
    static let embedded: [(kind: String, text: String)] = [
        ("alloc-failure", ": page allocation failure: "),
        ("alloc-failure", ": vmalloc error: "),
    ]

    static func headline(_ line: String) -> String? {
        if let match = headlines.first(where: { line.hasPrefix($0.prefix) }) {
            if match.kind == "hung-task" && !line.contains("blocked for more than") { return nil }
            return match.kind
        }
        return embedded.first { line.contains($0.text) }?.kind
    }

    static let excerptLimit = 60

    public static func scan(_ text: String) -> [Splat] {
        // Split on "\n" bytes, not Characters: message(of:) drops the "\r" of CRLF, and
        // grapheme breaking over a 16 MiB console is the slowest part of a verdict.
        let lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { message(of: Substring($0)) }
        var splats: [Splat] = []
        var index = 0
        while index < lines.count {
            let line = lines[index]
            guard let kind = headline(line) else {
                index += 1
                continue
            }
            var end = index + 1
            // The report runs until its end marker, the next headline or a blank line.
            while end < lines.count && end - index < excerptLimit {
                let next = lines[end]
                if next.hasPrefix("---[ end") { end += 1; break }
                if next.isEmpty || headline(next) != nil { break }
                end += 1
            }
            splats.append(Splat(kind: kind, title: line, excerpt: lines[index..<end].joined(separator: "\n")))
            index = end
        }
        return splats
    }

    /// Strips a console timestamp (`[   12.345678] `) or a /dev/kmsg prefix (`4,123,456,-;`).
    static func message(of rawLine: Substring) -> String {
        var line = rawLine.drop { $0 == "\r" }
        if line.last == "\r" { line = line.dropLast() }
        if line.first == "[", let close = line.firstIndex(of: "]") {
            let stamp = line[line.index(after: line.startIndex)..<close]
            if stamp.allSatisfy({ $0.isNumber || $0 == "." || $0 == " " }) {
                line = line[line.index(after: close)...].drop { $0 == " " }
            }
        } else if let semicolon = line.firstIndex(of: ";"),
                  line[..<semicolon].allSatisfy({ $0.isNumber || $0 == "," || $0 == "-" || $0.isLetter }),
                  line[..<semicolon].contains(",") {
            line = line[line.index(after: semicolon)...]
        }
        return String(line)
    }
}
