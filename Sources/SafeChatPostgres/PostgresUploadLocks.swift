import Foundation
import Logging
import PostgresNIO
import SafeChatAPI
import SafeChatGateway

/// Appends to one upload, one at a time across every gateway on the database: a session-level
/// advisory lock per upload, held on one connection of this gateway's own for the append's
/// duration. A gateway that dies loses its connection, and PostgreSQL releases its locks at once,
/// so a client's retry on another gateway succeeds within seconds.
public struct PostgresUploadLocks: UploadLocks {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    public func tryLock(_ id: FileID) async throws -> (any HeldUploadLock)? {
        let key = PostgresDatabase.advisoryKey(id.value), logger = database.logger
        let connection = try await database.lockConnection.get()
        let taken = try await database.perform("lock upload") { _ in
            var taken = false
            for try await value in try await connection.query("SELECT pg_try_advisory_lock(\(key))", logger: logger).decode(Bool.self) {
                taken = value
            }
            return taken
        }
        return taken ? Held(connection: connection, key: key, database: database) : nil
    }

    /// Released on the connection it was taken on; if that broke meanwhile, the lock went with it.
    struct Held: HeldUploadLock {
        let connection: PostgresConnection
        let key: Int64
        let database: PostgresDatabase

        func release() async {
            guard !connection.isClosed else { return }
            let connection = self.connection, key = self.key, logger = database.logger
            _ = try? await database.perform("unlock upload") { _ in
                _ = try await connection.query("SELECT pg_advisory_unlock(\(key))", logger: logger)
            }
        }
    }
}

/// One connection of this gateway's own, outside the pool, for session-level advisory locks held
/// across requests: made on first use, made again if it breaks (which released every lock it
/// held), and closed when the database's pool stops.
actor DedicatedConnection {
    let settings: DatabaseSettings
    let logger: Logger
    private var connection: Task<PostgresConnection, any Error>?
    private var closed = false

    init(settings: DatabaseSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    func get() async throws -> PostgresConnection {
        guard !closed else { throw StorageUnavailable("the gateway is stopping") }
        if let connection, let open = try? await connection.value, !open.isClosed { return open }
        let settings = self.settings, logger = self.logger
        let connecting = Task {
            do {
                return try await PostgresConnection.connect(on: PostgresConnection.defaultEventLoopGroup.any(),
                                                            configuration: try settings.connectionConfiguration(), id: 1, logger: logger).get()
            } catch {
                throw StorageUnavailable("the database at \(settings) cannot be reached for upload locks: \(error)")
            }
        }
        let previous = connection
        connection = connecting
        // A broken connection still has to be closed before it is let go.
        if let old = try? await previous?.value { try? await old.close() }
        return try await connecting.value
    }

    func close() async {
        closed = true
        if let open = try? await connection?.value { try? await open.close() }
        connection = nil
    }
}
