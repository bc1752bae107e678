import ArgumentParser
import SealedStream

struct OpenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "open",
        abstract: "Open a sealed stream: verify and decrypt every chunk.",
        discussion: """
            OUTPUT is written beside its final name and renamed into place only after the final chunk \
            authenticates; on any failure nothing is left behind. With - as OUTPUT, verified chunks \
            stream to standard output and a failure stops with a non-zero exit.
            """)

    @Option(name: .long, help: "Session key file.")
    var key: String

    @Flag(name: .shortAndLong, help: "No progress bar.")
    var quiet = false

    @Argument(help: "Sealed stream to open, or - for standard input.")
    var input: String

    @Argument(help: "Where to write the plaintext, or - for standard output.")
    var output: String

    func run() async throws {
        try await reportingFailures("open") {
            let key = try await readKeyFile(key)
            let input = try InputFile(input)
            defer { input.close() }
            let progress = ProgressBar(label: "opening", total: input.size, enabled: !quiet && Terminal.standardError.isInteractive)
            let output = try OutputFile(output, permissions: 0o600)
            do {
                let source = input.byteSource(progress: progress)
                for try await plaintext in Opener(key: key).open(source) {
                    try output.write(plaintext)
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
