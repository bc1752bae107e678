import ArgumentParser
import Foundation
import Logging
import SafeChatAPI
import SafeChatGateway
import SafeChatPostgres

/// `safechat admin`: what an operator does to accounts and storage, on the data directory or on
/// PostgreSQL, whether or not gateways are running (they see each change at their next request).
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Operate a gateway: accounts with their usage, disabling, removal, storage totals.",
        discussion: """
            Works on the data directory (--data-dir) or, with --database, on every gateway of that \
            database; with or without gateways running. Names of users are shown here, to the \
            operator; file names never exist on the gateway except sealed.
            """,
        subcommands: [Users.self, Disable.self, Enable.self, Remove.self, Storage.self])

    struct Options: ParsableArguments {
        @Option(help: "Data directory of the gateway [SAFECHAT_DATA_DIR].")
        var dataDir: String = ProcessInfo.processInfo.environment["SAFECHAT_DATA_DIR"] ?? "./safechat-data"

        @OptionGroup(title: "Database") var database: DatabaseOptions
        @OptionGroup(title: "Object storage") var objectStore: ObjectStoreOptions

        /// Runs `body` on the gateway's state: the data directory's stores, or the database's.
        func withState<T: Sendable>(_ body: @Sendable (AdminState) async throws -> T) async throws -> T {
            // (admin only deletes: the store's size limit for new objects does not matter.)
            let blobs: any BlobStore = try await objectStore.store(maxFileSize: 1 << 40)
                ?? LocalBlobStore(root: dataDir + "/data", directIO: false)
            guard let settings = try database.settings() else {
                guard FileManager.default.fileExists(atPath: Gateway.usersPath(dataDirectory: dataDir)) else {
                    throw CLIError(description: "no gateway data in \(dataDir) (no users.json): name it with --data-dir, or use --database")
                }
                let accounts = try UserStore(path: Gateway.usersPath(dataDirectory: dataDir))
                let sessions = try FileSessionStore(directory: dataDir + "/registry/sessions")
                return try await body(AdminState(accounts: accounts, registry: try JSONFileRegistry(directory: dataDir + "/registry"),
                                                 sessions: sessions, blobs: blobs))
            }
            let logger = Logger(label: "safechat.admin", factory: { _ in SwiftLogNoOpLogHandler() })
            let postgres = PostgresDatabase(settings: settings, maximumConnections: 4, logger: logger)
            return try await postgres.withRunning {
                try await postgres.prepare(logger: logger)
                let stores = GatewayStateStores.postgres(postgres)
                return try await body(AdminState(accounts: stores.accounts!, registry: stores.registry!, sessions: stores.sessions!, blobs: blobs))
            }
        }
    }

    struct Users: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List accounts with their files, bytes stored and sessions.")
        @OptionGroup var options: Options
        @Flag(help: "One JSON object per account instead of a table.") var json = false

        func run() async throws {
            try await reportingFailures("admin users") {
                let rows = try await options.withState { try await $0.usage() }
                if json {
                    for row in rows { print(try jsonLine(row)) }
                    return
                }
                print(table([["NAME", "ID", "STATE", "FILES", "BYTES", "UPLOADS", "SESSIONS"]] + rows.map {
                    [$0.name, $0.id, $0.disabled ? "disabled" : "active", "\($0.files)", "\($0.bytes)", "\($0.uploads)", "\($0.sessions)"]
                }))
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Refuse an account's logins and revoke every token it holds, at once.")
        @Argument(help: "The account's name.") var name: String
        @OptionGroup var options: Options

        func run() async throws {
            try await reportingFailures("admin disable") {
                try await options.withState { try await $0.accounts.setDisabled(name, true) }
                printError("disabled \(name): its tokens are refused from now on, and its chat connections close within a second")
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Allow a disabled account to log in again.")
        @Argument(help: "The account's name.") var name: String
        @OptionGroup var options: Options

        func run() async throws {
            try await reportingFailures("admin enable") {
                try await options.withState { try await $0.accounts.setDisabled(name, false) }
                printError("enabled \(name)")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove", abstract: "Remove an account, keeping or deleting its files.",
            discussion: """
                --delete-files deletes the account's files and uploads in progress now, from the \
                registry and the blob store, and its storage is free at once. --keep-files leaves \
                them: members of the sessions they were sent to can still download them.
                """)
        @Argument(help: "The account's name.") var name: String
        @Flag(help: "Delete the account's files and uploads now.") var deleteFiles = false
        @Flag(help: "Keep the account's files.") var keepFiles = false
        @OptionGroup var options: Options

        func validate() throws {
            guard deleteFiles != keepFiles else { throw ValidationError("say what happens to the account's files: --delete-files or --keep-files") }
        }

        func run() async throws {
            try await reportingFailures("admin remove") {
                let (files, bytes) = try await options.withState { state in
                    guard let id = try await state.accounts.id(of: name) else { throw CLIError(description: "no account '\(name)'") }
                    // The account goes first, so that nothing new is added while its files go.
                    try await state.accounts.remove(name, keepingFiles: keepFiles)
                    return keepFiles ? (0, 0) : try await state.deleteStorage(of: id)
                }
                printError(keepFiles ? "removed \(name); its files stay" : "removed \(name) and deleted its \(files) files and uploads (\(bytes) bytes)")
            }
        }
    }

    struct Storage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show storage totals: accounts, files, bytes, uploads in progress, sessions.")
        @OptionGroup var options: Options
        @Flag(help: "One JSON object instead of lines.") var json = false

        func run() async throws {
            try await reportingFailures("admin storage") {
                let totals = try await options.withState { try await $0.totals() }
                if json {
                    let object = Dictionary(uniqueKeysWithValues: totals.map { ($0.0, $0.1) })
                    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                } else {
                    print(table(totals.map { [$0.0, "\($0.1)"] }))
                }
            }
        }
    }
}

/// The stores `safechat admin` works on.
struct AdminState: Sendable {
    let accounts: any AccountStore
    let registry: any Registry
    let sessions: any SessionStore
    let blobs: any BlobStore

    /// One account's use of shared resources.
    struct Usage: Sendable, Encodable {
        let name: String
        let id: String
        let disabled: Bool
        let files: Int64
        let bytes: Int64
        let uploads: Int64
        let uploadBytes: Int64
        let sessions: Int64
    }

    func usage() async throws -> [Usage] {
        let uploads = try await registry.uploads()
        var rows: [Usage] = []
        for account in try await accounts.accounts() {
            let files = try await registry.files(ownedBy: account.id)
            let own = uploads.filter { $0.owner == account.id }
            rows.append(Usage(name: account.name, id: account.id.value, disabled: account.disabled,
                              files: Int64(files.count), bytes: files.reduce(0) { $0 + $1.size },
                              uploads: Int64(own.count), uploadBytes: own.reduce(0) { $0 + $1.offset },
                              sessions: Int64(try await sessions.sessions(of: account.id).count)))
        }
        return rows
    }

    /// The whole store's totals: every file and upload, whoever owns it (kept files of removed
    /// accounts included, counted apart as well).
    func totals() async throws -> [(String, Int64)] {
        let accounts = try await accounts.accounts(), files = try await registry.allFiles(), uploads = try await registry.uploads()
        let ids = Set(accounts.map(\.id))
        let kept = files.filter { !ids.contains($0.owner) }
        return [
            ("accounts", Int64(accounts.count)),
            ("disabled_accounts", Int64(accounts.filter(\.disabled).count)),
            ("files", Int64(files.count)),
            ("file_bytes", files.reduce(0) { $0 + $1.size }),
            ("files_of_removed_accounts", Int64(kept.count)),
            ("uploads_in_progress", Int64(uploads.count)),
            ("upload_bytes_received", uploads.reduce(0) { $0 + $1.offset }),
        ]
    }

    /// Deletes the files and uploads `owner` holds: record first (nobody is served a file whose
    /// bytes are going), then bytes. Returns how many went and their sealed bytes.
    func deleteStorage(of owner: UserID) async throws -> (count: Int, bytes: Int64) {
        var count = 0, bytes: Int64 = 0
        for file in try await registry.files(ownedBy: owner) {
            try await registry.removeFile(file.fileID)
            try await blobs.removeBlob(file.fileID)
            (count, bytes) = (count + 1, bytes + file.size)
        }
        for upload in try await registry.uploads() where upload.owner == owner {
            try await registry.removeUpload(upload.uploadID)
            try await blobs.removePartial(upload.uploadID, checkpoint: upload.blobCheckpoint)
            (count, bytes) = (count + 1, bytes + upload.offset)
        }
        return (count, bytes)
    }
}

/// Columns padded to their widest cell.
private func table(_ rows: [[String]]) -> String {
    let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
        zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
}

private func jsonLine(_ usage: AdminState.Usage) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(usage), as: UTF8.self)
}
