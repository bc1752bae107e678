import Foundation
import NIOCore
import SafeChatAPI
import SealedFormat

/// Where sealed bytes live. The routes see only this protocol, so an S3-compatible store can
/// replace the local directory later.
public protocol BlobStore: Sendable {
    /// Opens the partial blob of an upload for appending, creating it if needed, and cuts it to
    /// `offset` (bytes past the last acknowledged offset were never acknowledged).
    func openPartial(_ id: FileID, truncatingTo offset: Int64) throws -> any PartialBlob
    func removePartial(_ id: FileID) throws
    func partialExists(_ id: FileID) -> Bool
    /// Makes a finished upload's bytes durable under the file's id.
    func promote(_ id: FileID) throws
    func openBlob(_ id: FileID) throws -> any BlobReader
    func removeBlob(_ id: FileID) throws
}

public protocol PartialBlob: AnyObject, Sendable {
    var length: Int64 { get }
    /// Appends `bytes` at ``length``. They may be held in memory until a later append or ``sync()``.
    func append(_ bytes: ByteBuffer) async throws
    /// Writes everything appended and flushes it to stable storage (before an offset is
    /// acknowledged). Blocks: call it off the cooperative pool.
    func sync() throws
    /// Cuts the blob back to `length` (an append that is being rolled back).
    func truncate(to length: Int64) throws
    func close()
}

public protocol BlobReader: Sendable {
    var size: Int64 { get }
    /// Reads `count` bytes at `offset` into the empty `buffer`, which then holds exactly them (no
    /// intermediate copy on the download path). Blocks.
    func read(at offset: Int64, count: Int, into buffer: inout ByteBuffer) throws
    /// A descriptor of the blob as a local file, if it is one, for sending it with sendfile(2);
    /// valid until ``close()``.
    var fileDescriptor: Int32? { get }
    func close()
}
