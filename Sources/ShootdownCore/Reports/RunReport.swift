import Foundation

/// One expectation from a matrix spec, checked against a cell or a sweep.
public struct ExpectationOutcome: Sendable, Codable, Equatable {
    /// The rule as written, e.g. `probe:tlb_remove_table_sync_one per op <= 1.5`.
    public var rule: String
    /// "cell" or "sweep".
    public var scope: String
    /// The cell id, or the sweep's axis and group.
    public var subject: String
    public var met: Bool
    /// What was measured, e.g. `1.00 per fork-exit`.
    public var detail: String

    public init(rule: String, scope: String, subject: String, met: Bool, detail: String) {
        self.rule = rule
        self.scope = scope
        self.subject = subject
        self.met = met
        self.detail = detail
    }
}

/// A whole run as one document: results.json, and the input of every report
/// (terminal, JUnit, KCIDB, HTML). Its schema is documented in docs/results-schema.md.
public struct RunReport: Sendable, Codable, Equatable {
    public static let schemaVersion = 1

    public var schema = RunReport.schemaVersion
    public var runID: String
    /// The matrix spec's name, or "run" for `shootdown run`.
    public var name: String
    public var cells: [CellResult]
    public var sweeps: [SweepSeries]
    /// Expectations on sweeps; cell expectations live in each cell.
    public var sweepExpectations: [ExpectationOutcome]
    public var summary: [String: Int]

    enum CodingKeys: String, CodingKey {
        case schema, name, cells, sweeps, summary
        case runID = "run_id", sweepExpectations = "sweep_expectations"
    }

    public init(runID: String, name: String, cells: [CellResult], sweeps: [SweepSeries],
                sweepExpectations: [ExpectationOutcome] = []) {
        self.runID = runID
        self.name = name
        self.cells = cells
        self.sweeps = sweeps
        self.sweepExpectations = sweepExpectations
        summary = Dictionary(grouping: cells, by: { $0.status.rawValue }).mapValues(\.count)
    }

    /// FAIL or ERROR cells, or unmet sweep expectations.
    public var failed: Bool {
        cells.contains { $0.status == .fail || $0.status == .error } || sweepExpectations.contains { !$0.met }
    }
}
