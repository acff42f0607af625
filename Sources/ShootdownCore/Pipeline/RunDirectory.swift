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

    /// A new run folder. A given id must be new (reusing one would merge two runs; resume
    /// an old run with --resume instead); a generated one is retried until it is new, so
    /// concurrent runs on one results root never share a folder.
    public static func create(root: URL, runID: String? = nil,
                              newID: () -> String = { RunDirectory.newRunID() }) throws -> RunDirectory {
        if let runID { try validate(runID: runID) }
        try FileManager.default.makeDirectory(root)
        for _ in 0..<100 {
            let id = runID ?? newID()
            let url = root.appendingPathComponent(id)
            // mkdir, not createDirectory(withIntermediateDirectories:): it fails on an existing folder.
            if mkdir(url.path, 0o755) == 0 { return RunDirectory(url: url) }
            let error = errno
            guard error == EEXIST else {
                throw ShootdownError.io(path: url.path, message: "cannot create the run folder: \(String(cString: strerror(error)))")
            }
            if runID != nil {
                throw ShootdownError.usage("--run-id \(id): \(url.path) exists already; continue that run with --resume \(id), or choose another id")
            }
        }
        throw ShootdownError.io(path: root.path, message: "no free run id after 100 tries")
    }

    /// A run id names a folder directly under the results root: letters, digits, `.`, `_`,
    /// `-`, not starting with `.` (no `..`, no `/`, no hidden folders), at most 100.
    public static func validate(runID: String) throws {
        let allowed = runID.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
        guard !runID.isEmpty, runID.count <= 100, allowed, !runID.hasPrefix(".") else {
            throw ShootdownError.usage("--run-id \(runID): use 1 to 100 letters, digits, '.', '_' or '-', not starting with '.'")
        }
    }

    /// Space a run needs before it starts: a cell writes its initramfs (a few MiB), console
    /// and records.
    public static let minimumFreeBytes: UInt64 = 64 << 20

    /// Proves the folder takes files (a read-only mount or a full disk), before any build.
    public func checkWritable(minimumFree: UInt64 = RunDirectory.minimumFreeBytes) throws {
        let probe = url.appendingPathComponent(".write-check-\(getpid())-\(UUID().uuidString.prefix(8))")
        do {
            try writeAtomically(Data(count: 4096), to: probe)
            try? FileManager.default.removeItem(at: probe)
        } catch let error as ShootdownError {
            throw ShootdownError.io(path: url.path, message: "results cannot be written here (\(error)); use --results DIR")
        }
        var info = statvfs()
        if statvfs(url.path, &info) == 0 {
            let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
            if free < minimumFree {
                throw ShootdownError.io(path: url.path, message: "only \(free >> 20) MiB free; a run needs at least \(minimumFree >> 20) MiB (free some space or use --results DIR)")
            }
        }
    }

    /// run.json, if the run has one.
    public func readManifest() throws -> RunManifest? {
        let file = url.appendingPathComponent("run.json")
        guard let data = try? Data(contentsOf: file) else { return nil }
        do {
            return try JSONDecoder().decode(RunManifest.self, from: data)
        } catch {
            throw ShootdownError.io(path: file.path, message: "not a shootdown run.json (\(error))")
        }
    }

    public static func newRunID(now: Date = Date()) -> String {
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
