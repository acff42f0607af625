import Foundation

/// The judgement of one cell, before it is attached to its descriptor.
public struct Verdict: Sendable, Equatable {
    public var status: CellStatus
    public var reason: String?
    public var checks: [Check] = []
    public var counters: CellCounters?
    public var metrics: [String: String] = [:]
    public var splats: [Splat] = []
    public var guest: GuestInfo?
    public var timings: CellTimings
    public var consoleTail: String?
    public var widening: WideningSummary?
}

/// A test's widening points and whether the guest carries the module for them.
public struct WideningRequest: Sendable, Equatable {
    public enum Availability: Sendable, Equatable {
        case module
        /// The user turned widening off.
        case off(String)
        /// No module could be built for this kernel.
        case unavailable(String)
    }

    public var plan: WideningPlan
    public var availability: Availability

    public init(plan: WideningPlan, availability: Availability) {
        self.plan = plan
        self.availability = availability
    }
}

/// Turns what a guest produced into a status with reasons. Precedence follows KCIDB:
/// a kernel splat is a FAIL even when the harness also failed (a panicked guest often
/// never reports); harness failures are ERROR; then the test's own verdict.
public enum VerdictBuilder {
    public struct Input: Sendable {
        public var testID: String
        public var operation: String
        public var probes: [String]
        public var probeChecks: [ProbeCheck]
        public var console: String
        public var records: GuestRecords
        /// The records came from the console fallback, not the virtio port.
        public var recordsFromConsole = false
        /// The paravirt setting the cell asked for, checked against the guest's own log.
        public var paravirt: (requested: Paravirt, arch: Arch)?
        public var timedOut: Bool
        public var startError: String?
        public var wall: Duration
        public var startLatency: Duration?
        public var timeoutSeconds: Int
        /// The widening the cell's test declares, and whether a module came along.
        public var widening: WideningRequest?
        /// Test metrics that must reach a minimum for a result to count.
        public var evidence: [EvidenceCheck] = []

        public init(testID: String, operation: String, probes: [String], probeChecks: [ProbeCheck] = [], console: String,
                    records: GuestRecords, timedOut: Bool, startError: String?, wall: Duration,
                    startLatency: Duration? = nil, timeoutSeconds: Int) {
            self.testID = testID
            self.operation = operation
            self.probes = probes
            self.probeChecks = probeChecks
            self.console = console
            self.records = records
            self.timedOut = timedOut
            self.startError = startError
            self.wall = wall
            self.startLatency = startLatency
            self.timeoutSeconds = timeoutSeconds
        }
    }

    /// Splats kept per cell: a guest can print millions of headlines.
    static let maxSplats = 50

    /// Everything in the input came from the guest: the result's strings are made
    /// visible (GuestText) here, the one place before any report.
    public static func judge(_ input: Input) -> Verdict {
        judgeRaw(input).visible()
    }

    static func judgeRaw(_ input: Input) -> Verdict {
        let records = input.records
        let test = records.tests.first { $0.id == input.testID }
        var verdict = Verdict(status: .pass, timings: CellTimings(
            bootSeconds: records.boot?.uptimeNs.map { Double($0) / 1e9 },
            testSeconds: test.map { Double($0.wallNs) / 1e9 },
            totalSeconds: input.wall.seconds, startSeconds: input.startLatency?.seconds))

        if let boot = records.boot {
            verdict.guest = GuestInfo(uname: boot.uname, cpus: boot.cpus, hugepages: boot.hugepages, probes: boot.probes,
                                      recordsChannel: input.recordsFromConsole ? "console" : "virtio-serial")
        }
        verdict.splats = Array(uniqueSplats(SplatScanner.scan(input.console)
            + SplatScanner.scan(records.boot?.dmesg ?? "") + records.tests.flatMap { SplatScanner.scan($0.kmsg) }).prefix(maxSplats))

        // A stream that was cut, forged or garbled cannot pass, whatever its test says.
        let streamProblem = streamProblems(input)
        var harnessProblem: String?
        var testProblem: (CellStatus, String)?
        if let error = input.startError {
            harnessProblem = "the guest did not start: \(error)"
        } else if let streamProblem {
            harnessProblem = streamProblem
        } else if records.boot == nil {
            harnessProblem = input.timedOut
                ? "no result: the guest did not reach the agent within \(input.timeoutSeconds) s"
                : "no result: the guest stopped before the agent reported"
        } else if let error = records.agentErrors.first {
            harnessProblem = "agent error: \(error)"
        } else if let test, let boot = records.boot {
            let tap = TAPReport.parse(test.output)
            verdict.metrics = tap.metrics
            verdict.checks = guestChecks(tap)
            do {
                verdict.counters = try counters(for: test, tap: tap, input: input)
            } catch {
                harnessProblem = "the guest's counters cannot be used: \(error.message)"
            }
            if let poolCheck = poolCheck(test) { verdict.checks.append(poolCheck) }
            if let pageTableCheck = pageTableCheck(test) { verdict.checks.append(pageTableCheck) }
            if let counters = verdict.counters, test.exit == 0 || test.exit == 1 {
                verdict.checks += input.probeChecks.map { probeCheck($0, counters: counters, registrations: boot.probes) }
            }
            if let widening = input.widening {
                let summary = wideningSummary(widening, boot: records.boot, test: test)
                verdict.widening = summary
                verdict.checks += summary.checks()
                verdict.metrics.merge(summary.metrics) { guest, _ in guest }
            }
            testProblem = testOutcome(test, tap: tap, checks: verdict.checks)
            // Evidence is recorded whatever the outcome; unmet, it only turns a pass into ERROR.
            let unmet = unmetEvidence(input.evidence, tap: tap, checks: &verdict.checks)
            if harnessProblem == nil, testProblem == nil, let unmet {
                harnessProblem = "the test proved nothing: \(unmet)"
            }
            if harnessProblem == nil && testProblem == nil && !records.finished {
                harnessProblem = input.timedOut
                    ? "the guest did not power off within \(input.timeoutSeconds) s after the test"
                    : "the agent stopped without its final record"
            }
        } else {
            harnessProblem = input.timedOut
                ? "timed out after \(input.timeoutSeconds) s before test \(input.testID) reported"
                : "no record for test \(input.testID)"
        }

        verdict.checks.append(Check(name: "no kernel splat", passed: verdict.splats.isEmpty,
                                    detail: verdict.splats.first?.title, source: "host"))
        if let paravirt = input.paravirt, let boot = records.boot {
            let check = paravirtEvidence(requested: paravirt.requested, arch: paravirt.arch, dmesg: boot.dmesg)
            verdict.checks.append(check)
            if !check.passed && harnessProblem == nil && testProblem == nil {
                testProblem = (.fail, "setup: \(check.name): \(check.detail ?? "")")
            }
        }
        if let splat = verdict.splats.first {
            verdict.status = .fail
            verdict.reason = "kernel splat: \(splat.title)" + (streamProblem.map { "; \($0)" } ?? "")
        } else if let harnessProblem {
            verdict.status = .error
            verdict.reason = harnessProblem
        } else if let (status, reason) = testProblem {
            verdict.status = status
            verdict.reason = reason
        }
        if verdict.status == .error || verdict.status == .fail && test == nil {
            verdict.consoleTail = lastLines(input.console, 25)
        }
        return verdict
    }

    /// What makes the guest's output untrustworthy as a whole: a stream the host cut at
    /// its size limit, records the protocol does not allow (duplicates, records after the
    /// final one, console records not asked for, tests the plan does not hold), invalid lines.
    static func streamProblems(_ input: Input) -> String? {
        let records = input.records
        var problems: [String] = []
        if let truncation = records.truncation {
            problems.append("the result channel was cut at the host's size limit (\(truncation.summary)): a truncated stream cannot pass")
        }
        if let truncation = GuestStream.truncation(in: input.console) {
            problems.append("the console was cut at the host's size limit (\(truncation.summary)): a truncated stream cannot pass")
        }
        var disallowed = records.disallowed
        for test in records.tests where test.id != input.testID {
            disallowed.append("a record for test '\(GuestText.excerpt(test.id))', which the plan does not hold")
        }
        if !disallowed.isEmpty {
            problems.append("the result channel held records the protocol does not allow: " + disallowed.prefix(3).joined(separator: "; "))
        }
        if records.rejectedCount > 0 {
            let unparsed = records.unparsedLines > 0 ? ", then \(records.unparsedLines) more line(s) not parsed" : ""
            problems.append("the result channel held invalid records (\(records.rejectedCount) line(s)\(unparsed)): "
                + records.rejected.prefix(3).joined(separator: "; "))
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// The last `count` lines, found from the end: a console can be 16 MiB.
    static func lastLines(_ text: String, _ count: Int) -> String {
        var start = text.endIndex, found = 0
        while start > text.startIndex {
            let previous = text.index(before: start)
            if text[previous].isNewline && previous < text.index(before: text.endIndex) {
                found += 1
                if found == count { break }
            }
            start = previous
        }
        return tail(String(text[start...]), lines: count)
    }

    static func guestChecks(_ tap: TAPReport) -> [Check] {
        tap.results.map { result in
            Check(name: result.description, passed: result.ok || result.skip != nil, skipped: result.skip != nil,
                  detail: result.skip, source: "guest")
        }
    }

    /// The host's own leak check, from the agent's pool snapshots around the test.
    static func poolCheck(_ test: TestRecord) -> Check? {
        let before = test.hugepagesBefore, after = test.hugepagesAfter
        guard let freeBefore = before.free, let freeAfter = after.free else { return nil }
        let passed = freeBefore == freeAfter && before.resv == after.resv && before.surp == after.surp
        return Check(name: "hugetlb pool unchanged across the test", passed: passed,
                     detail: "free \(freeBefore)→\(freeAfter), resv \(before.resv ?? 0)→\(after.resv ?? 0), surplus \(before.surp ?? 0)→\(after.surp ?? 0)",
                     source: "host")
    }

    /// Page tables the test allocated must be freed once it exited: a PMD table whose share
    /// count went wrong, or one an unshare forgot, stays counted in PageTables. PageTables
    /// also counts tables the kernel allocates for itself and never frees: 44 kB once after
    /// the first user processes of a boot (both arches, Debian 6.12), which the agent's
    /// warm-up exec takes before the first test in most boots but not all (2 of 10 cells of
    /// the suite under load), and 0–4 kB per test after that. So a leak is more than
    /// `pageTableSlackKB`: a table leaked every cycle crosses it by the thirteenth cycle;
    /// fewer leaked tables are not told apart from the kernel's own.
    static func pageTableCheck(_ test: TestRecord) -> Check? {
        guard let counts = test.pageTables, let before = counts.before, let after = counts.after,
              before >= 0, after >= 0 else { return nil }
        let waited = counts.settleMs.map { " after \($0) ms" } ?? ""
        let left = after - before
        guard left > pageTableSlackKB else {
            return Check(name: "page tables freed after the test", passed: true,
                         detail: "PageTables \(before) → \(after) kB\(waited) (a leak is over \(pageTableSlackKB) kB)", source: "host")
        }
        return Check(name: "page tables freed after the test", passed: false,
                     detail: "PageTables \(before) → \(after) kB: \(left) kB (\(left / 4) tables of 4 KiB) still allocated\(waited) once the test had exited, more than the kernel's own \(pageTableSlackKB) kB",
                     source: "host")
    }

    static let pageTableSlackKB = 48

    /// What a guest prints when it uses its hypervisor's paravirt features: x86 PV TLB
    /// flush (only with KVM's PV_TLB_FLUSH and steal time), arm64 stolen-time accounting.
    static func paravirtMarker(_ arch: Arch) -> String {
        arch == .x86_64 ? "KVM setup pv remote TLB flush" : "arm-pv: using stolen time PV"
    }

    /// The guest log must agree with the requested paravirt setting.
    static func paravirtEvidence(requested: Paravirt, arch: Arch, dmesg: String) -> Check {
        let marker = paravirtMarker(arch)
        let present = dmesg.contains(marker)
        let passed = present == (requested == .on)
        return Check(name: "paravirt \(requested) in effect", passed: passed,
                     detail: "guest log \(present ? "shows" : "lacks") '\(marker)'", source: "host")
    }

    /// A manifest's probe check. Skipped (not failed) only where the agent found that the
    /// kernel lacks the symbol; without evidence (no registration, no profile entry, no
    /// operation count to divide by) it fails: a check that cannot be made must not
    /// count as passed.
    static func probeCheck(_ check: ProbeCheck, counters: CellCounters, registrations: [ProbeRegistration]) -> Check {
        func noEvidence(_ why: String) -> Check {
            Check(name: check.name, passed: false, detail: "no evidence: \(why)", source: "host")
        }
        guard let registration = registrations.first(where: { $0.symbol == check.probe }) else {
            return noEvidence("the agent did not report probe \(check.probe)")
        }
        switch registration.status {
        case "ok": break
        case "missing":
            return Check(name: check.name, passed: true, skipped: true,
                         detail: "\(check.probe) cannot be probed in this kernel", source: "host")
        default:
            return noEvidence("probe \(check.probe) could not be registered (\(GuestText.excerpt(registration.error ?? registration.status)))")
        }
        guard let probe = counters.probe(check.probe) else {
            return noEvidence("kprobe_profile has no entry for \(check.probe)")
        }
        guard let perOperation = probe.perOperation else {
            return noEvidence("the test reported no operation count (# metric ops) to divide \(probe.hits) hits by")
        }
        return Check(name: check.name, passed: perOperation >= check.minPerOp,
                     detail: String(format: "%.2f per %@, need ≥ %.2f", perOperation, counters.operation, check.minPerOp),
                     source: "host")
    }

    /// The widening module's counters for the test, or why there are none.
    static func wideningSummary(_ widening: WideningRequest, boot: BootRecord?, test: TestRecord) -> WideningSummary {
        switch widening.availability {
        case .off(let reason): return WideningSummary(status: "off", reason: reason, locations: [])
        case .unavailable(let reason): return WideningSummary(status: "unavailable", reason: reason, locations: [])
        case .module: break
        }
        guard let load = boot?.widen, load.status == "ok" else {
            let why = boot?.widen.map { "the module did not load: \($0.status) \($0.error ?? "")" } ?? "the agent reported no widening"
            return WideningSummary(status: "failed", reason: why, locations: [])
        }
        let delta = WideningStats.delta(before: WideningStats.parse(test.widenBefore ?? ""),
                                        after: WideningStats.parse(test.widenAfter ?? ""))
        return WideningSummary(status: "on", reason: nil, locations: delta.locations)
    }

    /// Evidence checks: each becomes a host check; the first unmet one is returned.
    static func unmetEvidence(_ evidence: [EvidenceCheck], tap: TAPReport, checks: inout [Check]) -> String? {
        var unmet: String?
        for item in evidence {
            let value = tap.metrics[item.metric].flatMap(Double.init)
            let met = (value ?? -.infinity) >= item.min
            let detail = value.map { String(format: "%@ = %g, need ≥ %g", item.metric, $0, item.min) }
                ?? "the test reported no \(item.metric) metric"
            // The cell becomes ERROR, not FAIL: the kernel was not found wanting, the test was.
            checks.append(Check(name: item.name, passed: met, detail: detail, source: "host"))
            if !met && unmet == nil { unmet = "\(item.name) (\(detail))" }
        }
        return unmet
    }

    static func testOutcome(_ test: TestRecord, tap: TAPReport, checks: [Check]) -> (CellStatus, String)? {
        if test.timedOut { return (.fail, "test timed out in the guest after \(Double(test.wallNs) / 1e9) s") }
        if test.signal != 0 { return (.fail, "test killed by signal \(test.signal)") }
        if test.exit == 4 || tap.planSkip != nil {
            return (.skip, tap.planSkip ?? tap.diagnostics.last ?? "the test skipped itself (exit 4)")
        }
        if let failed = checks.first(where: { !$0.passed }) {
            return (.fail, "check failed: \(failed.name)" + (failed.detail.map { " (\($0))" } ?? ""))
        }
        if test.exit != 0 {
            let hint = tap.diagnostics.last.map { ": \($0)" } ?? ""
            return (.fail, "test exited with status \(test.exit)\(hint)")
        }
        if tap.results.isEmpty { return (.error, "the test printed no TAP results") }
        if let planned = tap.planned, planned != tap.results.count {
            return (.error, "the test planned \(planned) checks but reported \(tap.results.count)")
        }
        return nil
    }

    static func uniqueSplats(_ splats: [Splat]) -> [Splat] {
        var seen = Set<String>()
        return splats.filter { seen.insert($0.title).inserted }
    }
}
