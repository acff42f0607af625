import Foundation

/// Combines shard runs (or any runs) into one run folder with one report.
public enum RunMerge {
    public static func merge(_ runs: [URL], into destination: URL) throws -> RunReport {
        guard !runs.isEmpty else { throw ShootdownError.usage("merge needs at least one run folder") }
        let manifests = try runs.map { run -> RunManifest in
            let file = run.appendingPathComponent("run.json")
            guard let data = try? Data(contentsOf: file) else {
                throw ShootdownError.io(path: file.path, message: "missing: is \(run.path) a shootdown run folder?")
            }
            do {
                return try JSONDecoder().decode(RunManifest.self, from: data)
            } catch {
                throw ShootdownError.io(path: file.path, message: "not a shootdown run.json (\(error))")
            }
        }
        let output = try RunDirectory.create(root: destination.deletingLastPathComponent(), runID: destination.lastPathComponent)
        var seen: [String: URL] = [:]
        for run in runs {
            for result in try RunDirectory(url: run).results() {
                let id = result.cell.id
                if let earlier = seen[id] {
                    throw ShootdownError.usage("cell \(id) is in both \(earlier.path) and \(run.path); merge shards of one matrix, not overlapping runs")
                }
                seen[id] = run
                let target = output.cellDirectory(id)
                try? FileManager.default.removeItem(at: target)
                do {
                    try FileManager.default.copyItem(at: run.appendingPathComponent(id), to: target)
                } catch {
                    throw ShootdownError.io(path: target.path, message: error.localizedDescription)
                }
            }
        }
        var manifest = manifests[0]
        manifest.cells = manifests.flatMap(\.cells)
        try output.writeManifest(manifest)
        return try output.rebuildReport(request: manifest.request)
    }
}
