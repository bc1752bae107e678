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
    let tokens: TokenValidator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.utf8.count > 7,
              header.prefix(7).lowercased() == "bearer ",
              let (principal, claims) = try await tokens.validate(String(header.dropFirst(7)))
        else { throw GatewayError.unauthorized }
        var context = context
        context.principal = principal
        context.token = claims
        return try await next(request, context)
    }
}

/// Whether a token still opens the gateway: signed by it and unexpired (``TokenService``), of an
/// account that exists at the token's generation (``UserStore``), and not revoked on its own
/// (``TokenRevocations``). The HTTP routes, chat upgrades and the audit of open chat connections
/// all ask here.
struct TokenValidator: Sendable {
    let service: TokenService
    let users: UserStore
    let revocations: TokenRevocations

    func validate(_ token: String) async throws -> (Principal, TokenClaims)? {
        guard let claims = await service.verify(token) else { return nil }
        return try await validate(claims).map { ($0, claims) }
    }

    /// The principal `claims` act for, if they still hold.
    func validate(_ claims: TokenClaims) async throws -> Principal? {
        if let id = claims.id, revocations.isRevoked(id) { return nil }
        return try await users.principal(id: claims.user, tokenGeneration: claims.generation)
    }
}

/// POST /logout: revokes the token it is sent with, alone, at once: every request with it is then
/// 401, and the chat connections it opened close within a second.
struct LogoutRoute: Sendable {
    let users: UserStore
    let revocations: TokenRevocations

    func register(on router: RouterGroup<GatewayContext>) {
        router.post("logout") { _, context in
            let principal = try context.requirePrincipal()
            guard let claims = context.token else { throw GatewayError.unauthorized }
            // A token without an id (issued before ids existed), or an account that already has
            // as many revocations pending as it may: every token of the account is revoked.
            let revokedAlone = if let id = claims.id { try await revocations.revoke(id, of: principal.id, expires: claims.expires) } else { false }
            if !revokedAlone { try await users.revokeTokens(of: principal.id) }
            context.logger.info("logout", metadata: ["user_id": "\(principal.id)", "all_tokens": "\(!revokedAlone)"])
            return Response(status: .noContent)
        }
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
