import Foundation
import NIOPosix
import SafeChatAPI
import SealedFormat

/// What the gateway records: finished files and uploads in progress. The routes only see this
/// protocol, so a server-grade backend can replace the embedded JSON one.
public protocol Registry: Sendable {
    func putFile(_ manifest: FileManifest) async throws
    func file(_ id: FileID) async throws -> FileManifest?
    /// `owner`'s files, oldest first.
    func files(ownedBy owner: UserID) async throws -> [FileManifest]
    /// The files sent to session `id`, oldest first.
    func files(inSession id: SessionID) async throws -> [FileManifest]
    /// How many bytes each owner's finished files hold (the quota's starting point).
    func storedBytesByOwner() async throws -> [UserID: Int64]
    func allFiles() async throws -> [FileManifest]
    func removeFile(_ id: FileID) async throws
    func putUpload(_ state: UploadState) async throws
    func upload(_ id: FileID) async throws -> UploadState?
    func uploads() async throws -> [UploadState]
    func removeUpload(_ id: FileID) async throws
    /// The identity bundle `user` published (the gateway only keeps it; clients verify it).
    func putIdentity(_ bundle: IdentityBundle, of user: UserID, at time: Date) async throws
    func identity(of user: UserID) async throws -> (bundle: IdentityBundle, updatedAt: Date)?
    func removeIdentity(of user: UserID) async throws
    /// Throws unless the registry can be read and written now (for readiness).
    func check() async throws
}

extension Registry {
    /// For registries that hold every manifest in memory anyway.
    public func files(inSession id: SessionID) async throws -> [FileManifest] {
        try await allFiles().filter { $0.session?.sessionID == id }.sorted { $0.createdAt < $1.createdAt }
    }

    public func storedBytesByOwner() async throws -> [UserID: Int64] {
        try await allFiles().reduce(into: [:]) { $0[$1.owner, default: 0] += $1.size }
    }
}
