import ArgumentParser
import Foundation
import Logging
import SafeChatPostgres

/// `safechat migrate`: brings a PostgreSQL database to this build's schema, as `serve --database`
/// does at start, for operators who migrate before rolling gateways out.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database schema's migrations (gateways also do this at start).",
        discussion: "The password comes from PGPASSWORD or --database-password-file, never from the URL.")

    @Option(name: .customLong("database"), help: "postgres://USER@HOST[:PORT]/DATABASE [SAFECHAT_DATABASE].")
    var databaseOption: String?

    @Option(name: .customLong("database-password-file"), help: "A file holding the database password; else PGPASSWORD [SAFECHAT_DATABASE_PASSWORD_FILE].")
    var databasePasswordFileOption: String?

    func run() async throws {
        try await reportingFailures("migrate") {
            let environment = ProcessInfo.processInfo.environment
            guard let url = databaseOption ?? environment["SAFECHAT_DATABASE"] else {
                throw CLIError(description: "name the database: --database postgres://USER@HOST[:PORT]/DATABASE")
            }
            let settings = try DatabaseSettings(url: url, passwordFile: databasePasswordFileOption ?? environment["SAFECHAT_DATABASE_PASSWORD_FILE"])
            let postgres = PostgresDatabase(settings: settings, maximumConnections: 2,
                                            logger: Logger(label: "safechat.migrate", factory: { _ in SwiftLogNoOpLogHandler() }))
            try await postgres.withRunning {
                try await postgres.check()
                let before = try await SchemaMigrations.currentVersion(on: postgres)
                let applied = try await SchemaMigrations.apply(on: postgres)
                for step in applied { print("applied \(step.version): \(step.summary)") }
                print("\(settings): schema version \(applied.last?.version ?? before)\(applied.isEmpty ? " (up to date)" : "")")
            }
        }
    }
}
