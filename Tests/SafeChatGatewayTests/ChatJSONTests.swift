import Foundation
import Testing
import SafeChatAPI

/// The chat's hand-written JSON is byte for byte what JSONEncoder writes, and reads back the same.
@Suite struct ChatJSONTests {
    static let user = UserID("0123456789abcdef0123456789abcdef")!
    static let session = SessionID("fedcba9876543210fedcba9876543210")!
    static let message = ChatMessageWire(sessionID: session.value, epoch: 7, sender: user.value, messageID: String(repeating: "ab", count: 16),
                                         sentAt: 1_764_633_600_123, ciphertext: String(repeating: "0f", count: 40),
                                         signature: String(repeating: "9e", count: 64))
    static let frames: [ChatFrame] = [
        ChatFrame(type: .delivery, seq: 42, time: 1_764_633_600_999, message: message),
        ChatFrame(type: .delivery, seq: 43, time: 1, file: ChatFileEvent(
            fileID: FileID("00112233445566778899aabbccddeeff")!, size: 4_200_000_000, sender: user, epoch: 0,
            header: String(repeating: "53", count: 92), sealedName: "a\"quote\\back/slash\n\t\u{01}\u{1f}é😀 </script>")),
        ChatFrame(type: .ready, sessionID: session, userID: user, queued: 0, dropped: 12),
        ChatFrame(type: .sent, seq: UInt64.max, time: 0, messageID: message.messageID),
        ChatFrame(type: .error, messageID: message.messageID, error: .staleEpoch, text: "the session is at epoch 3; fetch / seal \u{7f} \"again\""),
        ChatFrame(type: .send, message: message),
        ChatFrame(type: .ack, seq: 9),
    ]

    @Test(arguments: frames) func matchesJSONEncoder(_ frame: ChatFrame) throws {
        let expected = String(decoding: try WireCoding.encoder.encode(frame), as: UTF8.self)
        #expect(frame.jsonText == expected)
        #expect(try WireCoding.decoder.decode(ChatFrame.self, from: Data(frame.jsonText.utf8)) == frame)
    }

    /// The gateway copies a delivery's message object into its log record from the frame.
    @Test func theMessageObjectIsFoundInsideTheFrame() throws {
        var range: Range<Int>?
        let bytes = ChatFrame(type: .delivery, seq: 42, time: 1, message: Self.message).jsonBytes(messageObject: &range)
        let object = try #require(range.map { bytes[$0] })
        #expect(String(decoding: object, as: UTF8.self) == String(decoding: try WireCoding.encoder.encode(Self.message), as: UTF8.self))
        var none: Range<Int>?
        _ = ChatFrame(type: .ack, seq: 9).jsonBytes(messageObject: &none)
        #expect(none == nil)
    }

    @Test func canonicalAcksAreReadWithoutTheDecoderAndAnythingElseIsLeftToIt() {
        #expect(ChatFrame.parseCanonicalAck(ChatFrame(type: .ack, seq: 12345).jsonText) == ChatFrame(type: .ack, seq: 12345))
        #expect(ChatFrame.parseCanonicalAck(ChatFrame(type: .ack, seq: 0).jsonText)?.seq == 0)
        #expect(ChatFrame.parseCanonicalAck(ChatFrame(type: .ack, seq: .max).jsonText)?.seq == .max)
        for other in [#"{"seq":18446744073709551616,"type":"ack","v":1}"#, #"{"seq":01,"type":"ack","v":1}"#, #"{"seq":-1,"type":"ack","v":1}"#,
                      #"{"seq":,"type":"ack","v":1}"#, #"{"seq":1,"type":"ack","v":2}"#, #"{"v":1,"type":"ack","seq":1}"#, #"{"seq":1 ,"type":"ack","v":1}"#] {
            #expect(ChatFrame.parseCanonicalAck(other) == nil, "\(other)")
        }
    }

    @Test func canonicalSendsAreReadWithoutTheDecoderAndAnythingElseIsLeftToIt() throws {
        let frame = ChatFrame(type: .send, message: Self.message)
        #expect(ChatFrame.parseCanonicalSend(frame.jsonText) == frame)
        let canonical = frame.jsonText
        // Anything but the canonical form is left to the decoder (which may still accept it).
        for other in [canonical.replacingOccurrences(of: #""epoch":7"#, with: #""epoch":07"#),
                      canonical.replacingOccurrences(of: #""epoch":7"#, with: #""epoch":4294967296"#),
                      canonical.replacingOccurrences(of: "abab", with: "ABAB"),
                      canonical.replacingOccurrences(of: "abab", with: #"ab\u0061b"#),
                      canonical + " ", String(canonical.dropLast()), canonical.replacingOccurrences(of: #""v":1"#, with: #""v":2"#)] {
            #expect(ChatFrame.parseCanonicalSend(other) == nil, "\(other)")
        }
        let reordered = #"{"v":1,"type":"send","message":{"epoch":7,"ciphertext":"\#(Self.message.ciphertext)","message_id":"\#(Self.message.messageID)","sender":"\#(Self.message.sender)","sent_at":\#(Self.message.sentAt),"session_id":"\#(Self.message.sessionID)","signature":"\#(Self.message.signature)"}}"#
        #expect(ChatFrame.parseCanonicalSend(reordered) == nil)
        #expect(try WireCoding.decoder.decode(ChatFrame.self, from: Data(reordered.utf8)) == frame)
    }
}
