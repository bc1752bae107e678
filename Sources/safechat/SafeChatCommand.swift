import ArgumentParser
import CMalloc

/// The `safechat` command line: thin commands over the SealedStream library.
@main
struct SafeChatCommand: AsyncParsableCommand {
    static func main() async {
        tuneAllocator()
        await Self.main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "safechat",
        abstract: "SafeChat: very large files and chat between people, end-to-end encrypted, through a gateway that never sees them.",
        discussion: """
            People log in to a gateway (`login`), share sessions whose keys only members hold (`session`, \
            `keys`), send sealed files (`upload`, `download`, `files`) and chat (`chat`, `send`, `recv`) \
            beside them; every file and message is sealed on the sender's device and checked on the \
            recipient's, so a gateway that lies is caught. `serve` runs the gateway, `user` manages its \
            accounts; `seal`, `open` and `inspect` work on sealed files offline.

            Exit codes: 0 success; 1 an operational error (a file that cannot be read or written, \
            a bad key file, a lost connection, an error answer from the gateway); 2 what was received \
            was rejected (wrong key, tampered, truncated or malformed, or the gateway served another \
            file or stream than the one asked for); 64 bad command-line usage.
            """,
        subcommands: [KeygenCommand.self, SealCommand.self, OpenCommand.self, InspectCommand.self, ServeCommand.self, MigrateCommand.self, UserCommand.self, AdminCommand.self, LoginCommand.self, LogoutCommand.self, KeysCommand.self, SessionCommand.self, SessionsCommand.self, UploadCommand.self, DownloadCommand.self, FilesCommand.self, RemoveCommand.self, ChatCommand.self, SendCommand.self, ReceiveCommand.self, HistoryCommand.self, ClearHistoryCommand.self]
    )
}

/// The pipeline allocates one chunk-sized buffer per chunk in flight. With glibc's defaults such
/// blocks are handed back to the kernel when freed, so every chunk faults in freshly zeroed pages;
/// measured, that is a third of the CPU time of `open`. Serving them from the heap removes that cost;
/// a bounded trim threshold and arena count keep what the heap holds on to small (each thread's
/// arena would otherwise keep up to the threshold). `serve` sets its own mmap threshold.
func tuneAllocator() {
    _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)
    _ = mallopt(M_TRIM_THRESHOLD, 16 << 20)
    _ = mallopt(M_ARENA_MAX, 4)
}
