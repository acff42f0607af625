import Foundation

/// A rule from a matrix spec's `expect:` list.
public enum Expectation: Sendable, Codable, Equatable, CustomStringConvertible {
    /// The cell's status is one of these.
    case status([CellStatus])
    /// A per-operation figure (`probe:tlb_remove_table_sync_one`, `ipi:CAL`) within bounds.
    case metric(name: String, min: Double?, max: Double?)
    /// How a per-operation figure scales over a swept parameter (or `vcpus`). An undecided
    /// fit (fewer than three values, or noise) meets neither class: the sweep cannot show it.
    case scaling(over: String, metric: String, is: ScalingClass)

    public var description: String {
        switch self {
        case .status(let statuses):
            return "status is " + statuses.map(\.rawValue).joined(separator: " or ")
        case .metric(let name, let min, let max):
            let bounds = [min.map { ">= \(format($0))" }, max.map { "<= \(format($0))" }].compactMap { $0 }
            return "\(name) per op \(bounds.joined(separator: " and "))"
        case .scaling(let over, let metric, let scaling):
            return "\(metric) per op over \(over) is \(scaling.rawValue)"
        }
    }

    var isSweepRule: Bool {
        if case .scaling = self { return true }
        return false
    }
}

func format(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%.3g", value)
}

/// An expectation with the cells it applies to (all, or one arch / kernel / paravirt).
public struct ScopedExpectation: Sendable, Codable, Equatable {
    public var rule: Expectation
    public var arch: Arch?
    public var kernel: String?
    public var paravirt: String?
    /// Set for rules written under one test in a spec.
    public var test: String?

    public init(rule: Expectation, arch: Arch? = nil, kernel: String? = nil, paravirt: String? = nil, test: String? = nil) {
        self.rule = rule
        self.arch = arch
        self.kernel = kernel
        self.paravirt = paravirt
        self.test = test
    }

    func applies(to cell: CellDescriptor) -> Bool {
        (arch == nil || arch == cell.arch) && (kernel == nil || kernel == cell.kernel || kernel == "debian:\(cell.kernelVersion)")
            && (paravirt == nil || paravirt == cell.paravirt) && (test == nil || test == cell.test)
    }

    var text: String {
        let scope = [test.map { "test \($0)" }, arch.map { "arch \($0)" }, kernel.map { "kernel \($0)" },
                     paravirt.map { "paravirt \($0)" }].compactMap { $0 }
        return rule.description + (scope.isEmpty ? "" : " (\(scope.joined(separator: ", ")))")
    }
}

/// Checks expectations against results.
public enum ExpectationCheck {
    /// Cell rules for one cell. Skipped cells measured nothing and are not judged.
    public static func evaluate(_ expectations: [ScopedExpectation], cell result: CellResult) -> [ExpectationOutcome] {
        guard result.status != .skip else { return [] }
        return expectations.filter { !$0.rule.isSweepRule && $0.applies(to: result.cell) }.map { scoped in
            let (met, detail) = judge(scoped.rule, result)
            return ExpectationOutcome(rule: scoped.text, scope: "cell", subject: result.cell.id, met: met, detail: detail)
        }
    }

    static func judge(_ rule: Expectation, _ result: CellResult) -> (Bool, String) {
        switch rule {
        case .status(let statuses):
            return (statuses.contains(result.status), "status \(result.status.rawValue)")
        case .metric(let name, let min, let max):
            guard let value = SweepAnalysis.value(of: name, in: result) else {
                return (false, "\(name) was not measured")
            }
            let met = (min.map { value >= $0 } ?? true) && (max.map { value <= $0 } ?? true)
            return (met, String(format: "%.3f per %@", value, result.counters?.operation ?? "op"))
        case .scaling:
            return (true, "")
        }
    }

    /// Sweep rules against the run's sweep series; a rule that matches no sweep is unmet
    /// (a spec that expects a sweep it does not contain is a broken spec).
    public static func evaluate(_ expectations: [ScopedExpectation], sweeps: [SweepSeries], cells: [CellResult]) -> [ExpectationOutcome] {
        var outcomes: [ExpectationOutcome] = []
        for scoped in expectations {
            guard case .scaling(let over, let metric, let expected) = scoped.rule else { continue }
            let matching = sweeps.filter { series in
                series.axis == over && series.metric == metric
                    && series.points.allSatisfy { point in
                        cells.first { $0.cell.id == point.cell }.map { scoped.applies(to: $0.cell) } ?? false
                    }
            }
            if matching.isEmpty {
                outcomes.append(ExpectationOutcome(rule: scoped.text, scope: "sweep", subject: "over \(over)", met: false,
                                                   detail: "no sweep over \(over) measured \(metric) (only PASS cells count)"))
            }
            for series in matching {
                let fit = series.verdict.fit
                let slope = String(format: "%+.3f", fit.slope) + (fit.slopeStandardError.map { String(format: " ± %.3f", $0) } ?? "")
                outcomes.append(ExpectationOutcome(rule: scoped.text, scope: "sweep", subject: "\(over): \(series.group)",
                                                   met: series.verdict.scaling == expected,
                                                   detail: "\(series.verdict.scaling.rawValue) (slope \(slope) per \(over)"
                                                       + (series.verdict.reason.map { "; \($0)" } ?? "") + ")"))
            }
        }
        return outcomes
    }
}
