import SealedStream
#if canImport(Glibc)
import Glibc
#endif

/// An input file or standard input ("-").
struct InputFile {
    let path: String
    let descriptor: Int32
    /// The size if the input is a regular file (for progress and ETA).
    let size: Int64?

    init(_ path: String) throws {
        self.path = path == "-" ? "standard input" : path
        if path == "-" {
            descriptor = STDIN_FILENO
        } else {
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
        }
        var info = stat()
        let known = fstat(descriptor, &info) == 0
        if known && (info.st_mode & S_IFMT) == S_IFDIR {
            Glibc.close(descriptor)
            throw CLIError(description: "\(path) is a directory")
        }
        size = known && (info.st_mode & S_IFMT) == S_IFREG ? Int64(info.st_size) : nil
    }

    func close() { if descriptor != STDIN_FILENO { _ = Glibc.close(descriptor) } }

    /// The input as a byte source: mapped when it is a regular file (no copy), else read.
    func byteSource(progress: ProgressBar) -> CountingSource {
        if let mapped = MappedFileSource(descriptor: descriptor, path: path) {
            InputFaultGuard.install()
            return CountingSource(.mapped(mapped), progress: progress)
        }
        return CountingSource(.stream(FileByteSource(descriptor: descriptor, path: path)), progress: progress)
    }
}

/// Reports bytes read to a progress bar.
struct CountingSource: ByteSource {
    enum Base { case mapped(MappedFileSource), stream(FileByteSource) }
    var base: Base
    let progress: ProgressBar

    init(_ base: Base, progress: ProgressBar) {
        self.base = base
        self.progress = progress
    }

    mutating func read(exactly count: Int) async throws -> ByteChunk {
        let bytes: ByteChunk
        switch base {
        case .mapped(var source): bytes = try await source.read(exactly: count); base = .mapped(source)
        case .stream(var source): bytes = try await source.read(exactly: count); base = .stream(source)
        }
        progress.advance(by: bytes.count)
        return bytes
    }
}

/// An output file written atomically, or a stream written as it comes: standard output ("-"),
/// or an existing device or pipe such as /dev/null, which cannot be replaced by a rename.
final class OutputFile {
    private let atomic: AtomicFileWriter?
    private let stream: FileSink?

    init(_ path: String, permissions: mode_t) throws {
        var info = stat()
        if path == "-" {
            atomic = nil
            stream = FileSink(descriptor: STDOUT_FILENO, path: "standard output")
        } else if stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            guard (info.st_mode & S_IFMT) != S_IFDIR else { throw CLIError(description: "\(path) is a directory") }
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
            atomic = nil
            stream = FileSink(descriptor: fd, path: path)
        } else {
            let writer = try AtomicFileWriter(destination: path, permissions: permissions)
            atomic = writer
            stream = nil
            InterruptCleanup.shared.register(writer.temporaryPath)
        }
    }

    func write(_ bytes: [UInt8]) throws {
        if let atomic { try atomic.write(bytes) } else { try stream!.write(bytes) }
    }

    /// Publishes the output under its final name (files), or flushes nothing (stdout).
    func commit() throws {
        guard let atomic else { return }
        defer { InterruptCleanup.shared.unregister(atomic.temporaryPath) }
        try atomic.commit()
    }

    func discard() {
        guard let atomic else { return }
        atomic.discard()
        InterruptCleanup.shared.unregister(atomic.temporaryPath)
    }
}

/// Reads a key file: 64 hexadecimal digits (see docs/FORMAT.md, "Key files").
func readKeyFile(_ path: String) async throws -> SessionKey {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileError(path: path, operation: "open key file", errno: errno) }
    defer { close(fd) }
    // A key file is 65 bytes; reading a bounded amount keeps a wrong path (a huge file) harmless.
    var source = FileByteSource(descriptor: fd, path: path)
    var bytes = try await source.read(exactly: 257).array
    defer { for i in bytes.indices { bytes[i] = 0 } }
    guard bytes.count <= 256 else { throw CLIError(description: "\(path) is not a key file (too large)") }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw CLIError(description: "\(path) is not a key file (not text)")
    }
    do {
        return try SessionKey(hexEncoded: text)
    } catch {
        throw CLIError(description: "\(path) is not a key file: \(error)")
    }
}
