import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Joins a request body's small parts into parts of up to ``targetBytes`` before they reach the
/// route.
///
/// Every body part handed to a route wakes its task on another thread, and that hand-over, not the
/// bytes, was most of the gateway's CPU when a client sends in small pieces: Chromium's uploads
/// arrive about 32 KiB per read, and the gateway spent 2.1 CPU-seconds per GiB on them against 0.55
/// for curl's (docs/PERFORMANCE.md). A part is held at most ``maxDelay``, so a slow sender's bytes
/// still arrive (and the stall watchdog still sees them), and whatever is held is passed on before
/// the request's end, an error or the connection's close, so an interrupted upload keeps every byte
/// that reached the gateway.
final class RequestBodyCoalescer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    static let targetBytes = 256 * 1024
    static let maxDelay = TimeAmount.milliseconds(20)

    private var held: ByteBuffer?
    private var timer: Scheduled<Void>?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .body(var part) = unwrapInboundIn(data) else {
            passOn(context)
            context.fireChannelRead(data)
            return
        }
        if held == nil {
            if part.readableBytes >= Self.targetBytes {
                context.fireChannelRead(data)
                return
            }
            held = context.channel.allocator.buffer(capacity: Self.targetBytes)
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.maxDelay) { [self] in
                if passOn(context) { context.fireChannelReadComplete() }
            }
        }
        held!.writeBuffer(&part)
        if held!.readableBytes >= Self.targetBytes { passOn(context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if passOn(context) { context.fireChannelReadComplete() }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if passOn(context) { context.fireChannelReadComplete() }
        context.fireErrorCaught(error)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    /// Passes on what is held, if anything; returns whether it did.
    @discardableResult
    private func passOn(_ context: ChannelHandlerContext) -> Bool {
        timer?.cancel()
        timer = nil
        guard let bytes = held else { return false }
        held = nil
        context.fireChannelRead(wrapInboundOut(.body(bytes)))
        return true
    }
}
