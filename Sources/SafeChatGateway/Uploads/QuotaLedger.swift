import SafeChatAPI
import Synchronization

/// Sealed bytes each user holds or has reserved: finished files, plus every upload's declared length
/// (or, while its length is deferred, the bytes it has so far). The embedded ``QuotaLedger`` counts
/// in memory; a server-grade backend counts in its database, so that requests of one user spread
/// over many gateways still stop at one quota.
///
/// Reserving is one check-and-add, so concurrent uploads of one user can never together pass the
/// quota; every refused, deleted or expired upload gives its reservation back.
public protocol QuotaStore: Sendable {
    /// Adds `bytes` to `user`'s usage if that stays within the quota; false (and nothing changes)
    /// otherwise.
    func reserve(_ bytes: Int64, for user: UserID) async throws -> Bool
    /// Gives `bytes` back. A release that cannot be recorded now (the database is away) leaves the
    /// user counted for more than they hold, never less.
    func release(_ bytes: Int64, for user: UserID) async
    func usage(of user: UserID) async throws -> Int64
    /// Starts from what the registry holds (at start-up, before requests are served).
    func load(stored: [UserID: Int64], uploads: [UploadState]) async throws
}

/// The embedded ``QuotaStore``: one process's counts, under a lock.
public final class QuotaLedger: QuotaStore {
    private let used = Mutex<[UserID: Int64]>([:])
    let quota: Int64

    public init(quota: Int64) { self.quota = quota }

    public func reserve(_ bytes: Int64, for user: UserID) -> Bool {
        precondition(bytes >= 0)
        return used.withLock { used in
            let current = used[user, default: 0]
            guard current <= quota - bytes else { return false }
            used[user] = current + bytes
            return true
        }
    }

    public func release(_ bytes: Int64, for user: UserID) {
        used.withLock { used in
            let left = used[user, default: 0] - bytes
            used[user] = left > 0 ? left : nil
        }
    }

    public func usage(of user: UserID) -> Int64 { used.withLock { $0[user, default: 0] } }

    public func load(stored: [UserID: Int64], uploads: [UploadState]) {
        used.withLock { used in
            used = stored
            for upload in uploads { used[upload.owner, default: 0] += upload.reservedBytes }
        }
    }
}

extension UploadState {
    /// What this upload counts against its owner's quota.
    public var reservedBytes: Int64 { length ?? offset }
}
