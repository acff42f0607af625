import Foundation

/// The cell's counters from a test record: per-op figures over the test's measured loop
/// where it marked one (the rest kept as fixed cost), over the whole program otherwise.
extension VerdictBuilder {
    /// Per-op figures count the test's measured loop when it marked one, and the whole
    /// program otherwise; what lies outside the loop is kept as the fixed cost.
    static func counters(for test: TestRecord, tap: TAPReport, input: Input) throws(GuestDataError) -> CellCounters {
        let operations = tap.metric("ops")
        let registered = input.records.boot?.probes.filter { $0.status == "ok" }.map(\.symbol) ?? input.probes
        let whole = try deltas(interrupts: (test.interruptsBefore, test.interruptsAfter),
                               kprobes: (test.kprobesBefore, test.kprobesAfter), symbols: registered, operations: operations)
        let operation = tap.metrics["op"] ?? input.operation
        let senders = test.ipiTrace.map { IPISenders(IPITrace.parse($0), operations: operations, cut: test.ipiTraceCut ?? false) }
        guard let window = test.window else {
            return CellCounters(operation: operation, operations: operations, ipis: whole.ipis, probes: whole.probes, scope: .wholeTest,
                                ipiSenders: senders)
        }
        guard !window.cut else { throw GuestDataError("the test's measured-loop snapshots were cut at the agent's cap") }
        let loop: (ipis: [IPIDelta], probes: [ProbeDelta])
        do {
            loop = try deltas(interrupts: (window.interruptsBegin, window.interruptsEnd),
                              kprobes: (window.kprobesBegin, window.kprobesEnd), symbols: registered, operations: operations)
        } catch {
            throw GuestDataError("the measured loop: \(error.message)")
        }
        var fixedIPIs: [IPIDelta] = []
        for ipi in whole.ipis {
            let inLoop = loop.ipis.first { $0.name == ipi.name }
            var perCPU: [Int] = []
            for (index, count) in ipi.perCPU.enumerated() {
                let counted = inLoop.map { index < $0.perCPU.count ? $0.perCPU[index] : 0 } ?? 0
                perCPU.append(try outside(whole: count, loop: counted, what: "IPI row \(ipi.name) CPU\(index)"))
            }
            fixedIPIs.append(IPIDelta(name: ipi.name, description: ipi.description, perCPU: perCPU,
                                      total: try GuestNumber.sum(perCPU, what: "IPI row \(ipi.name)"), perOperation: nil))
        }
        var fixedProbes: [ProbeDelta] = []
        for probe in whole.probes {
            let inLoop = loop.probes.first { $0.symbol == probe.symbol }
            fixedProbes.append(ProbeDelta(symbol: probe.symbol,
                                          hits: try outside(whole: probe.hits, loop: inLoop?.hits ?? 0, what: "kprobe \(probe.symbol) hits"),
                                          missed: try outside(whole: probe.missed, loop: inLoop?.missed ?? 0, what: "kprobe \(probe.symbol) misses"),
                                          perOperation: nil))
        }
        return CellCounters(operation: operation, operations: operations, ipis: loop.ipis, probes: loop.probes,
                            scope: .measuredLoop, fixedIPIs: fixedIPIs, fixedProbes: fixedProbes, ipiSenders: senders)
    }

    static func deltas(interrupts: (String, String), kprobes: (String, String), symbols: [String],
                       operations: Int?) throws(GuestDataError) -> (ipis: [IPIDelta], probes: [ProbeDelta]) {
        var ipis: [IPIDelta] = []
        if let before = InterruptTable.parse(interrupts.0), let after = InterruptTable.parse(interrupts.1) {
            ipis = try IPIAccounting.deltas(before: before, after: after, operations: operations)
        }
        let probes = try ProbeDelta.deltas(before: KprobeProfile.parse(kprobes.0), after: KprobeProfile.parse(kprobes.1),
                                           symbols: symbols, operations: operations)
        return (ipis, probes)
    }

    /// The count outside the loop; a loop that counted more than the whole test did not
    /// lie inside it, and its copies are not the kernel's.
    static func outside(whole: Int, loop: Int, what: String) throws(GuestDataError) -> Int {
        guard loop <= whole else {
            throw GuestDataError("the measured loop counted more than the whole test (\(what): \(loop) > \(whole))")
        }
        return whole - loop
    }
}
