import ArgumentParser
import SealedStream

struct SealCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seal",
        abstract: "Seal a file: split into chunks, LZ4-compress, encrypt with AES-256-GCM.",
        discussion: "OUTPUT appears only once complete. Use - for standard input or output.")

    @Option(name: .long, help: "Session key file (from `safechat keygen`).")
    var key: String

    @Option(name: .long, help: "Chunk size in bytes: a power of two from 65536 to 16777216; K and M suffixes allowed.")
    var chunkSize: String = "1M"

    @Flag(name: .long, help: "Store every chunk raw (compression can leak content through sizes when secrets and attacker-chosen data share a file).")
    var noCompress = false

    @Flag(name: .shortAndLong, help: "No progress bar.")
    var quiet = false

    @Argument(help: "Plaintext to seal, or - for standard input.")
    var input: String

    @Argument(help: "Where to write the sealed stream, or - for standard output.")
    var output: String

    func validate() throws {
        guard let bytes = parseSize(chunkSize), ChunkSize.log2(of: bytes) != nil else {
            throw ValidationError("--chunk-size must be a power of two from 64K to 16M, got '\(chunkSize)'")
        }
    }

    func run() async throws {
        try await reportingFailures("seal") {
            let key = try await readKeyFile(key)
            let sealer = try Sealer(key: key, options: SealOptions(chunkSize: parseSize(chunkSize)!, compress: !noCompress))
            let input = try InputFile(input)
            defer { input.close() }
            let progress = ProgressBar(label: "sealing", total: input.size, enabled: !quiet && Terminal.standardError.isInteractive)
            let output = try OutputFile(output, permissions: 0o644)
            do {
                let source = input.byteSource(progress: progress)
                for try await piece in sealer.seal(source) {
                    try output.write(piece)
                }
                try output.commit()
                progress.finish()
            } catch {
                output.discard()
                throw error
            }
        }
    }
}

/// Parses "65536", "64K", "1M", "16M".
func parseSize(_ text: String) -> Int? {
    let multipliers: [Character: Int] = ["K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20]
    if let last = text.last, let multiplier = multipliers[last] {
        return Int(text.dropLast()).flatMap { $0.multipliedReportingOverflow(by: multiplier).overflow ? nil : $0 * multiplier }
    }
    return Int(text)
}
