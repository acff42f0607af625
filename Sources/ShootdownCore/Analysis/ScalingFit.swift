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
}

public struct ScalingVerdict: Sendable, Codable, Equatable {
    public var scaling: ScalingClass
    public var fit: LinearFit
    /// Predicted change across the swept range, relative to the mean level.
    public var relativeChange: Double

    enum CodingKeys: String, CodingKey {
        case scaling, fit
        case relativeChange = "relative_change"
    }

    /// Linear when the fitted change across the range is material (over `materialChange`
    /// of the mean, and over `absoluteFloor` per op) and, where the fit has residual
    /// freedom, the slope is more than `sigmas` standard errors from zero.
    public static func classify(_ points: [(x: Double, y: Double)], materialChange: Double = 0.25,
                                absoluteFloor: Double = 0.5, sigmas: Double = 3) -> ScalingVerdict? {
        guard let fit = LinearFit(points) else { return nil }
        let xs = points.map(\.x)
        let span = (xs.max()! - xs.min()!) * fit.slope
        let meanY = points.map(\.y).reduce(0, +) / Double(points.count)
        let relative = abs(span) / max(abs(meanY), 1e-9)
        var linear = relative > materialChange && abs(span) > absoluteFloor
        if let error = fit.slopeStandardError, error > 0 {
            linear = linear && abs(fit.slope) > sigmas * error
        }
        return ScalingVerdict(scaling: linear ? .linear : .constant, fit: fit, relativeChange: relative)
    }
}
