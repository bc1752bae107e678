import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import SafeChatAPI

/// What every request passes before it can reach a route, on the connection's event loop: a
/// request that HTTP/1.1 says is malformed, or that SafeChat does not take, is answered at once
/// with its status and the JSON error body of docs/API.md, and the connection is closed; nothing
/// waits for the idle timeout. It also cuts off request bodies that stall (`--body-timeout`).
///
/// It sits right after NIO's HTTP/1 decoder, so it sees the decoder's errors (which no route
/// sees) and every request head before the WebSocket upgrader and the router do.
final class RequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    struct Limits: Sendable {
        /// The largest body a request may declare for `(method, path)`; over it, 413 at once
        /// (before the body is read, so `Expect: 100-continue` clients send nothing).
        var bodyLimit: @Sendable (HTTPMethod, String) -> Int64
        /// A body that delivers nothing for this long is cut off.
        var bodyTimeout: TimeAmount?
        /// Headers one request may carry.
        var maxHeaderCount = 100
    }

    private enum State {
        /// Between requests: a decoder error here is about a request head.
        case idle
        /// Reading a request's body; `answered` once a response head went out for it.
        case body(answered: Bool)
        /// An answer is going out and the connection closes after it: nothing more is read.
        case closing
    }

    private let limits: Limits
    private let requestLine: RequestLineLimit
    private var state = State.idle
    private var stall: Scheduled<Void>?

    init(limits: Limits, requestLine: RequestLineLimit) {
        self.limits = limits
        self.requestLine = requestLine
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (_, .closing):
            return
        case (.head(let head), _):
            if let refusal = Self.refusal(of: head, limits: limits) {
                answer(refusal, context: context)
                return
            }
            state = .body(answered: false)
            watchBody(context: context)
            context.fireChannelRead(data)
        case (.body, _):
            watchBody(context: context)
            context.fireChannelRead(data)
        case (.end, _):
            stall?.cancel()
            stall = nil
            if case .body = state { state = .idle }
            requestLine.expectRequestLine()
            context.fireChannelRead(data)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch (unwrapOutboundIn(data), state) {
        case (_, .closing):
            // This guard answered the request: a route's own answer to it does not go out too.
            promise?.fail(ChannelError.ioOnClosedChannel)
        case (.head, .body):
            state = .body(answered: true)
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let status = Self.status(for: error) else {
            context.fireErrorCaught(error)
            return
        }
        switch state {
        case .idle:
            // No route has this request: the answer is ours.
            switch requestLine.finding {
            case .http2:
                answer(GatewayError(.httpVersionNotSupported, .httpVersionNotSupported, "this gateway speaks HTTP/1.1, not HTTP/2"), context: context)
            case .bareLineFeed:
                answer(.badRequest("malformed HTTP request: lines end with CR LF"), context: context)
            case .none:
                answer(GatewayError(status, Self.code(for: status), Self.message(for: error, status: status)), context: context)
            }
        case .body(answered: false):
            // Inside a body (a malformed chunk, say): the answer is ours too, before the route's
            // (which is then dropped). The route's body ends when the connection closes; an upload
            // keeps what it had validated, as after any cut.
            answer(GatewayError(status, Self.code(for: status), "malformed request body (\(error))"), context: context)
        case .body(answered: true), .closing:
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Closing: keep reading (and dropping) what the client still sends, whoever drives reads.
        if case .closing = state { context.read() }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stall?.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { stall?.cancel() }

    /// Answers with `error`'s status and JSON body, then closes the connection: lingering (the
    /// client may still be sending the request), or at once (its body stopped coming).
    private func answer(_ error: GatewayError, context: ChannelHandlerContext, linger: Bool = true) {
        state = .closing
        stall?.cancel()
        let body = ByteBuffer(bytes: error.jsonBody)
        var headers = HTTPHeaders()
        for field in error.headers { headers.add(name: field.name.rawName, value: field.value) }
        headers.replaceOrAdd(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
        headers.replaceOrAdd(name: "Content-Length", value: "\(body.readableBytes)")
        headers.replaceOrAdd(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: Int(error.status.code)), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        // A lingering close: the answer goes out, then our side of the connection, and what the
        // client still sends is read and dropped for up to 2 s. Closing at once with its bytes
        // unread would reset the connection, and a reset can destroy the answer before the client
        // reads it.
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            guard linger else { return channel.close(promise: nil) }
            channel.close(mode: .output, promise: nil)
            channel.read()
            channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        }
    }

    /// (Re)starts the timer that cuts off a body that stops arriving: a request that has not been
    /// answered yet gets 408; an upload keeps what arrived, to resume from (the route sees the
    /// connection close).
    private func watchBody(context: ChannelHandlerContext) {
        guard let timeout = limits.bodyTimeout else { return }
        stall?.cancel()
        stall = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            guard case .body(let answered) = state else { return }
            if answered {
                context.close(promise: nil)
            } else {
                answer(GatewayError(.requestTimeout, .bodyTimeout, "the request body stopped arriving; send it again (an upload resumes from its offset)"),
                       context: context, linger: false)
            }
        }
    }

    // MARK: What is refused

    /// Why `head` is refused before it reaches a route, if it is.
    static func refusal(of head: HTTPRequestHead, limits: Limits) -> GatewayError? {
        guard head.version.major == 1, head.version.minor <= 1 else {
            return GatewayError(.httpVersionNotSupported, .httpVersionNotSupported, "this gateway speaks HTTP/1.1 (and 1.0)")
        }
        // The request target is ASCII by RFC 3986: anything else (bytes that are not UTF-8 among them,
        // which the decoder turned into U+FFFD) or a control character is refused.
        guard head.uri.utf8.allSatisfy({ (0x21...0x7E).contains($0) }), !head.uri.isEmpty else {
            return .badRequest("the request target must be printable ASCII (percent-encode anything else)")
        }
        guard head.headers.count <= limits.maxHeaderCount else {
            return GatewayError(.requestHeaderFieldsTooLarge, .tooLarge, "at most \(limits.maxHeaderCount) header fields")
        }
        for (name, value) in head.headers {
            guard !value.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F || $0 == "\u{FFFD}" }) else {
                return .badRequest("the value of \(name) holds a control character or bytes that are not UTF-8")
            }
        }
        let hosts = head.headers["Host"]
        guard hosts.count <= 1, head.version.minor == 0 || hosts.count == 1 else {
            return .badRequest("an HTTP/1.1 request carries exactly one Host header")
        }
        if let refusal = bodyFraming(head, limits: limits) { return refusal }
        return upgrade(head)
    }

    /// Content-Length and Transfer-Encoding (RFC 9112 section 6).
    private static func bodyFraming(_ head: HTTPRequestHead, limits: Limits) -> GatewayError? {
        let lengths = head.headers["Content-Length"]
        let encodings = head.headers["Transfer-Encoding"].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if !encodings.isEmpty {
            guard lengths.isEmpty else { return .badRequest("send Content-Length or Transfer-Encoding, not both") }
            // chunked must come last, once; a body whose end cannot be found is refused (400), and
            // a coding the gateway does not do (gzip, …) before chunked is 501.
            guard encodings.last == "chunked", encodings.filter({ $0 == "chunked" }).count == 1 else {
                return .badRequest("Transfer-Encoding must end with chunked, applied once")
            }
            guard encodings.count == 1 else {
                return GatewayError(.notImplemented, .notImplemented, "the only transfer coding this gateway takes is chunked")
            }
            return nil
        }
        guard let text = lengths.first else { return nil }
        guard lengths.count == 1, text.utf8.count <= 18, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let length = Int64(text) else {
            return .badRequest("Content-Length must be one decimal number")
        }
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        let limit = limits.bodyLimit(head.method, path)
        guard length <= limit else {
            return GatewayError(.contentTooLarge, .tooLarge, "the request body is over this route's limit of \(limit) bytes")
        }
        return nil
    }

    /// An upgrade is a WebSocket handshake as RFC 6455 section 4.2.1 says, or refused.
    private static func upgrade(_ head: HTTPRequestHead) -> GatewayError? {
        let upgrades = head.headers["Upgrade"]
        guard !upgrades.isEmpty else { return nil }
        guard upgrades.count == 1, upgrades[0].lowercased() == "websocket" else {
            return .badRequest("this gateway upgrades only to a WebSocket (GET /chat); it speaks HTTP/1.1, not HTTP/2")
        }
        guard head.method == .GET, head.version == .http1_1 else {
            return .badRequest("a WebSocket handshake is a GET request of HTTP/1.1")
        }
        guard head.headers["Connection"].flatMap({ $0.split(separator: ",") })
            .contains(where: { $0.trimmingCharacters(in: .whitespaces).lowercased() == "upgrade" }) else {
            return .badRequest("a WebSocket handshake says Connection: Upgrade")
        }
        guard head.headers["Sec-WebSocket-Version"] == ["13"] else {
            return GatewayError(.upgradeRequired, .upgradeRequired, "this gateway speaks WebSocket version 13",
                                headers: [HTTPField.Name("Sec-WebSocket-Version")!: "13"])
        }
        let keys = head.headers["Sec-WebSocket-Key"]
        guard keys.count == 1, let key = Data(base64Encoded: keys[0].trimmingCharacters(in: .whitespaces)), key.count == 16 else {
            return .badRequest("Sec-WebSocket-Key must be 16 bytes in base64")
        }
        return nil
    }

    /// The status for an error of NIO's HTTP/1 decoder, or nil for any other error.
    static func status(for error: any Error) -> HTTPResponse.Status? {
        if error is RequestLineLimit.TooLong { return .uriTooLong }
        guard let parser = error as? HTTPParserError else { return nil }
        switch parser {
        case .headerOverflow: return .requestHeaderFieldsTooLarge
        case .invalidVersion: return .httpVersionNotSupported
        case .invalidMethod: return .notImplemented
        default: return .badRequest
        }
    }

    private static func code(for status: HTTPResponse.Status) -> ErrorCode {
        switch status {
        case .uriTooLong, .requestHeaderFieldsTooLarge: .tooLarge
        case .httpVersionNotSupported: .httpVersionNotSupported
        case .notImplemented: .notImplemented
        default: .badRequest
        }
    }

    private static func message(for error: any Error, status: HTTPResponse.Status) -> String {
        switch status {
        case .uriTooLong: "the request line is over \(RequestLineLimit.maximum) bytes"
        case .requestHeaderFieldsTooLarge: "the request's header fields are too large"
        case .httpVersionNotSupported: "this gateway speaks HTTP/1.1 (and 1.0)"
        case .notImplemented: "unknown request method"
        default: "malformed HTTP request (\(error))"
        }
    }
}

/// Watches the bytes of each request line before NIO's decoder sees them, for what the decoder
/// cannot tell apart: a line over ``maximum`` bytes is a target too long (414), not a header
/// overflow; a line that ends in a bare LF is malformed (400), not a bad version; and the HTTP/2
/// connection preface is a version this gateway does not speak (505). ``RequestGuard`` says when
/// the next request line begins, and asks what was seen when the decoder fails.
final class RequestLineLimit: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    static let maximum = 8192
    static let http2Preface = Array("PRI * HTTP/2.0".utf8)
    struct TooLong: Error {}

    enum Finding { case none, bareLineFeed, http2 }
    private(set) var finding = Finding.none
    private var count = 0
    private var start: [UInt8] = []
    private var lastByte: UInt8 = 0
    private var inLine = true
    private var failed = false

    func expectRequestLine() {
        count = 0
        start.removeAll(keepingCapacity: true)
        inLine = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        if inLine {
            let bytes = unwrapInboundIn(data).readableBytesView
            let end = bytes.firstIndex(of: UInt8(ascii: "\n"))
            let line = bytes[..<(end ?? bytes.endIndex)]
            if start.count < Self.http2Preface.count { start += line.prefix(Self.http2Preface.count - start.count) }
            if start == Self.http2Preface { finding = .http2 }
            if let end {
                inLine = false
                let before = end > bytes.startIndex ? bytes[end - 1] : lastByte
                if before != UInt8(ascii: "\r") { finding = .bareLineFeed }
            }
            if let last = line.last { lastByte = last }
            count += line.count
            if count > Self.maximum {
                // Reported as the decoder's errors are, to the guard after the decoder.
                failed = true
                context.fireErrorCaught(TooLong())
                return
            }
        }
        context.fireChannelRead(data)
    }
}
