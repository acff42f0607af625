import Foundation
import Yams

/// A test template's manifest (`Templates/<name>/manifest.yaml`): what it is, which
/// parameters it takes and what the guest must prepare for it.
public struct TemplateManifest: Sendable, Decodable, Equatable {
    public var name: String
    public var summary: String
    public var description: String
    /// What one unit of `ops` is (e.g. `fork-exit`); counters are normalised by it.
    public var operation: String
    /// The hugetlb pool the agent sets: a sum of products of parameter names and integers.
    public var hugepages: String
    /// Kernel functions worth counting with kprobes while this test runs.
    public var probes: [String]
    /// Host checks on probe hits per operation (e.g. sharing really happened).
    public var probeChecks: [ProbeCheck]
    public var parameters: [ParameterSpec]
    /// The run_vmtests.sh category an exported test joins; by default `hugetlb` for
    /// tests that need the hugetlb pool and `thp` for the others.
    public var kselftestCategory: String
    /// Widening points for race tests (nil: the test needs none).
    public var widen: WideningManifest?
    /// Metrics the test must report for its result to count.
    public var evidence: [EvidenceCheck]
    /// The verdict needs the test's threads on different vCPUs at the same moment (a race
    /// test), so TCG must give each vCPU a host thread (TCGThreads).
    public var races: Bool
    /// NUMA nodes the guest needs (a migration test); 1 declares none.
    public var numaNodes: Int

    enum CodingKeys: String, CodingKey {
        case name, summary, description, operation, hugepages, probes, parameters, widen, evidence, races
        case numaNodes = "numa_nodes"
        case probeChecks = "probe_checks", kselftestCategory = "kselftest_category"
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        summary = try container.decode(String.self, forKey: .summary)
        description = try container.decode(String.self, forKey: .description)
        operation = try container.decode(String.self, forKey: .operation)
        hugepages = try container.decode(String.self, forKey: .hugepages)
        probes = try container.decode([String].self, forKey: .probes)
        parameters = try container.decode([ParameterSpec].self, forKey: .parameters)
        // Floors that name parameters read, until a cell resolves them, as for the defaults.
        let defaults = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) })
        probeChecks = try (container.decodeIfPresent([ProbeCheck].self, forKey: .probeChecks) ?? []).map { $0.resolved(defaults) }
        kselftestCategory = try container.decodeIfPresent(String.self, forKey: .kselftestCategory)
            ?? (hugepages.trimmingCharacters(in: .whitespaces) == "0" ? "thp" : "hugetlb")
        widen = try container.decodeIfPresent(WideningManifest.self, forKey: .widen)
        evidence = try container.decodeIfPresent([EvidenceCheck].self, forKey: .evidence) ?? []
        races = try container.decodeIfPresent(Bool.self, forKey: .races) ?? false
        numaNodes = try container.decodeIfPresent(Int.self, forKey: .numaNodes) ?? 1
        guard (1...8).contains(numaNodes) else {
            throw DecodingError.dataCorruptedError(forKey: .numaNodes, in: container, debugDescription: "numa_nodes must be 1...8")
        }
    }

    public func parameter(_ name: String) -> ParameterSpec? {
        parameters.first { $0.name == name }
    }

    public static func load(from url: URL) throws -> TemplateManifest {
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw ShootdownError.templateInvalid(path: url.path, message: error.localizedDescription)
        }
        do {
            let manifest = try YAMLDecoder().decode(TemplateManifest.self, from: text)
            try manifest.checkConsistency()
            return manifest
        } catch let error as ShootdownError {
            throw error
        } catch {
            throw ShootdownError.templateInvalid(path: url.path, message: "\(error)")
        }
    }

    /// Catches manifest mistakes when the manifest is loaded, not when a user hits them.
    func checkConsistency() throws {
        var seen = Set<String>()
        for spec in parameters {
            guard seen.insert(spec.name).inserted else {
                throw ShootdownError.templateInvalid(path: name, message: "parameter \(spec.name) is declared twice")
            }
            try spec.validate(spec.defaultValue, test: name)
        }
        _ = try PoolExpression(hugepages, known: Set(parameters.map(\.name)))
        for check in probeChecks where !probes.contains(check.probe) {
            throw ShootdownError.templateInvalid(path: name, message: "probe check names \(check.probe), which is not in probes")
        }
        for check in probeChecks {
            if let expression = check.minExpression {
                do { _ = try PerOpFloor(expression, known: Set(parameters.map(\.name))) } catch let error as ShootdownError {
                    throw ShootdownError.templateInvalid(path: name, message: "probe check on \(check.probe): min_per_op: \(error.description)")
                }
            }
            if check.requiredFor != nil && check.why == nil {
                throw ShootdownError.templateInvalid(path: name, message: "probe check on \(check.probe) is required_for correctness but says no why:")
            }
        }
        try widen?.validate(test: name, parameters: Set(parameters.map(\.name)))
    }
}

/// "`probe` must fire at least `minPerOp` times per operation". `min_per_op` is a number or
/// a quotient of parameter products (`1/children`: one sync per cycle, whose ops are
/// cycles*children). With `required_for: correctness` the floor is what a fix requires:
/// `compare` reads a fall below it as a correctness regression, however welcome fewer
/// IPIs would otherwise be, and `why` says which fix.
public struct ProbeCheck: Sendable, Codable, Equatable {
    public enum Requirement: String, Sendable, Codable {
        case correctness
    }

    public var probe: String
    /// The floor for one instance: resolved from `minExpression` where there is one.
    public var minPerOp: Double
    public var name: String
    public var requiredFor: Requirement? = nil
    public var why: String? = nil
    /// `min_per_op` as written, when it names parameters.
    public var minExpression: String? = nil

    enum CodingKeys: String, CodingKey {
        case probe, name, why
        case minPerOp = "min_per_op", requiredFor = "required_for", minExpression = "min_per_op_expression"
    }

    /// The check with its floor computed for one cell's (or instance's) parameter values.
    public func resolved(_ values: [String: ParameterValue]) -> ProbeCheck {
        guard let minExpression, let floor = try? PerOpFloor(minExpression, known: Set(values.keys)) else { return self }
        var check = self
        check.minPerOp = floor.evaluate(values)
        return check
    }
}

extension ProbeCheck {
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        probe = try container.decode(String.self, forKey: .probe)
        name = try container.decode(String.self, forKey: .name)
        requiredFor = try container.decodeIfPresent(Requirement.self, forKey: .requiredFor)
        why = try container.decodeIfPresent(String.self, forKey: .why)
        if let number = try? container.decode(Double.self, forKey: .minPerOp) {
            minPerOp = number
            minExpression = try container.decodeIfPresent(String.self, forKey: .minExpression)
        } else {
            minExpression = try container.decode(String.self, forKey: .minPerOp)
            minPerOp = 0  // resolved by the manifest (defaults) and per cell
        }
    }
}

/// `a/b` with `a` and `b` pool-style expressions (sums of products of parameters and integers).
struct PerOpFloor {
    let numerator: PoolExpression
    let denominator: PoolExpression?

    init(_ text: String, known: Set<String>) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2 else {
            throw ShootdownError.templateInvalid(path: text, message: "a floor is a number or one quotient, like 1/children")
        }
        numerator = try PoolExpression(parts[0], known: known)
        denominator = try parts.count == 2 ? PoolExpression(parts[1], known: known) : nil
    }

    func evaluate(_ values: [String: ParameterValue]) -> Double {
        let top = Double(numerator.evaluate(values))
        guard let denominator else { return top }
        let bottom = denominator.evaluate(values)
        return bottom == 0 ? .infinity : top / Double(bottom)
    }
}

public enum ParameterKind: String, Sendable, Decodable {
    case int
    case choice
}

public struct ParameterSpec: Sendable, Decodable, Equatable {
    public var name: String
    public var kind: ParameterKind
    public var defaultValue: ParameterValue
    public var min: Int?
    public var max: Int?
    public var choices: [String]?
    public var unit: String?
    public var help: String

    enum CodingKeys: String, CodingKey {
        case name, type, `default`, min, max, choices, unit, help
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        kind = try container.decode(ParameterKind.self, forKey: .type)
        min = try container.decodeIfPresent(Int.self, forKey: .min)
        max = try container.decodeIfPresent(Int.self, forKey: .max)
        choices = try container.decodeIfPresent([String].self, forKey: .choices)
        unit = try container.decodeIfPresent(String.self, forKey: .unit)
        help = try container.decode(String.self, forKey: .help)
        switch kind {
        case .int: defaultValue = .int(try container.decode(Int.self, forKey: .default))
        case .choice: defaultValue = .choice(try container.decode(String.self, forKey: .default))
        }
    }

    /// Parses one user-supplied value (`--param gib=4`).
    public func parse(_ text: String, test: String) throws -> ParameterValue {
        let value: ParameterValue
        switch kind {
        case .int:
            guard let number = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw ShootdownError.invalidParameter(test: test, message: "\(name) takes a whole number, not '\(text)'")
            }
            value = .int(number)
        case .choice:
            value = .choice(text)
        }
        try validate(value, test: test)
        return value
    }

    func validate(_ value: ParameterValue, test: String) throws {
        switch (kind, value) {
        case (.int, .int(let number)):
            let unitSuffix = unit.map { " \($0)" } ?? ""
            if let min, number < min {
                throw ShootdownError.invalidParameter(test: test, message: "\(name)=\(number) is below the minimum \(min)\(unitSuffix)")
            }
            if let max, number > max {
                throw ShootdownError.invalidParameter(test: test, message: "\(name)=\(number) is above the maximum \(max)\(unitSuffix)")
            }
        case (.choice, .choice(let choice)):
            let allowed = choices ?? []
            guard allowed.contains(choice) else {
                throw ShootdownError.invalidParameter(test: test, message: "\(name) must be one of \(allowed.joined(separator: ", ")), not '\(choice)'")
            }
        default:
            throw ShootdownError.invalidParameter(test: test, message: "\(name) has a value of the wrong type")
        }
    }

    /// One line for `generate --describe`.
    public var summary: String {
        var range = ""
        switch kind {
        case .int:
            range = "\(min.map(String.init) ?? "…")..\(max.map(String.init) ?? "…")"
        case .choice:
            range = (choices ?? []).joined(separator: "|")
        }
        let unitText = unit.map { " \($0)" } ?? ""
        return "\(name) = \(defaultValue)\(unitText)  [\(range)]  \(help)"
    }
}

public enum ParameterValue: Sendable, Hashable, Codable, CustomStringConvertible {
    case int(Int)
    case choice(String)

    public var description: String {
        switch self {
        case .int(let number): return String(number)
        case .choice(let choice): return choice
        }
    }

    public var intValue: Int? {
        if case .int(let number) = self { return number }
        return nil
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) { self = .int(number) } else {
            self = .choice(try container.decode(String.self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let number): try container.encode(number)
        case .choice(let choice): try container.encode(choice)
        }
    }
}

/// `gib*touch+8`: the only arithmetic a manifest needs, parsed strictly.
struct PoolExpression {
    /// A sum of terms; each term a product of factors (parameter names or integers).
    let terms: [[String]]

    init(_ text: String, known: Set<String>) throws {
        let compact = text.filter { !$0.isWhitespace }
        guard !compact.isEmpty else {
            throw ShootdownError.templateInvalid(path: text, message: "hugepages expression is empty")
        }
        terms = compact.split(separator: "+", omittingEmptySubsequences: false).map {
            $0.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        }
        for factor in terms.joined() where Int(factor) == nil && !known.contains(factor) {
            throw ShootdownError.templateInvalid(path: text, message: "hugepages expression names '\(factor)', which is neither a number nor a parameter")
        }
    }

    func evaluate(_ values: [String: ParameterValue]) -> Int {
        terms.reduce(0) { sum, term in
            sum + term.reduce(1) { product, factor in
                product * (Int(factor) ?? values[factor]?.intValue ?? 0)
            }
        }
    }
}
