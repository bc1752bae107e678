import Foundation
import NIOCore
import SafeChatAPI
import SealedFormat

/// Where sealed bytes live: a local directory (``LocalBlobStore``, the embedded default) or an
/// S3-compatible object store (the SafeChatS3 module, wired by `safechat serve`). The gateway sees
/// only this protocol; docs/STORAGE.md says what each store keeps and when it is durable.
///
/// An upload's bytes go into a ``PartialBlob``. What a store needs to find them again after a
/// restart (S3: the multipart upload and its parts) is its ``BlobCheckpoint``, which the gateway
/// records beside the upload's offset each time that offset is acknowledged, and hands back.
public protocol BlobStore: Sendable {
    /// Opens upload `id` for appending at `offset`, its acknowledged offset, as `checkpoint`
    /// (recorded with that offset; nil for an upload with no bytes yet) left it. Bytes past
    /// `offset` were never acknowledged and are dropped. `sizeLimit` is the most the upload can
    /// hold (its declared length, else the largest file accepted): S3 sizes its parts from it.
    func openPartial(_ id: FileID, at offset: Int64, checkpoint: BlobCheckpoint?, sizeLimit: Int64) async throws -> any PartialBlob
    /// Removes what an upload stored (terminated, expired, refused).
    func removePartial(_ id: FileID, checkpoint: BlobCheckpoint?) async throws
    /// Makes the finished upload `id` the file `id`, checking that it holds `size` bytes. Called
    /// again after a crash in the middle, it finishes the job (or finds it done).
    func promote(_ id: FileID, size: Int64, checkpoint: BlobCheckpoint?) async throws
    /// Opens the file `id` (of `size` bytes) for reading.
    func openBlob(_ id: FileID, size: Int64) async throws -> any BlobReader
    func removeBlob(_ id: FileID) async throws
    /// Throws unless the store can be read and written now (at start, and for readiness).
    func check() async throws
}

/// What a store records of an upload's bytes beside its acknowledged offset, opaque to the
/// gateway (JSON the store wrote).
public struct BlobCheckpoint: Codable, Sendable, Equatable {
    public let json: String
    public init(json: String) { self.json = json }
}

public protocol PartialBlob: AnyObject, Sendable {
    var length: Int64 { get }
    /// Appends `bytes` at ``length``. They may be held in memory until a later append or ``makeDurable(final:)``.
    func append(_ bytes: ByteBuffer) async throws
    /// Makes everything appended durable, and returns the checkpoint to record with the new length
    /// (which is then what a resume starts from). `final`: nothing more will be appended, and the
    /// next step is ``BlobStore/promote(_:size:checkpoint:)``.
    func makeDurable(final: Bool) async throws -> BlobCheckpoint?
    /// The checkpoint last returned is recorded with its offset: what only older checkpoints
    /// needed may go now (S3: the previous tail object). Best effort.
    func checkpointRecorded() async
    /// Cuts the blob back to `length`, the offset it was opened at (an append being rolled back):
    /// the checkpoint it was opened with stands.
    func truncate(to length: Int64) async throws
    func close() async
}

public protocol BlobReader: Sendable {
    var size: Int64 { get }
    /// How a download reads: pieces of this size, this many at once.
    var pieceSize: Int { get }
    var readsAhead: Int { get }
    /// Reads `count` bytes at `offset` into the empty `buffer`, which then holds exactly them.
    func read(at offset: Int64, count: Int, into buffer: inout ByteBuffer) async throws
    /// A descriptor of the blob as a local file, if it is one, for sending it with sendfile(2);
    /// valid until ``close()``.
    var fileDescriptor: Int32? { get }
    func close()
}

/// A store (of sealed bytes or of the gateway's state) failed in a way that may pass (unreachable,
/// overloaded, restarting): the request is answered 503 with
/// Retry-After, and nothing acknowledged is lost.
public struct StorageUnavailable: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
