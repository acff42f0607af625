import ArgumentParser
import Foundation
import ShootdownCore

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report on a finished (or interrupted) run: terminal summary and results.json, rebuilt from its cell folders."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Run id (under the results folder) or run folder.")
    var runFolder: String

    func run() throws {
        let context = global.makeContext()
        try reportingErrors {
            let directory = try RunDirectory.locate(runFolder, resultsRoot: context.paths.results)
            let report = try directory.rebuildReport()
            print(TerminalReport.render(report), terminator: "")
            print("results: \(directory.url.path)")
            if report.failed { throw ExitCode(1) }
        }
    }
}
