import ArgumentParser
import Foundation
import ShootdownCore

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report on a finished (or interrupted) run: terminal summary, results.json, report.html, junit.xml and kcidb.json, rebuilt from its cell folders."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Run id (under the results folder) or run folder.")
    var runFolder: String

    @Option(name: .customLong("kcidb-origin"), help: "KCIDB origin for kcidb.json (lowercase letters, digits, _).")
    var kcidbOrigin = "shootdown"

    func run() throws {
        let context = global.makeContext()
        try reportingErrors {
            let directory = try RunDirectory.locate(runFolder, resultsRoot: context.paths.results)
            let report = try directory.rebuildReport(kcidbOrigin: kcidbOrigin)
            print(TerminalReport.render(report), terminator: "")
            print("results: \(directory.url.path) (results.json, report.html, junit.xml, kcidb.json)")
            if report.failed { throw ExitCode(1) }
        }
    }
}
