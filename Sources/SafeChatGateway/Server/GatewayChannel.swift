import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
// WSCore's connection handler (ping, close handshake, frame assembly) is what hummingbird-websocket
// itself runs; it is public only as SPI. We run it ourselves because hummingbird-websocket's channel
// answers a refused upgrade with an empty 400, and the gateway answers every refusal with its JSON
// error body (401, 403, 404) so that a client can tell the user what went wrong.
@_spi(WSInternal) import WSCore

/// What the gateway decides about a WebSocket upgrade request.
enum UpgradeDecision: Sendable {
    /// Upgrade, adding `headers` to the 101 answer, and run `handler` on the connection.
    case accept(headers: HTTPFields, handler: WebSocketDataHandler<ChatSocketContext>)
    /// Answer with this error (JSON body) and close.
    case refuse(GatewayError)
}

/// The context a chat connection's handler runs with: the logger and the connection, which a
/// handler closes outright when a close handshake cannot get through (a reader that never reads).
struct ChatSocketContext: WebSocketContext {
    let logger: Logger
    let channel: any Channel
}

/// The gateway's one HTTP/1.1 connection type: plain requests go to the router (with downloads sent
/// by sendfile(2) on plain-text connections, see ``FileRegionSender``), and a first request asking
/// for a WebSocket upgrade is decided by `decide` (only GET /chat is accepted).
struct GatewayChannel: ServerChildChannel, HTTPChannelHandler {
    enum Negotiated: Sendable {
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, GatewayError)
        case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, WebSocketDataHandler<ChatSocketContext>)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    struct WebSocketSettings: Sendable {
        var maxFrameSize: Int
        var pingInterval: Duration
    }

    let responder: HTTPChannelHandler.Responder
    let http1: HTTP1Channel.Configuration
    let webSocket: WebSocketSettings
    /// False under TLS, which needs the bytes in user space.
    let sendfile: Bool
    let limits: RequestGuard.Limits
    let decide: @Sendable (HTTPRequest, any Channel) async -> UpgradeDecision

    init(responder: @escaping HTTPChannelHandler.Responder, http1: HTTP1Channel.Configuration, webSocket: WebSocketSettings,
         sendfile: Bool, limits: RequestGuard.Limits, decide: @escaping @Sendable (HTTPRequest, any Channel) async -> UpgradeDecision) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.http1 = http1
        self.webSocket = webSocket
        self.sendfile = sendfile
        self.limits = limits
        self.decide = decide
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let decision = NIOLockedValueBox<UpgradeDecision?>(nil)
            // Malformed requests are answered at once, around NIO's decoder; both leave with it on an upgrade.
            let requestLine = RequestLineLimit()
            let requestGuard = RequestGuard(limits: limits, requestLine: requestLine)
            let guards = NIOLoopBound((requestLine, requestGuard), eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: webSocket.maxFrameSize,
                shouldUpgrade: { channel, head in
                    let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                    promise.completeWithTask {
                        let verdict: UpgradeDecision
                        if let request = try? HTTPRequest(head, secure: false, splitCookie: false) {
                            verdict = await decide(request, channel)
                        } else {
                            verdict = .refuse(.badRequest("the upgrade request's headers are malformed"))
                        }
                        decision.withLockedValue { $0 = verdict }
                        guard case .accept(let headers, _) = verdict else { return nil }
                        return HTTPHeaders(headers.map { ($0.name.rawName, $0.value) })
                    }
                    return promise.futureResult
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard case .accept(_, let handler) = decision.withLockedValue({ $0 }) else {
                            throw ChannelError.inappropriateOperationForState
                        }
                        channel.pipeline.syncOperations.removeHandler(guards.value.1, promise: nil)
                        channel.pipeline.syncOperations.removeHandler(guards.value.0, promise: nil)
                        try channel.pipeline.syncOperations.addHandler(MaskedFramesOnly())
                        let asyncChannel = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return .webSocket(asyncChannel, handler)
                    }
                })
            let notUpgrading: @Sendable (any Channel) -> EventLoopFuture<Negotiated> = { channel in
                channel.eventLoop.makeCompletedFuture {
                    let codec = HTTP1ToHTTPServerCodec(secure: false)
                    try channel.pipeline.syncOperations.addHandler(codec)
                    try channel.pipeline.syncOperations.addHandler(RequestBodyCoalescer())
                    if sendfile { try channel.pipeline.syncOperations.addHandler(FileRegionSender(), position: .before(codec)) }
                    try channel.pipeline.syncOperations.addHandlers(http1.additionalChannelHandlers())
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionStateHandler(idleTimeout: http1.idleTimeout.map { .init($0) }, logger: logger))
                    let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                    if case .refuse(let error) = decision.withLockedValue({ $0 }) { return .refused(asyncChannel, error) }
                    return .http(asyncChannel)
                }
            }
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(
                upgradeConfiguration: .init(upgraders: [upgrader], notUpgradingCompletionHandler: notUpgrading))
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(requestLine, position: .before(decoder))
            try channel.pipeline.syncOperations.addHandler(requestGuard, position: .after(decoder))
            // The idle timer of HTTP connections starts after the first request head; until then
            // this one closes a connection that never completes it.
            if let idle = http1.idleTimeout {
                let timer = channel.eventLoop.scheduleTask(in: idle) { channel.close(promise: nil) }
                negotiated.whenComplete { _ in timer.cancel() }
            }
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let error):
                await Self.answer(error, on: http)
            case .webSocket(let socket, let handler):
                _ = try await WebSocketHandler.handle(
                    type: .server,
                    configuration: .init(extensions: [], autoPing: .enabled(timePeriod: webSocket.pingInterval), closeTimeout: .seconds(5),
                                         validateUTF8: true, maxFrameSize: webSocket.maxFrameSize),
                    asyncChannel: socket, context: ChatSocketContext(logger: logger, channel: value.channel), handler: handler)
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// Writes `error` as the JSON error body and closes the connection.
    private static func answer(_ error: GatewayError, on http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>) async {
        let body = ByteBuffer(bytes: error.jsonBody)
        var headers = error.headers
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.contentLength] = "\(body.readableBytes)"
        headers[.connection] = "close"
        try? await http.executeThenClose { _, outbound in
            try await outbound.write(contentsOf: [.head(HTTPResponse(status: error.status, headerFields: headers)), .body(body), .end(nil)])
        }
    }

    /// NIO decides upgrades on a connection's first request only. A later request asking for one is
    /// sent to a new connection (307 to the same URL, then close), where the upgrade can run.
    private static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder) -> HTTPChannelHandler.Responder {
        struct CloseAfterRedirect: Error {}
        return { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                return try await responder(request, writer, channel)
            }
            let target = request.uri.query.map { request.uri.path + "?" + $0 } ?? request.uri.path
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: target]))
            throw CloseAfterRedirect()
        }
    }
}

/// RFC 6455 section 5.1: every frame a client sends is masked, and a server closes the connection
/// on one that is not (1002, protocol error).
final class MaskedFramesOnly: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    private var closing = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        guard unwrapInboundIn(data).maskKey != nil else {
            closing = true
            var reason = context.channel.allocator.buffer(capacity: 64)
            reason.write(webSocketErrorCode: .protocolError)
            reason.writeString("a client's frames are masked (RFC 6455 section 5.1)")
            let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: reason)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(close)).whenComplete { _ in bound.value.close(promise: nil) }
            return
        }
        context.fireChannelRead(data)
    }
}
