import ArgumentParser
import Foundation
import SafeChatAPI
import SafeChatClient
import SafeChatKeys
import SealedStream

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Log in to a gateway; later commands use the stored token.",
        discussion: "The password is read from the terminal, or from stdin when stdin is not a terminal. The server URL and token are kept 0600 in $XDG_CONFIG_HOME/safechat/session.json.")

    @Option(help: "Gateway URL, e.g. http://127.0.0.1:8080.") var server: String
    @Option(help: "User name.") var user: String

    func run() async throws {
        try await reportingFailures("login") {
            guard let url = URL(string: server), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw CLIError(description: "--server must be an http:// or https:// URL")
            }
            let password = try readPassword(prompt: "Password for \(user)@\(server): ")
            let session = try await GatewayClient(server: server).login(user: user, password: password)
            try session.save(to: ClientDirectory())
            printError("logged in to \(session.server) as \(user) until \(session.expiresAt)")
            // This device's identity: made and published the first time; an account that already
            // has one elsewhere imports it instead.
            do {
                let (identity, created) = try await Identities.ensure(for: session, store: IdentityStore())
                if created { printError("new identity made and published; your fingerprint: \(identity.publicBundle.fingerprint)") }
            } catch ClientError.noIdentity {
                printError("your account has an identity on another device: bring it here with `safechat keys export` there and `safechat keys import FILE` here")
            }
        }
    }
}

struct LogoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logout",
        abstract: "Log out: the gateway revokes the stored token, and this machine forgets it.",
        discussion: "If the gateway cannot be reached, nothing changes (the token would stay valid until it expires): run it again later.")

    func run() async throws {
        try await reportingFailures("logout") {
            let directory = ClientDirectory()
            let session: ClientSession
            do { session = try ClientSession.load(from: directory) } catch ClientError.sessionExpired(let server) {
                try ClientSession.forget(in: directory)
                printError("logged out of \(server) (the token had expired)")
                return
            }
            try await GatewayClient(session: session).logout()
            try ClientSession.forget(in: directory)
            printError("logged out of \(session.server); the gateway revoked the token")
        }
    }
}

struct UploadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload",
        abstract: "Seal files and upload them; prints each file's id on stdout, one per line.",
        discussion: """
            With --session, files are sealed under the session's current epoch key (fetched through \
            get_chat_key, checked against the session's verified log, opened with your identity) and \
            every member can download them; with --key, under a key file of your own. Run the same \
            command again after any interruption: each file resumes from the gateway's offset (unless \
            it changed, then it starts over).
            """)

    @Option(help: "Session key file (a personal file).") var key: String?
    @Option(help: "Session id: send the files to its members.") var session: String?
    @Option(help: "Chunk size (64K to 16M).") var chunkSize: String = "1M"
    @Flag(help: "Store every chunk raw.") var noCompress = false
    @Flag(name: .shortAndLong, help: "No progress bar.") var quiet = false
    @Argument(help: "Files to upload.") var files: [String]

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one file") }
        guard (key == nil) != (session == nil) else { throw ValidationError("give --session ID, or --key KEYFILE for a personal file") }
        guard let bytes = parseSize(chunkSize), ChunkSize.log2(of: bytes) != nil else {
            throw ValidationError("--chunk-size must be a power of two from 64K to 16M")
        }
    }

    func run() async throws {
        try await reportingFailures("upload") {
            let login = try ClientSession.load(from: ClientDirectory())
            let key: SessionKey
            var target: FileSession?
            if let session = self.session {
                let sessions = SessionClient(session: login, identity: try IdentityStore().load())
                let current = try await sessions.key(session)
                key = current.key
                target = FileSession(sessionID: SessionID(session)!, epoch: current.epoch)
            } else {
                key = try await readKeyFile(self.key!)
            }
            let total = files.reduce(Int64(0)) { sum, path in
                sum + ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0)
            }
            let progress = ProgressBar(label: "uploading", total: total, enabled: !quiet && Terminal.standardError.isInteractive)
            let uploader = Uploader(client: GatewayClient(session: login), directory: ClientDirectory(), key: key,
                                    options: SealOptions(chunkSize: parseSize(chunkSize)!, compress: !noCompress), session: target)
            for path in files {
                let id = try await uploader.upload(path: path) { progress.advance(by: $0) }
                // Written straight to fd 1, so each id is out as soon as its file is stored.
                try FileSink(descriptor: STDOUT_FILENO, path: "standard output").write(Array((id + "\n").utf8))
            }
            progress.finish()
        }
    }
}

struct DownloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Download a file by id and open it.",
        discussion: "Chunks are verified as they arrive; OUT appears only after the final chunk verifies. Run the same command again to resume an interrupted download.")

    @Option(help: "Session key file, for a personal file (a session's file needs none: its key comes from the session).") var key: String?
    @Option(name: .shortAndLong, help: "Output file (default: the file's original name, else its id).") var output: String?
    @Flag(help: "Let the file's original name replace an existing file (-o always replaces).") var force = false
    @Flag(name: .shortAndLong, help: "No progress bar.") var quiet = false
    @Argument(help: "The file id.") var fileID: String

    func run() async throws {
        try await reportingFailures("download") {
            let session = try ClientSession.load(from: ClientDirectory())
            let client = GatewayClient(session: session)
            let manifest = try await client.manifest(fileID)
            try FileBinding.check(manifest, requested: fileID)
            let key: SessionKey
            if let path = self.key {
                key = try await readKeyFile(path)
            } else if let fileSession = manifest.session {
                key = try await SessionClient(session: session, identity: try IdentityStore().load())
                    .key(fileSession.sessionID.value, epoch: fileSession.epoch).key
            } else {
                throw CLIError(description: "\(fileID) is a personal file: give --key KEYFILE")
            }
            // The original name, opened with the key and cut to a safe base name, lands in the
            // current directory; -o names the output explicitly.
            var target = output
            if target == nil {
                switch await SealedName.open(manifest.metadata, key: key, boundTo: manifest.header) {
                case .name(let name):
                    target = SealedName.safeBaseName(name)
                    if target == nil { printError("its name is not usable as a file name here") }
                case .none: break
                case .unopened(let why): printError("\(fileID): \(why)")
                }
                target = target ?? manifest.fileID.value
                printError("saving as \(target!)")
            }
            let progress = ProgressBar(label: "downloading", total: manifest.plaintextSize, enabled: !quiet && Terminal.standardError.isInteractive)
            // A name the user gave with -o is theirs to overwrite; a name that came with the file is
            // never allowed to replace one of theirs unless --force.
            try await Downloader(client: client, key: key).download(fileID, to: target!, replacing: force || output != nil) {
                progress.advance(by: $0)
            }
            progress.finish()
        }
    }
}

struct FilesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "files", abstract: "List your files on the gateway: id, size, time and name.",
        discussion: "Names are sealed; with --key, each name the key opens is shown, every other one as (sealed).")

    @Option(help: "Session key file that opens the names of personal files.") var key: String?
    @Option(help: "List a session's files (names opened with its keys) instead of your own.") var session: String?

    func run() async throws {
        try await reportingFailures("files") {
            let login = try ClientSession.load(from: ClientDirectory())
            let files = try await GatewayClient(session: login).files(session: session)
            let key = try await self.key.asyncMap { try await readKeyFile($0) }
            let sessions = try session.map { _ in SessionClient(session: login, identity: try IdentityStore().load()) }
            var sessionKeys: [UInt32: Result<SessionKey, any Error>] = [:]
            let formatter = ISO8601DateFormatter()
            for file in files {
                var shown: String
                if let problem = FileBinding.problem(id: file.fileID.value, header: file.header) {
                    shown = "(refused: \(problem))"
                } else if let sessions, let fileSession = file.session {
                    if sessionKeys[fileSession.epoch] == nil {
                        do {
                            sessionKeys[fileSession.epoch] = .success(try await sessions.key(fileSession.sessionID.value, epoch: fileSession.epoch).key)
                        } catch { sessionKeys[fileSession.epoch] = .failure(error) }
                    }
                    switch sessionKeys[fileSession.epoch]! {
                    case .success(let key): shown = await SealedName.open(file.metadata, key: key, boundTo: file.header).shown
                    case .failure(let error): shown = "(sealed: no key for epoch \(fileSession.epoch): \(error))"
                    }
                } else if let key {
                    shown = await SealedName.open(file.metadata, key: key, boundTo: file.header).shown
                } else {
                    shown = file.session == nil ? "(sealed: give --key to open names of personal files)" : "(sealed: a session's file; list it with --session)"
                }
                // Control characters in a name must not reach the terminal.
                shown = String(String.UnicodeScalarView(shown.unicodeScalars.map { CharacterSet.controlCharacters.contains($0) ? "?" : $0 }))
                print("\(file.fileID)  \(formatBytes(file.size).padding(toLength: 10, withPad: " ", startingAt: 0))  \(formatter.string(from: file.createdAt))  \(shown)")
            }
        }
    }
}

struct RemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a file from the gateway.")
    @Argument(help: "The file id.") var fileID: String

    func run() async throws {
        try await reportingFailures("rm") {
            try await GatewayClient(session: try ClientSession.load(from: ClientDirectory())).remove(fileID)
        }
    }
}
