import Foundation
import NIOCore
import NIOWebSocket
import SafeChatAPI
import Synchronization

/// Writes one chat connection's live deliveries straight to its channel, in seq order, each batch
/// the bus hands over with one hop to the channel's event loop and one flush. (Through the WebSocket handler's async writer each delivery
/// cost a task wake-up, a hop and a flush of its own: most of the gateway's work under load.)
///
/// Replies to the client's own frames (`sent`, `error`) take the same path. The `ready` frame, the
/// backlog and the close frame go through the WebSocket handler's writer; a stopped writer writes
/// nothing more, so nothing follows a close frame.
///
/// Frames handed to the channel but not yet written to the socket are counted; a connection with
/// more than `limit` of them (a reader that does not read) is stopped, and the call that found it
/// so returns `false`: the caller closes the connection. It catches up from the queue when it
/// reconnects.
final class DeliveryWriter: Sendable {
    private struct State {
        var live = false
        /// Live entries that arrived while the backlog was being read.
        var early: [ChatEntry] = []
        var lastSent: UInt64 = 0
        var outstanding = 0
        var stopped = false
    }

    private let state = Mutex(State())
    private let channel: any Channel
    private let user: UserID
    private let limit: Int

    init(channel: any Channel, user: UserID, limit: Int) {
        self.channel = channel
        self.user = user
        self.limit = limit
    }

    /// Goes live once the `ready` frame and the backlog (up to seq `lastSent`) were written through
    /// the handler's writer, which waits for the socket (so a long backlog is not piled up in
    /// memory); what arrived meanwhile follows, without what the backlog already had.
    @discardableResult
    func goLive(after lastSent: UInt64) -> Bool {
        submit { state in
            state.live = true
            state.lastSent = lastSent
            let early = state.early
            state.early = []
            return Self.take(early, for: user, &state)
        }
    }

    /// From the bus: one batch of the session's entries. `false`: the connection is too slow.
    func deliver(_ entries: [ChatEntry]) -> Bool {
        submit { state in
            guard state.live else {
                state.early += entries
                return []
            }
            return Self.take(entries, for: user, &state)
        }
    }

    /// A reply to the client. `false`: the connection is too slow.
    func reply(_ frame: [UInt8]) -> Bool {
        submit { _ in [ByteBuffer(bytes: frame)] }
    }

    /// Nothing is written after this.
    func stop() { state.withLock { $0.stopped = true } }

    private static func take(_ entries: [ChatEntry], for user: UserID, _ state: inout State) -> [ByteBuffer] {
        var frames: [ByteBuffer] = []
        for entry in entries where entry.seq > state.lastSent && entry.recipients.contains(user) {
            frames.append(entry.frame)
            state.lastSent = entry.seq
        }
        return frames
    }

    /// Picks frames under the lock and hands them to the event loop still under it, so that two
    /// batches cannot overtake each other on the way.
    private func submit(_ pick: (inout State) -> [ByteBuffer]) -> Bool {
        let overflowed = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            let frames = pick(&state)
            if state.early.count > limit { state.stopped = true; return true }
            guard !frames.isEmpty else { return false }
            state.outstanding += frames.count
            if state.outstanding > limit { state.stopped = true; return true }
            let count = frames.count
            channel.eventLoop.execute { [channel] in
                for (index, data) in frames.enumerated() {
                    let frame = WebSocketFrame(fin: true, opcode: .text, data: data)
                    if index == frames.count - 1 {
                        channel.writeAndFlush(frame).whenComplete { _ in self.state.withLock { $0.outstanding -= count } }
                    } else {
                        channel.write(frame, promise: nil)
                    }
                }
            }
            return false
        }
        return !overflowed
    }
}
