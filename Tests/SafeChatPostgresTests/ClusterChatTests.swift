import Foundation
import Logging
import SafeChatAPI
@testable import SafeChatGateway
import SafeChatTestSupport
import Synchronization
import Testing
import WSClient

/// Chat across two gateways on one PostgreSQL: a member on one gateway receives, live, what a
/// member on the other sends; what waits for an offline member is delivered by whichever gateway
/// they reconnect to, once; a ticket issued by one gateway opens one upgrade on any; a token
/// logged out through one is refused by the other at once, and the chat socket it opened there
/// closes.
@Suite(.serialized) struct ClusterChatTests {
    /// A client device: the CLI with its own configuration and identity.
    struct Device {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("device-\(UUID().uuidString)")
        init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        func run(_ arguments: [String], stdin: String? = nil) async throws -> (status: Int32, output: String) {
            var command = ["env", "XDG_CONFIG_HOME=\(url.path)/config", "XDG_DATA_HOME=\(url.path)/data", PostgresTests.safechat] + arguments
            if let stdin { command = ["sh", "-c", "printf '%s\\n' \"$0\" | \"$@\"", stdin] + command }
            return try await runProcess(command, in: url)
        }
        func remove() { try? FileManager.default.removeItem(at: url) }
    }

    /// Two in-process gateways on one new database, sharing a signing key, and user1 (on A) and
    /// user2 (on B) in one session.
    struct Pair {
        let database: String
        let a: TestGateway, b: TestGateway
        let one: Device, two: Device, three: Device?
        let session: String

        static func start(third: Bool = false) async throws -> Pair {
            let server = try TestDatabase.fromEnvironment()
            let database = "t_chat_\(UInt32.random(in: 0...UInt32.max))"
            try server.create(database)
            let key = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString)").path
            let a = try await TestGateway.start(database: try server.settings(database)) { $0.signingKeyPath = key }
            let b = try await TestGateway.start(database: try server.settings(database)) { $0.signingKeyPath = key }
            try await a.gateway.users.add("user2", password: "password-two")
            let one = try Device(), two = try Device()
            #expect(try await one.run(["login", "--server", a.base, "--user", "user1"], stdin: "password123").status == 0)
            #expect(try await two.run(["login", "--server", b.base, "--user", "user2"], stdin: "password-two").status == 0)
            var three: Device?
            if third {
                try await b.gateway.users.add("user3", password: "password-three")
                three = try Device()
                #expect(try await three!.run(["login", "--server", b.base, "--user", "user3"], stdin: "password-three").status == 0)
            }
            let created = try await one.run(["session", "create", "Across", "--with", third ? "user2,user3" : "user2"])
            #expect(created.status == 0, "\(created.output)")
            return Pair(database: database, a: a, b: b, one: one, two: two, three: three,
                        session: try #require(created.output.split(separator: "\n").last.map(String.init)))
        }

        func stop() async {
            await a.stop()
            await b.stop()
            a.removeData()
            b.removeData()
            one.remove()
            two.remove()
            three?.remove()
            try? TestDatabase.fromEnvironment().drop(database)
        }
    }

    /// The frames a raw WebSocket on `base` receives (as `token`) until `until` says stop or the
    /// gateway closes it; returns them and the close code.
    final class Socket: Sendable {
        final class Seen: Sendable {
            let frames = Mutex<[String]>([])
            let closeCode = Mutex<UInt16?>(nil)
        }
        let seen = Seen()
        let task: Task<Void, any Error>

        init(_ base: String, session: String, token: String) {
            let seen = self.seen
            task = Task {
                var logger = Logger(label: "test")
                logger.logLevel = .critical
                let closed = try await WebSocketClient.connect(
                    url: base.replacingOccurrences(of: "http://", with: "ws://") + "/chat?session=\(session)",
                    configuration: .init(maxFrameSize: 1 << 20, additionalHeaders: [.authorization: "Bearer \(token)"]), logger: logger
                ) { inbound, _, _ in
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        if case .text(let text) = message { seen.frames.withLock { $0.append(text) } }
                    }
                }
                seen.closeCode.withLock { $0 = closed.map { UInt16(webSocketErrorCode: $0.closeCode) } ?? 0 }
            }
        }

        /// Waits up to `seconds` for `condition` to hold.
        func wait(seconds: Double, for condition: @Sendable (Socket) -> Bool) async -> Bool {
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                if condition(self) { return true }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return condition(self)
        }

        var deliveries: Int { seen.frames.withLock { $0.filter { $0.contains(#""type":"delivery""#) }.count } }
    }

    @Test func aMemberOnOneGatewayHearsAMemberOnTheOtherAndTheQueueFollowsThem() async throws {
        let pair = try await Pair.start()
        do {
            // user2 is offline: what user1 sends through A waits, and B delivers it, in order, once.
            for n in 1...3 { #expect(try await pair.one.run(["send", pair.session, "queued \(n) via A"]).status == 0) }
            let received = try await pair.two.run(["recv", pair.session])
            #expect(received.status == 0, "\(received.output)")
            let lines = received.output.split(separator: "\n").map(String.init)
            #expect(lines.count == 3 && (1...3).allSatisfy { lines[$0 - 1].contains("user1 ✓: queued \($0) via A") }, "\(received.output)")
            let again = try await pair.two.run(["recv", pair.session])
            #expect(again.status == 0 && again.output.isEmpty, "nothing is delivered twice: \(again.output)")

            // Live: user2 connected to B receives what user1 sends through A as it is sent.
            let token = try await HTTP.login(pair.b.base, user: "user2", password: "password-two").token!
            let socket = Socket(pair.b.base, session: pair.session, token: token)
            #expect(await socket.wait(seconds: 10) { $0.seen.frames.withLock { !$0.isEmpty } }, "the ready frame")
            let start = ContinuousClock.now
            #expect(try await pair.one.run(["send", pair.session, "live via A"]).status == 0)
            #expect(await socket.wait(seconds: 10) { $0.deliveries == 1 }, "\(socket.seen.frames.withLock { $0 })")
            #expect(ContinuousClock.now - start < .seconds(5))

            // Logged out through A: B refuses the token at once, and closes the socket it opened there.
            #expect(try await HTTP(base: pair.a.base, token: token).send(.POST, "/logout").status == 204)
            #expect(try await HTTP(base: pair.b.base, token: token).send(.GET, "/files").status == 401)
            #expect(await socket.wait(seconds: 5) { $0.seen.closeCode.withLock { $0 } != nil }, "the socket on B closes")
            #expect(socket.seen.closeCode.withLock { $0 } == ChatCloseCode.revoked.rawValue,
                    "closed as revoked: \(String(describing: socket.seen.closeCode.withLock { $0 }))")
            _ = try? await socket.task.value
        } catch {
            await pair.stop()
            throw error
        }
        await pair.stop()
    }

    /// A burst stored through A reaches a member connected to B whole and in seq order: B reads
    /// what is notified in batches, and no batch overtakes or loses another.
    @Test func aBurstThroughOneGatewayArrivesWholeAndInOrderOnTheOther() async throws {
        let pair = try await Pair.start()
        do {
            let token = try await HTTP.login(pair.b.base, user: "user2", password: "password-two").token!
            let socket = Socket(pair.b.base, session: pair.session, token: token)
            #expect(await socket.wait(seconds: 10) { $0.seen.frames.withLock { !$0.isEmpty } }, "the ready frame")
            let session = try #require(SessionID(pair.session))
            let user1 = try #require(try await pair.a.gateway.users.id(of: "user1"))
            let user2 = try #require(try await pair.a.gateway.users.id(of: "user2"))
            let event = ChatFileEvent(fileID: .random(), size: 1, sender: user1, epoch: 1, header: "00", sealedName: "")
            let count = 400
            // Four senders at once, as four connections to A would.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<(count / 4) {
                            _ = try await pair.a.gateway.chat.log.append(session: session, message: nil, file: event, recipients: [user2],
                                                                        now: UInt64(Date().timeIntervalSince1970 * 1000))
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(await socket.wait(seconds: 30) { $0.deliveries >= count }, "\(socket.deliveries) of \(count) arrived on B")
            let seqs = socket.seen.frames.withLock { frames in
                frames.compactMap { frame -> UInt64? in
                    guard frame.contains(#""type":"delivery""#),
                          let object = try? JSONSerialization.jsonObject(with: Data(frame.utf8)) as? [String: Any] else { return nil }
                    return (object["seq"] as? NSNumber)?.uint64Value
                }
            }
            #expect(seqs == Array(1...UInt64(count)).map { $0 + (seqs.first ?? 1) - 1 } && seqs.count == count,
                    "in seq order, each once: \(seqs.prefix(20))…")
            try? await HTTP(base: pair.b.base, token: token).send(.POST, "/logout")
            _ = try? await socket.task.value
        } catch {
            await pair.stop()
            throw error
        }
        await pair.stop()
    }

    /// A browser's ticket, issued through one gateway, opens one upgrade through the other, once.
    @Test func aTicketIssuedOnOneGatewayIsRedeemedOnceOnAny() async throws {
        let pair = try await Pair.start()
        do {
            let user2 = try await HTTP.login(pair.a.base, user: "user2", password: "password-two")
            let ticket = try #require(try await user2.send(.POST, "/chat/ticket").json["ticket"] as? String)
            func upgrade(_ base: String) async throws -> Int {
                let output = try await runProcess(["curl", "-s", "-i", "--max-time", "2", "--http1.1",
                                                   "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
                                                   "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                                   "-H", "Sec-WebSocket-Protocol: safechat.v1, safechat.ticket.\(ticket)",
                                                   "\(base)/chat?session=\(pair.session)"], in: URL(fileURLWithPath: "/tmp")).output
                return output.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            }
            #expect(try await upgrade(pair.b.base) == 101)
            #expect(try await upgrade(pair.a.base) == 401, "spent on B, refused on A")
            #expect(try await upgrade(pair.b.base) == 401)
        } catch {
            await pair.stop()
            throw error
        }
        await pair.stop()
    }

    /// A member removed through A is disconnected from the session on B, and is sent nothing more.
    @Test func aMemberRemovedThroughOneGatewayIsDisconnectedOnTheOther() async throws {
        let pair = try await Pair.start(third: true)
        do {
            let token = try await HTTP.login(pair.b.base, user: "user3", password: "password-three").token!
            let socket = Socket(pair.b.base, session: pair.session, token: token)
            #expect(await socket.wait(seconds: 10) { $0.seen.frames.withLock { !$0.isEmpty } }, "the ready frame")
            let removed = try await pair.one.run(["session", "remove", pair.session, "user3"])
            #expect(removed.status == 0, "\(removed.output)")
            #expect(await socket.wait(seconds: 5) { $0.seen.closeCode.withLock { $0 } != nil }, "the socket on B closes")
            #expect(socket.seen.closeCode.withLock { $0 } == ChatCloseCode.revoked.rawValue)
            #expect(try await pair.one.run(["send", pair.session, "after user3 left"]).status == 0)
            #expect(try await pair.two.run(["recv", pair.session]).output.contains("after user3 left"))
            let outsider = try await pair.three!.run(["recv", pair.session])
            #expect(outsider.status == 1 && outsider.output.contains("404"), "\(outsider.output)")
            _ = try? await socket.task.value
        } catch {
            await pair.stop()
            throw error
        }
        await pair.stop()
    }
}
