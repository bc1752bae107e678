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
import NIOSSL
import ServiceLifecycle

public struct Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let registry: any Registry
    public let blobs: any BlobStore
    public let users: UserStore
    public let uploads: UploadManager
    let tokens: TokenService
    let logger: Logger

    /// Opens (creating on first start) the data directory: registry, blobs, users and signing key.
    public init(configuration: GatewayConfiguration, logger: Logger = Logger(label: "safechat.gateway")) async throws {
        let root = configuration.dataDirectory
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.configuration = configuration
        self.logger = logger
        registry = try JSONFileRegistry(directory: root + "/registry")
        blobs = try LocalBlobStore(root: root + "/data")
        users = try UserStore(path: Self.usersPath(dataDirectory: root))
        tokens = try await TokenService(signingKeyPath: root + "/signing.key", issuer: configuration.tokenIssuer,
                                        audience: configuration.tokenAudience, lifetime: configuration.tokenLifetime)
        uploads = UploadManager(registry: registry, blobs: blobs, configuration: configuration, logger: logger)
        try await uploads.reconcile()
        if configuration.demo, try await !users.contains("user1") {
            try await users.add("user1", password: "password123")
        }
    }

    public static func usersPath(dataDirectory: String) -> String { dataDirectory + "/users.json" }

    /// The router with every route.
    public func makeRouter() -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        let auth = Authenticator(users: users, tokens: tokens)
        router.post("login") { request, context in try await auth.login(request, context: context) }
        router.get("get_chat_key") { _, _ -> Response in
            // The prototype handed out a key the server had made and kept. Keys never leave users'
            // devices here: they are created with `safechat keygen` and shared out of band.
            throw GatewayError(.gone, "no_server_keys",
                               "this gateway never holds keys; create a session key on your device with `safechat keygen`")
        }
        UploadRoutes(auth: auth, manager: uploads, registry: registry, configuration: configuration).register(on: router)
        FileRoutes(auth: auth, registry: registry, blobs: blobs).register(on: router)
        return router
    }

    /// The Hummingbird application, listening where the configuration says.
    /// - Parameter onServerRunning: called with the bound port once listening (tests bind port 0).
    public func makeApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        var server: HTTPServerBuilder = .http1WithSendfile
        if let cert = configuration.tlsCertificatePath, let key = configuration.tlsKeyPath {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(.http1(), tlsConfiguration: tls)
        }
        return Application(
            responder: FrontResponder(routes: makeRouter().buildResponder()), server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "SafeChat"),
            services: [ExpirySweeper(uploads: uploads, logger: logger)],
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

/// Removes uploads abandoned past their expiry, once a minute.
struct ExpirySweeper: Service {
    let uploads: UploadManager
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do { try await uploads.removeExpired() } catch { logger.error("expiry sweep failed: \(error)") }
            try? await gracefulShutdownAwareSleep(seconds: 60)
        }
    }

    private func gracefulShutdownAwareSleep(seconds: Int) async throws {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(seconds)) }
    }
}

/// What every request passes before routing: CORS (browsers' preflights included) and tus's
/// X-HTTP-Method-Override, which must change the method before the router picks a route.
struct FrontResponder<Routes: HTTPResponder<GatewayContext>>: HTTPResponder {
    typealias Context = GatewayContext
    let routes: Routes
    let cors = CORSMiddleware<GatewayContext>(
        allowOrigin: .all,
        allowHeaders: ["Authorization", "Content-Type", "Upload-Length", "Upload-Offset", "Tus-Resumable", "Upload-Metadata",
                       "Upload-Defer-Length", "Upload-Concat", "Upload-Checksum", "X-HTTP-Method-Override", "X-Requested-With",
                       "Range", "If-Range"].compactMap { HTTPField.Name($0) },
        allowMethods: [.post, .head, .patch, .options, .get, .delete],
        exposedHeaders: ["Upload-Offset", "Location", "Upload-Length", "Tus-Version", "Tus-Resumable", "Tus-Max-Size",
                         "Tus-Extension", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Upload-Expires",
                         "Content-Range", "Accept-Ranges", "ETag"])

    func respond(to request: Request, context: Context) async throws -> Response {
        try await cors.handle(request, context: context) { request, context in
            try await routes.respond(to: try Self.applyingMethodOverride(request), context: context)
        }
    }

    /// A POST that says it is a PATCH, HEAD or DELETE is routed as one (for clients and proxies
    /// that only speak GET and POST).
    static func applyingMethodOverride(_ request: Request) throws -> Request {
        guard request.method == .post, let override = request.headers[.httpMethodOverride]?.uppercased() else { return request }
        var head = request.head
        switch override {
        case "PATCH": head.method = .patch
        case "DELETE": head.method = .delete
        case "HEAD": head.method = .head
        default: throw GatewayError.badRequest("X-HTTP-Method-Override supports PATCH, HEAD and DELETE")
        }
        return Request(head: head, body: request.body)
    }
}
