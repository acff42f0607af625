import Foundation

/// A `git format-patch`-style patch that adds rendered tests to
/// tools/testing/selftests/mm of a kernel tree: the sources, `TEST_GEN_FILES` entries in
/// the Makefile and `run_vmtests.sh` lines in each test's category.
public struct KselftestPatch: Sendable {
    public static let directory = "tools/testing/selftests/mm"

    public struct Test: Sendable {
        public var name: String
        public var source: String
        /// The run_vmtests.sh category (`hugetlb`, `thp`, …).
        public var category: String
        public var summary: String

        public init(name: String, source: String, category: String, summary: String) {
            self.name = name
            self.source = source
            self.category = category
            self.summary = summary
        }
    }

    public var tests: [Test]

    public init(tests: [Test]) {
        self.tests = tests
    }

    /// One test per template; a template swept over several values cannot be exported.
    /// The tests must be rendered `.kselftest`: the guest flavour prints its own TAP.
    public init(rendered: [RenderedTest]) throws {
        if let guest = rendered.first(where: { $0.flavour != .kselftest }) {
            throw ShootdownError.usage("\(guest.instance.test) was rendered for guests; a kselftest patch takes tests rendered with flavour kselftest")
        }
        for (name, instances) in Dictionary(grouping: rendered, by: \.instance.test) where instances.count > 1 {
            throw ShootdownError.usage("a kselftest patch takes one value per parameter; \(name) got \(instances.count) combinations")
        }
        self.init(tests: rendered.map {
            Test(name: $0.instance.test, source: $0.source, category: $0.kselftestCategory, summary: $0.summary)
        })
    }

    /// The files of the tree the patch changes, with their new contents.
    public func edits(makefile: String, runVmtests: String) throws -> [(path: String, old: String?, new: String)] {
        var edits: [(path: String, old: String?, new: String)] = tests.map {
            ("\(Self.directory)/\($0.name).c", nil, $0.source)
        }
        let entries = tests.map { "TEST_GEN_FILES += \($0.name)" }
        edits.append(("\(Self.directory)/Makefile", makefile,
                      try Self.insert(entries, into: makefile, after: { $0.hasPrefix("TEST_GEN_FILES += ") }, file: "Makefile")))
        var script = runVmtests
        for (category, members) in Dictionary(grouping: tests, by: \.category).sorted(by: { $0.key < $1.key }) {
            let lines = members.map { "CATEGORY=\"\(category)\" run_test ./\($0.name)" }
            script = try Self.insert(lines, into: script, after: { $0.hasPrefix("CATEGORY=\"\(category)\" run_test") },
                                     file: "run_vmtests.sh (category \(category))")
        }
        edits.append(("\(Self.directory)/run_vmtests.sh", runVmtests, script))
        return edits
    }

    /// Inserts `lines` after the last line matching `anchor`.
    static func insert(_ lines: [String], into text: String, after anchor: (Substring) -> Bool, file: String) throws -> String {
        var all = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let last = all.lastIndex(where: { anchor(Substring($0)) }) else {
            throw ShootdownError.usage("\(file): found no place to add the tests; is this a kernel tree's \(directory)?")
        }
        let fresh = lines.filter { !all.contains($0) }
        all.insert(contentsOf: fresh, at: last + 1)
        return all.joined(separator: "\n")
    }

    /// The whole patch, diffs made by `diff -u` through the runner.
    public func render(makefile: String, runVmtests: String, runner: any CommandRunning,
                       date: Date = Date()) throws -> String {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-patch-\(UUID().uuidString)")
        try FileManager.default.makeDirectory(scratch)
        defer { try? FileManager.default.removeItem(at: scratch) }
        var diffs: [String] = [], stats: [(String, Int, Int)] = []
        for (index, edit) in try edits(makefile: makefile, runVmtests: runVmtests).enumerated() {
            let oldURL = scratch.appendingPathComponent("\(index).old"), newURL = scratch.appendingPathComponent("\(index).new")
            try writeAtomically(edit.old ?? "", to: oldURL)
            try writeAtomically(edit.new, to: newURL)
            let output = try runner.run(Command("diff", ["-u", "--label", edit.old == nil ? "/dev/null" : "a/\(edit.path)",
                                                         "--label", "b/\(edit.path)",
                                                         edit.old == nil ? "/dev/null" : oldURL.path, newURL.path]))
            // diff exits 1 when the files differ, which is the point here.
            guard output.status == 1 else {
                throw ShootdownError.commandFailed(command: "diff -u … \(edit.path)", status: output.status, output: output.stderr)
            }
            var header = "diff --git a/\(edit.path) b/\(edit.path)\n"
            if edit.old == nil { header += "new file mode 100644\n" }
            diffs.append(header + output.stdout)
            let body = output.stdout.split(separator: "\n").dropFirst(2)
            stats.append((edit.path, body.filter { $0.hasPrefix("+") }.count, body.filter { $0.hasPrefix("-") }.count))
        }
        return header(date: date) + diffstat(stats) + "\n" + diffs.joined() + "-- \nshootdown\n"
    }

    func header(date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, d MMM yyyy HH:mm:ss Z"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let list = tests.map { "  \($0.name): \($0.summary)" }.joined(separator: "\n")
        return """
        From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
        From: Your Name <you@example.com>
        Date: \(formatter.string(from: date))
        Subject: [PATCH] selftests/mm: add PMD table sharing, collapse and GUP-pin tests

        Add tests that exercise hugetlb PMD table sharing and unsharing, MADV_COLLAPSE
        against concurrent GUP-fast, and long-term pins across PMD unsharing, and that
        check data integrity, hugetlb pool accounting and how userspace sees the sharing
        (smaps, pagemap):

        \(list)

        Each reports through kselftest.h and exits 0 (pass), 1 (fail) or 4 (skip); the
        hugetlb and THP set-up uses vm_util.c and thp_settings.c. Operation counts are
        printed as "# metric ops=N" so IPI counters can be normalised per operation.

        Generated by shootdown. Replace the author and Signed-off-by lines before sending.

        Signed-off-by: Your Name <you@example.com>
        ---

        """
    }

    func diffstat(_ stats: [(path: String, added: Int, removed: Int)]) -> String {
        let width = stats.map(\.path.count).max() ?? 0
        var text = stats.map { stat in
            " \(stat.path.padding(toLength: width, withPad: " ", startingAt: 0)) | \(stat.added + stat.removed) "
                + String(repeating: "+", count: min(stat.added, 40)) + String(repeating: "-", count: min(stat.removed, 40))
        }.joined(separator: "\n")
        let added = stats.map(\.added).reduce(0, +), removed = stats.map(\.removed).reduce(0, +)
        let created = stats.count - 2
        text += "\n \(stats.count) files changed, \(added) insertions(+), \(removed) deletions(-)\n"
        return text + (created > 0 ? tests.map { " create mode 100644 \(Self.directory)/\($0.name).c" }.joined(separator: "\n") + "\n" : "")
    }
}
