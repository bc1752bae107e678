import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import SafeChatAPI

/// POST /login: a user name and password for a bearer token.
struct LoginRoutes: Sendable {
    let users: UserStore
    let tokens: TokenService
    let throttle: LoginThrottle

    struct LoginRequest: Decodable { let username: String; let password: String }

    func register(on router: Router<GatewayContext>) {
        router.post("login") { request, context in try await login(request, context: context) }
    }

    func login(_ request: Request, context: GatewayContext) async throws -> Response {
        let body = try await request.body.collect(upTo: BodyLimits.login)
        guard let login = try? JSONDecoder().decode(LoginRequest.self, from: Data(buffer: body)) else {
            throw GatewayError.badRequest("expected a JSON body {\"username\": ..., \"password\": ...}")
        }
        let keys = ["user:\(login.username)", "addr:\(context.remoteAddress)"]
        // The attempt is counted before the password is checked, so concurrent guesses cannot all
        // slip in while the first ones are still hashing.
        let attempt = await throttle.begin(keys)
        if case .refused(let wait) = attempt {
            throw GatewayError(.tooManyRequests, .tooManyAttempts, "too many failed logins; retry in \(wait) s",
                               headers: [.retryAfter: "\(wait)"])
        }
        guard let (principal, generation) = try await users.verify(login.username, password: login.password) else {
            context.logger.notice("login failed", metadata: ["user": "\(login.username)", "address": "\(context.remoteAddress)"])
            throw GatewayError(.unauthorized, .invalidCredentials, "wrong user name or password")
        }
        await throttle.succeeded(keys)
        let (token, expires) = try await tokens.issue(for: principal.id, generation: generation)
        context.logger.info("login", metadata: ["user": "\(principal.name)"])
        return try jsonResponse(LoginReply(token: token, expiresAt: expires, userID: principal.id.value))
    }
}

/// Resolves the bearer token of every request behind it to a ``Principal`` (401 without a valid
/// one), so routes never read tokens themselves.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let users: UserStore
    let tokens: TokenService

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.utf8.count > 7,
              header.prefix(7).lowercased() == "bearer ",
              let claims = await tokens.verify(String(header.dropFirst(7))),
              let principal = try await users.principal(id: claims.user, tokenGeneration: claims.generation)
        else { throw GatewayError.unauthorized }
        var context = context
        context.principal = principal
        context.tokenGeneration = claims.generation
        return try await next(request, context)
    }
}

/// Who may see and change what. Every route asks here; none compares owners itself. A file is its
/// uploader's, and readable by every current member of the session it was sent to; an upload in
/// progress is its uploader's alone. Anyone else is told it does not exist (404), so ids cannot be
/// probed.
struct AccessPolicy: Sendable {
    let sessions: SessionStore

    func mayRead(_ manifest: FileManifest, _ principal: Principal) async -> Bool {
        if manifest.owner == principal.id { return true }
        guard let session = manifest.session else { return false }
        return await isMember(principal, of: session.sessionID)
    }
    func owns(_ manifest: FileManifest, _ principal: Principal) -> Bool { manifest.owner == principal.id }
    func mayDelete(_ manifest: FileManifest, _ principal: Principal) -> Bool { owns(manifest, principal) }
    func mayAppend(_ upload: UploadState, _ principal: Principal) -> Bool { upload.owner == principal.id }

    func isMember(_ principal: Principal, of session: SessionID) async -> Bool {
        sessions.isMember(principal.id, of: session)
    }

    /// The manifest of `id` if `principal` may read it; 404 otherwise (missing or not theirs).
    func readableFile(_ id: FileID, by principal: Principal, in registry: any Registry) async throws -> FileManifest {
        guard let manifest = try await registry.file(id), await mayRead(manifest, principal) else { throw GatewayError.notFound("file") }
        return manifest
    }
}

func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
    var headers = headers
    headers[.contentType] = "application/json; charset=utf-8"
    headers[.cacheControl] = "no-store"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try WireCoding.encoder.encode(value))))
}
