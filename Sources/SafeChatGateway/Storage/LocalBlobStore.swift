import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SafeChatAPI
import SealedFormat

/// Blobs as files: `<root>/partial/<id>` while uploading, `<root>/blobs/<id>` when finished.
///
/// With `directIO` (the default) uploads are written around the page cache where the file system
/// allows it (see DirectBlobFiles.swift): an upload is written once and read later, and copying it
/// into cache pages was most of an upload's CPU. Downloads read through the page cache, with
/// sequential read-ahead asked for, and go out with sendfile(2) on plain connections: from a cold
/// cache the kernel's read-ahead keeps the disk streaming, and from a warm one nothing is read at
/// all (direct reads were slower in both cases, docs/PERFORMANCE.md "Downloads from the local store").
/// No checkpoints: a file's length is what a resume needs.
public struct LocalBlobStore: BlobStore {
    let root: String
    let partialDirectory: String
    let blobDirectory: String
    let directIO: Bool

    public init(root: String, directIO: Bool = true) throws {
        self.root = root
        partialDirectory = root + "/partial"
        blobDirectory = root + "/blobs"
        self.directIO = directIO
        for dir in [root, partialDirectory, blobDirectory] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    func partialPath(_ id: FileID) -> String { "\(partialDirectory)/\(id)" }
    func blobPath(_ id: FileID) -> String { "\(blobDirectory)/\(id)" }

    public func openPartial(_ id: FileID, at offset: Int64, checkpoint: BlobCheckpoint?, sizeLimit: Int64) async throws -> any PartialBlob {
        let path = partialPath(id), directIO = directIO
        return try await blockingIO {
            if directIO, let blob = try DirectPartialBlob.open(path: path, truncatingTo: offset) { return blob }
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
            let blob = LocalPartialBlob(descriptor: fd, path: path)
            do {
                try blob.cut(to: offset)
                if blob.length != offset { throw FileError(path: path, operation: "resume (shorter than its acknowledged offset)", errno: EIO) }
            } catch {
                Glibc.close(fd)
                throw error
            }
            return blob
        }
    }

    public func removePartial(_ id: FileID, checkpoint: BlobCheckpoint?) async throws {
        let path = partialPath(id)
        if unlink(path) != 0 && errno != ENOENT { throw FileError(path: path, operation: "remove", errno: errno) }
    }

    public func promote(_ id: FileID, size: Int64, checkpoint: BlobCheckpoint?) async throws {
        let partial = partialPath(id), blob = blobPath(id)
        try await blockingIO {
            if rename(partial, blob) != 0 {
                // Done already (a completion finished after a crash): the file is in place.
                guard errno == ENOENT, access(blob, F_OK) == 0 else { throw FileError(path: blob, operation: "store", errno: errno) }
            }
            syncDirectory(of: blob)
            var info = stat()
            guard stat(blob, &info) == 0, Int64(info.st_size) == size else {
                throw FileError(path: blob, operation: "store (it does not hold the \(size) bytes uploaded)", errno: EIO)
            }
        }
    }

    public func openBlob(_ id: FileID, size: Int64) async throws -> any BlobReader {
        let fd = open(blobPath(id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: blobPath(id), operation: "open", errno: errno) }
        // Read front to back: the kernel reads ahead twice as far.
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        return LocalBlobReader(descriptor: fd, path: blobPath(id), size: size)
    }

    public func removeBlob(_ id: FileID) async throws {
        let path = blobPath(id)
        if unlink(path) != 0 && errno != ENOENT { throw FileError(path: path, operation: "remove", errno: errno) }
        syncDirectory(of: path)
    }

    /// The data directory can be written (a probe file is made and removed).
    public func check() async throws {
        let probe = "\(root)/.probe-\(Secrets.randomHex(4))"
        try await blockingIO {
            let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileError(path: probe, operation: "create", errno: errno) }
            Glibc.close(fd)
            unlink(probe)
        }
    }
}

final class LocalPartialBlob: PartialBlob, @unchecked Sendable {
    // Used by one request at a time: the upload manager hands a partial to a single appender.
    let descriptor: Int32
    let path: String
    private(set) var length: Int64

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
        length = Int64(lseek(descriptor, 0, SEEK_END))
    }

    func append(_ bytes: ByteBuffer) async throws {
        try bytes.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            try writeAll(descriptor, base, bytes.count, at: length, path: path)
            length += Int64(bytes.count)
        }
    }

    func makeDurable(final: Bool) async throws -> BlobCheckpoint? {
        let descriptor = descriptor, path = path
        try await blockingIO {
            if fdatasync(descriptor) != 0 { throw FileError(path: path, operation: "fsync", errno: errno) }
        }
        return nil
    }

    func checkpointRecorded() async {}

    func truncate(to newLength: Int64) async throws { try cut(to: newLength) }

    func cut(to newLength: Int64) throws {
        guard newLength < length else { return }
        if ftruncate(descriptor, off_t(newLength)) != 0 { throw FileError(path: path, operation: "truncate", errno: errno) }
        length = newLength
    }

    func close() async { Glibc.close(descriptor) }
}

struct LocalBlobReader: BlobReader {
    let descriptor: Int32
    let path: String
    let size: Int64
    var fileDescriptor: Int32? { descriptor }
    var pieceSize: Int { 2 << 20 }
    var readsAhead: Int { 3 }

    /// Reads on the blob threads (a read that misses the cache blocks on the disk).
    func read(at offset: Int64, count: Int, into buffer: inout ByteBuffer) async throws {
        let handed = NIOLockedValueBox<ByteBuffer?>(buffer)
        buffer = ByteBuffer()
        buffer = try await DirectIO.threads.runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.next()) { [self] in
            var piece = handed.withLockedValue { value in defer { value = nil }; return value! }
            piece.clear()
            try readNow(at: offset, count: count, into: &piece)
            return piece
        }.get()
    }

    func readNow(at offset: Int64, count: Int, into buffer: inout ByteBuffer) throws {
        var failure: Int32 = 0
        var filled = 0
        while filled < count && failure == 0 {
            let written = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count - filled) { out in
                let n = pread(descriptor, out.baseAddress!, count - filled, off_t(offset) + off_t(filled))
                if n > 0 { return n }
                failure = n < 0 ? (errno == EINTR ? 0 : errno) : -1
                return 0
            }
            filled += written
        }
        if failure == -1 { throw FileError.truncated(path) }
        if failure != 0 { throw FileError(path: path, operation: "read", errno: failure) }
    }
    func close() { Glibc.close(descriptor) }
}

/// Writes all of `count` bytes at `offset`.
func writeAll(_ descriptor: Int32, _ base: UnsafeRawPointer, _ count: Int, at offset: Int64, path: String) throws {
    var done = 0
    while done < count {
        let n = pwrite(descriptor, base + done, count - done, off_t(offset) + off_t(done))
        if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else {
            throw FileError(path: path, operation: "write", errno: n < 0 ? errno : EIO)
        }
    }
}
