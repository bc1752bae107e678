import Foundation
import Logging
import PostgresNIO
import SafeChatAPI
import SafeChatGateway

/// Appends to one upload, one at a time across every gateway on the database: a session-level
/// advisory lock per upload, held on one connection of this gateway's own for the append's
/// duration. A gateway that dies loses its connection, and PostgreSQL releases its locks at once,
/// so a client's retry on another gateway succeeds within seconds.
public actor PostgresUploadLocks: UploadLocks {
    let database: PostgresDatabase
    /// The connection the locks are taken on, made once (and again if it breaks, which releases
    /// every lock it held).
    private var connection: Task<PostgresConnection, any Error>?

    public init(database: PostgresDatabase) {
        self.database = database
    }

    /// The lock key of an id (32 hex digits): its first 64 bits (ids are random or SHA-256 outputs).
    static func key(_ hexID: String) -> Int64 {
        Int64(bitPattern: UInt64(hexID.prefix(16), radix: 16)!)
    }

    public func tryLock(_ id: FileID) async throws -> (any HeldUploadLock)? {
        let key = Self.key(id.value), logger = database.logger
        let connection = try await currentConnection()
        let taken = try await database.perform("lock upload") { _ in
            var taken = false
            for try await value in try await connection.query("SELECT pg_try_advisory_lock(\(key))", logger: logger).decode(Bool.self) {
                taken = value
            }
            return taken
        }
        return taken ? Held(connection: connection, key: key, database: database) : nil
    }

    private func currentConnection() async throws -> PostgresConnection {
        if let connection, let open = try? await connection.value, !open.isClosed { return open }
        let settings = database.settings, logger = database.logger
        let connecting = Task {
            do {
                return try await PostgresConnection.connect(on: PostgresConnection.defaultEventLoopGroup.any(),
                                                            configuration: try settings.connectionConfiguration(), id: 1, logger: logger).get()
            } catch {
                throw StorageUnavailable("the database at \(settings) cannot be reached for upload locks: \(error)")
            }
        }
        connection = connecting
        return try await connecting.value
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
