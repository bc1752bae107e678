import Foundation
import Logging

/// The gateway's log lines on standard error, one record per line, with every value escaped: a
/// value that came from a request (a user name sent to POST /login, a path, an error's text) can
/// hold a newline or look like `key=value`, and must never make a line that reads as another record.
///
/// `2026-12-04T17:41:54+0000 info safechat.gateway: key=value key2="a value" [source] message`
public struct GatewayLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, write: @escaping @Sendable (String) -> Void = GatewayLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level, message = event.message, explicit = event.metadata, source = event.source
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let explicit { all.merge(explicit) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\(Self.escaped($0.key, quoting: false))=\(Self.escaped("\($0.value)", quoting: true))" }
        let time = Self.timestamp()
        write("\(time) \(level) \(Self.escaped(label, quoting: false)):\(fields.isEmpty ? "" : " " + fields.joined(separator: " ")) "
              + "[\(Self.escaped(source, quoting: false))] \(Self.escaped(message.description, quoting: false))\n")
    }

    /// `text` with backslashes and control characters escaped (`\n`, `\r`, `\t`, `\u{…}`); quoted when
    /// `quoting` and it holds anything but plain word characters, so that a value cannot pass for a
    /// field boundary.
    static func escaped(_ text: String, quoting: Bool) -> String {
        var out = ""
        var plain = true
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"; plain = false
            case "\"": out += quoting ? "\\\"" : "\""; plain = false
            case "\n": out += "\\n"; plain = false
            case "\r": out += "\\r"; plain = false
            case "\t": out += "\\t"; plain = false
            default:
                if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format
                    || scalar == "\u{2028}" || scalar == "\u{2029}" {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                    plain = false
                } else {
                    if !(scalar.properties.isAlphabetic || scalar.properties.numericType != nil || "._:/@-+,".unicodeScalars.contains(scalar) || scalar == "_") {
                        plain = false
                    }
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return quoting && (!plain || out.isEmpty) ? "\"\(out)\"" : out
    }

    private static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [Int8](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        line.utf8CString.withUnsafeBufferPointer { bytes in _ = Foundation.write(2, bytes.baseAddress, bytes.count - 1) }
    }
}
