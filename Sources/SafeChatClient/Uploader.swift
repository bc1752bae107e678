import AsyncHTTPClient
import Foundation
import NIOCore
import SafeChatAPI
import SealedStream

/// Seals files on the fly and streams them to the gateway with tus, resuming after any interruption.
///
/// Resuming re-seals the file with the salt it was first sealed with, so the bytes are the same and
/// the gateway can take them from its offset. That is only safe for the same plaintext, so the
/// uploader keeps, 0600 in the client directory, the upload's URL, its stream header, the file's size
/// and mtime, and the GCM tag of every record it sealed; on resume each re-sealed record's tag must
/// match the one recorded, else the file changed and the upload starts afresh with a new salt.
public struct Uploader: Sendable {
    public let client: GatewayClient
    public let directory: ClientDirectory
    public let key: SessionKey
    public let options: SealOptions
    /// The session and epoch `key` belongs to, for a file sent to a session; nil for a personal file.
    public let session: FileSession?

    public init(client: GatewayClient, directory: ClientDirectory, key: SessionKey, options: SealOptions = SealOptions(),
                session: FileSession? = nil) {
        self.client = client
        self.directory = directory
        self.key = key
        self.options = options
        self.session = session
    }

    struct ResumeState: Codable {
        let path: String
        let size: Int64
        let modified: [Int64]
        let server: String
        let location: String
        let header: StreamHeader
    }

    /// Uploads `path` and returns its file id. `progress` gets the plaintext bytes sealed so far.
    public func upload(path: String, progress: @escaping @Sendable (Int) -> Void = { _ in }) async throws -> String {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        let fd = open(absolute, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileError(path: path, operation: "upload (not a regular file)", errno: EINVAL) }
        let modified = [Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)]
        let uploads = try directory.ensure("uploads")
        let name = Secrets.hex(SHA256Hasher.hash(Array("\(client.server)\n\(absolute)".utf8)))
        let stateFile = "\(uploads)/\(name).json", tagsFile = "\(uploads)/\(name).tags"

        // Resume only the same file, unchanged by size and mtime, sealed under this key (Sealer
        // refuses a header made with another key) on an upload the gateway still has.
        if let state = directory.read(ResumeState.self, from: stateFile), state.size == Int64(info.st_size),
           state.modified == modified, state.server == client.server,
           let sealer = try? Sealer(key: key, resuming: state.header),
           try await client.uploadOffset(state.location) != nil {
            do {
                let id = try await resume(fd: fd, path: path, sealer: sealer, location: state.location, tagsFile: tagsFile, progress: progress)
                forgetResumeState(stateFile, tagsFile)
                return id
            } catch ClientError.fileChanged {
                // Same name, size and mtime, different bytes: never re-seal it under the old salt.
                // Best effort: an abandoned upload the gateway keeps anyway expires on its own.
                _ = try? await client.send(client.request(.DELETE, state.location, headers: [("Tus-Resumable", "1.0.0")]))
            }
        }

        let sealer = try Sealer(key: key, options: options)
        // The header binds the file's id (docs/FORMAT.md section 11): the gateway must answer with
        // the upload URL of that id, so recipients can check which stream the id names.
        var metadata = [Tus.MetadataKey.header: sealer.header.encoded(),
                        Tus.MetadataKey.name: try await SealedName.seal(URL(fileURLWithPath: path).lastPathComponent, key: key,
                                                                        boundTo: sealer.header)]
        if let session {
            metadata[Tus.MetadataKey.session] = Array(session.sessionID.value.utf8)
            metadata[Tus.MetadataKey.epoch] = Array(String(session.epoch).utf8)
        }
        let location = try await client.createUpload(metadata: metadata)
        guard location == "\(Tus.uploadsPath)/\(FileID(boundTo: sealer.header))" else {
            throw ClientError.protocolViolation("the gateway gave the upload an id that is not the one bound to its stream header (\(location))")
        }
        try directory.write(ResumeState(path: absolute, size: Int64(info.st_size), modified: modified, server: client.server,
                                        location: location, header: sealer.header), to: stateFile)
        guard FileManager.default.createFile(atPath: tagsFile, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw FileError(path: tagsFile, operation: "create", errno: errno)
        }
        _ = lseek(fd, 0, SEEK_SET)
        let id = try await send(fd: fd, path: path, sealer: sealer, location: location, offset: 0,
                                tagsFile: tagsFile, knownTags: [], progress: progress)
        forgetResumeState(stateFile, tagsFile)
        return id
    }

    /// Sends the rest of an upload from the gateway's offset. Right after an interruption the gateway
    /// may still be closing the old request (423) or moving its offset (409): ask again, briefly.
    private func resume(fd: Int32, path: String, sealer: Sealer, location: String, tagsFile: String,
                        progress: @escaping @Sendable (Int) -> Void) async throws -> String {
        var attempt = 0
        while true {
            guard let offset = try await client.uploadOffset(location) else {
                throw ClientError.protocolViolation("the gateway no longer knows the upload \(location)")
            }
            do {
                return try await send(fd: fd, path: path, sealer: sealer, location: location, offset: offset,
                                      tagsFile: tagsFile, knownTags: readTags(tagsFile), progress: progress)
            } catch ClientError.server(let status, _, _) where (status == 409 || status == 423) && attempt < 20 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    private func send(fd: Int32, path: String, sealer: Sealer, location: String, offset: Int64, tagsFile: String,
                      knownTags: [[UInt8]], progress: @escaping @Sendable (Int) -> Void) async throws -> String {
        _ = lseek(fd, 0, SEEK_SET)
        guard let source = MappedFileSource(descriptor: fd, path: path) else {
            throw FileError(path: path, operation: "map", errno: EINVAL)
        }
        let tags = try TagLog(path: tagsFile, known: knownTags)
        let body = SkippingBody(pieces: sealer.seal(ProgressSource(base: source, progress: progress)), skip: offset, tags: tags)
        let newOffset = try await client.patch(location, offset: offset, body: body)
        guard let total = tags.sealedLength, newOffset == total else {
            throw ClientError.protocolViolation("the gateway stopped at \(newOffset) bytes")
        }
        return String(location.split(separator: "/").last!)
    }

    /// Drops a finished upload's resume state. The upload is already complete on the gateway, so a
    /// file that cannot be removed only costs a HEAD next time (which reports it complete).
    private func forgetResumeState(_ files: String...) {
        for file in files { _ = unlink(file) }
    }

    private func readTags(_ file: String) -> [[UInt8]] {
        guard let data = FileManager.default.contents(atPath: file) else { return [] }
        let bytes = Array(data)
        return stride(from: 0, to: bytes.count - bytes.count % 16, by: 16).map { Array(bytes[$0..<$0 + 16]) }
    }
}

/// The GCM tag of every record sealed for an upload, appended to a file as records go out, and
/// compared with the re-sealed records when an upload resumes.
final class TagLog: @unchecked Sendable {
    // Used by the one upload that owns it, from its body sequence.
    private let fd: Int32
    private let path: String
    private let known: [[UInt8]]
    private var index = 0
    /// Total sealed bytes, once the whole stream has been produced.
    var sealedLength: Int64?

    init(path: String, known: [[UInt8]]) throws {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
        self.path = path
        self.known = known
    }

    deinit { close(fd) }

    /// Checks a re-sealed record against the recorded tag, or records a new one.
    func record(_ record: [UInt8]) throws {
        let tag = Array(record.suffix(RecordHeader.tagLength))
        defer { index += 1 }
        if index < known.count {
            guard Secrets.constantTimeEqual(tag, known[index]) else { throw ClientError.fileChanged(path) }
            return
        }
        try FileSink(descriptor: fd, path: path).write(tag)
    }
}

/// The sealed stream as request-body buffers, without its first `skip` bytes (already on the
/// gateway). Every record passes through the tag log before any of its bytes are sent.
struct SkippingBody<Source: ByteSource & Sendable>: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let pieces: SealedPieces<Source>
    let skip: Int64
    let tags: TagLog

    func makeAsyncIterator() -> Iterator { Iterator(base: pieces.makeAsyncIterator(), skip: skip, tags: tags) }

    struct Iterator: AsyncIteratorProtocol {
        var base: SealedPieces<Source>.Iterator
        let skip: Int64
        let tags: TagLog
        var position: Int64 = 0
        var sawHeader = false

        mutating func next() async throws -> ByteBuffer? {
            while let piece = try await base.next() {
                if sawHeader { try tags.record(piece) } else { sawHeader = true }
                let start = position
                position += Int64(piece.count)
                if position <= skip { continue }
                let from = Int(Swift.max(0, skip - start))
                return ByteBuffer(bytes: piece[from...])
            }
            tags.sealedLength = position
            return nil
        }
    }
}

/// Reports plaintext bytes read.
struct ProgressSource<Base: ByteSource & Sendable>: ByteSource, Sendable {
    var base: Base
    let progress: @Sendable (Int) -> Void

    mutating func read(exactly count: Int) async throws -> ByteChunk {
        let chunk = try await base.read(exactly: count)
        progress(chunk.count)
        return chunk
    }
}
