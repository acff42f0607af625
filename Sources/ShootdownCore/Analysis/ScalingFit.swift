import Foundation

/// A least-squares line through (x, y) points, with the slope's standard error.
public struct LinearFit: Sendable, Codable, Equatable {
    public var intercept: Double
    public var slope: Double
    /// nil with fewer than three distinct points (no residual degrees of freedom).
    public var slopeStandardError: Double?
    public var points: Int

    enum CodingKeys: String, CodingKey {
        case intercept, slope, points
        case slopeStandardError = "slope_stderr"
    }

    public init?(_ points: [(x: Double, y: Double)]) {
        let n = Double(points.count)
        guard points.count >= 2 else { return nil }
        let meanX = points.map(\.x).reduce(0, +) / n, meanY = points.map(\.y).reduce(0, +) / n
        let sxx = points.map { ($0.x - meanX) * ($0.x - meanX) }.reduce(0, +)
        guard sxx > 0 else { return nil }
        let sxy = points.map { ($0.x - meanX) * ($0.y - meanY) }.reduce(0, +)
        slope = sxy / sxx
        intercept = meanY - slope * meanX
        self.points = points.count
        if points.count > 2 {
            let residuals = points.map { $0.y - (intercept + slope * $0.x) }
            let variance = residuals.map { $0 * $0 }.reduce(0, +) / (n - 2)
            slopeStandardError = (variance / sxx).squareRoot()
        } else {
            slopeStandardError = nil
        }
    }
}

/// How a per-operation figure behaves as a parameter grows.
public enum ScalingClass: String, Sendable, Codable {
    /// Flat within noise: e.g. sync IPIs per fork+exit with the batching fix.
    case constant
    /// Grows (or falls) with the parameter: the 1013af4f58 signature over `gib`.
    case linear
    /// The data cannot tell: fewer than three swept values, or a confidence interval that
    /// holds both "flat" and "a meaningful change". Never a regression by itself.
    case undecided
}

public struct ScalingVerdict: Sendable, Codable, Equatable {
    public var scaling: ScalingClass
    public var fit: LinearFit
    /// Predicted change across the swept range, relative to the mean level.
    public var relativeChange: Double
    /// The fitted change across the swept range (slope × range), per operation.
    public var change: Double?
    /// Half-width of that change's confidence interval; nil with fewer than three swept values.
    public var margin: Double?
    /// The smallest change across the range that counts as scaling.
    public var meaningfulChange: Double?
    /// Why the class was chosen, for reports.
    public var reason: String?

    enum CodingKeys: String, CodingKey {
        case scaling, fit, change, margin, reason
        case relativeChange = "relative_change", meaningfulChange = "meaningful_change"
    }

    /// Classifies by effect size and noise, not by the slope alone:
    /// - the effect is the fitted change across the swept range; it is meaningful from
    ///   `minRelativeChange` of the mean level and `minAbsoluteChange` per op (a tiny
    ///   slope on a small figure is no class change);
    /// - the noise is the slope's standard error from the residuals, which repeats at the
    ///   same x make honest (their spread is in them);
    /// - linear: the change's 95% interval lies wholly beyond ± the meaningful change;
    ///   constant: it lies wholly within; undecided: it straddles the boundary, and always
    ///   with fewer than three distinct x values (two points fit a line exactly, whatever
    ///   the truth). So neither class is claimed on noise, in either direction.
    public static func classify(_ points: [(x: Double, y: Double)], minRelativeChange: Double = 0.25,
                                minAbsoluteChange: Double = 0.5) -> ScalingVerdict? {
        guard let fit = LinearFit(points) else { return nil }
        let xs = points.map(\.x)
        let range = xs.max()! - xs.min()!
        let change = fit.slope * range
        let meanY = points.map(\.y).reduce(0, +) / Double(points.count)
        let relative = abs(change) / max(abs(meanY), 1e-9)
        let meaningful = max(minRelativeChange * abs(meanY), minAbsoluteChange)
        var verdict = ScalingVerdict(scaling: .undecided, fit: fit, relativeChange: relative, change: change,
                                     margin: nil, meaningfulChange: meaningful, reason: nil)
        let distinct = Set(xs).count
        guard distinct >= 3, let error = fit.slopeStandardError else {
            verdict.reason = "\(distinct) swept values; a line needs at least 3 to be told from a constant"
            return verdict
        }
        let margin = StudentT.critical95(degreesOfFreedom: points.count - 2) * error * range
        verdict.margin = margin
        let measured = String(format: "change %+.3g ± %.2g (95%%) across the range, meaningful from %.2g", change, margin, meaningful)
        if abs(change) - margin >= meaningful {
            verdict.scaling = .linear
            verdict.reason = measured
        } else if abs(change) + margin < meaningful {
            verdict.scaling = .constant
            verdict.reason = measured
        } else {
            verdict.reason = measured + ": too noisy to tell"
        }
        return verdict
    }
}

/// Critical values of Student's t distribution, for the confidence intervals above.
enum StudentT {
    /// Two-sided 95% (the 0.975 quantile) by degrees of freedom 1...30, then 40, 60, 120.
    static let table95: [Double] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
    static let tail95: [(df: Int, t: Double)] = [(40, 2.021), (60, 2.000), (120, 1.980)]

    /// Between tabulated rows the smaller df's value is used: wider, so never less cautious.
    static func critical95(degreesOfFreedom df: Int) -> Double {
        precondition(df >= 1)
        if df <= table95.count { return table95[df - 1] }
        return tail95.last { $0.df <= df }?.t ?? table95.last!
    }
}
