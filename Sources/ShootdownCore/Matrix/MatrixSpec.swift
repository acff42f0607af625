import Foundation
import Yams

/// One test of a matrix, with its parameter sweeps and its own expectations.
public struct TestSelection: Sendable, Codable, Equatable {
    public var name: String
    /// `key=value` overrides in the `--param` syntax (`gib=1,4,16`, `cycles=10`).
    public var parameters: [String]
    public var expectations: [ScopedExpectation]

    public init(name: String, parameters: [String] = [], expectations: [ScopedExpectation] = []) {
        self.name = name
        self.parameters = parameters
        self.expectations = expectations
    }
}

/// A matrix spec file (YAML): kernels × arches × paravirt × vCPUs × tests × repeats,
/// with expectations. See ci/nightly.yaml.
public struct MatrixSpec: Sendable, Codable, Equatable {
    public var name: String
    public var libvirtURI: String?
    public var kernels: [KernelSpec]
    public var arches: [Arch]?
    /// nil entries leave the hypervisor's defaults alone.
    public var paravirt: [Paravirt?]
    public var vcpus: [Int]
    public var memoryMiB: Int
    public var accel: AcceleratorChoice
    public var repeats: Int
    public var timeoutSeconds: Int
    public var tests: [TestSelection]
    /// Expectations for every cell and sweep.
    public var expectations: [ScopedExpectation]
    /// Kconfig fragments for kernels built from source, relative to the spec file.
    public var configFragments: [String] = []
    /// `widen: on|off`: race tests' widening module (default on).
    public var widen: Bool?
    /// `flavour: debug|debug-kasan`: shipped debug fragments for source-built kernels.
    public var flavour: KernelFlavour?

    public init(name: String, libvirtURI: String? = nil, kernels: [KernelSpec], arches: [Arch]? = nil,
                paravirt: [Paravirt?] = [nil], vcpus: [Int] = [4], memoryMiB: Int = 1024, accel: AcceleratorChoice = .auto,
                repeats: Int = 1, timeoutSeconds: Int = 300, tests: [TestSelection], expectations: [ScopedExpectation] = []) {
        self.name = name
        self.libvirtURI = libvirtURI
        self.kernels = kernels
        self.arches = arches
        self.paravirt = paravirt
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.accel = accel
        self.repeats = repeats
        self.timeoutSeconds = timeoutSeconds
        self.tests = tests
        self.expectations = expectations
    }

    /// Reads and checks a spec; every error names file:line:column and what is allowed.
    public static func load(_ url: URL, catalog: TemplateCatalog) throws -> MatrixSpec {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw ShootdownError.io(path: url.path, message: "cannot read the matrix spec")
        }
        return try parse(text, file: url.path, catalog: catalog)
    }

    public static func parse(_ text: String, file: String, catalog: TemplateCatalog) throws -> MatrixSpec {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ShootdownError.specInvalid(location: file, message: "not valid YAML: \(error)")
        }
        guard let root = node else { throw ShootdownError.specInvalid(location: file, message: "the spec is empty") }
        return try SpecReader(file: file, catalog: catalog).spec(root)
    }
}

/// Walks the YAML node tree strictly, keeping positions for messages.
struct SpecReader {
    let file: String
    let catalog: TemplateCatalog

    func fail(_ node: Node, _ message: String) -> ShootdownError {
        let position = node.mark.map { ":\($0.line):\($0.column)" } ?? ""
        return .specInvalid(location: file + position, message: message)
    }

    func mapping(_ node: Node, allowed: [String], what: String) throws -> [(key: String, value: Node, keyNode: Node)] {
        guard let mapping = node.mapping else { throw fail(node, "\(what) must be a mapping of \(allowed.joined(separator: ", "))") }
        var seen = Set<String>()
        return try mapping.map { key, value in
            guard let name = key.string else { throw fail(key, "keys must be plain words") }
            guard allowed.contains(name) else {
                throw fail(key, "unknown key '\(name)' in \(what); allowed here: \(allowed.joined(separator: ", "))")
            }
            guard seen.insert(name).inserted else { throw fail(key, "'\(name)' appears twice in \(what)") }
            return (name, value, key)
        }
    }

    /// A scalar or a list of scalars, as a list.
    func list(_ node: Node) -> [Node] {
        node.sequence.map { Array($0) } ?? [node]
    }

    func string(_ node: Node, _ what: String) throws -> String {
        guard let scalar = node.scalar else { throw fail(node, "\(what) must be a single value") }
        return scalar.string
    }

    func int(_ node: Node, _ what: String, range: ClosedRange<Int>) throws -> Int {
        guard let value = node.scalar.flatMap({ Int($0.string) }) else { throw fail(node, "\(what) must be a whole number") }
        guard range.contains(value) else { throw fail(node, "\(what) \(value) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return value
    }

    func double(_ node: Node, _ what: String) throws -> Double {
        guard let value = node.scalar.flatMap({ Double($0.string) }) else { throw fail(node, "\(what) must be a number") }
        return value
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ type: T.Type, _ what: String) throws -> T where T.RawValue == String {
        let text = try string(node, what)
        guard let value = T(rawValue: text) ?? T(rawValue: text.lowercased()) ?? T(rawValue: text.uppercased()) else {
            throw fail(node, "\(what) '\(text)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }

    static let topKeys = ["name", "libvirt_uri", "kernels", "arches", "paravirt", "vcpus", "memory_mib", "accel", "repeats",
                          "timeout_s", "config_fragments", "tests", "expect", "widen", "flavour"]

    func spec(_ root: Node) throws -> MatrixSpec {
        var spec = MatrixSpec(name: URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent, kernels: [], tests: [])
        var sawKernels = false, sawTests = false
        for (key, value, _) in try mapping(root, allowed: Self.topKeys, what: "the spec") {
            switch key {
            case "name": spec.name = try string(value, "name")
            case "libvirt_uri": spec.libvirtURI = try string(value, "libvirt_uri")
            case "kernels":
                sawKernels = true
                spec.kernels = try list(value).map { item in
                    do { return try KernelSpec(parsing: try string(item, "a kernel")) } catch let error as ShootdownError {
                        throw fail(item, error.description)
                    }
                }
            case "arches":
                spec.arches = try list(value).map { item in
                    do { return try Arch(parsing: try string(item, "an arch")) } catch {
                        throw fail(item, "unknown arch '\(item.string ?? "")'; use x86_64 or aarch64")
                    }
                }
            case "paravirt":
                spec.paravirt = try list(value).map { item -> Paravirt? in
                    if item.string == "default" { return nil }
                    return try choice(item, Paravirt.self, "paravirt")
                }
            case "vcpus": spec.vcpus = try list(value).map { try int($0, "vcpus", range: 1...256) }
            case "memory_mib": spec.memoryMiB = try int(value, "memory_mib", range: 128...65536)
            case "accel": spec.accel = try choice(value, AcceleratorChoice.self, "accel")
            case "repeats": spec.repeats = try int(value, "repeats", range: 1...100)
            case "timeout_s": spec.timeoutSeconds = try int(value, "timeout_s", range: 10...86400)
            case "tests":
                sawTests = true
                spec.tests = try list(value).map(test)
            case "expect": spec.expectations = try list(value).map(expectation)
            case "widen":
                switch value.string {
                case "on": spec.widen = true
                case "off": spec.widen = false
                default: throw fail(value, "widen '\(value.string ?? "")' is not one of on, off")
                }
            case "flavour": spec.flavour = try choice(value, KernelFlavour.self, "flavour")
            case "config_fragments":
                let base = URL(fileURLWithPath: file).deletingLastPathComponent()
                spec.configFragments = try list(value).map { item in
                    let path = try string(item, "a config fragment")
                    let url = path.hasPrefix("/") ? URL(fileURLWithPath: path) : base.appendingPathComponent(path)
                    guard FileManager.default.fileExists(atPath: url.path) else { throw fail(item, "no config fragment at \(url.path)") }
                    return url.path
                }
            default: break
            }
        }
        guard sawKernels, !spec.kernels.isEmpty else { throw fail(root, "the spec needs `kernels:` (e.g. [debian:6.12.117])") }
        guard sawTests, !spec.tests.isEmpty else { throw fail(root, "the spec needs `tests:` (names from shootdown generate --list)") }
        return spec
    }

    func test(_ node: Node) throws -> TestSelection {
        if let name = node.string { return try checkedTest(TestSelection(name: name), at: node) }
        var selection = TestSelection(name: "")
        var paramsNode: Node?
        for (key, value, _) in try mapping(node, allowed: ["name", "params", "expect"], what: "a test") {
            switch key {
            case "name": selection.name = try string(value, "test name")
            case "params":
                paramsNode = value
                selection.parameters = try mapping(value, allowed: try parameterNames(selection.name, at: node), what: "params")
                    .map { key, value, _ in "\(key)=" + (try list(value).map { try string($0, key) }.joined(separator: ",")) }
            case "expect": selection.expectations = try list(value).map(expectation)
            default: break
            }
        }
        guard !selection.name.isEmpty else { throw fail(node, "a test needs `name:`") }
        for index in selection.expectations.indices { selection.expectations[index].test = selection.name }
        return try checkedTest(selection, at: paramsNode ?? node)
    }

    func parameterNames(_ test: String, at node: Node) throws -> [String] {
        guard !test.isEmpty else { throw fail(node, "write `name:` before `params:`") }
        do {
            return try catalog.template(named: test).manifest.parameters.map(\.name)
        } catch let error as ShootdownError {
            throw fail(node, error.description)
        }
    }

    /// Renders nothing, but expands the parameters so a bad value fails here.
    func checkedTest(_ selection: TestSelection, at node: Node) throws -> TestSelection {
        do {
            _ = try catalog.template(named: selection.name).instances(overrides: selection.parameters)
        } catch let error as ShootdownError {
            throw fail(node, error.description)
        }
        return selection
    }

    static let ruleKeys = ["status", "metric", "min", "max", "scaling", "arch", "kernel", "paravirt"]

    func expectation(_ node: Node) throws -> ScopedExpectation {
        let fields = try mapping(node, allowed: Self.ruleKeys, what: "an expectation")
        var scoped = ScopedExpectation(rule: .status([.pass]))
        var metric: String?, min: Double?, max: Double?, rule: Expectation?
        for (key, value, _) in fields {
            switch key {
            case "status": rule = .status(try list(value).map { try choice($0, CellStatus.self, "status") })
            case "metric": metric = try checkedMetric(value)
            case "min": min = try double(value, "min")
            case "max": max = try double(value, "max")
            case "scaling":
                var over: String?, scalingMetric: String?, kind: ScalingClass?
                for (field, fieldValue, _) in try mapping(value, allowed: ["over", "metric", "is"], what: "scaling") {
                    switch field {
                    case "over": over = try string(fieldValue, "over")
                    case "metric": scalingMetric = try checkedMetric(fieldValue)
                    case "is":
                        let text = try string(fieldValue, "is")
                        guard let parsed = ScalingClass(rawValue: text), parsed != .undecided else {
                            throw fail(fieldValue, "scaling is '\(text)'? use constant or linear")
                        }
                        kind = parsed
                    default: break
                    }
                }
                guard let over, let scalingMetric, let kind else {
                    throw fail(value, "scaling needs over, metric and is (e.g. {over: gib, metric: probe:tlb_remove_table_sync_one, is: constant})")
                }
                rule = .scaling(over: over, metric: scalingMetric, is: kind)
            case "arch":
                scoped.arch = try? Arch(parsing: try string(value, "arch"))
                if scoped.arch == nil { throw fail(value, "arch must be x86_64 or aarch64") }
            case "kernel": scoped.kernel = try string(value, "kernel")
            case "paravirt": scoped.paravirt = try choice(value, Paravirt.self, "paravirt").rawValue
            default: break
            }
        }
        if let metric {
            guard rule == nil else { throw fail(node, "one rule per expectation: metric or status or scaling") }
            guard min != nil || max != nil else { throw fail(node, "a metric rule needs min:, max: or both") }
            rule = .metric(name: metric, min: min, max: max)
        } else if min != nil || max != nil {
            throw fail(node, "min:/max: go with metric:")
        }
        guard let rule else { throw fail(node, "an expectation needs status:, metric: (with min/max) or scaling:") }
        scoped.rule = rule
        return scoped
    }

    func checkedMetric(_ node: Node) throws -> String {
        let text = try string(node, "metric")
        guard (text.hasPrefix("probe:") && text.count > 6) || (text.hasPrefix("ipi:") && text.count > 4)
                || [SweepAnalysis.wallMetric, SweepAnalysis.reachMetric].contains(text) else {
            throw fail(node, "metric '\(text)' must be probe:<symbol>, ipi:<row>, \(SweepAnalysis.wallMetric) or \(SweepAnalysis.reachMetric) "
                       + "(e.g. probe:tlb_remove_table_sync_one, ipi:CAL, ipi:IPI1)")
        }
        return text
    }
}
