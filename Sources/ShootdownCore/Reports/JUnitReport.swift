import Foundation
import XMLSupport

/// A run as JUnit XML, for CI servers: Jenkins' `junit` step and GitLab's
/// `artifacts:reports:junit`.
///
/// Layout:
/// - one `<testsuite>` per test × arch, in the order the cells ran;
/// - one `<testcase>` per cell: `name` is the cell id, `classname` is
///   `shootdown.linux-<version>.<arch>.<accel>`, so Jenkins shows `shootdown.linux-….<arch>`
///   as the package and the accelerator as the class; `time` is the cell's total seconds;
/// - FAIL → `<failure>` (the reason, failed checks, unmet expectations and the splat),
///   ERROR and MISS → `<error>` (the reason and the console tail), SKIP → `<skipped>`;
///   PASS and DONE have no child besides `<system-out>`;
/// - `<system-out>` of every testcase holds the cell's environment, timings,
///   expectations, and its IPI and probe figures per operation;
/// - a last `<testsuite name="sweep expectations">` holds one testcase per sweep
///   expectation, failing when it is unmet.
///
/// The tree is serialised by libxml2. Text that XML 1.0 cannot carry (control
/// characters other than tab, newline and carriage return; U+FFFE and U+FFFF) is
/// replaced by U+FFFD first: libxml2 would write it as a character reference such
/// as `&#1;`, which no XML 1.0 parser accepts, and a NUL would cut the string short
/// on its way into C.
public enum JUnitReport {
    public static func render(_ report: RunReport) throws -> String {
        try document(report).serialized()
    }

    /// The `<testsuites>` tree, already made safe for XML 1.0.
    static func document(_ report: RunReport) -> XMLElement {
        var suites: [XMLElement] = []
        var tally = Tally()

        var groups: [(key: String, cells: [CellResult])] = []
        for result in report.cells {
            let key = "\(result.cell.test) \(result.cell.arch.rawValue)"
            if let index = groups.firstIndex(where: { $0.key == key }) {
                groups[index].cells.append(result)
            } else {
                groups.append((key, [result]))
            }
        }
        for group in groups {
            var suiteTally = Tally()
            var suite = XMLElement("testsuite")
            suite.append(properties([("run_id", report.runID), ("run_name", report.name),
                                     ("test", group.cells[0].cell.test), ("arch", group.cells[0].cell.arch.rawValue)]))
            for result in group.cells {
                suite.append(testcase(result))
                suiteTally.add(result.status, seconds: result.timings.totalSeconds)
            }
            suite.attributes = suiteTally.attributes(name: group.key)
            tally.merge(suiteTally)
            suites.append(suite)
        }

        if !report.sweepExpectations.isEmpty {
            var suiteTally = Tally()
            var suite = XMLElement("testsuite")
            suite.append(properties([("run_id", report.runID), ("run_name", report.name)]))
            for outcome in report.sweepExpectations {
                suite.append(testcase(outcome))
                suiteTally.add(outcome.met ? .pass : .fail, seconds: 0)
            }
            suite.attributes = suiteTally.attributes(name: "sweep expectations")
            tally.merge(suiteTally)
            suites.append(suite)
        }

        var root = XMLElement("testsuites", children: suites.map { .element($0) })
        root.attributes = tally.attributes(name: "shootdown \(report.name) \(report.runID)")
        return xmlSafe(root)
    }

    // MARK: - Test cases

    static func testcase(_ result: CellResult) -> XMLElement {
        let cell = result.cell
        var name = cell.id
        if let repeatIndex = result.repeatIndex { name += " #\(repeatIndex)" }
        var testcase = XMLElement("testcase", [("name", name), ("classname", classname(cell)),
                                               ("time", seconds(result.timings.totalSeconds))])
        let reason = result.reason ?? ""
        switch result.status {
        case .fail:
            let failedChecks = result.checks.filter { !$0.passed && !$0.skipped }
            let message = !reason.isEmpty ? reason : failedChecks.first?.name ?? "failed"
            testcase.append(XMLElement("failure", [("message", message), ("type", result.status.rawValue)],
                                       text: failureText(result)))
        case .error, .miss:
            var text = reason.isEmpty ? "" : reason + "\n"
            if let consoleTail = result.consoleTail, !consoleTail.isEmpty {
                text += "\nconsole tail:\n" + consoleTail.lines().joined(separator: "\n") + "\n"
            }
            testcase.append(XMLElement("error", [("message", reason.isEmpty ? "harness error" : reason),
                                                 ("type", result.status.rawValue)], text: text))
        case .skip:
            testcase.append(XMLElement("skipped", [("message", reason.isEmpty ? "skipped" : reason)]))
        case .pass, .done:
            break
        }
        testcase.append(XMLElement("system-out", text: systemOut(result)))
        return testcase
    }

    static func testcase(_ outcome: ExpectationOutcome) -> XMLElement {
        var testcase = XMLElement("testcase", [("name", "\(outcome.rule) [\(outcome.subject)]"),
                                               ("classname", "shootdown.sweep"), ("time", seconds(0))])
        let text = "rule: \(outcome.rule)\nsubject: \(outcome.subject)\nmeasured: \(outcome.detail)\n"
        if !outcome.met {
            testcase.append(XMLElement("failure", [("message", "unmet: \(outcome.detail)"), ("type", "expectation")],
                                       text: text))
        }
        testcase.append(XMLElement("system-out", text: text))
        return testcase
    }

    /// `shootdown.linux-6_12_117.x86_64.tcg`: dots separate Jenkins' package levels, so
    /// the version's own dots become underscores.
    static func classname(_ cell: CellDescriptor) -> String {
        ["shootdown", "linux-" + component(cell.kernelVersion), cell.arch.rawValue, cell.accel.rawValue]
            .joined(separator: ".")
    }

    static func component(_ text: String) -> String {
        String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "_" })
    }

    /// Why a FAIL cell failed: reason, failed checks, unmet expectations, splats.
    static func failureText(_ result: CellResult) -> String {
        var text = (result.reason ?? "") + "\n"
        let failedChecks = result.checks.filter { !$0.passed && !$0.skipped }
        if !failedChecks.isEmpty {
            text += "\nfailed checks:\n"
            for check in failedChecks {
                text += "  [\(check.source)] \(check.name)" + (check.detail.map { ": \($0)" } ?? "") + "\n"
            }
        }
        let unmet = (result.expectations ?? []).filter { !$0.met }
        if !unmet.isEmpty {
            text += "\nunmet expectations:\n"
            for expectation in unmet {
                text += "  \(expectation.rule): measured \(expectation.detail)\n"
            }
        }
        for splat in result.splats {
            text += "\nsplat (\(splat.kind)):\n" + splat.excerpt.lines().map { "  \($0)" }.joined(separator: "\n") + "\n"
        }
        return text
    }

    /// The cell's environment and figures, for the test's standard output.
    static func systemOut(_ result: CellResult) -> String {
        let cell = result.cell
        var lines = [
            "status: \(result.status.rawValue)" + (result.reason.map { " (\($0))" } ?? ""),
            "kernel: \(cell.kernel) → \(cell.kernelVersion) (\(cell.kernelOrigin))",
            "guest: \(cell.arch.rawValue), \(cell.accel.rawValue), \(cell.vcpus) vCPUs, \(cell.memoryMiB) MiB, paravirt \(cell.paravirt)",
            "test: \(cell.test)" + (cell.parameters.isEmpty ? "" : " "
                + cell.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")),
        ]
        let timings = result.timings
        lines.append("timings: boot \(TerminalReport.seconds(timings.bootSeconds)), test \(TerminalReport.seconds(timings.testSeconds)), "
            + "total \(TerminalReport.seconds(timings.totalSeconds))")
        if let counters = result.counters {
            let operation = counters.operation
            lines.append("operations: " + (counters.operations.map { "\($0) \(operation)" } ?? "not reported"))
            if !counters.ipis.isEmpty {
                lines.append("IPIs per \(operation) (total):")
                let rows = counters.ipis.map { ($0.name, TerminalReport.number($0.perOperation), "(\($0.total)) \($0.description)") }
                lines += aligned(rows)
            }
            if !counters.probes.isEmpty {
                lines.append("probe hits per \(operation) (total):")
                let rows = counters.probes.map {
                    ($0.symbol, TerminalReport.number($0.perOperation), "(\($0.hits))" + ($0.missed > 0 ? " missed \($0.missed)" : ""))
                }
                lines += aligned(rows)
            }
        }
        if let expectations = result.expectations, !expectations.isEmpty {
            lines.append("expectations:")
            for expectation in expectations {
                lines.append("  \(expectation.met ? "met  " : "UNMET") \(expectation.rule): \(expectation.detail)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `  name  value  rest` rows: names padded, values right-aligned.
    static func aligned(_ rows: [(name: String, value: String, rest: String)]) -> [String] {
        let nameWidth = rows.map(\.name.count).max() ?? 0, valueWidth = rows.map(\.value.count).max() ?? 0
        return rows.map { row in
            "  " + row.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
                + String(repeating: " ", count: valueWidth - row.value.count) + row.value + "  " + row.rest
        }
    }

    static func properties(_ pairs: [(String, String)]) -> XMLElement {
        XMLElement("properties", children: pairs.map { .element(XMLElement("property", [("name", $0.0), ("value", $0.1)])) })
    }

    static func seconds(_ value: Double) -> String {
        String(format: "%.3f", value.isFinite ? max(0, value) : 0)
    }

    /// The counts on `<testsuites>` and `<testsuite>`.
    struct Tally {
        var tests = 0, failures = 0, errors = 0, skipped = 0
        var time = 0.0

        mutating func add(_ status: CellStatus, seconds: Double) {
            tests += 1
            switch status {
            case .fail: failures += 1
            case .error, .miss: errors += 1
            case .skip: skipped += 1
            case .pass, .done: break
            }
            if seconds.isFinite { time += max(0, seconds) }
        }

        mutating func merge(_ other: Tally) {
            tests += other.tests
            failures += other.failures
            errors += other.errors
            skipped += other.skipped
            time += other.time
        }

        func attributes(name: String) -> [(name: String, value: String)] {
            [("name", name), ("tests", String(tests)), ("failures", String(failures)), ("errors", String(errors)),
             ("skipped", String(skipped)), ("time", JUnitReport.seconds(time))]
        }
    }

    // MARK: - XML 1.0 safety

    /// The tree with every attribute value and text made representable in XML 1.0.
    static func xmlSafe(_ element: XMLElement) -> XMLElement {
        var safe = element
        safe.attributes = element.attributes.map { (name: $0.name, value: xmlSafe($0.value)) }
        safe.children = element.children.map { child in
            switch child {
            case .element(let nested): return .element(xmlSafe(nested))
            case .text(let text): return .text(xmlSafe(text))
            }
        }
        return safe
    }

    /// Replaces what XML 1.0's `Char` production excludes with U+FFFD.
    static func xmlSafe(_ text: String) -> String {
        guard !text.unicodeScalars.allSatisfy(isXMLChar) else { return text }
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            scalars.append(isXMLChar(scalar) ? scalar : "\u{FFFD}")
        }
        return String(scalars)
    }

    static func isXMLChar(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: return true
        default: return false
        }
    }
}
