import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import SafeChatAPI

/// POST /login: a user name and password for a bearer token.
struct LoginRoutes: Sendable {
    let users: any AccountStore
    let tokens: TokenService
    let throttle: any LoginAttempts
    let metrics: GatewayMetrics

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
        let attempt = try await throttle.begin(keys)
        if case .refused(let wait) = attempt {
            metrics.login(.throttled)
            throw GatewayError(.tooManyRequests, .tooManyAttempts, "too many failed logins; retry in \(wait) s",
                               headers: [.retryAfter: "\(wait)"])
        }
        guard let (principal, generation) = try await users.verify(login.username, password: login.password) else {
            metrics.login(.failure)
            context.logger.notice("login failed", metadata: ["address": "\(context.remoteAddress)"])
            throw GatewayError(.unauthorized, .invalidCredentials, "wrong user name or password")
        }
        try await throttle.succeeded(keys)
        metrics.login(.success)
        let (token, expires) = try await tokens.issue(for: principal.id, generation: generation)
        context.logger.info("login", metadata: ["user_id": "\(principal.id.value)"])
        return try jsonResponse(LoginReply(token: token, expiresAt: expires, userID: principal.id.value))
    }
}

/// POST /logout: revokes the token it is sent with, alone, at once: every request with it is then
/// 401, and the chat connections it opened close: on this gateway before the answer, on the others
/// at their next audit (within a second).
struct LogoutRoute: Sendable {
    let users: any AccountStore
    let revocations: any RevocationStore
    let loggedOut: @Sendable (UserID) async -> Void

    func register(on router: RouterGroup<GatewayContext>) {
        router.post("logout") { _, context in
            let principal = try context.requirePrincipal()
            guard let claims = context.token else { throw GatewayError.unauthorized }
            // A token without an id (issued before ids existed), or an account that already has
            // as many revocations pending as it may: every token of the account is revoked.
            let revokedAlone = if let id = claims.id { try await revocations.revoke(id, of: principal.id, expires: claims.expires) } else { false }
            if !revokedAlone { try await users.revokeTokens(of: principal.id) }
            context.logger.info("logout", metadata: ["user_id": "\(principal.id)", "all_tokens": "\(!revokedAlone)"])
            await loggedOut(principal.id)
            return Response(status: .noContent)
        }
    }
}
