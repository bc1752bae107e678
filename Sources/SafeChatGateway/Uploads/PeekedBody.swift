import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import SafeChatAPI
import SealedFormat

/// A request body whose first bytes were read ahead, to learn the stream header before the upload
/// is created (so its id can be the one bound to it), followed by the rest as it arrives.
struct PeekedBody<Rest: AsyncIteratorProtocol>: AsyncSequence where Rest.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let head: ByteBuffer?
    let rest: Rest

    /// The stream header, if the body starts with a well-formed one.
    var streamHeader: StreamHeader? {
        guard let head, head.readableBytes >= StreamHeader.encodedLength else { return nil }
        return try? StreamHeader.parse(head.readableBytesView.prefix(StreamHeader.encodedLength))
    }

    /// Reads `body` until `count` bytes have arrived (or it ends).
    static func reading<Body: AsyncSequence>(_ body: Body, upTo count: Int) async throws -> PeekedBody<Body.AsyncIterator>
    where Body.AsyncIterator == Rest {
        var iterator = body.makeAsyncIterator()
        var head: ByteBuffer?
        while (head?.readableBytes ?? 0) < count, var next = try await iterator.next() {
            if head == nil { head = next } else { head!.writeBuffer(&next) }
        }
        return PeekedBody(head: head, rest: iterator)
    }

    func makeAsyncIterator() -> Iterator { Iterator(head: head, rest: rest) }

    struct Iterator: AsyncIteratorProtocol {
        var head: ByteBuffer?
        var rest: Rest
        mutating func next() async throws -> ByteBuffer? {
            if let first = head {
                head = nil
                return first
            }
            return try await rest.next()
        }
    }
}
