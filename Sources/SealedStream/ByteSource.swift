#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the pipeline pulls bytes from. Pulling is what gives the pipeline its backpressure: a
/// ``Sealer`` or ``Opener`` reads only when its bounded window of chunks has room.
public protocol ByteSource {
    /// Reads `count` bytes. Returns fewer only when the input ends there; an empty chunk means
    /// the input had already ended.
    mutating func read(exactly count: Int) async throws -> ByteChunk
}

/// Bytes passed between pipeline stages without copying: an array, or a read-only mapping of part
/// of a file (see ``MappedFileSource``) kept alive until the last copy of the chunk goes away.
public struct ByteChunk: Sendable {
    private enum Storage: @unchecked Sendable {
        case array([UInt8])
        case mapped(FileMapping, Range<Int>)
    }

    private let storage: Storage

    public init(_ bytes: [UInt8]) { storage = .array(bytes) }
    init(_ mapping: FileMapping, range: Range<Int>) { storage = .mapped(mapping, range) }

    public static let empty = ByteChunk([])

    public var count: Int {
        switch storage {
        case .array(let bytes): bytes.count
        case .mapped(_, let range): range.count
        }
    }

    public var isEmpty: Bool { count == 0 }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .array(let bytes): return try bytes.withUnsafeBytes(body)
        case .mapped(let mapping, let range): return try body(UnsafeRawBufferPointer(rebasing: mapping.bytes[range]))
        }
    }

    /// The bytes as an array (a copy unless they already are one).
    public var array: [UInt8] {
        switch storage {
        case .array(let bytes): return bytes
        case .mapped(let mapping, let range): return Array(mapping.bytes[range])
        }
    }
}

/// A byte source over an in-memory array (tests, small inputs).
public struct ArrayByteSource: ByteSource, Sendable {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public mutating func read(exactly count: Int) async throws -> ByteChunk {
        let end = min(bytes.count, position + count)
        defer { position = end }
        return ByteChunk(Array(bytes[position..<end]))
    }
}

/// A byte source over an `AsyncSequence` of chunks of any sizes (a network body, a pipe).
public struct AsyncSequenceByteSource<Base: AsyncSequence>: ByteSource where Base.Element == ByteChunk {
    private var iterator: Base.AsyncIterator
    private var pending = ByteChunk.empty
    private var pendingStart = 0

    public init(_ base: Base) { iterator = base.makeAsyncIterator() }

    public mutating func read(exactly count: Int) async throws -> ByteChunk {
        var out = [UInt8]()
        while out.count < count {
            if pendingStart == pending.count {
                guard let next = try await iterator.next() else { break }
                // A piece that is exactly what is asked for is handed over without a copy.
                if out.isEmpty && next.count == count { return next }
                // Pieces that do not line up are cut through an array, made once per piece.
                pending = ByteChunk(next.array)
                pendingStart = 0
                continue
            }
            if out.isEmpty { out.reserveCapacity(count) }
            let take = min(count - out.count, pending.count - pendingStart)
            pending.withUnsafeBytes { out += $0[pendingStart..<(pendingStart + take)] }
            pendingStart += take
        }
        return ByteChunk(out)
    }
}

/// A byte source reading a file descriptor (a file, a pipe, standard input) with blocking reads.
///
/// Reads from the page cache are short, and the pipeline issues them from one task at a time, so
/// blocking here does not starve the cooperative pool.
public struct FileByteSource: ByteSource {
    public let descriptor: Int32
    private let path: String
    /// Total bytes read so far (for progress reporting).
    public private(set) var bytesRead: Int64 = 0

    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    public mutating func read(exactly count: Int) async throws -> ByteChunk {
        let bytes = try readArray(count)
        bytesRead += Int64(bytes.count)
        return ByteChunk(bytes)
    }

    func readArray(_ count: Int) throws -> [UInt8] {
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, filled in
            filled = 0
            while filled < count {
                let n = systemRead(descriptor, buffer.baseAddress! + filled, count - filled)
                if n > 0 { filled += n; continue }
                if n == 0 { break }
                if errno == EINTR { continue }
                failure = errno
                break
            }
        }
        if failure != 0 { throw FileError(path: path, operation: "read", errno: failure) }
        return bytes
    }
}

@inline(__always)
func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

/// A byte source over a regular file that maps large reads instead of copying them, so chunks go
/// from the page cache straight into LZ4 and AES-GCM. Consecutive large reads share one mapping of
/// about 8 MiB, released when the last chunk cut from it is. Small reads (record headers) use `pread`.
///
/// A mapping is only valid while the file keeps its length: if another process truncates the file
/// while it is being read, touching the lost pages raises SIGBUS. Callers that map files they do
/// not control should handle that signal (the `safechat` CLI reports it and cleans up).
public struct MappedFileSource: ByteSource, Sendable {
    public let descriptor: Int32
    private let path: String
    private let size: Int64
    private var position: Int64 = 0
    /// The mapping the last large reads came from; later reads share it while they fit.
    private var window: FileMapping?
    /// Reads at least this large are mapped; smaller ones are copied.
    static let mappingThreshold = 64 * 1024
    /// Large reads share mappings of at least this size, so the kernel maps and unmaps (and shoots
    /// down TLB entries on every core) once per window rather than once per chunk.
    static let windowLength: Int64 = 8 << 20

    /// Returns nil if `descriptor` is not a regular file (a pipe, a terminal) and cannot be mapped.
    public init?(descriptor: Int32, path: String) {
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        self.descriptor = descriptor
        self.path = path
        self.size = Int64(info.st_size)
        self.position = Int64(lseek(descriptor, 0, SEEK_CUR))
    }

    public mutating func read(exactly count: Int) async throws -> ByteChunk {
        let length = Int(max(0, min(Int64(count), size - position)))
        guard length > 0 else { return .empty }
        if length < Self.mappingThreshold {
            var failure: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: length) { buffer, filled in
                filled = 0
                while filled < length {
                    let n = pread(descriptor, buffer.baseAddress! + filled, length - filled, off_t(position) + off_t(filled))
                    if n > 0 { filled += n; continue }
                    if n < 0 && errno == EINTR { continue }
                    failure = n == 0 ? -1 : errno
                    break
                }
            }
            if failure == -1 { throw FileError.truncated(path) }
            if failure != 0 { throw FileError(path: path, operation: "read", errno: failure) }
            position += Int64(length)
            return ByteChunk(bytes)
        }
        if window == nil || position + Int64(length) > window!.end {
            // Windows end on a 2 MiB boundary (see FileMapping) unless the file ends first.
            let wanted = position + max(Int64(length), Self.windowLength)
            let end = min(size, (wanted + FileMapping.alignment - 1) / FileMapping.alignment * FileMapping.alignment)
            window = try FileMapping(descriptor: descriptor, path: path, offset: position, count: Int(end - position))
        }
        let mapping = window!
        let start = Int(position - mapping.start)
        position += Int64(length)
        return ByteChunk(mapping, range: start..<(start + length))
    }
}

/// A read-only mapping of part of a file, unmapped on release.
final class FileMapping: @unchecked Sendable {
    // Immutable after init; the mapped bytes are only read.
    private let base: UnsafeMutableRawPointer
    private let mappedLength: Int
    let bytes: UnsafeRawBufferPointer
    /// File offsets of the first byte of `bytes` and the byte after its last.
    let start: Int64
    var end: Int64 { start + Int64(bytes.count) }

    /// Mappings start at file offsets that are multiples of 2 MiB. The kernel (6.x, with large
    /// page-cache folios) then maps each 2 MiB folio of the file with one page-table entry and one
    /// fault; a mapping that starts anywhere else gets 4 KiB entries throughout (measured: 7 times
    /// the faults, 2.5 times the kernel time for 1 GiB).
    static let alignment: Int64 = 2 << 20

    init(descriptor: Int32, path: String, offset: Int64, count: Int) throws {
        let alignedOffset = offset - offset % Self.alignment
        let lead = Int(offset - alignedOffset)
        mappedLength = lead + count
        // No MAP_POPULATE, MADV_WILLNEED or MADV_POPULATE_READ: the pages then fault in inside the
        // worker that uses them, on all cores, instead of in the single reading task (measured:
        // faster).
        let address = mmap(nil, mappedLength, PROT_READ, MAP_PRIVATE, descriptor, off_t(alignedOffset))
        guard let address, address != MAP_FAILED else { throw FileError(path: path, operation: "map", errno: errno) }
        base = address
        bytes = UnsafeRawBufferPointer(start: address + lead, count: count)
        start = offset
    }

    deinit { munmap(base, mappedLength) }
}
