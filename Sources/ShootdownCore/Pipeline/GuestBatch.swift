import Foundation

/// Several cells that need the same guest, run one after another in one boot
/// (`--isolation batch`). The agent runs the plan's tests in order, logs each start on
/// the console, and ends the boot early after a test that failed, splatted or changed
/// what the next would see (Images/agent/PROTOCOL.md); this type splits what the boot
/// produced back into what each cell saw, and names the cells it never reached.
public enum GuestBatch {
    /// The id of a batch's `position`-th test in its plan and records; a boot of one
    /// cell keeps the single-cell id, so its image and records are as before batches.
    static func testID(position: Int, count: Int) -> String {
        count == 1 ? RunPipeline.programID : "t\(position + 1)"
    }

    /// The agent's console line at each test's start in a batch.
    static func startLine(_ id: String) -> String { "shootdown-agent: test \(id): start" }

    /// What one cell of a batch saw.
    struct Part: Equatable {
        /// The console up to the first test's start (boot), then this test's own lines.
        var console: String
        /// The boot record, this test's record, and the stream's problems (which the
        /// whole boot shares).
        var records: GuestRecords
        /// The guest was stopped at its timeout while this test was the one running.
        var timedOut: Bool
    }

    struct Split: Equatable {
        /// One per cell the boot reached, in plan order.
        var parts: [Part]
        /// Positions of the cells it never reached: they run again in a fresh boot.
        var notRun: [Int]
    }

    /// Cells up to the last one that started (a start line or a record) are judged from
    /// their part; the rest are not run. A boot that started none gives its outcome to
    /// the first, so every boot judges at least one cell and a broken guest cannot send
    /// the same cells round for ever.
    static func split(console: String, records: GuestRecords, testIDs: [String], timedOut: Bool) -> Split {
        let starts = startOffsets(console, testIDs: testIDs)
        let recorded = Set(records.tests.map(\.id))
        let lastStarted = testIDs.indices.last { starts[$0] != nil || recorded.contains(testIDs[$0]) } ?? 0
        let firstStart = starts.compactMap { $0 }.min() ?? console.utf8.count
        let utf8 = console.utf8
        let bootText = String(decoding: utf8.prefix(firstStart), as: UTF8.self)
        let planned = Set(testIDs)
        let foreign = records.tests.filter { !planned.contains($0.id) }
            .map { "a record for test '\(GuestText.excerpt($0.id))', which the plan does not hold" }

        var parts: [Part] = []
        for position in 0...lastStarted {
            var own = bootText
            if let start = starts[position] {
                // To the next start line after this one, whichever test it belongs to.
                let end = starts.compactMap { $0 }.filter { $0 > start }.min() ?? utf8.count
                own += String(decoding: utf8.dropFirst(start).prefix(end - start), as: UTF8.self)
            } else if starts.allSatisfy({ $0 == nil }) {
                own = console
            }
            var part = records
            part.tests = records.tests.filter { $0.id == testIDs[position] }
            part.disallowed += foreign
            // The agent went on to the next test: this one's end was orderly.
            part.finished = records.finished || position < lastStarted
            parts.append(Part(console: own, records: part, timedOut: timedOut && position == lastStarted))
        }
        return Split(parts: parts, notRun: Array(testIDs.indices.dropFirst(lastStarted + 1)))
    }

    /// Byte offset of each test's first start line (the line's own start), or nil.
    static func startOffsets(_ console: String, testIDs: [String]) -> [Int?] {
        var offsets = [Int?](repeating: nil, count: testIDs.count)
        let markers = testIDs.map { Array(startLine($0).utf8) }
        var console = console
        console.withUTF8 { utf8 in
            let bytes = UnsafeRawBufferPointer(utf8)
            GuestStream.forEachLine(bytes) { line, _, _ in
                let lineBytes = [UInt8](line)
                // The marker holds the id and its ": start", so t1's never matches t10's line.
                for (position, marker) in markers.enumerated() where offsets[position] == nil
                    && lineBytes.firstRange(of: marker) != nil {
                    offsets[position] = bytes.baseAddress!.distance(to: line.baseAddress!)
                    break
                }
                return true
            }
        }
        return offsets
    }

    /// The records stream as each cell keeps it, by test id: every line but other tests'
    /// records. One pass over the stream, however many cells share it.
    static func streams(_ stream: Data, ids: [String]) -> [String: Data] {
        struct Envelope: Decodable { var type: String?; var id: String? }
        let decoder = JSONDecoder()
        var out = Dictionary(uniqueKeysWithValues: ids.map { ($0, Data()) })
        stream.withUnsafeBytes { bytes in
            GuestStream.forEachLine(bytes) { line, _, terminated in
                var data = Data(line)
                if terminated { data.append(UInt8(ascii: "\n")) }
                let envelope = try? decoder.decode(Envelope.self, from: Data(line))
                for id in ids where envelope?.type != "test" || envelope?.id == id {
                    out[id]!.append(data)
                }
                return true
            }
        }
        return out
    }
}

/// Which boot a cell ran in, when it shared it with others (result.json `batch`).
public struct BatchPlacement: Sendable, Codable, Equatable {
    /// The boot's name: cells with the same one ran in the same guest.
    public var boot: String
    /// 1-based place in the boot's plan, and the plan's length.
    public var position: Int
    public var size: Int
    /// The whole boot's wall time (host clock); the cell's `total_s` is its share.
    public var bootSeconds: Double

    enum CodingKeys: String, CodingKey {
        case boot, position, size
        case bootSeconds = "boot_s"
    }
}
