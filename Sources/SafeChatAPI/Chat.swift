import Foundation

/// Constants of the chat channel, GET /chat (docs/PROTOCOL.md section 2).
public enum ChatChannel {
    /// The `v` of every frame this build sends and accepts.
    public static let version = 1
    /// The WebSocket subprotocol a browser names, beside its ticket.
    public static let subprotocol = "safechat.v1"
    /// A ticket travels as the subprotocol `safechat.ticket.<ticket>` (browsers cannot set headers).
    public static let ticketProtocolPrefix = "safechat.ticket."
    /// Largest frame (one WebSocket message) either side accepts by default, in bytes.
    public static let defaultMaxFrame = 64 * 1024
}

/// The close codes the gateway ends a chat connection with, beyond RFC 6455's own (1000 normal,
/// 1001 going away, 1009 message too big). The reason text says the rest.
public enum ChatCloseCode: UInt16, Sendable {
    /// The gateway is shutting down (RFC 6455 "going away"): reconnect, to another gateway if there are several.
    case goingAway = 1001
    /// The token was revoked (password changed, account removed) or the caller left the session.
    case revoked = 4401
    /// Over the per-connection rate limit.
    case rateLimited = 4429
    /// The connection could not keep up with what it was sent; reconnect to catch up from the queue.
    case tooSlow = 4408
}

/// One sealed, signed message as it travels (docs/PROTOCOL.md section 1). Binary fields are
/// lowercase hex; the gateway reads only the ids, the epoch and the time.
public struct ChatMessageWire: Codable, Sendable, Equatable {
    public let sessionID: String
    public let epoch: UInt32
    public let sender: String
    public let messageID: String
    public let sentAt: UInt64
    public let ciphertext: String
    public let signature: String

    public init(sessionID: String, epoch: UInt32, sender: String, messageID: String, sentAt: UInt64, ciphertext: String, signature: String) {
        self.sessionID = sessionID
        self.epoch = epoch
        self.sender = sender
        self.messageID = messageID
        self.sentAt = sentAt
        self.ciphertext = ciphertext
        self.signature = signature
    }

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id", epoch, sender, messageID = "message_id", sentAt = "sent_at", ciphertext, signature
    }
}

/// What the gateway announces when an upload into a session completes. The gateway vouches for it
/// (it is not signed by the sender); the file itself is verified when it is opened.
public struct ChatFileEvent: Codable, Sendable, Equatable {
    public let fileID: FileID
    /// Sealed bytes stored.
    public let size: Int64
    public let sender: UserID
    public let epoch: UInt32
    /// The 92-byte stream header, hex: its salt opens the sealed name.
    public let header: String
    /// The file name sealed under the session key (docs/API.md, metadata `name`), "" if none.
    public let sealedName: String

    public init(fileID: FileID, size: Int64, sender: UserID, epoch: UInt32, header: String, sealedName: String) {
        self.fileID = fileID
        self.size = size
        self.sender = sender
        self.epoch = epoch
        self.header = header
        self.sealedName = sealedName
    }

    enum CodingKeys: String, CodingKey { case fileID = "file_id", size, sender, epoch, header, sealedName = "sealed_name" }
}

/// Every frame on GET /chat, both ways: `{"v": 1, "type": ..., ...}` with the fields its type
/// uses (docs/PROTOCOL.md section 2 lists which).
public struct ChatFrame: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// client → gateway: a message to relay.
        case send
        /// client → gateway: every delivery up to `seq` is stored; the gateway deletes them.
        case ack
        /// gateway → client, first: the session, the caller, how many queued deliveries follow and
        /// how many were dropped (queue full or expired) since the last connection.
        case ready
        /// gateway → client: a queued or live message or file event, numbered `seq`.
        case delivery
        /// gateway → sender: the message `message_id` is durable and being relayed.
        case sent
        /// gateway → client: a request failed (`error`, `text`); the connection stays open.
        case error
    }

    public var v: Int
    public var type: Kind
    public var seq: UInt64?
    /// Gateway time of the delivery or acknowledgement, ms since 1970.
    public var time: UInt64?
    public var message: ChatMessageWire?
    public var file: ChatFileEvent?
    public var messageID: String?
    public var sessionID: SessionID?
    public var userID: UserID?
    public var queued: Int?
    public var dropped: UInt64?
    public var error: ErrorCode?
    public var text: String?

    public init(type: Kind, seq: UInt64? = nil, time: UInt64? = nil, message: ChatMessageWire? = nil, file: ChatFileEvent? = nil,
                messageID: String? = nil, sessionID: SessionID? = nil, userID: UserID? = nil, queued: Int? = nil,
                dropped: UInt64? = nil, error: ErrorCode? = nil, text: String? = nil) {
        v = ChatChannel.version
        self.type = type
        self.seq = seq
        self.time = time
        self.message = message
        self.file = file
        self.messageID = messageID
        self.sessionID = sessionID
        self.userID = userID
        self.queued = queued
        self.dropped = dropped
        self.error = error
        self.text = text
    }

    enum CodingKeys: String, CodingKey {
        case v, type, seq, time, message, file, messageID = "message_id", sessionID = "session_id", userID = "user_id", queued,
             dropped, error, text
    }
}

/// POST /chat/ticket: a single-use ticket for one WebSocket upgrade, valid for `expires_in` seconds.
public struct ChatTicketReply: Codable, Sendable {
    public let ticket: String
    public let expiresIn: Int
    public init(ticket: String, expiresIn: Int) {
        self.ticket = ticket
        self.expiresIn = expiresIn
    }
    enum CodingKeys: String, CodingKey { case ticket, expiresIn = "expires_in" }
}
