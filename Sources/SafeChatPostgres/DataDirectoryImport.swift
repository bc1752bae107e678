import Foundation
import NIOCore
import SafeChatAPI
import SafeChatGateway
import SealedFormat

/// `safechat migrate --from-data-dir DIR`: copies an embedded gateway's accounts (same ids, hashes
/// and token generations), file registry (finished files, uploads in progress, identity bundles)
/// sessions (every epoch as posted) and chat queue (what waits for members who have not
/// received it) into PostgreSQL and, given another blob store, its
/// sealed bytes there under the same ids. Idempotent: a file already in the database is skipped,
/// and each file's bytes are in the destination store before its row is written, so a run cut
/// short is finished by running it again. The data directory is only read (its chat log is
/// compacted on opening, as a gateway's start does).
public struct DataDirectoryImport: Sendable {
    public struct Summary: Sendable, Equatable {
        public var accounts = 0, files = 0, skipped = 0, uploads = 0, identities = 0, sessions = 0, deliveries = 0, bytesCopied: Int64 = 0
    }

    let dataDirectory: String
    let registry: any Registry
    let accounts: PostgresAccountStore
    let sessions: PostgresSessionStore
    /// Where sealed bytes go; nil: they stay in the data directory's `data/`.
    let destination: (any BlobStore)?
    let maxFileSize: Int64
    let database: PostgresDatabase

    public init(dataDirectory: String, database: PostgresDatabase, destination: (any BlobStore)?, maxFileSize: Int64) {
        self.database = database
        self.dataDirectory = dataDirectory
        self.registry = PostgresRegistry(database: database)
        self.accounts = PostgresAccountStore(database: database)
        self.sessions = PostgresSessionStore(database: database, accounts: accounts)
        self.destination = destination
        self.maxFileSize = maxFileSize
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Summary {
        let registryDirectory = dataDirectory + "/registry"
        guard FileManager.default.fileExists(atPath: registryDirectory + "/files") else {
            throw DatabaseConfigurationError("\(dataDirectory) holds no gateway registry (no registry/files)")
        }
        let (records, removed) = try await UserStore(path: Gateway.usersPath(dataDirectory: dataDirectory)).records()
        var summary = Summary()
        summary.accounts = try await accounts.importRecords(records, removed: removed)
        let source = try JSONFileRegistry(directory: registryDirectory)
        let blobs = try LocalBlobStore(root: dataDirectory + "/data", directIO: false)
        for manifest in try await source.allFiles().sorted(by: { $0.createdAt < $1.createdAt }) {
            if try await registry.file(manifest.fileID) != nil {
                summary.skipped += 1
                continue
            }
            if let destination {
                let reader = try await blobs.openBlob(manifest.fileID, size: manifest.size)
                defer { reader.close() }
                summary.bytesCopied += try await copy(manifest.fileID, from: reader, count: manifest.size, final: true,
                                                      promote: true, to: destination, sizeLimit: manifest.size).copied
            }
            try await registry.putFile(manifest)
            summary.files += 1
            progress("file \(manifest.fileID) (\(manifest.size) bytes)")
        }
        for var state in try await source.uploads() where try await registry.upload(state.uploadID) == nil {
            if let destination, state.offset > 0 {
                let path = dataDirectory + "/data/partial/\(state.uploadID)"
                let reader = try PartialFileReader(path: path, size: state.offset)
                defer { reader.close() }
                let (copied, checkpoint) = try await copy(state.uploadID, from: reader, count: state.offset,
                                                          final: state.isComplete, promote: false, to: destination,
                                                          sizeLimit: state.length ?? maxFileSize)
                summary.bytesCopied += copied
                state.blobCheckpoint = checkpoint
            }
            try await registry.putUpload(state)
            summary.uploads += 1
            progress("upload \(state.uploadID) at offset \(state.offset)")
        }
        for file in try FileManager.default.contentsOfDirectory(atPath: registryDirectory + "/keys") where file.hasSuffix(".json") {
            guard let user = UserID(file.dropLast(5)), let (bundle, updatedAt) = try await source.identity(of: user) else { continue }
            try await registry.putIdentity(bundle, of: user, at: updatedAt)
            summary.identities += 1
        }
        let sessionStore = try FileSessionStore(directory: registryDirectory + "/sessions")
        for session in await sessionStore.allSummaries() {
            var chain: [Data] = []
            for number in 0..<session.epochCount {
                guard let document = try await sessionStore.epochDocument(session.sessionID, number: number) else { break }
                chain.append(document)
            }
            guard chain.count == session.epochCount else { continue }
            if try await sessions.importSession(chain, summary: session) {
                summary.sessions += 1
                progress("session \(session.sessionID) (\(session.epochCount) epochs)")
            }
        }
        summary.deliveries = try await PostgresChatQueue.importQueue(try await ChatLog.export(dataDirectory: dataDirectory), into: database)
        // The next gateway to start counts every user's storage again, imported files included.
        try await database.perform("recount quotas") { client in _ = try await client.query("DELETE FROM quota_counted") }
        return summary
    }

    /// Streams `count` bytes into `id` on `store` the way an upload does, and with `promote` makes
    /// them the file `id` (a finished file; an upload in progress keeps its checkpoint).
    private func copy(_ id: FileID, from reader: any BlobReader, count: Int64, final: Bool, promote: Bool, to store: any BlobStore,
                      sizeLimit: Int64) async throws -> (copied: Int64, checkpoint: BlobCheckpoint?) {
        let partial = try await store.openPartial(id, at: 0, checkpoint: nil, sizeLimit: sizeLimit)
        let piece = 4 << 20
        var offset: Int64 = 0
        var buffer = ByteBuffer()
        do {
            while offset < count {
                let length = Int(min(Int64(piece), count - offset))
                buffer.clear()
                try await reader.read(at: offset, count: length, into: &buffer)
                try await partial.append(buffer)
                offset += Int64(length)
            }
            let checkpoint = try await partial.makeDurable(final: final)
            await partial.close()
            if promote { try await store.promote(id, size: count, checkpoint: checkpoint) }
            return (count, checkpoint)
        } catch {
            await partial.close()
            throw error
        }
    }
}

/// The acknowledged bytes of a local upload in progress (`data/partial/ID`), read like a blob.
struct PartialFileReader: BlobReader {
    let handle: FileHandle
    let size: Int64
    var pieceSize: Int { 4 << 20 }
    var readsAhead: Int { 1 }
    var fileDescriptor: Int32? { nil }

    init(path: String, size: Int64) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw DatabaseConfigurationError("cannot read the upload in progress \(path)")
        }
        self.handle = handle
        self.size = size
    }

    func read(at offset: Int64, count: Int, into buffer: inout ByteBuffer) async throws {
        try handle.seek(toOffset: UInt64(offset))
        guard let data = try handle.read(upToCount: count), data.count == count else {
            throw DatabaseConfigurationError("the upload in progress ends before its acknowledged offset")
        }
        buffer.writeBytes(data)
    }

    func close() { try? handle.close() }
}
