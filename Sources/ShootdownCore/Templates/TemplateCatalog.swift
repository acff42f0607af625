import Foundation
import Mustache

/// A test template: its manifest and the C source it renders.
public struct TestTemplate: Sendable {
    public var manifest: TemplateManifest
    public var source: String
    public var directory: URL
    /// Shared C pieces (`Templates/_common/<name>.c.mustache`) the source includes as `{{> name}}`.
    public var partials: [String: String] = [:]

    public var name: String { manifest.name }
}

/// The templates under `Templates/`, one folder each (`manifest.yaml` + `test.c.mustache`).
public struct TemplateCatalog: Sendable {
    public let root: URL

    public init(root: URL) {
        self.root = root
    }

    public init(resources: URL) {
        self.init(root: resources.appendingPathComponent("Templates"))
    }

    public func names() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return entries.filter {
            FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/manifest.yaml").path)
        }.sorted()
    }

    public func template(named name: String) throws -> TestTemplate {
        let directory = root.appendingPathComponent(name)
        let manifestURL = directory.appendingPathComponent("manifest.yaml")
        guard FileManager.default.fileExists(atPath: manifestURL.path) else {
            throw ShootdownError.unknownTest(name, available: names())
        }
        let manifest = try TemplateManifest.load(from: manifestURL)
        guard manifest.name == name else {
            throw ShootdownError.templateInvalid(path: manifestURL.path, message: "manifest names '\(manifest.name)', folder is '\(name)'")
        }
        let sourceURL = directory.appendingPathComponent("test.c.mustache")
        guard let source = try? String(contentsOf: sourceURL, encoding: .utf8) else {
            throw ShootdownError.templateInvalid(path: sourceURL.path, message: "missing or unreadable")
        }
        return TestTemplate(manifest: manifest, source: source, directory: directory, partials: partials())
    }

    /// `_common/*.c.mustache`, by name.
    func partials() -> [String: String] {
        let common = root.appendingPathComponent("_common")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: common.path)) ?? []
        var partials: [String: String] = [:]
        for file in files where file.hasSuffix(".c.mustache") {
            partials[String(file.dropLast(".c.mustache".count))] = try? String(contentsOf: common.appendingPathComponent(file), encoding: .utf8)
        }
        return partials
    }
}

extension TemplateCatalog {
    /// Renders every instance of the selected tests, each with its own parameters.
    public func render(_ selections: [TestSelection], flavour: RenderFlavour = .shootdown) throws -> [RenderedTest] {
        try selections.flatMap { selection -> [RenderedTest] in
            let template = try template(named: selection.name)
            return try template.instances(overrides: selection.parameters).map {
                try TemplateRenderer.render(template, $0, flavour: flavour)
            }
        }
    }
}

/// A template with every parameter bound: one program to build and run.
public struct TestInstance: Sendable, Hashable, Codable {
    public var test: String
    /// Parameter values in manifest order.
    public var parameters: [Parameter]

    public struct Parameter: Sendable, Hashable, Codable {
        public var name: String
        public var value: ParameterValue
    }

    public var values: [String: ParameterValue] {
        Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.value) })
    }

    /// `gib=2 touch=8 …`, for tables and reproducers.
    public var parameterText: String {
        parameters.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }
}

extension TestTemplate {
    /// Expands `--param` overrides into instances: `key=v` binds one value,
    /// `key=a,b,c` and `key=lo..hi` sweep (one instance per combination).
    public func instances(overrides: [String]) throws -> [TestInstance] {
        var sweeps: [String: [ParameterValue]] = [:]
        for override in overrides {
            guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                throw ShootdownError.invalidParameter(test: name, message: "--param takes key=value, not '\(override)'")
            }
            let key = String(override[..<equals])
            let valueText = String(override[override.index(after: equals)...])
            guard let spec = manifest.parameter(key) else {
                let known = manifest.parameters.map(\.name).joined(separator: ", ")
                throw ShootdownError.invalidParameter(test: name, message: "unknown parameter '\(key)'; it takes \(known)")
            }
            sweeps[key] = try expandValues(valueText, spec: spec)
        }
        var combinations: [[TestInstance.Parameter]] = [[]]
        for spec in manifest.parameters {
            let values = sweeps[spec.name] ?? [spec.defaultValue]
            combinations = combinations.flatMap { prefix in
                values.map { prefix + [TestInstance.Parameter(name: spec.name, value: $0)] }
            }
        }
        return combinations.map { TestInstance(test: name, parameters: $0) }
    }

    private func expandValues(_ text: String, spec: ParameterSpec) throws -> [ParameterValue] {
        var values: [ParameterValue] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            if spec.kind == .int, let range = item.range(of: "..") {
                guard let low = Int(item[..<range.lowerBound]), let high = Int(item[range.upperBound...]), low <= high else {
                    throw ShootdownError.invalidParameter(test: name, message: "\(spec.name): '\(item)' is not a range low..high")
                }
                guard high - low < 1024 else {
                    throw ShootdownError.invalidParameter(test: name, message: "\(spec.name): range \(item) has more than 1024 values")
                }
                values += try (low...high).map { try spec.parse(String($0), test: name) }
            } else {
                values.append(try spec.parse(item, test: name))
            }
        }
        return values
    }

    /// The instance with every parameter at its default.
    public var defaultInstance: TestInstance {
        TestInstance(test: name, parameters: manifest.parameters.map { .init(name: $0.name, value: $0.defaultValue) })
    }
}

/// Where rendered C runs, which decides how it reports (Templates/_common/tap.c.mustache).
public enum RenderFlavour: String, Sendable, Hashable, Codable {
    /// Prints its own TAP: the guest has no kselftest tree, and the host parses the exact lines.
    case shootdown
    /// Reports through tools/testing/selftests' kselftest.h and uses the mm selftests'
    /// vm_util.c and thp_settings.c: for the patch to a kernel tree (KselftestPatch).
    case kselftest
}

/// A rendered test: C source plus what the guest must prepare for it.
public struct RenderedTest: Sendable, Equatable {
    public var instance: TestInstance
    public var source: String
    public var flavour: RenderFlavour = .shootdown
    public var summary: String
    public var kselftestCategory: String
    public var hugepages: Int
    public var probes: [String]
    public var probeChecks: [ProbeCheck]
    public var operation: String
    /// The widening module's points for this instance (nil: the test needs none).
    public var widening: WideningPlan? = nil
    public var evidence: [EvidenceCheck] = []
    /// A race test: its threads must run at once (TemplateManifest.races).
    public var races = false
    /// NUMA nodes its guest needs (TemplateManifest.numaNodes).
    public var numaNodes = 1
}

public enum TemplateRenderer {
    /// Renders the C source. Every `{{name}}` the template uses must be a known key, so a
    /// misspelt parameter fails here instead of rendering as an empty string.
    public static func render(_ template: TestTemplate, _ instance: TestInstance,
                              flavour: RenderFlavour = .shootdown) throws -> RenderedTest {
        var context: [String: Any] = ["test_name": template.name, "operation": template.manifest.operation,
                                      "kselftest": flavour == .kselftest]
        for parameter in instance.parameters {
            switch parameter.value {
            case .int(let number):
                context[parameter.name] = number
            case .choice(let choice):
                context[parameter.name] = choice
                for option in template.manifest.parameter(parameter.name)?.choices ?? [] {
                    context["\(parameter.name)_\(option)"] = option == choice
                }
            }
        }
        for tag in referencedNames(in: template.source) where context[tag] == nil {
            throw ShootdownError.templateInvalid(path: template.directory.path, message: "test.c.mustache uses {{\(tag)}}, which is no parameter")
        }
        for partial in referencedPartials(in: template.source) where template.partials[partial] == nil {
            throw ShootdownError.templateInvalid(path: template.directory.path,
                                                 message: "test.c.mustache includes {{> \(partial)}}, but Templates/_common has no \(partial).c.mustache")
        }
        let compiled: MustacheTemplate
        var library = MustacheLibrary()
        do {
            compiled = try MustacheTemplate(string: template.source)
            for (name, text) in template.partials {
                // Partials hold C only: the pragma keeps the renderer from HTML-escaping.
                library.register(try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + text), named: name)
            }
        } catch {
            throw ShootdownError.templateInvalid(path: template.directory.path, message: "\(error)")
        }
        let pool = try PoolExpression(template.manifest.hugepages, known: Set(instance.values.keys))
        return RenderedTest(instance: instance, source: compiled.render(context, library: library), flavour: flavour,
                            summary: template.manifest.summary,
                            kselftestCategory: template.manifest.kselftestCategory,
                            hugepages: pool.evaluate(instance.values), probes: template.manifest.probes,
                            probeChecks: template.manifest.probeChecks.map { $0.resolved(instance.values) },
                            operation: template.manifest.operation,
                            widening: template.manifest.widen?.resolved(instance.values), evidence: template.manifest.evidence,
                            races: template.manifest.races, numaNodes: template.manifest.numaNodes)
    }

    /// The partials a template includes (`{{> name}}`).
    static func referencedPartials(in source: String) -> Set<String> {
        var names = Set<String>()
        var rest = source[...]
        while let open = rest.range(of: "{{>") {
            guard let close = rest[open.upperBound...].range(of: "}}") else { break }
            names.insert(rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces))
            rest = rest[close.upperBound...]
        }
        return names
    }

    /// The variable and section names in a template (`{{x}}`, `{{#x}}`, `{{^x}}`, `{{/x}}`).
    static func referencedNames(in source: String) -> Set<String> {
        var names = Set<String>()
        var rest = source[...]
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else { break }
            var tag = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            rest = rest[close.upperBound...]
            if tag.hasPrefix("%") || tag.hasPrefix("!") || tag.hasPrefix(">") { continue }
            if let first = tag.first, "#^/&{".contains(first) { tag.removeFirst() }
            tag = tag.trimmingCharacters(in: CharacterSet(charactersIn: "} ").union(.whitespaces))
            if !tag.isEmpty { names.insert(tag) }
        }
        return names
    }
}
