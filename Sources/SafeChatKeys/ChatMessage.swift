import SealedStream

/// One chat message, sealed and signed on the sender's device (docs/PROTOCOL.md, "Messages").
///
/// Each message has its own key, derived from the epoch's chat key and the message's random id, and
/// is encrypted exactly once under it, so no nonce can repeat under a key. The AAD binds the session,
/// the epoch, the sender, the message id and the send time; the sender's Ed25519 signature covers
/// the AAD and the ciphertext, so members cannot impersonate each other and the gateway cannot
/// alter a message.
public struct ChatMessage: Sendable, Equatable {
    public let sessionID: [UInt8]
    public let epoch: UInt32
    public let sender: [UInt8]
    public let messageID: [UInt8]
    /// Milliseconds since 1970, as the sender's clock said.
    public let sentAt: UInt64
    public let ciphertext: [UInt8]
    public let signature: [UInt8]

    public init(sessionID: [UInt8], epoch: UInt32, sender: [UInt8], messageID: [UInt8], sentAt: UInt64, ciphertext: [UInt8], signature: [UInt8]) {
        self.sessionID = sessionID
        self.epoch = epoch
        self.sender = sender
        self.messageID = messageID
        self.sentAt = sentAt
        self.ciphertext = ciphertext
        self.signature = signature
    }

    /// At most this many bytes of text per message.
    public static let maxText = 16 * 1024

    /// The epoch's chat key: HKDF-SHA256(session key, salt "", info "SafeChat chat v1" || 0x00 ||
    /// session id || u32be(epoch)).
    public static func chatKey(_ sessionKey: SessionKey, sessionID: [UInt8], epoch: UInt32) -> [UInt8] {
        var ikm = sessionKey.rawBytes
        defer { Secrets.cleanse(&ikm) }
        let prk = OpenSSL.hkdfExtract(salt: [], inputKey: ikm)
        return OpenSSL.hkdfExpand(prk: prk, info: Array("SafeChat chat v1".utf8) + [0] + sessionID + be32(epoch), length: 32)
    }

    static func messageKey(_ chatKey: [UInt8], messageID: [UInt8]) -> [UInt8] {
        OpenSSL.hkdfExpand(prk: chatKey, info: Array("SafeChat message v1".utf8) + [0] + messageID, length: 32)
    }

    /// label || 0x00 || session id || u32be(epoch) || sender || message id || u64be(sent at).
    var aad: [UInt8] {
        Array("SafeChat message v1".utf8) + [0] + sessionID + be32(epoch) + sender + messageID
            + (0..<8).map { UInt8((sentAt >> (56 - 8 * UInt64($0))) & 0xFF) }
    }

    /// Seals `text` from `identity` into the session's epoch.
    public static func seal(_ text: String, sessionID: [UInt8], epoch: UInt32, chatKey: [UInt8], from identity: Identity,
                            sentAt: UInt64, messageID: [UInt8] = Secrets.randomBytes(16)) throws(KeyError) -> ChatMessage {
        let plaintext = Array(text.utf8)
        guard plaintext.count <= maxText, sessionID.count == 16, messageID.count == 16, chatKey.count == 32 else {
            throw .invalidKey("a message holds at most \(maxText) bytes of text")
        }
        let unsigned = ChatMessage(sessionID: sessionID, epoch: epoch, sender: identity.userID, messageID: messageID, sentAt: sentAt,
                                   ciphertext: [], signature: [])
        var key = messageKey(chatKey, messageID: messageID)
        defer { Secrets.cleanse(&key) }
        let aad = unsigned.aad
        // One message per key: a fixed nonce cannot repeat under it.
        let ciphertext = OpenSSL.gcmSeal(plaintext, key: key, nonce: [UInt8](repeating: 0, count: 12), aad: aad)
        return ChatMessage(sessionID: sessionID, epoch: epoch, sender: identity.userID, messageID: messageID, sentAt: sentAt,
                           ciphertext: ciphertext, signature: identity.signingKey.signature(for: aad + ciphertext))
    }

    /// The text, if `senderKey` (the sender's pinned identity key, as listed in the epoch) signed
    /// this message and it decrypts under the epoch's chat key; ``ChatError`` says what failed.
    public func open(chatKey: [UInt8], senderKey: Ed25519PublicKey) throws(ChatError) -> String {
        guard sessionID.count == 16, sender.count == 16, messageID.count == 16, ciphertext.count >= 16,
              ciphertext.count <= Self.maxText + 16, signature.count == 64 else { throw .malformed }
        let aad = self.aad
        guard senderKey.isValidSignature(signature, for: aad + ciphertext) else { throw .badSignature }
        var key = Self.messageKey(chatKey, messageID: messageID)
        defer { Secrets.cleanse(&key) }
        let plaintext = OpenSSL.gcmOpen(ciphertext, key: key, nonce: [UInt8](repeating: 0, count: 12), aad: aad)
        guard let plaintext, let text = String(validating: plaintext, as: UTF8.self) else { throw .authenticationFailed }
        return text
    }
}

/// Why a recipient rejects a message (each is shown to the user as a warning).
public enum ChatError: Error, Equatable, CustomStringConvertible {
    case malformed
    case badSignature
    case authenticationFailed

    public var description: String {
        switch self {
        case .malformed: "a malformed message was rejected"
        case .badSignature: "a message whose signature is not its sender's was rejected (impersonation or tampering)"
        case .authenticationFailed: "a message that does not decrypt under the session key was rejected (tampered)"
        }
    }
}
