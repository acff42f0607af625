import Foundation
import Testing
@testable import ShootdownCore

/// Streams too big, cut, or on the wrong channel (issue 11), and a generated corpus.
@Suite struct HostileStreamTests {
    static let good = [SyntheticGuest.boot(), SyntheticGuest.test(), SyntheticGuest.done]

    static func judge(_ records: GuestRecords, console: String = "") -> Verdict {
        VerdictBuilder.judge(.init(testID: "test", operation: "fork-exit", probes: ["tlb_remove_table_sync_one"], console: console,
                                   records: records, timedOut: false, startError: nil, wall: .seconds(6), timeoutSeconds: 60))
    }

    @Test(.timeLimit(.minutes(1)))
    func sixtyFourMiBOfJunkLinesParseInLinearTime() {
        // 32 Mi two-byte lines, then a valid stream: the old parser split the whole stream
        // again for every rejected line and never finished.
        var data = Data(repeating: UInt8(ascii: "x"), count: 64 << 20)
        data.withUnsafeMutableBytes { bytes in
            for index in stride(from: 1, to: bytes.count, by: 2) { bytes[index] = UInt8(ascii: "\n") }
        }
        data.append(contentsOf: Self.good.joined(separator: "\n").utf8)
        let clock = ContinuousClock(), started = clock.now
        let records = GuestRecords.parse(data)
        print("64 MiB of junk lines parsed in \(clock.now - started)")
        #expect(records.rejectedCount == GuestRecords.maxProblemLines)
        #expect(records.rejected.count == GuestRecords.keptReasons)
        #expect(records.unparsedLines == (32 << 20) - GuestRecords.maxProblemLines + 3)
        #expect(records.truncation == nil)
        let verdict = Self.judge(records)
        #expect(verdict.status == .error)
        #expect(verdict.reason?.hasPrefix("the result channel held invalid records (1000 line(s), then 33553435 more line(s) not parsed): line 1: invalid record (not JSON)") == true)
    }

    @Test func anOversizedLineIsRejected() {
        let huge = #"{"type":"agent-error","message":""# + String(repeating: "a", count: GuestRecords.maxLineBytes) + #""}"#
        let records = GuestRecords.parse(Data((Self.good + [huge]).joined(separator: "\n").utf8))
        #expect(records.agentErrors.isEmpty)
        let verdict = Self.judge(records)
        #expect(verdict.status == .error)
        #expect(verdict.reason?.contains("line 4: 4194339 bytes, over the 4194304-byte limit") == true)
    }

    /// Writes `data` to a scratch file and reads it back as the launcher does.
    static func readBack(_ data: Data, limit: Int) throws -> Data {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-hostile-\(UUID().uuidString)")
        try data.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return GuestStream.read(path: url.path, limit: limit)
    }

    @Test func aTruncatedRecordsStreamKeepsItsTailAndCannotPass() throws {
        // Blank lines (skipped, not rejected) push the stream past the limit: the final
        // records are in the tail, and the cut is reported.
        let padding = Array(repeating: "", count: 100_000)
        let stream = Data(([Self.good[0]] + padding + Self.good[1...]).joined(separator: "\n").utf8)
        let limit = 64 << 10
        #expect(try Self.readBack(Data(Self.good.joined(separator: "\n").utf8), limit: limit) == Data(Self.good.joined(separator: "\n").utf8))
        let bounded = try Self.readBack(stream, limit: limit)
        #expect(bounded.count <= limit + 100)
        #expect(bounded == GuestStream.bounded(stream, limit: limit))
        let records = GuestRecords.parse(bounded)
        #expect(records.finished && records.tests.count == 1 && records.boot != nil)
        let truncation = try #require(records.truncation)
        #expect(truncation.skippedBytes == stream.count - bounded.count + String(decoding: bounded, as: UTF8.self)
            .lines().first { $0.hasPrefix(GuestStream.truncationMarker) }!.utf8.count + 1)
        let verdict = Self.judge(records)
        #expect(verdict.status == .error)
        #expect(verdict.reason?.hasPrefix("the result channel was cut at the host's size limit (") == true)
        #expect(verdict.reason?.contains("a truncated stream cannot pass") == true)
    }

    @Test func aLateSplatInATruncatedConsoleIsStillSeen() throws {
        let noise = String(repeating: "[    1.000000] noise noise noise noise noise\r\n", count: 3000)
        let console = noise + "[    9.000000] BUG: unable to handle page fault for address: 0000000000001234\r\n[    9.1] ---[ end trace ]---\r\n"
        let bounded = String(decoding: try Self.readBack(Data(console.utf8), limit: 32 << 10), as: UTF8.self)
        let verdict = Self.judge(GuestRecords.parse(Data(Self.good.joined(separator: "\n").utf8)), console: bounded)
        #expect(verdict.status == .fail)
        #expect(verdict.reason?.hasPrefix("kernel splat: BUG: unable to handle page fault") == true)
        #expect(verdict.reason?.contains("the console was cut at the host's size limit") == true)
        // Without a splat the cut alone keeps the cell from passing.
        let quiet = String(decoding: try Self.readBack(Data(noise.utf8), limit: 32 << 10), as: UTF8.self)
        #expect(Self.judge(GuestRecords.parse(Data(Self.good.joined(separator: "\n").utf8)), console: quiet).status == .error)
    }

    @Test func aDownloadThatHitItsLimitIsMarkedTruncated() {
        let head = Data(Self.good.joined(separator: "\n").utf8) + Data("\n{\"type\":\"te".utf8)
        let records = GuestRecords.parse(GuestStream.bounded(head, limit: head.count, complete: false))
        #expect(records.truncation == GuestStream.Truncation(skippedBytes: nil))
        #expect(records.rejectedCount == 0)
        #expect(Self.judge(records).reason?.contains("the rest was not read") == true)
    }

    @Test func consoleRecordsOnlyWhenAsked() {
        let consoleRecords = Self.good.map { GuestRecords.consolePrefix + $0 + "\r\n" }.joined()
        let port = Data(Self.good.joined(separator: "\n").utf8)
        // No config seen, no port output: the fallback the protocol describes.
        let asked = GuestRecords.collect(port: Data(), console: consoleRecords, consoleFallback: true)
        #expect(asked.fromConsole && Self.judge(asked.records).status == .pass)
        // A kernel known to have the port: console records are not trusted.
        let unasked = GuestRecords.collect(port: Data(), console: consoleRecords, consoleFallback: false)
        #expect(!unasked.fromConsole && unasked.stream.isEmpty)
        let verdict = Self.judge(unasked.records)
        #expect(verdict.status == .error)
        #expect(verdict.reason == "the result channel held records the protocol does not allow: the console carried 3 record line(s), but this kernel has a result port (its config was checked); console records are not trusted")
        // Records on the console while the port was used: forged or misplaced, never merged.
        for fallback in [true, false] {
            let both = GuestRecords.collect(port: port, console: consoleRecords, consoleFallback: fallback)
            #expect(!both.fromConsole && both.stream == port)
            #expect(Self.judge(both.records).reason?.contains("record line(s) while the result port was in use") == true)
        }
        let clean = GuestRecords.collect(port: port, console: "[    1.0] booted\r\n", consoleFallback: false)
        #expect(Self.judge(clean.records).status == .pass)
    }

    @Test func theGeneratedCorpusNeverCrashesAndHostileStreamsNeverPass() throws {
        let corpus = try HostileCorpus.generate(count: 10_000, seed: 0x5_1100_7D0)
        let clock = ContinuousClock(), started = clock.now
        var byStatus: [CellStatus: Int] = [:]
        for stream in corpus {
            let collected = GuestRecords.collect(port: stream.port, console: stream.console, consoleFallback: stream.consoleFallback)
            var input = VerdictBuilder.Input(testID: "test", operation: "fork-exit", probes: HostileCorpus.probes,
                                             probeChecks: HostileCorpus.probeChecks, console: stream.console,
                                             records: collected.records, timedOut: false, startError: nil,
                                             wall: .seconds(6), timeoutSeconds: 60)
            input.recordsFromConsole = collected.fromConsole
            let verdict = VerdictBuilder.judge(input)
            byStatus[verdict.status, default: 0] += 1
            if stream.mustNotPass {
                #expect(verdict.status == .error || verdict.status == .fail, "\(stream.name): \(verdict.status) \(verdict.reason ?? "")")
            }
            if verdict.status != .pass {
                #expect(verdict.reason?.isEmpty == false, "\(stream.name): no reason")
            }
            let text = [verdict.reason ?? "", verdict.consoleTail ?? ""] + verdict.checks.flatMap { [$0.name, $0.detail ?? ""] }
                + verdict.splats.map(\.excerpt) + verdict.metrics.flatMap { [$0.key, $0.value] }
            #expect(!text.contains { $0.unicodeScalars.contains(where: GuestText.needsEscape) }, "\(stream.name): raw control text")
        }
        let elapsed = clock.now - started
        print("hostile corpus: \(corpus.count) streams (\(corpus.filter(\.mustNotPass).count) must not pass) through collect → judge in \(elapsed); \(byStatus.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", "))")
        // Its time is a figure (docs/reliability.md), not an assertion: a loaded CI host
        // must not turn speed into a failure.
        #expect(corpus.count >= 10_000)
        // The unmutated fixtures pass: a corpus where everything fails would prove nothing.
        #expect(byStatus[.pass, default: 0] > 0)
    }
}
