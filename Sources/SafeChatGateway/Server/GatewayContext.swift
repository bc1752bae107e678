import Hummingbird
import NIOCore
import SafeChatAPI

/// The request context: Hummingbird's core storage, the client's address (for login throttling),
/// the connection (downloads hand files to its ``FileRegionSender``; a stalled upload closes it)
/// and, behind ``AuthenticationMiddleware``, who the request acts for.
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: String
    let channel: any Channel
    /// Set by ``AuthenticationMiddleware``.
    var principal: Principal?
    /// The token that authenticated the request (tickets carry it on; logout revokes it).
    var token: TokenClaims?
    /// What the request log line tells beyond head and status (account, body bytes).
    let record = RequestRecord()

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        channel = source.channel
    }

    /// The authenticated principal; only routes behind the authentication middleware call this.
    func requirePrincipal() throws -> Principal {
        guard let principal else { throw GatewayError.unauthorized }
        return principal
    }

    /// JSON bodies the gateway reads (login) are small; streamed bodies are not collected.
    public var maxUploadSize: Int { 64 * 1024 }
}
