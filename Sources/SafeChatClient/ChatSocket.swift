import Foundation
import HTTPTypes
import Logging
import NIOSSL
import NIOWebSocket
import SafeChatAPI
import Synchronization
import WSClient

/// One open GET /chat connection: the frames the gateway sends, and a way to send.
public struct ChatSocket: Sendable {
    /// Frames in arrival order; ends when the connection closes.
    public let frames: AsyncThrowingStream<ChatFrame, any Error>
    let outbound: WebSocketOutboundWriter

    public func send(_ frame: ChatFrame) async throws {
        try await outbound.write(.text(frame.jsonText))
    }

    /// Largest frame this client accepts from the gateway.
    static let maxFrame = 128 * 1024

    /// How a connection ended.
    public struct Closed: Sendable {
        public let code: UInt16?
        public let reason: String?
    }

    /// Connects to `session`'s chat as `session`'s logged-in user, runs `body` with the connection
    /// and closes it when `body` returns.
    /// - Throws: ``ClientError`` when the gateway refuses (no valid login, not a member): the
    ///   refusal is asked for again over plain HTTP, whose JSON body says why.
    public static func connect<T: Sendable>(_ login: ClientSession, session: String,
                                            body: @escaping @Sendable (ChatSocket) async throws -> T) async throws -> (T?, Closed) {
        let url = login.server.replacingOccurrences(of: "https://", with: "wss://").replacingOccurrences(of: "http://", with: "ws://")
            + "/chat?session=\(session)"
        let result = Mutex<T?>(nil)
        var configuration = WebSocketClientConfiguration(maxFrameSize: maxFrame, additionalHeaders: [
            .authorization: "Bearer \(login.token)", .secWebSocketProtocol: ChatChannel.subprotocol,
        ])
        configuration.autoPing = .disabled
        var logger = Logger(label: "safechat.chat")
        logger.logLevel = .critical
        let closed: WebSocketCloseFrame?
        do {
            closed = try await WebSocketClient.connect(
                url: url, configuration: configuration,
                tlsConfiguration: url.hasPrefix("wss://") ? TLSConfiguration.makeClientConfiguration() : nil, logger: logger
            ) { inbound, outbound, _ in
                let (frames, continuation) = AsyncThrowingStream<ChatFrame, any Error>.makeStream()
                let reader = Task {
                    do {
                        for try await message in inbound.messages(maxSize: maxFrame) {
                            guard case .text(let text) = message,
                                  let frame = try? WireCoding.decoder.decode(ChatFrame.self, from: Data(text.utf8))
                            else { throw ClientError.protocolViolation("the gateway sent a chat frame that is not valid JSON of version 1") }
                            continuation.yield(frame)
                        }
                        continuation.finish()
                    } catch {
                        continuation.finish(throwing: error)
                    }
                }
                defer { reader.cancel() }
                let value = try await body(ChatSocket(frames: frames, outbound: outbound))
                result.withLock { $0 = value }
            }
        } catch where result.withLock({ $0 != nil }) {
            // The body finished; what failed was the close handshake after it (the frame reader it
            // stops cannot be told apart from a dropped connection there). Nothing is lost.
            closed = nil
        } catch let error as WebSocketClientError where error == .webSocketUpgradeFailed {
            // The upgrade answer's JSON body is not available through the WebSocket client; ask the same
            // question over HTTP to tell the user why.
            _ = try await GatewayClient(session: login).send(GatewayClient(session: login).request(.GET, "/sessions/\(session)"))
            // The session is there and the login works: the refusal is for now (a gateway shutting down).
            throw ClientError.connectionLost("the gateway refused the chat connection for now")
        }
        return (result.withLock { $0 }, Closed(code: closed.map { UInt16(webSocketErrorCode: $0.closeCode) }, reason: closed?.reason))
    }
}

extension UInt16 {
    init(webSocketErrorCode code: WebSocketErrorCode) {
        switch code {
        case .normalClosure: self = 1000
        case .goingAway: self = 1001
        case .protocolError: self = 1002
        case .unacceptableData: self = 1003
        case .dataInconsistentWithMessage: self = 1007
        case .policyViolation: self = 1008
        case .messageTooLarge: self = 1009
        case .missingExtension: self = 1010
        case .unexpectedServerError: self = 1011
        case .unknown(let value): self = value
        }
    }
}
