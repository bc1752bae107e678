import AsyncHTTPClient
import Foundation
import NIOCore
import SafeChatAPI
import SealedStream

/// Downloads a file by id, opening every chunk as it arrives.
///
/// The file's records are split into stripes, each fetched with its own Range request on its own
/// connection and event loop and opened there, so receiving and decrypting use every core (one
/// connection kept one core busy and left the other idle). Each verified chunk is written at its
/// place in the output (chunk n holds plaintext bytes n × chunk size onwards).
///
/// Verified plaintext goes to a partial file (0600) beside the output, named after the file id,
/// with a small progress file beside it (``DownloadProgress``); the output name appears only once
/// every chunk, the final one included, has verified. If the transfer breaks, running the same
/// command again resumes every stripe from its last verified chunk. If a chunk fails to verify, the
/// partial file is deleted: tampered bytes are never kept.
public struct Downloader: Sendable {
    public let client: GatewayClient
    public let key: SessionKey
    /// Connections one download uses at most (never more than the HTTP client's event loops).
    public var maxStripes = 4

    public init(client: GatewayClient, key: SessionKey) {
        self.client = client
        self.key = key
    }

    public static func partialPath(for output: String, fileID: String) -> String {
        let url = URL(fileURLWithPath: output)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(fileID).safechat-download").path
    }

    static func progressPath(forPartial partial: String) -> String { partial + ".progress" }

    /// Downloads `fileID` into `output`. `progress` gets plaintext bytes as they are verified
    /// (including those already on disk from an earlier attempt), possibly from several threads.
    /// Unless `replacing`, a file already at `output` is never overwritten, even one created while
    /// the download ran (the finished file is linked into place, which fails if the name is taken).
    public func download(_ fileID: String, to output: String, replacing: Bool = true,
                         progress: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let manifest = try await client.manifest(fileID)
        // The id must name the stream served (its header), and the key must open it (the key
        // commitment), before a byte is fetched.
        try FileBinding.check(manifest, requested: fileID)
        _ = try ChunkOpener(key: key, header: manifest.header)
        guard !manifest.records.isEmpty else { throw ClientError.protocolViolation("the manifest lists no records") }
        var existing = stat()
        if stat(output, &existing) == 0 {
            if (existing.st_mode & S_IFMT) != S_IFREG {
                try await download(manifest, intoDevice: output, progress: progress)
                return
            }
            if !replacing { throw ClientError.outputExists(output) }
        }
        let partial = Self.partialPath(for: output, fileID: fileID)
        let progressPath = Self.progressPath(forPartial: partial)
        let digestsPath = partial + ".records"
        func discard() {
            for path in [partial, progressPath, digestsPath] { unlink(path) }
        }
        var stripes: [DownloadProgress.Stripe]?
        do { stripes = try DownloadProgress.load(progressPath, manifest: manifest) } catch {
            discard()
            throw error
        }
        let fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: partial, operation: "create", errno: errno) }
        defer { close(fd) }
        let digests = try RecordDigests(path: digestsPath)
        defer { digests.close() }
        // The partial file must hold at least what the progress says was written, and the digest
        // entries every record it says verified (either may have been removed or cut short since).
        var info = stat()
        let chunkSize = Int64(manifest.header.chunkSize)
        let claimed = stripes?.filter { $0.next > $0.first }.map { min(Int64($0.next) * chunkSize, manifest.plaintextSize) }.max() ?? 0
        if fstat(fd, &info) != 0 || Int64(info.st_size) < claimed || !(stripes.map(digests.covers) ?? false) { stripes = nil }
        if stripes == nil {
            // Nothing trustworthy to resume from: start over.
            guard ftruncate(fd, 0) == 0 else { throw FileError(path: partial, operation: "truncate", errno: errno) }
            try digests.reset()
            stripes = DownloadProgress.fresh(recordCount: manifest.records.count, stripes: stripeCount)
        }
        let record = try DownloadProgress(creating: progressPath, manifest: manifest, stripes: stripes!)
        defer { record.close() }
        let alreadyDone = record.stripes.reduce(0) { $0 + Int64($1.next - $1.first) } * chunkSize
        if alreadyDone > 0 { progress(Int(min(alreadyDone, manifest.plaintextSize))) }
        let sink = FileSink(descriptor: fd, path: partial)
        do {
            try await fetch(manifest, stripes: record.stripes, into: sink, positioned: true, record: record, digests: digests,
                            progress: progress)
            try Self.checkDigest(digests, manifest)
        } catch let error as SealedStreamError {
            discard()
            throw error
        } catch let error as ClientError {
            if case .refused = error { discard() }
            throw error
        }
        try sink.sync()
        if replacing {
            guard rename(partial, output) == 0 else { throw FileError(path: output, operation: "rename into place", errno: errno) }
        } else {
            guard link(partial, output) == 0 else {
                if errno == EEXIST { throw ClientError.outputExists(output) }
                throw FileError(path: output, operation: "link into place", errno: errno)
            }
            unlink(partial)
        }
        unlink(progressPath)
        unlink(digestsPath)
        syncDirectory(of: output)
    }

    /// Every record is in: the digest of what was opened must be the one the download began with.
    private static func checkDigest(_ digests: RecordDigests, _ manifest: FileManifest) throws {
        guard try digests.digest(header: manifest.header, count: manifest.records.count) == manifest.digest else {
            throw ClientError.refused("the chunks of file \(manifest.fileID) verified, but their stream digest is not the one its "
                                      + "download began with (the gateway mixed streams, or lied about the digest); nothing was kept")
        }
    }

    /// Into a device or pipe (/dev/null, a FIFO): nothing to rename or resume. A device that can
    /// seek takes chunks at their offsets from several stripes; a pipe takes them in order from one.
    private func download(_ manifest: FileManifest, intoDevice output: String,
                          progress: @escaping @Sendable (Int) -> Void) async throws {
        let fd = open(output, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: output, operation: "open", errno: errno) }
        defer { close(fd) }
        let seekable = lseek(fd, 0, SEEK_CUR) >= 0
        let stripes = DownloadProgress.fresh(recordCount: manifest.records.count, stripes: seekable ? stripeCount : 1)
        let digests = try RecordDigests(path: NSTemporaryDirectory() + "/.safechat-digests-\(Secrets.randomHex(8))", unlinked: true)
        defer { digests.close() }
        try await fetch(manifest, stripes: stripes, into: FileSink(descriptor: fd, path: output), positioned: seekable,
                        record: nil, digests: digests, progress: progress)
        try Self.checkDigest(digests, manifest)
    }

    private var stripeCount: Int {
        min(maxStripes, Array(client.http.eventLoopGroup.makeIterator()).count)
    }

    /// Fetches and opens every stripe concurrently, writing each verified chunk at its offset
    /// (`positioned`) or in order (one stripe only), and noting each stripe's progress in `record`.
    private func fetch(_ manifest: FileManifest, stripes: [DownloadProgress.Stripe], into sink: FileSink, positioned: Bool,
                       record: DownloadProgress?, digests: RecordDigests, progress: @escaping @Sendable (Int) -> Void) async throws {
        precondition(positioned || stripes.count == 1)
        let loops = Array(client.http.eventLoopGroup.makeIterator())
        let chunkSize = Int64(manifest.header.chunkSize)
        let recordCount = manifest.records.count
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, stripe) in stripes.enumerated() where stripe.next < stripe.end {
                group.addTask { [client, key] in
                    let chunks = try client.downloadChunks(
                        manifest, key: key, records: stripe.next, to: stripe.end == recordCount ? nil : stripe.end,
                        on: loops[i % loops.count])
                    defer { chunks.cancel() }
                    var next = stripe.next
                    for try await chunk in chunks {
                        if positioned {
                            try sink.write(chunk.plaintext, at: Int64(chunk.index) * chunkSize)
                        } else {
                            try sink.write(chunk.plaintext)
                        }
                        try digests.record(chunk.index, chunk.digestInput)
                        next = Int(chunk.index) + 1
                        try record?.record(stripe: i, next: next)
                        progress(chunk.plaintext.count)
                    }
                    // The stream also ends early when the task is cancelled; that is not success.
                    try Task.checkCancellation()
                    guard next == stripe.end else {
                        throw ClientError.protocolViolation("the download ended after chunk \(next) of \(stripe.end)")
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
