import Foundation
import Hummingbird
import SafeChatAPI

/// The key directory: PUT /keys/me publishes the caller's identity bundle, GET /keys/{user} returns
/// anyone's. The gateway checks a bundle's shape and that it names the caller, nothing more: it
/// cannot vouch for a key, and clients trust only the signatures and pins they check themselves
/// (docs/KEYS.md).
struct KeyRoutes: Sendable {
    let registry: any Registry
    let users: any AccountStore
    let clock: @Sendable () -> Date

    func register(on router: RouterGroup<GatewayContext>) {
        router.put("keys/me") { request, context in try await publish(request, context) }
        router.get("keys/:user") { request, context in try await lookUp(request, context) }
    }

    func publish(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let body = try await request.body.collect(upTo: BodyLimits.bundle)
        guard let bundle = try? WireCoding.decoder.decode(IdentityBundle.self, from: Data(buffer: body)), bundle.isWellFormed else {
            throw GatewayError.badRequest("expected an identity bundle (docs/KEYS.md section 2): version 1 and hex fields of the stated lengths")
        }
        guard bundle.userID == principal.id.value else {
            throw GatewayError(.forbidden, .forbidden, "the bundle names another account; publish your own (user_id \(principal.id))")
        }
        let now = clock()
        try await registry.putIdentity(bundle, of: principal.id, at: now)
        context.logger.info("identity published", metadata: ["user_id": "\(principal.id.value)"])
        return try jsonResponse(KeyDirectoryEntry(user: principal.name, userID: principal.id.value, bundle: bundle, updatedAt: now))
    }

    func lookUp(_ request: Request, _ context: GatewayContext) async throws -> Response {
        _ = try context.requirePrincipal()
        guard let name = context.parameters.get("user"), (try? AccountName.validate(name)) != nil,
              let id = try await users.id(of: name), let (bundle, updatedAt) = try await registry.identity(of: id)
        else { throw GatewayError.notFound("identity") }
        return try jsonResponse(KeyDirectoryEntry(user: name, userID: id.value, bundle: bundle, updatedAt: updatedAt))
    }
}
