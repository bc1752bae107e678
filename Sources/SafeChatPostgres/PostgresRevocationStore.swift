import Foundation
import PostgresNIO
import SafeChatAPI
import SafeChatGateway

/// Tokens logged out one by one, in PostgreSQL: a token revoked through any gateway is refused by
/// every gateway at its next request (each token check reads this table), and the chat sockets it
/// opened close at the next audit of open connections, wherever they are.
public struct PostgresRevocationStore: RevocationStore {
    let database: PostgresDatabase
    let perAccount: Int
    let clock: @Sendable () -> Date

    public init(database: PostgresDatabase, perAccount: Int = TokenRevocations.defaultPerAccount,
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.perAccount = perAccount
        self.clock = clock
    }

    public func isRevoked(_ id: String) async throws -> Bool {
        try await database.perform("check revocation") { client in
            try await client.query("SELECT 1 FROM token_revocations WHERE id = \(id)").collect().count > 0
        }
    }

    public func revoke(_ id: String, of user: UserID, expires: Date) async throws -> Bool {
        let now = clock(), perAccount = self.perAccount, logger = database.logger
        return try await database.transaction("revoke token") { connection in
            // One revocation of an account at a time, on every gateway, so the bound holds.
            try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresDatabase.advisoryKey(user.value)))", logger: logger)
            try await connection.query("DELETE FROM token_revocations WHERE expires <= \(now)", logger: logger)
            var pending = 0
            for try await count in try await connection.query(
                "SELECT count(*)::bigint FROM token_revocations WHERE user_id = \(user.description)", logger: logger).decode(Int.self) {
                pending = count
            }
            guard pending < perAccount else { return false }
            try await connection.query("""
                INSERT INTO token_revocations (id, user_id, expires) VALUES (\(id), \(user.description), \(expires))
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
            return true
        }
    }
}
