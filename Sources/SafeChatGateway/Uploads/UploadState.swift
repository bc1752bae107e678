import Foundation
import SafeChatAPI
import SealedFormat

/// What the registry records of an upload in progress.
public struct UploadState: Codable, Sendable {
    public let uploadID: FileID
    public let owner: UserID
    /// Declared total length (tus Upload-Length); nil while deferred.
    public var length: Int64?
    /// Bytes acknowledged and durable.
    public var offset: Int64
    public let createdAt: Date
    public let expiresAt: Date
    public let metadata: [String: String]
    /// The framing check as of `offset`, so validation resumes mid-record after a restart.
    public var validator: FramingValidator
    /// The records complete as of `offset`: the finished file's manifest is built from this, never
    /// by reading the bytes back.
    public var records: [FileManifest.Record]
    /// The session the upload goes to, checked when it was created.
    public var session: FileSession?
    /// The stream header declared when the upload was created, whose bound id (docs/FORMAT.md
    /// section 11) is the upload's: the stream must start with exactly these bytes. Nil for an
    /// upload created without one, whose id is random.
    public var declaredHeader: [UInt8]?
    /// What the blob store needs to resume from `offset` (S3: the multipart upload, its parts and
    /// the tail object), recorded with it.
    public var blobCheckpoint: BlobCheckpoint?

    /// Every byte is here and the stream ended: what is left is making it a file (done at once,
    /// or after a crash or a store outage by the next request, the sweeper or a restart).
    public var isComplete: Bool { validator.isComplete }

    public func isExpired(at now: Date) -> Bool { expiresAt <= now }
}
