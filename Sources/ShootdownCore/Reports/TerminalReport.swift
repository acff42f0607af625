import Foundation

/// The table printed at the end of a run: status and timings per cell, then the IPI and
/// probe counts per operation, then the reasons of every cell that did not pass.
public enum TerminalReport {
    /// Probes shown in the table, by short name; the full set is in result.json. The sync
    /// is named for what each count means: `tlb_remove_table_sync_one` is entered once per
    /// sync, and `tlb_remove_table_smp_sync` runs once on every CPU the sync's IPI reached,
    /// so a sync that is entered and skips its broadcast reads as entered with no IPIs.
    static let probeColumns: [(symbol: String, short: String)] = [
        ("tlb_remove_table_sync_one", "sync-entered"),
        ("tlb_remove_table_smp_sync", "sync-IPIs"),
        ("huge_pmd_share", "pmd_share"),
        ("pmdp_collapse_flush", "collapse_flush"),
        ("smp_call_function_many_cond", "smp_call_many"),
    ]

    public static func render(_ results: [CellResult], sweeps: [SweepSeries] = []) -> String {
        render(RunReport(runID: "", name: "run", cells: results, sweeps: sweeps))
    }

    /// Failures first, then the table, repeat spreads, scaling and expectations.
    public static func render(_ report: RunReport) -> String {
        let results = report.cells
        var text = failureSection(report)
        var rows: [[String]] = [["STATUS", "CELL", "BOOT", "TEST", "TOTAL", "OPS", "COUNTED", "IPIs per op", "probe hits per op"]]
        for result in results {
            rows.append([result.status.rawValue, result.cell.id,
                         seconds(result.timings.bootSeconds), seconds(result.timings.testSeconds),
                         seconds(result.timings.totalSeconds),
                         result.counters?.operations.map(String.init) ?? "-",
                         result.counters.map { scopeName($0.scope) } ?? "-", ipiSummary(result), probeSummary(result)])
        }
        text += table(rows)
        text += legend(results)
        text += fixedCostSection(results)
        text += senderSection(results)
        text += repeatSection(results)
        text += scalingSection(report.sweeps)
        text += marginalSection(results)
        let cellRules = results.flatMap { $0.expectations ?? [] }
        let rules = cellRules + report.sweepExpectations
        if !rules.isEmpty {
            text += "\nexpectations: \(rules.filter(\.met).count) of \(rules.count) met\n"
        }
        let counts = Dictionary(grouping: results, by: \.status).mapValues(\.count)
        text += "\n" + CellStatus.allCases.compactMap { status in counts[status].map { "\($0) \(status.rawValue.lowercased())" } }
            .joined(separator: ", ") + "\n"
        // Reasons, splat excerpts, TAP names and IPI rows are guest text: judge made them
        // visible, and this pass covers results written before it did.
        return GuestText.visible(text)
    }

    static func failureSection(_ report: RunReport) -> String {
        var text = ""
        for result in report.cells.filter({ $0.status != .pass }).sorted(by: { $0.status > $1.status }) {
            text += "\(result.status.rawValue) \(result.cell.id): \(result.reason ?? "no reason recorded")\n"
            if let splat = result.splats.first {
                text += splat.excerpt.lines().prefix(12).map { "    \($0)" }.joined(separator: "\n") + "\n"
            } else if let consoleTail = result.consoleTail, !consoleTail.isEmpty {
                text += "    console tail:\n"
                text += consoleTail.lines().suffix(8).map { "    \($0)" }.joined(separator: "\n") + "\n"
            }
        }
        for outcome in report.sweepExpectations where !outcome.met {
            text += "FAIL expectation \(outcome.rule) for \(outcome.subject): \(outcome.detail)\n"
        }
        return text.isEmpty ? "" : text + "\n"
    }

    /// Median and spread of the headline figures over a cell's repeats.
    static func repeatSection(_ results: [CellResult]) -> String {
        let repeated = Dictionary(grouping: results.filter { $0.repeatIndex != nil && $0.status == .pass }) { result in
            result.cell.id.replacingOccurrences(of: "-r\(result.repeatIndex!)", with: "", options: .anchored.union(.backwards))
        }.filter { $0.value.count > 1 }
        guard !repeated.isEmpty else { return "" }
        var rows: [[String]] = [["  cell", "n", "metric", "median", "spread (min..max)"]]
        for (base, cells) in repeated.sorted(by: { $0.key < $1.key }) {
            for metric in SweepAnalysis.metrics(cells) where headlineMetrics.contains(metric) {
                guard let spread = Spread(cells.compactMap { SweepAnalysis.value(of: metric, in: $0) }) else { continue }
                rows.append(["  " + base, String(spread.count), shortName(metric), number(spread.median),
                             "\(number(spread.min))..\(number(spread.max))"])
            }
        }
        return "\nrepeats:\n" + table(rows)
    }

    /// Metrics always shown for a sweep; others only when they scale.
    static let headlineMetrics: Set<String> = ["probe:tlb_remove_table_smp_sync", "probe:tlb_remove_table_sync_one", "probe:huge_pmd_share",
                                               "ipi:CAL", "ipi:TLB", "ipi:IPI1"]

    /// Derived figures a sweep shows beside the counts.
    static let sweepOnlyMetrics: Set<String> = [SweepAnalysis.wallMetric, SweepAnalysis.reachMetric]

    static func scalingSection(_ sweeps: [SweepSeries]) -> String {
        let shown = sweeps.filter { headlineMetrics.union(sweepOnlyMetrics).contains($0.metric) || $0.verdict.scaling == .linear }
        guard !shown.isEmpty else { return "" }
        var text = ""
        for (heading, series) in Dictionary(grouping: shown, by: { "\($0.axis)|\($0.group)" }).sorted(by: { naturallyPrecedes($0.key, $1.key) }) {
            let first = series[0]
            let xs = first.points.map { String(format: "%g", $0.x) }.joined(separator: ", ")
            text += "\nscaling over \(first.axis) (\(xs)) for \(heading.split(separator: "|").last ?? ""):\n"
            var rows: [[String]] = []
            for item in series.sorted(by: { $0.metric < $1.metric }) {
                let name = item.metric == SweepAnalysis.reachMetric ? "CPUs reached per sync" : shortName(item.metric) + " per " + item.operation
                let fit = item.verdict.fit
                let slope = String(format: "%+.3f", fit.slope) + (fit.slopeStandardError.map { String(format: " ± %.3f", $0) } ?? "")
                rows.append(["  " + name, item.verdict.scaling.rawValue,
                             item.points.map { number($0.y) }.joined(separator: " → "), "slope \(slope) per \(item.axis)"])
            }
            text += table([["  metric", "scaling", "values", "fit"]] + rows)
            for signature in series.compactMap(\.signature) { text += "  → \(signature)\n" }
        }
        return text
    }

    /// One more operation's cost, where a run varied the operation count: the slope with its
    /// 95% interval, and what the loop costs once (the intercept).
    static func marginalSection(_ results: [CellResult]) -> String {
        let fits = MarginalCost.fits(results, metrics: headlineMetrics)
        guard !fits.isEmpty else { return "" }
        var rows: [[String]] = [["  group", "over", "metric", "per op", "once per loop", "cells"]]
        for cost in fits {
            let slope = number(cost.fit.slope) + (cost.margin.map { " ± " + number($0) } ?? " (2 counts: no interval)")
            rows.append(["  " + cost.group, cost.axis, shortName(cost.metric), slope, number(cost.fit.intercept), String(cost.fit.points)])
        }
        return "\nmarginal cost (loop totals fitted against OPS, 95% interval):\n" + table(rows)
    }

    static func shortName(_ metric: String) -> String {
        if metric.hasPrefix("ipi:") { return String(metric.dropFirst(4)) }
        if metric == SweepAnalysis.wallMetric { return "µs (test wall time)" }
        if metric == SweepAnalysis.reachMetric { return "CPUs reached per sync" }
        let symbol = String(metric.dropFirst(6))
        return probeColumns.first { $0.symbol == symbol }?.short ?? symbol
    }

    static func seconds(_ value: Double?) -> String {
        value.map { String(format: "%.1fs", $0) } ?? "-"
    }

    static func number(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
    }

    /// The IPI rows that moved, busiest first (at most four).
    static func ipiSummary(_ result: CellResult) -> String {
        guard let counters = result.counters else { return "-" }
        let moved = counters.ipis.filter { $0.total > 0 }.sorted { $0.total > $1.total }.prefix(4)
        guard !moved.isEmpty else { return "none" }
        return moved.map { "\($0.name) \(number($0.perOperation ?? Double($0.total)))" }.joined(separator: "  ")
    }

    /// `≥` marks a probe that missed hits: its figure is a lower bound.
    static func probeSummary(_ result: CellResult) -> String {
        guard let counters = result.counters, !counters.probes.isEmpty else { return "-" }
        let shown = probeColumns.compactMap { column in
            counters.probe(column.symbol).map {
                "\(column.short) \($0.missed > 0 ? "≥" : "")\(number($0.perOperation ?? Double($0.hits)))"
            }
        }
        return shown.isEmpty ? "-" : shown.joined(separator: "  ")
    }

    /// Results written before the loop marks have no scope: they counted the whole test.
    static func scopeName(_ scope: CounterScope?) -> String {
        scope == .measuredLoop ? "loop" : "whole test"
    }

    /// What COUNTED and the marks mean, printed only when the table uses them.
    static func legend(_ results: [CellResult]) -> String {
        var lines: [String] = []
        let counters = results.compactMap(\.counters)
        if counters.contains(where: { $0.scope == .measuredLoop }) {
            lines.append("COUNTED loop: between the test's marks around its operations (set-up and teardown are the fixed cost below); whole test: around the whole program")
        }
        if counters.contains(where: { $0.probes.contains { $0.missed > 0 } }) {
            lines.append("≥: the probe missed hits (kprobe_profile), so its figure is a lower bound")
        }
        return lines.isEmpty ? "" : lines.map { "  \($0)\n" }.joined()
    }

    /// Counts outside the measured loop, per cell, for runs small enough to read them
    /// (`maxPerCellDetailRows` cells at most).
    static func fixedCostSection(_ results: [CellResult]) -> String {
        let measured = results.filter { $0.counters?.scope == .measuredLoop }
        guard !measured.isEmpty, measured.count <= maxPerCellDetailRows else { return "" }
        var rows: [[String]] = [["  cell", "fixed cost: IPIs", "probe hits"]]
        for result in measured {
            guard let counters = result.counters else { continue }
            let ipis = (counters.fixedIPIs ?? []).filter { $0.total > 0 }.sorted { $0.total > $1.total }.prefix(4)
                .map { "\($0.name) \($0.total)" }
            let probes = probeColumns.compactMap { column in
                counters.fixedProbes?.first { $0.symbol == column.symbol }.map { "\(column.short) \($0.hits)" }
            }
            rows.append(["  " + result.cell.id, ipis.isEmpty ? "none" : ipis.joined(separator: "  "),
                         probes.isEmpty ? "-" : probes.joined(separator: "  ")])
        }
        return "\noutside the measured loop (totals, set-up and teardown):\n" + table(rows)
    }

    static let maxPerCellDetailRows = 16

    /// Per op, from the ipi and csd tracepoints: the functions queued to other CPUs (the
    /// sync's `tlb_remove_table_smp_sync` apart from TLB flushes and wake-ups) and the IPIs.
    static func senderSection(_ results: [CellResult]) -> String {
        let traced = results.filter { $0.counters?.ipiSenders != nil }
        guard !traced.isEmpty, traced.count <= maxPerCellDetailRows else { return "" }
        var rows: [[String]] = [["  cell", "COUNTED", "per op: functions run on other CPUs, and the IPIs themselves (top 5)"]]
        for result in traced {
            guard let senders = result.counters?.ipiSenders else { continue }
            let mark = senders.lowerBound ? "≥" : ""
            let shown = senders.senders.prefix(5).map { "\($0.name) \(mark)\(number($0.perOperation ?? Double($0.ipis)))" }
            rows.append(["  " + result.cell.id, scopeName(senders.scope),
                         shown.isEmpty ? "none" : shown.joined(separator: "  ")])
        }
        return "\nIPIs by sender (tracepoints ipi:ipi_send_cpu/_cpumask, csd:csd_queue_cpu):\n" + table(rows)
    }

    static func table(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
