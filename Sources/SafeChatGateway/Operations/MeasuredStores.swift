import Foundation
import SafeChatAPI
import SealedFormat

/// A registry whose every operation is timed and counted (``MetricCatalog/storeDuration``).
struct MeasuredRegistry: Registry {
    let inner: any Registry
    let metrics: GatewayMetrics

    private func measure<T>(_ body: () async throws -> T) async throws -> T { try await metrics.measure(.registry, body) }

    func putFile(_ manifest: FileManifest) async throws { try await measure { try await inner.putFile(manifest) } }
    func file(_ id: FileID) async throws -> FileManifest? { try await measure { try await inner.file(id) } }
    func files(ownedBy owner: UserID) async throws -> [FileManifest] { try await measure { try await inner.files(ownedBy: owner) } }
    func files(inSession id: SessionID) async throws -> [FileManifest] { try await measure { try await inner.files(inSession: id) } }
    func storedBytesByOwner() async throws -> [UserID: Int64] { try await measure { try await inner.storedBytesByOwner() } }
    func allFiles() async throws -> [FileManifest] { try await measure { try await inner.allFiles() } }
    func removeFile(_ id: FileID) async throws { try await measure { try await inner.removeFile(id) } }
    func putUpload(_ state: UploadState) async throws { try await measure { try await inner.putUpload(state) } }
    func upload(_ id: FileID) async throws -> UploadState? { try await measure { try await inner.upload(id) } }
    func uploads() async throws -> [UploadState] { try await measure { try await inner.uploads() } }
    func removeUpload(_ id: FileID) async throws { try await measure { try await inner.removeUpload(id) } }
    func putIdentity(_ bundle: IdentityBundle, of user: UserID, at time: Date) async throws {
        try await measure { try await inner.putIdentity(bundle, of: user, at: time) }
    }
    func identity(of user: UserID) async throws -> (bundle: IdentityBundle, updatedAt: Date)? {
        try await measure { try await inner.identity(of: user) }
    }
    func removeIdentity(of user: UserID) async throws { try await measure { try await inner.removeIdentity(of: user) } }
    func check() async throws { try await measure { try await inner.check() } }
}

/// A blob store whose operations are timed and counted; appends and reads inside an open blob
/// are part of the transfer they serve (``MetricCatalog/uploadBytes``, ``MetricCatalog/downloadBytes``).
struct MeasuredBlobStore: BlobStore {
    let inner: any BlobStore
    let metrics: GatewayMetrics

    private func measure<T>(_ body: () async throws -> T) async throws -> T { try await metrics.measure(.blob, body) }

    func openPartial(_ id: FileID, at offset: Int64, checkpoint: BlobCheckpoint?, sizeLimit: Int64) async throws -> any PartialBlob {
        try await measure { try await inner.openPartial(id, at: offset, checkpoint: checkpoint, sizeLimit: sizeLimit) }
    }
    func removePartial(_ id: FileID, checkpoint: BlobCheckpoint?) async throws {
        try await measure { try await inner.removePartial(id, checkpoint: checkpoint) }
    }
    func promote(_ id: FileID, size: Int64, checkpoint: BlobCheckpoint?) async throws {
        try await measure { try await inner.promote(id, size: size, checkpoint: checkpoint) }
    }
    func openBlob(_ id: FileID, size: Int64) async throws -> any BlobReader { try await measure { try await inner.openBlob(id, size: size) } }
    func removeBlob(_ id: FileID) async throws { try await measure { try await inner.removeBlob(id) } }
    func check() async throws { try await measure { try await inner.check() } }
}
