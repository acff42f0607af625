import Foundation
import Testing
@testable import ShootdownCore

/// The guest is the system under test, so its output is hostile input (issue 11). Each
/// stream here is one a broken or misbehaving guest can send; none may crash the host,
/// and none may PASS: each gives ERROR or FAIL with a reason.
@Suite struct HostileGuestTests {
    /// SyntheticGuest's passing test record with some fields replaced.
    static func test(_ overrides: [String: Any]) -> String {
        var object = try! JSONSerialization.jsonObject(with: Data(SyntheticGuest.test().utf8)) as! [String: Any]
        object.merge(overrides) { _, new in new }
        return SyntheticGuest.json(object)
    }

    static func judge(_ lines: [String], console: String = "", probeChecks: [ProbeCheck] = []) -> Verdict {
        SyntheticGuest.judge(lines, console: console, probeChecks: probeChecks)
    }

    static func expectRejected(_ verdict: Verdict, _ status: CellStatus = .error, reason: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(verdict.status == status, "reason: \(verdict.reason ?? "none")", sourceLocation: sourceLocation)
        #expect(verdict.reason?.contains(reason) == true, "reason: \(verdict.reason ?? "none")", sourceLocation: sourceLocation)
    }

    static let interruptsHeader = "           CPU0       CPU1\n"
    static func interrupts(cal: (String, String)) -> String {
        interruptsHeader + "  CAL: \(cal.0) \(cal.1)   Function call interrupts\n  TLB: 5 5   TLB shootdowns\n"
    }

    // MARK: numbers the guest controls

    @Test func interruptCountsBeyondTheKernelsWidthAreRefused() {
        // Two Int.max columns: the old code's total trapped (overflow); one u32+1: forged.
        for after in [("9223372036854775807", "9223372036854775807"), ("4294967296", "1"),
                      ("99999999999999999999999", "1")] {
            let verdict = Self.judge([SyntheticGuest.boot(), Self.test(["interrupts_after": Self.interrupts(cal: after)]),
                                      SyntheticGuest.done])
            Self.expectRejected(verdict, reason: "the guest's counters cannot be used: /proc/interrupts after the test, row CAL")
        }
    }

    @Test func negativeBeforeCountDoesNotTrap() {
        // after - Int.min overflowed in the old code.
        let verdict = Self.judge([SyntheticGuest.boot(),
                                  Self.test(["interrupts_before": Self.interrupts(cal: ("-9223372036854775808", "0")),
                                             "interrupts_after": Self.interrupts(cal: ("1", "1"))]), SyntheticGuest.done])
        Self.expectRejected(verdict, reason: "row CAL: '-9223372036854775808' is not a counter")
    }

    @Test func countersGoingBackwardsAreRejectedNotClamped() {
        let verdict = Self.judge([SyntheticGuest.boot(),
                                  Self.test(["interrupts_before": Self.interrupts(cal: ("100", "200")),
                                             "interrupts_after": Self.interrupts(cal: ("90", "240"))]), SyntheticGuest.done])
        Self.expectRejected(verdict, reason: "/proc/interrupts row CAL CPU0: counter went backwards (100 → 90)")
    }

    @Test func kprobeCountsThatAreNoCountersAreRefused() {
        let before = "  tlb_remove_table_sync_one -9223372036854775808 0\n  huge_pmd_share 0 0\n"
        let verdict = Self.judge([SyntheticGuest.boot(), Self.test(["kprobes_before": before]), SyntheticGuest.done])
        Self.expectRejected(verdict, reason: "kprobe_profile before the test: 'tlb_remove_table_sync_one -9223372036854775808 0' holds no counters")
        let backwards = "  tlb_remove_table_sync_one 50 0\n  huge_pmd_share 0 0\n"
        Self.expectRejected(Self.judge([SyntheticGuest.boot(), Self.test(["kprobes_before": backwards]), SyntheticGuest.done]),
                            reason: "kprobe tlb_remove_table_sync_one hits: counter went backwards (50 → 20)")
    }

    // MARK: records a guest can fake

    @Test func aSecondTestRecordIsAnErrorNotTheFirstOneWins() {
        let failing = SyntheticGuest.test(output: SyntheticGuest.passingTAP.replacingOccurrences(of: "ok 1", with: "not ok 1"), exit: 1)
        for lines in [[SyntheticGuest.boot(), SyntheticGuest.test(), failing, SyntheticGuest.done],
                      [SyntheticGuest.boot(), failing, SyntheticGuest.test(), SyntheticGuest.done]] {
            Self.expectRejected(Self.judge(lines), reason: "line 3: a second record for test 'test' (line 2 is kept)")
        }
    }

    @Test func aSecondBootRecordIsAnError() {
        let verdict = Self.judge([SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.boot(), SyntheticGuest.done])
        Self.expectRejected(verdict, reason: "line 3: a second boot record (line 1 is kept)")
    }

    @Test func recordsAfterTheFinalOneAreAnError() {
        let verdict = Self.judge([SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.done, SyntheticGuest.done])
        Self.expectRejected(verdict, reason: "line 4: a done record after the final one (line 3)")
    }

    @Test func aRecordForATestThePlanDoesNotHoldIsAnError() {
        let verdict = Self.judge([SyntheticGuest.boot(), SyntheticGuest.test(), Self.test(["id": "other"]), SyntheticGuest.done])
        Self.expectRejected(verdict, reason: "a record for test 'other', which the plan does not hold")
    }

    @Test func theConsolePrefixCountsOnlyAtALineStart() {
        // A kernel message or a test that prints the prefix mid-line forges nothing.
        let console = [SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.done]
            .map { "[    2.0] shootdown-test: \(GuestRecords.consolePrefix)\($0)\r\n" }.joined()
        #expect(GuestRecords.fromConsole(console).isEmpty)
        let verdict = Self.judge([], console: console)
        Self.expectRejected(verdict, reason: "no result")
    }

    // MARK: evidence

    @Test func aProbeCheckWithoutAnOperationCountFails() {
        let tap = SyntheticGuest.passingTAP.replacingOccurrences(of: "# metric ops=20\n", with: "")
        let check = ProbeCheck(probe: "huge_pmd_share", minPerOp: 1, name: "children shared the tables")
        let verdict = Self.judge([SyntheticGuest.boot(), SyntheticGuest.test(output: tap), SyntheticGuest.done], probeChecks: [check])
        Self.expectRejected(verdict, .fail, reason: "check failed: children shared the tables (no evidence: the test reported no operation count")
        #expect(verdict.checks.first { $0.name == check.name }?.skipped == false)
    }

    @Test func aProbeCheckWithoutAProfileEntryOrRegistrationFails() {
        let check = ProbeCheck(probe: "huge_pmd_share", minPerOp: 1, name: "shared")
        let noEntry = Self.test(["kprobes_after": "  tlb_remove_table_sync_one 20 0\n"])
        Self.expectRejected(Self.judge([SyntheticGuest.boot(), noEntry, SyntheticGuest.done], probeChecks: [check]), .fail,
                            reason: "no evidence: kprobe_profile has no entry for huge_pmd_share")
        let unregistered = SyntheticGuest.boot().replacingOccurrences(of: #"{"status":"ok","symbol":"huge_pmd_share"}"#,
                                                                      with: #"{"error":"Invalid argument","status":"error","symbol":"huge_pmd_share"}"#)
        #expect(unregistered != SyntheticGuest.boot())
        Self.expectRejected(Self.judge([unregistered, SyntheticGuest.test(), SyntheticGuest.done], probeChecks: [check]), .fail,
                            reason: "no evidence: probe huge_pmd_share could not be registered (Invalid argument)")
    }

    // MARK: text that reaches a terminal

    @Test func escapeSequencesFromTheGuestAreMadeVisibleEverywhere() throws {
        let escape = "\u{1b}[2J\u{1b}]0;owned\u{07}"
        let tap = SyntheticGuest.passingTAP.replacingOccurrences(of: "ok 2 hugetlb pool back to baseline", with: "not ok 2 pool \(escape)\u{9b}31m")
        let kmsg = "4,512,2000000,-;WARNING: CPU: 1 PID: 88 at mm/x.c:1 \(escape)\u{202e}evil\n"
        let verdict = Self.judge([SyntheticGuest.boot(), SyntheticGuest.test(output: tap, exit: 1, kmsg: kmsg), SyntheticGuest.done])
        #expect(verdict.status == .fail)
        #expect(verdict.reason == #"kernel splat: WARNING: CPU: 1 PID: 88 at mm/x.c:1 \x1b[2J\x1b]0;owned\x07\u{202e}evil"#)
        #expect(verdict.checks.contains { $0.name == #"pool \x1b[2J\x1b]0;owned\x07\u{9b}31m"# })
        let result = SyntheticGuest.cellResult(verdict)
        let json = String(decoding: try JSONEncoder().encode(result), as: UTF8.self)
        #expect(!json.contains(#"\u001b"#) && !json.contains("\u{9b}") && !json.contains("\u{202e}"))
        var raw = result
        raw.reason = "raw \(escape)"  // a result.json written before the fix
        for text in [TerminalReport.render([result]), TerminalReport.render([raw])] {
            #expect(!text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || (0x7f...0x9f).contains($0.value) })
            #expect(text.contains(#"\x1b[2J"#))
        }
    }

    @Test func visibleTextIsIdempotentAndKeepsLines() {
        let text = "a\tb\nc\u{1b}d\u{0}\r\u{7f}\u{85}"
        #expect(GuestText.visible(text) == "a\tb\n" + #"c\x1bd\x00\x0d\x7f\u{85}"#)
        #expect(GuestText.visible(GuestText.visible(text)) == GuestText.visible(text))
        #expect(GuestText.excerpt(String(repeating: "x", count: 500)).count == 81)
    }
}
