#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes whole buffers to a file descriptor, retrying short writes and interruptions.
public struct FileSink: Sendable {
    public let descriptor: Int32
    public let path: String

    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ raw: UnsafeRawBufferPointer) throws(FileError) {
        var offset = 0
        while offset < raw.count {
            let n = systemWrite(descriptor, raw.baseAddress! + offset, raw.count - offset)
            if n > 0 { offset += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw FileError(path: path, operation: "write", errno: n < 0 ? errno : EIO)
        }
    }

    /// Writes `bytes` at `offset` without moving the file position (pwrite), so several writers
    /// can fill different parts of one file.
    public func write(_ bytes: [UInt8], at offset: Int64) throws(FileError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw FileError(path: path, operation: "write", errno: n < 0 ? errno : EIO)
        }
    }

    /// Flushes the file's data to stable storage.
    public func sync() throws(FileError) {
        if fsync(descriptor) != 0 { throw FileError(path: path, operation: "fsync", errno: errno) }
    }
}

@inline(__always)
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

/// A file that appears under its final name only once it is complete and on disk.
///
/// Bytes go to a temporary file created 0600 beside the destination; ``commit()`` fsyncs it,
/// renames it over the destination and fsyncs the directory. Until then the destination is
/// untouched, and a writer that is dropped or ``discard()``ed leaves nothing behind.
public final class AtomicFileWriter {
    public let destination: String
    public let temporaryPath: String
    private let sink: FileSink
    private var finished = false

    public init(destination: String, permissions: mode_t = 0o600) throws(FileError) {
        self.destination = destination
        let (directory, name) = splitPath(destination)
        var suffix = [UInt8](repeating: 0, count: 8)
        suffix.withUnsafeMutableBytes { Secrets.fillRandom($0) }
        let hex = suffix.map { String($0, radix: 16) }.joined()
        temporaryPath = (directory == "" ? "" : directory + "/") + ".\(name).\(hex).safechat-partial"
        let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, permissions)
        guard fd >= 0 else { throw FileError(path: destination, operation: "create a temporary file beside", errno: errno) }
        sink = FileSink(descriptor: fd, path: temporaryPath)
    }

    deinit { if !finished { discard() } }

    public func write(_ bytes: [UInt8]) throws { try sink.write(bytes) }

    /// Makes what was written so far durable, so that `commit` has only the rest to flush.
    public func sync() throws { try sink.sync() }

    /// Makes the file durable and moves it to its final name.
    public func commit() throws {
        precondition(!finished, "AtomicFileWriter committed or discarded twice")
        do {
            try sink.sync()
            finished = true
            close(sink.descriptor)
            guard rename(temporaryPath, destination) == 0 else {
                throw FileError(path: destination, operation: "rename into place", errno: errno)
            }
        } catch {
            unlink(temporaryPath)
            finished = true
            throw error
        }
        syncDirectory(of: destination)
    }

    /// Removes the temporary file; the destination is untouched.
    public func discard() {
        guard !finished else { return }
        finished = true
        close(sink.descriptor)
        unlink(temporaryPath)
    }
}

/// Fsyncs the directory holding `path`, so a rename in it survives a crash.
public func syncDirectory(of path: String) {
    let (directory, _) = splitPath(path)
    let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
}

func splitPath(_ path: String) -> (directory: String, name: String) {
    guard let slash = path.lastIndex(of: "/") else { return ("", path) }
    let directory = String(path[..<slash])
    return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
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

    /// A file that became shorter than it was when opened.
    public static func truncated(_ path: String) -> FileError { FileError(path: path, operation: "truncated", errno: 0) }

    public var description: String {
        errno == 0 ? "\(path) was truncated while being read" : "cannot \(operation) \(path): \(String(cString: strerror(errno)))"
    }
}
