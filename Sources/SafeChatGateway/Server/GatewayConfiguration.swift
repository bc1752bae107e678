import Foundation

/// Everything `safechat serve` can be told, from flags or environment variables.
public struct GatewayConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var dataDirectory = "./safechat-data"
    /// Sealed files are written and read with O_DIRECT where the file system allows it (see
    /// ``LocalBlobStore``).
    public var directIO = true
    /// Largest sealed stream accepted, in bytes.
    public var maxFileSize: Int64 = 64 << 30
    /// Sealed bytes one user may store (finished files and uploads in progress).
    public var userQuota: Int64 = 256 << 30
    public var tokenLifetime: TimeInterval = 12 * 3600
    /// An upload not finished within this time is removed.
    public var uploadExpiry: TimeInterval = 24 * 3600
    /// A connection that sends no complete request head, or sits idle between requests, for this
    /// long is closed.
    public var idleTimeout: Duration = .seconds(60)
    /// A request body that delivers no byte for this long is cut off; an upload keeps what arrived
    /// and can be resumed at once.
    public var bodyStallTimeout: Duration = .seconds(60)
    /// Chat (docs/PROTOCOL.md section 2): deliveries waiting for one member of one session (the
    /// oldest is dropped beyond it), how long one waits at most, and the bytes all queues may hold.
    public var chatQueueLimit = 1000
    public var chatRetention: TimeInterval = 7 * 24 * 3600
    public var chatStorageLimit = 256 << 20
    /// Bytes of deliveries one account's sends may hold of that (its share): an account whose
    /// messages wait for members who never connect fills only its own share.
    public var chatStoragePerAccount = 32 << 20
    /// Largest chat frame accepted, and frames per second one connection may send (sustained; twice
    /// that in a burst).
    public var chatMaxFrame = 64 * 1024
    public var chatRate: Double = 50
    /// Deliveries waiting to be written to one connection before it is cut off as too slow.
    public var chatOutboundLimit = 512
    /// Idle chat connections are pinged this often; one that does not answer by the next ping is closed.
    public var chatPingInterval: Duration = .seconds(30)
    /// Starts with the prototype's demo account user1 / password123.
    public var demo = false
    /// The token signing key (64 hex digits, 0600), made at first start if missing; by default
    /// `signing.key` in the data directory. Gateways that share users share this file.
    public var signingKeyPath: String?
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// Where operators' endpoints listen (GET /metrics, /healthz, /readyz); nowhere when nil, and
    /// never on the public port.
    public var operationsAddress: (host: String, port: Int)?
    /// /readyz fails when the data directory's file system has less free than this.
    public var minimumFreeSpace: Int64 = 1 << 30
    /// On SIGTERM: how long in-flight requests get to finish before they are cut off (an upload
    /// cut off keeps every byte it acknowledged, and resumes).
    public var shutdownGrace: Duration = .seconds(30)
    /// Of that, how long the gateway keeps serving after /readyz turned false, before it stops
    /// accepting connections: a load balancer checking more often than this has moved away by then.
    public var drainNotice: Duration = .seconds(2)
    /// Addresses of proxies whose `X-Request-Id` is taken over; from anyone else the header is
    /// ignored and the gateway makes its own id.
    public var trustedProxies: Set<String> = []

    /// The time of day for upload expiry and login locks; tests move it instead of waiting.
    public var clock: @Sendable () -> Date = { Date() }

    public init() {}

    /// JWT issuer and audience; tokens from another deployment or for another service are refused.
    public var tokenIssuer = "safechat-gateway"
    public var tokenAudience = "safechat"
}
