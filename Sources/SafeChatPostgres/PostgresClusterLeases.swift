import Foundation
import PostgresNIO
import SafeChatGateway
import SealedFormat

/// Leases on background work as session-level advisory locks, taken with `pg_try_advisory_lock` on
/// this gateway's own connection (the one upload locks use) and released when the work ends. A
/// gateway that dies mid-work loses its connection, and with it the lease: the next round runs
/// on another gateway. (Within one gateway, each kind of work runs from one loop: the same
/// connection taking its own lock twice would be granted it.)
public struct PostgresClusterLeases: ClusterLeases {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    public func runAlone(_ name: String, _ body: @Sendable () async throws -> Void) async throws -> Bool {
        let key = PostgresDatabase.advisoryKey(Secrets.hex(SHA256Hasher.hash(Array("safechat lease \(name)".utf8))))
        let logger = database.logger
        let connection = try await database.lockConnection.get()
        let taken = try await database.perform("take lease on \(name)") { _ in
            var taken = false
            for try await value in try await connection.query("SELECT pg_try_advisory_lock(\(key))", logger: logger).decode(Bool.self) {
                taken = value
            }
            return taken
        }
        guard taken else { return false }
        let release: @Sendable () async -> Void = {
            _ = try? await database.perform("release lease on \(name)") { _ in
                _ = try await connection.query("SELECT pg_advisory_unlock(\(key))", logger: logger)
            }
        }
        do {
            try await body()
        } catch {
            await release()
            throw error
        }
        await release()
        return true
    }
}
