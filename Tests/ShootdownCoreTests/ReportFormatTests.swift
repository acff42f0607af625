import Foundation
import Testing
import XMLSupport
@testable import ShootdownCore

/// JUnit and KCIDB renderings of a whole run (RunReport).
@Suite(.serialized) struct ReportFormatTests {
    static func report(_ name: String) throws -> RunReport {
        try JSONDecoder().decode(RunReport.self, from: Data(try Fixture.text("reports/\(name)").utf8))
    }

    static var mixed: RunReport { get throws { try report("mixed-8-cells.json") } }

    /// The mixed run with hostile text everywhere a reason, check or console tail can carry it.
    static func hostile() throws -> RunReport {
        var report = try mixed
        let nasty = "a<b>&c \"q\" 'a' ]]> \u{1}\u{8}\u{B}\u{C}\u{1B}[31mred\u{1B}[0m \u{0}after-nul \u{FFFE}\u{FFFF} tab\there é 😀"
        for index in report.cells.indices where report.cells[index].status != .pass {
            report.cells[index].reason = nasty
            report.cells[index].consoleTail = (report.cells[index].consoleTail ?? "") + nasty + "\r\n"
        }
        let failing = report.cells.firstIndex { $0.status == .fail }!
        report.cells[failing].checks.append(Check(name: "check \(nasty)", passed: false, detail: nasty, source: "guest"))
        report.cells[failing].splats[0].excerpt += "\n" + nasty
        report.cells[failing].expectations = [ExpectationOutcome(rule: "probe:x per op <= 1 \(nasty)", scope: "cell",
                                                                 subject: report.cells[failing].cell.id, met: false, detail: nasty)]
        report.sweepExpectations.append(ExpectationOutcome(rule: "ipi:CAL per op over gib is constant \(nasty)", scope: "sweep",
                                                           subject: "over gib", met: false, detail: nasty))
        return report
    }

    // MARK: - Fixtures

    @Test(arguments: ["sweep-6-pass.json", "mixed-8-cells.json"])
    func fixturesDecode(name: String) throws {
        let report = try Self.report(name)
        #expect(!report.cells.isEmpty)
        #expect(report.summary == Dictionary(grouping: report.cells, by: { $0.status.rawValue }).mapValues(\.count))
    }

    // MARK: - JUnit

    @Test func junitMatchesGolden() throws {
        GoldenFile.check(try JUnitReport.render(try Self.mixed), "report-mixed.junit.xml")
    }

    @Test(arguments: ["sweep-6-pass.json", "mixed-8-cells.json"])
    func junitIsWellFormedAndMatchesTheJUnitSchema(name: String) throws {
        let xml = try JUnitReport.render(try Self.report(name))
        #expect(try JUnitSchema.validator().validate(xml) == [])
    }

    @Test(arguments: ["sweep-6-pass.json", "mixed-8-cells.json"])
    func junitCountsMatchStatuses(name: String) throws {
        var report = try Self.report(name)
        // One unmet sweep expectation: one more failure.
        report.sweepExpectations.append(ExpectationOutcome(rule: "ipi:CAL per op over gib is linear", scope: "sweep",
                                                           subject: "over gib", met: false, detail: "no sweep"))
        let root = JUnitReport.document(report)
        let cases = root.elements("testsuite").flatMap { $0.elements("testcase") }
        let count = { (status: CellStatus) in report.cells.filter { $0.status == status }.count }
        let unmetSweeps = report.sweepExpectations.filter { !$0.met }.count

        #expect(cases.count == report.cells.count + report.sweepExpectations.count)
        #expect(cases.filter { $0.child("failure") != nil }.count == count(.fail) + unmetSweeps)
        #expect(cases.filter { $0.child("error") != nil }.count == count(.error) + count(.miss))
        #expect(cases.filter { $0.child("skipped") != nil }.count == count(.skip))
        #expect(root.attribute("tests") == String(cases.count))
        #expect(root.attribute("failures") == String(count(.fail) + unmetSweeps))
        #expect(root.attribute("errors") == String(count(.error) + count(.miss)))
        #expect(root.attribute("skipped") == String(count(.skip)))
        for suite in root.elements("testsuite") {
            let suiteCases = suite.elements("testcase")
            #expect(suite.attribute("tests") == String(suiteCases.count))
            #expect(suite.attribute("failures") == String(suiteCases.filter { $0.child("failure") != nil }.count))
            #expect(suite.attribute("errors") == String(suiteCases.filter { $0.child("error") != nil }.count))
            #expect(suite.attribute("skipped") == String(suiteCases.filter { $0.child("skipped") != nil }.count))
        }
        // Every cell is a testcase named by its id, with its figures in system-out.
        for result in report.cells {
            let testcase = try #require(cases.first { $0.attribute("name") == result.cell.id })
            if let counters = result.counters {
                let out = try #require(testcase.child("system-out")).text
                for ipi in counters.ipis { #expect(out.contains("  \(ipi.name) ")) }
                for probe in counters.probes { #expect(out.contains("  \(probe.symbol) ")) }
            }
        }
    }

    @Test func junitFailureListsChecksExpectationsAndSplat() throws {
        var report = try Self.mixed
        let index = report.cells.firstIndex { $0.status == .fail }!
        report.cells[index].expectations = [
            ExpectationOutcome(rule: "probe:tlb_remove_table_sync_one per op <= 0.5", scope: "cell",
                               subject: report.cells[index].cell.id, met: false, detail: "1.00 per fork-exit"),
            ExpectationOutcome(rule: "ipi:CAL per op <= 100", scope: "cell", subject: report.cells[index].cell.id,
                               met: true, detail: "5.75 per fork-exit"),
        ]
        let testcase = JUnitReport.testcase(report.cells[index])
        let failure = try #require(testcase.child("failure"))
        #expect(failure.attribute("message") == report.cells[index].reason)
        #expect(failure.text.contains("[host] no kernel splat: WARNING: CPU: 1 PID: 88"))
        #expect(failure.text.contains("unmet expectations:\n  probe:tlb_remove_table_sync_one per op <= 0.5: measured 1.00 per fork-exit"))
        #expect(!failure.text.contains("ipi:CAL per op <= 100"))
        #expect(failure.text.contains("splat (warning):\n  WARNING: CPU: 1 PID: 88 at mm/hugetlb.c:5012"))

        let error = try #require(JUnitReport.testcase(report.cells.first { $0.status == .error }!).child("error"))
        #expect(error.text.contains("console tail:\n[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]\n"))
        let skipped = try #require(JUnitReport.testcase(report.cells.first { $0.status == .skip }!).child("skipped"))
        #expect(skipped.attribute("message")?.hasPrefix("paravirt on needs KVM") == true)
    }

    @Test func junitEscapesHostileTextAndDropsWhatXML10Forbids() throws {
        let xml = try JUnitReport.render(try Self.hostile())
        // Well-formed XML 1.0: libxml2's parser rejects a character reference such as &#1;.
        #expect(try JUnitSchema.validator().validate(xml) == [])
        #expect(xml.contains("a&lt;b&gt;&amp;c"))
        #expect(xml.contains("message=\"a&lt;b&gt;&amp;c &quot;q&quot; 'a' ]]&gt; "))
        for forbidden in ["&#1;", "&#x1;", "&#8;", "&#11;", "&#12;", "&#27;", "&#0;", "\u{1}", "\u{1B}", "\u{0}", "\u{FFFE}", "\u{FFFF}"] {
            #expect(!xml.contains(forbidden), "forbidden \(forbidden.unicodeScalars.map { String($0.value, radix: 16) }) in the XML")
        }
        // Replaced, not truncated: the text after the NUL survives, and so does valid Unicode.
        #expect(xml.contains("\u{FFFD}[31mred\u{FFFD}[0m \u{FFFD}after-nul \u{FFFD}\u{FFFD} tab\there é 😀"))
        #expect(JUnitReport.xmlSafe("ok\t\n\r text") == "ok\t\n\r text")
    }

    // MARK: - KCIDB

    static let origin = "shootdown"

    @Test func kcidbMatchesGolden() throws {
        GoldenFile.check(try KCIDBReport.render(try Self.mixed, origin: Self.origin), "report-mixed.kcidb.json")
    }

    @Test func kcidbValidatesWithKcidbIO() throws {
        try Self.expectValid(try KCIDBReport.render(try Self.mixed, origin: Self.origin))
        try Self.expectValid(try KCIDBReport.render(try Self.report("sweep-6-pass.json"), origin: Self.origin))
        try Self.expectValid(try KCIDBReport.render(try Self.hostile(), origin: Self.origin))
    }

    /// The validator itself rejects what v5.3 forbids: a path component outside
    /// `[a-zA-Z0-9_-]` (a dot is no such case: it silently makes the path deeper), and
    /// the build `valid` that v5 replaced with `status`.
    @Test func kcidbValidatorRejectsInvalidDocuments() throws {
        var object = try Self.json(try KCIDBReport.render(try Self.mixed, origin: Self.origin))
        var tests = try #require(object["tests"] as? [[String: Any]])
        tests[0]["path"] = "shootdown.hugetlb-share-fork-exit.gib=1"
        object["tests"] = tests
        var builds = try #require(object["builds"] as? [[String: Any]])
        builds[0]["valid"] = true
        object["builds"] = builds
        let text = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        let output = try Self.runValidator(text)
        #expect(output.status == 1)
        #expect(output.stdout.contains("/tests/0/path"))
        #expect(output.stdout.contains("'valid' was unexpected"))
    }

    @Test func kcidbObjectsLinkUpWithStableOriginIDs() throws {
        let report = try Self.mixed
        let text = try KCIDBReport.render(report, origin: Self.origin)
        #expect(try KCIDBReport.render(report, origin: Self.origin) == text)
        let object = try Self.json(text)
        #expect(object["version"] as? [String: Int] == ["major": 5, "minor": 3])
        let checkouts = try #require(object["checkouts"] as? [[String: Any]])
        let builds = try #require(object["builds"] as? [[String: Any]])
        let tests = try #require(object["tests"] as? [[String: Any]])

        // One Debian source, two arches; one test per cell plus one per judged sweep expectation.
        #expect(checkouts.count == 1)
        #expect(checkouts[0]["tree_name"] as? String == "debian")
        #expect(checkouts[0]["git_commit_hash"] == nil && checkouts[0]["git_repository_url"] == nil)
        #expect((checkouts[0]["comment"] as? String)?.contains("6.12.117-1~deb12u1") == true)
        #expect(builds.map { $0["architecture"] as? String } == ["x86_64", "arm64"])
        #expect(builds.map { $0["config_name"] as? String } == ["amd64", "arm64"])
        #expect(builds.allSatisfy { $0["status"] as? String == "PASS" })
        #expect(tests.count == report.cells.count + report.sweepExpectations.count)

        for item in checkouts + builds + tests {
            #expect((item["id"] as? String)?.hasPrefix("\(Self.origin):") == true)
            #expect(item["origin"] as? String == Self.origin)
        }
        let ids = { (objects: [[String: Any]]) in objects.compactMap { $0["id"] as? String } }
        let checkoutIDs = Set(ids(checkouts)), buildIDs = Set(ids(builds))
        #expect(checkoutIDs.count == checkouts.count && buildIDs.count == builds.count)
        #expect(Set(ids(tests)).count == tests.count)
        #expect(builds.allSatisfy { checkoutIDs.contains($0["checkout_id"] as? String ?? "") })
        #expect(tests.allSatisfy { buildIDs.contains($0["build_id"] as? String ?? "") })

        for result in report.cells {
            let test = try #require(tests.first { $0["id"] as? String == "shootdown:mixed-example:\(result.cell.id)" })
            #expect(test["status"] as? String == result.status.rawValue)
            #expect(test["path"] as? String == "shootdown.hugetlb-share-fork-exit")
            let environment = try #require(test["environment"] as? [String: Any])
            let misc = try #require(environment["misc"] as? [String: Any])
            #expect(misc["vcpus"] as? Int == result.cell.vcpus && misc["accel"] as? String == result.cell.accel.rawValue)
            if let counters = result.counters {
                let number = try #require(test["number"] as? [String: Any])
                #expect(number["value"] as? Double == counters.probe("tlb_remove_table_sync_one")?.perOperation)
                #expect(number["unit"] as? String == "tlb_remove_table_sync_one/fork-exit")
                let perOp = try #require((test["misc"] as? [String: Any])?["ipi_per_op"] as? [String: Double])
                #expect(perOp.count == counters.ipis.count)
            } else {
                #expect(test["number"] == nil)
            }
        }

        // Same kernels, another run: same checkouts and builds, new tests.
        var again = report
        again.runID = "another-run"
        let other = try Self.json(try KCIDBReport.render(again, origin: Self.origin))
        #expect(ids(other["builds"] as? [[String: Any]] ?? []) == ids(builds))
        #expect(ids(other["checkouts"] as? [[String: Any]] ?? []) == ids(checkouts))
        #expect(ids(other["tests"] as? [[String: Any]] ?? []).allSatisfy { $0.hasPrefix("shootdown:another-run:") })
    }

    @Test func kcidbHeadlineFallsBackToFunctionCallIPIs() throws {
        let report = try Self.mixed
        for result in report.cells {
            guard var counters = result.counters else { continue }
            counters.probes.removeAll { $0.symbol == "tlb_remove_table_sync_one" }
            let headline = try #require(KCIDBReport.headline(counters))
            let expected = result.cell.arch == .x86_64 ? "CAL" : "IPI1"
            #expect(headline.metric == "ipi:\(expected)")
            #expect(headline.value == counters.ipi(expected)?.perOperation)
        }
    }

    @Test func kcidbRejectsAnOriginKCIDBWouldRefuse() throws {
        for origin in ["", "Shootdown", "shoot-down", "shoot:down"] {
            #expect(throws: ShootdownError.self) { try KCIDBReport.render(try Self.mixed, origin: origin) }
        }
    }

    @Test func kcidbNamesDebianFlavours() {
        #expect(KCIDBReport.debianFlavour(package: "linux-image-6.12.117+deb12-amd64") == "amd64")
        #expect(KCIDBReport.debianFlavour(package: "linux-image-6.1.0-56-cloud-amd64") == "cloud-amd64")
        #expect(KCIDBReport.debianFlavour(package: "linux-image-6.12.117+deb12-arm64") == "arm64")
        #expect(KCIDBReport.pathComponent("gup.pin unshare") == "gup_pin_unshare")
    }

    // MARK: - Helpers

    static let validator = Repository.root.appendingPathComponent("ci/validate-kcidb")

    static func runValidator(_ text: String) throws -> CommandOutput {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kcidb-\(UUID().uuidString).json")
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        // The first run may pip-install kcidb-io.
        return try ProcessRunner().run(Command(validator.path, [file.path]), timeout: .seconds(600))
    }

    static func expectValid(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let output = try runValidator(text)
        #expect(output.succeeded, "ci/validate-kcidb rejected the document:\n\(output.stdout)\(output.stderr)",
                sourceLocation: sourceLocation)
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }
}

extension XMLSupport.XMLElement {
    func elements(_ name: String) -> [XMLSupport.XMLElement] {
        children.compactMap { child in
            if case .element(let element) = child, element.name == name { return element }
            return nil
        }
    }
}

/// The JUnit XML that Jenkins' junit plugin and GitLab read, as RelaxNG (libxml2 validates
/// RelaxNG, not XSD): the subset JUnitReport writes, with typed counts and times.
enum JUnitSchema {
    static let text = """
        <grammar xmlns="http://relaxng.org/ns/structure/1.0" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
          <start>
            <element name="testsuites">
              <ref name="counts"/>
              <zeroOrMore><ref name="testsuite"/></zeroOrMore>
            </element>
          </start>
          <define name="counts">
            <attribute name="name"><text/></attribute>
            <attribute name="tests"><data type="nonNegativeInteger"/></attribute>
            <attribute name="failures"><data type="nonNegativeInteger"/></attribute>
            <attribute name="errors"><data type="nonNegativeInteger"/></attribute>
            <attribute name="skipped"><data type="nonNegativeInteger"/></attribute>
            <attribute name="time"><data type="decimal"/></attribute>
          </define>
          <define name="testsuite">
            <element name="testsuite">
              <ref name="counts"/>
              <optional>
                <element name="properties">
                  <zeroOrMore>
                    <element name="property"><attribute name="name"/><attribute name="value"/></element>
                  </zeroOrMore>
                </element>
              </optional>
              <zeroOrMore><ref name="testcase"/></zeroOrMore>
            </element>
          </define>
          <define name="testcase">
            <element name="testcase">
              <attribute name="name"><data type="string"><param name="minLength">1</param></data></attribute>
              <attribute name="classname"><data type="string"><param name="minLength">1</param></data></attribute>
              <attribute name="time"><data type="decimal"/></attribute>
              <optional>
                <choice>
                  <element name="failure"><attribute name="message"/><attribute name="type"/><text/></element>
                  <element name="error"><attribute name="message"/><attribute name="type"/><text/></element>
                  <element name="skipped"><attribute name="message"/><empty/></element>
                </choice>
              </optional>
              <optional><element name="system-out"><text/></element></optional>
            </element>
          </define>
        </grammar>
        """

    static func validator() throws -> RelaxNGValidator {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-junit.rng")
        if (try? String(contentsOf: url, encoding: .utf8)) != text {
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return RelaxNGValidator(schemaPath: url.path)
    }
}
