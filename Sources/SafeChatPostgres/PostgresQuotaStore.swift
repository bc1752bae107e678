import Foundation
import PostgresNIO
import SafeChatAPI
import SafeChatGateway

/// Each user's storage counted in PostgreSQL, so that uploads of one user spread over many
/// gateways stop at one quota: a reservation is one conditional `UPDATE` of the user's row, which
/// PostgreSQL applies one at a time per row.
///
/// The counts are made once, from the registry, by the first gateway to start on the database (or
/// the first after `safechat migrate --from-data-dir`), and kept up to date by every gateway from
/// then on. What a crash interrupts can only leave a user counted for more than they hold (a
/// reservation whose upload was never recorded, a release never made), never less.
public struct PostgresQuotaStore: QuotaStore {
    let database: PostgresDatabase
    let quota: Int64
    static let countLock: Int64 = 0x5AFE_C4A7_0000_0003

    public init(database: PostgresDatabase, quota: Int64) {
        self.database = database
        self.quota = quota
    }

    public func reserve(_ bytes: Int64, for user: UserID) async throws -> Bool {
        guard bytes <= quota else { return false }
        let quota = self.quota
        return try await database.perform("reserve quota") { client in
            try await client.query("""
                INSERT INTO quota_usage (owner, bytes) VALUES (\(user.value), \(bytes))
                ON CONFLICT (owner) DO UPDATE SET bytes = quota_usage.bytes + EXCLUDED.bytes
                WHERE quota_usage.bytes + EXCLUDED.bytes <= \(quota) RETURNING bytes
                """).collect().count == 1
        }
    }

    public func release(_ bytes: Int64, for user: UserID) async {
        guard bytes > 0 else { return }
        do {
            try await database.perform("release quota") { client in
                _ = try await client.query("UPDATE quota_usage SET bytes = greatest(bytes - \(bytes), 0) WHERE owner = \(user.value)")
            }
        } catch {
            database.logger.warning("quota not released (the user stays counted for more until the next count)",
                                    metadata: ["error": "\(error)"])
        }
    }

    public func usage(of user: UserID) async throws -> Int64 {
        try await database.perform("read quota") { client in
            var bytes: Int64 = 0
            for try await value in try await client.query("SELECT bytes FROM quota_usage WHERE owner = \(user.value)").decode(Int64.self) {
                bytes = value
            }
            return bytes
        }
    }

    /// Counts from the registry only if no gateway has since the database was made (or imported
    /// into): later gateways find the counts their peers keep.
    public func load(stored: [UserID: Int64], uploads: [UploadState]) async throws {
        var counts = stored
        for upload in uploads { counts[upload.owner, default: 0] += upload.reservedBytes }
        let logger = database.logger, counted = counts
        try await database.transaction("count quotas") { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.countLock))", logger: logger)
            let first = try await connection.query("INSERT INTO quota_counted (id) VALUES (1) ON CONFLICT DO NOTHING RETURNING id",
                                                   logger: logger).collect().count == 1
            guard first else { return }
            try await connection.query("DELETE FROM quota_usage", logger: logger)
            for (owner, bytes) in counted where bytes > 0 {
                try await connection.query("INSERT INTO quota_usage (owner, bytes) VALUES (\(owner.value), \(bytes))", logger: logger)
            }
        }
    }
}
