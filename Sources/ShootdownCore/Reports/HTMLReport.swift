import Foundation

/// A whole run as one self-contained HTML page: failures first, a status grid, the sweep
/// plots, then every cell. CSS and SVG are inline and there is no script, font or image to
/// fetch, so the page can be archived beside results.json and opened offline. The output
/// depends only on the report (no clock, no dictionary order), so it can be a golden file.
/// Ids, reasons, splats and console text come from guests: all of it goes through `escape`.
public enum HTMLReport {
    public static func render(_ report: RunReport) -> String {
        let body = [header(report), failures(report), grid(report.cells), plots(report), cellTable(report.cells)]
        return """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>shootdown \(escape(report.name)) \(escape(report.runID))</title>
        <style>
        \(css)
        </style>
        </head>
        <body>
        \(body.filter { !$0.isEmpty }.joined(separator: "\n"))
        </body>
        </html>

        """
    }

    // MARK: Sections

    static func header(_ report: RunReport) -> String {
        // Counted from the cells rather than `summary`, so the badges agree with the grid and table.
        let counts = Dictionary(grouping: report.cells, by: \.status).mapValues(\.count)
        let badges = CellStatus.allCases.map { status in
            let count = counts[status] ?? 0
            return "<span class=\"badge s-\(status.rawValue)\(count == 0 ? " zero" : "")\">\(count) \(status.rawValue)</span>"
        }.joined(separator: " ")
        let verdict = report.failed ? "<strong class=\"bad\">failed</strong>" : "<strong class=\"good\">passed</strong>"
        return """
        <header>
        <h1>shootdown: \(escape(report.name))</h1>
        <p>run \(escape(report.runID)), \(report.cells.count) cell(s), \(report.sweeps.count) sweep series: \(verdict)</p>
        <p>\(badges)</p>
        <nav><a href="#failures">failures</a> · <a href="#grid">status grid</a> · <a href="#sweeps">sweeps</a> · <a href="#cells">cells</a></nav>
        </header>
        """
    }

    static func failures(_ report: RunReport) -> String {
        let failed = byPriority(report.cells.filter { $0.status == .fail || $0.status == .error })
        let unmet = report.sweepExpectations.filter { !$0.met }
        var html = "<section id=\"failures\">\n<h2>Failures</h2>\n"
        if failed.isEmpty && unmet.isEmpty { html += "<p class=\"good\">No cell failed.</p>\n" }
        html += failed.map(failure).joined()
        for outcome in unmet {
            html += "<article class=\"failure b-FAIL\">\n<h3>\(badge(.fail)) sweep expectation</h3>\n"
                + "<p><code>\(escape(outcome.rule))</code> on \(escape(outcome.subject)): \(escape(outcome.detail))</p>\n</article>\n"
        }
        // SKIP, MISS and DONE are not failures, but their reasons say what the run did not cover.
        let others = byPriority(report.cells.filter { ![.fail, .error, .pass].contains($0.status) })
        if !others.isEmpty {
            html += "<h3>Not run or without a verdict</h3>\n<ul>\n" + others.map {
                "<li>\(badge($0.status)) <code>\(escape($0.cell.id))</code>: \(escape($0.reason ?? "no reason recorded"))</li>\n"
            }.joined() + "</ul>\n"
        }
        return html + "</section>"
    }

    static func failure(_ result: CellResult) -> String {
        var html = "<article class=\"failure b-\(result.status.rawValue)\">\n"
        html += "<h3>\(badge(result.status)) <code>\(escape(result.cell.id))</code></h3>\n"
        html += "<p>\(escape(result.reason ?? "no reason recorded"))</p>\n"
        let items = result.checks.filter { !$0.passed && !$0.skipped }.map { "check (\($0.source)): \($0.name)" + ($0.detail.map { ": \($0)" } ?? "") }
            + (result.expectations ?? []).filter { !$0.met }.map { "expectation \($0.rule): \($0.detail)" }
        if !items.isEmpty { html += "<ul>\n" + items.map { "<li>\(escape($0))</li>\n" }.joined() + "</ul>\n" }
        if let splat = result.splats.first {
            html += "<p class=\"muted\">first of \(result.splats.count) splat(s), \(escape(splat.kind)):</p>\n"
            html += "<pre>\(escape(splat.excerpt.lines().prefix(40).joined(separator: "\n")))</pre>\n"
        } else if let tail = result.consoleTail, !tail.isEmpty {
            html += "<p class=\"muted\">console tail:</p>\n<pre>\(escape(tail.lines().suffix(20).joined(separator: "\n")))</pre>\n"
        }
        return html + "</article>\n"
    }

    /// Rows: kernel × arch × accel × paravirt; columns: test, the parameters that vary, vCPUs.
    /// Several results in one slot (repeats) show as several chips.
    static func grid(_ cells: [CellResult]) -> String {
        guard !cells.isEmpty else { return "" }
        let names = Set(cells.flatMap { $0.cell.parameters.keys }).sorted()
        let varying = names.filter { name in Set(cells.map { $0.cell.parameters[name]?.description ?? "" }).count > 1 }
        let multipleTests = Set(cells.map(\.cell.test)).count > 1
        func row(_ result: CellResult) -> String {
            let cell = result.cell
            return "\(cell.kernelVersion) · \(cell.arch.rawValue) · \(cell.accel.rawValue) · pv \(cell.paravirt)"
        }
        func column(_ result: CellResult) -> String {
            let cell = result.cell
            let parameters = varying.map { "\($0)=\(cell.parameters[$0]?.description ?? "–")" }
            return ((multipleTests ? [cell.test] : []) + parameters + ["\(cell.vcpus) vCPU"]).joined(separator: "\n")
        }
        // Rows keep the run's order. Columns go by their swept values as numbers: a run folder
        // lists cells in string order (gib1, gib32, gib8), which is no order a reader counts in.
        let rows = firstAppearance(cells.map(row)), columns = firstAppearance(cells.map(column)).sorted(by: naturallyPrecedes)
        let slots = Dictionary(grouping: cells) { row($0) + "\u{1}" + column($0) }  // \u{1}: in neither key
        var html = "<section id=\"grid\">\n<h2>Status grid</h2>\n<table class=\"grid\">\n<tr><th></th>"
        html += columns.map { "<th>" + $0.split(separator: "\n").map { escape(String($0)) }.joined(separator: "<br>") + "</th>" }.joined()
        html += "</tr>\n"
        for rowKey in rows {
            html += "<tr><th scope=\"row\">\(escape(rowKey))</th>" + columns.map { columnKey in
                "<td>" + (slots[rowKey + "\u{1}" + columnKey] ?? []).map {
                    "<span class=\"chip s-\($0.status.rawValue)\" title=\"\(escape($0.cell.id))\">\($0.status.rawValue)</span>"
                }.joined(separator: " ") + "</td>"
            }.joined() + "</tr>\n"
        }
        let fixed = (multipleTests ? [] : [cells[0].cell.test]) + names.filter { !varying.contains($0) }.compactMap { name in
            cells[0].cell.parameters[name].map { "\(name)=\($0)" }
        }
        return html + "</table>\n<p class=\"muted\">same in every cell: \(escape(fixed.joined(separator: " ")))</p>\n</section>"
    }

    /// Always plotted per axis; any other metric only where some group scales linearly.
    static let headlineMetrics = ["probe:tlb_remove_table_smp_sync", "probe:tlb_remove_table_sync_one", "probe:huge_pmd_share", "ipi:CAL", "ipi:IPI1", "ipi:TLB"]
    /// Okabe–Ito colours (distinguishable with the common colour-vision deficiencies); dashes
    /// keep identical lines (x86_64 and aarch64 both at 1.0) visible on top of each other.
    static let lineColours = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
    static let lineDashes = ["", "7 4", "2 3"]

    static func plots(_ report: RunReport) -> String {
        var html = "<section id=\"sweeps\">\n<h2>Sweeps</h2>\n"
        if report.sweeps.isEmpty { html += "<p class=\"muted\">No parameter or vCPU count took several values in passing cells.</p>\n" }
        let statuses = Dictionary(report.cells.map { ($0.cell.id, $0.status) }, uniquingKeysWith: { first, _ in first })
        for axis in firstAppearance(report.sweeps.map(\.axis)) {
            let series = report.sweeps.filter { $0.axis == axis }
            // Numeric order of the other parameters' values (children=2 before children=16), also for older reports.
            let groups = firstAppearance(series.map(\.group)).sorted(by: naturallyPrecedes)
            let (labels, common) = legendLabels(groups)
            let linear = Set(series.filter { $0.verdict.scaling == .linear }.map(\.metric))
            let metrics = headlineMetrics.filter { metric in series.contains { $0.metric == metric } }
                + linear.subtracting(headlineMetrics).sorted()
            html += "<h3>against \(axis == "vcpus" ? "vCPU count" : escape(axis))</h3>\n"
            html += "<p class=\"muted\">same on every line: \(escape(common))</p>\n<div class=\"plots\">\n"
            for metric in metrics {
                // One line per group, coloured by the group's place on this axis, so a group keeps its colour in every plot.
                let lines = groups.enumerated().compactMap { index, group in
                    series.first { $0.group == group && $0.metric == metric }.map { line($0, index: index, label: labels[index], statuses: statuses) }
                }
                let operations = Set(series.filter { $0.metric == metric }.map(\.operation))
                html += LinePlot(title: metric, xLabel: axis == "vcpus" ? "vCPUs" : axis,
                                 yLabel: "per " + (operations.count == 1 ? operations.first! : "op"), lines: lines,
                                 attributes: "data-axis=\"\(escape(axis))\" data-metric=\"\(escape(metric))\"").render() + "\n"
            }
            html += "</div>\n"
        }
        if !report.sweepExpectations.isEmpty {
            html += "<h3>Sweep expectations</h3>\n<ul>\n" + report.sweepExpectations.map {
                "<li>\(badge($0.met ? .pass : .fail)) <code>\(escape($0.rule))</code> on \(escape($0.subject)): \(escape($0.detail))</li>\n"
            }.joined() + "</ul>\n"
        }
        return html + "</section>"
    }

    /// A series as a plot line. A point whose cell did not pass (a sweep from a merged or older
    /// run can hold one) is ringed in that cell's status colour.
    static func line(_ series: SweepSeries, index: Int, label: String, statuses: [String: CellStatus]) -> LinePlot.Line {
        LinePlot.Line(label: label, colour: lineColours[index % lineColours.count], dash: lineDashes[index % lineDashes.count],
                      note: annotation(series), points: series.points.map { point in
                          let status = statuses[point.cell] ?? .miss
                          return (point.x, point.y, "\(point.cell) (\(status.rawValue)): \(TerminalReport.number(point.y))",
                                  status == .pass ? nil : statusColours[status])
                      })
    }

    /// "linear, slope +1.050 ± 0.000 per gib": what the legend says about each line.
    static func annotation(_ series: SweepSeries) -> String {
        let fit = series.verdict.fit
        let error = fit.slopeStandardError.map { String(format: " ± %.3f", $0) } ?? ""
        return "\(series.verdict.scaling.rawValue), slope \(String(format: "%+.3f", fit.slope))\(error) per \(series.axis)"
    }

    /// Group keys are long and mostly shared ("x86_64 6.12.117 tcg 4cpu pv-default test k=v…"):
    /// the legend shows the words that differ, and the words every group shares go in a caption.
    static func legendLabels(_ groups: [String]) -> (labels: [String], common: String) {
        let words = groups.map { $0.split(separator: " ").map(String.init) }
        let shared = words.dropFirst().reduce(Set(words.first ?? [])) { $0.intersection($1) }
        let labels = words.map { group in
            let distinct = group.filter { !shared.contains($0) }
            return (distinct.isEmpty ? Array(group.prefix(2)) : distinct).joined(separator: " ")
        }
        return (labels, (words.first ?? []).filter { shared.contains($0) }.joined(separator: " "))
    }

    static func cellTable(_ cells: [CellResult]) -> String {
        var html = "<section id=\"cells\">\n<h2>Cells</h2>\n<table class=\"cells\">\n"
        html += "<tr><th>status</th><th>cell</th><th>boot</th><th>test</th><th>total</th><th>ops</th><th>IPIs per op</th><th>probe hits per op</th></tr>\n"
        for result in cells {
            let timings = result.timings
            // The same figures as the terminal table, from the same functions.
            let columns = [TerminalReport.seconds(timings.bootSeconds), TerminalReport.seconds(timings.testSeconds),
                           TerminalReport.seconds(timings.totalSeconds), result.counters?.operations.map(String.init) ?? "-"]
            html += "<tr title=\"\(escape(result.reason ?? ""))\"><td>\(badge(result.status))</td><td><code>\(escape(result.cell.id))</code></td>"
                + columns.map { "<td class=\"num\">\(escape($0))</td>" }.joined()
                + "<td class=\"counts\">\(escape(TerminalReport.ipiSummary(result)))</td>"
                + "<td class=\"counts\">\(escape(TerminalReport.probeSummary(result)))</td></tr>\n"
        }
        return html + "</table>\n</section>"
    }

    // MARK: Helpers

    static let statusColours: [CellStatus: String] = [.fail: "#c62828", .error: "#e65100", .miss: "#6a1b9a",
                                                       .pass: "#2e7d32", .done: "#1565c0", .skip: "#78909c"]

    static var css: String {
        let statusRules = CellStatus.allCases.map { status in
            ".s-\(status.rawValue){background:\(statusColours[status]!)} .b-\(status.rawValue){border-color:\(statusColours[status]!)}"
        }
        return ([
            "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1b1b1b;background:#fff;max-width:1340px;margin:20px auto;padding:0 16px}",
            "h2{border-bottom:1px solid #ddd;margin-top:28px}",
            "code,pre{font-family:ui-monospace,Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:12px}",
            "pre{background:#f6f6f3;border:1px solid #ddd;padding:8px;overflow-x:auto}",
            ".badge,.chip{display:inline-block;padding:1px 7px;border-radius:3px;color:#fff;font-weight:600;font-size:12px}",
            ".zero{opacity:.3} .muted{color:#555} .good{color:#2e7d32} .bad{color:#c62828}",
            ".failure{border-left:5px solid;padding:2px 14px;margin:12px 0;background:#faf7f5}",
            "table{border-collapse:collapse} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}",
            "th{background:#f3f3f3;font-weight:600} td.num{text-align:right} td.counts{white-space:pre;font-size:12px}",
            ".cells td{vertical-align:middle} .grid td{text-align:center} .plots{display:flex;flex-wrap:wrap;gap:14px}",
            "svg.plot{border:1px solid #ddd;background:#fff;max-width:100%;height:auto} svg.plot text{font:12px system-ui,sans-serif;fill:#222}",
            "svg.plot .title{font-weight:600} svg.plot .gridline{stroke:#e6e6e6} svg.plot .axis{stroke:#444}",
        ] + statusRules).joined(separator: "\n")
    }

    static func badge(_ status: CellStatus) -> String {
        "<span class=\"badge s-\(status.rawValue)\">\(status.rawValue)</span>"
    }

    /// FAIL before ERROR and so on, keeping the run's order within a status.
    static func byPriority(_ cells: [CellResult]) -> [CellResult] {
        cells.enumerated().sorted { ($1.element.status.priority, $0.offset) < ($0.element.status.priority, $1.offset) }.map(\.element)
    }

    static func firstAppearance(_ keys: [String]) -> [String] {
        var seen = Set<String>()
        return keys.filter { seen.insert($0).inserted }
    }

    /// Text and attribute escaping. C0 controls (console escape sequences, NULs) are not
    /// allowed in HTML text, so they become U+FFFD; tabs and newlines stay.
    static func escape(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || scalar.value == 0x7f: out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
