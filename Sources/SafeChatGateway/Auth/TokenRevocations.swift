import Foundation
import SafeChatAPI
import SealedFormat
import Synchronization

/// Tokens revoked one by one (POST /logout), until they would have expired anyway. The routes see
/// only this protocol: ``TokenRevocations`` keeps them in the data directory, a server-grade
/// backend (SafeChatPostgres) in a database every gateway checks.
///
/// Each account keeps at most a bounded number of revocations: one that logs out more often than
/// that within a token's lifetime has all its tokens revoked instead (its token generation moves
/// on), so no account can grow the list without bound.
public protocol RevocationStore: Sendable {
    /// Whether the token with this id was revoked.
    func isRevoked(_ id: String) async throws -> Bool
    /// Revokes the token `id` of `user` (durably, before this returns). Returns false if the
    /// account already has its bound of revocations pending: the caller revokes all its tokens.
    func revoke(_ id: String, of user: UserID, expires: Date) async throws -> Bool
}

/// The embedded ``RevocationStore``: `revoked-tokens.json` in the data directory (0600, rewritten atomically), and a set in memory
/// that every authenticated request checks without waiting.
///
/// Each account keeps at most ``perAccount`` (1000) revocations: one that logs out more often than that
/// within a token's lifetime has all its tokens revoked instead (its token generation moves on), so
/// no account can grow this list without bound.
public actor TokenRevocations: RevocationStore {
    struct Entry: Codable, Sendable {
        let id: String
        let user: UserID
        let expires: Date
    }
    struct File: Codable { var revoked: [Entry] }

    public static let defaultPerAccount = 1000
    let perAccount: Int
    private let path: String
    private let clock: @Sendable () -> Date
    private var entries: [Entry]
    private nonisolated let ids: Mutex<Set<String>>

    public init(path: String, perAccount: Int = defaultPerAccount, clock: @escaping @Sendable () -> Date = { Date() }) throws {
        self.path = path
        self.perAccount = perAccount
        self.clock = clock
        if let data = FileManager.default.contents(atPath: path) {
            guard let file = try? WireCoding.decoder.decode(File.self, from: data) else {
                throw FileError(path: path, operation: "read revoked tokens (not the expected JSON; restore it or move it away)", errno: EINVAL)
            }
            entries = file.revoked
        } else {
            entries = []
        }
        ids = Mutex(Set(entries.map(\.id)))
    }

    public nonisolated func isRevoked(_ id: String) -> Bool { ids.withLock { $0.contains(id) } }

    public func revoke(_ id: String, of user: UserID, expires: Date) async throws -> Bool {
        let now = clock()
        entries.removeAll { $0.expires <= now }
        guard entries.filter({ $0.user == user }).count < perAccount else { return false }
        entries.append(Entry(id: id, user: user, expires: expires))
        let data = try WireCoding.encoder.encode(File(revoked: entries))
        try await blockingIO { [path] in
            let writer = try AtomicFileWriter(destination: path, permissions: 0o600)
            try writer.write(Array(data))
            try writer.commit()
        }
        let current = Set(entries.map(\.id))
        ids.withLock { $0 = current }
        return true
    }
}
