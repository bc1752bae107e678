import Foundation
import Logging

/// The gateway's log lines on standard error, one record per line, with every value escaped: a
/// value that came from a request (a user name sent to POST /login, a path, an error's text) can
/// hold a newline or look like `key=value`, and must never make a line that reads as another record.
///
/// `2026-12-04T17:41:54+0000 info safechat.gateway: key=value key2="a value" [source] message`
///
/// With ``Format/json``, each record is one JSON object per line instead (for log shippers):
/// `{"time":"2026-12-04T17:41:54.123Z","level":"info","logger":"safechat.gateway","message":"request",…}`
/// with the metadata as further members, whole numbers as JSON numbers.
public struct GatewayLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: Format
    private let write: @Sendable (String) -> Void

    /// How a record is written: `key=value` text for people, or one JSON object per line.
    public enum Format: String, Sendable, CaseIterable { case text, json }

    public init(label: String, format: Format = .text, write: @escaping @Sendable (String) -> Void = GatewayLogHandler.standardError) {
        self.label = label
        self.format = format
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
        if format == .json { return write(Self.jsonLine(level: level, label: label, message: message.description, metadata: all)) }
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

    /// One JSON object and a newline. JSONSerialization escapes every control character, so a
    /// value from a request cannot end the line or the object.
    static func jsonLine(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var object: [String: Any] = [:]
        for (key, value) in metadata { object[key] = jsonValue(value) }
        object["time"] = utcTimestamp()
        object["level"] = level.rawValue
        object["logger"] = label
        object["message"] = message
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{\"level\":\"error\",\"message\":\"a log record could not be written as JSON\"}\n"
        }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static func jsonValue(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let number as any BinaryInteger): Int64(clamping: number)
        case .stringConvertible(let number as Double): number.isFinite ? number : "\(number)"
        case .stringConvertible(let other): other.description
        case .array(let values): values.map(jsonValue)
        case .dictionary(let values): values.mapValues(jsonValue)
        }
    }

    private static func utcTimestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [Int8](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &parts)
        let milliseconds = now.tv_nsec / 1_000_000
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            + "." + String(repeating: "0", count: milliseconds < 10 ? 2 : milliseconds < 100 ? 1 : 0) + "\(milliseconds)Z"
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
