import Foundation
import NIOPosix
import SafeChatAPI
import SealedFormat

/// The embedded registry: one human-readable JSON file per file and per upload, each written to a
/// temporary name, fsynced and renamed, then the directory fsynced. A write never rewrites anything
/// but its own record, so its cost does not grow with the number of files; a torn write leaves only
/// a temporary file, which loading ignores. The actor only guards the in-memory index: the writes
/// and their fsyncs run on NIO's thread pool before the index changes, so one upload's fsync never
/// holds up another's request. Each record has one writer at a time (an upload's state is written
/// only by the request holding it; a manifest once), so writes need no ordering among themselves.
public actor JSONFileRegistry: Registry {
    private let filesDirectory: URL
    private let uploadsDirectory: URL
    private var filesByID: [FileID: FileManifest] = [:]
    private var uploadsByID: [FileID: UploadState] = [:]
    private let keysDirectory: URL
    private var identities: [UserID: StoredIdentity] = [:]

    struct StoredIdentity: Codable, Sendable {
        let userID: UserID
        let bundle: IdentityBundle
        let updatedAt: Date
    }
    private static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    /// Opens (creating if needed) the registry under `directory` and loads its index.
    public init(directory: String) throws {
        let root = URL(fileURLWithPath: directory)
        filesDirectory = root.appendingPathComponent("files")
        uploadsDirectory = root.appendingPathComponent("uploads")
        keysDirectory = root.appendingPathComponent("keys")
        for dir in [root, filesDirectory, uploadsDirectory, keysDirectory] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let decoder = WireCoding.decoder
        filesByID = try Self.load(FileManifest.self, from: filesDirectory, decoder: decoder, key: \.fileID)
        uploadsByID = try Self.load(UploadState.self, from: uploadsDirectory, decoder: decoder, key: \.uploadID)
        identities = try Self.load(StoredIdentity.self, from: keysDirectory, decoder: decoder, key: \.userID)
    }

    private static func load<T: Decodable, Kind>(_ type: T.Type, from directory: URL, decoder: JSONDecoder,
                                                 key: KeyPath<T, Identifier<Kind>>) throws -> [Identifier<Kind>: T] {
        var out: [Identifier<Kind>: T] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            let url = directory.appendingPathComponent(name)
            guard name.hasSuffix(".json"), let id = Identifier<Kind>(name.dropLast(5)) else {
                // Leftovers of a write torn by a crash: never acknowledged, safe to drop.
                if name.hasSuffix(".safechat-partial") { try? FileManager.default.removeItem(at: url) }
                continue
            }
            let record = try decoder.decode(T.self, from: Data(contentsOf: url))
            guard record[keyPath: key] == id else { continue }
            out[id] = record
        }
        return out
    }

    public nonisolated func putFile(_ manifest: FileManifest) async throws {
        try await write(manifest, to: filesDirectory.appendingPathComponent("\(manifest.fileID).json"))
        await index(file: manifest)
    }

    private func index(file manifest: FileManifest) { filesByID[manifest.fileID] = manifest }
    private func index(upload state: UploadState) { uploadsByID[state.uploadID] = state }
    private func unindex(file id: FileID) { filesByID[id] = nil }
    private func unindex(upload id: FileID) { uploadsByID[id] = nil }

    public func file(_ id: FileID) -> FileManifest? { filesByID[id] }

    public func files(ownedBy owner: UserID) -> [FileManifest] {
        filesByID.values.filter { $0.owner == owner }.sorted { $0.createdAt < $1.createdAt }
    }

    public func allFiles() -> [FileManifest] { Array(filesByID.values) }

    public nonisolated func removeFile(_ id: FileID) async throws {
        // Out of the index first: from then on nobody is served a file whose record is going.
        await unindex(file: id)
        try await remove(filesDirectory.appendingPathComponent("\(id).json"))
    }

    public nonisolated func putUpload(_ state: UploadState) async throws {
        try await write(state, to: uploadsDirectory.appendingPathComponent("\(state.uploadID).json"))
        await index(upload: state)
    }

    public func upload(_ id: FileID) -> UploadState? { uploadsByID[id] }
    public func uploads() -> [UploadState] { Array(uploadsByID.values) }

    public nonisolated func removeUpload(_ id: FileID) async throws {
        await unindex(upload: id)
        try await remove(uploadsDirectory.appendingPathComponent("\(id).json"))
    }

    public nonisolated func putIdentity(_ bundle: IdentityBundle, of user: UserID, at time: Date) async throws {
        let stored = StoredIdentity(userID: user, bundle: bundle, updatedAt: time)
        try await write(stored, to: keysDirectory.appendingPathComponent("\(user).json"))
        await index(identity: stored)
    }

    private func index(identity: StoredIdentity) { identities[identity.userID] = identity }
    private func unindex(identity user: UserID) -> Bool { identities.removeValue(forKey: user) != nil }

    public nonisolated func removeIdentity(of user: UserID) async throws {
        guard await unindex(identity: user) else { return }
        try await remove(keysDirectory.appendingPathComponent("\(user).json"))
    }

    /// Its directories can be written (a full or read-only file system fails this).
    public nonisolated func check() async throws {
        for directory in [filesDirectory, uploadsDirectory, keysDirectory] {
            let probe = directory.appendingPathComponent(".probe-\(Secrets.randomHex(4))").path
            try await blockingIO {
                let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw FileError(path: probe, operation: "create", errno: errno) }
                Glibc.close(fd)
                unlink(probe)
            }
        }
    }

    public func identity(of user: UserID) -> (bundle: IdentityBundle, updatedAt: Date)? {
        identities[user].map { ($0.bundle, $0.updatedAt) }
    }

    private nonisolated func write(_ value: some Encodable & Sendable, to url: URL) async throws {
        let data = try Self.encoder.encode(value)
        try await blockingIO {
            let writer = try AtomicFileWriter(destination: url.path, permissions: 0o600)
            try writer.write(Array(data))
            try writer.commit()
        }
    }

    private nonisolated func remove(_ url: URL) async throws {
        try await blockingIO {
            if unlink(url.path) != 0 && errno != ENOENT { throw FileError(path: url.path, operation: "remove", errno: errno) }
            syncDirectory(of: url.path)
        }
    }
}
