import Foundation
import NIOCore
import NIOWebSocket
import SafeChatAPI
import Synchronization

/// Writes one chat connection's live deliveries straight to its channel, in seq order: the bus
/// hands each batch over on the channel's event loop, where it is written with one flush. (Through
/// the WebSocket handler's async writer each delivery cost a task wake-up, a hop and a flush of its
/// own: most of the gateway's work under load.)
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
    /// Told how many deliveries each write carried (for the metrics).
    private let delivered: @Sendable (Int) -> Void

    init(channel: any Channel, user: UserID, limit: Int, delivered: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.channel = channel
        self.user = user
        self.limit = limit
        self.delivered = delivered
    }

    /// Goes live once the `ready` frame and the backlog (up to seq `lastSent`) were written through
    /// the handler's writer, which waits for the socket (so a long backlog is not piled up in
    /// memory); what arrived meanwhile follows, without what the backlog already had. Runs on the
    /// event loop, in order with the bus's batches; `tooSlow` is called there if the connection
    /// is over its limit.
    func goLive(after lastSent: UInt64, tooSlow: @escaping @Sendable () -> Void) {
        channel.eventLoop.execute { [self] in
            var taken = 0
            let ok = write { state in
                state.live = true
                state.lastSent = lastSent
                let early = state.early
                state.early = []
                let frames = take(early, &state)
                taken = frames.count
                return frames
            }
            if ok { delivered(taken) } else { tooSlow() }
        }
    }

    /// From the bus, on the channel's event loop: one batch of the session's entries. `false`:
    /// the connection is too slow.
    func deliver(_ entries: [ChatEntry]) -> Bool {
        var taken = 0
        let ok = write { state in
            guard state.live else {
                state.early += entries
                return []
            }
            let frames = take(entries, &state)
            taken = frames.count
            return frames
        }
        if ok { delivered(taken) }
        return ok
    }

    /// A reply to the client, from any thread. `false`: the connection is too slow.
    func reply(_ frame: [UInt8]) -> Bool {
        let data = ByteBuffer(bytes: frame)
        guard channel.eventLoop.inEventLoop else {
            // Checked for overflow now, written on the loop; replies keep their order.
            let accepted = reserve(1)
            if accepted {
                channel.eventLoop.execute {
                    if !self.state.withLock({ $0.stopped }) { self.send([data]) }
                }
            }
            return accepted
        }
        return write { _ in [data] }
    }

    /// Nothing is written after this.
    func stop() { state.withLock { $0.stopped = true } }

    private func take(_ entries: [ChatEntry], _ state: inout State) -> [ByteBuffer] {
        var frames: [ByteBuffer] = []
        for entry in entries where entry.seq > state.lastSent && entry.recipients.contains(user) {
            frames.append(entry.frame)
            state.lastSent = entry.seq
        }
        return frames
    }

    /// On the event loop: picks frames under the lock and writes them with one flush.
    private func write(_ pick: (inout State) -> [ByteBuffer]) -> Bool {
        var frames: [ByteBuffer] = []
        let ok = state.withLock { state -> Bool in
            guard !state.stopped else { return true }
            frames = pick(&state)
            if state.early.count > limit { state.stopped = true; return false }
            return Self.count(frames.count, in: &state, limit: limit)
        }
        if ok && !frames.isEmpty { send(frames) }
        return ok
    }

    /// Counts `count` frames as outstanding unless the writer is stopped or over its limit.
    private func reserve(_ count: Int) -> Bool {
        state.withLock { state in
            guard !state.stopped else { return true }
            return Self.count(count, in: &state, limit: limit)
        }
    }

    private static func count(_ count: Int, in state: inout State, limit: Int) -> Bool {
        state.outstanding += count
        if state.outstanding > limit { state.stopped = true; return false }
        return true
    }

    /// On the event loop: frames already counted as outstanding.
    private func send(_ frames: [ByteBuffer]) {
        let count = frames.count
        for (index, data) in frames.enumerated() {
            let frame = WebSocketFrame(fin: true, opcode: .text, data: data)
            if index == count - 1 {
                channel.writeAndFlush(frame).whenComplete { _ in self.state.withLock { $0.outstanding -= count } }
            } else {
                channel.write(frame, promise: nil)
            }
        }
    }
}
