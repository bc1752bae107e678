import Hummingbird
import NIOCore

/// The request context: Hummingbird's core storage, the client's address (for login throttling)
/// and the connection (downloads hand files to its ``FileRegionSender``).
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: String
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        channel = source.channel
    }

    /// JSON bodies the gateway reads (login) are small; streamed bodies are not collected.
    public var maxUploadSize: Int { 64 * 1024 }
}
