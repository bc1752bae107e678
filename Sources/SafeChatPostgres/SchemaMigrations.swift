import Foundation
import PostgresNIO
import SafeChatGateway

/// The schema, as numbered steps applied in order and recorded in `safechat_schema`. Gateways
/// starting together (and `safechat migrate`) take one advisory lock around the whole check, so
/// each step runs once; each step runs in its own transaction, so a crash leaves the schema at a
/// step's boundary. Steps are only ever added: a released step never changes.
public enum SchemaMigrations {
    public struct Step: Sendable {
        public let version: Int
        public let summary: String
        let statements: [String]
    }

    /// Held for the migration's duration: session-level, so it is released if the holder dies.
    static let lockKey: Int64 = 0x5AFE_C4A7_0000_0001

    public static let steps: [Step] = [
        Step(version: 1, summary: "file registry: files, uploads in progress, identity bundles", statements: [
            """
            CREATE TABLE files (
                id text PRIMARY KEY,
                owner text NOT NULL,
                session text,
                created_at timestamptz NOT NULL,
                record jsonb NOT NULL)
            """,
            "CREATE INDEX files_by_owner ON files (owner, created_at)",
            "CREATE INDEX files_by_session ON files (session, created_at) WHERE session IS NOT NULL",
            """
            CREATE TABLE uploads (
                id text PRIMARY KEY,
                owner text NOT NULL,
                record jsonb NOT NULL)
            """,
            """
            CREATE TABLE identities (
                user_id text PRIMARY KEY,
                bundle jsonb NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
        ]),
        Step(version: 2, summary: "accounts: names, scrypt hashes, token generations; removed account ids", statements: [
            """
            CREATE TABLE accounts (
                id text PRIMARY KEY,
                name text NOT NULL UNIQUE,
                password jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                token_generation integer NOT NULL DEFAULT 0)
            """,
            """
            CREATE TABLE removed_accounts (
                id text PRIMARY KEY,
                removed_at timestamptz NOT NULL DEFAULT now())
            """,
        ]),
        Step(version: 3, summary: "tokens revoked one by one (logout), until they expire", statements: [
            """
            CREATE TABLE token_revocations (
                id text PRIMARY KEY,
                user_id text NOT NULL,
                expires timestamptz NOT NULL)
            """,
            "CREATE INDEX token_revocations_by_user ON token_revocations (user_id)",
            "CREATE INDEX token_revocations_by_expiry ON token_revocations (expires)",
        ]),
        Step(version: 4, summary: "login attempts per account and address (keys hashed), shared by every gateway", statements: [
            """
            CREATE TABLE login_attempts (
                key text PRIMARY KEY,
                attempts integer NOT NULL,
                locked_until timestamptz NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
            "CREATE INDEX login_attempts_by_update ON login_attempts (updated_at)",
        ]),
        Step(version: 5, summary: "sessions: summaries (current members) and epoch documents as posted", statements: [
            """
            CREATE TABLE sessions (
                id text PRIMARY KEY,
                creator text NOT NULL,
                epoch_count integer NOT NULL,
                members text[] NOT NULL,
                last_hash bytea NOT NULL,
                bytes bigint NOT NULL)
            """,
            "CREATE INDEX sessions_by_creator ON sessions (creator)",
            "CREATE INDEX sessions_by_member ON sessions USING gin (members)",
            """
            CREATE TABLE session_epochs (
                session_id text NOT NULL REFERENCES sessions (id),
                epoch integer NOT NULL,
                document bytea NOT NULL,
                PRIMARY KEY (session_id, epoch))
            """,
        ]),
        Step(version: 6, summary: "chat: the offline queue, members' cursors, usage counters, and browsers' WebSocket tickets", statements: [
            "CREATE TABLE chat_heads (session text PRIMARY KEY, head bigint NOT NULL)",
            """
            CREATE TABLE chat_entries (
                session text NOT NULL,
                seq bigint NOT NULL,
                time bigint NOT NULL,
                owner text NOT NULL,
                cost integer NOT NULL,
                recipients text[] NOT NULL,
                record text NOT NULL,
                PRIMARY KEY (session, seq))
            """,
            "CREATE INDEX chat_entries_by_time ON chat_entries (time)",
            """
            CREATE TABLE chat_cursors (
                session text NOT NULL,
                user_id text NOT NULL,
                acked bigint NOT NULL,
                dropped bigint NOT NULL,
                PRIMARY KEY (session, user_id))
            """,
            "CREATE TABLE chat_usage (owner text PRIMARY KEY, bytes bigint NOT NULL)",
            """
            CREATE TABLE chat_tickets (
                key text PRIMARY KEY,
                user_id text NOT NULL,
                generation integer NOT NULL,
                token_id text,
                token_expires timestamptz NOT NULL,
                expires timestamptz NOT NULL)
            """,
            "CREATE INDEX chat_tickets_by_user ON chat_tickets (user_id)",
            // Each function runs as one statement: one round trip. Locks are taken in one order
            // everywhere (a session's head row, then entries and cursors, then the usage rows:
            // owners by name, stripes last), so nothing waits in a cycle.
            """
            CREATE FUNCTION safechat_chat_send(p_session text, p_time bigint, p_owner text, p_cost bigint, p_recipients text[],
                                               p_record text, p_account_limit bigint, p_stripe text, p_stripe_limit bigint,
                                               p_origin text) RETURNS bigint LANGUAGE plpgsql AS $$
            DECLARE
                v_seq bigint;
            BEGIN
                INSERT INTO chat_heads AS h (session, head) VALUES (p_session, 1)
                    ON CONFLICT (session) DO UPDATE SET head = h.head + 1 RETURNING head INTO v_seq;
                IF cardinality(p_recipients) = 0 THEN
                    RETURN v_seq;
                END IF;
                IF p_owner <> '' THEN
                    INSERT INTO chat_usage AS u (owner, bytes) SELECT p_owner, p_cost WHERE p_cost <= p_account_limit
                        ON CONFLICT (owner) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes WHERE u.bytes + EXCLUDED.bytes <= p_account_limit;
                    IF NOT FOUND THEN
                        RAISE EXCEPTION 'the sender''s share of the chat storage is full' USING ERRCODE = 'SC001';
                    END IF;
                END IF;
                INSERT INTO chat_usage AS u (owner, bytes) SELECT p_stripe, p_cost WHERE p_cost <= p_stripe_limit
                    ON CONFLICT (owner) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes WHERE u.bytes + EXCLUDED.bytes <= p_stripe_limit;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'the chat storage is full' USING ERRCODE = 'SC002';
                END IF;
                INSERT INTO chat_entries (session, seq, time, owner, cost, recipients, record)
                    VALUES (p_session, v_seq, p_time, p_owner, p_cost, p_recipients, p_record);
                PERFORM pg_notify('safechat_chat', p_origin || ' ' || p_session || ' ' || v_seq);
                RETURN v_seq;
            END $$
            """,
            // Deletes the entries of `p_sessions` every recipient's cursor has passed, and gives
            // their bytes back.
            """
            CREATE FUNCTION safechat_chat_collect(p_sessions text[]) RETURNS void LANGUAGE plpgsql AS $$
            DECLARE
                r record;
            BEGIN
                FOR r IN WITH gone AS (
                             DELETE FROM chat_entries e WHERE e.session = ANY(p_sessions) AND NOT EXISTS (
                                 SELECT 1 FROM unnest(e.recipients) AS m(user_id)
                                 LEFT JOIN chat_cursors c ON c.session = e.session AND c.user_id = m.user_id
                                 WHERE coalesce(c.acked, 0) < e.seq)
                             RETURNING owner, cost, '*' || left(session, 1) AS stripe),
                         sums AS (SELECT 0 AS kind, owner AS name, sum(cost)::bigint AS bytes FROM gone WHERE owner <> '' GROUP BY owner
                                  UNION ALL SELECT 1, stripe, sum(cost)::bigint FROM gone GROUP BY stripe)
                         SELECT name, bytes FROM sums ORDER BY kind, name LOOP
                    UPDATE chat_usage SET bytes = greatest(bytes - r.bytes, 0) WHERE owner = r.name;
                END LOOP;
            END $$
            """,
            // Many members' acks in one call (each gateway gathers them for a few milliseconds):
            // each moves a member's cursor; what every recipient has is deleted at once.
            """
            CREATE FUNCTION safechat_chat_ack(p_sessions text[], p_users text[], p_seqs bigint[], p_durable boolean)
                RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
                IF NOT p_durable THEN
                    PERFORM set_config('synchronous_commit', 'off', true);
                END IF;
                INSERT INTO chat_cursors AS c (session, user_id, acked, dropped)
                    SELECT a.session, a.user_id, a.seq, 0 FROM unnest(p_sessions, p_users, p_seqs) AS a(session, user_id, seq)
                    ORDER BY a.session, a.user_id
                    ON CONFLICT (session, user_id) DO UPDATE SET acked = greatest(c.acked, EXCLUDED.acked);
                PERFORM safechat_chat_collect(p_sessions);
            END $$
            """,
            // Once a second, on one gateway: deliveries past the retention are deleted (counted as
            // dropped for who had not received them), and each member keeps at most `p_queue_limit`
            // waiting deliveries per session (the oldest beyond it are dropped for them).
            """
            CREATE FUNCTION safechat_chat_maintain(p_cutoff bigint, p_queue_limit bigint) RETURNS void LANGUAGE plpgsql AS $$
            DECLARE
                r record;
                v_sessions text[];
            BEGIN
                FOR r IN WITH gone AS (DELETE FROM chat_entries WHERE time < p_cutoff RETURNING session, seq, owner, cost, recipients),
                              missed AS (INSERT INTO chat_cursors AS c (session, user_id, acked, dropped)
                                             SELECT g.session, m.user_id, 0, count(*) FROM gone g CROSS JOIN unnest(g.recipients) AS m(user_id)
                                             LEFT JOIN chat_cursors k ON k.session = g.session AND k.user_id = m.user_id
                                             WHERE coalesce(k.acked, 0) < g.seq GROUP BY g.session, m.user_id ORDER BY g.session, m.user_id
                                             ON CONFLICT (session, user_id) DO UPDATE SET dropped = c.dropped + EXCLUDED.dropped),
                              sums AS (SELECT 0 AS kind, owner AS name, sum(cost)::bigint AS bytes FROM gone WHERE owner <> '' GROUP BY owner
                                       UNION ALL SELECT 1, '*' || left(session, 1), sum(cost)::bigint FROM gone GROUP BY 2)
                         SELECT name, bytes FROM sums ORDER BY kind, name LOOP
                    UPDATE chat_usage SET bytes = greatest(bytes - r.bytes, 0) WHERE owner = r.name;
                END LOOP;
                WITH waiting AS (
                         SELECT e.session, m.user_id, e.seq,
                                row_number() OVER (PARTITION BY e.session, m.user_id ORDER BY e.seq DESC) AS newest
                         FROM chat_entries e CROSS JOIN unnest(e.recipients) AS m(user_id)
                         LEFT JOIN chat_cursors k ON k.session = e.session AND k.user_id = m.user_id
                         WHERE coalesce(k.acked, 0) < e.seq),
                     over AS (SELECT session, user_id, max(seq) AS upto, count(*) AS n FROM waiting WHERE newest > p_queue_limit
                              GROUP BY session, user_id),
                     moved AS (INSERT INTO chat_cursors AS c (session, user_id, acked, dropped)
                                   SELECT session, user_id, upto, n FROM over ORDER BY session, user_id
                                   ON CONFLICT (session, user_id) DO UPDATE SET acked = greatest(c.acked, EXCLUDED.acked),
                                                                               dropped = c.dropped + EXCLUDED.dropped
                                   RETURNING c.session)
                    SELECT array_agg(DISTINCT session) INTO v_sessions FROM moved;
                IF v_sessions IS NOT NULL THEN
                    PERFORM safechat_chat_collect(v_sessions);
                END IF;
                DELETE FROM chat_tickets WHERE expires < now();
            END $$
            """,
        ]),
        Step(version: 7, summary: "storage quotas: each user's reserved bytes, counted once from the registry", statements: [
            "CREATE TABLE quota_usage (owner text PRIMARY KEY, bytes bigint NOT NULL)",
            "CREATE TABLE quota_counted (id integer PRIMARY KEY)",
        ]),
        Step(version: 8, summary: "accounts: disabled by an operator", statements: [
            "ALTER TABLE accounts ADD COLUMN disabled boolean NOT NULL DEFAULT false",
        ]),
    ]

    public static var latestVersion: Int { steps.last?.version ?? 0 }

    /// Brings the database to ``latestVersion``; returns the steps it applied (none when it was
    /// there already). Refuses a database a newer build has migrated past this one.
    @discardableResult
    public static func apply(on database: PostgresDatabase) async throws -> [Step] {
        // A connection of its own, not the pool's, and no request deadline: a migration may wait
        // its turn and take its time, and closing this connection (whatever happens) releases the
        // lock, which a pooled connection cut off mid-way would hand on still held.
        let logger = database.logger, settings = database.settings
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(on: PostgresConnection.defaultEventLoopGroup.any(),
                                                              configuration: try settings.connectionConfiguration(), id: 2, logger: logger).get()
        } catch {
            throw StorageUnavailable("the database at \(settings) cannot be reached to migrate its schema: \(error)")
        }
        do {
            try await connection.query("SELECT pg_advisory_lock(\(lockKey))", logger: logger)
            let applied = try await run(on: connection, logger: logger, settings: settings)
            try await connection.close()
            return applied
        } catch {
            try? await connection.close()
            if let error = error as? PSQLError {
                throw DatabaseError(description: "the database at \(settings) refused a schema migration: \(PostgresDatabase.describe(error))")
            }
            throw error
        }
    }

    /// The version the database is at (0 for an empty one).
    public static func currentVersion(on database: PostgresDatabase) async throws -> Int {
        try await database.perform("schema version") { client in
            let exists = try await client.query("SELECT to_regclass('safechat_schema') IS NOT NULL").decode(Bool.self)
            var present = false
            for try await value in exists { present = value }
            guard present else { return 0 }
            var version = 0
            for try await value in try await client.query("SELECT coalesce(max(version), 0) FROM safechat_schema").decode(Int.self) {
                version = value
            }
            return version
        }
    }

    private static func run(on connection: PostgresConnection, logger: Logger, settings: DatabaseSettings) async throws -> [Step] {
        try await connection.query("""
            CREATE TABLE IF NOT EXISTS safechat_schema (
                version integer PRIMARY KEY,
                summary text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())
            """, logger: logger)
        var current = 0
        for try await version in try await connection.query("SELECT coalesce(max(version), 0) FROM safechat_schema", logger: logger).decode(Int.self) {
            current = version
        }
        guard current <= latestVersion else {
            throw DatabaseConfigurationError("the database at \(settings) has schema version \(current), newer than this build's \(latestVersion): run a newer safechat")
        }
        var applied: [Step] = []
        for step in steps where step.version > current {
            try await connection.withTransaction(logger: logger) { connection in
                for statement in step.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO safechat_schema (version, summary) VALUES (\(step.version), \(step.summary))",
                                           logger: logger)
            }
            applied.append(step)
        }
        return applied
    }
}

extension PostgresDatabase {
    /// What a gateway does at start: checks the server answers, then migrates the schema (under
    /// the advisory lock, so gateways starting together take turns).
    public func prepare(logger: Logger) async throws {
        try await check()
        for step in try await SchemaMigrations.apply(on: self) {
            logger.info("database schema migrated", metadata: ["version": "\(step.version)", "step": "\(step.summary)"])
        }
    }
}
