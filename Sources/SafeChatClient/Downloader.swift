import AsyncHTTPClient
import Foundation
import NIOCore
import SealedStream

/// Downloads a file by id, opening every chunk as it arrives.
///
/// Verified plaintext goes to a partial file (0600) beside the output, named after the file id;
/// the output name appears only once the final chunk has verified. If the transfer breaks, running
/// the same command again resumes from the last verified chunk with an HTTP Range request
/// (If-Range on the file's ETag, so a changed file starts over). If a chunk fails to verify, the
/// partial file is deleted: tampered bytes are never kept.
public struct Downloader: Sendable {
    public let client: GatewayClient
    public let key: SessionKey

    public init(client: GatewayClient, key: SessionKey) {
        self.client = client
        self.key = key
    }

    public static func partialPath(for output: String, fileID: String) -> String {
        let url = URL(fileURLWithPath: output)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(fileID).safechat-download").path
    }

    /// Downloads `fileID` into `output`. `progress` gets plaintext bytes as they are verified
    /// (including those already on disk from an earlier attempt).
    public func download(_ fileID: String, to output: String, progress: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let manifest = try await client.manifest(fileID)
        // Checks the key commitment before a byte is fetched.
        _ = try ChunkOpener(key: key, header: manifest.header)
        var existing = stat()
        if stat(output, &existing) == 0, (existing.st_mode & S_IFMT) != S_IFREG {
            // A device or pipe (/dev/null, a FIFO): stream verified chunks into it; nothing to rename.
            try await stream(fileID, manifest: manifest, into: output, progress: progress)
            return
        }
        let partial = Self.partialPath(for: output, fileID: fileID)
        let fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: partial, operation: "create", errno: errno) }
        defer { close(fd) }
        // Whole chunks already verified; a torn last chunk is dropped and fetched again. Sizes come
        // from the validated stream header, not from the manifest's other fields, which only the
        // gateway vouches for.
        var info = stat()
        fstat(fd, &info)
        let chunkSize = Int64(manifest.header.chunkSize)
        var done = min(Int(Int64(info.st_size) / chunkSize), manifest.records.count - 1)
        if done < 0 { done = 0 }
        guard ftruncate(fd, off_t(Int64(done) * chunkSize)) == 0, lseek(fd, 0, SEEK_END) >= 0 else {
            throw FileError(path: partial, operation: "truncate", errno: errno)
        }
        progress(done * manifest.header.chunkSize)
        let start = done == 0 ? 0 : manifest.records[done].offset
        let (pieces, task) = try client.downloadPieces(fileID, from: start, etag: manifest.sha256, chunkSize: manifest.header.chunkSize)
        defer { task.cancel() }
        let source = AsyncSequenceByteSource(pieces)
        let opener = Opener(key: key)
        let sink = FileSink(descriptor: fd, path: partial)
        do {
            let chunks = done == 0 ? opener.open(source) : opener.open(source, resumingAt: UInt32(done), header: manifest.header)
            for try await plaintext in chunks {
                try sink.write(plaintext)
                progress(plaintext.count)
            }
        } catch let error as SealedStreamError {
            unlink(partial)
            throw error
        }
        try sink.sync()
        guard rename(partial, output) == 0 else { throw FileError(path: output, operation: "rename into place", errno: errno) }
        syncDirectory(of: output)
    }

    private func stream(_ fileID: String, manifest: GatewayClient.Manifest, into output: String,
                        progress: @escaping @Sendable (Int) -> Void) async throws {
        let fd = open(output, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: output, operation: "open", errno: errno) }
        defer { close(fd) }
        let (pieces, task) = try client.downloadPieces(fileID, from: 0, etag: manifest.sha256, chunkSize: manifest.header.chunkSize)
        defer { task.cancel() }
        let sink = FileSink(descriptor: fd, path: output)
        for try await plaintext in Opener(key: key).open(AsyncSequenceByteSource(pieces)) {
            try sink.write(plaintext)
            progress(plaintext.count)
        }
    }
}
