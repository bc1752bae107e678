import SafeChatAPI
import Synchronization

/// Sealed bytes each user holds or has reserved: finished files, plus every upload's declared length
/// (or, while its length is deferred, the bytes it has so far).
///
/// Reserving is one check-and-add under a lock, so concurrent uploads of one user can never
/// together pass the quota; every refused, deleted or expired upload gives its reservation back.
final class QuotaLedger: Sendable {
    private let used = Mutex<[UserID: Int64]>([:])
    let quota: Int64

    init(quota: Int64) { self.quota = quota }

    /// Adds `bytes` to `user`'s usage if that stays within the quota; false (and nothing changes)
    /// otherwise.
    func reserve(_ bytes: Int64, for user: UserID) -> Bool {
        precondition(bytes >= 0)
        return used.withLock { used in
            let current = used[user, default: 0]
            guard current <= quota - bytes else { return false }
            used[user] = current + bytes
            return true
        }
    }

    func release(_ bytes: Int64, for user: UserID) {
        used.withLock { used in
            let left = used[user, default: 0] - bytes
            used[user] = left > 0 ? left : nil
        }
    }

    func usage(of user: UserID) -> Int64 { used.withLock { $0[user, default: 0] } }

    /// Starts from what the registry holds (at start-up, before requests are served).
    func load(stored: [UserID: Int64], uploads: [UploadState]) {
        used.withLock { used in
            used = stored
            for upload in uploads { used[upload.owner, default: 0] += upload.reservedBytes }
        }
    }
}

extension UploadState {
    /// What this upload counts against its owner's quota.
    var reservedBytes: Int64 { length ?? offset }
}
