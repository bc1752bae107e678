import Foundation
import NIOPosix
import SafeChatAPI
import SealedFormat

/// What the gateway records: finished files and uploads in progress. The routes only see this
/// protocol, so a server-grade backend can replace the embedded JSON one.
public protocol Registry: Sendable {
    func putFile(_ manifest: FileManifest) async throws
    func file(_ id: FileID) async throws -> FileManifest?
    func files(ownedBy owner: UserID) async throws -> [FileManifest]
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
}
