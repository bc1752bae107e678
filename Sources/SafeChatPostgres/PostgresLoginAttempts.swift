import Foundation
import PostgresNIO
import SafeChatGateway
import SealedFormat

/// The login throttle's counts in PostgreSQL, so that guesses spread over many gateways count
/// together. Keys (an account name, a client address) are stored as SHA-256 hashes: the database
/// learns neither the names people mistype nor their addresses. Each attempt is decided in one
/// transaction holding the keys' advisory locks, so concurrent guesses on any gateways get at most
/// ``LoginAdmission/freeFailures`` through, as with one gateway.
public struct PostgresLoginAttempts: LoginAttempts {
    let database: PostgresDatabase
    let clock: @Sendable () -> Date

    public init(database: PostgresDatabase, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.clock = clock
    }

    static func hashed(_ keys: [String]) -> [String] {
        keys.map { Secrets.hex(SHA256Hasher.hash(Array($0.utf8))) }
    }

    public func begin(_ keys: [String]) async throws -> LoginAdmission {
        let keys = Self.hashed(keys), now = clock(), logger = database.logger
        return try await database.transaction("count login attempt") { connection in
            // Locks in one order on every gateway: no deadlock between two logins.
            for key in keys.sorted() {
                try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresDatabase.advisoryKey(key)))", logger: logger)
            }
            var lockedUntil: Date?
            for try await until in try await connection.query(
                "SELECT max(locked_until) FROM login_attempts WHERE key = ANY(\(keys))", logger: logger).decode(Date?.self) {
                lockedUntil = until
            }
            if let lockedUntil, lockedUntil > now {
                return .refused(Int(lockedUntil.timeIntervalSince(now).rounded(.up)))
            }
            for key in keys {
                var attempts = 0
                for try await count in try await connection.query("""
                    INSERT INTO login_attempts (key, attempts, locked_until, updated_at) VALUES (\(key), 1, \(now), \(now))
                    ON CONFLICT (key) DO UPDATE SET attempts = login_attempts.attempts + 1, updated_at = \(now)
                    RETURNING attempts
                    """, logger: logger).decode(Int.self) {
                    attempts = count
                }
                if attempts >= LoginAdmission.freeFailures {
                    let until = now.addingTimeInterval(LoginAdmission.lock(after: attempts))
                    try await connection.query("UPDATE login_attempts SET locked_until = \(until) WHERE key = \(key)", logger: logger)
                }
            }
            // Counts nobody touched for a day are forgotten, as locks never exceed 15 minutes.
            try await connection.query("DELETE FROM login_attempts WHERE updated_at < \(now.addingTimeInterval(-86_400))", logger: logger)
            return .admitted
        }
    }

    public func succeeded(_ keys: [String]) async throws {
        let keys = Self.hashed(keys), logger = database.logger
        guard let account = keys.first else { return }
        let others = Array(keys.dropFirst())
        try await database.transaction("clear login attempts") { connection in
            try await connection.query("DELETE FROM login_attempts WHERE key = \(account)", logger: logger)
            try await connection.query("""
                UPDATE login_attempts SET attempts = attempts - 1,
                    locked_until = CASE WHEN attempts - 1 < \(LoginAdmission.freeFailures) THEN '-infinity'::timestamptz ELSE locked_until END
                WHERE key = ANY(\(others))
                """, logger: logger)
            try await connection.query("DELETE FROM login_attempts WHERE key = ANY(\(others)) AND attempts <= 0", logger: logger)
        }
    }
}
