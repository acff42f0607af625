import Foundation

/// How B differs from A for one figure, one cell or one sweep.
public enum Change: String, Sendable, Codable, Comparable {
    /// A figure the manifest requires for correctness fell below its floor: the fix is
    /// missing, however much "fewer IPIs" would otherwise read as an improvement.
    case correctnessRegression = "correctness regression"
    case regression, improvement, same, added, removed
    /// A scaling class that one run could not decide; reported, never gated.
    case undecided

    var rank: Int { [.correctnessRegression, .regression, .added, .removed, .improvement, .undecided, .same].firstIndex(of: self)! }
    public static func < (lhs: Change, rhs: Change) -> Bool { lhs.rank < rhs.rank }
}

/// A per-operation figure over a cell's repeats.
public struct Spread: Sendable, Codable, Equatable {
    public var median: Double
    public var min: Double
    public var max: Double
    public var count: Int

    init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        min = sorted.first!
        max = sorted.last!
        count = sorted.count
    }

    func overlaps(_ other: Spread) -> Bool { min <= other.max && other.min <= max }
}

/// Thresholds below which a difference is noise. Probe hits count kernel work and are
/// nearly exact (sync broadcasts per fork+exit are 1.00 run after run); IPI rows also
/// count timers, RCU and scheduling, which vary by ±30% between identical TCG runs.
public struct CompareThresholds: Sendable, Equatable {
    public var probeRelative = 0.2
    public var probeAbsolute = 0.25
    public var ipiRelative = 0.5
    public var ipiAbsolute = 2.0

    public init() {}
}

public struct MetricChange: Sendable, Codable, Equatable {
    public var metric: String
    public var a: Spread
    public var b: Spread
    /// b / a of the medians, when a's is not zero.
    public var ratio: Double?
    public var change: Change
}

public struct CellChange: Sendable, Codable, Equatable {
    /// The cell without its kernel: arch, accel, paravirt, vCPUs, test, parameters.
    public var key: String
    public var statusA: CellStatus?
    public var statusB: CellStatus?
    public var metrics: [MetricChange]
    public var change: Change
    public var note: String
}

public struct ScalingChange: Sendable, Codable, Equatable {
    public var axis: String
    public var group: String
    public var metric: String
    public var a: ScalingClass
    public var b: ScalingClass
    public var change: Change
    /// Why a side is undecided (e.g. "2 swept values …").
    public var note: String?
}

/// Run A (the baseline) against run B (the candidate).
public struct Comparison: Sendable, Codable, Equatable {
    public var runA: String
    public var runB: String
    public var cells: [CellChange]
    public var scaling: [ScalingChange]

    /// Metrics a regression in which fails the gate; others are reported only.
    public static let gatedMetrics: Set<String> = ["probe:tlb_remove_table_sync_one", "probe:tlb_remove_table_smp_sync",
                                                   "probe:huge_pmd_share", "probe:pmdp_collapse_flush",
                                                   "ipi:CAL", "ipi:TLB", "ipi:IPI1"]

    /// `required`: per test, the manifest's probe checks marked `required_for: correctness`
    /// (see `requiredChecks(_:tests:)`); a figure below such a floor in B is a correctness regression.
    public init(a: RunReport, b: RunReport, thresholds: CompareThresholds = CompareThresholds(),
                required: [String: [ProbeCheck]] = [:]) {
        runA = a.runID
        runB = b.runID
        let groupsA = Dictionary(grouping: a.cells, by: Self.key), groupsB = Dictionary(grouping: b.cells, by: Self.key)
        cells = Set(groupsA.keys).union(groupsB.keys).sorted(by: naturallyPrecedes).map { key in
            let cells = groupsB[key] ?? groupsA[key] ?? []
            return Self.compareCell(key: key, a: groupsA[key] ?? [], b: groupsB[key] ?? [], thresholds: thresholds,
                                    required: cells.first.map { required[$0.cell.test] ?? [] } ?? [])
        }
        scaling = Self.compareScaling(a.sweeps, b.sweeps)
    }

    /// The correctness floors of the tests a comparison covers, from their manifests; a test
    /// the catalog no longer has is compared without floors.
    public static func requiredChecks(_ catalog: TemplateCatalog, tests: Set<String>) -> [String: [ProbeCheck]] {
        var required: [String: [ProbeCheck]] = [:]
        for test in tests {
            guard let manifest = try? catalog.template(named: test).manifest else { continue }
            let checks = manifest.probeChecks.filter { $0.requiredFor == .correctness }
            if !checks.isEmpty { required[test] = checks }
        }
        return required
    }

    /// Identity of a cell across kernels: everything but the kernel and the repeat.
    static func key(_ result: CellResult) -> String {
        let cell = result.cell
        let parameters = cell.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return "\(cell.arch) \(cell.accel) pv-\(cell.paravirt) \(cell.vcpus)cpu \(cell.test) \(parameters)"
    }

    static func worstStatus(_ cells: [CellResult]) -> CellStatus? {
        cells.map(\.status).max()
    }

    static func compareCell(key: String, a: [CellResult], b: [CellResult], thresholds: CompareThresholds,
                            required: [ProbeCheck] = []) -> CellChange {
        let statusA = worstStatus(a), statusB = worstStatus(b)
        guard !a.isEmpty else { return CellChange(key: key, statusA: nil, statusB: statusB, metrics: [], change: .added, note: "only in B") }
        guard !b.isEmpty else { return CellChange(key: key, statusA: statusA, statusB: nil, metrics: [], change: .removed, note: "only in A") }
        let bad: Set<CellStatus> = [.fail, .error]
        let passingA = a.filter { $0.status == .pass }, passingB = b.filter { $0.status == .pass }
        var metrics = Set(SweepAnalysis.metrics(passingA)).intersection(SweepAnalysis.metrics(passingB)).sorted().compactMap { metric -> MetricChange? in
            guard let spreadA = Spread(passingA.compactMap { SweepAnalysis.value(of: metric, in: $0) }),
                  let spreadB = Spread(passingB.compactMap { SweepAnalysis.value(of: metric, in: $0) }) else { return nil }
            return MetricChange(metric: metric, a: spreadA, b: spreadB, ratio: spreadA.median > 0 ? spreadB.median / spreadA.median : nil,
                                change: judge(metric, spreadA, spreadB, thresholds))
        }
        // Before any other verdict: a cell that the floor made FAIL at run time is still named
        // for what it is, and a recorded PASS with the sync gone is not an "improvement".
        let broken = required.compactMap { belowFloor($0, a: a, b: b) }
        if !broken.isEmpty {
            for index in metrics.indices where broken.contains(where: { $0.metric == metrics[index].metric }) {
                metrics[index].change = .correctnessRegression
            }
            let status = statusB.map { bad.contains($0) && !bad.contains(statusA ?? .pass) ? "; new \($0.rawValue)" : "" } ?? ""
            return CellChange(key: key, statusA: statusA, statusB: statusB, metrics: metrics, change: .correctnessRegression,
                              note: broken.map(\.note).joined(separator: ", ") + status)
        }
        // The other way round: B has the required figure back. Its IPIs rise with it, which
        // is the fix working, not a regression (a storm still shows in the scaling).
        let restored = required.compactMap { belowFloor($0, a: b, b: a) }
        if !restored.isEmpty && !(statusB.map(bad.contains) ?? false) {
            return CellChange(key: key, statusA: statusA, statusB: statusB, metrics: metrics, change: .improvement,
                              note: restored.map { "correctness restored: " + $0.restoredNote }.joined(separator: ", "))
        }
        if let statusB, bad.contains(statusB), !bad.contains(statusA ?? .pass) {
            return CellChange(key: key, statusA: statusA, statusB: statusB, metrics: [], change: .regression,
                              note: "new \(statusB.rawValue): \(b.first { $0.status == statusB }?.reason ?? "")")
        }
        if let statusA, bad.contains(statusA), !bad.contains(statusB ?? .pass) {
            return CellChange(key: key, statusA: statusA, statusB: statusB, metrics: metrics, change: .improvement,
                              note: "\(statusA.rawValue) → \(statusB?.rawValue ?? "-")")
        }
        let gated = metrics.filter { gatedMetrics.contains($0.metric) }
        let change: Change = gated.contains { $0.change == .regression } ? .regression
            : gated.contains { $0.change == .improvement } ? .improvement : .same
        let notes = gated.filter { $0.change != .same }.map { change in
            String(format: "%@ %.2f → %.2f", TerminalReport.shortName(change.metric), change.a.median, change.b.median)
        }
        return CellChange(key: key, statusA: statusA, statusB: statusB, metrics: metrics, change: change, note: notes.joined(separator: ", "))
    }

    /// A required figure that B's lowest repeat has below the floor (resolved for the cell's
    /// parameters) while A met it in every repeat, or did not measure it. Probe hits repeat
    /// exactly, so one repeat below the floor is the fix missing, not noise. Cells of any
    /// status count: a floor that failed a cell at run time is the same finding.
    static func belowFloor(_ check: ProbeCheck, a: [CellResult], b: [CellResult]) -> (metric: String, note: String, restoredNote: String)? {
        let metric = "probe:" + check.probe
        let floor = check.resolved(b[0].cell.parameters).minPerOp
        let valuesB = b.compactMap { SweepAnalysis.value(of: metric, in: $0) }
        // 1e-9: per-op figures are quotients of counts, and so are floors such as 1/children.
        guard let lowestB = valuesB.min(), lowestB + 1e-9 < floor else { return nil }
        let valuesA = a.compactMap { SweepAnalysis.value(of: metric, in: $0) }
        if let lowestA = valuesA.min(), lowestA + 1e-9 < floor { return nil }
        let operation = b.compactMap(\.counters?.operation).first ?? "op"
        let other = valuesA.isEmpty ? "-" : TerminalReport.number(Spread(valuesA)!.median)
        let name = TerminalReport.shortName(metric), low = TerminalReport.number(lowestB), level = TerminalReport.number(floor)
        return (metric, "correctness: \(name) \(other) → \(low) per \(operation), below its floor \(level)" + (check.why.map { " (\($0))" } ?? ""),
                "\(name) \(low) → \(other) per \(operation), at or above its floor \(level)")
    }

    /// Same when the difference is within the noise thresholds or the repeat spreads
    /// overlap; otherwise more IPIs per operation is a regression.
    static func judge(_ metric: String, _ a: Spread, _ b: Spread, _ thresholds: CompareThresholds) -> Change {
        let probe = metric.hasPrefix("probe:")
        let relative = probe ? thresholds.probeRelative : thresholds.ipiRelative
        let absolute = probe ? thresholds.probeAbsolute : thresholds.ipiAbsolute
        let difference = b.median - a.median
        if abs(difference) < absolute { return .same }
        if a.median > 0 && abs(difference) / a.median < relative { return .same }
        if a.count > 1 && b.count > 1 && a.overlaps(b) { return .same }
        return difference > 0 ? .regression : .improvement
    }

    /// A figure that was constant and became linear in the swept parameter is a regression
    /// (the 1013af4f58 signature); the reverse is an improvement. Both classes must be
    /// decided: a side that is undecided (two swept values, or noise) gives `undecided`,
    /// which is reported and never gates.
    static func compareScaling(_ a: [SweepSeries], _ b: [SweepSeries]) -> [ScalingChange] {
        func key(_ series: SweepSeries) -> String {
            // The group names the kernel version second; compare across kernels without it.
            var words = series.group.split(separator: " ").map(String.init)
            if words.count > 1 { words.remove(at: 1) }
            return "\(series.axis)|\(series.metric)|\(words.joined(separator: " "))"
        }
        let indexA = Dictionary(a.map { (key($0), $0) }, uniquingKeysWith: { first, _ in first })
        return b.compactMap { seriesB in
            guard let seriesA = indexA[key(seriesB)] else { return nil }
            let from = seriesA.verdict.scaling, to = seriesB.verdict.scaling
            let change: Change = from == to ? .same
                : from == .undecided || to == .undecided ? .undecided
                : to == .linear ? .regression : .improvement
            let note = [("A", seriesA.verdict), ("B", seriesB.verdict)].filter { $0.1.scaling == .undecided }
                .compactMap { side, verdict in verdict.reason.map { "\(side): \($0)" } }.joined(separator: "; ")
            return ScalingChange(axis: seriesB.axis, group: seriesB.group, metric: seriesB.metric, a: from, b: to, change: change,
                                 note: change == .undecided && !note.isEmpty ? note : nil)
        }.sorted { ($0.change, $0.metric) < ($1.change, $1.metric) }
    }

    /// What fails the gate: correctness regressions, regressions of cells, and scaling
    /// regressions of the gated metrics (the others are reported, like their cell figures).
    public var regressions: Int {
        cells.filter { $0.change == .regression || $0.change == .correctnessRegression }.count
            + scaling.filter { $0.change == .regression && Self.gatedMetrics.contains($0.metric) }.count
    }

    public var correctnessRegressions: Int {
        cells.filter { $0.change == .correctnessRegression }.count
    }

    /// A summary a reviewer can paste into a mail.
    public var text: String {
        let counts = Dictionary(grouping: cells, by: \.change).mapValues(\.count)
        var lines = ["shootdown compare: \(runA) (A) → \(runB) (B)",
                     "cells: " + [Change.correctnessRegression, .regression, .improvement, .same, .added, .removed].compactMap { change in
                         counts[change].map { "\($0) \(change.rawValue)" } }.joined(separator: ", ")]
        for cell in cells where cell.change != .same {
            lines.append("  \(cell.change.rawValue.uppercased()) \(cell.key)" + (cell.note.isEmpty ? "" : ": \(cell.note)"))
        }
        for change in scaling where change.change != .same {
            let gated = change.change != .regression || Self.gatedMetrics.contains(change.metric) ? "" : " (not gated)"
            lines.append("  \(change.change.rawValue.uppercased())\(gated) scaling of \(change.metric) over \(change.axis): "
                         + "\(change.a.rawValue) → \(change.b.rawValue) (\(change.group))" + (change.note.map { ": \($0)" } ?? ""))
        }
        var table: [[String]] = [["  cell", "metric", "A", "B", "B/A", ""]]
        for cell in cells {
            for metric in cell.metrics where Self.gatedMetrics.contains(metric.metric) || metric.change == .correctnessRegression {
                table.append(["  " + cell.key, TerminalReport.shortName(metric.metric), TerminalReport.number(metric.a.median),
                              TerminalReport.number(metric.b.median), metric.ratio.map { String(format: "%.2f", $0) } ?? "-",
                              metric.change == .same ? "" : metric.change.rawValue])
            }
        }
        if table.count > 1 { lines.append("\nper-operation figures (medians over repeats):\n" + TerminalReport.table(table)) }
        let correctness = correctnessRegressions == 0 ? "" : ", \(correctnessRegressions) of them correctness regression(s)"
        lines.append(regressions == 0 ? "verdict: no regression" : "verdict: \(regressions) regression(s)\(correctness)")
        return lines.joined(separator: "\n") + "\n"
    }
}
