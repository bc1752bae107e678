import ArgumentParser
import SealedStream
#if canImport(Glibc)
import Glibc
#endif

struct KeygenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create a new random 256-bit session key file (mode 0600).",
        discussion: "Refuses to overwrite an existing file. Share the key with recipients over a channel you trust.")

    @Argument(help: "Path of the key file to create.")
    var output: String

    func run() async throws {
        try await reportingFailures("keygen") {
            let key = SessionKey.random()
            // O_EXCL: never replace a key someone may still need to open their files.
            let fd = open(output, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileError(path: output, operation: "create key file", errno: errno) }
            let sink = FileSink(descriptor: fd, path: output)
            do {
                try sink.write(Array(key.hexEncoded().utf8))
                try sink.sync()
                close(fd)
            } catch {
                close(fd)
                unlink(output)
                throw error
            }
            syncDirectory(of: output)
            printError("wrote a new session key to \(output)")
        }
    }
}
