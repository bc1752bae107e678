import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import SafeChatGateway

/// The connection pool to one database, and the one place that decides what a failure means: a
/// server that cannot be reached, restarts or refuses connections for now is
/// ``StorageUnavailable`` (the gateway answers 503 with Retry-After, and has acknowledged nothing
/// it did not store); anything else is a ``DatabaseError``.
public final class PostgresDatabase: Sendable {
    public let settings: DatabaseSettings
    let client: PostgresClient
    let logger: Logger
    /// How long one operation may wait for the server before the request is answered 503.
    let deadline: Duration
    /// Where this gateway's upload locks are held (``PostgresUploadLocks``).
    let lockConnection: DedicatedConnection
    /// What is done with each notification on a LISTEN channel (``listen(on:_:)``).
    private let listeners = Mutex<[String: @Sendable (String) async -> Void]>([:])
    /// Told each operation's time and whether the database failed it (for the gateway's metrics).
    private let timing: @Sendable (Duration, _ failed: Bool) -> Void

    public init(settings: DatabaseSettings, maximumConnections: Int = 20, deadline: Duration = .seconds(10),
                logger: Logger = Logger(label: "safechat.postgres"),
                timing: @escaping @Sendable (Duration, _ failed: Bool) -> Void = { _, _ in }) {
        self.settings = settings
        self.timing = timing
        self.logger = logger
        self.deadline = deadline
        var configuration = settings.clientConfiguration
        configuration.options.maximumConnections = maximumConnections
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        lockConnection = DedicatedConnection(settings: settings, logger: logger)
    }

    /// Runs the pool, and the LISTEN connection when something listens, until the task is
    /// cancelled; every other call needs this running. Then closes the connection the upload locks
    /// were held on.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.receiveNotifications() }
            await client.run()
            group.cancelAll()
        }
        await lockConnection.close()
    }

    /// Has `handler` called with the payload of each notification on `channel`, one at a time and
    /// in the order they arrive, while ``run()`` runs. The channels are those registered when the
    /// first one was (the stores register theirs together, as the gateway is made).
    func listen(on channel: String, _ handler: @escaping @Sendable (String) async -> Void) {
        listeners.withLock { $0[channel] = handler }
    }

    /// Listens on every registered channel on a connection of its own, made again a second after
    /// it breaks (what was notified meanwhile is missed: chat members catch up from the queue).
    private func receiveNotifications() async {
        let settings = self.settings, logger = self.logger
        while !Task.isCancelled {
            let channels = listeners.withLock { $0 }
            guard !channels.isEmpty else {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            do {
                let connection = try await PostgresConnection.connect(on: PostgresConnection.defaultEventLoopGroup.any(),
                                                                      configuration: try settings.connectionConfiguration(), id: 3,
                                                                      logger: logger).get()
                await withTaskGroup(of: Void.self) { group in
                    for (channel, handler) in channels {
                        group.addTask {
                            _ = try? await connection.listen(on: channel) { notifications in
                                for try await notification in notifications { await handler(notification.payload) }
                            }
                        }
                    }
                    // The first to end (the connection broke, or the task was cancelled) ends them all.
                    await group.next()
                    group.cancelAll()
                }
                try? await connection.close()
            } catch {
                logger.warning("database notifications unavailable; retrying", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// One query through the pool (for readiness): throws unless the database answers now, within
    /// 3 s (inside readiness's 5 s, so that the failure is its own and is counted).
    public func ping() async throws {
        try await perform("readiness probe", deadline: .seconds(3)) { client in _ = try await client.query("SELECT 1") }
    }

    /// Checks that the server answers and the login works, on a connection of its own so that the
    /// line it throws names the cause (the pool only retries), and the server.
    public func check() async throws {
        let settings = self.settings, logger = self.logger
        do {
            let connection = try await PostgresConnection.connect(
                on: PostgresConnection.defaultEventLoopGroup.any(), configuration: try settings.connectionConfiguration(),
                id: 0, logger: logger).get()
            do {
                _ = try await connection.query("SELECT 1", logger: logger)
                try? await connection.close()
            } catch {
                try? await connection.close()
                throw error
            }
        } catch let error as PSQLError {
            throw DatabaseConfigurationError("the database at \(settings) cannot be used: \(Self.describe(error))")
        } catch {
            throw DatabaseConfigurationError("the database at \(settings) cannot be used: \(error)")
        }
    }

    /// Runs `body` on the pool within the deadline; failures are classified (see the type's doc).
    func perform<T: Sendable>(_ what: String, deadline: Duration? = nil,
                              _ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let client = self.client, deadline = deadline ?? self.deadline
        let start = ContinuousClock.now
        do {
            let value = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body(client) }
                group.addTask { [deadline] in
                    try await Task.sleep(for: deadline)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else {
                    throw StorageUnavailable("the database at \(settings) did not answer within \(deadline): \(what)")
                }
                return value
            }
            timing(ContinuousClock.now - start, false)
            return value
        } catch let error as StorageUnavailable {
            timing(ContinuousClock.now - start, true)
            throw error
        } catch {
            let classified = classify(error, doing: what)
            // A refusal the gateway answers (a name taken, a quota full) is the database working.
            timing(ContinuousClock.now - start, classified is StorageUnavailable || classified is DatabaseError)
            throw classified
        }
    }

    /// Runs `body` in one transaction (committed when it returns, rolled back when it throws).
    func transaction<T: Sendable>(_ what: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let logger = self.logger
        return try await perform(what) { client in
            try await client.withTransaction(logger: logger) { connection in try await body(connection) }
        }
    }

    private func classify(_ error: any Error, doing what: String) -> any Error {
        if error is CancellationError { return error }
        // A transaction's failure is its body's (a refusal the gateway answers, or the server's), or its BEGIN's or COMMIT's.
        if let error = error as? PostgresTransactionError, let cause = error.closureError ?? error.beginError ?? error.commitError {
            return classify(cause, doing: what)
        }
        if let error = error as? PSQLError {
            let message = Self.describe(error)
            if error.code == .server {
                // Class 08: connection exception; 53: insufficient resources; 57: operator
                // intervention (shutdown, cannot connect now); 40001/40P01: retry the transaction.
                let state = error.serverInfo?[.sqlState] ?? ""
                if ["08", "53", "57"].contains(String(state.prefix(2))) || state == "40001" || state == "40P01" {
                    return StorageUnavailable("the database at \(settings) failed: \(what): \(message)")
                }
                return DatabaseError(description: "the database at \(settings) refused \(what): \(message)")
            }
            return StorageUnavailable("the database at \(settings) failed: \(what): \(message)")
        }
        if error is IOError || error is ChannelError || error is NIOConnectionError {
            return StorageUnavailable("the database at \(settings) cannot be reached: \(what): \(error)")
        }
        return error
    }

    /// The advisory lock key of something named by hex digits (an id, a SHA-256): its first 64
    /// bits. Ids are random or hashes, so keys of different things do not meet in practice.
    static func advisoryKey(_ hex: String) -> Int64 {
        Int64(bitPattern: UInt64(hex.prefix(16), radix: 16) ?? 0)
    }

    /// PSQLError's own description hides everything (it may hold query values); the server's
    /// message and SQLSTATE say what happened without them.
    static func describe(_ error: PSQLError) -> String {
        if let info = error.serverInfo {
            return "\(info[.message] ?? "error") (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}

/// The database refused an operation for a reason that will not pass by waiting.
public struct DatabaseError: Error, CustomStringConvertible {
    public let description: String
}

extension PostgresDatabase {
    /// Runs `body` with the pool running, and stops the pool when it returns or throws.
    public func withRunning<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }
}
