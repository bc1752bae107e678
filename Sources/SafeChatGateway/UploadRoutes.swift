import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import SealedStream

/// Uploads of sealed streams: tus 1.0.0 at /uploads, and the prototype's one-shot POST /upload.
struct UploadRoutes: Sendable {
    let auth: Authenticator
    let manager: UploadManager
    let registry: any Registry
    let configuration: GatewayConfiguration

    static let tusVersion = "1.0.0"
    static let extensions = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum"
    static let offsetContentType = "application/offset+octet-stream"

    func register(on router: Router<GatewayContext>) {
        router.post("upload") { request, context in try await upload(request, context) }
        router.on("uploads", method: .options) { _, _ in options() }
        router.on("uploads/:id", method: .options) { _, _ in options() }
        router.post("uploads") { request, context in try await create(request, context) }
        router.head("uploads/:id") { request, context in try await head(request, context) }
        router.patch("uploads/:id") { request, context in try await patch(request, context) }
        router.delete("uploads/:id") { request, context in try await terminate(request, context) }
    }

    // MARK: POST /upload

    /// A whole sealed stream in one request body → 201 {"file_id"}. Not resumable: on any failure
    /// nothing is kept.
    func upload(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let user = try await auth.user(request)
        let length = request.headers[.contentLength].flatMap { Int64($0) }
        let metadata = try parseMetadata(request.headers[.uploadMetadata])
        let state = try await manager.create(owner: user, length: length, metadata: metadata)
        do {
            let (_, manifest) = try await append(request, to: state.uploadID, user: user, offset: 0, checksum: nil)
            guard let manifest else {
                var validator = (try await manager.upload(state.uploadID, for: user)).validator
                var reason = "incomplete"
                do { try validator.finish() } catch { reason = "\(error)" }
                throw GatewayError(.unprocessableContent, "incomplete_stream", "the body ended before the sealed stream did: \(reason)")
            }
            return try jsonResponse(["file_id": manifest.fileID.value], status: .created,
                                    headers: [.location: "/files/\(manifest.fileID)"])
        } catch {
            try? await manager.terminate(state.uploadID, user: user)
            throw error
        }
    }

    // MARK: tus

    func options() -> Response {
        Response(status: .noContent, headers: [
            .tusVersion: Self.tusVersion, .tusExtension: Self.extensions,
            .tusMaxSize: "\(configuration.maxFileSize)", .tusChecksumAlgorithm: "sha1,sha256",
        ])
    }

    func create(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let user = try await auth.user(request)
        try requireTusVersion(request)
        // A client sealing on the fly does not know the sealed length up front: it defers it, and the
        // stream's FINAL record ends the upload.
        let length: Int64?
        switch (request.headers[.uploadLength], request.headers[.uploadDeferLength]) {
        case (let text?, nil):
            guard let value = Int64(text), value >= 0 else { throw GatewayError.badRequest("Upload-Length must be a non-negative integer") }
            length = value
        case (nil, "1"?):
            length = nil
        case (nil, _?):
            throw GatewayError.badRequest("Upload-Defer-Length must be 1")
        case (nil, nil):
            throw GatewayError.badRequest("Upload-Length or Upload-Defer-Length: 1 is required")
        case (_?, _?):
            throw GatewayError.badRequest("send Upload-Length or Upload-Defer-Length, not both")
        }
        let metadata = try parseMetadata(request.headers[.uploadMetadata])
        let state = try await manager.create(owner: user, length: length, metadata: metadata)
        var headers = tusHeaders(state)
        headers[.location] = "/uploads/\(state.uploadID)"
        // creation-with-upload: the body, if any, is the first PATCH.
        if request.headers[.contentType] == Self.offsetContentType {
            let (newState, _) = try await append(request, to: state.uploadID, user: user, offset: 0, checksum: try parseChecksum(request))
            headers[.uploadOffset] = "\(newState.offset)"
        }
        return Response(status: .created, headers: headers)
    }

    func head(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let user = try await auth.user(request)
        let id = try fileID(context)
        if let manifest = try await registry.file(id), manifest.owner == user {
            // Already complete: report it as fully uploaded.
            return Response(status: .ok, headers: [
                .tusResumable: Self.tusVersion, .uploadOffset: "\(manifest.size)", .uploadLength: "\(manifest.size)",
                .cacheControl: "no-store",
            ])
        }
        let state = try await manager.upload(id, for: user)
        var headers = tusHeaders(state)
        headers[.uploadOffset] = "\(state.offset)"
        if state.length == nil { headers[.uploadDeferLength] = "1" }
        if let metadata = request.headers[.uploadMetadata] ?? encodeMetadata(state.metadata) { headers[.uploadMetadata] = metadata }
        return Response(status: .ok, headers: headers)
    }

    func patch(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let user = try await auth.user(request)
        try requireTusVersion(request)
        let id = try fileID(context)
        guard request.headers[.contentType] == Self.offsetContentType else {
            throw GatewayError(.unsupportedMediaType, "bad_content_type", "PATCH needs Content-Type: \(Self.offsetContentType)")
        }
        guard let offsetText = request.headers[.uploadOffset], let offset = Int64(offsetText), offset >= 0 else {
            throw GatewayError.badRequest("Upload-Offset must be a non-negative integer")
        }
        if let manifest = try await registry.file(id), manifest.owner == user {
            guard offset == manifest.size else {
                throw GatewayError(.conflict, "offset_mismatch", "the upload is complete at \(manifest.size) bytes")
            }
            return Response(status: .noContent, headers: [.tusResumable: Self.tusVersion, .uploadOffset: "\(manifest.size)"])
        }
        if let lengthText = request.headers[.uploadLength] {
            guard let length = Int64(lengthText), length >= offset else { throw GatewayError.badRequest("Upload-Length must be an integer no smaller than Upload-Offset") }
            try await manager.declareLength(id, user: user, length: length)
        }
        let (state, _) = try await append(request, to: id, user: user, offset: offset, checksum: try parseChecksum(request))
        var headers = tusHeaders(state)
        headers[.uploadOffset] = "\(state.offset)"
        return Response(status: .noContent, headers: headers)
    }

    func terminate(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let user = try await auth.user(request)
        try requireTusVersion(request)
        try await manager.terminate(try fileID(context), user: user)
        return Response(status: .noContent, headers: [.tusResumable: Self.tusVersion])
    }

    // MARK: shared

    /// Streams the request body into the upload. A broken connection keeps every validated byte
    /// that arrived (the client resumes from HEAD's offset); a refused body changes nothing.
    private func append(_ request: Request, to id: FileID, user: String, offset: Int64,
                        checksum: (DigestKind, [UInt8])?) async throws -> (UploadState, FileManifest?) {
        let session = try await manager.beginAppend(id, user: user, offset: offset, checksum: checksum)
        do {
            for try await buffer in request.body {
                do {
                    try session.append(buffer)
                } catch {
                    throw RefusedBody(reason: error)
                }
            }
        } catch let refused as RefusedBody {
            _ = try? await manager.endAppend(session, .refused)
            if let error = refused.reason as? GatewayError { throw error }
            manager.logger.error("upload append failed", metadata: ["upload_id": "\(id)", "error": "\(refused.reason)"])
            throw GatewayError(.internalServerError, "storage_error", "the gateway could not store the upload; nothing was kept")
        } catch {
            // The body stream failed: the client went away or the server is shutting down.
            _ = try await manager.endAppend(session, .interrupted)
            throw error
        }
        return try await manager.endAppend(session, .completed)
    }

    /// A body the gateway refuses (bad framing, over a limit, a storage failure), as opposed to one
    /// the network cut short.
    private struct RefusedBody: Error { let reason: any Error }

    private func tusHeaders(_ state: UploadState) -> HTTPFields {
        var headers: HTTPFields = [.tusResumable: Self.tusVersion, .cacheControl: "no-store",
                                   .uploadExpires: httpDate(state.expiresAt)]
        if let length = state.length { headers[.uploadLength] = "\(length)" }
        return headers
    }

    private func requireTusVersion(_ request: Request) throws {
        guard request.headers[.tusResumable] == Self.tusVersion else {
            throw GatewayError(.preconditionFailed, "unsupported_tus_version", "Tus-Resumable: \(Self.tusVersion) is required",
                               headers: [.tusVersion: Self.tusVersion])
        }
    }

    /// tus Upload-Metadata: "key base64,key2 base64", at most 4 KiB, keys ASCII without spaces or commas.
    private func parseMetadata(_ header: String?) throws -> [String: String] {
        guard let header, !header.isEmpty else { return [:] }
        guard header.utf8.count <= 4096 else { throw GatewayError.badRequest("Upload-Metadata is over 4 KiB") }
        var out: [String: String] = [:]
        for pair in header.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = pair.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), !parts[0].isEmpty, parts[0].allSatisfy({ $0.isASCII && !$0.isWhitespace }),
                  out[String(parts[0])] == nil
            else { throw GatewayError.badRequest("Upload-Metadata must be 'key base64' pairs separated by commas") }
            let value = parts.count == 2 ? String(parts[1]) : ""
            guard value.isEmpty || Data(base64Encoded: value) != nil else {
                throw GatewayError.badRequest("Upload-Metadata value for '\(parts[0])' is not base64")
            }
            out[String(parts[0])] = value
        }
        return out
    }

    private func encodeMetadata(_ metadata: [String: String]) -> String? {
        metadata.isEmpty ? nil : metadata.sorted { $0.key < $1.key }.map { $0.value.isEmpty ? $0.key : "\($0.key) \($0.value)" }.joined(separator: ",")
    }

    /// tus checksum extension: "Upload-Checksum: sha1|sha256 <base64 digest of this body>".
    private func parseChecksum(_ request: Request) throws -> (DigestKind, [UInt8])? {
        guard let header = request.headers[.uploadChecksum] else { return nil }
        let parts = header.split(separator: " ")
        guard parts.count == 2, let digest = Data(base64Encoded: String(parts[1])) else {
            throw GatewayError.badRequest("Upload-Checksum must be '<algorithm> <base64 digest>'")
        }
        guard let algorithm = DigestKind(rawValue: String(parts[0])) else {
            throw GatewayError.badRequest("unsupported checksum algorithm '\(parts[0])' (sha1, sha256)")
        }
        return (algorithm, Array(digest))
    }
}

func fileID(_ context: GatewayContext) throws -> FileID {
    guard let text = context.parameters.get("id"), let id = FileID(text) else {
        throw GatewayError(.badRequest, "invalid_id", "an id is 32 lowercase hexadecimal digits")
    }
    return id
}

func httpDate(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
    return formatter.string(from: date)
}

extension HTTPField.Name {
    static let tusResumable = Self("Tus-Resumable")!
    static let tusVersion = Self("Tus-Version")!
    static let tusExtension = Self("Tus-Extension")!
    static let tusMaxSize = Self("Tus-Max-Size")!
    static let tusChecksumAlgorithm = Self("Tus-Checksum-Algorithm")!
    static let uploadLength = Self("Upload-Length")!
    static let uploadOffset = Self("Upload-Offset")!
    static let uploadMetadata = Self("Upload-Metadata")!
    static let uploadDeferLength = Self("Upload-Defer-Length")!
    static let uploadExpires = Self("Upload-Expires")!
    static let uploadChecksum = Self("Upload-Checksum")!
    static let httpMethodOverride = Self("X-HTTP-Method-Override")!
}
