import Foundation
import Logging
import NIOCore
import PostgresNIO
import SafeChatAPI
import SafeChatGateway
import SealedFormat

/// Live chat across gateways: this gateway's connections through a ``LocalChatBus``, and what
/// other gateways store brought in through PostgreSQL LISTEN/NOTIFY. A notification carries ids
/// only (`origin session seq`); the delivery itself is read from `chat_entries`, and only by a
/// gateway with a connection to that session. A session's entries are committed one at a time in
/// seq order (its head row is held until commit), and PostgreSQL delivers notifications in commit
/// order, so each gateway receives a session's deliveries in order.
public final class PostgresChatBus: ChatBus {
    /// This gateway's name in notifications, so it skips its own (delivered locally at once).
    public let origin = Secrets.randomHex(8)
    static let channel = "safechat_chat"
    let local = LocalChatBus()
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
        database.listen(on: Self.channel) { [weak self] payload in await self?.received(payload) }
    }

    public func publish(_ entries: [ChatEntry]) async { await local.publish(entries) }

    public func subscribe(to session: SessionID, on eventLoop: any EventLoop,
                          deliver: @escaping @Sendable ([ChatEntry]) -> Void) -> ChatSubscription {
        local.subscribe(to: session, on: eventLoop, deliver: deliver)
    }

    private func received(_ payload: String) async {
        let parts = payload.split(separator: " ")
        guard parts.count == 3, parts[0] != origin, let session = SessionID(String(parts[1])), let seq = Int64(parts[2]),
              local.hasSubscribers(session) else { return }
        // Deleted already means every recipient had it; unreadable now, the members here catch up
        // from the queue when they reconnect.
        guard let entry = try? await PostgresChatQueue.entry(session, seq, in: database) else { return }
        await local.publish([entry])
    }
}

/// The offline queue in PostgreSQL (the ``ChatQueue`` of every gateway on the database): a row per
/// waiting delivery with the recipients who have not acknowledged it yet (`pending`), a row per
/// member and session counting what waits for them and what was dropped, and usage counters for
/// the storage limits. A send is committed before its sender is answered; a delivery's row is
/// deleted once its last recipient acknowledges it. Expiry runs once per cluster: whichever
/// gateway takes the maintenance lock first that second.
public struct PostgresChatQueue: ChatQueue {
    let database: PostgresDatabase
    let limits: ChatQueueLimits
    let bus: any ChatBus
    /// Written into notifications: the bus of the gateway that stored the entry.
    let origin: String
    static let maintenanceLock: Int64 = 0x5AFE_C4A7_0000_0002

    public init(database: PostgresDatabase, limits: ChatQueueLimits, bus: any ChatBus, origin: String) {
        self.database = database
        self.limits = limits
        self.bus = bus
        self.origin = origin
    }

    public func append(session: SessionID, message: ChatMessageWire?, file: ChatFileEvent?, recipients: [UserID], now: UInt64) async throws -> ChatEntry {
        let logger = database.logger, limits = self.limits, origin = self.origin
        let entry = try await database.transaction("store chat delivery") { connection in
            // Taking the next seq holds the session's head row until commit: one send per session at a time.
            var seq: Int64 = 0
            for try await head in try await connection.query("""
                INSERT INTO chat_heads (session, head) VALUES (\(session.value), 1)
                ON CONFLICT (session) DO UPDATE SET head = chat_heads.head + 1 RETURNING head
                """, logger: logger).decode(Int64.self) {
                seq = head
            }
            let entry = ChatEntry(session: session, seq: UInt64(seq), time: now, recipients: recipients, message: message, file: file)
            guard !recipients.isEmpty else { return entry }
            let cost = entry.cost
            if let owner = entry.owner, try await !Self.add(cost, to: owner.value, limit: limits.accountLimit, on: connection, logger: logger) {
                throw ChatLogError.accountFull(limit: limits.accountLimit)
            }
            guard try await Self.add(cost, to: "", limit: limits.storageLimit, on: connection, logger: logger) else { throw ChatLogError.full }
            let record = String(decoding: try JSONEncoder().encode(entry), as: UTF8.self)
            try await connection.query("""
                INSERT INTO chat_entries (session, seq, time, owner, cost, pending, record)
                VALUES (\(session.value), \(seq), \(Int64(now)), \(entry.owner?.value ?? ""), \(cost), \(recipients.map(\.value)), \(record))
                """, logger: logger)
            var over: [String] = []
            for try await (user, waiting) in try await connection.query("""
                INSERT INTO chat_waiting (session, user_id, waiting, dropped) SELECT \(session.value), unnest(\(recipients.map(\.value))), 1, 0
                ON CONFLICT (session, user_id) DO UPDATE SET waiting = chat_waiting.waiting + 1 RETURNING user_id, waiting
                """, logger: logger).decode((String, Int).self) where waiting > limits.queueLimit {
                over.append(user)
            }
            for user in over { try await Self.dropOldest(for: user, in: session, on: connection, logger: logger) }
            if !over.isEmpty { try await Self.collect(session, on: connection, logger: logger) }
            try await connection.query("SELECT pg_notify(\(PostgresChatBus.channel), \("\(origin) \(session.value) \(seq)"))", logger: logger)
            return entry
        }
        await bus.publish([entry])
        return entry
    }

    public func acknowledge(session: SessionID, user: UserID, upTo seq: UInt64, waitForDisk: Bool) async throws {
        let logger = database.logger
        try await database.transaction("record chat acknowledgement") { connection in
            try await Self.acknowledge(session, user.value, upTo: Int64(clamping: seq), on: connection, logger: logger)
        }
    }

    public func backlog(session: SessionID, user: UserID) async throws -> (entries: [ChatEntry], dropped: UInt64) {
        let logger = database.logger
        return try await database.transaction("read chat backlog") { connection in
            var entries: [ChatEntry] = []
            for try await record in try await connection.query("""
                SELECT record FROM chat_entries WHERE session = \(session.value) AND \(user.value) = ANY(pending) ORDER BY seq
                """, logger: logger).decode(String.self) {
                entries.append(try JSONDecoder().decode(ChatEntry.self, from: Data(record.utf8)))
            }
            var dropped: Int64 = 0
            for try await count in try await connection.query("""
                WITH old AS (SELECT dropped FROM chat_waiting WHERE session = \(session.value) AND user_id = \(user.value) FOR UPDATE)
                UPDATE chat_waiting SET dropped = 0 FROM old
                WHERE chat_waiting.session = \(session.value) AND chat_waiting.user_id = \(user.value) RETURNING old.dropped
                """, logger: logger).decode(Int64.self) {
                dropped = count
            }
            return (entries, UInt64(max(0, dropped)))
        }
    }

    public func retain(members: Set<UserID>, of session: SessionID) async throws {
        let logger = database.logger
        try await database.transaction("drop chat deliveries of former members") { connection in
            var gone: [String] = []
            for try await user in try await connection.query("""
                SELECT user_id FROM chat_waiting WHERE session = \(session.value) AND waiting > 0 AND NOT (user_id = ANY(\(members.map(\.value))))
                """, logger: logger).decode(String.self) {
                gone.append(user)
            }
            for user in gone { try await Self.acknowledge(session, user, upTo: Int64.max, on: connection, logger: logger) }
        }
    }

    public func maintain(now: UInt64) async throws {
        let logger = database.logger, cutoff = Int64(clamping: now) - Int64(limits.retention * 1000)
        try await database.transaction("expire chat deliveries") { connection in
            var mine = false
            for try await taken in try await connection.query("SELECT pg_try_advisory_xact_lock(\(Self.maintenanceLock))",
                                                              logger: logger).decode(Bool.self) {
                mine = taken
            }
            guard mine else { return }
            var expired: [(String, String, Int, [String])] = []
            for try await row in try await connection.query("""
                DELETE FROM chat_entries WHERE time < \(cutoff) RETURNING session, owner, cost, pending
                """, logger: logger).decode((String, String, Int, [String]).self) {
                expired.append(row)
            }
            for (session, _, _, pending) in expired where !pending.isEmpty {
                try await connection.query("""
                    UPDATE chat_waiting SET waiting = greatest(waiting - 1, 0), dropped = dropped + 1
                    WHERE session = \(session) AND user_id = ANY(\(pending))
                    """, logger: logger)
            }
            var freed: [String: Int] = [:]
            for (_, owner, cost, _) in expired {
                freed[owner, default: 0] += cost
                if !owner.isEmpty { freed["", default: 0] += cost }
            }
            try await Self.release(freed, on: connection, logger: logger)
            try await connection.query("DELETE FROM chat_tickets WHERE expires < now()", logger: logger)
        }
    }

    /// Copies what waits in another store (`migrate --from-data-dir`), idempotently: a delivery
    /// already here is skipped, and counts only once.
    static func importQueue(_ export: ChatQueueExport, into database: PostgresDatabase) async throws -> Int {
        let logger = database.logger
        return try await database.transaction("import chat queue") { connection in
            for (session, head) in export.heads.sorted(by: { $0.key.value < $1.key.value }) {
                try await connection.query("""
                    INSERT INTO chat_heads (session, head) VALUES (\(session.value), \(Int64(clamping: head)))
                    ON CONFLICT (session) DO UPDATE SET head = greatest(chat_heads.head, EXCLUDED.head)
                    """, logger: logger)
            }
            var imported = 0
            for (entry, pending) in export.entries {
                let record = String(decoding: try JSONEncoder().encode(entry), as: UTF8.self)
                let inserted = try await connection.query("""
                    INSERT INTO chat_entries (session, seq, time, owner, cost, pending, record)
                    VALUES (\(entry.session.value), \(Int64(clamping: entry.seq)), \(Int64(clamping: entry.time)), \(entry.owner?.value ?? ""),
                            \(entry.cost), \(pending.map(\.value)), \(record))
                    ON CONFLICT (session, seq) DO NOTHING RETURNING 1
                    """, logger: logger).collect().count == 1
                guard inserted else { continue }
                imported += 1
                for owner in [entry.owner?.value, ""].compactMap({ $0 }) {
                    try await connection.query("""
                        INSERT INTO chat_usage (owner, bytes) VALUES (\(owner), \(entry.cost))
                        ON CONFLICT (owner) DO UPDATE SET bytes = chat_usage.bytes + EXCLUDED.bytes
                        """, logger: logger)
                }
                try await connection.query("""
                    INSERT INTO chat_waiting (session, user_id, waiting, dropped) SELECT \(entry.session.value), unnest(\(pending.map(\.value))), 1, 0
                    ON CONFLICT (session, user_id) DO UPDATE SET waiting = chat_waiting.waiting + 1
                    """, logger: logger)
            }
            for (session, users) in export.dropped {
                for (user, count) in users {
                    try await connection.query("""
                        INSERT INTO chat_waiting (session, user_id, waiting, dropped) VALUES (\(session.value), \(user.value), 0, \(Int64(clamping: count)))
                        ON CONFLICT (session, user_id) DO UPDATE SET dropped = greatest(chat_waiting.dropped, EXCLUDED.dropped)
                        """, logger: logger)
                }
            }
            return imported
        }
    }

    // MARK: - Within a transaction

    /// The delivery `seq` of `session`, if it still waits for someone.
    static func entry(_ session: SessionID, _ seq: Int64, in database: PostgresDatabase) async throws -> ChatEntry? {
        try await database.perform("read chat delivery") { client in
            var entry: ChatEntry?
            for try await record in try await client.query(
                "SELECT record FROM chat_entries WHERE session = \(session.value) AND seq = \(seq)").decode(String.self) {
                entry = try JSONDecoder().decode(ChatEntry.self, from: Data(record.utf8))
            }
            return entry
        }
    }

    /// Adds `cost` to a usage counter (`""`: everything stored) if it stays within `limit`.
    private static func add(_ cost: Int, to owner: String, limit: Int, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        guard cost <= limit else { return false }
        return try await connection.query("""
            INSERT INTO chat_usage (owner, bytes) VALUES (\(owner), \(cost))
            ON CONFLICT (owner) DO UPDATE SET bytes = chat_usage.bytes + EXCLUDED.bytes
            WHERE chat_usage.bytes + EXCLUDED.bytes <= \(limit) RETURNING bytes
            """, logger: logger).collect().count == 1
    }

    private static func release(_ freed: [String: Int], on connection: PostgresConnection, logger: Logger) async throws {
        for (owner, bytes) in freed.sorted(by: { $0.key < $1.key }) where bytes > 0 {
            try await connection.query("UPDATE chat_usage SET bytes = greatest(bytes - \(bytes), 0) WHERE owner = \(owner)", logger: logger)
        }
    }

    private static func acknowledge(_ session: SessionID, _ user: String, upTo seq: Int64, on connection: PostgresConnection,
                                    logger: Logger) async throws {
        let count = try await connection.query("""
            UPDATE chat_entries SET pending = array_remove(pending, \(user))
            WHERE session = \(session.value) AND seq <= \(seq) AND \(user) = ANY(pending) RETURNING seq
            """, logger: logger).collect().count
        guard count > 0 else { return }
        try await connection.query("""
            UPDATE chat_waiting SET waiting = greatest(waiting - \(count), 0) WHERE session = \(session.value) AND user_id = \(user)
            """, logger: logger)
        try await collect(session, on: connection, logger: logger)
    }

    /// The oldest delivery waiting for `user` is dropped for them (their queue is over its bound).
    private static func dropOldest(for user: String, in session: SessionID, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            UPDATE chat_entries SET pending = array_remove(pending, \(user))
            WHERE session = \(session.value)
              AND seq = (SELECT min(seq) FROM chat_entries WHERE session = \(session.value) AND \(user) = ANY(pending))
            """, logger: logger)
        try await connection.query("""
            UPDATE chat_waiting SET waiting = waiting - 1, dropped = dropped + 1 WHERE session = \(session.value) AND user_id = \(user)
            """, logger: logger)
    }

    /// Deletes the deliveries of `session` every recipient has, and gives back what they counted.
    private static func collect(_ session: SessionID, on connection: PostgresConnection, logger: Logger) async throws {
        var freed: [String: Int] = [:]
        for try await (owner, cost) in try await connection.query("""
            DELETE FROM chat_entries WHERE session = \(session.value) AND cardinality(pending) = 0 RETURNING owner, cost
            """, logger: logger).decode((String, Int).self) {
            freed[owner, default: 0] += cost
            if !owner.isEmpty { freed["", default: 0] += cost }
        }
        try await release(freed, on: connection, logger: logger)
    }
}

/// Browsers' WebSocket tickets in PostgreSQL: issued through one gateway, redeemed once through
/// any. Kept by their SHA-256, as in memory; a redemption deletes the row, so a second one (on
/// any gateway) finds nothing.
public struct PostgresChatTickets: ChatTicketStore {
    let database: PostgresDatabase
    /// Outstanding tickets per account, as ``ChatTickets`` keeps them.
    static let perAccount = 16

    public init(database: PostgresDatabase) {
        self.database = database
    }

    public func issue(for token: TokenClaims, now: Date) async throws -> String {
        let ticket = Secrets.randomHex(32), key = ChatTickets.key(ticket), logger = database.logger
        let expires = now.addingTimeInterval(ChatTickets.lifetime)
        try await database.transaction("issue chat ticket") { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresDatabase.advisoryKey(token.user.value)))", logger: logger)
            try await connection.query("""
                DELETE FROM chat_tickets WHERE user_id = \(token.user.value)
                  AND (expires <= \(now) OR key NOT IN (SELECT key FROM chat_tickets WHERE user_id = \(token.user.value) AND expires > \(now)
                                                        ORDER BY expires DESC LIMIT \(Self.perAccount - 1)))
                """, logger: logger)
            try await connection.query("""
                INSERT INTO chat_tickets (key, user_id, generation, token_id, token_expires, expires)
                VALUES (\(key), \(token.user.value), \(token.generation), \(token.id), \(token.expires), \(expires))
                """, logger: logger)
        }
        return ticket
    }

    public func redeem(_ ticket: String, now: Date) async throws -> TokenClaims? {
        guard ticket.utf8.count == 64 else { return nil }
        let key = ChatTickets.key(ticket)
        return try await database.perform("redeem chat ticket") { client in
            var claims: TokenClaims?
            for try await (user, generation, id, tokenExpires, expires) in try await client.query("""
                DELETE FROM chat_tickets WHERE key = \(key) RETURNING user_id, generation, token_id, token_expires, expires
                """).decode((String, Int, String?, Date, Date).self) where expires > now {
                claims = UserID(user).map { TokenClaims(user: $0, generation: generation, id: id, expires: tokenExpires) }
            }
            return claims
        }
    }
}
