import ArgumentParser
import Foundation
import ShootdownCore

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine shard runs into one run folder with one report."
    )

    @Option(name: .long, help: "The merged run folder to create.")
    var out: String

    @Argument(help: "Run folders to merge (e.g. the shards of one matrix).")
    var runs: [String]

    func run() throws {
        try reportingErrors {
            let report = try RunMerge.merge(runs.map { URL(fileURLWithPath: $0) }, into: URL(fileURLWithPath: out).standardizedFileURL)
            print(TerminalReport.render(report), terminator: "")
            print("results: \(out)")
            if report.failed { throw ExitCode(1) }
        }
    }
}
