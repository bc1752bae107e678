import Foundation
import NIOCore
import SafeChatAPI
import Synchronization

/// The seam live deliveries cross: the ``ChatQueue`` publishes each batch of durable entries, in
/// seq order, and every open connection of an entry's session receives it through its
/// subscription. The embedded ``LocalChatBus`` reaches this process's connections; a bus of a
/// server-grade backend also brings in what other gateways on the same database stored.
public protocol ChatBus: Sendable {
    func publish(_ entries: [ChatEntry]) async
    /// Hands `session`'s entries published from now on to `deliver`, on `eventLoop` (the
    /// connection's), batch by batch and in seq order. `deliver` must not block: it writes the
    /// frames to its channel (``DeliveryWriter``).
    func subscribe(to session: SessionID, on eventLoop: any EventLoop,
                   deliver: @escaping @Sendable ([ChatEntry]) -> Void) -> ChatSubscription
}

/// One connection's subscription; `cancel` ends it.
public struct ChatSubscription: Sendable {
    public let cancel: @Sendable () -> Void
    public init(cancel: @escaping @Sendable () -> Void) { self.cancel = cancel }
}

/// The in-process bus. A batch crosses to each event loop once, carrying the deliveries of all
/// that loop's subscribers: one hop per loop rather than one per connection (with 1 000
/// connections, the hops were a visible part of the relay's work).
public final class LocalChatBus: ChatBus {
    private struct Subscriber {
        let eventLoop: any EventLoop
        let deliver: @Sendable ([ChatEntry]) -> Void
    }

    private let subscribers = Mutex<[SessionID: [UInt64: Subscriber]]>([:])
    private let nextID = Atomic<UInt64>(0)

    /// Called by one publisher at a time (the log's commit), and each loop runs its tasks in the
    /// order they were queued, so batches reach each subscriber in order.
    public init() {}

    public func publish(_ entries: [ChatEntry]) {
        var bySession: [SessionID: [ChatEntry]] = [:]
        for entry in entries { bySession[entry.session, default: []].append(entry) }
        var byLoop: [ObjectIdentifier: (eventLoop: any EventLoop, calls: [(@Sendable ([ChatEntry]) -> Void, [ChatEntry])])] = [:]
        subscribers.withLock { table in
            for (session, batch) in bySession {
                guard let listeners = table[session] else { continue }
                for subscriber in listeners.values {
                    byLoop[ObjectIdentifier(subscriber.eventLoop), default: (subscriber.eventLoop, [])].calls.append((subscriber.deliver, batch))
                }
            }
        }
        for (_, work) in byLoop {
            let calls = work.calls
            work.eventLoop.execute {
                for (deliver, batch) in calls { deliver(batch) }
            }
        }
    }

    /// Whether any connection here is subscribed to `session` (a bus bringing in other gateways'
    /// deliveries fetches only those of sessions someone here listens to).
    public func hasSubscribers(_ session: SessionID) -> Bool {
        subscribers.withLock { $0[session] != nil }
    }

    public func subscribe(to session: SessionID, on eventLoop: any EventLoop,
                          deliver: @escaping @Sendable ([ChatEntry]) -> Void) -> ChatSubscription {
        let id = nextID.add(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[session, default: [:]][id] = Subscriber(eventLoop: eventLoop, deliver: deliver) }
        return ChatSubscription { [weak self] in
            self?.subscribers.withLock { table in
                table[session]?[id] = nil
                if table[session]?.isEmpty == true { table[session] = nil }
            }
        }
    }
}
