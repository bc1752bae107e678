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
        Step(version: 6, summary: "chat: the offline queue, its counters, and browsers' WebSocket tickets", statements: [
            "CREATE TABLE chat_heads (session text PRIMARY KEY, head bigint NOT NULL)",
            """
            CREATE TABLE chat_entries (
                session text NOT NULL,
                seq bigint NOT NULL,
                time bigint NOT NULL,
                owner text NOT NULL,
                cost integer NOT NULL,
                pending text[] NOT NULL,
                record text NOT NULL,
                PRIMARY KEY (session, seq))
            """,
            "CREATE INDEX chat_entries_by_time ON chat_entries (time)",
            """
            CREATE TABLE chat_waiting (
                session text NOT NULL,
                user_id text NOT NULL,
                waiting integer NOT NULL,
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
            // Each of these runs as one statement, one round trip. Locks are taken in one order
            // everywhere (the session's head row, its entries, its members' rows, the owners' usage
            // rows by name, the stripe's), so sends and acks of one session take turns and
            // nothing waits in a cycle.
            """
            CREATE FUNCTION safechat_chat_collect(p_session text, p_stripe text) RETURNS void LANGUAGE plpgsql AS $$
            DECLARE
                r record;
                total bigint := 0;
            BEGIN
                FOR r IN WITH gone AS (DELETE FROM chat_entries WHERE session = p_session AND cardinality(pending) = 0 RETURNING owner, cost)
                         SELECT owner, sum(cost)::bigint AS bytes FROM gone GROUP BY owner ORDER BY owner LOOP
                    IF r.owner <> '' THEN
                        UPDATE chat_usage SET bytes = greatest(bytes - r.bytes, 0) WHERE owner = r.owner;
                    END IF;
                    total := total + r.bytes;
                END LOOP;
                IF total > 0 THEN
                    UPDATE chat_usage SET bytes = greatest(bytes - total, 0) WHERE owner = p_stripe;
                END IF;
            END $$
            """,
            """
            CREATE FUNCTION safechat_chat_send(p_session text, p_time bigint, p_owner text, p_cost bigint, p_recipients text[],
                                               p_record text, p_queue_limit bigint, p_account_limit bigint, p_stripe text,
                                               p_stripe_limit bigint, p_origin text) RETURNS bigint LANGUAGE plpgsql AS $$
            DECLARE
                v_seq bigint;
                r record;
                v_dropped boolean := false;
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
                INSERT INTO chat_entries (session, seq, time, owner, cost, pending, record)
                    VALUES (p_session, v_seq, p_time, p_owner, p_cost, p_recipients, p_record);
                FOR r IN INSERT INTO chat_waiting AS w (session, user_id, waiting, dropped)
                             SELECT p_session, recipient, 1, 0 FROM unnest(p_recipients) AS recipient ORDER BY recipient
                             ON CONFLICT (session, user_id) DO UPDATE SET waiting = w.waiting + 1 RETURNING w.user_id, w.waiting LOOP
                    IF r.waiting > p_queue_limit THEN
                        UPDATE chat_entries SET pending = array_remove(pending, r.user_id)
                            WHERE session = p_session
                              AND seq = (SELECT min(seq) FROM chat_entries WHERE session = p_session AND r.user_id = ANY(pending));
                        UPDATE chat_waiting SET waiting = waiting - 1, dropped = dropped + 1 WHERE session = p_session AND user_id = r.user_id;
                        v_dropped := true;
                    END IF;
                END LOOP;
                IF v_dropped THEN
                    PERFORM safechat_chat_collect(p_session, p_stripe);
                END IF;
                PERFORM pg_notify('safechat_chat', p_origin || ' ' || p_session || ' ' || v_seq);
                RETURN v_seq;
            END $$
            """,
            """
            CREATE FUNCTION safechat_chat_ack(p_session text, p_user text, p_seq bigint, p_stripe text, p_durable boolean)
                RETURNS void LANGUAGE plpgsql AS $$
            DECLARE
                n integer;
            BEGIN
                IF NOT p_durable THEN
                    PERFORM set_config('synchronous_commit', 'off', true);
                END IF;
                PERFORM 1 FROM chat_heads WHERE session = p_session FOR UPDATE;
                UPDATE chat_entries SET pending = array_remove(pending, p_user)
                    WHERE session = p_session AND seq <= p_seq AND p_user = ANY(pending);
                GET DIAGNOSTICS n = ROW_COUNT;
                IF n = 0 THEN
                    RETURN;
                END IF;
                UPDATE chat_waiting SET waiting = greatest(waiting - n, 0) WHERE session = p_session AND user_id = p_user;
                PERFORM safechat_chat_collect(p_session, p_stripe);
            END $$
            """,
            // Many members' acks in one call (each gateway gathers them for a few milliseconds),
            // committed without waiting for the disk: the sessions' head rows first, in order,
            // then the entries, then the counters, owners by name and stripes last.
            """
            CREATE FUNCTION safechat_chat_ack_many(p_sessions text[], p_users text[], p_seqs bigint[]) RETURNS void LANGUAGE plpgsql AS $$
            DECLARE
                i integer;
                n integer;
                r record;
            BEGIN
                PERFORM set_config('synchronous_commit', 'off', true);
                PERFORM 1 FROM chat_heads WHERE session = ANY(p_sessions) ORDER BY session FOR UPDATE;
                FOR i IN 1 .. cardinality(p_sessions) LOOP
                    UPDATE chat_entries SET pending = array_remove(pending, p_users[i])
                        WHERE session = p_sessions[i] AND seq <= p_seqs[i] AND p_users[i] = ANY(pending);
                    GET DIAGNOSTICS n = ROW_COUNT;
                    IF n > 0 THEN
                        UPDATE chat_waiting SET waiting = greatest(waiting - n, 0) WHERE session = p_sessions[i] AND user_id = p_users[i];
                    END IF;
                END LOOP;
                FOR r IN WITH gone AS (DELETE FROM chat_entries WHERE session = ANY(p_sessions) AND cardinality(pending) = 0
                                       RETURNING owner, cost, '*' || left(session, 1) AS stripe),
                              sums AS (SELECT 0 AS kind, owner AS name, sum(cost)::bigint AS bytes FROM gone WHERE owner <> '' GROUP BY owner
                                       UNION ALL SELECT 1, stripe, sum(cost)::bigint FROM gone GROUP BY stripe)
                         SELECT name, bytes FROM sums ORDER BY kind, name LOOP
                    UPDATE chat_usage SET bytes = greatest(bytes - r.bytes, 0) WHERE owner = r.name;
                END LOOP;
            END $$
            """,
        ]),
        Step(version: 7, summary: "storage quotas: each user's reserved bytes, counted once from the registry", statements: [
            "CREATE TABLE quota_usage (owner text PRIMARY KEY, bytes bigint NOT NULL)",
            "CREATE TABLE quota_counted (id integer PRIMARY KEY)",
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
