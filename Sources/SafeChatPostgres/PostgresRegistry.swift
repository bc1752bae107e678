import Foundation
import PostgresNIO
import SafeChatAPI
import SafeChatGateway
import SealedFormat

/// The file registry in PostgreSQL: finished files, uploads in progress and identity bundles, one
/// row each, shared by every gateway on the database. Each record is kept whole as the same JSON
/// the embedded registry writes (so `migrate --from-data-dir` copies it as it is), beside the
/// columns the queries select on. A write is committed before it returns: what the gateway then
/// acknowledges survives any gateway's crash.
public struct PostgresRegistry: Registry {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    private static func json(_ value: some Encodable) throws -> String {
        String(decoding: try WireCoding.encoder.encode(value), as: UTF8.self)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try WireCoding.decoder.decode(type, from: Data(text.utf8))
    }

    /// The records one query returns, decoded.
    private func records<T: Decodable & Sendable>(_ type: T.Type, _ what: String, _ query: PostgresQuery,
                                                  deadline: Duration? = nil) async throws -> [T] {
        try await database.perform(what, deadline: deadline) { client in
            var out: [T] = []
            for try await text in try await client.query(query).decode(String.self) {
                out.append(try Self.decode(type, text))
            }
            return out
        }
    }

    private func execute(_ what: String, _ query: PostgresQuery) async throws {
        try await database.perform(what) { client in _ = try await client.query(query) }
    }

    public func putFile(_ manifest: FileManifest) async throws {
        let record = try Self.json(manifest)
        let id = manifest.fileID.description, owner = manifest.owner.description
        let session = manifest.session?.sessionID.description
        try await execute("record file", """
            INSERT INTO files (id, owner, session, created_at, record)
            VALUES (\(id), \(owner), \(session), \(manifest.createdAt), \(record)::jsonb)
            ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record
            """)
    }

    public func file(_ id: FileID) async throws -> FileManifest? {
        try await records(FileManifest.self, "read file", "SELECT record::text FROM files WHERE id = \(id.description)").first
    }

    public func files(ownedBy owner: UserID) async throws -> [FileManifest] {
        try await records(FileManifest.self, "list files",
                          "SELECT record::text FROM files WHERE owner = \(owner.description) ORDER BY created_at, id")
    }

    public func files(inSession id: SessionID) async throws -> [FileManifest] {
        try await records(FileManifest.self, "list files",
                          "SELECT record::text FROM files WHERE session = \(id.description) ORDER BY created_at, id")
    }

    public func storedBytesByOwner() async throws -> [UserID: Int64] {
        try await database.perform("sum files") { client in
            var sums: [UserID: Int64] = [:]
            for try await (owner, bytes) in try await client.query(
                "SELECT owner, sum((record->>'size')::bigint)::bigint FROM files GROUP BY owner").decode((String, Int64).self) {
                if let owner = UserID(owner) { sums[owner] = bytes }
            }
            return sums
        }
    }

    /// Every manifest: for `migrate --from-data-dir` and tools, never a request, so it may take its time.
    public func allFiles() async throws -> [FileManifest] {
        try await records(FileManifest.self, "read every file", "SELECT record::text FROM files", deadline: .seconds(3600))
    }

    public func removeFile(_ id: FileID) async throws {
        try await execute("remove file", "DELETE FROM files WHERE id = \(id.description)")
    }

    public func putUpload(_ state: UploadState) async throws {
        let record = try Self.json(state)
        let id = state.uploadID.description, owner = state.owner.description
        try await execute("record upload", """
            INSERT INTO uploads (id, owner, record) VALUES (\(id), \(owner), \(record)::jsonb)
            ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record
            """)
    }

    public func upload(_ id: FileID) async throws -> UploadState? {
        try await records(UploadState.self, "read upload", "SELECT record::text FROM uploads WHERE id = \(id.description)").first
    }

    public func uploads() async throws -> [UploadState] {
        try await records(UploadState.self, "list uploads", "SELECT record::text FROM uploads")
    }

    public func removeUpload(_ id: FileID) async throws {
        try await execute("remove upload", "DELETE FROM uploads WHERE id = \(id.description)")
    }

    public func putIdentity(_ bundle: IdentityBundle, of user: UserID, at time: Date) async throws {
        let record = try Self.json(bundle)
        try await execute("record identity", """
            INSERT INTO identities (user_id, bundle, updated_at) VALUES (\(user.description), \(record)::jsonb, \(time))
            ON CONFLICT (user_id) DO UPDATE SET bundle = EXCLUDED.bundle, updated_at = EXCLUDED.updated_at
            """)
    }

    public func identity(of user: UserID) async throws -> (bundle: IdentityBundle, updatedAt: Date)? {
        let rows: [StoredIdentity] = try await database.perform("read identity") { client in
            var out: [StoredIdentity] = []
            for try await (text, time) in try await client.query(
                "SELECT bundle::text, updated_at FROM identities WHERE user_id = \(user.description)").decode((String, Date).self) {
                out.append(StoredIdentity(bundle: try Self.decode(IdentityBundle.self, text), updatedAt: time))
            }
            return out
        }
        return rows.first.map { ($0.bundle, $0.updatedAt) }
    }

    public func removeIdentity(of user: UserID) async throws {
        try await execute("remove identity", "DELETE FROM identities WHERE user_id = \(user.description)")
    }

    public func check() async throws {
        try await execute("readiness probe", "SELECT 1 FROM files LIMIT 1")
    }

    private struct StoredIdentity: Sendable {
        let bundle: IdentityBundle
        let updatedAt: Date
    }
}
