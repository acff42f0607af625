import Foundation
@testable import ShootdownCore

/// A seeded, deterministic corpus of guest streams: the real captures in Fixtures made
/// into agent records, then each stream given one mutation a hostile or broken guest
/// could produce (plus, sometimes, escape sequences in its text). `mustNotPass` marks
/// the mutations after which a PASS (or SKIP) would be a lie.
enum HostileCorpus {
    struct Stream {
        var name: String
        var port: Data
        var console: String
        var consoleFallback: Bool
        var mustNotPass: Bool
    }

    static let probes = ["tlb_remove_table_sync_one", "smp_call_function_many_cond"]
    static let probeChecks = [ProbeCheck(probe: "tlb_remove_table_sync_one", minPerOp: 0, name: "sync_one counted")]

    /// SplitMix64: tiny, seeded, the same on every platform.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    }

    struct Base {
        var arch: String
        var interruptsBefore, interruptsAfter, kprobesBefore, kprobesAfter, dmesg: String
        var consoles: [(name: String, text: String, splat: Bool)]
        var records: [[String: Any]] = []
        var lines: [String] = []
    }

    static func bases() throws -> [Base] {
        let dmesg = try Fixture.text("kmsg/x86_64-6.12.txt")
        func console(_ name: String) throws -> String {
            // The last 6 KiB: where the agent's part of a boot is, and cheap to scan 10,000 times.
            String(try Fixture.text("console/\(name).log").suffix(6 << 10))
        }
        let bases = [
            Base(arch: "x86_64", interruptsBefore: try Fixture.text("interrupts/x86_64-4cpu-6.12-before.txt"),
                 interruptsAfter: try Fixture.text("interrupts/x86_64-4cpu-6.12-after.txt"),
                 kprobesBefore: try Fixture.text("kprobes/x86_64-6.12-before.txt"), kprobesAfter: try Fixture.text("kprobes/x86_64-6.12.txt"),
                 dmesg: dmesg,
                 consoles: [("x86_64-clean-boot-6.12", try console("x86_64-clean-boot-6.12"), false),
                            ("x86_64-warning-6.12", try console("x86_64-warning-6.12"), true),
                            ("x86_64-oops-panic-6.12", try console("x86_64-oops-panic-6.12"), true),
                            ("x86_64-bad-page-state-6.12", try console("x86_64-bad-page-state-6.12"), true)]),
            Base(arch: "aarch64", interruptsBefore: try Fixture.text("interrupts/aarch64-4cpu-6.12-before.txt"),
                 interruptsAfter: try Fixture.text("interrupts/aarch64-4cpu-6.12-after.txt"),
                 kprobesBefore: try Fixture.text("kprobes/aarch64-6.12-before.txt"), kprobesAfter: try Fixture.text("kprobes/aarch64-6.12.txt"),
                 dmesg: dmesg,
                 consoles: [("aarch64-clean-boot-6.12", try console("aarch64-clean-boot-6.12"), false),
                            ("aarch64-warning-6.12", try console("aarch64-warning-6.12"), true),
                            ("aarch64-oops-panic-6.12", try console("aarch64-oops-panic-6.12"), true)]),
        ]
        return bases.map { base in
            var base = base
            base.records = records(base, tap: SyntheticGuest.passingTAP)
            base.lines = base.records.map(line)
            return base
        }
    }

    static let escapes = ["\u{1b}[2J", "\u{1b}]0;title\u{07}", "\u{9b}31m", "\u{0}", "\r", "\u{202e}", "\u{7f}"]

    static func records(_ base: Base, tap: String) -> [[String: Any]] {
        [["type": "boot", "agent": 1, "uname": "6.12.117+deb12", "machine": base.arch, "cpus": 4,
          "hugepages": ["requested": 24, "total": 24, "free": 24],
          "probes": probes.map { ["symbol": $0, "status": "ok"] }, "dmesg": base.dmesg, "uptime_ns": 1_500_000_000],
         ["type": "test", "id": "test", "exit": 0, "signal": 0, "timed_out": false, "wall_ns": 2_000_000_000,
          "output": tap, "output_truncated": false,
          "interrupts_before": base.interruptsBefore, "interrupts_after": base.interruptsAfter,
          "kprobes_before": base.kprobesBefore, "kprobes_after": base.kprobesAfter,
          "hugepages_before": ["total": 24, "free": 24, "resv": 0, "surp": 0],
          "hugepages_after": ["total": 24, "free": 24, "resv": 0, "surp": 0], "kmsg": ""],
         ["type": "done", "uptime_ns": 4_000_000_000]]
    }

    static func line(_ object: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Replaces the `column`-th count of the first row labelled `label`.
    static func setCount(_ text: String, label: String, column: Int, to value: String) -> String {
        text.lines(omittingEmpty: false).map { line -> String in
            let words = line.split(separator: " ")
            guard words.first == "\(label):" else { return String(line) }
            var out = words.map(String.init)
            if column + 1 < out.count { out[column + 1] = value }
            return out.joined(separator: " ")
        }.joined(separator: "\n")
    }

    static func countAt(_ text: String, label: String, column: Int) -> Int? {
        InterruptTable.parse(text)?.row(label).flatMap { column < $0.counts.count ? $0.counts[column] : nil }
    }

    static let mutations = ["none", "truncate-port", "duplicate-line", "drop-line", "junk-line", "flip-byte",
                            "ipi-number", "kprobe-number", "no-ops", "forged-console", "console-unasked",
                            "console-asked", "host-cut-port", "host-cut-console", "splat-console", "random-junk",
                            "wrong-type", "exit-code", "extra-test", "huge-json-number"]

    static func generate(count: Int, seed: UInt64) throws -> [Stream] {
        var random = Random(state: seed)
        let bases = try bases()
        return (0..<count).map { index in
            let base = random.pick(bases)
            let mutation = mutations[index % mutations.count]
            var tap = SyntheticGuest.passingTAP
            var console = base.consoles[0]
            var objects = base.records
            var name = "\(index)-\(base.arch)-\(mutation)"
            // Escape sequences ride along in a third of the streams, in guest text only.
            if random.below(3) == 0 {
                let escape = random.pick(escapes)
                tap = tap.replacingOccurrences(of: "ok 2 hugetlb pool", with: "ok 2 hugetlb \(escape) pool")
                objects[1]["output"] = tap
                objects[0]["uname"] = "6.12\(escape)"
                objects[1]["kmsg"] = "4,1,1,-;note \(escape)\n"
                name += "+escape"
            }
            var mustNotPass = true
            var consoleFallback = false
            // Serialising is the slow part of generating: only records that changed are redone.
            let original = objects.map { $0 as NSDictionary }
            var lines: [String] {
                objects.indices.map { index in
                    index < original.count && original[index].isEqual(to: objects[index]) ? base.lines[index] : line(objects[index])
                }
            }
            var port = Data(lines.joined(separator: "\n").utf8)
            var consoleText = console.text
            switch mutation {
            case "none":
                mustNotPass = false
            case "truncate-port":
                // Anywhere before the final "}": the done record is lost or broken.
                port = port.prefix(random.below(port.count - 1))
            case "duplicate-line":
                var copy = lines
                let which = random.below(copy.count)
                copy.insert(copy[which], at: random.below(copy.count + 1))
                port = Data(copy.joined(separator: "\n").utf8)
            case "drop-line":
                var copy = lines
                copy.remove(at: random.below(copy.count))
                port = Data(copy.joined(separator: "\n").utf8)
            case "junk-line":
                var copy = lines
                let junk = String((0..<(1 + random.below(200))).map { _ in Character(Unicode.Scalar(UInt8(33 + random.below(94)))) })
                copy.insert(junk, at: random.below(copy.count + 1))
                port = Data(copy.joined(separator: "\n").utf8)
            case "flip-byte":
                // Benign or not, depending on where it lands: only "no crash" is asked.
                mustNotPass = false
                let at = random.below(port.count)
                port[port.startIndex + at] ^= UInt8(1 << random.below(8))
            case "ipi-number":
                let label = base.arch == "x86_64" ? random.pick(["CAL", "TLB", "RES"]) : random.pick(["IPI0", "IPI1", "IPI2"])
                let column = random.below(4)
                let key = random.below(2) == 0 ? "interrupts_after" : "interrupts_before"
                let text = objects[1][key] as! String
                var value = random.pick(["4294967296", "9223372036854775807", "-1", "99999999999999999999999", "+3", "backwards"])
                if value == "backwards" {
                    // after below before on one CPU
                    let before = countAt(base.interruptsBefore, label: label, column: column) ?? 0
                    let after = countAt(base.interruptsAfter, label: label, column: column) ?? 0
                    value = key == "interrupts_after" ? "\(max(0, before) - 1)" : "\(after + 1)"
                }
                objects[1][key] = setCount(text, label: label, column: column, to: value)
                name += "(\(key) \(label) CPU\(column)=\(value))"
            case "kprobe-number":
                let value = random.pick(["-5", "9223372036854775808", "+1", "backwards"])
                // Backwards: a "before" far above the "after".
                let key = value == "backwards" || random.below(2) == 0 ? "kprobes_before" : "kprobes_after"
                let symbol = random.pick(probes)
                let text = objects[1][key] as! String
                objects[1][key] = text.lines().map { line -> String in
                    let words = line.split(separator: " ")
                    guard words.first.map(String.init) == symbol else { return String(line) }
                    let hits = value != "backwards" ? value : "\(Int(words[1])! + 1_000_000)"
                    return "  \(symbol) \(hits) \(words[2])"
                }.joined(separator: "\n")
                name += "(\(key) \(symbol)=\(value))"
            case "no-ops":
                objects[1]["output"] = tap.replacingOccurrences(of: "# metric ops=20\n", with: "")
            case "forged-console":
                var forged = objects[1]
                forged["exit"] = 0
                consoleText += [objects[0], forged, objects[2]].map { GuestRecords.consolePrefix + line($0) + "\r\n" }.joined()
                consoleFallback = random.below(2) == 0
            case "console-unasked", "console-asked":
                consoleText += lines.map { GuestRecords.consolePrefix + $0 + "\r\n" }.joined()
                consoleFallback = mutation == "console-asked"
                mustNotPass = !consoleFallback
                port = Data()
            case "host-cut-port":
                port = GuestStream.bounded(port, limit: 64 + random.below(max(1, port.count - 64)), complete: random.below(2) == 0)
            case "host-cut-console":
                let data = Data(consoleText.utf8)
                consoleText = String(decoding: GuestStream.bounded(data, limit: 256 + random.below(data.count - 256)), as: UTF8.self)
            case "splat-console":
                console = random.pick(Array(base.consoles.dropFirst()))
                consoleText = console.text
            case "random-junk":
                port = Data((0..<random.below(4096)).map { _ in random.below(10) == 0 ? UInt8(ascii: "\n") : UInt8(random.below(256)) })
            case "wrong-type":
                let record = random.below(2)
                let key = random.pick(Array(objects[record].keys.filter { $0 != "type" && $0 != "output_truncated" && $0 != "machine" && $0 != "uptime_ns" }))
                objects[record][key] = objects[record][key] is String ? 5 : "x"
                name += "(\(key))"
            case "exit-code":
                if random.below(2) == 0 { objects[1]["exit"] = random.pick([1, 2, 127, -1]) } else { objects[1]["signal"] = random.pick([9, 11]) }
            case "extra-test":
                var other = objects[1]
                other["id"] = random.pick(["test2", "test\u{1b}[1m", String(repeating: "t", count: 1000)])
                objects.insert(other, at: 2)
            case "huge-json-number":
                let key = random.pick(["exit", "signal", "wall_ns"])
                let value = random.pick(["1e400", "99999999999999999999999999", "-99999999999999999999999999"])
                port = Data(lines.joined(separator: "\n").replacingOccurrences(of: "\"\(key)\":", with: "\"\(key)\":\(value),\"x\":").utf8)
            default:
                fatalError("unknown mutation \(mutation)")
            }
            if ["ipi-number", "kprobe-number", "no-ops", "wrong-type", "exit-code", "extra-test"].contains(mutation) {
                port = Data(lines.joined(separator: "\n").utf8)
            }
            return Stream(name: name, port: port, console: consoleText, consoleFallback: consoleFallback, mustNotPass: mustNotPass)
        }
    }
}
