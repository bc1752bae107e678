#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the pipeline pulls bytes from. Pulling is what gives the pipeline its backpressure: a
/// ``Sealer`` or ``Opener`` reads only when its bounded window of chunks has room.
public protocol ByteSource {
    /// Reads `count` bytes. Returns fewer only when the input ends there; an empty array means
    /// the input had already ended.
    mutating func read(exactly count: Int) async throws -> [UInt8]
}

/// A byte source over an in-memory array (tests, small inputs).
public struct ArrayByteSource: ByteSource, Sendable {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public mutating func read(exactly count: Int) async throws -> [UInt8] {
        let end = min(bytes.count, position + count)
        defer { position = end }
        return Array(bytes[position..<end])
    }
}

/// A byte source over an `AsyncSequence` of byte arrays of any sizes (a network body, a pipe).
public struct AsyncSequenceByteSource<Base: AsyncSequence>: ByteSource where Base.Element == [UInt8] {
    private var iterator: Base.AsyncIterator
    private var pending: [UInt8] = []
    private var pendingStart = 0

    public init(_ base: Base) { iterator = base.makeAsyncIterator() }

    public mutating func read(exactly count: Int) async throws -> [UInt8] {
        var out = [UInt8]()
        while out.count < count {
            if pendingStart == pending.count {
                guard let next = try await iterator.next() else { break }
                // A piece that is exactly what is asked for is handed over without a copy.
                if out.isEmpty && next.count == count { return next }
                pending = next
                pendingStart = 0
                continue
            }
            if out.isEmpty { out.reserveCapacity(count) }
            let take = min(count - out.count, pending.count - pendingStart)
            out += pending[pendingStart..<(pendingStart + take)]
            pendingStart += take
        }
        return out
    }
}

/// Errors from the file helpers, with the path and the system's reason.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let operation: String
    public let errno: Int32

    public init(path: String, operation: String, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "cannot \(operation) \(path): \(String(cString: strerror(errno)))" }
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

    public mutating func read(exactly count: Int) async throws -> [UInt8] {
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
        bytesRead += Int64(bytes.count)
        return bytes
    }
}

@inline(__always)
func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}
