import Foundation
import SealedStream

/// What the gateway records: finished files and uploads in progress. The routes only see this
/// protocol, so a server-grade backend can replace the embedded JSON one.
public protocol Registry: Sendable {
    func putFile(_ manifest: FileManifest) async throws
    func file(_ id: FileID) async throws -> FileManifest?
    func files(ownedBy owner: String) async throws -> [FileManifest]
    func removeFile(_ id: FileID) async throws
    func putUpload(_ state: UploadState) async throws
    func upload(_ id: FileID) async throws -> UploadState?
    func uploads() async throws -> [UploadState]
    func removeUpload(_ id: FileID) async throws
    /// Sealed bytes held for `owner`: finished files plus uploads in progress.
    func usage(of owner: String) async throws -> Int64
}

/// The embedded registry: one human-readable JSON file per file and per upload, each written to a
/// temporary name, fsynced and renamed, then the directory fsynced. A write never rewrites anything
/// but its own record, so its cost does not grow with the number of files; a torn write leaves only
/// a temporary file, which loading ignores. An actor serializes concurrent requests.
public actor JSONFileRegistry: Registry {
    private let filesDirectory: URL
    private let uploadsDirectory: URL
    private var filesByID: [FileID: FileManifest] = [:]
    private var uploadsByID: [FileID: UploadState] = [:]
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    /// Opens (creating if needed) the registry under `directory` and loads its index.
    public init(directory: String) throws {
        let root = URL(fileURLWithPath: directory)
        filesDirectory = root.appendingPathComponent("files")
        uploadsDirectory = root.appendingPathComponent("uploads")
        for dir in [root, filesDirectory, uploadsDirectory] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        filesByID = try Self.load(FileManifest.self, from: filesDirectory, decoder: decoder, key: \.fileID)
        uploadsByID = try Self.load(UploadState.self, from: uploadsDirectory, decoder: decoder, key: \.uploadID)
    }

    private static func load<T: Decodable>(_ type: T.Type, from directory: URL, decoder: JSONDecoder, key: KeyPath<T, FileID>) throws -> [FileID: T] {
        var out: [FileID: T] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            let url = directory.appendingPathComponent(name)
            guard name.hasSuffix(".json"), let id = FileID(name.dropLast(5)) else {
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

    public func putFile(_ manifest: FileManifest) throws {
        try write(manifest, to: filesDirectory.appendingPathComponent("\(manifest.fileID).json"))
        filesByID[manifest.fileID] = manifest
    }

    public func file(_ id: FileID) -> FileManifest? { filesByID[id] }

    public func files(ownedBy owner: String) -> [FileManifest] {
        filesByID.values.filter { $0.owner == owner }.sorted { $0.createdAt < $1.createdAt }
    }

    public func removeFile(_ id: FileID) throws {
        try remove(filesDirectory.appendingPathComponent("\(id).json"))
        filesByID[id] = nil
    }

    public func putUpload(_ state: UploadState) throws {
        try write(state, to: uploadsDirectory.appendingPathComponent("\(state.uploadID).json"))
        uploadsByID[state.uploadID] = state
    }

    public func upload(_ id: FileID) -> UploadState? { uploadsByID[id] }
    public func uploads() -> [UploadState] { Array(uploadsByID.values) }

    public func removeUpload(_ id: FileID) throws {
        try remove(uploadsDirectory.appendingPathComponent("\(id).json"))
        uploadsByID[id] = nil
    }

    public func usage(of owner: String) -> Int64 {
        filesByID.values.filter { $0.owner == owner }.reduce(0) { $0 + $1.size }
            + uploadsByID.values.filter { $0.owner == owner }.reduce(0) { $0 + ($1.length ?? $1.offset) }
    }

    private func write(_ value: some Encodable, to url: URL) throws {
        let data = try encoder.encode(value)
        let writer = try AtomicFileWriter(destination: url.path, permissions: 0o600)
        try writer.write(Array(data))
        try writer.commit()
    }

    private func remove(_ url: URL) throws {
        if unlink(url.path) != 0 && errno != ENOENT { throw FileError(path: url.path, operation: "remove", errno: errno) }
        syncDirectory(of: url.path)
    }
}
