#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import SafeChatAPI
import SealedFormat

/// One delivery the gateway stores and relays: a sealed message or a file event, numbered `seq`
/// within its session, for the members who were recipients when it was sent.
/// A reference type: each entry is shared by its session's queue, the bus and every recipient's
/// connection, and copying its fields for each was a measurable part of the relay's work.
public final class ChatEntry: Codable, Sendable {
    public let session: SessionID
    public let seq: UInt64
    /// Gateway time, ms since 1970.
    public let time: UInt64
    public let recipients: [UserID]
    public let message: ChatMessageWire?
    public let file: ChatFileEvent?
    /// The `delivery` frame's JSON as sent, encoded once for all recipients (encoding it for each
    /// was most of the gateway's work under load).
    let frame: ByteBuffer
    /// Where `frame` holds the message's JSON object, which the log record copies.
    private let messageObject: Range<Int>?

    public init(session: SessionID, seq: UInt64, time: UInt64, recipients: [UserID], message: ChatMessageWire?, file: ChatFileEvent?) {
        self.session = session
        self.seq = seq
        self.time = time
        self.recipients = recipients
        self.message = message
        self.file = file
        var messageObject: Range<Int>?
        frame = ByteBuffer(bytes: ChatFrame(type: .delivery, seq: seq, time: time, message: message, file: file)
            .jsonBytes(messageObject: &messageObject))
        self.messageObject = messageObject
    }

    func write(to json: inout ChatJSONWriter) {
        json.field("file", object: file.map { file in { file.write(to: &$0) } })
        if let messageObject {
            frame.withUnsafeReadableBytes { json.field("message", json: UnsafeRawBufferPointer(rebasing: $0[messageObject])) }
        }
        json.field("recipients", strings: recipients.map(\.value))
        json.field("seq", seq)
        json.field("session", session.value)
        json.field("time", time)
    }

    private enum CodingKeys: String, CodingKey { case session, seq, time, recipients, message, file }

    public convenience init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(session: try container.decode(SessionID.self, forKey: .session), seq: try container.decode(UInt64.self, forKey: .seq),
                  time: try container.decode(UInt64.self, forKey: .time), recipients: try container.decode([UserID].self, forKey: .recipients),
                  message: try container.decodeIfPresent(ChatMessageWire.self, forKey: .message),
                  file: try container.decodeIfPresent(ChatFileEvent.self, forKey: .file))
    }
    /// What the entry counts against the storage limits.
    public var cost: Int { (message?.ciphertext.utf8.count ?? 0) + (file?.sealedName.utf8.count ?? 0) + 512 + 40 * recipients.count }
    /// The account it counts against: the message's sender, or the file's uploader.
    public var owner: UserID? { message.flatMap { UserID($0.sender) } ?? file?.sender }
}

/// Why a send was not stored.
public enum ChatLogError: Error, CustomStringConvertible {
    case full
    /// The sender's share of the storage is full (their deliveries wait for members who do not connect).
    case accountFull(limit: Int)
    case damaged(String)

    public var description: String {
        switch self {
        case .full: "the chat storage limit is reached"
        case .accountFull(let limit): "the sender's share of the chat storage (\(limit) bytes) is full"
        case .damaged(let detail): "the chat log is damaged: \(detail)"
        }
    }
}
