import Foundation

extension HTMLReport {
    /// A line chart as inline SVG with hand-drawn axes. y starts at zero: counts per operation are
    /// never negative, and a zero baseline keeps "flat at 1.0" from looking like a trend. x ticks
    /// sit at the swept values themselves, which is what a reader looks up.
    struct LinePlot {
        struct Line {
            var label: String
            var colour: String
            var dash: String
            var note: String
            /// `ring`: a colour to circle the point with (a point from a cell that did not pass).
            var points: [(x: Double, y: Double, title: String, ring: String?)]
        }

        var title: String
        var xLabel: String
        var yLabel: String
        var lines: [Line]
        /// Already escaped.
        var attributes: String

        static let width = 620.0, plotHeight = 240.0, left = 58.0, right = 24.0, top = 30.0, bottom = 44.0, legendRow = 18.0
        /// An estimate for 12px sans text: SVG text does not wrap, so the legend breaks its rows itself.
        static let characterWidth = 6.8

        /// Data to pixels: x over the swept range (padded, so end points stay off the y axis), y over the ticks.
        struct Scale {
            var xLow: Double, xHigh: Double, yTicks: [Double]
            func x(_ value: Double) -> Double {
                let pad = xHigh > xLow ? (xHigh - xLow) * 0.05 : 1
                return LinePlot.left + (value - xLow + pad) / (xHigh - xLow + 2 * pad) * (LinePlot.width - LinePlot.left - LinePlot.right)
            }
            func y(_ value: Double) -> Double {
                LinePlot.top + LinePlot.plotHeight - (value - yTicks.first!) / (yTicks.last! - yTicks.first!) * LinePlot.plotHeight
            }
        }

        func render() -> String {
            let points = lines.flatMap(\.points)
            let ys = points.map(\.y), xs = Array(Set(points.map(\.x))).sorted()
            // Swept values as ticks; past a dozen of them, round ones instead.
            let xTicks = xs.count <= 12 ? xs : LinePlot.niceTicks(xs.first ?? 0, xs.last ?? 1)
            // 5% headroom, so a line flat at 1.0 does not run along the frame.
            let scale = Scale(xLow: min(xs.first ?? 0, xTicks.first ?? 0), xHigh: max(xs.last ?? 1, xTicks.last ?? 1),
                              yTicks: LinePlot.niceTicks(min(0, ys.min() ?? 0), (ys.max() ?? 1) * 1.05))
            let legend = legendRows()
            let height = LinePlot.top + LinePlot.plotHeight + LinePlot.bottom + Double(legend.count) * LinePlot.legendRow + 8
            let (width, svgHeight) = (f(LinePlot.width), f(height))
            return "<svg class=\"plot\" \(attributes) xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(svgHeight)\" viewBox=\"0 0 \(width) \(svgHeight)\">\n"
                + axes(scale, xTicks: xTicks) + lines.map { polyline($0, scale) }.joined()
                + legend.enumerated().map { row($0.element, index: $0.offset) }.joined() + "</svg>"
        }

        func axes(_ scale: Scale, xTicks: [Double]) -> String {
            let (x0, x1, yTop, yBottom) = (LinePlot.left, LinePlot.width - LinePlot.right, LinePlot.top, LinePlot.top + LinePlot.plotHeight)
            var svg = "<text class=\"title\" x=\"\(f(x0))\" y=\"18\">\(HTMLReport.escape(title))</text>\n"
            for tick in scale.yTicks {
                let y = scale.y(tick)
                svg += segment(x0, y, x1, y, "class=\"gridline\"") + segment(x0 - 5, y, x0, y, "class=\"axis\"")
                svg += "<text class=\"ytick\" x=\"\(f(x0 - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(LinePlot.label(tick))</text>\n"
            }
            var last: (x: Double, label: String)?
            for tick in xTicks {
                let x = scale.x(tick), label = LinePlot.label(tick)
                svg += segment(x, yBottom, x, yBottom + 5, "class=\"axis\"")
                // Crowded low values (gib=1,2,4 beside 64) would overprint: a label too close to the last is left out.
                if let last, x - last.x < Double(last.label.count + label.count) / 2 * LinePlot.characterWidth + 8 { continue }
                last = (x, label)
                svg += "<text class=\"xtick\" x=\"\(f(x))\" y=\"\(f(yBottom + 18))\" text-anchor=\"middle\">\(label)</text>\n"
            }
            svg += segment(x0, yTop, x0, yBottom, "class=\"axis\"") + segment(x0, yBottom, x1, yBottom, "class=\"axis\"") + "\n"
            svg += "<text x=\"\(f((x0 + x1) / 2))\" y=\"\(f(yBottom + 36))\" text-anchor=\"middle\">\(HTMLReport.escape(xLabel))</text>\n"
            return svg + "<text transform=\"translate(14 \(f((yTop + yBottom) / 2))) rotate(-90)\" text-anchor=\"middle\">\(HTMLReport.escape(yLabel))</text>\n"
        }

        func polyline(_ line: Line, _ scale: Scale) -> String {
            var svg = "<polyline fill=\"none\" stroke=\"\(line.colour)\" stroke-width=\"2\"\(dash(line)) points=\""
                + line.points.map { "\(f(scale.x($0.x))),\(f(scale.y($0.y)))" }.joined(separator: " ")
                + "\"><title>\(HTMLReport.escape(line.label + ": " + line.note))</title></polyline>\n"
            for point in line.points {
                let (cx, cy) = (f(scale.x(point.x)), f(scale.y(point.y)))
                if let ring = point.ring {
                    svg += "<circle cx=\"\(cx)\" cy=\"\(cy)\" r=\"7\" fill=\"none\" stroke=\"\(ring)\" stroke-width=\"2\"/>"
                }
                svg += "<circle cx=\"\(cx)\" cy=\"\(cy)\" r=\"3.5\" fill=\"\(line.colour)\"><title>\(HTMLReport.escape(point.title))</title></circle>\n"
            }
            return svg
        }

        /// One legend row: the line it starts (nil on a continuation or the ring key), and its texts.
        typealias LegendRow = (line: Line?, ring: Bool, pieces: [String])

        /// "label: note (same points as …)" per line, broken before a piece that would run past the frame.
        func legendRows() -> [LegendRow] {
            let available = LinePlot.width - LinePlot.right - LinePlot.left - 34
            var rows: [LegendRow] = []
            for (index, line) in lines.enumerated() {
                // Identical lines draw as one; say so, or the reader looks for the missing one.
                let twin = lines[..<index].first { $0.points.map(\.x) == line.points.map(\.x) && $0.points.map(\.y) == line.points.map(\.y) }
                rows.append((line, false, [line.label + ":"]))
                for piece in [line.note] + (twin.map { ["(same points as \($0.label))"] } ?? []) {
                    let width = Double((rows[rows.count - 1].pieces + [piece]).joined(separator: " ").count) * LinePlot.characterWidth
                    if width > available { rows.append((nil, false, [piece])) } else { rows[rows.count - 1].pieces.append(piece) }
                }
            }
            if lines.contains(where: { $0.points.contains { $0.ring != nil } }) {
                rows.append((nil, true, ["ringed in its status colour: a point from a cell that did not pass"]))
            }
            return rows
        }

        func row(_ row: LegendRow, index: Int) -> String {
            let x = LinePlot.left, y = LinePlot.top + LinePlot.plotHeight + LinePlot.bottom + Double(index) * LinePlot.legendRow + 10
            var svg = ""
            if let line = row.line {
                svg += segment(x, y - 4, x + 26, y - 4, "stroke=\"\(line.colour)\" stroke-width=\"2\"\(dash(line))")
            } else if row.ring {
                svg += "<circle cx=\"\(f(x + 13))\" cy=\"\(f(y - 4))\" r=\"6\" fill=\"none\" stroke=\"#777\" stroke-width=\"2\"/>"
            }
            let pieces = row.pieces.map(HTMLReport.escape)
            let text = row.line == nil ? pieces.joined(separator: " ")
                : "<tspan font-weight=\"600\">\(pieces[0])</tspan> " + pieces.dropFirst().joined(separator: " ")
            return svg + "<text x=\"\(f(x + 34))\" y=\"\(f(y))\">\(text)</text>\n"
        }

        func segment(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ attributes: String) -> String {
            "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" \(attributes)/>"
        }

        func dash(_ line: Line) -> String { line.dash.isEmpty ? "" : " stroke-dasharray=\"\(line.dash)\"" }

        /// 0 … max in about five steps of 1, 2, 2.5 or 5 times a power of ten.
        static func niceTicks(_ low: Double, _ high: Double, count: Double = 5) -> [Double] {
            let high = high > low ? high : low + 1
            let raw = (high - low) / count
            let magnitude = pow(10, floor(log10(raw)))
            let step = [1, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw * (1 - 1e-9) } ?? 10 * magnitude
            let first = (low / step).rounded(.down), last = (high / step - 1e-9).rounded(.up)
            return stride(from: first, through: last, by: 1).map { $0 * step }
        }

        /// Whole numbers in full (a swept 1048576 stays legible), others to three significant digits.
        static func label(_ value: Double) -> String {
            if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
            return String(format: "%.3g", abs(value) < 1e-12 ? 0 : value)
        }

        /// Coordinates to one decimal: enough for a screen, and short, stable text for golden files.
        func f(_ value: Double) -> String { String(format: "%.1f", value) }
    }
}
