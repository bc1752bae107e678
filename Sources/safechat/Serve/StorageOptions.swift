import ArgumentParser
import Foundation
import SafeChatPostgres
import SafeChatS3

/// Where sealed files go (`serve`, `migrate`): the data directory by default, or an S3 bucket.
struct ObjectStoreOptions: ParsableArguments {
    @Option(name: .customLong("blob-store"), help: """
        Where sealed files go: s3://BUCKET[/PREFIX] on the object store at --s3-endpoint; by default \
        the data directory's data/ [SAFECHAT_BLOB_STORE].
        """)
    var blobStoreOption: String?

    @Option(name: .customLong("s3-endpoint"), help: "The object store's URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:8333 (path-style) [SAFECHAT_S3_ENDPOINT].")
    var s3EndpointOption: String?

    @Option(name: .customLong("s3-region"), help: "The store's region for request signatures [SAFECHAT_S3_REGION, AWS_REGION; default us-east-1].")
    var s3RegionOption: String?

    // An optional option cannot default to an environment variable, so the fallback happens here.
    var blobStore: String? { blobStoreOption ?? ProcessInfo.processInfo.environment["SAFECHAT_BLOB_STORE"] }
    var s3Endpoint: String? { s3EndpointOption ?? ProcessInfo.processInfo.environment["SAFECHAT_S3_ENDPOINT"] }
    var s3Region: String? {
        s3RegionOption ?? ProcessInfo.processInfo.environment["SAFECHAT_S3_REGION"]
    }

    func validate() throws {
        guard (blobStore == nil) == (s3Endpoint == nil) else { throw ValidationError("--blob-store s3://BUCKET and --s3-endpoint URL go together") }
    }

    /// The S3 store named, checked (reachable, writable) before anything starts; nil for the data
    /// directory. Its credentials come from the AWS_* variables or the credentials file.
    func store(maxFileSize: Int64) async throws -> S3BlobStore? {
        try await Self.store(location: blobStore, endpoint: s3Endpoint, region: s3Region, maxFileSize: maxFileSize)
    }

    /// The S3 store at `location` (s3://BUCKET/PREFIX) on `endpoint`, checked; nil for the data directory.
    static func store(location: String?, endpoint: String?, region: String?, maxFileSize: Int64) async throws -> S3BlobStore? {
        guard let location, let endpoint else { return nil }
        let region = region ?? ProcessInfo.processInfo.environment["AWS_REGION"]
        let settings = try S3Settings(location: location, endpoint: endpoint, region: region,
                                      credentials: try S3Credentials.load(), maxObjectSize: maxFileSize)
        let store = S3BlobStore(settings: settings)
        do {
            try await store.check()
        } catch {
            throw CLIError(description: "the object store at \(store.settings.endpoint) (bucket \(store.settings.bucket)) cannot be used: \(error)")
        }
        return store
    }
}

/// Where the gateway's state goes (`serve`, `migrate`): the data directory by default, or PostgreSQL.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database"), help: """
        Keep the gateway's state (accounts, tokens, files, uploads, quotas, sessions, chat) in PostgreSQL, \
        shared by every gateway on it: postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]; \
        the schema is migrated at start [SAFECHAT_DATABASE].
        """)
    var databaseOption: String?

    @Option(name: .customLong("database-password-file"), help: "A file (0600) holding the database password; else PGPASSWORD [SAFECHAT_DATABASE_PASSWORD_FILE].")
    var databasePasswordFileOption: String?

    var database: String? { databaseOption ?? ProcessInfo.processInfo.environment["SAFECHAT_DATABASE"] }
    var passwordFile: String? {
        databasePasswordFileOption ?? ProcessInfo.processInfo.environment["SAFECHAT_DATABASE_PASSWORD_FILE"]
    }

    /// The database named, or nil for the data directory.
    func settings() throws -> DatabaseSettings? {
        guard let database else { return nil }
        return try DatabaseSettings(url: database, passwordFile: passwordFile)
    }
}
