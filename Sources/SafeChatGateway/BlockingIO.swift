import NIOCore
import NIOPosix

/// Runs blocking disk work (fsync, file writes, renames) on NIO's thread pool, off the actors and
/// the cooperative pool. It runs to the end even if the calling task is cancelled: a graceful
/// shutdown cancels the requests still running, and what they received must still be made durable
/// and recorded, not dropped halfway.
func blockingIO<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.next(), body).get()
}
