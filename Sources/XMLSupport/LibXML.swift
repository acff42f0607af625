internal import CLibXML2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// libxml2 initialises its parser and XSD datatype tables lazily and not thread-safely;
/// concurrent first use fails with "Type 'unsignedInt' is not exported". Initialise once
/// and keep RelaxNG work on one thread at a time.
private final class LibXMLGate: @unchecked Sendable {
    static let shared = LibXMLGate()
    private var mutex = pthread_mutex_t()

    private init() {
        pthread_mutex_init(&mutex, nil)
        xmlInitParser()
        xmlRelaxNGInitTypes()
    }

    func run<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}

public enum XMLSupportError: Error, Equatable, CustomStringConvertible {
    case serialisationFailed
    case parseFailed([String])
    case schemaUnreadable(path: String, messages: [String])

    public var description: String {
        switch self {
        case .serialisationFailed: return "libxml2 could not serialise the document"
        case .parseFailed(let messages): return "XML does not parse: " + messages.joined(separator: "; ")
        case .schemaUnreadable(let path, let messages):
            return "RelaxNG schema \(path) could not be loaded: " + messages.joined(separator: "; ")
        }
    }
}

extension XMLElement {
    /// Serialises through libxml2 with two-space indentation and no XML declaration
    /// (libvirt's own dumps have none either).
    public func serialized() throws -> String {
        guard let doc = xmlNewDoc("1.0") else { throw XMLSupportError.serialisationFailed }
        defer { xmlFreeDoc(doc) }
        let root = makeNode(in: doc)
        xmlDocSetRootElement(doc, root)

        guard let buffer = xmlBufferCreate() else { throw XMLSupportError.serialisationFailed }
        defer { xmlBufferFree(buffer) }
        let options = Int32(XML_SAVE_FORMAT.rawValue | XML_SAVE_NO_DECL.rawValue)
        guard let context = xmlSaveToBuffer(buffer, "UTF-8", options) else {
            throw XMLSupportError.serialisationFailed
        }
        xmlSaveTree(context, root)
        xmlSaveClose(context)
        guard let content = xmlBufferContent(buffer) else { throw XMLSupportError.serialisationFailed }
        return String(cString: content) + "\n"
    }

    private func makeNode(in doc: xmlDocPtr) -> xmlNodePtr {
        let node = xmlNewDocNode(doc, nil, name, nil)!
        for attribute in attributes {
            xmlNewProp(node, attribute.name, attribute.value)
        }
        for child in children {
            switch child {
            case .element(let element):
                xmlAddChild(node, element.makeNode(in: doc))
            case .text(let text):
                // xmlNewDocText escapes on output; the tree holds the raw text.
                xmlAddChild(node, xmlNewDocText(doc, text))
            }
        }
        return node
    }
}

/// Collects libxml2's structured errors for one operation.
private final class ErrorSink {
    var messages: [String] = []
}

private func collect(_ context: UnsafeMutableRawPointer?, _ error: xmlErrorPtr?) {
    guard let context, let error else { return }
    let sink = Unmanaged<ErrorSink>.fromOpaque(context).takeUnretainedValue()
    var message = error.pointee.message.map { String(cString: $0) } ?? "unknown libxml2 error"
    while message.last == "\n" { message.removeLast() }
    if error.pointee.line > 0 { message = "line \(error.pointee.line): " + message }
    sink.messages.append(message)
}

/// Validates documents against a RelaxNG schema (libvirt ships domain.rng).
public struct RelaxNGValidator: Sendable {
    public let schemaPath: String

    public init(schemaPath: String) {
        self.schemaPath = schemaPath
    }

    /// Returns the validation errors; an empty array means the document is valid.
    public func validate(_ xml: String) throws -> [String] {
        try LibXMLGate.shared.run { try validateUnlocked(xml) }
    }

    private func validateUnlocked(_ xml: String) throws -> [String] {
        let sink = ErrorSink()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        return try withExtendedLifetime(sink) {
            xmlSetStructuredErrorFunc(context, collect)
            defer { xmlSetStructuredErrorFunc(nil, nil) }

            guard let parserContext = xmlRelaxNGNewParserCtxt(schemaPath) else {
                throw XMLSupportError.schemaUnreadable(path: schemaPath, messages: sink.messages)
            }
            defer { xmlRelaxNGFreeParserCtxt(parserContext) }
            xmlRelaxNGSetParserStructuredErrors(parserContext, collect, context)
            guard let schema = xmlRelaxNGParse(parserContext) else {
                throw XMLSupportError.schemaUnreadable(path: schemaPath, messages: sink.messages)
            }
            defer { xmlRelaxNGFree(schema) }

            let bytes = Array(xml.utf8)
            let parsed = bytes.withUnsafeBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                    xmlReadMemory($0, Int32(bytes.count), "domain.xml", "UTF-8", Int32(XML_PARSE_NONET.rawValue))
                }
            }
            guard let doc = parsed else { throw XMLSupportError.parseFailed(sink.messages) }
            defer { xmlFreeDoc(doc) }

            guard let validContext = xmlRelaxNGNewValidCtxt(schema) else {
                throw XMLSupportError.schemaUnreadable(path: schemaPath, messages: sink.messages)
            }
            defer { xmlRelaxNGFreeValidCtxt(validContext) }
            sink.messages.removeAll()
            xmlRelaxNGSetValidStructuredErrors(validContext, collect, context)
            let result = xmlRelaxNGValidateDoc(validContext, doc)
            if result != 0 && sink.messages.isEmpty {
                sink.messages.append("document does not match \(schemaPath)")
            }
            return sink.messages
        }
    }
}
