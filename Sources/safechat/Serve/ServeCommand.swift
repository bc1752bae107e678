import ArgumentParser
import CMalloc
import Configuration
import Foundation
import Logging
import SafeChatGateway
import SafeChatPostgres
import SafeChatS3

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the SafeChat gateway.",
        discussion: """
            Everything lives in the data directory: users.json, signing.key (the JWT key, 0600), \
            registry/ (one JSON manifest per file and per upload) and data/ (sealed bytes), unless \
            --blob-store puts sealed bytes on S3-compatible object storage; its credentials come \
            from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) or the \
            credentials file (~/.aws/credentials, AWS_PROFILE), never from a flag; and unless \
            --database keeps the file registry in PostgreSQL, its password from PGPASSWORD or \
            --database-password-file. Each option can also come from the environment variable \
            named in its help, or from a config file (--config) under its long name: flags outrank \
            the environment, which outranks the file. A bad value or an unknown key in the file is \
            refused at start (exit 78), naming the key.
            """)

    // Every option is optional here: a flag given on the command line outranks the environment and
    // the config file, and only ServeConfiguration knows what to fall back on.
    @Option(help: "A config file, .json or .yaml: keys are the long flag names below; the environment and flags override it [SAFECHAT_CONFIG].")
    var config: String?

    @Flag(help: "Print the effective configuration, where each value came from (secrets redacted), and exit.")
    var printConfig = false

    @Flag(help: .hidden) var configReference = false

    @Flag(help: ServeSettings.demo.flagHelp) var demo = false
    @Option(help: ServeSettings.host.flagHelp) var host: String?
    @Option(help: ServeSettings.port.flagHelp) var port: Int?
    @Option(help: ServeSettings.dataDir.flagHelp) var dataDir: String?
    @Flag(inversion: .prefixedNo, help: ServeSettings.directIO.flagHelp) var directIO: Bool?
    @Option(help: ServeSettings.maxFileSize.flagHelp) var maxFileSize: String?
    @Option(help: ServeSettings.quota.flagHelp) var quota: String?
    @Option(help: ServeSettings.tokenLifetime.flagHelp) var tokenLifetime: Int?
    @Option(help: ServeSettings.uploadExpiry.flagHelp) var uploadExpiry: Int?
    @Option(help: ServeSettings.idleTimeout.flagHelp) var idleTimeout: Int?
    @Option(help: ServeSettings.bodyTimeout.flagHelp) var bodyTimeout: Int?
    @Option(help: ServeSettings.chatQueue.flagHelp) var chatQueue: Int?
    @Option(help: ServeSettings.chatRetention.flagHelp) var chatRetention: Int?
    @Option(help: ServeSettings.chatStorage.flagHelp) var chatStorage: String?
    @Option(help: ServeSettings.chatStoragePerAccount.flagHelp) var chatStoragePerAccount: String?
    @Option(help: ServeSettings.metricsListen.flagHelp) var metricsListen: String?
    @Option(help: ServeSettings.minFreeSpace.flagHelp) var minFreeSpace: String?
    @Option(help: ServeSettings.shutdownGrace.flagHelp) var shutdownGrace: Int?
    @Option(help: ServeSettings.signingKey.flagHelp) var signingKey: String?
    @Option(help: ServeSettings.tlsCert.flagHelp) var tlsCert: String?
    @Option(help: ServeSettings.tlsKey.flagHelp) var tlsKey: String?
    @Option(help: ServeSettings.blobStore.flagHelp) var blobStore: String?
    @Option(help: ServeSettings.s3Endpoint.flagHelp) var s3Endpoint: String?
    @Option(help: ServeSettings.s3Region.flagHelp) var s3Region: String?
    @Option(help: ServeSettings.database.flagHelp) var database: String?
    @Option(help: ServeSettings.databasePasswordFile.flagHelp) var databasePasswordFile: String?
    @Option(help: ServeSettings.logLevel.flagHelp) var logLevel: String?
    @Option(help: ServeSettings.logFormat.flagHelp) var logFormat: String?
    @Option(help: ServeSettings.trustedProxies.flagHelp) var trustedProxies: String?

    /// The options given on the command line, by setting key.
    var flagValues: [String: ConfigContent] {
        let strings: [(ServeSetting, String?)] = [
            (ServeSettings.host, host), (ServeSettings.dataDir, dataDir), (ServeSettings.maxFileSize, maxFileSize), (ServeSettings.quota, quota),
            (ServeSettings.chatStorage, chatStorage), (ServeSettings.chatStoragePerAccount, chatStoragePerAccount),
            (ServeSettings.metricsListen, metricsListen), (ServeSettings.minFreeSpace, minFreeSpace), (ServeSettings.signingKey, signingKey),
            (ServeSettings.tlsCert, tlsCert), (ServeSettings.tlsKey, tlsKey), (ServeSettings.blobStore, blobStore),
            (ServeSettings.s3Endpoint, s3Endpoint), (ServeSettings.s3Region, s3Region), (ServeSettings.database, database),
            (ServeSettings.databasePasswordFile, databasePasswordFile), (ServeSettings.logLevel, logLevel),
            (ServeSettings.logFormat, logFormat), (ServeSettings.trustedProxies, trustedProxies),
        ]
        let numbers: [(ServeSetting, Int?)] = [
            (ServeSettings.port, port), (ServeSettings.tokenLifetime, tokenLifetime), (ServeSettings.uploadExpiry, uploadExpiry),
            (ServeSettings.idleTimeout, idleTimeout), (ServeSettings.bodyTimeout, bodyTimeout), (ServeSettings.chatQueue, chatQueue),
            (ServeSettings.chatRetention, chatRetention), (ServeSettings.shutdownGrace, shutdownGrace),
        ]
        var values: [String: ConfigContent] = [:]
        for (setting, value) in strings { if let value { values[setting.key] = .string(value) } }
        for (setting, value) in numbers { if let value { values[setting.key] = .int(value) } }
        if demo { values[ServeSettings.demo.key] = .bool(true) }
        if let directIO { values[ServeSettings.directIO.key] = .bool(directIO) }
        return values
    }

    /// The effective configuration, or a one-line refusal naming the key (exit 78, EX_CONFIG).
    func resolvedConfiguration() async throws -> ServeConfiguration {
        let environment = ProcessInfo.processInfo.environment
        do {
            let resolved = try await ServeConfiguration.resolve(flags: flagValues, environment: environment,
                                                                configFile: config ?? environment["SAFECHAT_CONFIG"])
            try resolved.checkCombinations()
            return resolved
        } catch let error as ConfigurationError {
            throw CLIError(description: error.description, exitStatus: ExitStatus.badConfiguration)
        }
    }

    func run() async throws {
        if configReference { return print(ServeConfiguration.reference()) }
        // Transfer buffers (S3 parts, download pieces) are megabytes each and come and go with
        // requests: served from mmap and unmapped when freed, so that the resident size follows
        // what is in use. (glibc would otherwise raise this threshold after the first free and keep
        // freed buffers in its heaps.)
        _ = mallopt(M_MMAP_THRESHOLD, 256 << 10)
        try await reportingFailures("serve") {
            let settings = try await resolvedConfiguration()
            if printConfig { return print(settings.printed(environment: ProcessInfo.processInfo.environment)) }
            let dataDir = settings.string(ServeSettings.dataDir)!
            var configuration = GatewayConfiguration()
            configuration.host = settings.string(ServeSettings.host)!
            configuration.port = settings.int(ServeSettings.port)!
            configuration.dataDirectory = dataDir
            configuration.directIO = settings.bool(ServeSettings.directIO)
            configuration.maxFileSize = settings.size(ServeSettings.maxFileSize)!
            configuration.userQuota = settings.size(ServeSettings.quota)!
            configuration.tokenLifetime = TimeInterval(settings.int(ServeSettings.tokenLifetime)!)
            configuration.uploadExpiry = TimeInterval(settings.int(ServeSettings.uploadExpiry)!)
            configuration.idleTimeout = .seconds(settings.int(ServeSettings.idleTimeout)!)
            configuration.bodyStallTimeout = .seconds(settings.int(ServeSettings.bodyTimeout)!)
            configuration.demo = settings.bool(ServeSettings.demo)
            configuration.chatQueueLimit = settings.int(ServeSettings.chatQueue)!
            configuration.chatRetention = TimeInterval(settings.int(ServeSettings.chatRetention)!)
            configuration.chatStorageLimit = Int(settings.size(ServeSettings.chatStorage)!)
            configuration.chatStoragePerAccount = Int(settings.size(ServeSettings.chatStoragePerAccount)!)
            configuration.signingKeyPath = settings.string(ServeSettings.signingKey)
            configuration.tlsCertificatePath = settings.string(ServeSettings.tlsCert)
            configuration.tlsKeyPath = settings.string(ServeSettings.tlsKey)
            configuration.operationsAddress = settings.string(ServeSettings.metricsListen).flatMap(parseListenAddress)
            configuration.minimumFreeSpace = settings.size(ServeSettings.minFreeSpace)!
            configuration.shutdownGrace = .seconds(settings.int(ServeSettings.shutdownGrace)!)
            configuration.trustedProxies = settings.string(ServeSettings.trustedProxies).flatMap(ServeSetting.addresses) ?? []
            let logLevel = Logger.Level(rawValue: settings.string(ServeSettings.logLevel)!) ?? .info
            let logFormat = GatewayLogHandler.Format(rawValue: settings.string(ServeSettings.logFormat)!) ?? .text
            LoggingSystem.bootstrap { label in
                var handler = GatewayLogHandler(label: label, format: logFormat)
                handler.logLevel = logLevel
                return handler
            }
            let logger = Logger(label: "safechat.gateway")
            if configuration.demo { logger.warning("demo mode: the account user1 / password123 exists; never run this in production") }
            let blobStore = settings.string(ServeSettings.blobStore), s3Endpoint = settings.string(ServeSettings.s3Endpoint)
            let blobs = try await ObjectStoreOptions.store(location: blobStore, endpoint: s3Endpoint,
                                                           region: settings.string(ServeSettings.s3Region), maxFileSize: configuration.maxFileSize)
            let databaseSettings = try settings.string(ServeSettings.database).map {
                try DatabaseSettings(url: $0, passwordFile: settings.string(ServeSettings.databasePasswordFile))
            }
            let scheme = configuration.tlsCertificatePath == nil ? "http" : "https"
            let placement: Logger.Metadata = [
                "data_dir": "\(dataDir)",
                "blob_store": "\(blobStore.map { "\($0) at \(s3Endpoint ?? "?")" } ?? "\(dataDir)/data")",
                "registry": "\(databaseSettings.map(\.description) ?? "\(dataDir)/registry")",
                "accounts": "\(databaseSettings.map(\.description) ?? Gateway.usersPath(dataDirectory: dataDir))",
            ]
            let metrics = GatewayMetrics()
            let serve: @Sendable (PostgresDatabase?) async throws -> Void = { [configuration] postgres in
                let gateway = try await Gateway(configuration: configuration, blobs: blobs,
                                                state: postgres.map { .postgres($0) } ?? GatewayStateStores(), metrics: metrics, logger: logger)
                try await gateway.run(onServerRunning: { port in
                    logger.info("listening", metadata: placement.merging(["url": "\(scheme)://\(configuration.host):\(port)"]) { $1 })
                }, onOperationsRunning: { port in
                    logger.info("operators' endpoints listening", metadata: ["operations_url": "http://\(configuration.operationsAddress?.host ?? ""):\(port)"])
                })
            }
            guard let databaseSettings else { return try await serve(nil) }
            let postgres = PostgresDatabase(settings: databaseSettings, timing: { metrics.storeOperation(.database, duration: $0, failed: $1) })
            try await postgres.withRunning {
                try await postgres.prepare(logger: logger)
                try await serve(postgres)
            }
        }
    }
}

extension ServeConfiguration {
    /// Settings that only make sense together, checked once every value is known.
    func checkCombinations() throws {
        func given(_ setting: ServeSetting) -> Bool { entry(setting).value != nil }
        guard given(ServeSettings.tlsCert) == given(ServeSettings.tlsKey) else {
            throw ConfigurationError(description: "tls-cert and tls-key go together")
        }
        guard given(ServeSettings.blobStore) == given(ServeSettings.s3Endpoint) else {
            throw ConfigurationError(description: "blob-store (s3://BUCKET) and s3-endpoint (URL) go together")
        }
        for setting in [ServeSettings.chatStorage, ServeSettings.chatStoragePerAccount] where size(setting) == 0 {
            throw ConfigurationError(description: "\(setting.key) (from \(entry(setting).source)) must be more than 0")
        }
    }
}

/// "HOST:PORT" ("[::1]:9090" for an IPv6 address); the port may be 0 (any free one).
func parseListenAddress(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty, host.utf8.count <= 255, !host.contains(where: { $0.isWhitespace || $0 == "/" }) else { return nil }
    return (host, port)
}

/// "1234", "500K", "500M", "64G", "2T" (powers of 1024).
func parseByteCount(_ text: String) -> Int64? {
    let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    if let last = text.uppercased().last, let unit = units[last], let n = Int64(text.dropLast()), n >= 0 {
        let (value, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : value
    }
    return Int64(text).flatMap { $0 >= 0 ? $0 : nil }
}
