import Foundation

/// One per-operation figure followed across a swept axis, with its scaling verdict.
public struct SweepSeries: Sendable, Codable, Equatable {
    public struct Point: Sendable, Codable, Equatable {
        public var x: Double
        public var y: Double
        public var cell: String
    }

    /// The swept parameter (`gib`), or `vcpus`.
    public var axis: String
    /// What stays fixed: arch, kernel, accel, vCPUs and the other parameters.
    public var group: String
    /// `ipi:CAL`, `probe:tlb_remove_table_sync_one`.
    public var metric: String
    public var operation: String
    public var points: [Point]
    public var verdict: ScalingVerdict
    /// What the series' shape says about the kernel, where it says something (how far a
    /// sync reaches, over vCPUs).
    public var signature: String? = nil
}

/// Finds the sweeps in a run's results and classifies how each counter scales.
public enum SweepAnalysis {
    public static func series(_ results: [CellResult]) -> [SweepSeries] {
        let usable = results.filter { $0.status == .pass && $0.counters?.operations != nil }
        var series: [SweepSeries] = []
        for axis in axes(usable) {
            let groups = Dictionary(grouping: usable) { groupKey($0, excluding: axis) }
            for (group, cells) in groups.sorted(by: { naturallyPrecedes($0.key, $1.key) }) {
                let xs = Set(cells.compactMap { x(of: $0, axis: axis) })
                guard xs.count >= 2 else { continue }
                for metric in metrics(cells) {
                    let points = cells.compactMap { cell -> SweepSeries.Point? in
                        guard let x = x(of: cell, axis: axis), let y = value(of: metric, in: cell) else { return nil }
                        return SweepSeries.Point(x: x, y: y, cell: cell.cell.id)
                    }.sorted { ($0.x, $0.cell) < ($1.x, $1.cell) }
                    guard points.count == cells.count,
                          let verdict = ScalingVerdict.classify(points.map { ($0.x, $0.y) }) else { continue }
                    series.append(SweepSeries(axis: axis, group: group, metric: metric,
                                              operation: cells[0].counters?.operation ?? "op", points: points, verdict: verdict,
                                              signature: signature(axis: axis, metric: metric, points: points, verdict: verdict)))
                }
            }
        }
        return series
    }

    /// Numeric test parameters and the vCPU count, where the run holds several values.
    static func axes(_ results: [CellResult]) -> [String] {
        var axes: [String] = []
        let names = Set(results.flatMap { $0.cell.parameters.keys }).sorted()
        for name in names where Set(results.compactMap { $0.cell.parameters[name]?.intValue }).count > 1 {
            axes.append(name)
        }
        if Set(results.map(\.cell.vcpus)).count > 1 { axes.append("vcpus") }
        return axes
    }

    static func x(of result: CellResult, axis: String) -> Double? {
        axis == "vcpus" ? Double(result.cell.vcpus) : result.cell.parameters[axis]?.intValue.map(Double.init)
    }

    static func groupKey(_ result: CellResult, excluding axis: String) -> String {
        let cell = result.cell
        var parts = [cell.arch.rawValue, cell.kernelVersion, cell.accel.rawValue, "pv-\(cell.paravirt)", cell.test]
        if axis != "vcpus" { parts.insert("\(cell.vcpus)cpu", at: 3) }
        parts += cell.parameters.filter { $0.key != axis }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return parts.joined(separator: " ")
    }

    /// The test's own wall time per operation (its `wall_ns` over the measured loop), in µs:
    /// the storm as users feel it, next to the counts.
    public static let wallMetric = "time:wall_us"
    /// CPUs each GUP-fast sync reached: delivered sync IPIs (tlb_remove_table_smp_sync, one
    /// per remote CPU) over syncs entered. Over vCPUs it tells a broadcast to every online
    /// CPU (vCPUs − 1) from one to the CPUs the mm ran on.
    public static let reachMetric = "reach:tlb_remove_table_sync_one"

    /// Metrics every cell of the group reports per operation, and the derived ones every
    /// cell has the inputs for.
    static func metrics(_ cells: [CellResult]) -> [String] {
        let perCell = cells.map { cell -> Set<String> in
            let counters = cell.counters
            return Set((counters?.ipis ?? []).filter { $0.perOperation != nil }.map { "ipi:\($0.name)" }
                + (counters?.probes ?? []).filter { $0.perOperation != nil }.map { "probe:\($0.symbol)" }
                + [wallMetric, reachMetric].filter { value(of: $0, in: cell) != nil })
        }
        return perCell.dropFirst().reduce(perCell.first ?? []) { $0.intersection($1) }.sorted()
    }

    static func value(of metric: String, in result: CellResult) -> Double? {
        guard let counters = result.counters else { return nil }
        if metric.hasPrefix("ipi:") { return counters.ipi(String(metric.dropFirst(4)))?.perOperation }
        if metric.hasPrefix("probe:") { return counters.probe(String(metric.dropFirst(6)))?.perOperation }
        if metric == wallMetric {
            guard let nanoseconds = result.metrics["wall_ns"].flatMap(Double.init), nanoseconds > 0,
                  let operations = counters.operations, operations > 0 else { return nil }
            return nanoseconds / 1000 / Double(operations)
        }
        if metric == reachMetric {
            guard let entered = counters.probe("tlb_remove_table_sync_one"), entered.hits > 0, entered.missed == 0,
                  let delivered = counters.probe("tlb_remove_table_smp_sync"), delivered.missed == 0 else { return nil }
            return Double(delivered.hits) / Double(entered.hits)
        }
        return nil
    }

    /// How far the syncs reached over vCPUs: every other online CPU at every point (a
    /// broadcast), or the same number whatever the vCPUs (only the mm's CPUs).
    static func signature(axis: String, metric: String, points: [SweepSeries.Point], verdict: ScalingVerdict) -> String? {
        guard axis == "vcpus", metric == reachMetric else { return nil }
        if points.allSatisfy({ abs($0.y - ($0.x - 1)) <= 0.05 * max(1, $0.x - 1) }) {
            return "every sync reached every other online CPU (vCPUs − 1 at each point): a broadcast to all CPUs"
        }
        if verdict.scaling == .constant {
            return "each sync reached about the same number of CPUs whatever the vCPUs: only the CPUs the mm ran on, not all online"
        }
        return "the syncs reached fewer CPUs than were online, and not a fixed number: neither a broadcast to all nor to a fixed set"
    }
}
