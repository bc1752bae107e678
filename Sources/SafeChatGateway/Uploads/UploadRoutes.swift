import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import SafeChatAPI
import SealedFormat

/// Uploads of sealed streams: tus 1.0.0 at /uploads, and the prototype's one-shot POST /upload.
struct UploadRoutes: Sendable {
    let manager: UploadManager
    let registry: any Registry
    let access: AccessPolicy
    let configuration: GatewayConfiguration
    let metrics: GatewayMetrics

    /// `authenticated` routes need a bearer token; `open` ones (OPTIONS, tus discovery) do not.
    func register(authenticated: RouterGroup<GatewayContext>, open: Router<GatewayContext>) {
        authenticated.post("upload") { request, context in try await upload(request, context) }
        open.on("uploads", method: .options) { _, _ in options() }
        open.on("uploads/:id", method: .options) { _, _ in options() }
        authenticated.post("uploads") { request, context in try await create(request, context) }
        authenticated.head("uploads/:id") { request, context in try await head(request, context) }
        authenticated.patch("uploads/:id") { request, context in try await patch(request, context) }
        authenticated.delete("uploads/:id") { request, context in try await terminate(request, context) }
    }

    // MARK: POST /upload

    /// A whole sealed stream in one request body → 201 {"file_id"}. Not resumable: on any failure
    /// nothing is kept.
    func upload(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let length = request.headers[.contentLength].flatMap { Int64($0) }
        var metadata = try parseMetadata(request.headers[.uploadMetadata])
        let declared = try declaredHeader(&metadata)
        let session = try await checkedSession(request.uri.queryParameters.get("session").map { String($0) },
                                               epoch: request.uri.queryParameters.get("epoch").map { String($0) }, for: principal)
        // The answer comes after the whole body, so the id can be the one bound to the stream's header.
        let body = try await PeekedBody.reading(request.body, upTo: StreamHeader.encodedLength)
        let state = try await manager.create(owner: principal.id, length: length, metadata: metadata, session: session,
                                             header: declared ?? body.streamHeader)
        do {
            let (_, manifest) = try await append(body, context, to: state.uploadID, offset: 0, declaredLength: nil, checksum: nil)
            guard let manifest else {
                var validator = (try await manager.upload(state.uploadID, for: principal)).validator
                var reason = "incomplete"
                do { try validator.finish() } catch { reason = "\(error)" }
                throw GatewayError(.unprocessableContent, .incompleteStream, "the body ended before the sealed stream did: \(reason)")
            }
            return try jsonResponse(UploadReply(fileID: manifest.fileID), status: .created, headers: [.location: "/files/\(manifest.fileID)"])
        } catch {
            try? await manager.terminate(state.uploadID, principal: principal)  // best effort: the client gets the real error
            throw error
        }
    }

    // MARK: tus

    func options() -> Response {
        Response(status: .noContent, headers: Self.discoveryHeaders(maxFileSize: configuration.maxFileSize))
    }

    /// What tus discovery (OPTIONS) answers, with or without CORS.
    static func discoveryHeaders(maxFileSize: Int64) -> HTTPFields {
        [.tusResumable: Tus.version, .tusVersion: Tus.version, .tusExtension: Tus.extensions,
         .tusMaxSize: "\(maxFileSize)", .tusChecksumAlgorithm: Tus.checksumAlgorithms]
    }

    func create(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
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
        var metadata = try parseMetadata(request.headers[.uploadMetadata])
        let declared = try declaredHeader(&metadata)
        let checksum = try parseChecksum(request)
        let withBody = request.headers[.contentType] == Tus.offsetContentType
        func text(_ key: String) -> String? { metadata[key].flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) } }
        let session = try await checkedSession(text(Tus.MetadataKey.session), epoch: text(Tus.MetadataKey.epoch), for: principal)
        // creation-with-upload: a body that starts with the stream header binds the id to it, as a
        // declared header does.
        let body = withBody ? try await PeekedBody.reading(request.body, upTo: StreamHeader.encodedLength) : nil
        let state = try await manager.create(owner: principal.id, length: length, metadata: metadata, session: session,
                                             header: declared ?? body?.streamHeader)
        var headers = tusHeaders(state)
        headers[.location] = "\(Tus.uploadsPath)/\(state.uploadID)"
        // The body, if any, is the first PATCH. If it is refused, the upload it would have started
        // is not left behind; if the connection breaks, it is kept to resume.
        if let body {
            do {
                let (newState, _) = try await append(body, context, to: state.uploadID, offset: 0, declaredLength: nil, checksum: checksum)
                headers[.uploadOffset] = "\(newState.offset)"
            } catch let error as GatewayError {
                try? await manager.terminate(state.uploadID, principal: principal)  // best effort; the refusal is what the client needs
                throw error
            }
        }
        return Response(status: .created, headers: headers)
    }

    func head(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        try requireTusVersion(request)
        let id = try fileID(context)
        if let manifest = try await manager.finishedFile(id, for: principal) {
            // Already complete: report it as fully uploaded.
            var headers: HTTPFields = [.tusResumable: Tus.version, .uploadOffset: "\(manifest.size)", .uploadLength: "\(manifest.size)",
                                       .cacheControl: "no-store"]
            if let metadata = encodeMetadata(manifest.metadata) { headers[.uploadMetadata] = metadata }
            return Response(status: .ok, headers: headers)
        }
        let state = try await manager.upload(id, for: principal)
        var headers = tusHeaders(state)
        headers[.uploadOffset] = "\(state.offset)"
        if state.length == nil { headers[.uploadDeferLength] = "1" }
        if let metadata = encodeMetadata(state.metadata) { headers[.uploadMetadata] = metadata }
        return Response(status: .ok, headers: headers)
    }

    func patch(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        try requireTusVersion(request)
        let id = try fileID(context)
        guard request.headers[.contentType] == Tus.offsetContentType else {
            throw GatewayError(.unsupportedMediaType, .badContentType, "PATCH needs Content-Type: \(Tus.offsetContentType)")
        }
        guard let offsetText = request.headers[.uploadOffset], let offset = Int64(offsetText), offset >= 0 else {
            throw GatewayError.badRequest("Upload-Offset must be a non-negative integer")
        }
        if let manifest = try await manager.finishedFile(id, for: principal) {
            guard offset == manifest.size else {
                throw GatewayError(.conflict, .offsetMismatch, "the upload is complete at \(manifest.size) bytes")
            }
            return Response(status: .noContent, headers: [.tusResumable: Tus.version, .uploadOffset: "\(manifest.size)"])
        }
        var declaredLength: Int64?
        if let lengthText = request.headers[.uploadLength] {
            guard let length = Int64(lengthText), length >= offset else { throw GatewayError.badRequest("Upload-Length must be an integer no smaller than Upload-Offset") }
            declaredLength = length
        }
        let checksum = try parseChecksum(request)
        let (state, _) = try await append(request.body, context, to: id, offset: offset, declaredLength: declaredLength, checksum: checksum)
        var headers = tusHeaders(state)
        headers[.uploadOffset] = "\(state.offset)"
        return Response(status: .noContent, headers: headers)
    }

    func terminate(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        try requireTusVersion(request)
        try await manager.terminate(try fileID(context), principal: principal)
        return Response(status: .noContent, headers: [.tusResumable: Tus.version])
    }

    // MARK: shared

    /// The session an upload names (tus metadata `session` and `epoch`, or POST /upload's query),
    /// if any: the uploader must be a current member (else 404, as for anyone outside), and the
    /// epoch the current one (else 409: the client fetches the new key and seals again).
    private func checkedSession(_ session: String?, epoch: String?, for principal: Principal) async throws -> FileSession? {
        guard let session else {
            guard epoch == nil else { throw GatewayError.badRequest("an epoch without a session") }
            return nil
        }
        guard let id = SessionID(session), let number = epoch.flatMap({ UInt32($0) }) else {
            throw GatewayError.badRequest("session must be a session id and epoch its number")
        }
        guard let summary = try await access.sessions.summary(id), summary.members.contains(principal.id) else { throw GatewayError.notFound("session") }
        let current = summary.currentEpoch
        guard number == current else {
            throw GatewayError(.conflict, .epochConflict, "the session is at epoch \(current); seal under its current key")
        }
        return FileSession(sessionID: id, epoch: number)
    }

    /// Streams the request body into the upload. A broken or stalled connection keeps every
    /// validated byte that arrived (the client resumes from HEAD's offset); a refused body changes
    /// nothing.
    private func append<Body: AsyncSequence>(_ body: Body, _ context: GatewayContext, to id: FileID, offset: Int64, declaredLength: Int64?,
                                             checksum: (DigestKind, [UInt8])?) async throws -> (UploadState, FileManifest?)
    where Body.Element == ByteBuffer {
        let principal = try context.requirePrincipal()
        let session = try await manager.beginAppend(id, principal: principal, offset: offset, declaredLength: declaredLength, checksum: checksum)
        metrics.uploadStarted()
        var accepted: Int64 = 0
        defer {
            metrics.uploadEnded(acceptedBytes: accepted)
            context.record.bytesIn = accepted
        }
        do {
            // A body that stalls is cut off by RequestGuard (the connection closes, and the loop throws).
            for try await buffer in body {
                do {
                    try await session.append(buffer)
                } catch {
                    throw RefusedBody(reason: error)
                }
            }
        } catch let refused as RefusedBody {
            _ = try? await manager.endAppend(session, .refused)  // rolling back; the refusal is the answer
            if !(refused.reason is GatewayError) {
                manager.logger.error("upload append failed", metadata: ["upload_id": "\(id)", "error": "\(refused.reason)"])
            }
            throw GatewayError.storage(refused.reason)
        } catch {
            // The body stream failed: the client went away, stalled, or the server is shutting down
            // (its grace period over, the request is cancelled: what arrived is kept all the same).
            let (state, _) = try await Self.uncancelled { [manager] in
                do { try await session.makeDurable() } catch {
                    _ = try? await manager.endAppend(session, .refused)  // nothing durable to keep
                    throw error
                }
                return try await manager.endAppend(session, .interrupted)
            }
            accepted = state.offset - offset
            throw error
        }
        let ended = try await Self.uncancelled { [manager] in
            do { try await session.makeDurable() } catch {
                _ = try? await manager.endAppend(session, .refused)  // the storage error is the answer
                manager.logger.error("upload not made durable", metadata: ["upload_id": "\(id)", "error": "\(error)"])
                throw GatewayError.storage(error)
            }
            return try await manager.endAppend(session, .completed)
        }
        accepted = ended.0.offset - offset
        return ended
    }

    /// Runs `work` to its end even if the request is cancelled (a shutdown past its grace period):
    /// bytes that arrived are made durable and recorded, not dropped halfway.
    private static func uncancelled<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Task { try await work() }.value
    }

    /// A body the gateway refuses (bad framing, over a limit, a storage failure), as opposed to one
    /// the network cut short.
    private struct RefusedBody: Error { let reason: any Error }

    private func tusHeaders(_ state: UploadState) -> HTTPFields {
        var headers: HTTPFields = [.tusResumable: Tus.version, .cacheControl: "no-store",
                                   .uploadExpires: httpDate(state.expiresAt)]
        if let length = state.length { headers[.uploadLength] = "\(length)" }
        return headers
    }

    private func requireTusVersion(_ request: Request) throws {
        guard request.headers[.tusResumable] == Tus.version else {
            throw GatewayError(.preconditionFailed, .unsupportedTusVersion, "Tus-Resumable: \(Tus.version) is required",
                               headers: [.tusVersion: Tus.version])
        }
    }

    /// The stream header an upload declares in its metadata (`header`: base64 of the 92 bytes), taken
    /// out of the metadata: the manifest carries the stream's header anyway.
    private func declaredHeader(_ metadata: inout [String: String]) throws -> StreamHeader? {
        guard let text = metadata.removeValue(forKey: Tus.MetadataKey.header) else { return nil }
        guard let bytes = Data(base64Encoded: text), bytes.count == StreamHeader.encodedLength,
              let header = try? StreamHeader.parse(Array(bytes)) else {
            throw GatewayError.badRequest("Upload-Metadata 'header' must be the base64 of a 92-byte sealed-stream header")
        }
        return header
    }

    /// tus Upload-Metadata: "key base64,key2 base64", at most 4 KiB, keys ASCII without spaces or commas.
    private func parseMetadata(_ header: String?) throws -> [String: String] {
        guard let header, !header.isEmpty else { return [:] }
        guard header.utf8.count <= Tus.maxMetadataLength else { throw GatewayError.badRequest("Upload-Metadata is over 4 KiB") }
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
        throw GatewayError(.badRequest, .invalidID, "an id is 32 lowercase hexadecimal digits")
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
    static let tusResumable = Self(Tus.Header.resumable)!
    static let tusVersion = Self(Tus.Header.version)!
    static let tusExtension = Self(Tus.Header.extensions)!
    static let tusMaxSize = Self(Tus.Header.maxSize)!
    static let tusChecksumAlgorithm = Self(Tus.Header.checksumAlgorithm)!
    static let uploadLength = Self(Tus.Header.uploadLength)!
    static let uploadOffset = Self(Tus.Header.uploadOffset)!
    static let uploadMetadata = Self(Tus.Header.uploadMetadata)!
    static let uploadDeferLength = Self(Tus.Header.uploadDeferLength)!
    static let uploadExpires = Self(Tus.Header.uploadExpires)!
    static let uploadChecksum = Self(Tus.Header.uploadChecksum)!
    static let httpMethodOverride = Self(Tus.Header.methodOverride)!
}
