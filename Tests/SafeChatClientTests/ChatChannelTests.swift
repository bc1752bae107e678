import Foundation
import Logging
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatClient
import SafeChatTestSupport
import Synchronization
import WSClient

/// GET /chat as a hostile client sees it: refused upgrades, oversized frames, floods and a reader
/// that never reads, each cut off without delaying anyone else.
@Suite struct ChatChannelTests {
    typealias Workspace = ClientCommandTests.Workspace

    static func login(_ ws: Workspace) throws -> ClientSession {
        try ClientSession.load(from: ClientDirectory(environment: ["XDG_CONFIG_HOME": ws.config]))
    }

    static let upgradeHeaders = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                                 ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]

    /// Opens a raw WebSocket as `login` and runs `body`; returns the close code the gateway sent.
    static func raw(_ login: ClientSession, session: String,
                    body: @escaping @Sendable (WebSocketInboundStream, WebSocketOutboundWriter) async throws -> Void) async throws -> UInt16? {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let closed = try await WebSocketClient.connect(
            url: login.server.replacingOccurrences(of: "http://", with: "ws://") + "/chat?session=\(session)",
            configuration: .init(maxFrameSize: 1 << 20, additionalHeaders: [.authorization: "Bearer \(login.token)"]), logger: logger
        ) { inbound, outbound, _ in try await body(inbound, outbound) }
        return closed.map { UInt16(webSocketErrorCode: $0.closeCode) }
    }

    @Test func upgradesWithoutALoginOrMembershipAreRefusedWithAJSONBody() async throws {
        try await TestGateway.with { server in
            let (one, two, three, session) = try await ChatTests.pair(server, third: true)
            defer { one.remove(); two.remove(); three?.remove() }
            // user3 is not in this session: a second one, of user1 and user2 only.
            let onlyTwo = try #require(try await one.run(["session", "create", "Pair", "--with", "user2"]).output
                .split(separator: "\n").last.map(String.init))
            let anonymous = try await Self.upgrade(server, session: session)
            #expect(anonymous.status == 401 && anonymous.body.contains("\"error\":\"unauthorized\""), "\(anonymous)")
            let outsider = try await Self.upgrade(server, session: onlyTwo, token: try Self.login(three!).token)
            #expect(outsider.status == 404 && outsider.body.contains("\"error\":\"not_found\""), "\(outsider)")
            let badID = try await Self.upgrade(server, session: "nope", token: try Self.login(one).token)
            #expect(badID.status == 400, "\(badID)")
            let plain = try await HTTP(base: server.base, token: try Self.login(one).token).send(.GET, "/chat?session=\(session)")
            #expect(plain.status == 426 && plain.json["error"] as? String == "upgrade_required")

            // A ticket opens one upgrade, once.
            let http = HTTP(base: server.base, token: try Self.login(one).token)
            let ticket = try #require(try await http.send(.POST, "/chat/ticket").json["ticket"] as? String)
            let offer = "safechat.v1, safechat.ticket.\(ticket)"
            let first = try await Self.upgrade(server, session: session, protocols: offer)
            #expect(first.status == 101 && first.head.lowercased().contains("sec-websocket-protocol: safechat.v1"), "\(first)")
            let again = try await Self.upgrade(server, session: session, protocols: offer)
            #expect(again.status == 401, "\(again)")
        }
    }

    /// An upgrade request on a connection of its own, with curl; the status and what followed.
    static func upgrade(_ server: TestGateway, session: String, token: String? = nil, protocols: String? = nil) async throws
        -> (status: Int, head: String, body: String) {
        var arguments = ["curl", "-s", "-i", "--max-time", "2", "--http1.1"] + upgradeHeaders.flatMap { ["-H", "\($0.0): \($0.1)"] }
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let protocols { arguments += ["-H", "Sec-WebSocket-Protocol: \(protocols)"] }
        let output = try await runProcess(arguments + ["\(server.base)/chat?session=\(session)"], in: URL(fileURLWithPath: "/tmp")).output
        let parts = output.components(separatedBy: "\r\n\r\n")
        let status = parts.first?.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return (status, parts.first ?? "", parts.dropFirst().joined())
    }

    @Test func oversizedFramesAndFloodsAreClosedWhileOthersChatOn() async throws {
        try await TestGateway.with(configure: { $0.chatRate = 20 }) { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            let big = try await Self.raw(try Self.login(two), session: session) { inbound, outbound in
                try await outbound.write(.text(String(repeating: "x", count: 70 * 1024)))
                for try await _ in inbound {}
            }
            #expect(big == 1009)
            let flood = Mutex<Int>(0)
            let flooded = try await Self.raw(try Self.login(two), session: session) { inbound, outbound in
                for _ in 0..<200 {
                    do { try await outbound.write(.text("{\"v\":1,\"type\":\"ack\",\"seq\":0}")) } catch { break }
                    flood.withLock { $0 += 1 }
                }
                for try await _ in inbound {}
            }
            #expect(flooded == ChatCloseCode.rateLimited.rawValue, "closed with \(String(describing: flooded))")
            // Others are unaffected: user1 still sends and user2 receives.
            #expect(try await one.run(["send", session, "still here"]).status == 0)
            #expect(try await two.run(["recv", session]).output.contains("still here"))
        }
    }

    @Test func aReaderThatNeverReadsIsCutOffWithoutDelayingTheSender() async throws {
        try await TestGateway.with(configure: { $0.chatOutboundLimit = 4; $0.chatRate = 1000 }) { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            // user2 upgrades by hand and then never reads a byte.
            let stalled = try RawConnection(port: server.port)
            defer { stalled.close() }
            let request = "GET /chat?session=\(session) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(try Self.login(two).token)\r\n"
                + Self.upgradeHeaders.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
            try stalled.send(Array(request.utf8))
            try await Task.sleep(for: .milliseconds(300))

            let client = ChatClient(login: try Self.login(one), room: try await room(one, session))
            let text = String(repeating: "big ", count: 4000)
            let started = ContinuousClock.now
            for _ in 0..<300 { _ = try await client.send(text) }
            let elapsed = ContinuousClock.now - started
            // 4.8 MB is far past what the stalled socket's buffers hold: a sender held up by that
            // reader would never finish. The bound only tells "finished" from "stuck", even on a
            // machine loaded by the rest of the suite (each send is signed, sealed and made durable).
            #expect(elapsed < .seconds(180), "300 sends took \(elapsed)")
            #expect(stalled.isClosedByPeer(within: .seconds(10)), "the stalled reader was not cut off")
            // It catches up from the queue.
            #expect(try await two.run(["recv", session]).output.components(separatedBy: "big big").count > 300)
        }
    }

    @Test func aPasswordChangeClosesTheOpenConnectionsOfItsTokens() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            let login = try Self.login(two)
            let users = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
            let started = ContinuousClock.now
            let code = try await Self.raw(login, session: session) { inbound, _ in
                try await users.setPassword("user2", password: "a-new-password")
                for try await _ in inbound {}
            }
            #expect(code == ChatCloseCode.revoked.rawValue)
            #expect(ContinuousClock.now - started < .seconds(5))
            // And the old token cannot open a new one.
            let refused = try await Self.upgrade(server, session: session, token: login.token)
            #expect(refused.status == 401)
        }
    }

    /// Logging out revokes the token it is sent with, alone (issue 24): `safechat logout` makes the
    /// gateway refuse that token at once and close the chat connections it opened, while another
    /// token of the same account, and a ticket it did not issue, go on working; the CLI forgets it.
    @Test func logoutRevokesItsTokenAloneAndClosesItsConnections() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            let login = try Self.login(two)
            let other = try await HTTP.login(server.base, user: "user2", password: "password-two")
            // A ticket issued with the token before logout is refused after it.
            let ticket = try #require(try await HTTP(base: server.base, token: login.token).send(.POST, "/chat/ticket").json["ticket"] as? String)
            let started = ContinuousClock.now
            let code = try await Self.raw(login, session: session) { inbound, _ in
                let out = try await two.run(["logout"])
                #expect(out.status == 0 && out.output.contains("revoked"), "\(out.output)")
                for try await _ in inbound {}
            }
            #expect(code == ChatCloseCode.revoked.rawValue)
            #expect(ContinuousClock.now - started < .seconds(5))
            #expect(try await HTTP(base: server.base, token: login.token).send(.GET, "/files").status == 401)
            #expect(try await Self.upgrade(server, session: session, token: login.token).status == 401)
            let byTicket = try await Self.upgrade(server, session: session, protocols: "safechat.v1, safechat.ticket.\(ticket)")
            #expect(byTicket.status == 401, "\(byTicket)")
            #expect(try await other.send(.GET, "/files").status == 200, "the account's other token still works")
            #expect(!FileManager.default.fileExists(atPath: two.config + "/safechat/session.json"))
            #expect(try await two.run(["files"]).output.contains("not logged in"))
            // Survives a restart of the gateway (the revocation is durable).
            let reopened = try TokenRevocations(path: server.dataDirectory + "/revoked-tokens.json")
            let claims = try #require(await server.gateway.tokens.verify(login.token))
            #expect(reopened.isRevoked(try #require(claims.id)))
        }
    }

    /// An account that logs out more often than its revocations may hold has all its tokens revoked
    /// instead: the list stays bounded.
    @Test func revocationsPerAccountAreBounded() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("revoked-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let revocations = try TokenRevocations(path: path, perAccount: 2)
        let user = UserID.random(), later = Date().addingTimeInterval(3600)
        #expect(try await revocations.revoke("a", of: user, expires: later))
        #expect(try await revocations.revoke("b", of: user, expires: later))
        #expect(try await !revocations.revoke("c", of: user, expires: later))
        #expect(try await revocations.revoke("d", of: UserID.random(), expires: later), "another account's share")
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
    }

    func room(_ ws: Workspace, _ session: String) async throws -> ChatRoom {
        let identities = IdentityStore(environment: ["XDG_DATA_HOME": ws.data])
        return try await ChatRoom(sessions: SessionClient(session: try Self.login(ws), identity: try identities.load(), identities: identities),
                                  sessionID: session, identities: identities)
    }
}
