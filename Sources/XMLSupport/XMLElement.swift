/// A small XML tree that is serialised by libxml2, so escaping and well-formedness
/// are libxml2's job, never string concatenation's.
public struct XMLElement: Sendable, Equatable {
    public var name: String
    public var attributes: [(name: String, value: String)]
    public var children: [XMLContent]

    public init(_ name: String, _ attributes: [(String, String)] = [], children: [XMLContent] = []) {
        self.name = name
        self.attributes = attributes.map { (name: $0.0, value: $0.1) }
        self.children = children
    }

    /// An element holding only text, e.g. `<memory unit='MiB'>1024</memory>`.
    public init(_ name: String, _ attributes: [(String, String)] = [], text: String) {
        self.init(name, attributes, children: [.text(text)])
    }

    public static func == (lhs: XMLElement, rhs: XMLElement) -> Bool {
        lhs.name == rhs.name && lhs.children == rhs.children
            && lhs.attributes.map(\.name) == rhs.attributes.map(\.name)
            && lhs.attributes.map(\.value) == rhs.attributes.map(\.value)
    }
}

public enum XMLContent: Sendable, Equatable {
    case element(XMLElement)
    case text(String)
}

extension XMLElement {
    /// Appends a child element; keeps builders free of `.element(...)` noise.
    public mutating func append(_ child: XMLElement) { children.append(.element(child)) }

    /// The first child element with this name, for tests and readers.
    public func child(_ name: String) -> XMLElement? {
        for case .element(let element) in children where element.name == name { return element }
        return nil
    }

    public func attribute(_ name: String) -> String? {
        attributes.first { $0.name == name }?.value
    }

    public var text: String {
        children.map { content -> String in
            switch content {
            case .text(let string): return string
            case .element(let element): return element.text
            }
        }.joined()
    }
}
