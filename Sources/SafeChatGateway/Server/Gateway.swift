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
    public let users: UserStore
    public let uploads: UploadManager
    public let sessions: SessionStore
    let chat: ChatService
    let web: WebAssets
    let tokens: TokenService
    let revocations: TokenRevocations
    let throttle: LoginThrottle
    let access: AccessPolicy
    let logger: Logger

    /// Opens (creating on first start) the data directory: registry, blobs, users and signing key.
    public init(configuration: GatewayConfiguration, logger: Logger = Logger(label: "safechat.gateway")) async throws {
        let root = configuration.dataDirectory
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.configuration = configuration
        self.logger = logger
        throttle = LoginThrottle(clock: configuration.clock)
        registry = try JSONFileRegistry(directory: root + "/registry")
        blobs = try LocalBlobStore(root: root + "/data", directIO: configuration.directIO)
        let users = try UserStore(path: Self.usersPath(dataDirectory: root))
        self.users = users
        sessions = try SessionStore(directory: root + "/registry/sessions", accountName: { try await users.name(of: $0) })
        access = AccessPolicy(sessions: sessions)
        tokens = try await TokenService(signingKeyPath: root + "/signing.key", issuer: configuration.tokenIssuer,
                                        audience: configuration.tokenAudience, lifetime: configuration.tokenLifetime)
        revocations = try TokenRevocations(path: root + "/revoked-tokens.json", clock: configuration.clock)
        let validator = TokenValidator(service: tokens, users: users, revocations: revocations)
        let bus = LocalChatBus()
        let chat = ChatService(
            log: try ChatLog(directory: root + "/registry/chat", queueLimit: configuration.chatQueueLimit,
                             retention: configuration.chatRetention, storageLimit: configuration.chatStorageLimit,
                             accountLimit: configuration.chatStoragePerAccount, bus: bus),
            bus: bus, tokens: validator, sessions: sessions,
            limits: .init(maxFrame: configuration.chatMaxFrame, rate: configuration.chatRate, burst: 2 * configuration.chatRate,
                          outboundLimit: configuration.chatOutboundLimit),
            clock: configuration.clock)
        self.chat = chat
        web = try WebAssets.load()
        uploads = UploadManager(registry: registry, blobs: blobs, configuration: configuration, access: access, logger: logger,
                                fileStored: { try await chat.fileStored($0) })
        if configuration.demo, try await !users.contains("user1") {
            try await users.add("user1", password: "password123")
        }
        try await uploads.reconcile()
        try await uploads.sweep(removedAccounts: try await users.removedIDs())
    }

    public static func usersPath(dataDirectory: String) -> String { dataDirectory + "/users.json" }

    /// The router with every route; `routeTable` learns them.
    func makeRouter(routeTable: RouteTable = RouteTable()) -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        router.add(middleware: ErrorBodyMiddleware(routes: routeTable))
        LoginRoutes(users: users, tokens: tokens, throttle: throttle).register(on: router)
        let authenticated = router.group().add(middleware: AuthenticationMiddleware(tokens: TokenValidator(service: tokens, users: users,
                                                                                                           revocations: revocations)))
        LogoutRoute(users: users, revocations: revocations).register(on: authenticated)
        UploadRoutes(manager: uploads, registry: registry, access: access, configuration: configuration)
            .register(authenticated: authenticated, open: router)
        FileRoutes(registry: registry, blobs: blobs, uploads: uploads, access: access).register(on: authenticated)
        KeyRoutes(registry: registry, users: users, clock: configuration.clock).register(on: authenticated)
        SessionRoutes(sessions: sessions, membersChanged: { [chat] in await chat.membersChanged($0) }).register(on: authenticated)
        chat.register(on: authenticated)
        WebRoutes(assets: web).register(on: router)
        routeTable.set(router.routes.map { ($0.method, $0.path.description) })
        return router
    }

    /// The Hummingbird application, listening where the configuration says.
    /// - Parameter onServerRunning: called with the bound port once listening (tests bind port 0).
    public func makeApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
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
                           limits: limits, decide: { request, _ in await chat.decide(request) })
        }
        var server = plain
        if let (cert, key) = tlsPaths {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(plain, tlsConfiguration: tls)
        }
        return Application(
            responder: FrontResponder(routes: makeRouter(routeTable: routeTable).buildResponder(), routeTable: routeTable,
                                      maxFileSize: configuration.maxFileSize), server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "SafeChat"),
            services: [Sweeper(uploads: uploads, users: users, logger: logger), ChatMaintenance(chat: chat, logger: logger)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Runs until SIGINT or SIGTERM. In-flight requests get a grace period; an upload cut off then
    /// keeps every byte it had validated and made durable, and resumes from there.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = try makeApplication(onServerRunning: onServerRunning)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup,
                             failureTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(10)
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}

/// Once a minute: removes uploads abandoned past their expiry, and the files and uploads of
/// accounts that were removed (they are unreachable from the moment of removal; this frees the space).
struct Sweeper: Service {
    let uploads: UploadManager
    let users: UserStore
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do { try await uploads.sweep(removedAccounts: try await users.removedIDs()) } catch { logger.error("sweep failed: \(error)") }
            // The sleep ends early (throwing) when the gateway shuts down; the loop condition then stops.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(60)) }
        }
    }
}

/// Once a second: deletes chat deliveries past their retention, and closes chat connections whose
/// token was revoked or whose user left the session.
struct ChatMaintenance: Service {
    let chat: ChatService
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await chat.log.maintain(now: chat.now)
            } catch {
                // It runs again next second; a log that cannot be written needs an operator.
                logger.error("chat log maintenance failed", metadata: ["error": "\(error)"])
            }
            await chat.audit()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }
}

/// Answers every error with the documented JSON body: unknown routes (404), a known path with
/// another method (405 with Allow), bodies over a limit, and anything unexpected (500, logged).
struct ErrorBodyMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as GatewayError {
            throw error
        } catch let error as HTTPError {
            if error.status == .notFound {
                let allowed = routes.methods(for: request.uri.path)
                if !allowed.isEmpty {
                    throw GatewayError(.methodNotAllowed, .methodNotAllowed, "\(request.method) is not allowed here",
                                       headers: [.allow: allowed.map(\.rawValue).sorted().joined(separator: ", ")])
                }
                throw GatewayError(.notFound, .notFound, "no such route: \(request.method) \(request.uri.path)")
            }
            if error.status == .contentTooLarge { throw GatewayError(.contentTooLarge, .tooLarge, "the request body is too large") }
            throw GatewayError(error.status, error.status.code < 500 ? .badRequest : .internalError, error.body ?? error.status.reasonPhrase)
        } catch is NIOTooManyBytesError {
            throw GatewayError(.contentTooLarge, .tooLarge, "the request body is too large")
        } catch let error as HTTPParserError {
            // NIO's decoder failed inside the body (a malformed chunk); RequestGuard closes the
            // connection after this answer.
            throw GatewayError(.badRequest, .badRequest, "malformed request body (\(error))")
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw GatewayError(.internalServerError, .internalError, "the gateway failed to answer; try again")
        }
    }

}

/// The routes the router knows (method and path pattern), so a wrong method on a known path is told
/// apart from an unknown path. Filled once the router is built.
final class RouteTable: Sendable {
    private let routes = Mutex<[(method: HTTPRequest.Method, pattern: [Substring])]>([])

    func set(_ list: [(HTTPRequest.Method, String)]) {
        routes.withLock { $0 = list.map { ($0.0, $0.1.split(separator: "/", omittingEmptySubsequences: true)) } }
    }

    /// Methods routed for `path` (a route parameter matches any one segment).
    func methods(for path: String) -> Set<HTTPRequest.Method> {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        return routes.withLock { routes in
            Set(routes.filter { route in
                route.pattern.count == segments.count
                    && zip(route.pattern, segments).allSatisfy { $0.hasPrefix(":") || $0.hasPrefix("{") || $0 == $1 }
            }.map(\.method))
        }
    }
}

/// What every request passes before routing: CORS (browsers' preflights included, answered with
/// the tus discovery headers too) and tus's X-HTTP-Method-Override, which must change the method
/// before the router picks a route.
struct FrontResponder<Routes: HTTPResponder<GatewayContext>>: HTTPResponder {
    typealias Context = GatewayContext
    let routes: Routes
    let routeTable: RouteTable
    let maxFileSize: Int64
    let cors = CORSMiddleware<GatewayContext>(
        allowOrigin: .all,
        allowHeaders: ["Authorization", "Content-Type", Tus.Header.uploadLength, Tus.Header.uploadOffset, Tus.Header.resumable,
                       Tus.Header.uploadMetadata, Tus.Header.uploadDeferLength, "Upload-Concat", Tus.Header.uploadChecksum,
                       Tus.Header.methodOverride, "X-Requested-With", "Range", "If-Range"].compactMap { HTTPField.Name($0) },
        allowMethods: [.post, .head, .patch, .options, .get, .delete, .put],
        exposedHeaders: [Tus.Header.uploadOffset, "Location", Tus.Header.uploadLength, Tus.Header.version, Tus.Header.resumable,
                         Tus.Header.maxSize, Tus.Header.extensions, Tus.Header.uploadMetadata, Tus.Header.uploadDeferLength,
                         "Upload-Concat", Tus.Header.uploadExpires, "Content-Range", "Accept-Ranges", "ETag"])

    func respond(to request: Request, context: Context) async throws -> Response {
        do {
            var response = try await cors.handle(request, context: context) { request, context in
                try await respondToRoutes(try Self.applyingMethodOverride(request), context: context)
            }
            // A preflight is answered by the CORS middleware alone; it still tells tus clients what
            // this server speaks.
            if request.method == .options, request.uri.path.hasPrefix(Tus.uploadsPath) {
                for field in UploadRoutes.discoveryHeaders(maxFileSize: maxFileSize) where response.headers[field.name] == nil {
                    response.headers.append(field)
                }
            }
            return response
        } catch let error as GatewayError {
            return try error.response(from: request, context: context)
        }
    }

    /// HEAD works wherever GET does: a path with no HEAD route of its own is answered as GET would
    /// be, without the body.
    private func respondToRoutes(_ request: Request, context: Context) async throws -> Response {
        let methods = routeTable.methods(for: request.uri.path)
        guard request.method == .head, !methods.contains(.head), methods.contains(.get) else {
            return try await routes.respond(to: request, context: context)
        }
        var head = request.head
        head.method = .get
        let response = try await routes.respond(to: Request(head: head, body: request.body), context: context)
        var headers = response.headers
        if headers[.contentLength] == nil, let length = response.body.contentLength { headers[.contentLength] = "\(length)" }
        return Response(status: response.status, headers: headers)
    }

    /// A POST to an upload URL that says it is a PATCH or DELETE is routed as one (for clients and
    /// proxies that only speak GET and POST). Nothing else may be overridden: a HEAD override would
    /// answer a request whose client expects a body with headers that promise one it never gets.
    static func applyingMethodOverride(_ request: Request) throws -> Request {
        guard let override = request.headers[.httpMethodOverride] else { return request }
        let path = request.uri.path.split(separator: "/", omittingEmptySubsequences: true)
        guard request.method == .post, path.count == 2, path[0] == Tus.uploadsPath.dropFirst() else {
            throw GatewayError.badRequest("X-HTTP-Method-Override is only for POST to an upload URL")
        }
        var head = request.head
        switch override.uppercased() {
        case "PATCH": head.method = .patch
        case "DELETE": head.method = .delete
        default: throw GatewayError.badRequest("X-HTTP-Method-Override supports PATCH and DELETE")
        }
        return Request(head: head, body: request.body)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}
