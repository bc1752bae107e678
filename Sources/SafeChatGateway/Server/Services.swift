import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import SafeChatAPI
import SafeChatWeb
import SealedFormat
import ServiceLifecycle
import Synchronization


/// Once a minute: removes uploads abandoned past their expiry, and the files and uploads of
/// accounts that were removed (they are unreachable from the moment of removal; this frees the space).
/// With many gateways, one of them sweeps each round (``ClusterLeases``).
struct Sweeper: Service {
    let uploads: UploadManager
    let users: any AccountStore
    let leases: any ClusterLeases
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                _ = try await leases.runAlone("sweep") { [uploads, users] in
                    try await uploads.sweep(removedAccounts: try await users.removedIDs())
                }
            } catch {
                logger.error("sweep failed: \(error)")
            }
            // The sleep ends early (throwing) when the gateway shuts down; the loop condition then stops.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(60)) }
        }
    }
}

/// Once a second: deletes chat deliveries past their retention.
struct ChatMaintenance: Service {
    let chat: ChatService
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await chat.log.maintain(now: chat.now)
                chat.metrics.chatQueue(depth: try await chat.log.depth())
            } catch {
                // It runs again next second; a log that cannot be written needs an operator.
                logger.error("chat log maintenance failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }
}

/// The first step of a graceful shutdown (SIGTERM): /readyz turns false, so the load balancer
/// stops sending new requests here; chat connections are closed with "going away" (1001) so their
/// clients reconnect elsewhere, and new ones are refused. Only then does the HTTP server stop
/// accepting and wait, for the rest of the grace period, for requests in flight.
struct DrainOnShutdown: Service {
    let readiness: Readiness
    let chat: ChatService
    /// How long to keep serving after turning not-ready, so that the balancer's next health check
    /// sees it before connections are refused.
    let notice: Duration
    let logger: Logger

    func run() async throws {
        // Returns when shutdown begins (or the task is cancelled).
        try? await gracefulShutdown()
        readiness.startDraining()
        logger.info("draining: not ready; closing chat connections", metadata: ["chat_connections": "\(chat.hub.count)"])
        chat.closeAll(.goingAway, "the gateway is shutting down; reconnect")
        try? await Task.sleep(for: notice)
    }
}

/// Once a second: closes chat connections whose token was revoked or whose user left the session.
/// A loop of its own, so that a maintenance round waiting on a slow disk never holds a revoked
/// connection open.
struct ChatAudit: Service {
    let chat: ChatService

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await chat.audit()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }
}
