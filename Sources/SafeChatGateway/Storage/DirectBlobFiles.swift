import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SealedFormat

// Blobs written and read with O_DIRECT, around the page cache.
//
// Why: a sealed file is written once, fsynced, and read later (often much later, by someone
// else), and it is tens of GB: caching it buys little and costs a lot. Through the page cache
// every uploaded byte is copied into freshly allocated cache pages, and on this project's
// machines (virtual machines that hand freed memory back to their host) allocating those pages
// was most of the gateway's CPU for an upload (docs/PERFORMANCE.md, "Direct I/O"). With O_DIRECT
// the device reads from and writes into the gateway's own reused buffers.
//
// O_DIRECT needs the buffer address, the length and the file offset of every transfer aligned to
// the device's block. So appends are staged in aligned buffers and written a whole buffer at a
// time, with up to `DirectIO.writesInFlight` writes running on a thread pool while the next
// buffer fills; `sync()` writes the unaligned tail padded to a block, cuts the file back to its
// length and fdatasyncs. Downloads read through the page cache (LocalBlobStore).

enum DirectIO {
    /// The alignment of offsets, lengths and addresses: 4096 covers 512- and 4096-byte devices.
    static let alignment = 4096
    /// Bytes staged before a write: large enough for the device to stream, small enough to stay
    /// in the CPU's caches while the request body is copied in.
    static let writeSize = 2 << 20
    /// Whole-buffer writes an upload may have running while it fills the next buffer.
    static let writesInFlight = 2

    /// O_DIRECT, which Swift's Glibc module leaves out (glibc declares it only under _GNU_SOURCE);
    /// Linux's value differs by architecture.
    #if arch(arm64) || arch(arm)
    static let openFlag: Int32 = 0o200000
    #else
    static let openFlag: Int32 = 0o40000
    #endif

    /// The threads that run the whole-buffer writes and the download path's reads: a pool of their
    /// own, so that chat's group commits and the registry's fsyncs (NIO's shared pool, through
    /// ``blockingIO``) never queue behind 2 MiB transfers.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    static func alignDown(_ value: Int64) -> Int64 { value & ~Int64(alignment - 1) }
    static func alignUp(_ value: Int) -> Int { (value + alignment - 1) & ~(alignment - 1) }

    /// Opens `path` for direct I/O, or returns nil where the file system refuses it (EINVAL).
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws -> Int32? {
        let fd = Glibc.open(path, flags | openFlag | O_CLOEXEC, mode)
        if fd >= 0 { return fd }
        if errno == EINVAL { return nil }
        throw FileError(path: path, operation: "open", errno: errno)
    }
}

/// A block-aligned buffer of `DirectIO.writeSize` bytes, kept in a small pool once used, so that
/// uploads reuse memory that is already mapped instead of faulting in new pages.
final class AlignedBuffer: @unchecked Sendable {
    // Used by one blob at a time (taken from and given back to the pool).
    let base: UnsafeMutableRawPointer
    let capacity: Int

    private static let pool = NIOLockedValueBox<[AlignedBuffer]>([])
    private static let pooledAtMost = 16

    private init(capacity: Int) throws {
        var memory: UnsafeMutableRawPointer?
        let status = posix_memalign(&memory, DirectIO.alignment, capacity)
        guard status == 0, let memory else { throw FileError(path: "(upload buffer)", operation: "allocate", errno: status) }
        base = memory
        self.capacity = capacity
    }

    deinit { free(base) }

    static func take() throws -> AlignedBuffer {
        try pool.withLockedValue { $0.popLast() } ?? AlignedBuffer(capacity: DirectIO.writeSize)
    }

    static func give(_ buffer: AlignedBuffer) {
        pool.withLockedValue { if $0.count < pooledAtMost { $0.append(buffer) } }
    }
}

/// An upload's partial file written with O_DIRECT (see the top of this file).
final class DirectPartialBlob: PartialBlob, @unchecked Sendable {
    // Driven by one request at a time (the upload manager hands a partial to a single appender);
    // the thread pool only ever touches buffers handed to it, until their write is awaited.
    let descriptor: Int32
    let path: String
    /// Where the staging buffer starts in the file (aligned): everything before it was handed to
    /// a write.
    private var stagedAt: Int64
    private var staging: AlignedBuffer
    private var staged = 0
    private var writes: [(done: EventLoopFuture<Void>, buffer: AlignedBuffer)] = []

    var length: Int64 { stagedAt + Int64(staged) }

    /// Opens `path` (creating it), cut to `length` bytes, which it must hold; nil where the file
    /// system does not do direct I/O.
    static func open(path: String, truncatingTo length: Int64) throws -> DirectPartialBlob? {
        guard let fd = try DirectIO.open(path, O_RDWR | O_CREAT, 0o600) else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0 else { Glibc.close(fd); throw FileError(path: path, operation: "stat", errno: errno) }
        guard Int64(info.st_size) >= length else {
            Glibc.close(fd)
            throw FileError(path: path, operation: "resume (shorter than its acknowledged offset)", errno: EIO)
        }
        let blob: DirectPartialBlob
        do {
            blob = try DirectPartialBlob(descriptor: fd, path: path)
        } catch {
            Glibc.close(fd)
            throw error
        }
        do {
            try blob.cut(to: length, fileSize: Int64(info.st_size))
        } catch {
            blob.closeNow()
            throw error
        }
        return blob
    }

    private init(descriptor: Int32, path: String) throws {
        self.descriptor = descriptor
        self.path = path
        stagedAt = 0
        staging = try AlignedBuffer.take()
    }

    func append(_ bytes: ByteBuffer) async throws {
        var rest = bytes
        while rest.readableBytes > 0 {
            let take = min(rest.readableBytes, staging.capacity - staged)
            rest.readWithUnsafeReadableBytes { source in
                (staging.base + staged).copyMemory(from: source.baseAddress!, byteCount: take)
                return take
            }
            staged += take
            if staged == staging.capacity { try await writeFullBuffer() }
        }
    }

    /// Hands the full staging buffer to the thread pool and carries on in another, waiting first
    /// for the oldest write if `writesInFlight` are running (the disk's back-pressure).
    private func writeFullBuffer() async throws {
        if writes.count == DirectIO.writesInFlight {
            let oldest = writes.removeFirst()
            try await oldest.done.get()
            AlignedBuffer.give(oldest.buffer)
        }
        let next = try AlignedBuffer.take()  // first: a failure here leaves everything as it was
        let buffer = staging, offset = stagedAt, path = path, descriptor = descriptor
        let done = DirectIO.threads.runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.next()) {
            try writeAll(descriptor, UnsafeRawPointer(buffer.base), buffer.capacity, at: offset, path: path)
        }
        writes.append((done, buffer))
        stagedAt += Int64(buffer.capacity)
        staging = next
        staged = 0
    }

    /// Blocks until every write handed to the thread pool ended; returns the first failure.
    private func finishWrites() -> (any Error)? {
        var failure: (any Error)?
        for write in writes {
            do { try write.done.wait() } catch { failure = failure ?? error }
            AlignedBuffer.give(write.buffer)
        }
        writes = []
        return failure
    }

    func makeDurable(final: Bool) async throws -> BlobCheckpoint? {
        try await blockingIO { [self] in try sync() }
        return nil
    }

    func checkpointRecorded() async {}

    func sync() throws {
        if let failure = finishWrites() { throw failure }
        if staged > 0 {
            // The tail goes out padded to a whole block (zeros, cut off again below). Its partial
            // last block stays staged: the next append rewrites that block whole.
            let padded = DirectIO.alignUp(staged)
            (staging.base + staged).initializeMemory(as: UInt8.self, repeating: 0, count: padded - staged)
            try writeAll(descriptor, UnsafeRawPointer(staging.base), padded, at: stagedAt, path: path)
            if ftruncate(descriptor, off_t(length)) != 0 { throw FileError(path: path, operation: "truncate", errno: errno) }
            let whole = staged & ~(DirectIO.alignment - 1)
            if whole > 0 {
                staging.base.copyMemory(from: staging.base + whole, byteCount: staged - whole)
                stagedAt += Int64(whole)
                staged -= whole
            }
        }
        if fdatasync(descriptor) != 0 { throw FileError(path: path, operation: "fsync", errno: errno) }
    }

    func truncate(to newLength: Int64) async throws {
        try await blockingIO { [self] in try cutBack(to: newLength) }
    }

    private func cutBack(to newLength: Int64) throws {
        guard newLength < length else { return }
        if let failure = finishWrites() { throw failure }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw FileError(path: path, operation: "stat", errno: errno) }
        try cut(to: newLength, fileSize: Int64(info.st_size))
    }

    /// Cuts the file to `newLength` and stages its last partial block again, read back from disk
    /// unless it is still staged.
    private func cut(to newLength: Int64, fileSize: Int64) throws {
        if fileSize > newLength, ftruncate(descriptor, off_t(newLength)) != 0 {
            throw FileError(path: path, operation: "truncate", errno: errno)
        }
        if newLength >= stagedAt && newLength <= length {
            staged = Int(newLength - stagedAt)
            return
        }
        stagedAt = DirectIO.alignDown(newLength)
        staged = Int(newLength - stagedAt)
        guard staged > 0 else { return }
        // One aligned block; the file ends inside it, so the read comes back short, with the
        // `staged` bytes the block holds.
        var n: Int
        repeat { n = pread(descriptor, staging.base, DirectIO.alignment, off_t(stagedAt)) } while n < 0 && errno == EINTR
        guard n >= staged else { throw FileError(path: path, operation: "read", errno: n < 0 ? errno : EIO) }
    }

    func close() async {
        // Every path that keeps bytes syncs (or rolls back) before closing, which reports a failed
        // write; here the writes are only waited for, so that no buffer goes back to the pool in use.
        _ = try? await blockingIO { [self] in closeNow() }
    }

    func closeNow() {
        _ = finishWrites()
        AlignedBuffer.give(staging)
        Glibc.close(descriptor)
    }
}
