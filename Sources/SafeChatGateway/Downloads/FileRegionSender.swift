#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// Lets a download body go from the blob file to the socket with sendfile(2) on plain-HTTP
/// connections, instead of being read into buffers and copied out again (measured: that pair of
/// copies was most of the server's CPU on a download).
///
/// Hummingbird's response writer takes only byte buffers, so a route hands the file region to
/// this connection's ``FileRegionSender`` first (``FileRegionSender/enqueue(descriptor:range:on:)``) and then
/// writes one empty body part; the sender, which sits below Hummingbird's HTTP-types codec where
/// bodies may be file regions, swaps that empty part for the region. Connections with TLS have no
/// sender (TLS needs the bytes), and routes fall back to copying.
final class FileRegionSender: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Regions handed over and not yet written, in response order, each with the promise its
    /// route waits on; a nil region is a marker, written as the empty part it is.
    private var queued = CircularBuffer<(region: FileRegion?, sent: EventLoopPromise<Void>)>()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .body(.byteBuffer(let buffer)) = unwrapOutboundIn(data), buffer.readableBytes == 0,
              let (region, sent) = queued.popFirst()
        else {
            context.write(data, promise: promise)
            return
        }
        let written = promise ?? context.eventLoop.makePromise()
        written.futureResult.cascade(to: sent)
        guard let region else {
            // Writes complete in order: once this one has, everything before it is in the socket.
            context.write(data, promise: written)
            return
        }
        // The handle is ours alone (a dup); closing it fails only if it is already closed.
        written.futureResult.whenComplete { _ in try? region.fileHandle.close() }
        context.write(wrapOutboundOut(.body(.fileRegion(region))), promise: written)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        while let (region, sent) = queued.popFirst() {
            try? region?.fileHandle.close()
            sent.fail(ChannelError.ioOnClosedChannel)
        }
    }

    /// Queues `range` of the file `descriptor` as the next empty body part written on `channel`.
    /// The descriptor is duplicated, so the caller keeps and closes its own.
    /// - Returns: a future that completes once the region has been written out (so the route stays
    ///   in flight, and a graceful shutdown waits for it), or nil if the connection has no sender
    ///   (TLS) or is gone; nothing was queued then.
    static func enqueue(descriptor: Int32, range: Range<Int64>, on channel: any Channel) async -> EventLoopFuture<Void>? {
        try? await channel.eventLoop.submit {
            let sender = try channel.pipeline.syncOperations.handler(type: FileRegionSender.self)
            let copy = dup(descriptor)
            guard copy >= 0 else { throw IOError(errnoCode: errno, reason: "dup") }
            let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: copy)
            let sent = channel.eventLoop.makePromise(of: Void.self)
            sender.queued.append((FileRegion(fileHandle: handle, readerIndex: Int(range.lowerBound), endIndex: Int(range.upperBound)), sent))
            return sent.futureResult
        }.get()
    }

    /// Queues a marker as the next empty body part written on `channel`: its future completes once
    /// every body part before it has been written out, so a route that copied its body can stay in
    /// flight until then (a graceful shutdown waits for routes, not for NIO's buffers). Nil if
    /// the connection has no sender (TLS).
    static func enqueueMarker(on channel: any Channel) async -> EventLoopFuture<Void>? {
        try? await channel.eventLoop.submit {
            let sender = try channel.pipeline.syncOperations.handler(type: FileRegionSender.self)
            let sent = channel.eventLoop.makePromise(of: Void.self)
            sender.queued.append((nil, sent))
            return sent.futureResult
        }.get()
    }
}
