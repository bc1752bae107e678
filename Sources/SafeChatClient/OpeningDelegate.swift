import AsyncHTTPClient
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SealedStream

/// Receives a run of records on the connection's event loop and opens them there, each receive
/// buffer as it arrives (``IncrementalOpener``), handing over only verified chunks.
///
/// Why on the event loop: handing raw buffers to other threads kept every buffer alive until it was
/// decrypted, so each read landed in fresh, cold memory; opening in place lets the next read reuse
/// the same, cache-hot buffer. Several connections (one per event loop) use several cores.
final class OpeningDelegate: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = Void

    /// Touched only on the connection's event loop.
    private let opener: IncrementalOpener
    private let expectedStatus: UInt
    private let continuation: AsyncThrowingStream<OpenedChunk, any Error>.Continuation
    /// Back-pressure: chunks handed over but not yet taken, and the read to resume once they are.
    private let flow = NIOLockedValueBox<(outstanding: Int, resume: EventLoopPromise<Void>?)>((0, nil))
    private static let highWater = 4

    init(opener: IncrementalOpener, expectedStatus: UInt, continuation: AsyncThrowingStream<OpenedChunk, any Error>.Continuation) {
        self.opener = opener
        self.expectedStatus = expectedStatus
        self.continuation = continuation
    }

    /// Called by the consumer for every chunk it takes.
    func taken() {
        let resume = flow.withLockedValue { state -> EventLoopPromise<Void>? in
            state.outstanding -= 1
            guard state.outstanding <= Self.highWater / 2, let promise = state.resume else { return nil }
            state.resume = nil
            return promise
        }
        resume?.succeed(())
    }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        guard head.status.code == expectedStatus else {
            let error = ClientError.protocolViolation("expected \(expectedStatus) for the download, got \(head.status.code)")
            continuation.finish(throwing: error)
            return task.eventLoop.makeFailedFuture(error)
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        let chunks: [OpenedChunk]
        do {
            chunks = try buffer.withUnsafeReadableBytes { try opener.consume($0) }
        } catch {
            continuation.finish(throwing: error)
            return task.eventLoop.makeFailedFuture(error)
        }
        guard !chunks.isEmpty else { return task.eventLoop.makeSucceededVoidFuture() }
        flow.withLockedValue { $0.outstanding += chunks.count }
        for chunk in chunks { continuation.yield(chunk) }
        let wait = flow.withLockedValue { state -> EventLoopFuture<Void>? in
            guard state.outstanding > Self.highWater else { return nil }
            let promise = task.eventLoop.makePromise(of: Void.self)
            state.resume = promise
            return promise.futureResult
        }
        return wait ?? task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        continuation.finish(throwing: error)
        // Nobody will take more chunks: release a read that waits for them.
        flow.withLockedValue { state -> EventLoopPromise<Void>? in
            defer { state.resume = nil }
            return state.resume
        }?.fail(error)
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        do {
            try opener.finish()
            continuation.finish()
        } catch {
            continuation.finish(throwing: error)
        }
    }
}

/// The verified chunks of one ranged download, each taken once.
struct OpenedChunks: AsyncSequence, Sendable {
    typealias Element = OpenedChunk
    let stream: AsyncThrowingStream<OpenedChunk, any Error>
    let delegate: OpeningDelegate

    func makeAsyncIterator() -> Iterator { Iterator(base: stream.makeAsyncIterator(), delegate: delegate) }

    struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<OpenedChunk, any Error>.AsyncIterator
        let delegate: OpeningDelegate

        mutating func next() async throws -> OpenedChunk? {
            guard let chunk = try await base.next() else { return nil }
            delegate.taken()
            return chunk
        }
    }
}
