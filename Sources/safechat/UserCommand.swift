import ArgumentParser
import Foundation
import SafeChatGateway

struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Manage gateway accounts (works while the server runs).",
        subcommands: [Add.self, Passwd.self, Remove.self])

    struct Options: ParsableArguments {
        @Option(help: "Data directory of the gateway [SAFECHAT_DATA_DIR].")
        var dataDir: String = ProcessInfo.processInfo.environment["SAFECHAT_DATA_DIR"] ?? "./safechat-data"

        func store() throws -> UserStore {
            try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            return try UserStore(path: Gateway.usersPath(dataDirectory: dataDir))
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user; the password is read from the terminal or stdin.")
        @Argument(help: "User name (letters, digits, '.', '-', '_').") var name: String
        @OptionGroup var options: Options

        func run() async throws {
            try await reportingFailures("user add") {
                try UserStore.validate(name: name)
                let password = try readPassword(prompt: "Password for \(name): ", confirm: true)
                try await options.store().add(name, password: password)
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
                let store = try options.store()
                guard try await store.contains(name) else { throw CLIError(description: "no user '\(name)'") }
                let password = try readPassword(prompt: "New password for \(name): ", confirm: true)
                try await store.setPassword(name, password: password)
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
                try await options.store().remove(name)
                printError("removed user \(name)")
            }
        }
    }
}
