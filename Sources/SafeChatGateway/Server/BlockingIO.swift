import NIOPosix

/// Runs blocking disk work (fsync, file writes, renames) on NIO's thread pool, off the actors and
/// the cooperative pool. It runs to the end even if the calling task is cancelled: a graceful
/// shutdown cancels the requests still running, and what they received must still be made durable
/// and recorded, not dropped halfway. The pool's thread resumes the caller itself: completing an
/// event loop's promise instead would queue every fsync's answer behind that loop's socket work,
/// which under chat load made each group commit of the chat log wait milliseconds for it.
func blockingIO<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        NIOThreadPool.singleton.submit { state in
            guard case .active = state else { return continuation.resume(throwing: CancellationError()) }  // the pool is shutting down
            continuation.resume(with: Result(catching: body))
        }
    }
}
