import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import SafeChatAPI

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
        context.record.userID = principal.id.value
        return try await next(request, context)
    }
}

/// Whether a token still opens the gateway: signed by it and unexpired (``TokenService``), of an
/// account that exists at the token's generation (``UserStore``), and not revoked on its own
/// (``TokenRevocations``). The HTTP routes, chat upgrades and the audit of open chat connections
/// all ask here.
struct TokenValidator: Sendable {
    let service: TokenService
    let users: any AccountStore
    let revocations: any RevocationStore

    func validate(_ token: String) async throws -> (Principal, TokenClaims)? {
        guard let claims = await service.verify(token) else { return nil }
        return try await validate(claims).map { ($0, claims) }
    }

    /// The principal `claims` act for, if they still hold.
    func validate(_ claims: TokenClaims) async throws -> Principal? {
        if let id = claims.id, try await revocations.isRevoked(id) { return nil }
        return try await users.principal(id: claims.user, tokenGeneration: claims.generation)
    }
}
