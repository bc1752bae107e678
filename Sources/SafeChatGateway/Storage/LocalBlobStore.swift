import Foundation
import NIOCore
import SafeChatAPI
import SealedFormat

/// Blobs as files: `<root>/partial/<id>` while uploading, `<root>/blobs/<id>` when finished.
/// With `directIO` (the default) they are written and read around the page cache where the file
/// system allows it (see DirectBlobFiles.swift); elsewhere, and without it, through it.
public struct LocalBlobStore: BlobStore {
    let partialDirectory: String
    let blobDirectory: String
    let directIO: Bool

    public init(root: String, directIO: Bool = true) throws {
        partialDirectory = root + "/partial"
        blobDirectory = root + "/blobs"
        self.directIO = directIO
        for dir in [root, partialDirectory, blobDirectory] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    func partialPath(_ id: FileID) -> String { "\(partialDirectory)/\(id)" }
    func blobPath(_ id: FileID) -> String { "\(blobDirectory)/\(id)" }

    public func openPartial(_ id: FileID, truncatingTo offset: Int64) throws -> any PartialBlob {
        let path = partialPath(id)
        if directIO, let blob = try DirectPartialBlob.open(path: path, truncatingTo: offset) { return blob }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
        let blob = LocalPartialBlob(descriptor: fd, path: path)
        do {
            try blob.truncate(to: offset)
            if blob.length != offset { throw FileError(path: path, operation: "resume (shorter than its acknowledged offset)", errno: EIO) }
        } catch {
            blob.close()
            throw error
        }
        return blob
    }

    public func removePartial(_ id: FileID) throws {
        if unlink(partialPath(id)) != 0 && errno != ENOENT { throw FileError(path: partialPath(id), operation: "remove", errno: errno) }
    }

    public func partialExists(_ id: FileID) -> Bool { access(partialPath(id), F_OK) == 0 }

    public func promote(_ id: FileID) throws {
        guard rename(partialPath(id), blobPath(id)) == 0 else { throw FileError(path: blobPath(id), operation: "store", errno: errno) }
        syncDirectory(of: blobPath(id))
    }

    /// Opens a finished file's bytes. A file whose manifest is recorded but whose bytes are still
    /// being moved into place is read under the upload's name: both names hold the same fsynced
    /// bytes, and trying the final name again covers a rename that lands in between.
    public func openBlob(_ id: FileID) throws -> any BlobReader {
        var direct = directIO
        func openForReading(_ path: String) -> Int32 {
            if direct {
                let fd = open(path, O_RDONLY | O_CLOEXEC | DirectIO.openFlag)
                guard fd < 0 && errno == EINVAL else { return fd }
                direct = false  // a file system without direct I/O: through the page cache
            }
            return open(path, O_RDONLY | O_CLOEXEC)
        }
        var fd = openForReading(blobPath(id))
        if fd < 0 && errno == ENOENT { fd = openForReading(partialPath(id)) }
        if fd < 0 && errno == ENOENT { fd = openForReading(blobPath(id)) }
        guard fd >= 0 else { throw FileError(path: blobPath(id), operation: "open", errno: errno) }
        var info = stat()
        fstat(fd, &info)
        if direct { return DirectBlobReader(descriptor: fd, path: blobPath(id), size: Int64(info.st_size)) }
        return LocalBlobReader(descriptor: fd, path: blobPath(id), size: Int64(info.st_size))
    }

    public func removeBlob(_ id: FileID) throws {
        if unlink(blobPath(id)) != 0 && errno != ENOENT { throw FileError(path: blobPath(id), operation: "remove", errno: errno) }
        syncDirectory(of: blobPath(id))
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

    func sync() throws {
        if fdatasync(descriptor) != 0 { throw FileError(path: path, operation: "fsync", errno: errno) }
    }

    func truncate(to newLength: Int64) throws {
        guard newLength < length else { return }
        if ftruncate(descriptor, off_t(newLength)) != 0 { throw FileError(path: path, operation: "truncate", errno: errno) }
        length = newLength
    }

    func close() { Glibc.close(descriptor) }
}

struct LocalBlobReader: BlobReader {
    let descriptor: Int32
    let path: String
    let size: Int64
    var fileDescriptor: Int32? { descriptor }

    func read(at offset: Int64, count: Int, into buffer: inout ByteBuffer) throws {
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
