import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOWebSocket
import SafeChatAPI
import SealedFormat
import Synchronization
import WSCore

/// Who a chat connection acts for.
struct ChatConnection: Sendable {
    let principal: Principal
    /// The token that opened it (a ticket carries its token's claims on).
    let token: TokenClaims
    let session: SessionID
}

/// Ends one connection with a close code and reason, once. A reader that never reads cannot take
/// the close frame either, so after two seconds the connection is dropped outright.
final class ChatCloser: Sendable {
    private let outbound: WebSocketOutboundWriter
    private let channel: any Channel
    private let deliveries: DeliveryWriter
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(outbound: WebSocketOutboundWriter, channel: any Channel, deliveries: DeliveryWriter) {
        self.outbound = outbound
        self.channel = channel
        self.deliveries = deliveries
    }

    func close(_ code: ChatCloseCode, _ reason: String) {
        // No delivery may follow the close frame.
        deliveries.stop()
        task.withLock { task in
            guard task == nil else { return }
            task = Task { [outbound, channel] in
                let sent = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { (try? await outbound.close(.unknown(code.rawValue), reason: reason)) != nil }
                    group.addTask { try? await Task.sleep(for: .seconds(2)); return false }
                    let first = await group.next() ?? false
                    group.cancelAll()
                    return first
                }
                if !sent { channel.close(promise: nil) }
            }
        }
    }

    /// Waits for a close begun here to be sent (so the handler's own normal close cannot overtake it).
    func finished() async {
        await task.withLock { $0 }?.value
    }
}

/// The open chat connections, so that revocations and membership changes can close them.
final class ChatHub: Sendable {
    private let connections = Mutex<[UInt64: (ChatConnection, ChatCloser)]>([:])
    private let nextID = Atomic<UInt64>(0)

    func add(_ connection: ChatConnection, _ closer: ChatCloser) -> UInt64 {
        let id = nextID.add(1, ordering: .relaxed).newValue
        connections.withLock { $0[id] = (connection, closer) }
        return id
    }
    func remove(_ id: UInt64) { _ = connections.withLock { $0.removeValue(forKey: id) } }
    func all() -> [(UInt64, ChatConnection)] { connections.withLock { $0.map { ($0.key, $0.value.0) } } }
    func close(_ id: UInt64, _ code: ChatCloseCode, _ reason: String) {
        connections.withLock { $0[id] }?.1.close(code, reason)
    }
    var count: Int { connections.withLock { $0.count } }
}
