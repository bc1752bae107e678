import Foundation
import SafeChatAPI
import SafeChatKeys
import SealedStream

/// One session's chat on this device: seals what the user sends, and checks everything the
/// gateway delivers against the session's verified log before showing it. The gateway is not
/// trusted: a message is shown only if its sender was a member of its epoch, its signature
/// verifies under the key the log lists for them (pinned on this device), it decrypts under the
/// epoch's chat key and its id was not seen before; anything else becomes a visible warning.
public actor ChatRoom {
    public let sessionID: String
    let sessionBytes: [UInt8]
    let sessions: SessionClient
    public nonisolated let history: ChatHistory
    private var chain: [EpochDocument] = []
    private var chatKeys: [UInt32: [UInt8]] = [:]
    private var sessionKeys: [UInt32: SessionKey] = [:]
    private var seen: Set<String> = []
    /// Per sender, the latest send time shown: a message older than it arrived out of order.
    private var latest: [String: UInt64] = [:]
    private var lastOwnSentAt: UInt64 = 0

    public init(sessions: SessionClient, sessionID: String, identities: IdentityStore = IdentityStore()) async throws {
        guard let bytes = Secrets.bytes(fromHex: sessionID, count: 16) else {
            throw ClientError.protocolViolation("'\(sessionID)' is not a session id")
        }
        self.sessionID = sessionID
        sessionBytes = bytes
        self.sessions = sessions
        history = ChatHistory(identities: identities, identity: sessions.identity, sessionID: bytes)
        // The replay guard outlives a cleared history; a history from before it existed counts too.
        let me = Secrets.hex(sessions.identity.userID)
        var known = try history.replayGuard.read()
        for line in try history.read() where line.kind == .message {
            if let id = line.messageID { known.append(.init(messageID: id, senderID: line.senderID, sentAt: line.sentAt)) }
        }
        for entry in known {
            seen.insert(entry.messageID)
            latest[entry.senderID] = max(latest[entry.senderID] ?? 0, entry.sentAt)
            if entry.senderID == me { lastOwnSentAt = max(lastOwnSentAt, entry.sentAt) }
        }
        chain = try await sessions.verifiedChain(sessionID)
    }

    var me: String { Secrets.hex(sessions.identity.userID) }

    /// Seals `text` under the current epoch; the line is what history keeps once the gateway
    /// confirms it.
    public func seal(_ text: String) async throws -> (wire: ChatMessageWire, line: ChatLine) {
        let epoch = chain.last!.epoch
        // Strictly increasing per sender, so recipients can tell a reordering.
        let sentAt = max(UInt64(Date().timeIntervalSince1970 * 1000), lastOwnSentAt + 1)
        lastOwnSentAt = sentAt
        let message = try ChatMessage.seal(text, sessionID: sessionBytes, epoch: epoch, chatKey: try await chatKey(epoch),
                                           from: sessions.identity, sentAt: sentAt)
        let wire = ChatMessageWire(sessionID: sessionID, epoch: epoch, sender: me, messageID: Secrets.hex(message.messageID),
                                   sentAt: sentAt, ciphertext: Secrets.hex(message.ciphertext), signature: Secrets.hex(message.signature))
        seen.insert(wire.messageID)
        return (wire, ChatLine(kind: .message, messageID: wire.messageID, sender: sessions.user, senderID: me, sentAt: sentAt, text: text,
                               outgoing: true))
    }

    /// Re-reads the session's log (after a server error naming a newer epoch, or a member change).
    public func refresh() async throws { chain = try await sessions.verifiedChain(sessionID) }

    /// What a delivery shows: the message or file event, or a warning saying why it was rejected.
    /// A message that verifies but is older than one already shown from its sender is shown with
    /// a warning before it.
    public func accept(_ frame: ChatFrame) async -> [ChatLine] {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        func warning(_ text: String, from sender: String = "gateway", id: String = "") -> [ChatLine] {
            [ChatLine(kind: .warning, sender: sender, senderID: id, sentAt: frame.time ?? now, text: text)]
        }
        if let file = frame.file { return await fileLine(file, time: frame.time ?? now) }
        guard let wire = frame.message else { return warning("the gateway sent an empty delivery") }
        guard wire.sessionID == sessionID else { return warning("a message for another session was rejected") }
        let document: EpochDocument?
        do { document = try await epochDocument(wire.epoch) } catch {
            return warning("a message in epoch \(wire.epoch) was rejected: the session's log could not be verified (\(error))", id: wire.sender)
        }
        guard let document else {
            return warning("a message was rejected: it claims epoch \(wire.epoch), but the session's verified log ends at epoch "
                           + "\(chain.last!.epoch) (forged, or the gateway withholds newer epochs)", id: wire.sender)
        }
        guard let member = document.members.first(where: { Secrets.hex($0.userID) == wire.sender }) else {
            return warning("a message from someone who is not a member of epoch \(wire.epoch) was rejected", id: wire.sender)
        }
        // A message under an older epoch counts only from someone still a member now: a member
        // removed since still holds the old key, and must not keep speaking with it (docs/PROTOCOL.md 3).
        if let removal = removal(of: member, after: wire.epoch) {
            return warning("a message from \(member.name) under epoch \(wire.epoch) was refused: \(member.name) was removed from this "
                           + "session in epoch \(removal.epoch)\(removal.by.map { " by \($0)" } ?? "") and may no longer speak in it",
                           from: member.name, id: wire.sender)
        }
        guard let message = Self.decode(wire), let senderKey = try? Ed25519PublicKey(rawRepresentation: member.signingKey) else {
            return warning("a malformed message claiming to be from \(member.name) was rejected", from: member.name, id: wire.sender)
        }
        guard !seen.contains(wire.messageID) else {
            return warning("a replayed message (id \(wire.messageID.prefix(8))…, claiming to be from \(member.name)) was ignored",
                           from: member.name, id: wire.sender)
        }
        let text: String
        do {
            text = try message.open(chatKey: try await chatKey(wire.epoch), senderKey: senderKey)
        } catch let error as ChatError {
            return warning("\(error) (claimed sender \(member.name))", from: member.name, id: wire.sender)
        } catch {
            return warning("a message in epoch \(wire.epoch) could not be opened: \(error)", from: member.name, id: wire.sender)
        }
        seen.insert(wire.messageID)
        var lines: [ChatLine] = []
        if let last = latest[wire.sender], wire.sentAt <= last {
            lines += warning("the next message from \(member.name) arrived out of order (sent before one already shown)",
                             from: member.name, id: wire.sender)
        }
        latest[wire.sender] = max(latest[wire.sender] ?? 0, wire.sentAt)
        lines.append(ChatLine(kind: .message, messageID: wire.messageID, sender: member.name, senderID: wire.sender, sentAt: wire.sentAt,
                              text: text))
        return lines
    }

    /// The epoch after `epoch` that first left `member` out, and who signed it (nil: they left), if
    /// they are not a member of the newest epoch this device verified.
    private func removal(of member: EpochDocument.Member, after epoch: UInt32) -> (epoch: UInt32, by: String?)? {
        guard let newest = chain.last, newest.member(member.userID) == nil else { return nil }
        guard let removing = chain.first(where: { $0.epoch > epoch && $0.member(member.userID) == nil }) else { return nil }
        let signer = chain[Int(removing.epoch) - 1].member(removing.signer)?.name
        return (removing.epoch, signer == member.name ? nil : signer)
    }

    private func fileLine(_ file: ChatFileEvent, time: UInt64) async -> [ChatLine] {
        let sender = chain.last(where: { $0.epoch <= file.epoch })?.members.first { Secrets.hex($0.userID) == file.sender.value }?.name
            ?? file.sender.value
        guard let headerBytes = Secrets.bytes(fromHex: file.header, count: StreamHeader.encodedLength),
              let header = try? StreamHeader.parse(headerBytes) else {
            return [ChatLine(kind: .warning, sender: "gateway", senderID: "", sentAt: time,
                             text: "an announcement of file \(file.fileID.value) without a valid stream header was ignored")]
        }
        if let problem = FileBinding.problem(id: file.fileID.value, header: header) {
            return [ChatLine(kind: .warning, sender: "gateway", senderID: "", sentAt: time,
                             text: "an announcement of file \(file.fileID.value) was ignored: \(problem) (the gateway lies about the file)")]
        }
        var name: String?
        if let key = try? await sessionKey(file.epoch) {
            name = await SealedName.open([SealedName.metadataKey: file.sealedName], key: key, boundTo: header).name
        }
        return [ChatLine(kind: .file, messageID: "file:" + file.fileID.value, sender: sender, senderID: file.sender.value, sentAt: time,
                         fileID: file.fileID.value, fileName: name, fileSize: file.size)]
    }

    /// The epoch `epoch` of the verified log; a newer one than this device has makes it fetch and
    /// verify the log again (a log that fails verification throws).
    private func epochDocument(_ epoch: UInt32) async throws -> EpochDocument? {
        if let document = chain.first(where: { $0.epoch == epoch }) { return document }
        guard epoch > chain.last!.epoch else { return nil }
        try await refresh()
        return chain.first { $0.epoch == epoch }
    }

    private func sessionKey(_ epoch: UInt32) async throws -> SessionKey {
        if let key = sessionKeys[epoch] { return key }
        let key = try await sessions.key(sessionID, epoch: epoch).key
        sessionKeys[epoch] = key
        return key
    }

    private func chatKey(_ epoch: UInt32) async throws -> [UInt8] {
        if let key = chatKeys[epoch] { return key }
        let key = ChatMessage.chatKey(try await sessionKey(epoch), sessionID: sessionBytes, epoch: epoch)
        chatKeys[epoch] = key
        return key
    }

    static func decode(_ wire: ChatMessageWire) -> ChatMessage? {
        guard let session = Secrets.bytes(fromHex: wire.sessionID, count: 16), let sender = Secrets.bytes(fromHex: wire.sender, count: 16),
              let id = Secrets.bytes(fromHex: wire.messageID, count: 16),
              wire.ciphertext.utf8.count <= 2 * (ChatMessage.maxText + 16),
              let ciphertext = Secrets.bytes(fromHex: wire.ciphertext, count: wire.ciphertext.utf8.count / 2),
              let signature = Secrets.bytes(fromHex: wire.signature, count: 64)
        else { return nil }
        return ChatMessage(sessionID: session, epoch: wire.epoch, sender: sender, messageID: id, sentAt: wire.sentAt,
                           ciphertext: ciphertext, signature: signature)
    }
}
