import ArgumentParser
import Foundation
import Logging
import SafeChatGateway
import SafeChatPostgres

struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Manage gateway accounts (works while the server runs; with --database, on every gateway of that database).",
        subcommands: [Add.self, Passwd.self, Remove.self])

    struct Options: ParsableArguments {
        @Option(help: "Data directory of the gateway [SAFECHAT_DATA_DIR].")
        var dataDir: String = ProcessInfo.processInfo.environment["SAFECHAT_DATA_DIR"] ?? "./safechat-data"

        @OptionGroup(title: "Database") var database: DatabaseOptions

        /// Runs `body` on the accounts: the data directory's, or the database's (migrated first).
        func withStore(_ body: @Sendable (any AccountStore) async throws -> Void) async throws {
            guard let settings = try database.settings() else {
                try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                return try await body(try UserStore(path: Gateway.usersPath(dataDirectory: dataDir)))
            }
            let logger = Logger(label: "safechat.user", factory: { _ in SwiftLogNoOpLogHandler() })
            let postgres = PostgresDatabase(settings: settings, maximumConnections: 2, logger: logger)
            try await postgres.withRunning {
                try await postgres.prepare(logger: logger)
                try await body(PostgresAccountStore(database: postgres))
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user; the password is read from the terminal or stdin.")
        @Argument(help: "User name (letters, digits, '.', '-', '_').") var name: String
        @OptionGroup var options: Options

        func run() async throws {
            try await reportingFailures("user add") {
                try AccountName.validate(name)
                let password = try readPassword(prompt: "Password for \(name): ", confirm: true)
                try await options.withStore { try await $0.add(name, password: password) }
                printError("added user \(name)")
            }
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user's password.")
        @Argument var name: String
        @OptionGroup var options: Options

        func run() async throws {
            try await reportingFailures("user passwd") {
                try await options.withStore { store in
                    guard try await store.contains(name) else { throw CLIError(description: "no user '\(name)'") }
                    let password = try readPassword(prompt: "New password for \(name): ", confirm: true)
                    try await store.setPassword(name, password: password)
                }
                printError("password changed for \(name)")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a user (their files stay until deleted).")
        @Argument var name: String
        @OptionGroup var options: Options

        func run() async throws {
            try await reportingFailures("user rm") {
                try await options.withStore { try await $0.remove(name) }
                printError("removed user \(name)")
            }
        }
    }
}
