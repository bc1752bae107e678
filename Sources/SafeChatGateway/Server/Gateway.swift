/// SafeChatGateway: the server people run. It authenticates users, takes sealed uploads that
/// resume after any interruption, serves downloads by file_id, and records every file's manifest,
/// without ever holding a key that opens user content.
///
/// Layout: ``Gateway`` wires the pieces; ``Authenticator`` (login, tokens), ``UploadRoutes`` (tus and
/// POST /upload) and ``FileRoutes`` (downloads, manifests) are the routes; ``Registry`` and
/// ``BlobStore`` are the seams to storage, with ``JSONFileRegistry`` and ``LocalBlobStore`` as the
/// embedded defaults.
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

public struct Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let registry: any Registry
    public let blobs: any BlobStore
    public let users: any AccountStore
    public let uploads: UploadManager
    public let sessions: any SessionStore
    let chat: ChatService
    let web: WebAssets
    let tokens: TokenService
    let revocations: any RevocationStore
    let throttle: any LoginAttempts
    let access: AccessPolicy
    let leases: any ClusterLeases
    let logger: Logger
    /// What /metrics reports; the routes record into it.
    public let metrics: GatewayMetrics
    /// What /readyz answers; SIGTERM turns it false first.
    public let readiness: Readiness
    /// ``registry`` and ``blobs`` as the routes use them: every operation timed for the metrics.
    let measuredRegistry: any Registry
    let measuredBlobs: any BlobStore

    /// Opens (creating on first start) the data directory: registry, blobs, users and signing key.
    /// `blobs` is where sealed bytes go: by default the data directory's `data/` (``LocalBlobStore``);
    /// `state` where the rest of the gateway's state goes: by default the data directory and memory
    /// (``GatewayStateStores``).
    public init(configuration: GatewayConfiguration, blobs: (any BlobStore)? = nil, state: GatewayStateStores = GatewayStateStores(),
                metrics: GatewayMetrics = GatewayMetrics(), logger: Logger = Logger(label: "safechat.gateway")) async throws {
        let root = configuration.dataDirectory
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.configuration = configuration
        self.logger = logger
        throttle = state.loginAttempts ?? LoginThrottle(clock: configuration.clock)
        registry = try state.registry ?? JSONFileRegistry(directory: root + "/registry")
        self.blobs = try blobs ?? LocalBlobStore(root: root + "/data", directIO: configuration.directIO)
        self.metrics = metrics
        measuredRegistry = MeasuredRegistry(inner: registry, metrics: metrics)
        measuredBlobs = MeasuredBlobStore(inner: self.blobs, metrics: metrics)
        readiness = Readiness(checks: [
            Readiness.Check(name: "registry") { [measuredRegistry] in try await measuredRegistry.check() },
            Readiness.Check(name: "blob_store") { [measuredBlobs] in try await measuredBlobs.check() },
            Readiness.freeSpace(at: root, minimum: configuration.minimumFreeSpace),
        ] + state.readinessChecks)
        let users = try state.accounts ?? UserStore(path: Self.usersPath(dataDirectory: root))
        self.users = users
        sessions = try state.sessions ?? FileSessionStore(directory: root + "/registry/sessions", accountName: { try await users.name(of: $0) })
        access = AccessPolicy(sessions: sessions)
        leases = state.leases ?? ProcessLeases()
        tokens = try await TokenService(signingKeyPath: configuration.signingKeyPath ?? root + "/signing.key", issuer: configuration.tokenIssuer,
                                        audience: configuration.tokenAudience, lifetime: configuration.tokenLifetime)
        revocations = try state.revocations ?? TokenRevocations(path: root + "/revoked-tokens.json", clock: configuration.clock)
        let validator = TokenValidator(service: tokens, users: users, revocations: revocations)
        let bus = state.chatBus ?? LocalChatBus()
        let limits = ChatQueueLimits(queueLimit: configuration.chatQueueLimit, retention: configuration.chatRetention,
                                     storageLimit: configuration.chatStorageLimit, accountLimit: configuration.chatStoragePerAccount)
        let queue = try state.chatQueue?(limits, bus)
            ?? ChatLog(directory: root + "/registry/chat", queueLimit: limits.queueLimit, retention: limits.retention,
                       storageLimit: limits.storageLimit, accountLimit: limits.accountLimit, bus: bus)
        let chat = ChatService(
            log: queue, bus: bus, tickets: state.chatTickets ?? ChatTickets(), tokens: validator, sessions: sessions,
            limits: .init(maxFrame: configuration.chatMaxFrame, rate: configuration.chatRate, burst: 2 * configuration.chatRate,
                          outboundLimit: configuration.chatOutboundLimit),
            clock: configuration.clock, metrics: metrics)
        self.chat = chat
        web = try WebAssets.load()
        uploads = UploadManager(registry: measuredRegistry, blobs: measuredBlobs, configuration: configuration, access: access, logger: logger,
                                locks: state.uploadLocks ?? ProcessUploadLocks(), quota: state.quota?(configuration.userQuota),
                                fileStored: { try await chat.fileStored($0) })
        if configuration.demo, try await !users.contains("user1") {
            // Gateways of one database starting together both find it missing: one adds it.
            do { try await users.add("user1", password: "password123") } catch UserStoreError.exists {}
        }
        try await uploads.reconcile()
        try await uploads.sweep(removedAccounts: try await users.removedIDs())
    }

    public static func usersPath(dataDirectory: String) -> String { dataDirectory + "/users.json" }

    /// The router with every route; `routeTable` learns them.
    func makeRouter(routeTable: RouteTable = RouteTable()) -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        router.add(middleware: ErrorBodyMiddleware(routes: routeTable))
        LoginRoutes(users: users, tokens: tokens, throttle: throttle, metrics: metrics).register(on: router)
        let authenticated = router.group().add(middleware: AuthenticationMiddleware(tokens: TokenValidator(service: tokens, users: users,
                                                                                                           revocations: revocations)))
        LogoutRoute(users: users, revocations: revocations, loggedOut: { [chat] in await chat.audit(only: $0) }).register(on: authenticated)
        UploadRoutes(manager: uploads, registry: measuredRegistry, access: access, configuration: configuration, metrics: metrics)
            .register(authenticated: authenticated, open: router)
        FileRoutes(registry: measuredRegistry, blobs: measuredBlobs, uploads: uploads, access: access, metrics: metrics).register(on: authenticated)
        KeyRoutes(registry: measuredRegistry, users: users, clock: configuration.clock).register(on: authenticated)
        SessionRoutes(sessions: sessions, membersChanged: { [chat] in await chat.membersChanged($0) }).register(on: authenticated)
        chat.register(on: authenticated)
        WebRoutes(assets: web).register(on: router)
        routeTable.set(router.routes.map { ($0.method, $0.path.description) })
        return router
    }

    /// The Hummingbird application, listening where the configuration says, with the operators'
    /// listener (metrics and probes) beside it when one is configured.
    /// - Parameters:
    ///   - onServerRunning: called with the bound port once listening (tests bind port 0).
    ///   - onOperationsRunning: the same for the operators' listener.
    public func makeApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
                                onOperationsRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let routeTable = RouteTable()
        let idle = TimeAmount(configuration.idleTimeout)
        let webSocket = GatewayChannel.WebSocketSettings(maxFrameSize: configuration.chatMaxFrame, pingInterval: configuration.chatPingInterval)
        let tlsPaths = configuration.tlsCertificatePath.flatMap { cert in configuration.tlsKeyPath.map { (cert, $0) } }
        let maxFileSize = configuration.maxFileSize
        let limits = RequestGuard.Limits(
            bodyLimit: { method, path in BodyLimits.limit(method, path, maxFileSize: maxFileSize) },
            bodyTimeout: TimeAmount(configuration.bodyStallTimeout))
        let plain = HTTPServerBuilder { [chat] responder in
            GatewayChannel(responder: responder, http1: .init(idleTimeout: idle), webSocket: webSocket, sendfile: tlsPaths == nil,
                           limits: limits, decide: { [readiness] request, _ in
                               guard !readiness.isDraining else {
                                   return .refuse(GatewayError(.serviceUnavailable, .shuttingDown, "this gateway is shutting down; reconnect",
                                                               headers: [.retryAfter: "1"]))
                               }
                               return await chat.decide(request)
                           })
        }
        var server = plain
        if let (cert, key) = tlsPaths {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(plain, tlsConfiguration: tls)
        }
        var services: [any Service] = [Sweeper(uploads: uploads, users: users, leases: leases, logger: logger),
                                       ChatMaintenance(chat: chat, logger: logger), ChatAudit(chat: chat)]
        if let (host, port) = configuration.operationsAddress {
            services.append(OperationsServer(metrics: metrics, readiness: readiness)
                .makeApplication(host: host, port: port, logger: logger, onServerRunning: onOperationsRunning))
        }
        return Application(
            responder: FrontResponder(routes: makeRouter(routeTable: routeTable).buildResponder(), routeTable: routeTable,
                                      maxFileSize: configuration.maxFileSize, metrics: metrics,
                                      trustedProxies: configuration.trustedProxies), server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "SafeChat"),
            services: services,
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Runs until SIGINT or SIGTERM, then drains (``DrainOnShutdown``): not ready, chat closed with
    /// 1001, and in-flight requests get the rest of the grace period; an upload cut off then keeps
    /// every byte it had validated and made durable, and resumes from there.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
                    onOperationsRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = try makeApplication(onServerRunning: onServerRunning, onOperationsRunning: onOperationsRunning)
        let drain = DrainOnShutdown(readiness: readiness, chat: chat, notice: min(configuration.drainNotice, configuration.shutdownGrace / 2),
                                    logger: logger)
        // A group shuts its services down last to first: the drain, then the application.
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup,
                             failureTerminationBehavior: .gracefullyShutdownGroup),
                       .init(service: drain, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownGrace
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}
