import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOWebSocket
import SafeChatAPI
import SealedFormat
import Synchronization
import WSCore

/// Chat beside the transfers (docs/PROTOCOL.md section 2): GET /chat?session=ID upgrades to a
/// WebSocket for one session's current members; POST /chat/ticket gives browsers a single-use
/// ticket for it. The gateway relays sealed, signed messages it cannot open, queues them for
/// members who are offline (``ChatLog``), and announces files completed into the session.
struct ChatService: Sendable {
    struct Limits: Sendable {
        var maxFrame: Int
        /// Frames a connection may send per second, sustained, and in a burst.
        var rate: Double
        var burst: Double
        /// Deliveries waiting to be written to one connection before it is cut off as too slow.
        var outboundLimit: Int
    }

    let log: any ChatQueue
    let bus: any ChatBus
    let hub = ChatHub()
    let tickets: any ChatTicketStore
    let tokens: TokenValidator
    let sessions: any SessionStore
    let limits: Limits
    let clock: @Sendable () -> Date
    let metrics: GatewayMetrics

    var now: UInt64 { UInt64(max(0, clock().timeIntervalSince1970 * 1000)) }

    func register(on router: RouterGroup<GatewayContext>) {
        router.post("chat/ticket") { _, context in
            let principal = try context.requirePrincipal()
            guard let claims = context.token, claims.user == principal.id else { throw GatewayError.unauthorized }
            let ticket = try await tickets.issue(for: claims, now: clock())
            return try jsonResponse(ChatTicketReply(ticket: ticket, expiresIn: Int(ChatTickets.lifetime)), headers: [.cacheControl: "no-store"])
        }
        router.get("chat") { _, _ -> Response in
            throw GatewayError(.upgradeRequired, .upgradeRequired, "GET /chat is a WebSocket: send Upgrade: websocket",
                               headers: [.upgrade: "websocket", .connection: "Upgrade"])
        }
    }

    // MARK: - The upgrade

    /// Decides an upgrade request before any frame flows: the path, the session, the caller's
    /// credentials (bearer token, or a ticket in Sec-WebSocket-Protocol) and their membership.
    func decide(_ request: HTTPRequest) async -> UpgradeDecision {
        let target = request.path ?? ""
        let (path, query) = target.firstIndex(of: "?").map { (target[..<$0], target[target.index(after: $0)...]) } ?? (target[...], ""[...])
        guard path == "/chat" else { return .refuse(.notFound("WebSocket endpoint")) }
        let parameters = query.split(separator: "&").compactMap { pair -> (Substring, Substring)? in
            let parts = pair.split(separator: "=", maxSplits: 1)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
        guard let text = parameters.first(where: { $0.0 == "session" })?.1, let session = SessionID(text) else {
            return .refuse(GatewayError(.badRequest, .invalidID, "GET /chat needs ?session= and a 32-hex-digit session id"))
        }
        let offered = request.headerFields[values: .secWebSocketProtocol]
            .flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        var headers: HTTPFields = [:]
        if offered.contains(ChatChannel.subprotocol) { headers[.secWebSocketProtocol] = ChatChannel.subprotocol }

        let claims: TokenClaims?
        if let header = request.headerFields[.authorization], header.utf8.count > 7, header.prefix(7).lowercased() == "bearer " {
            claims = await tokens.service.verify(String(header.dropFirst(7)))
        } else if let ticket = offered.first(where: { $0.hasPrefix(ChatChannel.ticketProtocolPrefix) }) {
            // A browser must name the real subprotocol too, so the answer can select it.
            guard headers[.secWebSocketProtocol] != nil else {
                return .refuse(.badRequest("a ticket must be offered beside the subprotocol \(ChatChannel.subprotocol)"))
            }
            do {
                claims = try await tickets.redeem(String(ticket.dropFirst(ChatChannel.ticketProtocolPrefix.count)), now: clock())
            } catch {
                return .refuse(GatewayError.storage(error))
            }
        } else {
            claims = nil
        }
        var principal: Principal?
        if let claims {
            do {
                principal = try await tokens.validate(claims)
            } catch {
                return .refuse(GatewayError.storage(error))
            }
        }
        guard let claims, let principal else { return .refuse(.unauthorized) }
        do {
            guard try await sessions.isMember(principal.id, of: session) else { return .refuse(.notFound("session")) }
        } catch {
            return .refuse(GatewayError.storage(error))
        }
        return .accept(headers: headers) { inbound, outbound, context in
            try await serve(ChatConnection(principal: principal, token: claims, session: session),
                            inbound: inbound, outbound: outbound, context: context)
        }
    }

    // MARK: - One connection

    private func serve(_ connection: ChatConnection, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
                       context: ChatSocketContext) async throws {
        let me = connection.principal.id
        let writer = DeliveryWriter(channel: context.channel, user: me, limit: limits.outboundLimit,
                                    delivered: { [metrics] in metrics.chatDelivered($0) })
        let closer = ChatCloser(outbound: outbound, channel: context.channel, deliveries: writer)
        let tooSlow: @Sendable () -> Void = { closer.close(.tooSlow, "the connection did not keep up; reconnect to catch up from the queue") }
        // Subscribed before the backlog is read, so nothing published in between is missed.
        let subscription = bus.subscribe(to: connection.session, on: context.channel.eventLoop) { if !writer.deliver($0) { tooSlow() } }
        let registration = hub.add(connection, closer)
        metrics.chatConnected()
        defer {
            subscription.cancel()
            writer.stop()
            hub.remove(registration)
            metrics.chatDisconnected()
        }
        let (backlog, dropped) = try await log.backlog(session: connection.session, user: me)
        metrics.chatDropped(dropped)
        try await outbound.write(.text(ChatFrame(type: .ready, sessionID: connection.session, userID: me,
                                                            queued: backlog.count, dropped: dropped).jsonText))
        for entry in backlog {
            try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: entry.frame)))
            metrics.chatDelivered(1)
        }
        writer.goLive(after: backlog.last?.seq ?? 0, tooSlow: tooSlow)
        try await receive(connection, inbound: inbound, replies: writer, closer: closer)
        await closer.finished()
    }

    /// Reads the client's frames; replies go out through the delivery writer (one hop, no task),
    /// which cuts the connection off like a slow reader if they pile up unread.
    private func receive(_ connection: ChatConnection, inbound: WebSocketInboundStream, replies: DeliveryWriter,
                         closer: ChatCloser) async throws {
        var bucket = TokenBucket(rate: limits.rate, burst: limits.burst, now: ContinuousClock.now)
        func reply(_ frame: ChatFrame) {
            if !replies.reply(frame.jsonBytes) { closer.close(.tooSlow, "the connection did not keep up; reconnect to catch up from the queue") }
        }
        for try await message in inbound.messages(maxSize: limits.maxFrame) {
            guard bucket.take(now: ContinuousClock.now) else {
                closer.close(.rateLimited, "over \(Int(limits.rate)) frames per second; slow down and reconnect")
                return
            }
            // SafeChat clients' frames in their canonical form skip the (slow, generic) decoder.
            guard case .text(let text) = message,
                  let frame = ChatFrame.parseCanonicalAck(text) ?? ChatFrame.parseCanonicalSend(text)
                      ?? (try? WireCoding.decoder.decode(ChatFrame.self, from: Data(text.utf8))),
                  frame.v == ChatChannel.version
            else {
                reply(ChatFrame(type: .error, error: .badRequest, text: "frames are JSON text of version \(ChatChannel.version)"))
                continue
            }
            switch frame.type {
            case .send:
                reply(await send(frame.message, from: connection))
            case .ack where frame.seq != nil:
                // Acks are cumulative: one not recorded now (the store is away) is covered by the
                // next; meanwhile its deliveries may come again, which clients recognise.
                try? await log.acknowledge(session: connection.session, user: connection.principal.id, upTo: frame.seq!, waitForDisk: false)
            default:
                reply(ChatFrame(type: .error, error: .badRequest, text: "clients send only send frames and ack frames with a seq"))
            }
        }
    }

    /// Checks and stores one message; the answer is the `sent` frame or an `error` frame.
    private func send(_ message: ChatMessageWire?, from connection: ChatConnection) async -> ChatFrame {
        guard let message else { return ChatFrame(type: .error, error: .badRequest, text: "a send frame carries a message") }
        func refuse(_ code: ErrorCode, _ text: String) -> ChatFrame {
            ChatFrame(type: .error, messageID: message.messageID, error: code, text: text)
        }
        guard message.sessionID == connection.session.value, message.sender == connection.principal.id.value else {
            return refuse(.forbidden, "a message names this connection's session and its sender's own user id")
        }
        guard Self.isHex(message.messageID, length: 32...32), Self.isHex(message.signature, length: 128...128),
              Self.isHex(message.ciphertext, length: 32...(2 * (16 * 1024 + 16)))
        else { return refuse(.badRequest, "message_id, ciphertext or signature is not hex of the documented length") }
        guard let record = try? await sessions.summary(connection.session), record.members.contains(connection.principal.id) else {
            return refuse(.notFound, "session not found")
        }
        let current = record.currentEpoch
        guard message.epoch == current else {
            return refuse(.staleEpoch, "the session is at epoch \(current); fetch its log and seal under that epoch's key")
        }
        let recipients = record.members.subtracting([connection.principal.id]).sorted { $0.value < $1.value }
        do {
            let entry = try await log.append(session: connection.session, message: message, file: nil, recipients: recipients, now: now)
            metrics.chatMessageAccepted()
            return ChatFrame(type: .sent, seq: entry.seq, time: entry.time, messageID: message.messageID)
        } catch ChatLogError.full {
            return refuse(.chatStorageFull, "the gateway's chat storage is full; try again later")
        } catch ChatLogError.accountFull(let limit) {
            return refuse(.chatStorageFull, "your share of the gateway's chat storage (\(limit >> 20) MiB) is full of messages members have "
                          + "not received yet; they must connect to receive them (or they expire)")
        } catch {
            return refuse(.storageError, "the message could not be stored")
        }
    }

    // MARK: - Hooks

    /// Announces a file completed into a session to its members (queued for those offline).
    func fileStored(_ manifest: FileManifest) async throws {
        guard let fileSession = manifest.session, let record = try await sessions.summary(fileSession.sessionID) else { return }
        let event = ChatFileEvent(fileID: manifest.fileID, size: manifest.size, sender: manifest.owner, epoch: fileSession.epoch,
                                  header: Secrets.hex(manifest.header.encoded()), sealedName: manifest.metadata["name"] ?? "")
        let recipients = record.members.subtracting([manifest.owner]).sorted { $0.value < $1.value }
        _ = try await log.append(session: fileSession.sessionID, message: nil, file: event, recipients: recipients, now: now)
    }

    /// After an epoch changes a session's members: who left is sent nothing more, and their open
    /// connections are closed.
    func membersChanged(_ record: SessionSummary) async {
        try? await log.retain(members: record.members, of: record.sessionID)
        await audit()
    }

    /// Closes every connection whose token was revoked or whose user is no longer a member (run
    /// once a second and after membership changes, on every gateway: with state in a database, a
    /// revocation or removal made through another gateway is seen here at the next audit). Each
    /// token and each session is looked up once per audit, however many connections share it; one
    /// that cannot be looked up now (the database is away) is left open until it can. After a
    /// logout, only that user's connections are looked at.
    func audit(only user: UserID? = nil) async {
        var valid: [String: Bool] = [:]
        var members: [SessionID: Set<UserID>?] = [:]
        for (registration, connection) in hub.all() where user == nil || connection.principal.id == user {
            let user = connection.principal.id, key = "\(user) \(connection.token.generation) \(connection.token.id ?? "")"
            if valid[key] == nil {
                do {
                    valid[key] = try await tokens.validate(connection.token) != nil
                } catch {
                    valid[key] = true
                }
            }
            if members[connection.session] == nil {
                do {
                    members[connection.session] = .some(try await sessions.summary(connection.session)?.members ?? [])
                } catch {
                    members[connection.session] = .some(nil)
                }
            }
            if valid[key] != true {
                hub.close(registration, .revoked, "the login was revoked (logged out, password changed or account removed)")
            } else if let current = members[connection.session] ?? nil, !current.contains(user) {
                hub.close(registration, .revoked, "you are no longer a member of this session")
            }
        }
    }

    /// Closes every connection on this gateway (at shutdown).
    func closeAll(_ code: ChatCloseCode, _ reason: String) {
        for (registration, _) in hub.all() { hub.close(registration, code, reason) }
    }

    static func isHex(_ text: String, length: ClosedRange<Int>) -> Bool {
        length.contains(text.utf8.count) && text.utf8.count % 2 == 0
            && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
