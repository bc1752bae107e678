import Foundation
import PostgresNIO
import SafeChatAPI
import SafeChatGateway
import SealedFormat

/// Sessions in PostgreSQL: a row per session (its summary: creator, epoch count, current members,
/// last hash, size) and a row per epoch document, as posted. Every gateway on the database sees an
/// epoch once it is committed: a member removed through one gateway is refused by all of them.
///
/// An epoch is stored in one transaction that holds the session's row (`FOR UPDATE`) while it
/// checks the epoch against the summary and inserts it: two epochs posted at once through two
/// gateways take turns, and the second, no longer the next, is refused with 409. A creation holds
/// an advisory lock on its creator, so the per-account limit holds across gateways.
public struct PostgresSessionStore: SessionStore {
    let database: PostgresDatabase
    let rules: EpochRules

    public init(database: PostgresDatabase, accounts: any AccountStore) {
        self.database = database
        rules = EpochRules(accountName: { try await accounts.name(of: $0) })
    }

    public func isMember(_ user: UserID, of session: SessionID) async throws -> Bool {
        try await database.perform("check membership") { client in
            try await client.query("SELECT 1 FROM sessions WHERE id = \(session.value) AND \(user.value) = ANY(members)").collect().count > 0
        }
    }

    public func summary(_ id: SessionID) async throws -> SessionSummary? {
        try await summaries("read session", "SELECT id, creator, epoch_count, members, last_hash, bytes FROM sessions WHERE id = \(id.value)").first
    }

    public func sessions(of user: UserID) async throws -> [SessionSummary] {
        try await summaries("list sessions", """
            SELECT id, creator, epoch_count, members, last_hash, bytes FROM sessions WHERE \(user.value) = ANY(members) ORDER BY id
            """)
    }

    public func epochDocument(_ id: SessionID, number: Int) async throws -> Data? {
        try await database.perform("read epoch") { client in
            var document: Data?
            for try await bytes in try await client.query(
                "SELECT document FROM session_epochs WHERE session_id = \(id.value) AND epoch = \(number)").decode(ByteBuffer.self) {
                document = Data(buffer: bytes)
            }
            return document
        }
    }

    public func create(_ epoch: EpochWire, encodedBytes: Int, by creator: UserID) async throws -> SessionSummary {
        let id = try EpochRules.newSessionID(epoch)
        // Checked before the transaction: the checks ask the accounts, on a connection of their own.
        let summary = try await rules.first(epoch, session: id, encodedBytes: encodedBytes, by: creator)
        let document = try WireCoding.encoder.encode(epoch)
        let logger = database.logger
        return try await database.transaction("create session") { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresDatabase.advisoryKey(creator.value)))", logger: logger)
            var count = 0
            for try await n in try await connection.query("SELECT count(*)::bigint FROM sessions WHERE creator = \(creator.value)",
                                                          logger: logger).decode(Int.self) {
                count = n
            }
            guard count < SessionLimits.sessionsPerAccount else { throw EpochRules.tooManySessions }
            let inserted = try await connection.query("""
                INSERT INTO sessions (id, creator, epoch_count, members, last_hash, bytes)
                VALUES (\(id.value), \(creator.value), 1, \(summary.members.map(\.value).sorted()), \(ByteBuffer(bytes: summary.lastHash)),
                        \(summary.bytes))
                ON CONFLICT (id) DO NOTHING RETURNING 1
                """, logger: logger).collect().count
            guard inserted == 1 else { throw EpochRules.sessionExists }
            try await connection.query("""
                INSERT INTO session_epochs (session_id, epoch, document) VALUES (\(id.value), 0, \(ByteBuffer(data: document)))
                """, logger: logger)
            return summary
        }
    }

    public func append(_ epoch: EpochWire, encodedBytes: Int, to id: SessionID, by poster: UserID) async throws -> SessionSummary {
        let document = try WireCoding.encoder.encode(epoch)
        let logger = database.logger, rules = self.rules
        return try await database.transaction("add epoch") { connection in
            var current: SessionSummary?
            for try await row in try await connection.query("""
                SELECT id, creator, epoch_count, members, last_hash, bytes FROM sessions WHERE id = \(id.value) FOR UPDATE
                """, logger: logger).decode(SummaryRow.self) {
                current = Self.summary(row)
            }
            guard let current else { throw GatewayError(.notFound, .notFound, "session not found") }
            let updated = try await rules.next(epoch, after: current, encodedBytes: encodedBytes, by: poster)
            try await connection.query("""
                INSERT INTO session_epochs (session_id, epoch, document)
                VALUES (\(id.value), \(updated.epochCount - 1), \(ByteBuffer(data: document)))
                """, logger: logger)
            try await connection.query("""
                UPDATE sessions SET epoch_count = \(updated.epochCount), members = \(updated.members.map(\.value).sorted()),
                    last_hash = \(ByteBuffer(bytes: updated.lastHash)), bytes = \(updated.bytes)
                WHERE id = \(id.value)
                """, logger: logger)
            return updated
        }
    }

    /// A session's chain and summary as another store kept them, for `migrate --from-data-dir`;
    /// false (and nothing changes) if the database has it already.
    func importSession(_ chain: [Data], summary: SessionSummary) async throws -> Bool {
        let logger = database.logger
        return try await database.transaction("import session") { connection in
            let inserted = try await connection.query("""
                INSERT INTO sessions (id, creator, epoch_count, members, last_hash, bytes)
                VALUES (\(summary.sessionID.value), \(summary.creator.value), \(summary.epochCount), \(summary.members.map(\.value).sorted()),
                        \(ByteBuffer(bytes: summary.lastHash)), \(summary.bytes))
                ON CONFLICT (id) DO NOTHING RETURNING 1
                """, logger: logger).collect().count
            guard inserted == 1 else { return false }
            for (number, document) in chain.enumerated() {
                try await connection.query("""
                    INSERT INTO session_epochs (session_id, epoch, document) VALUES (\(summary.sessionID.value), \(number), \(ByteBuffer(data: document)))
                    """, logger: logger)
            }
            return true
        }
    }

    private typealias SummaryRow = (String, String, Int, [String], ByteBuffer, Int)

    private static func summary(_ row: SummaryRow) -> SessionSummary? {
        guard let id = SessionID(row.0), let creator = UserID(row.1) else { return nil }
        return SessionSummary(sessionID: id, creator: creator, epochCount: row.2, members: Set(row.3.compactMap { UserID($0) }),
                              lastHash: Array(buffer: row.4), bytes: row.5)
    }

    private func summaries(_ what: String, _ query: PostgresQuery) async throws -> [SessionSummary] {
        try await database.perform(what) { client in
            var out: [SessionSummary] = []
            for try await row in try await client.query(query).decode(SummaryRow.self) {
                if let summary = Self.summary(row) { out.append(summary) }
            }
            return out
        }
    }
}
