import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SafeChatAPI
import SealedFormat

/// Downloads and file management: GET/HEAD /download/{id} (ranges), /files, /files/{id},
/// /files/{id}/chunks/{n}, DELETE /files/{id}. Who sees what is the ``AccessPolicy``'s to say; for
/// anyone it refuses, a file does not exist (404).
struct FileRoutes: Sendable {
    let registry: any Registry
    let blobs: any BlobStore
    let uploads: UploadManager
    let access: AccessPolicy

    func register(on router: RouterGroup<GatewayContext>) {
        router.get("download/:id") { request, context in try await download(request, context, headOnly: false) }
        router.head("download/:id") { request, context in try await download(request, context, headOnly: true) }
        router.get("files") { request, context in try await list(request, context) }
        router.get("files/:id") { request, context in try jsonResponse(try await manifest(request, context)) }
        router.get("files/:id/chunks/:n") { request, context in try await chunk(request, context) }
        router.delete("files/:id") { request, context in try await remove(request, context) }
    }

    private func manifest(_ request: Request, _ context: GatewayContext) async throws -> FileManifest {
        try await access.readableFile(try fileID(context), by: try context.requirePrincipal(), in: registry)
    }

    func list(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        var files = try await registry.files(ownedBy: principal.id)
        if let text = request.uri.queryParameters.get("session") {
            // A session's files, for its members.
            guard let id = SessionID(String(text)), await access.isMember(principal, of: id) else { throw GatewayError.notFound("session") }
            files = try await registry.allFiles().filter { $0.session?.sessionID == id }.sorted { $0.createdAt < $1.createdAt }
        }
        return try jsonResponse(FileListing(files: files.map(FileListing.Entry.init)))
    }

    func remove(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let manifest = try await manifest(request, context)
        // Members may read a session's files; only the uploader deletes one.
        guard access.mayDelete(manifest, try context.requirePrincipal()) else {
            throw GatewayError(.forbidden, .forbidden, "only the file's uploader may delete it")
        }
        try await uploads.removeFile(manifest)
        context.logger.info("file deleted", metadata: ["file_id": "\(manifest.fileID)"])
        return Response(status: .noContent)
    }

    func chunk(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let manifest = try await manifest(request, context)
        guard let text = context.parameters.get("n"), let n = Int(text), n >= 0, n < manifest.records.count else {
            throw GatewayError.notFound("chunk")
        }
        let record = manifest.records[n]
        return try serve(manifest, range: record.offset..<(record.offset + Int64(record.length)), status: .ok, extraHeaders: [
            HTTPField.Name("SafeChat-Chunk-Index")!: "\(n)",
        ], headOnly: false, channel: context.channel)
    }

    /// The sealed stream, whole or by RFC 9110 byte range (a-b, a-, -n), with a strong ETag.
    func download(_ request: Request, _ context: GatewayContext, headOnly: Bool) async throws -> Response {
        let manifest = try await manifest(request, context)
        let etag = "\"\(manifest.digest)\""
        var rangeHeader = request.headers[.range]
        // If-Range: serve the range only if the client's copy is this exact file.
        if let ifRange = request.headers[.ifRange], ifRange != etag { rangeHeader = nil }
        let size = manifest.size
        guard let rangeHeader else {
            return try serve(manifest, range: 0..<size, status: .ok, extraHeaders: [:], headOnly: headOnly, channel: context.channel)
        }
        switch ByteRange.parse(rangeHeader, size: size) {
        case .satisfiable(let range):
            return try serve(manifest, range: range, status: .partialContent,
                             extraHeaders: [.contentRange: "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)"], headOnly: headOnly,
                             channel: context.channel)
        case .unsatisfiable:
            throw GatewayError(.rangeNotSatisfiable, .rangeNotSatisfiable, "the requested range is outside the file's \(size) bytes",
                               headers: [.contentRange: "bytes */\(size)"])
        case .ignored:
            return try serve(manifest, range: 0..<size, status: .ok, extraHeaders: [:], headOnly: headOnly, channel: context.channel)
        }
    }

    private func serve(_ manifest: FileManifest, range: Range<Int64>, status: HTTPResponse.Status,
                       extraHeaders: HTTPFields, headOnly: Bool, channel: any Channel) throws -> Response {
        var headers = extraHeaders
        headers[.contentType] = "application/octet-stream"
        headers[.acceptRanges] = "bytes"
        headers[.eTag] = "\"\(manifest.digest)\""
        headers[.contentLength] = "\(range.count)"
        headers[.cacheControl] = "private, no-transform"
        if headOnly { return Response(status: status, headers: headers) }
        let blob = try blobs.openBlob(manifest.fileID)
        let body = ResponseBody(contentLength: Int(range.count)) { writer in
            if let descriptor = blob.fileDescriptor,
               let sent = await FileRegionSender.enqueue(descriptor: descriptor, range: range, on: channel) {
                defer { blob.close() }
                try await writer.write(ByteBuffer())  // the sender's cue to send the file region
                try await sent.get()
                try await writer.finish(nil)
                return
            }
            try await Self.copy(range, of: blob, to: writer)
        }
        return Response(status: status, headers: headers, body: body)
    }
}

extension FileRoutes {
    /// Sends `range` of `blob` through `writer`, read in pieces on the blob threads, the next
    /// pieces read while one is written. The buffers go round: once the connection has written a
    /// piece, its buffer is ours alone again and is read into in place, so a download does not
    /// fault in fresh memory for every piece. Closes `blob`.
    static func copy(_ range: Range<Int64>, of blob: any BlobReader, to writer: consuming some ResponseBodyWriter) async throws {
        let pieceSize = Int64(DirectIO.readSize)
        // Hands `buffer` over (the caller's variable is emptied, so the read owns it alone and
        // fills it in place) and reads the piece at `offset` into it.
        func read(_ offset: Int64, into buffer: inout ByteBuffer) -> EventLoopFuture<ByteBuffer> {
            let handed = NIOLockedValueBox<ByteBuffer?>(buffer)
            buffer = ByteBuffer()
            return DirectIO.threads.runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.next()) {
                var piece = handed.withLockedValue { value in defer { value = nil }; return value! }
                piece.clear()
                try blob.read(at: offset, count: Int(min(pieceSize, range.upperBound - offset)), into: &piece)
                return piece
            }
        }
        var spares: [ByteBuffer] = []
        var pending = CircularBuffer<EventLoopFuture<ByteBuffer>>()
        var nextRead = range.lowerBound
        func readAhead() {
            while pending.count < DirectIO.readsAhead && nextRead < range.upperBound {
                var buffer = spares.popLast() ?? ByteBuffer()
                pending.append(read(nextRead, into: &buffer))
                nextRead += min(pieceSize, range.upperBound - nextRead)
            }
        }
        do {
            readAhead()
            while let reading = pending.popFirst() {
                let piece = try await reading.get()
                readAhead()
                try await writer.write(piece)
                spares.append(piece)
            }
            try await writer.finish(nil)
        } catch {
            // The descriptor stays open until no read can still be using it.
            for reading in pending { _ = try? await reading.get() }
            blob.close()
            throw error
        }
        blob.close()
    }
}
