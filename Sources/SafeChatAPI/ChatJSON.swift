import Foundation

/// Chat frames as JSON text without Foundation's `JSONEncoder`: the gateway writes several per
/// message under load, and the generic encoder was a third of its work. The output is exactly what
/// ``WireCoding/encoder`` writes (sorted keys, slashes escaped; `ChatJSONTests` compares them);
/// any JSON parser reads it.
public struct ChatJSONWriter {
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    public mutating func object(_ body: (inout ChatJSONWriter) -> Void) {
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    private mutating func key(_ name: StaticString) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        needsComma = false
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        guard let value else { return }
        key(name)
        Self.appendString(value, to: &bytes)
        needsComma = true
    }

    public mutating func field<I: BinaryInteger>(_ name: StaticString, _ value: I?) {
        guard let value else { return }
        key(name)
        bytes.append(contentsOf: String(value).utf8)
        needsComma = true
    }

    public mutating func field(_ name: StaticString, object body: ((inout ChatJSONWriter) -> Void)?) {
        guard let body else { return }
        key(name)
        object(body)
    }

    /// A value already written as JSON (by this writer), copied as it is.
    public mutating func field(_ name: StaticString, json value: UnsafeRawBufferPointer) {
        key(name)
        bytes.append(contentsOf: value)
        needsComma = true
    }

    public mutating func field(_ name: StaticString, strings values: [String]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.appendString(value, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// A JSON string, escaped as JSONEncoder escapes it (quote, backslash, slash, controls). Runs
    /// that need no escape (all of a hex field) are copied whole.
    static func appendString(_ value: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                appendEscaped(byte, to: &bytes)
                start = index + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static func appendEscaped(_ byte: UInt8, to bytes: inout [UInt8]) {
        switch byte {
        case 0x08: bytes.append(contentsOf: [92, UInt8(ascii: "b")])
        case 0x0C: bytes.append(contentsOf: [92, UInt8(ascii: "f")])
        case 0x0A: bytes.append(contentsOf: [92, UInt8(ascii: "n")])
        case 0x0D: bytes.append(contentsOf: [92, UInt8(ascii: "r")])
        case 0x09: bytes.append(contentsOf: [92, UInt8(ascii: "t")])
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
        default: bytes.append(contentsOf: [92, byte])
        }
    }
}

extension ChatMessageWire {
    /// Fields in sorted key order.
    public func write(to json: inout ChatJSONWriter) {
        json.field("ciphertext", ciphertext)
        json.field("epoch", epoch)
        json.field("message_id", messageID)
        json.field("sender", sender)
        json.field("sent_at", sentAt)
        json.field("session_id", sessionID)
        json.field("signature", signature)
    }
}

extension ChatFileEvent {
    public func write(to json: inout ChatJSONWriter) {
        json.field("epoch", epoch)
        json.field("file_id", fileID.value)
        json.field("header", header)
        json.field("sealed_name", sealedName)
        json.field("sender", sender.value)
        json.field("size", size)
    }
}

extension ChatFrame {
    /// The frame as JSON text, byte for byte what ``WireCoding/encoder`` makes of it.
    public var jsonText: String { String(decoding: jsonBytes, as: UTF8.self) }

    /// ``jsonText`` as UTF-8.
    public var jsonBytes: [UInt8] {
        var messageObject: Range<Int>?
        return jsonBytes(messageObject: &messageObject)
    }

    /// ``jsonBytes``, and where in them the `message` object is (so that it can be copied into
    /// other JSON without being written again).
    public func jsonBytes(messageObject: inout Range<Int>?) -> [UInt8] {
        var json = ChatJSONWriter(capacity: 256 + (message?.ciphertext.utf8.count ?? 0))
        json.object { json in
            json.field("dropped", dropped)
            json.field("error", error?.rawValue)
            json.field("file", object: file.map { file in { file.write(to: &$0) } })
            if let message {
                let before = json.bytes.count
                json.field("message", object: { message.write(to: &$0) })
                messageObject = json.bytes[before...].firstIndex(of: UInt8(ascii: "{"))!..<json.bytes.count
            }
            json.field("message_id", messageID)
            json.field("queued", queued)
            json.field("seq", seq)
            json.field("session_id", sessionID?.value)
            json.field("text", text)
            json.field("time", time)
            json.field("type", type.rawValue)
            json.field("user_id", userID?.value)
            json.field("v", v)
        }
        return json.bytes
    }
}

extension ChatFrame {
    /// An `ack` frame in the exact form ``jsonText`` writes (`{"seq":N,"type":"ack","v":1}`), read
    /// without a JSON decoder; nil for anything else, which then goes to the decoder.
    public static func parseCanonicalAck(_ text: String) -> ChatFrame? {
        var text = text
        return text.withUTF8 { bytes -> ChatFrame? in
            let prefix = Array(#"{"seq":"#.utf8), suffix = Array(#","type":"ack","v":1}"#.utf8)
            guard bytes.count > prefix.count + suffix.count, bytes.count <= prefix.count + suffix.count + 20,
                  bytes.starts(with: prefix), bytes[(bytes.count - suffix.count)...].elementsEqual(suffix)
            else { return nil }
            let digits = bytes[prefix.count..<(bytes.count - suffix.count)]
            guard digits.allSatisfy({ (48...57).contains($0) }), digits.count == 1 || digits.first != 48,
                  let seq = UInt64(String(decoding: digits, as: UTF8.self))
            else { return nil }
            return ChatFrame(type: .ack, seq: seq)
        }
    }
}

extension ChatFrame {
    /// A `send` frame in the exact form ``jsonText`` writes (sorted keys, every string lowercase
    /// hex, as a SafeChat client sends it), read without a JSON decoder; nil for anything else,
    /// which then goes to the decoder.
    public static func parseCanonicalSend(_ text: String) -> ChatFrame? {
        var text = text
        return text.withUTF8 { bytes -> ChatFrame? in
            var reader = CanonicalReader(bytes: bytes)
            guard reader.literal(#"{"message":{"ciphertext":"#), let ciphertext = reader.hex(),
                  reader.literal(#","epoch":"#), let epoch = reader.number(), let epoch32 = UInt32(exactly: epoch),
                  reader.literal(#","message_id":"#), let messageID = reader.hex(),
                  reader.literal(#","sender":"#), let sender = reader.hex(),
                  reader.literal(#","sent_at":"#), let sentAt = reader.number(),
                  reader.literal(#","session_id":"#), let sessionID = reader.hex(),
                  reader.literal(#","signature":"#), let signature = reader.hex(),
                  reader.literal(#"},"type":"send","v":1}"#), reader.atEnd
            else { return nil }
            return ChatFrame(type: .send, message: ChatMessageWire(sessionID: sessionID, epoch: epoch32, sender: sender, messageID: messageID,
                                                                   sentAt: sentAt, ciphertext: ciphertext, signature: signature))
        }
    }
}

/// Reads the canonical frames: literals, lowercase-hex strings and unsigned integers.
private struct CanonicalReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset = 0

    var atEnd: Bool { offset == bytes.count }

    mutating func literal(_ text: StaticString) -> Bool {
        text.withUTF8Buffer { expected in
            guard bytes.count - offset >= expected.count,
                  UnsafeBufferPointer(rebasing: bytes[offset..<offset + expected.count]).elementsEqual(expected) else { return false }
            offset += expected.count
            return true
        }
    }

    /// `"` lowercase hex `"`.
    mutating func hex() -> String? {
        guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { return nil }
        let start = offset + 1
        var end = start
        while end < bytes.count, (48...57).contains(bytes[end]) || (97...102).contains(bytes[end]) { end += 1 }
        guard end < bytes.count, bytes[end] == UInt8(ascii: "\"") else { return nil }
        offset = end + 1
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }

    /// An unsigned integer without leading zeros that fits 64 bits.
    mutating func number() -> UInt64? {
        var value: UInt64 = 0
        let start = offset
        while offset < bytes.count, (48...57).contains(bytes[offset]) {
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(UInt64(bytes[offset] - 48))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
            offset += 1
        }
        guard offset > start, offset - start == 1 || bytes[start] != 48 else { return nil }
        return value
    }
}
