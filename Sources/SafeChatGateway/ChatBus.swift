import Foundation
import SafeChatAPI
import Synchronization

/// The seam live deliveries cross: ``ChatLog`` publishes each durable entry, in seq order, and
/// every open connection of the entry's session receives it through its subscription. The
/// embedded ``LocalChatBus`` reaches this process's connections; a bus that also forwards to other
/// gateways sharing one database would slot in here without touching the routes.
protocol ChatBus: Sendable {
    func publish(_ entries: [ChatEntry]) async
    /// Entries of `session` published from now on. At most `bufferLimit` wait unread; one more
    /// ends the subscription and calls `onOverflow` (the connection is too slow and is cut off;
    /// it catches up from the queue when it reconnects).
    func subscribe(to session: SessionID, bufferLimit: Int, onOverflow: @escaping @Sendable () -> Void) -> ChatSubscription
}

/// One connection's view of the bus; `cancel` ends it.
struct ChatSubscription: Sendable {
    let entries: AsyncStream<ChatEntry>
    let cancel: @Sendable () -> Void
}

/// The in-process bus.
final class LocalChatBus: ChatBus {
    private struct Subscriber {
        let continuation: AsyncStream<ChatEntry>.Continuation
        let onOverflow: @Sendable () -> Void
    }

    private let subscribers = Mutex<[SessionID: [UInt64: Subscriber]]>([:])
    private let nextID = Atomic<UInt64>(0)

    func publish(_ entries: [ChatEntry]) {
        var overflowed: [@Sendable () -> Void] = []
        subscribers.withLock { table in
            for entry in entries {
                guard let listeners = table[entry.session] else { continue }
                for (id, subscriber) in listeners {
                    if case .dropped = subscriber.continuation.yield(entry) {
                        table[entry.session]?[id] = nil
                        subscriber.continuation.finish()
                        overflowed.append(subscriber.onOverflow)
                    }
                }
            }
        }
        for notify in overflowed { notify() }
    }

    func subscribe(to session: SessionID, bufferLimit: Int, onOverflow: @escaping @Sendable () -> Void) -> ChatSubscription {
        let (stream, continuation) = AsyncStream<ChatEntry>.makeStream(bufferingPolicy: .bufferingOldest(bufferLimit))
        let id = nextID.add(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[session, default: [:]][id] = Subscriber(continuation: continuation, onOverflow: onOverflow) }
        let cancel: @Sendable () -> Void = { [weak self] in
            self?.subscribers.withLock { table in
                table[session]?[id] = nil
                if table[session]?.isEmpty == true { table[session] = nil }
            }
            continuation.finish()
        }
        return ChatSubscription(entries: stream, cancel: cancel)
    }
}
