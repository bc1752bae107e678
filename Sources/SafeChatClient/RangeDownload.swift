import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SealedStream

/// One Range request for a run of records, on its own connection and event loop, whose records
/// are opened on that event loop as each receive buffer arrives (``IncrementalOpener``); only
/// verified chunks are handed over.
///
/// Why raw NIO rather than AsyncHTTPClient: opening in place lets NIO reuse one cache-hot receive
/// buffer, and reading up to 1 MiB at a time (AsyncHTTPClient leaves NIO's 64 KiB maximum, and does
/// not let a caller change it) halves the system calls and the loopback TCP work per byte. Measured
/// on 2 cores: 1 GiB in 0.45–0.48 s instead of 0.53–0.60 s.
enum RangeDownload {
    /// Reads at most this much per system call.
    static let maximumRead = 1 << 20
    /// A download with no byte for this long is given up (and can be resumed).
    static let idleTimeout = TimeAmount.seconds(60)

    /// Starts `GET url` with `headers` on `eventLoop`; the chunks end when the run is complete.
    static func start(url: URL, headers: HTTPHeaders, tls: TLSConfiguration, opener: IncrementalOpener,
                      on eventLoop: any EventLoop) throws -> OpenedChunks {
        guard let host = url.host, let scheme = url.scheme, scheme == "http" || scheme == "https" else {
            throw ClientError.protocolViolation("cannot download from \(url)")
        }
        let secure = scheme == "https"
        let port = url.port ?? (secure ? 443 : 80)
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.path.isEmpty ? "/" : url.path, headers: headers)
        let hostName = host.contains(":") ? "[\(host)]" : host
        head.headers.replaceOrAdd(name: "Host", value: url.port == nil ? hostName : "\(hostName):\(port)")
        head.headers.replaceOrAdd(name: "Connection", value: "close")
        let sslContext = secure ? try NIOSSLContext(configuration: tls) : nil

        let (stream, continuation) = AsyncThrowingStream<OpenedChunk, any Error>.makeStream()
        let handler = RangeDownloadHandler(request: head, opener: opener, eventLoop: eventLoop, continuation: continuation)
        let connected = ClientBootstrap(group: eventLoop)
            .channelOption(.autoRead, value: false)
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64 << 10, initial: 256 << 10, maximum: maximumRead))
            .connectTimeout(.seconds(30))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let sslContext {
                        // An IP address is not a valid SNI name; certificate checks still apply.
                        let isAddress = host.contains(":") || host.split(separator: ".").allSatisfy { Int($0) != nil }
                        let name = isAddress ? nil : host
                        try sync.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: name))
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try sync.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
        connected.whenFailure { continuation.finish(throwing: ClientError.connectionLost("\($0)")) }
        // The consumer stopped (done, failed or cancelled): drop the connection.
        continuation.onTermination = { _ in connected.whenSuccess { $0.close(promise: nil) } }
        return OpenedChunks(stream: stream, handler: handler)
    }
}

/// Receives one ranged response on its event loop and turns it into verified chunks, reading from
/// the socket only while the consumer keeps up.
final class RangeDownloadHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    // Everything below is touched only on the channel's event loop (`taken` hops there).
    private let request: HTTPRequestHead
    private let opener: IncrementalOpener
    private let eventLoop: any EventLoop
    private let continuation: AsyncThrowingStream<OpenedChunk, any Error>.Continuation
    private var context: ChannelHandlerContext?
    private var outstanding = 0
    private var paused = false
    private var ended = false
    /// Chunks handed over but not yet taken before reading stops (each up to one chunk size).
    private static let highWater = 4

    init(request: HTTPRequestHead, opener: IncrementalOpener, eventLoop: any EventLoop, continuation: AsyncThrowingStream<OpenedChunk, any Error>.Continuation) {
        self.request = request
        self.opener = opener
        self.eventLoop = eventLoop
        self.continuation = continuation
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !ended else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            if head.status != .partialContent {
                fail(ClientError.protocolViolation("expected 206 for the download, got \(head.status.code)"), context: context)
            }
        case .body(let buffer):
            do {
                let chunks = try buffer.withUnsafeReadableBytes { try opener.consume($0) }
                outstanding += chunks.count
                for chunk in chunks { continuation.yield(chunk) }
            } catch {
                fail(error, context: context)
            }
        case .end:
            do {
                try opener.finish()
                ended = true
                continuation.finish()
                context.close(promise: nil)
            } catch {
                fail(error, context: context)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard !ended else { return }
        if outstanding <= Self.highWater { context.read() } else { paused = true }
    }

    /// Ends the chunks early (the consumer gave up); the connection is closed.
    func cancel() { continuation.finish() }

    /// Called by the consumer for every chunk it takes.
    func taken() {
        eventLoop.execute {
            self.outstanding -= 1
            guard self.paused, self.outstanding <= Self.highWater / 2, let context = self.context else { return }
            self.paused = false
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case IdleStateHandler.IdleStateEvent.read = event {
            fail(ClientError.connectionLost("no data for \(RangeDownload.idleTimeout.nanoseconds / 1_000_000_000) s"), context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(ClientError.connectionLost("\(error)"), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed before the response ended: a network failure to resume from, not a bad stream.
        fail(ClientError.connectionLost("the connection closed before the download ended"), context: context)
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        guard !ended else { return }
        ended = true
        continuation.finish(throwing: error)
        context.close(promise: nil)
    }
}

/// The verified chunks of one ranged download, each taken once.
struct OpenedChunks: AsyncSequence, Sendable {
    typealias Element = OpenedChunk
    let stream: AsyncThrowingStream<OpenedChunk, any Error>
    let handler: RangeDownloadHandler

    func makeAsyncIterator() -> Iterator { Iterator(base: stream.makeAsyncIterator(), handler: handler) }

    /// Stops the download and closes its connection.
    func cancel() { handler.cancel() }

    struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<OpenedChunk, any Error>.AsyncIterator
        let handler: RangeDownloadHandler

        mutating func next() async throws -> OpenedChunk? {
            guard let chunk = try await base.next() else { return nil }
            handler.taken()
            return chunk
        }
    }
}
