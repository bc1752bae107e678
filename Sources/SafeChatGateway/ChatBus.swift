import Foundation
import SafeChatAPI
import Synchronization

/// The seam live deliveries cross: ``ChatLog`` publishes each batch of durable entries, in seq
/// order, and every open connection of an entry's session receives it through its subscription.
/// The embedded ``LocalChatBus`` reaches this process's connections; a bus that also forwards to
/// other gateways sharing one database would slot in here without touching the routes.
protocol ChatBus: Sendable {
    func publish(_ entries: [ChatEntry]) async
    /// Hands `session`'s entries published from now on to `deliver`, batch by batch and in seq
    /// order. `deliver` must not block: it queues the frames for writing (``DeliveryWriter``).
    func subscribe(to session: SessionID, deliver: @escaping @Sendable ([ChatEntry]) -> Void) -> ChatSubscription
}

/// One connection's subscription; `cancel` ends it.
struct ChatSubscription: Sendable {
    let cancel: @Sendable () -> Void
}

/// The in-process bus.
final class LocalChatBus: ChatBus {
    private let subscribers = Mutex<[SessionID: [UInt64: @Sendable ([ChatEntry]) -> Void]]>([:])
    private let nextID = Atomic<UInt64>(0)

    /// Called by one publisher at a time (the log's commit), so batches reach each subscriber in order.
    func publish(_ entries: [ChatEntry]) {
        var bySession: [SessionID: [ChatEntry]] = [:]
        for entry in entries { bySession[entry.session, default: []].append(entry) }
        for (session, batch) in bySession {
            let listeners = subscribers.withLock { $0[session].map { Array($0.values) } ?? [] }
            for deliver in listeners { deliver(batch) }
        }
    }

    func subscribe(to session: SessionID, deliver: @escaping @Sendable ([ChatEntry]) -> Void) -> ChatSubscription {
        let id = nextID.add(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[session, default: [:]][id] = deliver }
        return ChatSubscription { [weak self] in
            self?.subscribers.withLock { table in
                table[session]?[id] = nil
                if table[session]?.isEmpty == true { table[session] = nil }
            }
        }
    }
}
