import Foundation
import SealedStream

/// A file identifier: 128 random bits as 32 lowercase hex digits. Anything else is refused before
/// any path is built from it.
public struct FileID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let value: String

    public init?(_ text: some StringProtocol) {
        guard text.utf8.count == 32, text.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            return nil
        }
        value = String(text)
    }

    public static func random() -> FileID { FileID(Secrets.randomHex(16))! }
    public var description: String { value }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = FileID(text) else { throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad file id")) }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
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
    public let owner: String
    public let createdAt: Date
    public let expiresAt: Date?
    /// Sealed bytes stored.
    public let size: Int64
    public let plaintextSize: Int64
    public let chunkSize: Int
    /// The 92-byte stream header, so one chunk can be opened from this manifest alone.
    public let header: StreamHeader
    /// SHA-256 of the stored sealed bytes, hex; also the download's strong ETag.
    public let sha256: String
    /// The client's own metadata (e.g. the file name encrypted under the session key), opaque here.
    public let metadata: [String: String]
    public let records: [Record]

    public init(fileID: FileID, owner: String, createdAt: Date, expiresAt: Date?, size: Int64, plaintextSize: Int64,
                chunkSize: Int, header: StreamHeader, sha256: String, metadata: [String: String], records: [Record]) {
        self.fileID = fileID
        self.owner = owner
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.size = size
        self.plaintextSize = plaintextSize
        self.chunkSize = chunkSize
        self.header = header
        self.sha256 = sha256
        self.metadata = metadata
        self.records = records
    }
}

/// What the registry records of an upload in progress.
public struct UploadState: Codable, Sendable {
    public let uploadID: FileID
    public let owner: String
    /// Declared total length (tus Upload-Length); nil while deferred.
    public var length: Int64?
    /// Bytes acknowledged and durable.
    public var offset: Int64
    public let createdAt: Date
    public let expiresAt: Date
    public let metadata: [String: String]
    /// The framing check as of `offset`, so validation resumes mid-record after a restart.
    public var validator: FramingValidator
}
