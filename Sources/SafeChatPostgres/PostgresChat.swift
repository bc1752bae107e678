import Foundation
import Logging
import NIOCore
import PostgresNIO
import SafeChatAPI
import SafeChatGateway
import SealedFormat
import Synchronization

/// Live chat across gateways: this gateway's connections through a ``LocalChatBus``, and what
/// other gateways store brought in through PostgreSQL LISTEN/NOTIFY. A notification carries ids
/// only (`origin session seq`); the delivery itself is read from `chat_entries`, and only by a
/// gateway with a connection to that session. A session's entries are committed one at a time in
/// seq order (its head row is held until commit), and PostgreSQL delivers notifications in commit
/// order, so each gateway receives a session's deliveries in order.
///
/// Notifications are read in batches: whatever arrived while the previous batch was read is read
/// next, in one query. One query per notification fell behind at 1 000 messages/s, and a
/// delivery that waits behind others is late for every member on this gateway.
public final class PostgresChatBus: ChatBus {
    /// This gateway's name in notifications, so it skips its own (delivered locally at once).
    public let origin = Secrets.randomHex(8)
    static let channel = "safechat_chat"
    /// Ids waiting to be read past this many (the database far behind) are not taken: those
    /// deliveries stay in the queue, which their members receive when they reconnect.
    static let waitingLimit = 65_536
    static let batchLimit = 1_024
    let local = LocalChatBus()
    let database: PostgresDatabase
    private struct Waiting {
        var ids: [(session: SessionID, seq: Int64)] = []
        var reading = false
    }
    private let waiting = Mutex(Waiting())

    public init(database: PostgresDatabase) {
        self.database = database
        database.listen(on: Self.channel) { [weak self] payload in self?.received(payload) }
    }

    public func publish(_ entries: [ChatEntry]) async { await local.publish(entries) }

    public func subscribe(to session: SessionID, on eventLoop: any EventLoop,
                          deliver: @escaping @Sendable ([ChatEntry]) -> Void) -> ChatSubscription {
        local.subscribe(to: session, on: eventLoop, deliver: deliver)
    }

    private func received(_ payload: String) {
        let parts = payload.split(separator: " ")
        guard parts.count == 3, parts[0] != origin, let session = SessionID(String(parts[1])), let seq = Int64(parts[2]),
              local.hasSubscribers(session) else { return }
        let start = waiting.withLock { state in
            guard state.ids.count < Self.waitingLimit else { return false }
            state.ids.append((session, seq))
            defer { state.reading = true }
            return !state.reading
        }
        if start { Task { await self.readWaiting() } }
    }

    private func readWaiting() async {
        while true {
            let batch: [(session: SessionID, seq: Int64)] = waiting.withLock { state in
                let batch = Array(state.ids.prefix(Self.batchLimit))
                state.ids.removeFirst(batch.count)
                if batch.isEmpty { state.reading = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            // Deleted already means every recipient had it; unreadable now, the members here catch
            // up from the queue when they reconnect.
            do {
                let entries = try await PostgresChatQueue.entries(batch, in: database)
                if !entries.isEmpty { await local.publish(entries) }
            } catch {
                database.logger.warning("chat deliveries from other gateways not read (members get them when they reconnect)",
                                        metadata: ["count": "\(batch.count)", "error": "\(error)"])
            }
        }
    }
}

/// The offline queue in PostgreSQL (the ``ChatQueue`` of every gateway on the database): a row per
/// waiting delivery, a cursor per member and session (the seq they acknowledged, and how many
/// deliveries were dropped for them), and usage counters for the storage limits. A send is one call
/// of `safechat_chat_send` (schema step 6), committed before its sender is answered; acks are
/// gathered for a few milliseconds and recorded in one call of `safechat_chat_ack`, which deletes
/// at once what every recipient has. Expiry and the per-member queue bound are applied once a
/// second by one gateway of the cluster (`safechat_chat_maintain`, under the maintenance lock).
///
/// The storage limit in all is kept in 16 stripes (the usage rows `*0` … `*f`, a session's by the
/// first digit of its id), each allowed a sixteenth of it: sends in different sessions do not
/// queue behind one counter row, and the total can never pass the limit.
public struct PostgresChatQueue: ChatQueue {
    let database: PostgresDatabase
    let limits: ChatQueueLimits
    let bus: any ChatBus
    /// Written into notifications: the bus of the gateway that stored the entry.
    let origin: String
    static let maintenanceLock: Int64 = 0x5AFE_C4A7_0000_0002
    static let stripes = 16
    let acks = AckBatch()

    public init(database: PostgresDatabase, limits: ChatQueueLimits, bus: any ChatBus, origin: String) {
        self.database = database
        self.limits = limits
        self.bus = bus
        self.origin = origin
    }

    /// The usage row that counts `session`'s deliveries against the storage limit.
    static func stripe(of session: SessionID) -> String { "*" + session.value.prefix(1) }
    var stripeLimit: Int64 { Int64(limits.storageLimit / Self.stripes) }

    public func append(session: SessionID, message: ChatMessageWire?, file: ChatFileEvent?, recipients: [UserID], now: UInt64) async throws -> ChatEntry {
        // The record is kept without its seq (the row has it): it is made before the seq is.
        let unnumbered = ChatEntry(session: session, seq: 0, time: now, recipients: recipients, message: message, file: file)
        let record = String(decoding: try JSONEncoder().encode(unnumbered), as: UTF8.self)
        let accountLimit = limits.accountLimit, stripeLimit = self.stripeLimit
        let query: PostgresQuery = """
            SELECT safechat_chat_send(\(session.value), \(Int64(clamping: now)), \(unnumbered.owner?.value ?? ""), \(unnumbered.cost),
                                      \(recipients.map(\.value)), \(record), \(Int64(accountLimit)), \(Self.stripe(of: session)),
                                      \(stripeLimit), \(origin))
            """
        let seq = try await database.perform("store chat delivery") { client in
            do {
                var seq: Int64 = 0
                for try await value in try await client.query(query).decode(Int64.self) { seq = value }
                return seq
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "SC001" {
                throw ChatLogError.accountFull(limit: accountLimit)
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "SC002" {
                throw ChatLogError.full
            }
        }
        let entry = ChatEntry(session: session, seq: UInt64(seq), time: now, recipients: recipients, message: message, file: file)
        await bus.publish([entry])
        return entry
    }

    /// With `waitForDisk` false the ack joins the acks this gateway gathers for a few milliseconds
    /// and records in one call, committed without waiting for the server's disk (a crash of the
    /// database, or a call that fails, may forget the last moment's acks: their deliveries come
    /// again, and the next cumulative ack covers them).
    public func acknowledge(session: SessionID, user: UserID, upTo seq: UInt64, waitForDisk: Bool) async throws {
        guard waitForDisk else {
            acks.add(session: session, user: user, seq: seq, database: database)
            return
        }
        try await database.perform("record chat acknowledgement") { client in
            _ = try await client.query("""
                SELECT safechat_chat_ack(\([session.value]), \([user.value]), \([Int64(clamping: seq)]), true)
                """)
        }
    }

    public func backlog(session: SessionID, user: UserID) async throws -> (entries: [ChatEntry], dropped: UInt64) {
        // An ack of this member still gathering here is recorded first: what they have is not sent again.
        if let seq = acks.take(session: session, user: user) {
            try await acknowledge(session: session, user: user, upTo: seq, waitForDisk: true)
        }
        let logger = database.logger
        return try await database.transaction("read chat backlog") { connection in
            var entries: [ChatEntry] = []
            for try await (seq, record) in try await connection.query("""
                SELECT seq, record FROM chat_entries
                WHERE session = \(session.value) AND \(user.value) = ANY(recipients)
                  AND seq > coalesce((SELECT acked FROM chat_cursors WHERE session = \(session.value) AND user_id = \(user.value)), 0)
                ORDER BY seq
                """, logger: logger).decode((Int64, String).self) {
                entries.append(try Self.entry(record, seq: seq))
            }
            var dropped: Int64 = 0
            for try await count in try await connection.query("""
                WITH old AS (SELECT dropped FROM chat_cursors WHERE session = \(session.value) AND user_id = \(user.value) FOR UPDATE)
                UPDATE chat_cursors SET dropped = 0 FROM old
                WHERE chat_cursors.session = \(session.value) AND chat_cursors.user_id = \(user.value) AND old.dropped > 0
                RETURNING old.dropped
                """, logger: logger).decode(Int64.self) {
                dropped = count
            }
            return (entries, UInt64(max(0, dropped)))
        }
    }

    public func retain(members: Set<UserID>, of session: SessionID) async throws {
        let (gone, head) = try await database.perform("find former members' deliveries") { client in
            var gone: [String] = []
            for try await user in try await client.query("""
                SELECT DISTINCT m.user_id FROM chat_entries e CROSS JOIN unnest(e.recipients) AS m(user_id)
                LEFT JOIN chat_cursors k ON k.session = e.session AND k.user_id = m.user_id
                WHERE e.session = \(session.value) AND coalesce(k.acked, 0) < e.seq AND NOT (m.user_id = ANY(\(members.map(\.value))))
                """).decode(String.self) {
                gone.append(user)
            }
            var head: Int64 = 0
            for try await value in try await client.query("SELECT head FROM chat_heads WHERE session = \(session.value)").decode(Int64.self) {
                head = value
            }
            return (gone, head)
        }
        guard !gone.isEmpty else { return }
        try await database.perform("drop former members' deliveries") { client in
            _ = try await client.query("""
                SELECT safechat_chat_ack(\(gone.map { _ in session.value }), \(gone), \(gone.map { _ in head }), true)
                """)
        }
    }

    public func depth() async throws -> Int {
        try await database.perform("count the chat queue") { client in
            var count = 0
            for try await n in try await client.query("SELECT count(*) FROM chat_entries").decode(Int.self) { count = n }
            return count
        }
    }

    public func maintain(now: UInt64) async throws {
        let logger = database.logger, cutoff = Int64(clamping: now) - Int64(limits.retention * 1000), queueLimit = Int64(limits.queueLimit)
        try await database.transaction("maintain the chat queue") { connection in
            var mine = false
            for try await taken in try await connection.query("SELECT pg_try_advisory_xact_lock(\(Self.maintenanceLock))",
                                                              logger: logger).decode(Bool.self) {
                mine = taken
            }
            guard mine else { return }
            try await connection.query("SELECT safechat_chat_maintain(\(cutoff), \(queueLimit))", logger: logger)
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
                    INSERT INTO chat_entries (session, seq, time, owner, cost, recipients, record)
                    VALUES (\(entry.session.value), \(Int64(clamping: entry.seq)), \(Int64(clamping: entry.time)), \(entry.owner?.value ?? ""),
                            \(entry.cost), \(pending.map(\.value)), \(record))
                    ON CONFLICT (session, seq) DO NOTHING RETURNING 1
                    """, logger: logger).collect().count == 1
                guard inserted else { continue }
                imported += 1
                for row in [entry.owner?.value, stripe(of: entry.session)].compactMap({ $0 }) {
                    try await connection.query("""
                        INSERT INTO chat_usage (owner, bytes) VALUES (\(row), \(entry.cost))
                        ON CONFLICT (owner) DO UPDATE SET bytes = chat_usage.bytes + EXCLUDED.bytes
                        """, logger: logger)
                }
            }
            for (session, users) in export.dropped {
                for (user, count) in users {
                    try await connection.query("""
                        INSERT INTO chat_cursors (session, user_id, acked, dropped) VALUES (\(session.value), \(user.value), 0, \(Int64(clamping: count)))
                        ON CONFLICT (session, user_id) DO UPDATE SET dropped = greatest(chat_cursors.dropped, EXCLUDED.dropped)
                        """, logger: logger)
                }
            }
            return imported
        }
    }

    /// The delivery `seq` of `session`, if it still waits for someone.
    /// The entries `ids` name that are still stored, in the order of `ids`.
    static func entries(_ ids: [(session: SessionID, seq: Int64)], in database: PostgresDatabase) async throws -> [ChatEntry] {
        try await database.perform("read chat deliveries") { client in
            var entries: [ChatEntry] = []
            for try await (seq, record) in try await client.query("""
                SELECT e.seq, e.record FROM unnest(\(ids.map(\.session.value)), \(ids.map(\.seq))) WITH ORDINALITY AS w(session, seq, n)
                JOIN chat_entries e ON e.session = w.session AND e.seq = w.seq ORDER BY w.n
                """).decode((Int64, String).self) {
                entries.append(try Self.entry(record, seq: seq))
            }
            return entries
        }
    }

    /// A stored record, numbered by its row.
    private static func entry(_ record: String, seq: Int64) throws -> ChatEntry {
        let stored = try JSONDecoder().decode(ChatEntry.self, from: Data(record.utf8))
        return ChatEntry(session: stored.session, seq: UInt64(seq), time: stored.time, recipients: stored.recipients,
                         message: stored.message, file: stored.file)
    }
}

/// The acks a gateway gathers: the highest seq per member and session, recorded together every
/// few milliseconds (one call instead of one per ack frame, which at 1 000 connections was as
/// much work for the database as the sends).
final class AckBatch: Sendable {
    private struct Key: Hashable {
        let session: SessionID
        let user: UserID
    }
    private struct State {
        var pending: [Key: UInt64] = [:]
        var scheduled = false
    }
    private let state = Mutex(State())
    static let gathering: Duration = .milliseconds(5)

    /// Takes the ack waiting here for `user` in `session`, if any (a backlog read records it first).
    func take(session: SessionID, user: UserID) -> UInt64? {
        state.withLock { $0.pending.removeValue(forKey: Key(session: session, user: user)) }
    }

    func add(session: SessionID, user: UserID, seq: UInt64, database: PostgresDatabase) {
        let start = state.withLock { state in
            let key = Key(session: session, user: user)
            state.pending[key] = max(state.pending[key] ?? 0, seq)
            defer { state.scheduled = true }
            return !state.scheduled
        }
        guard start else { return }
        Task { await self.flush(database) }
    }

    private func flush(_ database: PostgresDatabase) async {
        while true {
            try? await Task.sleep(for: Self.gathering)
            let batch = state.withLock { state in
                defer { state.pending = [:] }
                if state.pending.isEmpty { state.scheduled = false }
                return state.pending
            }
            guard !batch.isEmpty else { return }
            let sorted = batch.sorted { ($0.key.session.value, $0.key.user.value) < ($1.key.session.value, $1.key.user.value) }
            let query: PostgresQuery = """
                SELECT safechat_chat_ack(\(sorted.map(\.key.session.value)), \(sorted.map(\.key.user.value)),
                                         \(sorted.map { Int64(clamping: $0.value) }), false)
                """
            do {
                try await database.perform("record chat acknowledgements") { client in _ = try await client.query(query) }
            } catch {
                database.logger.warning("chat acknowledgements not recorded (their deliveries may come again)",
                                        metadata: ["count": "\(sorted.count)", "error": "\(error)"])
            }
        }
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
