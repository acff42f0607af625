import Foundation

/// A run as KCIDB I/O JSON, schema v5.3 (kcidb-io's `kcidb_io.schema.V5_3`), for
/// KernelCI's common results database. `ci/validate-kcidb FILE` checks a rendering.
///
/// Mapping:
/// - **checkouts**: one per distinct kernel source. A Debian kernel is the `linux` source
///   package at one version, so the x86_64 and arm64 packages of 6.12.117-1~deb12u1 share
///   one checkout (`tree_name` "debian", no git fields, `comment` naming the packages).
///   A `file:` kernel is its own checkout.
/// - **builds**: one per kernel × arch (× binary package): `architecture` in kernel naming
///   (`x86_64`, `arm64`), `config_name` the Debian flavour (`amd64`, `cloud-amd64`),
///   `status` PASS (schema v5 replaced the build's `valid` with `status`).
/// - **tests**: one per cell, `<origin>:<run id>:<cell id>`, with `path`
///   `shootdown.<test>`, the cell's status (KCIDB's own names), `duration`, the headline
///   IPI figure per operation as `number`, the guest as `environment`, and every per-op
///   IPI and probe figure in `misc`. Then one test per sweep expectation whose sweep is in
///   the report (`shootdown.<test>.sweep`, PASS or FAIL), on the build of the sweep's cells.
///
/// Checkout and build IDs are hashes of what identifies the kernel (not of the run), so
/// they are the same for every run of the same kernel; test IDs carry the run id.
/// Keys are sorted and arrays keep the report's order, so a report renders identically
/// every time.
public enum KCIDBReport {
    public static let schemaMajor = 5
    public static let schemaMinor = 3

    /// Probe first: the broadcast this tool exists to count; then the function-call IPI.
    static let headlineProbes = ["tlb_remove_table_sync_one"]
    /// Function-call IPIs: `CAL` on x86, `IPI1` (IPI_CALL_FUNC) on arm64.
    static let headlineIPIs = ["CAL", "IPI1"]
    /// KCIDB's `log_excerpt` limit.
    static let logExcerptLimit = 16384

    public static func render(_ report: RunReport, origin: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(try document(report, origin: origin)), as: UTF8.self) + "\n"
    }

    static func document(_ report: RunReport, origin: String) throws -> Document {
        guard !origin.isEmpty, origin.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }) else {
            throw ShootdownError.usage("KCIDB origin '\(origin)' is invalid: KCIDB allows lowercase letters, digits and '_' only (e.g. shootdown)")
        }
        var document = Document(version: .init(major: schemaMajor, minor: schemaMinor), checkouts: [], builds: [], tests: [])
        var buildIDs: [String: String] = [:]
        for result in report.cells {
            let source = KernelSource(result.cell)
            let checkoutID = "\(origin):\(ContentHash.of(origin, source.key))"
            if let index = document.checkouts.firstIndex(where: { $0.id == checkoutID }) {
                document.checkouts[index].add(result.cell)
            } else {
                document.checkouts.append(Checkout(id: checkoutID, origin: origin, source: source, cell: result.cell))
            }
            let buildID = "\(origin):\(ContentHash.of(origin, source.key, result.cell.arch.rawValue, result.cell.kernelOrigin))"
            if !document.builds.contains(where: { $0.id == buildID }) {
                document.builds.append(Build(id: buildID, origin: origin, checkoutID: checkoutID, source: source, cell: result.cell))
            }
            buildIDs[result.cell.id] = buildID
            document.tests.append(test(result, report: report, origin: origin, buildID: buildID))
        }
        for outcome in report.sweepExpectations {
            // The subject is "<axis>: <group>", as the sweep series that was judged.
            guard let series = report.sweeps.first(where: { "\($0.axis): \($0.group)" == outcome.subject }),
                  let firstCell = series.points.first?.cell, let buildID = buildIDs[firstCell],
                  let test = report.cells.first(where: { $0.cell.id == firstCell })?.cell.test else { continue }
            document.tests.append(sweepTest(outcome, series: series, test: test, report: report, origin: origin, buildID: buildID))
        }
        return document
    }

    // MARK: - Tests

    static func test(_ result: CellResult, report: RunReport, origin: String, buildID: String) -> Test {
        let cell = result.cell
        var id = "\(origin):\(report.runID):\(cell.id)"
        if let repeatIndex = result.repeatIndex { id += ":r\(repeatIndex)" }

        var environmentMisc: [String: Value] = [
            "vcpus": .int(cell.vcpus), "paravirt": .string(cell.paravirt), "accel": .string(cell.accel.rawValue),
            "memory_mib": .int(cell.memoryMiB), "parameters": .object(cell.parameters.mapValues(Value.init)),
        ]
        if let guest = result.guest { environmentMisc["guest_uname"] = .string(guest.uname) }
        let environment = Environment(
            comment: "\(cell.arch.rawValue) QEMU guest under \(cell.accel.rawValue.uppercased()), \(cell.vcpus) vCPUs, "
                + "\(cell.memoryMiB) MiB, paravirt \(cell.paravirt)",
            misc: environmentMisc)

        var misc: [String: Value] = ["run_id": .string(report.runID), "run_name": .string(report.name),
                                     "cell_id": .string(cell.id), "kernel_spec": .string(cell.kernel)]
        if let reason = result.reason { misc["reason"] = .string(reason) }
        if let repeatIndex = result.repeatIndex { misc["repeat"] = .int(repeatIndex) }
        var timings: [String: Value] = ["total_s": .double(result.timings.totalSeconds)]
        timings["boot_s"] = result.timings.bootSeconds.map(Value.double)
        timings["test_s"] = result.timings.testSeconds.map(Value.double)
        timings["start_s"] = result.timings.startSeconds.map(Value.double)
        misc["timings"] = .object(timings)

        var number: Number?
        if let counters = result.counters {
            misc["operation"] = .string(counters.operation)
            misc["operations"] = counters.operations.map(Value.int)
            misc["ipi_per_op"] = .object(Dictionary(counters.ipis.compactMap { ipi in ipi.perOperation.map { (ipi.name, Value.double($0)) } },
                                                    uniquingKeysWith: { first, _ in first }))
            misc["ipi_total"] = .object(Dictionary(counters.ipis.map { ($0.name, Value.int($0.total)) }, uniquingKeysWith: { first, _ in first }))
            misc["probe_per_op"] = .object(Dictionary(counters.probes.compactMap { probe in probe.perOperation.map { (probe.symbol, Value.double($0)) } },
                                                      uniquingKeysWith: { first, _ in first }))
            misc["probe_hits"] = .object(Dictionary(counters.probes.map { ($0.symbol, Value.int($0.hits)) }, uniquingKeysWith: { first, _ in first }))
            if let headline = headline(counters) {
                misc["headline"] = .string(headline.metric)
                number = Number(value: headline.value, unit: "\(headline.name)/\(counters.operation)", prefix: "metric")
            }
        }
        let failedChecks = result.checks.filter { !$0.passed && !$0.skipped }
        if !failedChecks.isEmpty {
            misc["failed_checks"] = .array(failedChecks.map { .string("[\($0.source)] \($0.name)" + ($0.detail.map { ": \($0)" } ?? "")) })
        }
        if !result.splats.isEmpty { misc["splats"] = .array(result.splats.map { .string($0.title) }) }
        if let expectations = result.expectations, !expectations.isEmpty {
            misc["expectations"] = .array(expectations.map {
                .object(["rule": .string($0.rule), "met": .bool($0.met), "detail": .string($0.detail)])
            })
        }

        return Test(id: id, origin: origin, buildID: buildID, path: "shootdown.\(pathComponent(cell.test))",
                    comment: cell.id, status: result.status.rawValue,
                    duration: result.timings.totalSeconds > 0 && result.timings.totalSeconds.isFinite ? result.timings.totalSeconds : nil,
                    number: number, environment: environment, logExcerpt: logExcerpt(result), misc: misc)
    }

    static func sweepTest(_ outcome: ExpectationOutcome, series: SweepSeries, test: String, report: RunReport,
                          origin: String, buildID: String) -> Test {
        let misc: [String: Value] = [
            "run_id": .string(report.runID), "run_name": .string(report.name),
            "rule": .string(outcome.rule), "subject": .string(outcome.subject), "detail": .string(outcome.detail),
            "axis": .string(series.axis), "group": .string(series.group),
            "cells": .array(series.points.map { .string($0.cell) }),
        ]
        return Test(id: "\(origin):\(report.runID):sweep:\(ContentHash.of(outcome.rule, outcome.subject))", origin: origin,
                    buildID: buildID, path: "shootdown.\(pathComponent(test)).sweep",
                    comment: "\(outcome.rule) [\(outcome.subject)]", status: outcome.met ? "PASS" : "FAIL",
                    duration: nil, number: nil, environment: nil, logExcerpt: nil, misc: misc)
    }

    /// The headline figure: `tlb_remove_table_sync_one` hits per op, else function-call IPIs per op.
    static func headline(_ counters: CellCounters) -> (metric: String, name: String, value: Double)? {
        for symbol in headlineProbes {
            if let value = counters.probe(symbol)?.perOperation, value.isFinite { return ("probe:\(symbol)", symbol, value) }
        }
        for name in headlineIPIs {
            if let value = counters.ipi(name)?.perOperation, value.isFinite { return ("ipi:\(name)", name, value) }
        }
        return nil
    }

    /// What a reader of a failure needs first: the splat, the failed checks, or the console tail.
    static func logExcerpt(_ result: CellResult) -> String? {
        switch result.status {
        case .fail:
            var text = ""
            for splat in result.splats { text += splat.excerpt + "\n" }
            for check in result.checks where !check.passed && !check.skipped && result.splats.isEmpty {
                text += "[\(check.source)] \(check.name)" + (check.detail.map { ": \($0)" } ?? "") + "\n"
            }
            for expectation in result.expectations ?? [] where !expectation.met {
                text += "unmet: \(expectation.rule): \(expectation.detail)\n"
            }
            return text.isEmpty ? nil : String(text.unicodeScalars.prefix(logExcerptLimit))
        case .error, .miss:
            guard let tail = result.consoleTail, !tail.isEmpty else { return nil }
            // A serial console writes CRLF; the excerpt keeps plain lines.
            let text = tail.lines(omittingEmpty: false).joined(separator: "\n")
            return String(text.unicodeScalars.suffix(logExcerptLimit))
        case .pass, .done, .skip:
            return nil
        }
    }

    /// A KCIDB path component: `[a-zA-Z0-9_-]+`, so no dots.
    static func pathComponent(_ text: String) -> String {
        let mapped = String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "_" })
        return mapped.isEmpty ? "_" : mapped
    }

    /// KCIDB strings may hold anything but NUL.
    static func clean(_ text: String) -> String {
        text.contains("\0") ? text.replacingOccurrences(of: "\0", with: "") : text
    }

    // MARK: - Kernel identity

    /// What identifies a kernel's source, independent of the arch it was built for.
    struct KernelSource {
        var key: String
        var treeName: String?
        /// The Debian source version (`6.12.117-1~deb12u1`), for Debian kernels.
        var debianVersion: String?

        init(_ cell: CellDescriptor) {
            let words = cell.kernelOrigin.split(separator: " ", omittingEmptySubsequences: true)
            if cell.kernel.hasPrefix("debian"), words.count == 2 {
                debianVersion = String(words[1])
                treeName = "debian"
                key = "debian \(cell.kernelVersion) \(words[1])"
            } else {
                key = "\(cell.kernel) \(cell.kernelVersion) \(cell.kernelOrigin)"
            }
        }
    }

    /// `linux-image-6.1.0-56-cloud-amd64` → `cloud-amd64`: the release's words after the ABI.
    static func debianFlavour(package: String) -> String? {
        guard package.hasPrefix("linux-image-") else { return nil }
        let words = package.dropFirst("linux-image-".count).split(separator: "-")
        let flavour = words.drop { $0.first?.isNumber ?? true }
        return flavour.isEmpty ? nil : flavour.joined(separator: "-")
    }

    // MARK: - Schema v5.3 objects (only the fields written here)

    struct Document: Encodable {
        struct Version: Encodable { var major: Int, minor: Int }
        var version: Version
        var checkouts: [Checkout]
        var builds: [Build]
        var tests: [Test]
    }

    struct Checkout: Encodable {
        var id: String
        var origin: String
        var treeName: String?
        var comment: String?
        var valid: Bool?
        var misc: [String: Value]?

        enum CodingKeys: String, CodingKey {
            case id, origin, comment, valid, misc
            case treeName = "tree_name"
        }

        init(id: String, origin: String, source: KernelSource, cell: CellDescriptor) {
            self.id = id
            self.origin = origin
            treeName = source.treeName
            valid = true
            var misc: [String: Value] = ["kernel_version": .string(clean(cell.kernelVersion))]
            if let debianVersion = source.debianVersion { misc["debian_version"] = .string(clean(debianVersion)) }
            self.misc = misc
            add(cell)
        }

        /// Records one more cell's kernel spec and package; the comment lists them all.
        mutating func add(_ cell: CellDescriptor) {
            var specs = misc?["kernel_specs"]?.strings ?? [], packages = misc?["packages"]?.strings ?? []
            if !specs.contains(cell.kernel) { specs.append(clean(cell.kernel)) }
            if !packages.contains(cell.kernelOrigin) { packages.append(clean(cell.kernelOrigin)) }
            misc?["kernel_specs"] = .array(specs.map(Value.string))
            misc?["packages"] = .array(packages.map(Value.string))
            let version = misc?["kernel_version"]?.string ?? ""
            if let debianVersion = misc?["debian_version"]?.string {
                let names = packages.map { $0.split(separator: " ").first.map(String.init) ?? $0 }
                comment = "Debian linux \(debianVersion) (Linux \(version)): \(names.joined(separator: ", "))"
            } else {
                comment = "Linux \(version) from \(packages.joined(separator: ", "))"
            }
        }
    }

    struct Build: Encodable {
        var id: String
        var origin: String
        var checkoutID: String
        var architecture: String
        var configName: String?
        var comment: String?
        var status: String
        var misc: [String: Value]?

        enum CodingKeys: String, CodingKey {
            case id, origin, architecture, comment, status, misc
            case checkoutID = "checkout_id", configName = "config_name"
        }

        init(id: String, origin: String, checkoutID: String, source: KernelSource, cell: CellDescriptor) {
            self.id = id
            self.origin = origin
            self.checkoutID = checkoutID
            architecture = cell.arch == .aarch64 ? "arm64" : "x86_64"
            let package = cell.kernelOrigin.split(separator: " ").first.map(String.init) ?? cell.kernelOrigin
            configName = source.debianVersion == nil ? nil : debianFlavour(package: package)
            comment = clean(cell.kernelOrigin)
            status = "PASS"
            misc = ["kernel_spec": .string(clean(cell.kernel)), "kernel_version": .string(clean(cell.kernelVersion)),
                    "guest_arch": .string(cell.arch.rawValue)]
        }
    }

    struct Test: Encodable {
        var id: String
        var origin: String
        var buildID: String
        var path: String
        var comment: String?
        var status: String
        var duration: Double?
        var number: Number?
        var environment: Environment?
        var logExcerpt: String?
        var misc: [String: Value]?

        enum CodingKeys: String, CodingKey {
            case id, origin, path, comment, status, duration, number, environment, misc
            case buildID = "build_id", logExcerpt = "log_excerpt"
        }

        init(id: String, origin: String, buildID: String, path: String, comment: String?, status: String, duration: Double?,
             number: Number?, environment: Environment?, logExcerpt: String?, misc: [String: Value]?) {
            self.id = clean(id)
            self.origin = origin
            self.buildID = buildID
            self.path = path
            self.comment = comment.map(clean)
            self.status = status
            self.duration = duration
            self.number = number
            self.environment = environment
            self.logExcerpt = logExcerpt.map(clean)
            self.misc = misc?.mapValues(\.cleaned)
        }
    }

    struct Number: Encodable {
        var value: Double
        var unit: String
        var prefix: String
    }

    struct Environment: Encodable {
        var comment: String
        var misc: [String: Value]

        init(comment: String, misc: [String: Value]) {
            self.comment = clean(comment)
            self.misc = misc.mapValues(\.cleaned)
        }
    }

    /// A JSON value for the free-form `misc` objects.
    enum Value: Encodable, Equatable {
        case string(String)
        case int(Int)
        case double(Double)
        case bool(Bool)
        case array([Value])
        case object([String: Value])

        init(_ parameter: ParameterValue) {
            switch parameter {
            case .int(let number): self = .int(number)
            case .choice(let choice): self = .string(choice)
            }
        }

        var string: String? {
            if case .string(let text) = self { return text }
            return nil
        }

        var strings: [String]? {
            if case .array(let values) = self { return values.compactMap(\.string) }
            return nil
        }

        var cleaned: Value {
            switch self {
            case .string(let text): return .string(KCIDBReport.clean(text))
            case .array(let values): return .array(values.map(\.cleaned))
            case .object(let members):
                return .object(Dictionary(members.map { (KCIDBReport.clean($0.key), $0.value.cleaned) }, uniquingKeysWith: { first, _ in first }))
            case .int, .double, .bool: return self
            }
        }

        func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let text): try container.encode(text)
            case .int(let number): try container.encode(number)
            // JSON has no NaN or infinity; KCIDB forbids null, so a non-finite figure becomes text.
            case .double(let number):
                if number.isFinite { try container.encode(number) } else { try container.encode(String(number)) }
            case .bool(let flag): try container.encode(flag)
            case .array(let values): try container.encode(values)
            case .object(let members): try container.encode(members)
            }
        }
    }
}
