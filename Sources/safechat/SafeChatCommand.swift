import ArgumentParser

/// The `safechat` command line: thin commands over the SealedStream library.
@main
struct SafeChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "safechat",
        abstract: "End-to-end encrypted file transfer: seal, open and inspect sealed streams.",
        discussion: """
            Exit codes: 0 success; 1 an operational error (a file that cannot be read or written, \
            a bad key file); 2 the sealed input was rejected (wrong key, tampered, truncated or \
            malformed); 64 bad command-line usage.
            """,
        subcommands: [KeygenCommand.self, SealCommand.self, OpenCommand.self, InspectCommand.self]
    )
}
