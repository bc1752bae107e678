import ArgumentParser
import Foundation
import Logging
import SafeChatPostgres

/// `safechat migrate`: brings a PostgreSQL database to this build's schema, as `serve --database`
/// does at start, for operators who migrate before rolling gateways out; with `--from-data-dir`,
/// also imports an embedded gateway's registry (and its sealed files, given `--blob-store`).
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database schema's migrations (gateways also do this at start); import a data directory.",
        discussion: """
            The password comes from PGPASSWORD or --database-password-file, never from the URL. \
            --from-data-dir DIR copies DIR's accounts and file registry (files, uploads in \
            progress, identity bundles) into the database, and with --blob-store its sealed files to that store under \
            the same ids; running it again skips what is already there. DIR is only read; stop \
            the gateway that uses it first.
            """)

    @OptionGroup(title: "Database") var database: DatabaseOptions
    @OptionGroup(title: "Object storage") var objectStore: ObjectStoreOptions

    @Option(name: .customLong("from-data-dir"), help: "An embedded gateway's data directory to import.")
    var fromDataDir: String?

    @Option(help: "Largest sealed file the destination store takes, e.g. 64G (as serve's).")
    var maxFileSize: String = "64G"

    func validate() throws {
        guard parseByteCount(maxFileSize) != nil else { throw ValidationError("--max-file-size takes a size such as 500M or 64G") }
        guard objectStore.blobStore == nil || fromDataDir != nil else { throw ValidationError("--blob-store goes with --from-data-dir") }
    }

    func run() async throws {
        try await reportingFailures("migrate") {
            guard let settings = try database.settings() else {
                throw CLIError(description: "name the database: --database postgres://USER@HOST[:PORT]/DATABASE")
            }
            let maxFileSize = parseByteCount(maxFileSize)!
            let destination = try await objectStore.store(maxFileSize: maxFileSize)
            let postgres = PostgresDatabase(settings: settings, maximumConnections: 2,
                                            logger: Logger(label: "safechat.migrate", factory: { _ in SwiftLogNoOpLogHandler() }))
            try await postgres.withRunning {
                try await postgres.check()
                let applied = try await SchemaMigrations.apply(on: postgres)
                for step in applied { print("applied \(step.version): \(step.summary)") }
                let version = try await SchemaMigrations.currentVersion(on: postgres)
                print("\(settings): schema version \(version)\(applied.isEmpty ? " (up to date)" : "")")
                guard let fromDataDir else { return }
                let summary = try await DataDirectoryImport(dataDirectory: fromDataDir, database: postgres,
                                                            destination: destination, maxFileSize: maxFileSize).run()
                print("imported \(summary.accounts) accounts, \(summary.files) files, \(summary.uploads) uploads in progress, \(summary.identities) identity bundles "
                      + "and \(summary.sessions) sessions with \(summary.deliveries) waiting chat deliveries "
                      + "from \(fromDataDir) (\(summary.skipped) files already there; \(summary.bytesCopied) bytes copied)")
            }
        }
    }
}
