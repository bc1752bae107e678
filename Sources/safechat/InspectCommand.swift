import ArgumentParser
import SealedStream

struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a sealed stream's header and chunk table and check its framing (no key needed).",
        discussion: "Only structure is checked; authenticity needs the key (`safechat open`).")

    @Flag(name: .long, help: "Print the summary only, not one line per chunk.")
    var summary = false

    @Argument(help: "Sealed stream, or - for standard input.")
    var input: String

    func run() async throws {
        try await reportingFailures("inspect") {
            let input = try InputFile(input)
            defer { input.close() }
            var source = FileByteSource(descriptor: input.descriptor, path: input.path)
            var validator = FramingValidator()
            var headerPrinted = false
            var stored = 0
            var compressed = 0
            while true {
                let bytes = try await source.read(exactly: 1 << 20)
                if bytes.isEmpty { break }
                let records = try bytes.withUnsafeBytes { try validator.consume($0) }
                if !headerPrinted, let header = validator.header {
                    headerPrinted = true
                    print("""
                        format:      SafeChat sealed stream v\(header.version)
                        algorithm:   AES-256-GCM (HKDF-SHA256 stream key, key commitment)
                        compression: \(header.codec == .lz4 ? "LZ4 per chunk when smaller" : "none")
                        chunk size:  \(header.chunkSize) bytes
                        salt:        \(hex(header.salt))
                        commitment:  \(hex(header.commitment))
                        """)
                    if !summary { print("\nchunk      offset      length   plaintext  codec  final") }
                }
                for record in records {
                    if record.isCompressed { compressed += 1 } else { stored += 1 }
                    if !summary {
                        print(pad(record.index, 5), pad(record.offset, 11), pad(record.length, 11), pad(record.plaintextLength, 11),
                              record.isCompressed ? "  lz4  " : "  raw  ", record.isFinal ? " yes" : " no")
                    }
                }
            }
            try validator.finish()
            print("""

                chunks:      \(validator.nextIndex + 1) (\(compressed) LZ4, \(stored) stored)
                plaintext:   \(validator.plaintextLength) bytes
                sealed:      \(validator.completeOffset) bytes
                framing:     valid (authenticity not checked without the key)
                """)
        }
    }
}

private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

private func pad(_ value: some BinaryInteger, _ width: Int) -> String {
    let text = "\(value)"
    return String(repeating: " ", count: max(0, width - text.count)) + text
}
