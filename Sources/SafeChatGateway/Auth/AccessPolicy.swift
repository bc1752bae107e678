import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import SafeChatAPI

/// Who may see and change what. Every route asks here; none compares owners itself. A file is its
/// uploader's, and readable by every current member of the session it was sent to; an upload in
/// progress is its uploader's alone. Anyone else is told it does not exist (404), so ids cannot be
/// probed.
struct AccessPolicy: Sendable {
    let sessions: any SessionStore

    func mayRead(_ manifest: FileManifest, _ principal: Principal) async throws -> Bool {
        if manifest.owner == principal.id { return true }
        guard let session = manifest.session else { return false }
        return try await isMember(principal, of: session.sessionID)
    }
    func owns(_ manifest: FileManifest, _ principal: Principal) -> Bool { manifest.owner == principal.id }
    func mayDelete(_ manifest: FileManifest, _ principal: Principal) -> Bool { owns(manifest, principal) }
    func mayAppend(_ upload: UploadState, _ principal: Principal) -> Bool { upload.owner == principal.id }

    func isMember(_ principal: Principal, of session: SessionID) async throws -> Bool {
        try await sessions.isMember(principal.id, of: session)
    }

    /// The manifest of `id` if `principal` may read it; 404 otherwise (missing or not theirs).
    func readableFile(_ id: FileID, by principal: Principal, in registry: any Registry) async throws -> FileManifest {
        guard let manifest = try await registry.file(id), try await mayRead(manifest, principal) else { throw GatewayError.notFound("file") }
        return manifest
    }
}
