import ArgumentParser
import CMalloc
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
            named in its help.
            """)

    @Flag(help: "Create the prototype's demo account user1 / password123 (never in production).")
    var demo = false

    @Option(help: "Address to listen on [SAFECHAT_HOST].")
    var host: String = ProcessInfo.processInfo.environment["SAFECHAT_HOST"] ?? "127.0.0.1"

    @Option(help: "Port; 0 picks a free one [SAFECHAT_PORT].")
    var port: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_PORT"] ?? "") ?? 8080

    @Option(help: "Data directory [SAFECHAT_DATA_DIR].")
    var dataDir: String = ProcessInfo.processInfo.environment["SAFECHAT_DATA_DIR"] ?? "./safechat-data"

    @Flag(inversion: .prefixedNo, help: """
        Write and read sealed files around the page cache (O_DIRECT), where the file system allows it: \
        large files do not churn the cache, and uploads cost far less CPU [SAFECHAT_DIRECT_IO=0 turns it off].
        """)
    var directIO = ProcessInfo.processInfo.environment["SAFECHAT_DIRECT_IO"] != "0"

    @Option(help: "Largest sealed file accepted, e.g. 64G [SAFECHAT_MAX_FILE_SIZE].")
    var maxFileSize: String = ProcessInfo.processInfo.environment["SAFECHAT_MAX_FILE_SIZE"] ?? "64G"

    @Option(help: "Storage per user, e.g. 256G [SAFECHAT_QUOTA].")
    var quota: String = ProcessInfo.processInfo.environment["SAFECHAT_QUOTA"] ?? "256G"

    @Option(help: "Token lifetime in seconds [SAFECHAT_TOKEN_LIFETIME].")
    var tokenLifetime: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_TOKEN_LIFETIME"] ?? "") ?? 12 * 3600

    @Option(help: "Seconds before an unfinished upload is removed [SAFECHAT_UPLOAD_EXPIRY].")
    var uploadExpiry: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_UPLOAD_EXPIRY"] ?? "") ?? 24 * 3600

    @Option(help: "Seconds a connection may sit without a complete request head or idle between requests [SAFECHAT_IDLE_TIMEOUT].")
    var idleTimeout: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_IDLE_TIMEOUT"] ?? "") ?? 60

    @Option(help: "Seconds a request body may deliver nothing before it is cut off; an upload keeps what arrived [SAFECHAT_BODY_TIMEOUT].")
    var bodyTimeout: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_BODY_TIMEOUT"] ?? "") ?? 60

    @Option(help: "Chat deliveries kept for one offline member of one session; beyond it the oldest is dropped [SAFECHAT_CHAT_QUEUE].")
    var chatQueue: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_CHAT_QUEUE"] ?? "") ?? 1000

    @Option(help: "Seconds a chat delivery waits for an offline member at most [SAFECHAT_CHAT_RETENTION].")
    var chatRetention: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_CHAT_RETENTION"] ?? "") ?? 7 * 24 * 3600

    @Option(help: "Bytes all chat queues may hold, e.g. 256M; beyond it sends are refused [SAFECHAT_CHAT_STORAGE].")
    var chatStorage: String = ProcessInfo.processInfo.environment["SAFECHAT_CHAT_STORAGE"] ?? "256M"

    @Option(help: "Bytes of those one account's messages may hold, e.g. 32M; beyond it that account's sends are refused [SAFECHAT_CHAT_STORAGE_PER_ACCOUNT].")
    var chatStoragePerAccount: String = ProcessInfo.processInfo.environment["SAFECHAT_CHAT_STORAGE_PER_ACCOUNT"] ?? "32M"

    @Option(help: """
        Where operators' endpoints listen, HOST:PORT (GET /metrics, /healthz, /readyz); off by default, \
        and never on the public port [SAFECHAT_METRICS_LISTEN].
        """)
    var metricsListen: String? = ProcessInfo.processInfo.environment["SAFECHAT_METRICS_LISTEN"]

    @Option(help: "/readyz fails when the data directory has less free space than this, e.g. 1G [SAFECHAT_MIN_FREE_SPACE].")
    var minFreeSpace: String = ProcessInfo.processInfo.environment["SAFECHAT_MIN_FREE_SPACE"] ?? "1G"

    @Option(help: """
        Seconds a SIGTERM leaves in-flight requests to finish (readiness turns false and chat closes first); \
        uploads cut off then resume from their last acknowledged offset [SAFECHAT_SHUTDOWN_GRACE].
        """)
    var shutdownGrace: Int = Int(ProcessInfo.processInfo.environment["SAFECHAT_SHUTDOWN_GRACE"] ?? "") ?? 30

    @OptionGroup(title: "Object storage") var objectStore: ObjectStoreOptions
    @OptionGroup(title: "Database") var database: DatabaseOptions

    @Option(name: .customLong("signing-key"), help: """
        The token signing key file (made, 0600, if missing); by default the data directory's signing.key. \
        Gateways behind one load balancer share one [SAFECHAT_SIGNING_KEY].
        """)
    var signingKeyOption: String?

    @Option(name: .customLong("tls-cert"), help: "TLS certificate chain (PEM); with --tls-key, serves HTTPS on the same port [SAFECHAT_TLS_CERT].")
    var tlsCertOption: String?

    @Option(name: .customLong("tls-key"), help: "TLS private key (PEM) [SAFECHAT_TLS_KEY].")
    var tlsKeyOption: String?

    // An optional option cannot default to an environment variable, so the fallback happens here.
    var tlsCert: String? { tlsCertOption ?? ProcessInfo.processInfo.environment["SAFECHAT_TLS_CERT"] }
    var tlsKey: String? { tlsKeyOption ?? ProcessInfo.processInfo.environment["SAFECHAT_TLS_KEY"] }

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard parseByteCount(maxFileSize) != nil else { throw ValidationError("--max-file-size takes a size such as 500M or 64G") }
        guard parseByteCount(quota) != nil else { throw ValidationError("--quota takes a size such as 500M or 256G") }
        guard tokenLifetime > 0, uploadExpiry > 0 else { throw ValidationError("lifetimes must be positive") }
        guard idleTimeout > 0, bodyTimeout > 0 else { throw ValidationError("timeouts must be positive") }
        guard (1...1_000_000).contains(chatQueue), chatRetention > 0, parseByteCount(chatStorage).map({ $0 > 0 && $0 <= Int64(Int.max) }) == true,
              parseByteCount(chatStoragePerAccount).map({ $0 > 0 && $0 <= Int64(Int.max) }) == true else {
            throw ValidationError("--chat-queue takes 1 to 1000000, --chat-retention positive seconds, --chat-storage and --chat-storage-per-account a size such as 256M")
        }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        if let metricsListen, parseListenAddress(metricsListen) == nil {
            throw ValidationError("--metrics-listen takes HOST:PORT, such as 127.0.0.1:9090")
        }
        guard parseByteCount(minFreeSpace) != nil else { throw ValidationError("--min-free-space takes a size such as 1G") }
        guard (1...3600).contains(shutdownGrace) else { throw ValidationError("--shutdown-grace takes 1 to 3600 seconds") }
    }

    func run() async throws {
        // Transfer buffers (S3 parts, download pieces) are megabytes each and come and go with
        // requests: served from mmap and unmapped when freed, so that the resident size follows
        // what is in use. (glibc would otherwise raise this threshold after the first free and keep
        // freed buffers in its heaps.)
        _ = mallopt(M_MMAP_THRESHOLD, 256 << 10)
        try await reportingFailures("serve") {
            var configuration = GatewayConfiguration()
            configuration.host = host
            configuration.port = port
            configuration.dataDirectory = dataDir
            configuration.directIO = directIO
            configuration.maxFileSize = parseByteCount(maxFileSize)!
            configuration.userQuota = parseByteCount(quota)!
            configuration.tokenLifetime = TimeInterval(tokenLifetime)
            configuration.uploadExpiry = TimeInterval(uploadExpiry)
            configuration.idleTimeout = .seconds(idleTimeout)
            configuration.bodyStallTimeout = .seconds(bodyTimeout)
            configuration.demo = demo
            configuration.chatQueueLimit = chatQueue
            configuration.chatRetention = TimeInterval(chatRetention)
            configuration.chatStorageLimit = Int(parseByteCount(chatStorage)!)
            configuration.chatStoragePerAccount = Int(parseByteCount(chatStoragePerAccount)!)
            configuration.signingKeyPath = signingKeyOption ?? ProcessInfo.processInfo.environment["SAFECHAT_SIGNING_KEY"]
            configuration.tlsCertificatePath = tlsCert
            configuration.tlsKeyPath = tlsKey
            configuration.operationsAddress = metricsListen.flatMap(parseListenAddress)
            configuration.minimumFreeSpace = parseByteCount(minFreeSpace)!
            configuration.shutdownGrace = .seconds(shutdownGrace)
            LoggingSystem.bootstrap { label in
                var handler = GatewayLogHandler(label: label)
                handler.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["LOG_LEVEL"] ?? "") ?? .info
                return handler
            }
            let logger = Logger(label: "safechat.gateway")
            if demo { logger.warning("demo mode: the account user1 / password123 exists; never run this in production") }
            let blobs = try await objectStore.store(maxFileSize: configuration.maxFileSize)
            let databaseSettings = try database.settings()
            let scheme = tlsCert == nil ? "http" : "https"
            let placement: Logger.Metadata = [
                "data_dir": "\(dataDir)",
                "blob_store": "\(objectStore.summary ?? "\(dataDir)/data")",
                "registry": "\(databaseSettings.map(\.description) ?? "\(dataDir)/registry")",
                "accounts": "\(databaseSettings.map(\.description) ?? Gateway.usersPath(dataDirectory: dataDir))",
            ]
            let metrics = GatewayMetrics()
            let serve: @Sendable (PostgresDatabase?) async throws -> Void = { [configuration] postgres in
                let gateway = try await Gateway(configuration: configuration, blobs: blobs,
                                                state: postgres.map { .postgres($0) } ?? GatewayStateStores(), metrics: metrics, logger: logger)
                try await gateway.run(onServerRunning: { port in
                    logger.info("listening", metadata: placement.merging(["url": "\(scheme)://\(host):\(port)"]) { $1 })
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
