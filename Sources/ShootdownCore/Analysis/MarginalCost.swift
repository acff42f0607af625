import Foundation

/// The cost of one more operation: the slope of a figure's loop totals against the
/// operation count, over cells that differ only in a parameter that sets that count
/// (`cycles`, `rounds`, …), repeats included. What the loop pays once whatever the count
/// (its first fault, a warm cache) falls into the intercept instead of every per-op figure.
public struct MarginalCost: Sendable, Equatable {
    public var axis: String
    public var group: String
    public var metric: String
    public var fit: LinearFit
    /// Half the 95% interval of the slope; nil with only two distinct counts.
    public var margin: Double?

    /// Cells counted over their measured loop, grouped as sweeps are; a group needs at
    /// least two operation counts.
    public static func fits(_ results: [CellResult], metrics: Set<String>) -> [MarginalCost] {
        let usable = results.filter { $0.status == .pass && $0.counters?.scope == .measuredLoop && $0.counters?.operations != nil }
        var fits: [MarginalCost] = []
        for axis in SweepAnalysis.axes(usable) where axis != "vcpus" {
            let groups = Dictionary(grouping: usable) { SweepAnalysis.groupKey($0, excluding: axis) }
            for (group, cells) in groups.sorted(by: { naturallyPrecedes($0.key, $1.key) }) {
                let counts = Set(cells.compactMap { $0.counters?.operations })
                // The axis must move the operation count, or the slope says nothing per op.
                guard counts.count >= 2, counts.count == Set(cells.compactMap { SweepAnalysis.x(of: $0, axis: axis) }).count else { continue }
                for metric in SweepAnalysis.metrics(cells) where metrics.contains(metric) {
                    let points = cells.compactMap { cell -> (x: Double, y: Double)? in
                        guard let ops = cell.counters?.operations, let perOp = SweepAnalysis.value(of: metric, in: cell) else { return nil }
                        return (Double(ops), perOp * Double(ops))
                    }
                    guard points.count == cells.count, let fit = LinearFit(points) else { continue }
                    let margin = fit.slopeStandardError.map { StudentT.critical95(degreesOfFreedom: fit.points - 2) * $0 }
                    fits.append(MarginalCost(axis: axis, group: group, metric: metric, fit: fit, margin: margin))
                }
            }
        }
        return fits
    }
}
