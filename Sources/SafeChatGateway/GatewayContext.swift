import Hummingbird
import NIOCore

/// The request context: Hummingbird's core storage plus the client's address (for login throttling).
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    /// JSON bodies the gateway reads (login) are small; streamed bodies are not collected.
    public var maxUploadSize: Int { 64 * 1024 }
}
