import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SealedStream

/// Receives a download on the event loop and cuts it into the pieces the opener reads — the stream
/// header, then each record's 16-byte header and its body — so each piece crosses to the opener's
/// task once, instead of every 64 KiB socket buffer doing so. Measured: the per-buffer hand-off
/// (a thread hop and a pause/resume of the socket each time) cost more than decrypting.
///
/// A record body is handed over as the receive buffers it arrived in (slices, not copies), which
/// the opener decrypts one after another; copying them into one array had cost a fifth of the
/// client's CPU.
final class RecordDelegate: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = Void

    /// State touched only on the connection's event loop.
    private var need: Int
    /// The piece being assembled: slices of receive buffers, `currentCount` bytes in all.
    private var current: [ByteBuffer] = []
    private var currentCount = 0
    private var lengthLimit: Int
    private var awaitingBody = false
    private let expectedStatus: UInt
    private let continuation: AsyncThrowingStream<ByteChunk, any Error>.Continuation
    /// Back-pressure: pieces handed over but not yet taken, and the read to resume once they are.
    private let flow = NIOLockedValueBox<(outstanding: Int, resume: EventLoopPromise<Void>?)>((0, nil))
    private static let highWater = 8

    /// - Parameters:
    ///   - startsWithStreamHeader: the body begins with the 92-byte stream header (a download from 0).
    ///   - chunkSize: bounds a record's length before anything is allocated from it.
    init(startsWithStreamHeader: Bool, chunkSize: Int, expectedStatus: UInt,
         continuation: AsyncThrowingStream<ByteChunk, any Error>.Continuation) {
        need = startsWithStreamHeader ? StreamHeader.encodedLength : RecordHeader.encodedLength
        lengthLimit = chunkSize + RecordHeader.tagLength
        self.expectedStatus = expectedStatus
        self.continuation = continuation
        awaitingBody = false
    }

    /// Called by the consumer for every piece it takes.
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
        var buffer = buffer
        while buffer.readableBytes > 0 {
            let take = min(need - currentCount, buffer.readableBytes)
            current.append(buffer.readSlice(length: take)!)
            currentCount += take
            if currentCount == need { emit() }
        }
        let wait = flow.withLockedValue { state -> EventLoopFuture<Void>? in
            guard state.outstanding > Self.highWater else { return nil }
            let promise = task.eventLoop.makePromise(of: Void.self)
            state.resume = promise
            return promise.futureResult
        }
        return wait ?? task.eventLoop.makeSucceededVoidFuture()
    }

    /// Hands over a complete piece and works out the size of the next one.
    private func emit() {
        let piece = Self.chunk(current)
        current = []
        currentCount = 0
        flow.withLockedValue { $0.outstanding += 1 }
        continuation.yield(piece)
        if piece.count == RecordHeader.encodedLength && !awaitingBody {
            // A record header: its body and tag come next. An impossible length is passed through
            // capped; the opener rejects the header before it asks for the body.
            let bodyLength = piece.withUnsafeBytes { Int(UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self))) }
            need = min(bodyLength + RecordHeader.tagLength, lengthLimit)
            awaitingBody = true
        } else {
            need = RecordHeader.encodedLength
            awaitingBody = false
        }
    }

    /// Slices as one chunk: small pieces (headers) copied into an array, large ones borrowed.
    private static func chunk(_ slices: [ByteBuffer]) -> ByteChunk {
        let total = slices.reduce(0) { $0 + $1.readableBytes }
        if total <= 4096 {
            var bytes = [UInt8]()
            bytes.reserveCapacity(total)
            for slice in slices { bytes += slice.readableBytesView }
            return ByteChunk(bytes)
        }
        // The slices are never written again, and the chunk holds them, so their storage stays
        // valid and unchanged for as long as the chunk lives.
        let segments = slices.map { slice in slice.withUnsafeReadableBytes { $0 } }
        return ByteChunk(unsafeBorrowing: segments, keptAliveBy: slices)
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        continuation.finish(throwing: error)
        // Nobody will take more pieces: release a read that waits for them.
        flow.withLockedValue { state -> EventLoopPromise<Void>? in
            defer { state.resume = nil }
            return state.resume
        }?.fail(error)
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        // A torn last piece goes through too: the opener reports the truncation precisely.
        if !current.isEmpty { continuation.yield(Self.chunk(current)); current = [] }
        continuation.finish()
    }
}

/// The pieces of a download, each taken once by the opener.
struct RecordPieces: AsyncSequence, Sendable {
    typealias Element = ByteChunk
    let stream: AsyncThrowingStream<ByteChunk, any Error>
    let delegate: RecordDelegate

    func makeAsyncIterator() -> Iterator { Iterator(base: stream.makeAsyncIterator(), delegate: delegate) }

    struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<ByteChunk, any Error>.AsyncIterator
        let delegate: RecordDelegate

        mutating func next() async throws -> ByteChunk? {
            guard let piece = try await base.next() else { return nil }
            delegate.taken()
            return piece
        }
    }
}
