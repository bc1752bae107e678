/// SafeChatS3: sealed files on an S3-compatible object store (AWS S3, SeaweedFS, MinIO, Ceph),
/// behind the gateway's ``BlobStore`` seam; `safechat serve --blob-store s3://…` wires it in. The
/// store sees what the gateway sees: sealed bytes under file ids.
///
/// Layout (docs/STORAGE.md): a finished file is the object `PREFIX/files/<id>`, assembled by a
/// multipart upload that a tus upload maps to; bytes acknowledged past the last whole part wait in
/// a tail object `PREFIX/uploads/<id>/tail-<offset>-<nonce>`. Requests are signed with
/// ``SigV4Signer`` and sent with AsyncHTTPClient (``S3Client``).
import Foundation
import NIOCore
import SafeChatAPI
import SafeChatGateway
import SealedFormat

public struct S3BlobStore: BlobStore {
    let client: S3Client
    let memory: UploadMemory
    public var settings: S3Settings { client.settings }

    public init(settings: S3Settings) {
        client = S3Client(settings: settings)
        memory = UploadMemory(bytes: max(settings.uploadMemory, 2 * S3PartSize.forUpload(upTo: settings.maxObjectSize)))
    }

    func fileKey(_ id: FileID) -> String { client.settings.prefix + "files/\(id)" }
    func tailPrefix(_ id: FileID) -> String { client.settings.prefix + "uploads/\(id)/" }

    public func openPartial(_ id: FileID, at offset: Int64, checkpoint: BlobCheckpoint?, sizeLimit: Int64) async throws -> any PartialBlob {
        let state: S3UploadCheckpoint
        if let checkpoint {
            state = try S3UploadCheckpoint(checkpoint)
        } else {
            guard offset == 0 else { throw S3IntegrityError("upload \(id) has \(offset) bytes but no recorded S3 state") }
            state = S3UploadCheckpoint(partSize: S3PartSize.forUpload(upTo: sizeLimit), uploadID: nil, parts: [], tail: nil, final: false)
        }
        guard state.length == offset, !state.final else {
            throw S3IntegrityError("upload \(id)'s recorded S3 state holds \(state.length) bytes, not its offset \(offset)")
        }
        return S3PartialBlob(client: client, memory: memory, key: fileKey(id), tailPrefix: tailPrefix(id), recorded: state)
    }

    /// Aborts the upload's multipart uploads (the recorded one and any a crash left unrecorded) and
    /// deletes its tail objects: nothing of it stays in the bucket.
    public func removePartial(_ id: FileID, checkpoint: BlobCheckpoint?) async throws {
        let key = fileKey(id)
        var uploads = Set(try await client.multipartUploads(prefix: key).filter { $0.key == key }.map(\.uploadID))
        if let checkpoint, let recorded = (try? S3UploadCheckpoint(checkpoint))?.uploadID { uploads.insert(recorded) }
        for upload in uploads { try await client.abortMultipartUpload(key, uploadID: upload) }
        for tail in try await client.list(prefix: tailPrefix(id)) { try await client.delete(tail) }
    }

    /// Completes the multipart upload, then checks that the object holds `size` bytes and that its
    /// ETag is the one its parts' MD5s give (the bytes the gateway validated, in order). Run again
    /// after a crash or outage, it finds the object done and checks it the same way.
    public func promote(_ id: FileID, size: Int64, checkpoint: BlobCheckpoint?) async throws {
        let key = fileKey(id)
        guard let checkpoint, case let state = try S3UploadCheckpoint(checkpoint), state.final, let uploadID = state.uploadID,
              state.length == size else {
            throw S3IntegrityError("upload \(id) is not recorded as complete on S3")
        }
        let md5s = state.parts.map { Secrets.bytes(fromHex: $0.md5, count: 16)! }
        let expected = S3Client.multipartETag(md5s)
        do {
            try await client.completeMultipartUpload(key, uploadID: uploadID, parts: zip(state.parts, md5s).map { ($0.number, $1) })
        } catch let error as S3ServiceError where error.code == "NoSuchUpload" {
            // Completed before (the gateway stopped before recording the file): checked below.
        }
        guard let object = try await client.head(key) else { throw S3IntegrityError("\(key) is missing after its upload was completed") }
        guard object.size == size, object.etag == expected else {
            throw S3IntegrityError("\(key) holds \(object.size) bytes with ETag \(object.etag); the upload sent \(size) bytes, ETag \(expected)")
        }
        // What is left of the upload: its tail objects, and multipart uploads a crash left behind.
        // (A failure here fails the completion, which the next try repeats from the check above.)
        for tail in try await client.list(prefix: tailPrefix(id)) { try await client.delete(tail) }
        for stale in try await client.multipartUploads(prefix: key) where stale.key == key {
            try await client.abortMultipartUpload(key, uploadID: stale.uploadID)
        }
    }

    public func openBlob(_ id: FileID, size: Int64) async throws -> any BlobReader {
        S3BlobReader(client: client, key: fileKey(id), size: size)
    }

    public func removeBlob(_ id: FileID) async throws {
        try await client.delete(fileKey(id))
    }

    /// Everything the gateway keeps under its prefix: finished files, multipart uploads in progress
    /// (by key) and tail objects. For operators and tests: after every upload has ended, only files.
    public func inventory() async throws -> S3Inventory {
        let prefix = client.settings.prefix
        return S3Inventory(files: try await client.list(prefix: prefix + "files/"),
                           multipartUploads: try await client.multipartUploads(prefix: prefix).map(\.key),
                           tails: try await client.list(prefix: prefix + "uploads/"))
    }

    /// The bucket exists (some stores would create it on the first write, under a mistyped name),
    /// and the credentials may write and delete in it: a small probe object is written and deleted.
    public func check() async throws {
        try await client.headBucket()
        let key = client.settings.prefix + ".safechat-probe-\(Secrets.randomHex(8))"
        try await client.put(key, ByteBuffer(string: "probe"))
        try await client.delete(key)
    }
}

/// The keys under a store's prefix, by kind.
public struct S3Inventory: Sendable {
    public var files: [String]
    public var multipartUploads: [String]
    public var tails: [String]
}

/// A finished file on S3, read with ranged GETs: pieces of 4 MiB, four at once.
struct S3BlobReader: BlobReader {
    let client: S3Client
    let key: String
    let size: Int64
    var pieceSize: Int { 4 << 20 }
    var readsAhead: Int { 4 }
    var fileDescriptor: Int32? { nil }

    func read(at offset: Int64, count: Int, into buffer: inout ByteBuffer) async throws {
        try await client.read(key, at: offset, count: count, into: &buffer)
    }

    func close() {}
}
