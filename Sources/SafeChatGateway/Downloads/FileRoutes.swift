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
    let metrics: GatewayMetrics

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
            guard let id = SessionID(String(text)), try await access.isMember(principal, of: id) else { throw GatewayError.notFound("session") }
            files = try await registry.files(inSession: id)
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
        return try await serve(manifest, range: record.offset..<(record.offset + Int64(record.length)), status: .ok, extraHeaders: [
            HTTPField.Name("SafeChat-Chunk-Index")!: "\(n)",
        ], headOnly: false, context: context)
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
            return try await serve(manifest, range: 0..<size, status: .ok, extraHeaders: [:], headOnly: headOnly, context: context)
        }
        switch ByteRange.parse(rangeHeader, size: size) {
        case .satisfiable(let range):
            return try await serve(manifest, range: range, status: .partialContent,
                             extraHeaders: [.contentRange: "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)"], headOnly: headOnly,
                             context: context)
        case .unsatisfiable:
            throw GatewayError(.rangeNotSatisfiable, .rangeNotSatisfiable, "the requested range is outside the file's \(size) bytes",
                               headers: [.contentRange: "bytes */\(size)"])
        case .ignored:
            return try await serve(manifest, range: 0..<size, status: .ok, extraHeaders: [:], headOnly: headOnly, context: context)
        }
    }

    private func serve(_ manifest: FileManifest, range: Range<Int64>, status: HTTPResponse.Status,
                       extraHeaders: HTTPFields, headOnly: Bool, context: GatewayContext) async throws -> Response {
        let channel = context.channel, record = context.record
        var headers = extraHeaders
        headers[.contentType] = "application/octet-stream"
        headers[.acceptRanges] = "bytes"
        headers[.eTag] = "\"\(manifest.digest)\""
        headers[.contentLength] = "\(range.count)"
        headers[.cacheControl] = "private, no-transform"
        if headOnly { return Response(status: status, headers: headers) }
        let blob = try await blobs.openBlob(manifest.fileID, size: manifest.size)
        // A blob that is not a local file (S3) has its first piece read before the answer starts,
        // so a store that fails now gets a 503, not a cut connection.
        var pieces: BlobPieces?
        if blob.fileDescriptor == nil {
            let started = BlobPieces(range, of: blob, channel: channel)
            do { try await started.waitForFirst() } catch {
                await started.cancel()
                throw error
            }
            pieces = started
        }
        let body = ResponseBody(contentLength: Int(range.count)) { [pieces, metrics] writer in
            metrics.downloadStarted()
            var sent: Int64?
            defer {
                metrics.downloadEnded(sentBytes: sent)
                record.bytesOut = sent
            }
            if pieces == nil, let descriptor = blob.fileDescriptor,
               let region = await FileRegionSender.enqueue(descriptor: descriptor, range: range, on: channel) {
                defer { blob.close() }
                try await writer.write(ByteBuffer())  // the sender's cue to send the file region
                try await region.get()
                try await writer.finish(nil)
                sent = Int64(range.count)
                return
            }
            try await (pieces ?? BlobPieces(range, of: blob, channel: channel)).copy(to: writer)
            sent = Int64(range.count)
        }
        return Response(status: status, headers: headers, body: body)
    }
}

/// A range of a blob read in the reader's pieces, the next ones read while one is written. The
/// buffers go round: once the connection has written a piece, its buffer is read into again, so a
/// download does not fault in fresh memory for every piece. Closes the blob when done.
final class BlobPieces: @unchecked Sendable {
    // Driven by one task at a time: the route, then the response body.
    private let blob: any BlobReader
    private let range: Range<Int64>
    private let channel: any Channel
    private var spares: [ByteBuffer] = []
    private var pending: [Task<ByteBuffer, any Error>] = []
    private var nextRead: Int64
    private var first: ByteBuffer?

    init(_ range: Range<Int64>, of blob: any BlobReader, channel: any Channel) {
        self.blob = blob
        self.range = range
        self.channel = channel
        nextRead = range.lowerBound
    }

    private func readAhead() {
        while pending.count < blob.readsAhead && nextRead < range.upperBound {
            let offset = nextRead, count = Int(min(Int64(blob.pieceSize), range.upperBound - nextRead))
            let spare = spares.popLast() ?? ByteBuffer()
            pending.append(Task { [blob] in
                var buffer = spare
                buffer.clear()
                try await blob.read(at: offset, count: count, into: &buffer)
                return buffer
            })
            nextRead += Int64(count)
        }
    }

    /// Starts reading and waits for the first piece.
    func waitForFirst() async throws {
        readAhead()
        if !pending.isEmpty { first = try await pending.removeFirst().value }
    }

    /// Stops reading (once no read can still be using the blob, it is closed).
    func cancel() async {
        for reading in pending { reading.cancel(); _ = try? await reading.value }
        pending = []
        blob.close()
    }

    func copy(to writer: consuming some ResponseBodyWriter) async throws {
        do {
            readAhead()
            if let first {
                self.first = nil
                try await writer.write(first)
                spares.append(first)
            }
            while !pending.isEmpty {
                let piece = try await pending.removeFirst().value
                readAhead()
                try await writer.write(piece)
                spares.append(piece)
            }
            if let written = await FileRegionSender.enqueueMarker(on: channel) {
                try await writer.write(ByteBuffer())
                try await written.get()
            }
            try await writer.finish(nil)
        } catch {
            await cancel()
            throw error
        }
        blob.close()
    }
}
