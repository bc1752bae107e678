import SafeChatAPI

/// Who may append to an upload across every gateway that serves it. Within one gateway the
/// ``UploadManager`` already lets one request at a time append; with many gateways on shared state
/// a store of their own (SafeChatPostgres: an advisory lock on a connection, released when the
/// holder's connection dies) makes that hold across them.
public protocol UploadLocks: Sendable {
    /// Takes the lock on upload `id` for one append, or returns nil at once when another holds it.
    func tryLock(_ id: FileID) async throws -> (any HeldUploadLock)?
}

public protocol HeldUploadLock: Sendable {
    func release() async
}

/// One gateway alone: the manager's own bookkeeping is the whole lock.
struct ProcessUploadLocks: UploadLocks {
    struct Held: HeldUploadLock { func release() async {} }
    func tryLock(_ id: FileID) async throws -> (any HeldUploadLock)? { Held() }
}
