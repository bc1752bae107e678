import Foundation
import SealedFormat

/// The session a file was sent to, and the epoch whose key sealed it.
public struct FileSession: Codable, Sendable, Equatable, Hashable {
    public let sessionID: SessionID
    public let epoch: UInt32
    public init(sessionID: SessionID, epoch: UInt32) {
        self.sessionID = sessionID
        self.epoch = epoch
    }
}

/// What the registry records of a finished file: enough to serve it whole or by chunk, and to
/// check it. Nothing in it opens the file.
public struct FileManifest: Codable, Sendable, Equatable {
    public struct Record: Codable, Sendable, Equatable {
        public let index: UInt32
        public let offset: Int64
        public let length: Int
        public let plaintextLength: Int

        public init(index: UInt32, offset: Int64, length: Int, plaintextLength: Int) {
            self.index = index
            self.offset = offset
            self.length = length
            self.plaintextLength = plaintextLength
        }
    }

    public let fileID: FileID
    public let owner: UserID
    public let createdAt: Date
    public let expiresAt: Date?
    /// Sealed bytes stored.
    public let size: Int64
    public let plaintextSize: Int64
    public let chunkSize: Int
    /// The 92-byte stream header, so one chunk can be opened from this manifest alone.
    public let header: StreamHeader
    /// The stream digest (docs/API.md): a SHA-256 chain over the stream header and every record's
    /// header and tag, hex. It names these exact bytes (each body is bound to its tag by GCM) and is
    /// the download's strong ETag.
    public let digest: String
    /// The client's own metadata (e.g. the file name encrypted under the session key), opaque here.
    public let metadata: [String: String]
    public let records: [Record]
    /// Set for a file sent to a session: its members may read it; nil for a personal file.
    public let session: FileSession?

    public init(fileID: FileID, owner: UserID, createdAt: Date, expiresAt: Date?, size: Int64, plaintextSize: Int64,
                chunkSize: Int, header: StreamHeader, digest: String, metadata: [String: String], records: [Record],
                session: FileSession? = nil) {
        self.session = session
        self.fileID = fileID
        self.owner = owner
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.size = size
        self.plaintextSize = plaintextSize
        self.chunkSize = chunkSize
        self.header = header
        self.digest = digest
        self.metadata = metadata
        self.records = records
    }
}

/// GET /files: the caller's files, oldest first.
public struct FileListing: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public let fileID: FileID
        public let size: Int64
        public let plaintextSize: Int64
        public let createdAt: Date
        /// The uploader's metadata as stored (e.g. `name`: the file name sealed under the session key, base64).
        public let metadata: [String: String]
        /// The stream header: its salt is what a sealed name is bound to.
        public let header: StreamHeader
        public let session: FileSession?

        public init(_ manifest: FileManifest) {
            header = manifest.header
            session = manifest.session
            fileID = manifest.fileID
            size = manifest.size
            plaintextSize = manifest.plaintextSize
            createdAt = manifest.createdAt
            metadata = manifest.metadata
        }

        enum CodingKeys: String, CodingKey {
            case fileID = "file_id", size, plaintextSize = "plaintext_size", createdAt = "created_at", metadata, header, session
        }
    }

    public let files: [Entry]
    public init(files: [Entry]) { self.files = files }
}

/// POST /login's answer.
public struct LoginReply: Codable, Sendable {
    public let token: String
    public let expiresAt: Date
    public let tokenType: String
    /// The account's stable id (a name removed and re-created is another id).
    public let userID: String

    public init(token: String, expiresAt: Date, userID: String) {
        self.token = token
        self.expiresAt = expiresAt
        tokenType = "Bearer"
        self.userID = userID
    }

    enum CodingKeys: String, CodingKey { case token, expiresAt = "expires_at", tokenType = "token_type", userID = "user_id" }
}

/// POST /upload's answer.
public struct UploadReply: Codable, Sendable {
    public let fileID: FileID
    public init(fileID: FileID) { self.fileID = fileID }
    enum CodingKeys: String, CodingKey { case fileID = "file_id" }
}
