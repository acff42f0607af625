import Foundation

/// `results/<run-id>/`: the run's manifest and one folder per cell. A cell's files are
/// written before its result.json, so a result.json on disk means the cell is complete.
public struct RunDirectory: Sendable {
    public let url: URL
    public var runID: String { url.lastPathComponent }

    public init(url: URL) {
        self.url = url
    }

    /// A run given by id (under the results folder) or by path.
    public static func locate(_ run: String, resultsRoot: URL) throws -> RunDirectory {
        let candidates = [resultsRoot.appendingPathComponent(run), URL(fileURLWithPath: run)]
        guard let url = candidates.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("run.json").path) }) else {
            throw ShootdownError.usage("no run at \(candidates.map(\.path).joined(separator: " or ")) (a run folder holds run.json)")
        }
        return RunDirectory(url: url)
    }

    public static func create(root: URL, runID: String? = nil) throws -> RunDirectory {
        let id = runID ?? Self.newRunID()
        let url = root.appendingPathComponent(id)
        try FileManager.default.makeDirectory(url)
        return RunDirectory(url: url)
    }

    static func newRunID(now: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: now) + "-" + String(UInt16.random(in: 0...UInt16.max), radix: 16)
    }

    public func cellDirectory(_ id: String) -> URL { url.appendingPathComponent(id) }

    /// Files that accompany a cell's result.
    public struct CellArtifacts: Sendable {
        public var console: Data = Data()
        public var records: Data = Data()
        public var dmesg: String?
        public var testOutput: String?
        public var domainXML: String?
        public var initramfs: Data?
        public var initramfsListing: String?
        public var reproducer: String?

        public init() {}
    }

    @discardableResult
    public func write(_ result: CellResult, artifacts: CellArtifacts) throws -> URL {
        let directory = cellDirectory(result.cell.id)
        try FileManager.default.makeDirectory(directory)
        func put(_ name: String, _ data: Data?) throws {
            if let data { try writeAtomically(data, to: directory.appendingPathComponent(name)) }
        }
        try put("console.log", artifacts.console)
        try put("records.jsonl", artifacts.records)
        try put("dmesg.txt", artifacts.dmesg.map { Data($0.utf8) })
        try put("output.tap", artifacts.testOutput.map { Data($0.utf8) })
        try put("domain.xml", artifacts.domainXML.map { Data($0.utf8) })
        try put("initramfs.cpio", artifacts.initramfs)
        try put("initramfs.txt", artifacts.initramfsListing.map { Data($0.utf8) })
        if let reproducer = artifacts.reproducer {
            let path = directory.appendingPathComponent("reproduce.sh")
            try writeAtomically(reproducer, to: path)
            chmod(path.path, 0o755)
        }
        try put("result.json", try Self.encoder.encode(result))
        return directory
    }

    public func writeManifest<T: Encodable>(_ manifest: T) throws {
        try writeAtomically(try Self.encoder.encode(manifest), to: url.appendingPathComponent("run.json"))
    }

    /// results.json: the whole run as one document (RunReport).
    public func writeReport(_ report: RunReport) throws {
        try writeAtomically(try Self.encoder.encode(report), to: url.appendingPathComponent("results.json"))
    }

    /// Every report format beside results.json: report.html, junit.xml, kcidb.json.
    @discardableResult
    public func writeReports(_ report: RunReport, kcidbOrigin: String = "shootdown") throws -> [URL] {
        try writeReport(report)
        let files: [(String, String)] = [
            ("report.html", HTMLReport.render(report)),
            ("junit.xml", try JUnitReport.render(report)),
            ("kcidb.json", try KCIDBReport.render(report, origin: kcidbOrigin)),
        ]
        return try files.map { name, text in
            let file = url.appendingPathComponent(name)
            try writeAtomically(text, to: file)
            return file
        }
    }

    public func readReport() throws -> RunReport? {
        let file = url.appendingPathComponent("results.json")
        guard let data = try? Data(contentsOf: file) else { return nil }
        do {
            return try JSONDecoder().decode(RunReport.self, from: data)
        } catch {
            throw ShootdownError.io(path: file.path, message: "not a shootdown results.json (\(error))")
        }
    }

    /// Every complete cell result in the run, in cell-id order.
    public func results() throws -> [CellResult] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return try entries.sorted().compactMap { entry in
            let file = url.appendingPathComponent(entry).appendingPathComponent("result.json")
            guard let data = try? Data(contentsOf: file) else { return nil }
            do {
                return try JSONDecoder().decode(CellResult.self, from: data)
            } catch {
                throw ShootdownError.io(path: file.path, message: "not a shootdown result (\(error))")
            }
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

extension RunDirectory {
    /// Recomputes results.json and the other reports from the cell folders: sweeps,
    /// sweep expectations (from the request in run.json unless one is given).
    public func rebuildReport(request: RunRequest? = nil, kcidbOrigin: String = "shootdown") throws -> RunReport {
        let manifest = (try? Data(contentsOf: url.appendingPathComponent("run.json")))
            .flatMap { try? JSONDecoder().decode(RunManifest.self, from: $0) }
        let request = request ?? manifest?.request
        let results = try self.results()
        let sweeps = SweepAnalysis.series(results)
        let rules = (request?.expectations ?? []) + (request?.tests.flatMap(\.expectations) ?? [])
        let report = RunReport(runID: runID, name: request?.name ?? "run", cells: results, sweeps: sweeps,
                               sweepExpectations: ExpectationCheck.evaluate(rules, sweeps: sweeps, cells: results))
        try writeReports(report, kcidbOrigin: kcidbOrigin)
        return report
    }
}
